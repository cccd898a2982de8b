//! `dinov2 demo`: the main job on a small built-in default, end to end on whatever machine
//! this is (a few minutes on 2 CPU cores):
//!
//! 1. the doctor's checks and a timed matmul on each device;
//! 2. a generated ImageNet-like tree (realistic JPEG sizes) → LMDB and Arrow shards;
//! 3. `bench data` on the shards for the `linear-train` and `dinov2` presets;
//! 4. a short DINOv2 pretraining of a tiny ViT (`configs/tiny_ssl_cpu.yaml`, built in);
//! 5. a linear probe and k-NN of its teacher, and of the same ViT at random initialisation;
//! 6. `summary.md` (tables) and PNG plots in the output folder, with the paths printed.
//!
//! Every stage is a real `dinov2` command run as a child process (their progress bars show);
//! a finished stage leaves `stages/NAME.json`, so a rerun after an interruption skips what was
//! done and resumes the rest (conversion and training resume from their own checkpoints).

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use trainer::metrics::{MetricsWriter, read_metrics};
use trainer::summary::{CURVES_FILE, SUMMARY_FILE, markdown_table};

/// The demo's pretraining and probe configs (the files in `configs/`), built in so that the
/// demo runs from any directory.
const SSL_CONFIG: &str = include_str!("../configs/tiny_ssl_cpu.yaml");
const PROBE_CONFIG: &str = include_str!("../configs/tiny_lp_cpu.yaml");

/// Sizes of the demo (`dinov2 demo --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Output folder (stages, shards, runs, summary.md, plots).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Images in the generated tree (10 classes; 80 % train, 20 % val).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(20..=1_000_000))]
    pub images: u64,
    /// Pretraining iterations (batch 32).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub iterations: u64,
    /// Linear-probe epochs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub probe_epochs: u32,
    /// Seconds of each data-pipeline benchmark.
    #[arg(long, default_value_t = 10.0)]
    pub bench_seconds: f64,
    /// Square matrix size of the device check.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(i64).range(16..=16384))]
    pub size: i64,
    /// Timed repetitions of the device check (the median is reported).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub reps: u32,
}

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

/// Runs a stage once: its result is kept in `stages/NAME.json` and reused by later runs.
fn stage(out: &Path, name: &str, title: &str, f: impl FnOnce() -> Result<Value>) -> Result<Value> {
    let path = out.join("stages").join(format!("{name}.json"));
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
    {
        eprintln!("\n== {title}: done in an earlier run ({})", path.display());
        return Ok(v);
    }
    eprintln!("\n== {title}");
    let t = Instant::now();
    let mut v = f().with_context(|| format!("demo stage {name:?}"))?;
    v["stage_seconds"] = json!(t.elapsed().as_secs_f64());
    pipeline::atomic::write_atomic(&path, &serde_json::to_vec_pretty(&v)?)?;
    Ok(v)
}

/// `dinov2 ARGS`: stderr shown (progress bars), stdout returned and kept in `logs/NAME.log`.
fn dinov2(out: &Path, log: &str, args: &[OsString]) -> Result<String> {
    let exe = std::env::current_exe().context("finding the dinov2 executable")?;
    let o = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    std::fs::create_dir_all(out.join("logs"))?;
    std::fs::write(out.join("logs").join(format!("{log}.log")), &stdout)?;
    if !o.status.success() {
        bail!(
            "`dinov2 {}` failed ({}):\n{stdout}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            o.status
        );
    }
    Ok(stdout)
}

fn os<I: IntoIterator<Item = S>, S: Into<OsString>>(v: I) -> Vec<OsString> {
    v.into_iter().map(Into::into).collect()
}

