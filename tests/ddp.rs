//! Data parallelism on CPU with Gloo, two processes on localhost started by `dinov2 launch`:
//! 2 ranks x batch B train the same linear probe as 1 rank x batch 2B; DINOv2 pretraining keeps
//! student and teacher identical across ranks and matches the doubled-batch single process;
//! a rank killed with SIGKILL makes the launcher stop the others and exit non-zero naming it.

mod common;
use common::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn data(name: &str, classes: usize, per_class: usize) -> PathBuf {
    small_arrow_set(name, classes, per_class, 4)
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

fn ssl_args(data: &Path, out: &Path, batch: usize, extra: &[&str]) -> Vec<OsString> {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let mut v = vec![
        "train".to_string(),
        "-c".into(),
        config.display().to_string(),
    ];
    for o in [
        format!("train.dataset_path={}", data.join("arrow").display()),
        format!("train.output_dir={}", out.display()),
        format!("train.batch_size_per_gpu={batch}"),
        "train.OFFICIAL_EPOCH_LENGTH=3".into(),
        "train.saveckp_freq=1".into(),
        "train.num_workers=1".into(),
        "optim.epochs=2".into(),
        "optim.warmup_epochs=1".into(),
    ]
    .into_iter()
    .chain(extra.iter().map(|s| s.to_string()))
    {
        v.push("-o".into());
        v.push(o);
    }
    os(v)
}

/// (name, tensor) of a pretraining checkpoint whose name starts with `prefix`.
fn tensors_with(path: &Path, prefix: &str) -> Vec<(String, tch::Tensor)> {
    read_sorted_safetensors(path)
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .collect()
}

fn diffs(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut max, mut sum, mut n) = (0f64, 0f64, 0f64);
    for ((na, x), (nb, y)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        let d = (x.to_kind(tch::Kind::Double) - y.to_kind(tch::Kind::Double)).abs();
        max = max.max(f64::try_from(d.max()).unwrap());
        sum += f64::try_from(d.sum(tch::Kind::Double)).unwrap();
        n += x.numel() as f64;
    }
    (max, sum / n)
}

#[test]
fn pretraining_two_ranks_match_one_rank_with_the_doubled_batch() {
    exact_match("ddp_ssl", "centering");
}

#[test]
fn pretraining_with_sinkhorn_knopp_two_ranks_match_one_rank() {
    // the Sinkhorn-Knopp sums (and the max shift) run over both ranks' teacher outputs
    exact_match("ddp_ssl_sk", "sinkhorn_knopp");
}

fn exact_match(name: &str, centering: &str) {
    let d = data(name, 3, 16);
    let centering = format!("train.centering={centering}");
    // The per-rank parts of DINOv2 (KoLeo over the local batch, iBOT masks drawn per rank,
    // stochastic depth) are off: then 2 ranks x 4 compute exactly what 1 rank x 8 does.
    let exact = [
        "dino.koleo_loss_weight=0",
        "ibot.loss_weight=0",
        "ibot.mask_sample_probability=0",
        "student.drop_path_rate=0",
        // image-dependent features from the start, so that the centre and the Sinkhorn-Knopp
        // targets depend on the whole global batch (a rank-local reduction shows)
        "student.layerscale=1.0",
        &centering,
    ];
    let one = d.join("one");
    let two = d.join("two");
    ok(&output(dinov2().args(ssl_args(&d, &one, 8, &exact))));
    let text = ok(&launch(2, &ssl_args(&d, &two, 4, &exact)));
    assert!(text.contains("batch 4 per process x 2 processes"), "{text}");
    let ck = |o: &Path| o.join("checkpoints/iter_6.safetensors");
    for (what, prefix, max_bound, mean_bound) in [
        ("DINO centre", "loss.dino_center", 1e-6, 1e-7),
        ("teacher", "teacher.", 1e-6, 1e-8),
        ("student", "student.", 1e-4, 1e-7),
    ] {
        let (max, mean) = diffs(
            &tensors_with(&ck(&one), prefix),
            &tensors_with(&ck(&two), prefix),
        );
        println!(
            "{what}: 2 ranks x 4 vs 1 rank x 8 after 6 iterations: max |diff| {max:.2e}, mean {mean:.2e}"
        );
        assert!(
            max < max_bound && mean < mean_bound,
            "{what}: max {max} mean {mean}"
        );
    }
}

#[test]
fn pretraining_ranks_stay_identical_with_every_term_on() {
    let d = data("ddp_ssl_full", 3, 16);
    let out = d.join("run");
    ok(&launch(2, &ssl_args(&d, &out, 4, &[])));
    let checks: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["kind"] == "ddp_check")
        .collect();
    assert_eq!(
        checks.len(),
        2,
        "one check per checkpoint (iterations 3 and 6)"
    );
    assert!(
        checks.iter().all(|r| r["ranks_identical"] == true),
        "{checks:?}"
    );
    assert!(out.join("teacher_backbone.safetensors").is_file());
}

#[test]
fn a_one_process_launch_runs_every_collective_and_changes_no_number() {
    // As under torchrun, a launched process joins a process group even alone (on one GPU that
    // is the only way to run NCCL); a world of one must give exactly the plain run's numbers.
    let d = data("ddp_world_one", 3, 8);
    let (plain, launched) = (d.join("plain"), d.join("launched"));
    ok(&output(dinov2().args(ssl_args(&d, &plain, 4, &[]))));
    ok(&launch(1, &ssl_args(&d, &launched, 4, &[])));
    let records = |o: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(o.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b) = (records(&plain), records(&launched));
    let last =
        |r: &[serde_json::Value]| r.iter().rfind(|x| x["kind"] == "pretrain").unwrap().clone();
    assert_eq!(last(&a)["backend"], serde_json::Value::Null);
    assert_eq!(last(&b)["backend"], "gloo");
    assert_eq!(last(&a)["total_loss"], last(&b)["total_loss"]);
    assert!(
        b.iter()
            .any(|r| r["kind"] == "ddp_check" && r["ranks_identical"] == true)
    );
    let ck = |o: &Path| read_sorted_safetensors(&o.join("checkpoints/iter_6.safetensors"));
    let (max, _) = diffs(&ck(&plain), &ck(&launched));
    assert_eq!(max, 0.0, "a world of one changed the weights");
}
