//! Data parallelism on CPU with Gloo, two processes on localhost started by `dinov2 launch`:
//! 2 ranks x batch B train the same linear probe as 1 rank x batch 2B; DINOv2 pretraining keeps
//! student and teacher identical across ranks and matches the doubled-batch single process;
//! a rank killed with SIGKILL makes the launcher stop the others and exit non-zero naming it.

mod common;
use common::*;
use converters::synth::{SynthSpec, generate};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn data(name: &str, classes: usize, per_class: usize) -> PathBuf {
    let dir = scratch(name);
    let spec = SynthSpec {
        classes,
        train_per_class: per_class,
        val_per_class: 4,
        mean_width: 80,
        mean_height: 70,
        ..SynthSpec::default()
    };
    generate(&dir.join("tree"), &spec).unwrap();
    dinov2_ok(args![
        "convert",
        "imagenet",
        "--root",
        dir.join("tree"),
        "--out",
        dir.join("arrow"),
        "--format",
        "arrow"
    ]);
    dir
}

fn os(v: Vec<String>) -> Vec<OsString> {
    v.into_iter().map(OsString::from).collect()
}

fn probe_args(data: &Path, out: &Path, batch: usize, epochs: u32) -> Vec<OsString> {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_lp_cpu.yaml");
    let root = data.join("arrow");
    let mut v = vec![
        "train".to_string(),
        "-c".into(),
        config.display().to_string(),
    ];
    for o in [
        format!("DataLoader.Train.dataset.root={}", root.display()),
        format!("DataLoader.Eval.dataset.root={}", root.display()),
        "DataLoader.Train.dataset.name=Shards".into(),
        "DataLoader.Eval.dataset.name=Shards".into(),
        "Model.class_num=6".into(),
        format!("Global.output_dir={}", out.display()),
        format!("Global.epochs={epochs}"),
        format!("DataLoader.Train.sampler.batch_size={batch}"),
        "DataLoader.Train.sampler.drop_last=True".into(),
        "DataLoader.Train.loader.num_workers=1".into(),
    ] {
        v.push("-o".into());
        v.push(o);
    }
    os(v)
}

fn launch(nproc: usize, cmd: &[OsString]) -> std::process::Output {
    let mut c = dinov2();
    c.args([
        "launch",
        "--nproc-per-node",
        &nproc.to_string(),
        "--timeout",
        "60",
        "--",
    ])
    .args(cmd);
    output(&mut c)
}

fn ok(o: &std::process::Output) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "failed ({:?}):\n{text}", o.status);
    text
}

/// Largest |a - b| over the tensors of two safetensors files (same names required).
fn max_diff(a: &Path, b: &Path) -> f64 {
    let (ta, tb) = (read_sorted_safetensors(a), read_sorted_safetensors(b));
    assert_eq!(ta.len(), tb.len());
    let mut worst = 0f64;
    for ((na, x), (nb, y)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert_eq!(x.size(), y.size(), "{na}");
        if x.is_floating_point() {
            worst = worst.max(f64::try_from((x - y).abs().max()).unwrap());
        }
    }
    worst
}

#[test]
fn probe_two_ranks_equal_one_rank_with_the_doubled_batch() {
    let d = data("ddp_probe", 6, 40);
    let one = d.join("one");
    let two = d.join("two");
    // 240 images: 15 steps per epoch either way; 2 epochs
    ok(&output(dinov2().args(probe_args(&d, &one, 16, 2))));
    let text = ok(&launch(2, &probe_args(&d, &two, 8, 2)));
    assert!(
        text.contains("data parallel: 2 processes x batch 8 (global batch 16)"),
        "{text}"
    );
    let ck = |o: &Path| o.join("dinov2_custom_linearprobe/checkpoints/epoch_2.safetensors");
    let diff = max_diff(&ck(&one), &ck(&two));
    println!(
        "probe heads + momentum, 2 ranks x 8 vs 1 rank x 16 after 30 steps: max |diff| {diff:.2e}"
    );
    assert!(diff < 1e-5, "max |diff| {diff}");
    // only rank 0 wrote the run's files; the metrics count the same steps
    let steps = |o: &Path| {
        std::fs::read_to_string(o.join("dinov2_custom_linearprobe/metrics.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"kind\":\"train\""))
            .count()
    };
    assert_eq!(steps(&one), steps(&two));
}

/// The pids of `parent`'s children whose environment has RANK=`rank`.
fn child_with_rank(parent: u32, rank: usize) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid: u32 = stat
            .rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        if ppid != parent {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env
            .split(|&b| b == 0)
            .any(|kv| kv == format!("RANK={rank}").as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_rank_stops_the_launch_naming_it() {
    let d = data("ddp_kill", 6, 40);
    let out = d.join("run");
    let mut c = dinov2();
    c.args(["launch", "--nproc-per-node", "2", "--timeout", "30", "--"])
        .args(probe_args(&d, &out, 8, 500))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let launcher = child.id();
    // wait until both ranks train (rank 0 has logged a training step)
    let metrics = out.join("dinov2_custom_linearprobe/metrics.jsonl");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&metrics).is_ok_and(|m| m.contains("\"kind\":\"train\"")) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the run did not start training"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child_with_rank(launcher, 1).expect("rank 1's process");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let killed = Instant::now();
    let o = child.wait_with_output().unwrap();
    let elapsed = killed.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    println!(
        "launcher exited {:?} {:.1}s after the kill",
        o.status.code(),
        elapsed.as_secs_f64()
    );
    assert!(!o.status.success());
    assert!(
        err.contains("rank 1") && err.contains("killed by signal 9 (SIGKILL)"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    // no process of the run is left
    std::thread::sleep(Duration::from_millis(200));
    assert!(child_with_rank(launcher, 0).is_none());
}

#[test]
fn launch_refuses_a_bad_world() {
    let o = output(dinov2().args([
        "launch",
        "--nproc-per-node",
        "2",
        "--nnodes",
        "2",
        "--",
        "train",
        "-c",
        "x.yaml",
    ]));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--nnodes 2 needs --master"));
    let o = output(dinov2().args(["launch", "--nproc-per-node", "2", "--", "doctor"]));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("launch runs `dinov2 train"));
    // a rank that cannot start (bad config) fails the launch with its rank named
    let o = output(dinov2().args([
        "launch",
        "--nproc-per-node",
        "2",
        "--timeout",
        "20",
        "--",
        "train",
        "-c",
        "/nonexistent.yaml",
    ]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("exited with status 1") && err.contains("/nonexistent.yaml"),
        "{err}"
    );
}
