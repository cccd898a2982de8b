//! `dinov2 bench model`: ViT forward and forward+backward milliseconds, ours (tch) against
//! PyTorch eager (the reference `dinov2` package, and timm's DINOv2 ViT) in the same run:
//! every repetition times ours, then each baseline, alternately; medians are reported.

use super::shared::{default_python, median, sync};
use crate::features::parse_device;
use anyhow::{Context, Result, bail, ensure};
use model::{DinoVisionTransformer, VitConfig};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::Instant;
use tch::{Kind, Tensor, nn};

const TORCH_BASELINE: &str = include_str!("../../bench/torch_vit.py");

#[derive(clap::Args)]
pub struct ModelArgs {
    /// vit_small, vit_base, vit_large or vit_giant2.
    #[arg(long, default_value = "vit_small")]
    pub arch: String,
    #[arg(long, default_value_t = 8)]
    pub batch: i64,
    /// Square input size (a multiple of 14).
    #[arg(long, default_value_t = 224)]
    pub size: i64,
    /// Timed repetitions of each step for each contender (medians reported).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Intra-op threads for every contender (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// fp16 autocast (CUDA only).
    #[arg(long)]
    pub fp16: bool,
    /// Baselines to run: dinov2 (the reference package), timm, or none.
    #[arg(long, value_delimiter = ',', default_value = "dinov2,timm")]
    pub baselines: Vec<String>,
    /// Python with torch, the dinov2 package and timm (default: $DINOV2_PYTHON, else the project venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Where results.json goes.
    #[arg(long, default_value = "runs/bench-model")]
    pub workdir: PathBuf,
}

struct Baseline {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Baseline {
    fn start(a: &ModelArgs, imp: &str, threads: usize) -> Result<Self> {
        let python = a.python.clone().unwrap_or_else(default_python);
        let script = a.workdir.join("torch_vit.py");
        std::fs::write(&script, TORCH_BASELINE)?;
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .args(["--impl", imp, "--arch", &a.arch])
            .args([
                "--batch",
                &a.batch.to_string(),
                "--size",
                &a.size.to_string(),
            ])
            .args(["--threads", &threads.to_string(), "--device", &a.device]);
        if a.fp16 {
            cmd.arg("--fp16");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        ensure!(
            line.trim() == "ready",
            "the {imp} baseline did not start (see its errors above)"
        );
        Ok(Self {
            name: format!("PyTorch eager ({imp})"),
            child,
            stdin,
            stdout,
        })
    }

    fn step(&mut self, what: &str) -> Result<f64> {
        writeln!(self.stdin, "{what}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        line.trim()
            .parse()
            .with_context(|| format!("{}: unexpected reply {line:?}", self.name))
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Serialize)]
struct Row {
    name: String,
    forward_ms: f64,
    forward_backward_ms: f64,
    forward_runs: Vec<f64>,
    forward_backward_runs: Vec<f64>,
}

pub fn run(a: ModelArgs) -> Result<ExitCode> {
    ensure!(
        a.reps > 0 && a.batch > 0,
        "--reps and --batch must be positive"
    );
    let device = parse_device(&a.device)?;
    ensure!(!a.fp16 || device.is_cuda(), "--fp16 needs a CUDA device");
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tch::set_num_threads(threads as i32);
    std::fs::create_dir_all(&a.workdir)?;
    let mut c = VitConfig::arch(&a.arch)?;
    c.img_size = a.size;
    c.init_values = Some(1e-5);
    c.validate()?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let vit = DinoVisionTransformer::new(vs.root(), &c)?;
    let x = Tensor::randn([a.batch, 3, a.size, a.size], (Kind::Float, device));
    let fwd = || -> Result<()> {
        let _g = tch::no_grad_guard();
        tch::autocast(a.fp16, || vit.forward_features(&x, None, false))?;
        Ok(())
    };
    // Gradients come back as fresh tensors (torch.autograd.grad), as the trainer takes them:
    // nothing to zero and no accumulation, like PyTorch's zero_grad(set_to_none=True).
    let params = vs.trainable_variables();
    let fwdbwd = || -> Result<()> {
        let loss = tch::autocast(a.fp16, || -> Result<Tensor> {
            let f = vit.forward_features(&x, None, true)?;
            Ok(f.cls.to_kind(Kind::Float).pow_tensor_scalar(2).mean(None)
                + f.patches
                    .to_kind(Kind::Float)
                    .pow_tensor_scalar(2)
                    .mean(None))
        })?;
        let grads = Tensor::f_run_backward(&[&loss], &params, false, false)?;
        ensure!(grads.len() == params.len());
        Ok(())
    };
    let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        sync(device);
        let t = Instant::now();
        f()?;
        sync(device);
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    // Warm-up (allocator, kernels, thread pool).
    fwd()?;
    fwdbwd()?;
    let mut baselines = Vec::new();
    for b in &a.baselines {
        match b.as_str() {
            "none" => {}
            "dinov2" | "timm" => baselines.push(Baseline::start(&a, b, threads)?),
            other => bail!("unknown baseline {other:?} (expected dinov2, timm or none)"),
        }
    }
    println!(
        "{} batch {} at {}x{}, {:?}{}, {threads} threads, {} interleaved reps",
        a.arch,
        a.batch,
        a.size,
        a.size,
        device,
        if a.fp16 { " fp16 autocast" } else { " fp32" },
        a.reps
    );
    let n = 1 + baselines.len();
    let (mut f_runs, mut fb_runs) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    for rep in 0..a.reps {
        f_runs[0].push(time(&fwd)?);
        for (k, b) in baselines.iter_mut().enumerate() {
            f_runs[k + 1].push(b.step("fwd")?);
        }
        fb_runs[0].push(time(&fwdbwd)?);
        for (k, b) in baselines.iter_mut().enumerate() {
            fb_runs[k + 1].push(b.step("fwdbwd")?);
        }
        eprintln!(
            "rep {}/{}: forward {:.1} ms, forward+backward {:.1} ms (ours)",
            rep + 1,
            a.reps,
            f_runs[0][rep],
            fb_runs[0][rep]
        );
    }
    let names: Vec<String> = std::iter::once("dinov2-rs (tch)".to_string())
        .chain(baselines.iter().map(|b| b.name.clone()))
        .collect();
    let rows: Vec<Row> = names
        .into_iter()
        .zip(f_runs.into_iter().zip(fb_runs))
        .map(|(name, (f, fb))| Row {
            name,
            forward_ms: median(&f),
            forward_backward_ms: median(&fb),
            forward_runs: f,
            forward_backward_runs: fb,
        })
        .collect();
    println!("\n| contender | forward ms | fwd+bwd ms | ours / it (fwd) | ours / it (fwd+bwd) |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {:.2} |",
            r.name,
            r.forward_ms,
            r.forward_backward_ms,
            rows[0].forward_ms / r.forward_ms,
            rows[0].forward_backward_ms / r.forward_backward_ms
        );
    }
    let result = serde_json::json!({
        "arch": a.arch, "batch": a.batch, "size": a.size, "device": format!("{device:?}"),
        "fp16": a.fp16, "threads": threads, "reps": a.reps, "rows": rows,
    });
    let path = a.workdir.join("results.json");
    pipeline::atomic::write_atomic(&path, &serde_json::to_vec_pretty(&result)?)?;
    println!("\nwrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}