/// `-o key=value` pairs.
fn overrides(pairs: &[String]) -> Vec<OsString> {
    pairs
        .iter()
        .flat_map(|p| [OsString::from("-o"), OsString::from(p)])
        .collect()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// `dinov2 demo`.
pub fn run(a: &DemoArgs) -> Result<ExitCode> {
    ensure!(a.bench_seconds > 0.0, "--bench-seconds must be positive");
    let out = &a.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let t_all = Instant::now();

    // 1. machine
    let report = crate::doctor::collect(out);
    crate::doctor::print(&report);
    if !report.problems.is_empty() {
        bail!("the doctor found problems (listed above); fix them before running jobs");
    }
    let mut metrics = MetricsWriter::append(&out.join("metrics.jsonl"))?;
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

    // 2. tree and shards
    let tree = out.join("tree");
    let tree_info = stage(out, "tree", "generating an ImageNet-like tree", || {
        let per_class = (a.images as usize).div_ceil(10);
        let val = (per_class / 5).max(1);
        let spec = converters::synth::SynthSpec {
            classes: 10,
            train_per_class: per_class - val.min(per_class - 1),
            val_per_class: val.min(per_class - 1),
            ..converters::synth::SynthSpec::default()
        };
        converters::synth::generate_cached(&tree, &spec)?;
        let (n, bytes) = tree_size(&tree)?;
        eprintln!(
            "{n} JPEGs, {:.1} MB, in {}",
            bytes as f64 / 1e6,
            tree.display()
        );
        Ok(json!({"images": n, "bytes": bytes, "path": tree}))
    })?;
    let mut conversions = Vec::new();
    for format in ["lmdb", "arrow"] {
        let dir = out.join(format!("shards-{format}"));
        let v = stage(
            out,
            &format!("convert-{format}"),
            &format!("converting to {format}"),
            || {
                let text = dinov2(
                    out,
                    &format!("convert-{format}"),
                    &os([
                        "convert".into(),
                        "imagenet".into(),
                        "--root".into(),
                        tree.clone().into_os_string(),
                        "--out".into(),
                        dir.clone().into_os_string(),
                        "--format".into(),
                        format.into(),
                        "--json".into(),
                    ]),
                )?;
                let s: Value = serde_json::from_str(&text).context("convert --json output")?;
                Ok(json!({
                    "format": format, "path": dir, "images": s["images_processed"],
                    "seconds": s["seconds"], "bytes_read": s["bytes_read"],
                    "shards": s["manifest"]["splits"]
                        .as_object()
                        .map_or(0, |m| m.values().map(|v| v["shards"].as_array().map_or(0, |s| s.len())).sum::<usize>()),
                }))
            },
        )?;
        conversions.push(v);
    }
    let shards = out.join("shards-arrow");

    // 3. data pipeline
    let mut benches = Vec::new();
    for preset in ["linear-train", "dinov2"] {
        let v = stage(
            out,
            &format!("bench-{preset}"),
            &format!("data pipeline, {preset} preset"),
            || {
                let text = dinov2(
                    out,
                    &format!("bench-{preset}"),
                    &os([
                        "bench".into(),
                        "data".into(),
                        "--data".into(),
                        shards.clone().into_os_string(),
                        "--preset".into(),
                        preset.into(),
                        "--seconds".into(),
                        a.bench_seconds.to_string().into(),
                        "--json".into(),
                    ]),
                )?;
                serde_json::from_str(&text).context("bench data --json output")
            },
        )?;
        benches.push(v);
    }

    // 4. pretraining
    let configs = out.join("configs");
    std::fs::create_dir_all(&configs)?;
    let ssl_cfg = configs.join("tiny_ssl_cpu.yaml");
    let probe_cfg = configs.join("tiny_lp_cpu.yaml");
    pipeline::atomic::write_atomic(&ssl_cfg, SSL_CONFIG.as_bytes())?;
    pipeline::atomic::write_atomic(&probe_cfg, PROBE_CONFIG.as_bytes())?;
    let ssl = pretrain_dir(out);
    let epoch_len = 20u64;
    let pre = stage(
        out,
        "pretrain",
        "pretraining a tiny ViT (DINO + iBOT + KoLeo)",
        || {
            let mut args = os([
                "train".into(),
                "-c".into(),
                ssl_cfg.clone().into_os_string(),
            ]);
            args.extend(overrides(&[
                format!("train.dataset_path={}", shards.display()),
                format!("train.output_dir={}", ssl.display()),
                format!("train.OFFICIAL_EPOCH_LENGTH={epoch_len}"),
                format!("optim.epochs={}", a.iterations.div_ceil(epoch_len)),
                format!("train.max_iterations={}", a.iterations),
                // The learning check's recipe against collapse at this scale (README,
                // "Pretraining: learning check").
                "student.layerscale=1.0".into(),
                "train.centering=sinkhorn_knopp".into(),
                "teacher.warmup_teacher_temp=0.012".into(),
                "teacher.teacher_temp=0.012".into(),
            ]));
            if ssl.join("checkpoints/latest.json").exists() {
                args.push("--resume".into());
            }
            dinov2(out, "pretrain", &args)?;
            let recs: Vec<Value> = read_metrics(&ssl.join("metrics.jsonl"))?
                .into_iter()
                .filter(|r| r["kind"] == "pretrain")
                .collect();
            let (first, last) = (
                recs.first().cloned().unwrap_or_default(),
                recs.last().cloned().unwrap_or_default(),
            );
            Ok(json!({
                "iterations": last["iteration"], "first_loss": first["total_loss"], "last_loss": last["total_loss"],
                "teacher_entropy": last["teacher_entropy"], "teacher_marginal_entropy": last["teacher_marginal_entropy"],
                "images_per_s": last["images_per_s"], "teacher": ssl.join("teacher_backbone.safetensors"),
                "curves": ssl.join(CURVES_FILE),
            }))
        },
    )?;

    // 5. probes
    let mut probes = Vec::new();
    for (name, weights) in [
        ("pretrained", Some(ssl.join("teacher_backbone.safetensors"))),
        ("random", None),
    ] {
        let dir = probe_dir(out, name);
        let v = stage(
            out,
            &format!("probe-{name}"),
            &format!("linear probe + k-NN, {name} backbone"),
            || {
                let mut o = vec![
                    format!("DataLoader.Train.dataset.root={}", shards.display()),
                    format!("DataLoader.Eval.dataset.root={}", shards.display()),
                    "DataLoader.Train.dataset.name=Shards".into(),
                    "DataLoader.Eval.dataset.name=Shards".into(),
                    format!("Global.output_dir={}", dir.display()),
                    format!("Global.epochs={}", a.probe_epochs),
                    "Model.class_num=10".into(),
                    "Model.backbone.embed_dim=64".into(),
                    "Model.backbone.depth=4".into(),
                    "Model.backbone.num_heads=4".into(),
                    "Model.backbone.patch_size=8".into(),
                    "Model.backbone.img_size=32".into(),
                    "DataLoader.Train.dataset.transform.0.RandomResizedCrop.size=32".into(),
                    "DataLoader.Eval.dataset.transform.0.Resize.size=36".into(),
                    "DataLoader.Eval.dataset.transform.1.CenterCrop.size=32".into(),
                    "KNN.enabled=true".into(),
                    "KNN.nb_knn=[10, 20]".into(),
                ];
                if let Some(w) = &weights {
                    o.push(format!("Global.pretrained_model={}", w.display()));
                }
                let run_dir = probe_run_dir(out, name);
                let mut args = os([
                    "train".into(),
                    "-c".into(),
                    probe_cfg.clone().into_os_string(),
                ]);
                args.extend(overrides(&o));
                if run_dir.join("checkpoints/latest.json").exists() {
                    args.push("--resume".into());
                }
                dinov2(out, &format!("probe-{name}"), &args)?;
                let recs = read_metrics(&run_dir.join("metrics.jsonl"))?;
                let best = recs
                    .iter()
                    .filter(|r| r["kind"] == "eval")
                    .filter_map(|r| r["top1"].as_f64())
                    .fold(f64::NAN, f64::max);
                let knn: Vec<Value> = recs
                    .iter()
                    .filter(|r| r["kind"] == "knn")
                    .cloned()
                    .collect();
                Ok(json!({
                    "backbone": name, "best_top1": best, "knn": knn,
                    "summary": run_dir.join(SUMMARY_FILE), "curves": run_dir.join(CURVES_FILE),
                }))
            },
        )?;
        probes.push(v);
    }

    // 6. summary and plots
    let all = json!({
        "doctor": report, "matmul": matmul, "tree": tree_info, "conversions": conversions,
        "data": benches, "pretraining": pre, "probes": probes,
    });
    let summary_json = out.join(SUMMARY_JSON);
    let written = write_outputs(out, &all)?;
    pipeline::atomic::write_atomic(&summary_json, &serde_json::to_vec_pretty(&all)?)?;
    println!("\n{}", written.markdown);
    println!("finished in {:.0} s", t_all.elapsed().as_secs_f64());
    written.print_paths(out);
    println!("all results:     {}", summary_json.display());
    Ok(ExitCode::SUCCESS)
}

/// The demo's results file: every stage's figures, written when the last stage is done.
const SUMMARY_JSON: &str = "summary.json";

/// The pretraining run of the demo in `out`.
fn pretrain_dir(out: &Path) -> PathBuf {
    out.join("pretrain")
}

/// The linear-probe run (its `Global.output_dir`) of the demo's `name` backbone.
fn probe_dir(out: &Path, name: &str) -> PathBuf {
    out.join(format!("probe-{name}"))
}

/// The run directory the probe writes under its `Global.output_dir` (`Model.name` of
/// `configs/tiny_lp_cpu.yaml`).
fn probe_run_dir(out: &Path, name: &str) -> PathBuf {
    probe_dir(out, name).join("dinov2_custom_linearprobe")
}

/// Whether `dir` is the output folder of `dinov2 demo` (finished or not).
pub fn is_demo_dir(dir: &Path) -> bool {
    dir.join("stages").join("tree.json").is_file()
}

/// What [`write_outputs`] wrote.
struct Outputs {
    markdown: String,
    summary_md: PathBuf,
    pngs: Vec<PathBuf>,
}

impl Outputs {
    fn print_paths(&self, out: &Path) {
        println!("summary:         {}", self.summary_md.display());
        for (i, png) in self.pngs.iter().enumerate() {
            let label = if i == 0 { "plots:" } else { "" };
            println!("{label:<16} {}", png.display());
        }
        println!(
            "teacher weights: {}",
            pretrain_dir(out)
                .join("teacher_backbone.safetensors")
                .display()
        );
    }
}

/// `summary.md` and the demo's own plots from its results (`summary.json`'s layout); the
/// runs' plots are listed with them.
fn write_outputs(out: &Path, all: &Value) -> Result<Outputs> {
    let empty = Vec::new();
    let list = |k: &str| all[k].as_array().unwrap_or(&empty);
    let throughput_png = out.join("data_throughput.png");
    let mut bars = Vec::new();
    for b in list("data") {
        let p = b["preset"].as_str().unwrap_or("?").to_string();
        for (k, label) in [
            ("read_ms", "read"),
            ("decode_ms", "decode"),
            ("augment_ms", "augment"),
        ] {
            bars.push((format!("{p}: {label}"), f(&b["stages"], k)));
        }
    }
    trainer::plot::bar_chart(
        &throughput_png,
        "data pipeline: time per image and stage (summed over workers)",
        "ms per image",
        &bars,
    )?;
    let probe_png = out.join("probe_accuracy.png");
    trainer::plot::bar_chart(
        &probe_png,
        "linear probe and k-NN top-1 (%)",
        "top-1 %",
        &list("probes")
            .iter()
            .flat_map(|p| {
                let name = p["backbone"].as_str().unwrap_or("?").to_string();
                let mut v = vec![(format!("{name}: linear"), 100.0 * f(p, "best_top1"))];
                for k in p["knn"].as_array().into_iter().flatten() {
                    v.push((format!("{name}: k-NN k={}", k["k"]), 100.0 * f(k, "top1")));
                }
                v
            })
            .collect::<Vec<_>>(),
    )?;
    let markdown = summary_markdown(all);
    let summary_md = out.join(SUMMARY_FILE);
    pipeline::atomic::write_atomic(&summary_md, markdown.as_bytes())?;
    let mut pngs = vec![
        throughput_png,
        probe_png,
        pretrain_dir(out).join(CURVES_FILE),
    ];
    for p in list("probes") {
        if let Some(name) = p["backbone"].as_str() {
            pngs.push(probe_run_dir(out, name).join(CURVES_FILE));
        }
    }
    Ok(Outputs {
        markdown,
        summary_md,
        pngs,
    })
}

/// `dinov2 report DIR` on a demo folder: the pretraining and probe runs' reports from their
/// metrics, then the demo's summary and plots from `summary.json`.
pub fn report(out: &Path) -> Result<ExitCode> {
    let summary_json = out.join(SUMMARY_JSON);
    let bytes = match std::fs::read(&summary_json) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} is the folder of a `dinov2 demo` that has not finished (no {SUMMARY_JSON}): \
             `dinov2 demo --out {}` resumes it",
            out.display(),
            out.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", summary_json.display())),
    };
    let all: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not the demo's JSON", summary_json.display()))?;
    ensure!(
        all["probes"].is_array() && all["pretraining"].is_object(),
        "{} is not a `dinov2 demo` results file (no \"probes\" / \"pretraining\")",
        summary_json.display()
    );
    trainer::ssl::report::render(&pretrain_dir(out))?;
    for p in all["probes"].as_array().into_iter().flatten() {
        if let Some(name) = p["backbone"].as_str() {
            trainer::summary::run_report(&probe_run_dir(out, name))?;
        }
    }
    let written = write_outputs(out, &all)?;
    println!("{}", written.markdown);
    written.print_paths(out);
    Ok(ExitCode::SUCCESS)
}

