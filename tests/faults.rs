//! Faults: SIGKILL at random points of a conversion, a pretraining and a probe, each rerun or
//! resumed until it completes, must end byte-identical to an uninterrupted run; a full disk
//! (ENOSPC) and a read-only output directory are clear errors that keep every finished shard
//! and the last good checkpoint, and a rerun after freeing space continues; two processes
//! aimed at one output directory are refused, never interleaved.
//!
//! The kill campaign tries `DINOV2_KILL_POINTS` points per job (default 4, the CI slice);
//! the README's figures come from
//! `DINOV2_KILL_POINTS=30 cargo test --release --test faults kill -- --nocapture`.
//! Disk faults run inside a user and mount namespace (`unshare -rm`) on a small tmpfs.

mod common;
use common::*;
use converters::synth::{SynthSpec, generate};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tree(dir: &Path, per_class: usize) {
    tree_of(dir, 3, per_class)
}

fn tree_of(dir: &Path, classes: usize, per_class: usize) {
    let spec = SynthSpec {
        classes,
        train_per_class: per_class,
        val_per_class: 4,
        mean_width: 90,
        mean_height: 80,
        ..SynthSpec::default()
    };
    generate(&dir.join("tree"), &spec).unwrap();
}

/// A command line for an output directory.
type ArgsFor = Box<dyn Fn(&Path) -> Vec<OsString>>;

/// A job of the campaign: its arguments for an output directory, the flag that resumes it,
/// and the files whose bytes must match (relative to the output directory).
struct Job {
    name: &'static str,
    args: ArgsFor,
    resume: &'static [&'static str],
    compared: fn(&Path) -> BTreeMap<String, Vec<u8>>,
}

/// Every file under `dir` (recursively) but the lock, by relative path.
fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != ".lock" {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A run's exports and checkpoints by bytes, and its metrics without timings.
fn run_outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = all_files(dir)
        .into_iter()
        .filter(|(k, _)| {
            k.ends_with(".safetensors") || k.ends_with("latest.json") || k.ends_with(".tmp")
        })
        .collect();
    let metrics = serde_json::to_vec(&metrics_without_timings(dir)).unwrap();
    out.insert("metrics.jsonl (without timings)".into(), metrics);
    out
}

