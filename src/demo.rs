//! `dinov2 demo`: the main job on a small built-in default. For now: the doctor's checks and a
//! timed libtorch matrix multiply on each usable device; later stages grow it into the full
//! tree -> shards -> pretraining -> probe demo.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use trainer::metrics::MetricsWriter;

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

/// `dinov2 demo`.
pub fn run(out: &Path, size: i64, reps: u32) -> Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let report = crate::doctor::collect(out);
    crate::doctor::print(&report);
    if !report.problems.is_empty() {
        anyhow::bail!("the doctor found problems (listed above); fix them before running jobs");
    }
    let mut metrics = MetricsWriter::append(&out.join("metrics.jsonl"))?;
    let mut devices = vec![Device::Cpu];
    devices.extend((0..tch::Cuda::device_count()).map(|i| Device::Cuda(i as usize)));
    println!("\nfp32 matmul {size}x{size}, median of {reps}:");
    let mut results = Vec::new();
    for device in devices {
        let r = matmul_benchmark(device, size, reps)
            .with_context(|| format!("matmul benchmark on {device:?}"))?;
        anyhow::ensure!(
            r.rel_error < 1e-3,
            "matmul on {device:?} is wrong: relative error {}",
            r.rel_error
        );
        println!(
            "  {:<8} {:>9.2} ms  {:>9.1} GFLOP/s  (rel. error {:.1e})",
            r.device, r.median_ms, r.gflops, r.rel_error
        );
        metrics.log(&serde_json::json!({"event": "matmul", "result": &r}))?;
        results.push(r);
    }
    let summary = serde_json::json!({ "doctor": report, "matmul": results });
    let summary_path = out.join("summary.json");
    pipeline::atomic::write_atomic(&summary_path, &serde_json::to_vec_pretty(&summary)?)?;
    println!(
        "\nwrote {} and {}",
        summary_path.display(),
        out.join("metrics.jsonl").display()
    );
    Ok(ExitCode::SUCCESS)
}
