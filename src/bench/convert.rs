//! `dinov2 bench convert`: tree -> shards conversion against a python-lmdb writer, on a generated
//! tree of ImageNet-sized JPEGs, interleaved repetitions and medians.

use super::shared::{default_python, median};
use anyhow::{Context, Result, bail};
use converters::convert::{ConvertArgs, OnError, convert};
use converters::prepare::Validate;
use converters::source::plan_folder;
use converters::synth::{SynthSpec, ValLayout, generate_cached};
use pipeline::shards::ShardFormat;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const PY_BASELINE: &str = include_str!("../../bench/python_lmdb_writer.py");

#[derive(Debug, Clone, Serialize)]
struct Row {
    name: String,
    runs: Vec<f64>,
    median_images_per_s: f64,
    median_mb_per_s: f64,
}

pub fn run(
    images: usize,
    classes: usize,
    workdir: &Path,
    workers: Option<usize>,
    reps: usize,
    python: Option<PathBuf>,
) -> Result<ExitCode> {
    if classes == 0 || images < classes || reps == 0 {
        bail!("need --images >= --classes >= 1 and --reps >= 1");
    }
    let python = python.unwrap_or_else(default_python);
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let spec = SynthSpec {
        classes,
        train_per_class: images / classes,
        val_per_class: 0,
        val_layout: ValLayout::Folders,
        ..SynthSpec::default()
    };
    let train = generate_cached(&workdir.join("tree"), &spec)?;
    // Warm the page cache so every contender reads from memory.
    let mut total_bytes = 0u64;
    let mut n_images = 0usize;
    for class in std::fs::read_dir(&train)? {
        for f in std::fs::read_dir(class?.path())? {
            total_bytes += std::fs::read(f?.path())?.len() as u64;
            n_images += 1;
        }
    }
    let script = write_python_writer(workdir)?;
    println!(
        "tree: {n_images} JPEGs, mean {:.0} KB; {workers} converter threads; {reps} interleaved reps",
        total_bytes as f64 / n_images as f64 / 1e3
    );

    type Contender<'a> = (&'a str, Box<dyn Fn(&Path) -> Result<f64> + 'a>);
    let ours = |format: ShardFormat, max_side: Option<u32>, validate: Validate| {
        let train = train.clone();
        Box::new(move |out: &Path| -> Result<f64> {
            let t = Instant::now();
            let plan = plan_folder(&train, "train")?;
            let args = ConvertArgs {
                out: out.to_path_buf(),
                format,
                shard_size: 1000,
                workers,
                max_side,
                quality: 90,
                on_error: OnError::Skip,
                validate,
                progress: false,
            };
            let s = convert(&plan, &args)?;
            Ok(s.images_processed as f64 / t.elapsed().as_secs_f64())
        }) as Box<dyn Fn(&Path) -> Result<f64>>
    };
    let py = |validate: &'static str| {
        let (python, script, train) = (python.clone(), script.clone(), train.clone());
        Box::new(move |out: &Path| python_writer(&python, &script, &train, out, validate))
            as Box<dyn Fn(&Path) -> Result<f64>>
    };
    let contenders: Vec<Contender> = vec![
        ("python-lmdb, PIL header only", py("header")),
        ("python-lmdb, PIL decode", py("decode")),
        (
            "dinov2 lmdb, --validate decode",
            ours(ShardFormat::Lmdb, None, Validate::Decode),
        ),
        (
            "dinov2 arrow, --validate decode",
            ours(ShardFormat::Arrow, None, Validate::Decode),
        ),
        (
            "dinov2 lmdb, --validate structure",
            ours(ShardFormat::Lmdb, None, Validate::Structure),
        ),
        (
            "dinov2 arrow, --validate structure",
            ours(ShardFormat::Arrow, None, Validate::Structure),
        ),
        (
            "dinov2 lmdb, --max-side 256",
            ours(ShardFormat::Lmdb, Some(256), Validate::Decode),
        ),
    ];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for rep in 0..reps {
        for (k, (name, f)) in contenders.iter().enumerate() {
            let out = workdir.join(format!("out-{k}"));
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out)?;
            let r = f(&out).with_context(|| format!("contender {name}"))?;
            eprintln!("rep {}/{reps}: {name}: {r:.0} images/s", rep + 1);
            runs[k].push(r);
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    let mb_per_image = total_bytes as f64 / n_images as f64 / 1e6;
    let rows: Vec<Row> = contenders
        .iter()
        .zip(runs)
        .map(|((name, _), runs)| {
            let m = median(&runs);
            Row {
                name: name.to_string(),
                median_images_per_s: m,
                median_mb_per_s: m * mb_per_image,
                runs,
            }
        })
        .collect();
    let (base_header, base_decode) = (rows[0].median_images_per_s, rows[1].median_images_per_s);
    println!(
        "\n| contender | images/s (median) | MB/s | vs python header-only | vs python decode |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {:.2}x |",
            r.name,
            r.median_images_per_s,
            r.median_mb_per_s,
            r.median_images_per_s / base_header,
            r.median_images_per_s / base_decode
        );
    }
    let result = serde_json::json!({
        "images": n_images, "mean_bytes": total_bytes as f64 / n_images as f64,
        "workers": workers, "reps": reps, "rows": rows,
    });
    let path = workdir.join("results.json");
    pipeline::atomic::write_atomic(&path, &serde_json::to_vec_pretty(&result)?)?;
    println!("\nwrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the python-lmdb writer (`bench/python_lmdb_writer.py`) into `dir`; its path.
pub fn write_python_writer(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let script = dir.join("python_lmdb_writer.py");
    std::fs::write(&script, PY_BASELINE)?;
    Ok(script)
}

/// The python-lmdb writer `script` run by `python` on the class folders of `root` into
/// `out/data.lmdb`, checking each image by `validate` (`header` or `decode`): its images/s.
pub fn python_writer(
    python: &Path,
    script: &Path,
    root: &Path,
    out: &Path,
    validate: &str,
) -> Result<f64> {
    let o = Command::new(python)
        .arg(script)
        .arg("--root")
        .arg(root)
        .arg("--out")
        .arg(out.join("data.lmdb"))
        .args(["--validate", validate])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !o.status.success() {
        bail!(
            "python baseline failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    v["images_per_s"]
        .as_f64()
        .context("baseline printed no images_per_s")
}