fn tree_size(dir: &Path) -> Result<(u64, u64)> {
    let (mut n, mut bytes) = (0u64, 0u64);
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            let (a, b) = tree_size(&e.path())?;
            n += a;
            bytes += b;
        } else if !e.file_name().to_string_lossy().starts_with('.') {
            n += 1;
            bytes += m.len();
        }
    }
    Ok((n, bytes))
}

fn summary_markdown(all: &Value) -> String {
    let empty = Vec::new();
    let list = |k: &str| all[k].as_array().unwrap_or(&empty);
    let (tree, pre) = (&all["tree"], &all["pretraining"]);
    let (conversions, benches, probes) = (list("conversions"), list("data"), list("probes"));
    let n = |v: &Value, d: usize| match v.as_f64() {
        Some(x) => format!("{x:.d$}"),
        None => "–".into(),
    };
    let mut s = String::from("# dinov2 demo\n\n");
    s += &format!(
        "Generated tree: {} JPEGs, {:.1} MB (ImageNet-like sizes), 10 classes.\n\n",
        tree["images"],
        f(tree, "bytes") / 1e6
    );
    s += "## Device check\n\n";
    s += &markdown_table(
        &["device", "fp32 matmul", "ms", "GFLOP/s"],
        &list("matmul")
            .iter()
            .map(|m| {
                vec![
                    m["device"].as_str().unwrap_or("?").into(),
                    format!("{0}x{0}", m["size"]),
                    n(&m["median_ms"], 2),
                    n(&m["gflops"], 1),
                ]
            })
            .collect::<Vec<_>>(),
    );
    s += "\n## Conversion\n\n";
    s += &markdown_table(
        &[
            "format",
            "images",
            "shards",
            "seconds",
            "images/s",
            "MB/s read",
        ],
        &conversions
            .iter()
            .map(|c| {
                let secs = f(c, "seconds");
                vec![
                    c["format"].as_str().unwrap_or("?").into(),
                    c["images"].to_string(),
                    c["shards"].to_string(),
                    format!("{secs:.2}"),
                    format!("{:.0}", f(c, "images") / secs),
                    format!("{:.1}", f(c, "bytes_read") / 1e6 / secs),
                ]
            })
            .collect::<Vec<_>>(),
    );
    s += "\n## Data pipeline (Arrow shards)\n\n";
    s += &markdown_table(
        &[
            "preset",
            "workers",
            "batch",
            "images/s",
            "crops/s",
            "MB/s",
            "CPU use",
            "read ms",
            "decode ms",
            "augment ms",
        ],
        &benches
            .iter()
            .map(|b| {
                vec![
                    b["preset"].as_str().unwrap_or("?").into(),
                    b["workers"].to_string(),
                    b["batch"].to_string(),
                    n(&b["images_per_s"], 1),
                    n(&b["crops_per_s"], 0),
                    n(&b["mb_per_s"], 1),
                    n(&b["cpu_utilisation"], 2),
                    n(&b["stages"]["read_ms"], 3),
                    n(&b["stages"]["decode_ms"], 2),
                    n(&b["stages"]["augment_ms"], 2),
                ]
            })
            .collect::<Vec<_>>(),
    );
    s += "\n## Pretraining (tiny ViT, 4 blocks of width 64, patch 8; 2x32 + 2x16 px crops)\n\n";
    s += &markdown_table(
        &[
            "iterations",
            "first loss",
            "last loss",
            "teacher entropy / image",
            "batch-marginal entropy",
            "images/s",
        ],
        &[vec![
            pre["iterations"].to_string(),
            n(&pre["first_loss"], 3),
            n(&pre["last_loss"], 3),
            n(&pre["teacher_entropy"], 3),
            n(&pre["teacher_marginal_entropy"], 3),
            n(&pre["images_per_s"], 1),
        ]],
    );
    s += "\n## Linear probe and k-NN (val split)\n\n";
    s += &markdown_table(
        &["backbone", "linear top-1 (best)", "k-NN k=10", "k-NN k=20"],
        &probes
            .iter()
            .map(|p| {
                let knn = |k: u64| {
                    p["knn"]
                        .as_array()
                        .and_then(|v| v.iter().find(|r| r["k"].as_u64() == Some(k)))
                        .map_or("–".to_string(), |r| {
                            format!("{:.1} %", 100.0 * f(r, "top1"))
                        })
                };
                vec![
                    p["backbone"].as_str().unwrap_or("?").into(),
                    format!("{:.1} %", 100.0 * f(p, "best_top1")),
                    knn(10),
                    knn(20),
                ]
            })
            .collect::<Vec<_>>(),
    );
    s += "\n## Stage times\n\n";
    let mut rows = vec![vec!["tree".to_string(), n(&tree["stage_seconds"], 1)]];
    for c in conversions {
        rows.push(vec![
            format!("convert {}", c["format"].as_str().unwrap_or("?")),
            n(&c["stage_seconds"], 1),
        ]);
    }
    for b in benches {
        rows.push(vec![
            format!("bench {}", b["preset"].as_str().unwrap_or("?")),
            n(&b["stage_seconds"], 1),
        ]);
    }
    rows.push(vec!["pretraining".into(), n(&pre["stage_seconds"], 1)]);
    for p in probes {
        rows.push(vec![
            format!("probe {}", p["backbone"].as_str().unwrap_or("?")),
            n(&p["stage_seconds"], 1),
        ]);
    }
    s += &markdown_table(&["stage", "seconds"], &rows);
    s
}
