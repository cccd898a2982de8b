//! The demo's device check: a timed fp32 matmul on every device, with a correctness check.

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use serde_json::json;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use trainer::metrics::MetricsWriter;

use super::DemoArgs;

/// One device's matmul benchmark.
#[derive(Debug, Serialize)]
pub struct MatmulResult {
    pub device: String,
    pub size: i64,
    pub reps: u32,
    pub median_ms: f64,
    pub min_ms: f64,
    pub gflops: f64,
    /// Relative error of (A·B)·x against A·(B·x): checks the product is real, not just fast.
    pub rel_error: f64,
}

/// Times `reps` fp32 products of two `size`×`size` matrices on `device` after two warm-ups.
pub fn matmul_benchmark(device: Device, size: i64, reps: u32) -> Result<MatmulResult> {
    let opts = (Kind::Float, device);
    let a = Tensor::f_randn([size, size], opts)?;
    let b = Tensor::f_randn([size, size], opts)?;
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut c = a.f_matmul(&b)?;
    c = c.f_add_(&a.f_matmul(&b)?)?.f_div_scalar_(2.0)?;
    sync();
    let mut times = Vec::with_capacity(reps as usize);
    for _ in 0..reps {
        let t = Instant::now();
        c = a.f_matmul(&b)?;
        sync();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let x = Tensor::f_randn([size, 1], opts)?;
    let lhs = c.f_matmul(&x)?;
    let rhs = a.f_matmul(&b.f_matmul(&x)?)?;
    let rel_error = ((&lhs - &rhs).f_norm()? / rhs.f_norm()?).f_double_value(&[])?;
    times.sort_by(f64::total_cmp);
    let median_ms = times[times.len() / 2];
    Ok(MatmulResult {
        device: format!("{device:?}"),
        size,
        reps,
        median_ms,
        min_ms: times[0],
        gflops: 2.0 * (size as f64).powi(3) / (median_ms * 1e-3) / 1e9,
        rel_error,
    })
}

/// [`matmul_benchmark`] on the CPU and every CUDA device, printed and logged to the metrics.
pub(super) fn device_check(a: &DemoArgs, metrics: &mut MetricsWriter) -> Result<Vec<MatmulResult>> {
    let mut devices = vec![Device::Cpu];
    devices.extend((0..tch::Cuda::device_count()).map(|i| Device::Cuda(i as usize)));
    println!("\nfp32 matmul {0}x{0}, median of {1}:", a.size, a.reps);
    let mut matmul = Vec::new();
    for device in devices {
        let r = matmul_benchmark(device, a.size, a.reps)
            .with_context(|| format!("matmul benchmark on {device:?}"))?;
        ensure!(
            r.rel_error < 1e-3,
            "matmul on {device:?} is wrong: relative error {}",
            r.rel_error
        );
        println!(
            "  {:<8} {:>9.2} ms  {:>9.1} GFLOP/s  (rel. error {:.1e})",
            r.device, r.median_ms, r.gflops, r.rel_error
        );
        metrics.log(&json!({"event": "matmul", "result": &r}))?;
        matmul.push(r);
    }
    Ok(matmul)
}