fn run_to_end(args: &[OsString]) {
    let out = output(dinov2().args(args));
    assert!(
        out.status.success(),
        "dinov2 {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small deterministic generator for kill delays.
struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Kills `job` at `points` random moments (1 to 3 kills per trial, each followed by a rerun
/// or resume), then lets it finish; every trial must end byte-identical to the uninterrupted
/// run. Returns (kills that landed, trials, identical trials).
fn campaign(dir: &Path, job: &Job, points: usize, seed: u64) -> (usize, usize, usize) {
    let reference = dir.join(format!("{}-whole", job.name));
    let t = Instant::now();
    run_to_end(&(job.args)(&reference));
    let whole = t.elapsed().as_secs_f64();
    let expected = (job.compared)(&reference);
    assert!(!expected.is_empty(), "{}: nothing to compare", job.name);
    let mut rng = Lcg(seed);
    let (mut kills, mut trials, mut identical) = (0, 0, 0);
    while kills < points {
        trials += 1;
        let out = dir.join(format!("{}-trial{trials}", job.name));
        let _ = std::fs::remove_dir_all(&out);
        let per_trial = 1 + (rng.unit() * 3.0) as usize;
        for k in 0..per_trial {
            let mut args = (job.args)(&out);
            if k > 0 {
                args.extend(job.resume.iter().map(OsString::from));
            }
            let mut child = dinov2()
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let delay = Duration::from_secs_f64(whole * (0.05 + 0.9 * rng.unit()));
            let t = Instant::now();
            while t.elapsed() < delay && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            child.wait().unwrap();
        }
        let mut args = (job.args)(&out);
        args.extend(job.resume.iter().map(OsString::from));
        run_to_end(&args);
        let got = (job.compared)(&out);
        let same = got == expected;
        if !same {
            let differ: Vec<_> = expected
                .keys()
                .chain(got.keys())
                .filter(|k| expected.get(*k) != got.get(*k))
                .collect();
            panic!(
                "{} trial {trials}: differs from the uninterrupted run in {differ:?}",
                job.name
            );
        }
        identical += same as usize;
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!(
        "kill campaign {}: {kills} kills over {trials} trials, {identical} identical \
         (uninterrupted run {whole:.1} s)",
        job.name
    );
    (kills, trials, identical)
}

fn points() -> usize {
    std::env::var("DINOV2_KILL_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(name)
}

fn with_overrides(head: &[&str], cfg: &Path, overrides: &[String]) -> Vec<OsString> {
    let mut v: Vec<OsString> = head.iter().map(OsString::from).collect();
    v.push(cfg.into());
    for o in overrides {
        v.push("-o".into());
        v.push(o.into());
    }
    v
}

fn convert_job(data: &Path) -> Job {
    let root = data.join("tree/train");
    Job {
        name: "convert",
        args: Box::new(move |out| {
            args![
                "convert",
                "folder",
                "--root",
                root,
                "--out",
                out,
                "--format",
                "lmdb",
                "--shard-size",
                "8",
                "--workers",
                "1",
                "--max-side",
                "64"
            ]
            .iter()
            .map(|s| s.to_os_string())
            .collect()
        }),
        resume: &[],
        compared: all_files,
    }
}

fn pretrain_job(data: &Path) -> Job {
    let root = data.join("tree/train");
    Job {
        name: "pretrain",
        args: Box::new(move |out| {
            with_overrides(
                &["train", "-c"],
                &config("tiny_ssl_cpu.yaml"),
                &[
                    format!("train.dataset_path={}", root.display()),
                    format!("train.output_dir={}", out.display()),
                    "train.batch_size_per_gpu=8".into(),
                    "train.OFFICIAL_EPOCH_LENGTH=3".into(),
                    "train.saveckp_freq=1".into(),
                    "optim.epochs=3".into(),
                ],
            )
        }),
        resume: &["--resume"],
        compared: run_outputs,
    }
}

fn probe_job(data: &Path) -> Job {
    let root = data.join("tree");
    Job {
        name: "probe",
        args: Box::new(move |out| {
            with_overrides(
                &["train", "-c"],
                &config("tiny_lp_cpu.yaml"),
                &[
                    format!("DataLoader.Train.dataset.root={}", root.display()),
                    format!("DataLoader.Eval.dataset.root={}", root.display()),
                    "Model.class_num=6".into(),
                    format!("Global.output_dir={}", out.display()),
                    "Global.epochs=4".into(),
                    "DataLoader.Train.sampler.batch_size=8".into(),
                ],
            )
        }),
        resume: &["--resume"],
        compared: |d| run_outputs(&d.join("dinov2_custom_linearprobe")),
    }
}

#[test]
fn kill_campaign_conversion() {
    let d = scratch("faults_kill_convert");
    tree(&d, 100);
    let (kills, trials, same) = campaign(&d, &convert_job(&d), points(), 1);
    assert!(kills >= points() && same == trials);
}

#[test]
fn kill_campaign_pretraining() {
    let d = scratch("faults_kill_pretrain");
    tree(&d, 12);
    let (kills, trials, same) = campaign(&d, &pretrain_job(&d), points(), 2);
    assert!(kills >= points() && same == trials);
}

#[test]
fn kill_campaign_probe() {
    let d = scratch("faults_kill_probe");
    tree_of(&d, 6, 8);
    let (kills, trials, same) = campaign(&d, &probe_job(&d), points(), 3);
    assert!(kills >= points() && same == trials);
}

/// Runs `script` with `sh` inside a new user and mount namespace, where `$MNT` is a tmpfs of
/// `kb` KiB (remount it with `mount -o remount,size=...` to free space) and `$BIN` the binary.
/// Returns the script's stdout and stderr.
fn in_small_disk(mnt: &Path, kb: u64, script: &str) -> String {
    std::fs::create_dir_all(mnt).unwrap();
    let full = format!("mount -t tmpfs -o size={kb}k tmpfs \"$MNT\" || exit 97\n{script}");
    let out = output(
        Command::new("unshare")
            .args(["-rm", "sh", "-c", &full])
            .env("MNT", mnt)
            .env("BIN", env!("CARGO_BIN_EXE_dinov2")),
    );
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        out.status.code(),
        Some(97),
        "could not mount a tmpfs in a user namespace:\n{text}"
    );
    text
}

/// `job` into `out` as a line for the namespace's shell (`$BIN` is the binary).
fn shell_command(job: &Job, out: &str) -> String {
    let args: Vec<String> = (job.args)(Path::new(out))
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("\"$BIN\" {}", args.join(" "))
}

fn size_kb(dir: &Path) -> u64 {
    all_files(dir).values().map(|v| v.len() as u64).sum::<u64>() / 1024
}

#[test]
fn a_full_disk_keeps_finished_shards_and_a_rerun_continues() {
    let d = scratch("faults_enospc_convert");
    tree(&d, 24);
    let job = convert_job(&d);
    let whole = d.join("whole");
    run_to_end(&(job.args)(&whole));
    let expected = all_files(&whole);
    let kb = size_kb(&whole);
    let cmd = shell_command(&job, "$MNT/out");
    let copy = d.join("copy");
    let text = in_small_disk(
        &d.join("mnt"),
        kb / 2,
        &format!(
            "{cmd}; echo \"first rc=$?\"; ls \"$MNT/out\"; \
             mount -o remount,size={}k \"$MNT\"; {cmd} > /dev/null; echo \"second rc=$?\"; \
             cp -r \"$MNT/out\" {}",
            kb * 4,
            copy.display()
        ),
    );
    assert!(text.contains("first rc=1"), "{text}");
    assert!(
        (text.contains("No space left on device") || text.contains("disk full?"))
            && text.contains("train-0000"),
        "the error does not say what happened to which file:\n{text}"
    );
    assert!(
        !text.contains("panicked") && !text.contains("manifest.json\n"),
        "{text}"
    );
    assert!(text.contains("second rc=0"), "{text}");
    assert_eq!(all_files(&copy), expected, "{text}");
}

#[test]
fn a_full_disk_keeps_the_last_checkpoint_and_a_resume_continues() {
    let d = scratch("faults_enospc_train");
    tree(&d, 12);
    let job = pretrain_job(&d);
    let whole = d.join("whole");
    run_to_end(&(job.args)(&whole));
    let expected = run_outputs(&whole);
    let ckpt_kb = size_kb(&whole.join("checkpoints"));
    let cmd = shell_command(&job, "$MNT/out");
    let copy = d.join("copy");
    // Room for one checkpoint and the small files, not for the next one beside it.
    let text = in_small_disk(
        &d.join("mnt"),
        ckpt_kb * 3 / 2 + 64,
        &format!(
            "{cmd}; echo \"first rc=$?\"; cat \"$MNT/out/checkpoints/latest.json\"; echo; \
             mount -o remount,size={}k \"$MNT\"; {cmd} --resume > /dev/null; \
             echo \"second rc=$?\"; cp -r \"$MNT/out\" {}",
            ckpt_kb * 8,
            copy.display()
        ),
    );
    assert!(text.contains("first rc=1"), "{text}");
    assert!(
        text.contains("No space left on device") && text.contains("is intact"),
        "{text}"
    );
    assert!(
        text.contains("\"iteration\":"),
        "no good checkpoint kept:\n{text}"
    );
    assert!(text.contains("second rc=0"), "{text}");
    assert_eq!(run_outputs(&copy), expected);
}

#[test]
fn a_read_only_output_directory_is_a_clear_error() {
    let d = scratch("faults_read_only");
    tree(&d, 4);
    let conv = shell_command(&convert_job(&d), "$MNT/out");
    let train = shell_command(&pretrain_job(&d), "$MNT/run");
    let text = in_small_disk(
        &d.join("mnt"),
        4096,
        &format!(
            "mkdir \"$MNT/out\" \"$MNT/run\"; mount -o remount,ro \"$MNT\"; \
             {conv}; echo \"convert rc=$?\"; {train}; echo \"train rc=$?\""
        ),
    );
    for what in ["convert", "train"] {
        assert!(text.contains(&format!("{what} rc=1")), "{text}");
    }
    assert_eq!(
        text.matches("Read-only file system").count(),
        2,
        "each error should say why:\n{text}"
    );
    assert!(text.contains("/out") && text.contains("/run"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn two_writers_into_one_directory_are_refused() {
    let d = scratch("faults_two_writers");
    tree(&d, 12);
    let refused = |out: &std::process::Output, holder: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a second writer was let in");
        assert!(
            err.contains("in use by another process") && err.contains(holder),
            "{err}"
        );
    };

    // A directory held by another process (here this one) refuses a conversion; once it
    // is released, the conversion runs and ends like one into a fresh directory.
    let job = convert_job(&d);
    let (whole, shared) = (d.join("whole"), d.join("shared"));
    run_to_end(&(job.args)(&whole));
    let lock = pipeline::dir_lock::DirLock::acquire(&shared, "the test").unwrap();
    refused(&output(dinov2().args((job.args)(&shared))), "the test, pid");
    drop(lock);
    run_to_end(&(job.args)(&shared));
    assert_eq!(all_files(&shared), all_files(&whole));

    // A long pretraining holds its directory: a second training into it is refused, and
    // nothing it would have written appears.
    let run = d.join("run");
    let long = with_overrides(
        &["train", "-c"],
        &config("tiny_ssl_cpu.yaml"),
        &[
            format!("train.dataset_path={}", d.join("tree/train").display()),
            format!("train.output_dir={}", run.display()),
            "train.batch_size_per_gpu=8".into(),
            "optim.epochs=100".into(),
        ],
    );
    let mut first = dinov2()
        .args(&long)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !run.join("config.yaml").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the first run did not start"
        );
        assert!(first.try_wait().unwrap().is_none(), "the first run ended");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut second = long.clone();
    second.push("--resume".into());
    refused(
        &output(dinov2().args(&second)),
        "dinov2 train (pretraining), pid",
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run ended before the second was refused"
    );
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn a_full_disk_leaves_no_export_behind() {
    let d = scratch("faults_enospc_export");
    tree(&d, 12);
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/passl_vit_tiny.pdparams");
    let features = |out: &str| {
        format!(
            "\"$BIN\" features --weights {} --input {} --out \"$MNT/{out}\" --patch-tokens \
             --resize 64 --crop 56; echo \"{out} rc=$?\"",
            fixture.display(),
            d.join("tree/train").display()
        )
    };
    // 36 images of 16 patch tokens x 48 floats: about 110 KB, on a 32 KiB disk.
    let text = in_small_disk(
        &d.join("mnt"),
        32,
        &format!(
            "{}; {}; echo listing; ls -a \"$MNT\"; echo end-of-listing",
            features("f.safetensors"),
            features("f.npy")
        ),
    );
    for out in ["f.safetensors", "f.npy"] {
        assert!(text.contains(&format!("{out} rc=1")), "{text}");
    }
    assert!(
        text.contains("No space left on device") && text.contains("disk full?"),
        "{text}"
    );
    let listing = text
        .split("listing\n")
        .nth(1)
        .and_then(|l| l.split("end-of-listing").next())
        .unwrap();
    assert!(
        !listing.contains("f.") && !listing.contains(".tmp"),
        "a partial export was left:\n{listing}"
    );
}
