//! Cluster limits and hostile data: LMDB conversion and loading under an address-space limit
//! (`ulimit -v`), decompression bombs refused before any pixel memory is allocated (folder
//! datasets, unvalidated shards, the converter), and a pretraining run that skips a bad record
//! and still resumes bit-identically.

mod common;
use common::*;
use converters::synth::{SynthSpec, generate};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A shell command line running `dinov2 ARGS` under `ulimit -v KB`.
fn limited(kb: u64, args: &[&str]) -> Command {
    limited_files(kb, 20000, args)
}

/// ... and `ulimit -n FILES`.
fn limited_files(kb: u64, files: u64, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "ulimit -v {kb} && ulimit -n {files} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_dinov2"))
        .args(args);
    c
}

fn tree(name: &str, classes: usize, per_class: usize) -> PathBuf {
    let dir = scratch(name);
    let spec = SynthSpec {
        classes,
        train_per_class: per_class,
        val_per_class: 0,
        mean_width: 120,
        mean_height: 100,
        ..SynthSpec::default()
    };
    generate(&dir.join("tree"), &spec).unwrap();
    dir
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Address space for the tests: libtorch and its CUDA libraries take about 2 GB of it to
/// load; the old writer reserved 1 TiB per LMDB shard.
const LIMIT_KB: u64 = 4_000_000;

#[test]
fn lmdb_conversion_and_loading_work_under_address_space_and_file_limits() {
    let d = tree("rel_ulimit", 3, 20);
    let s = |p: PathBuf| p.display().to_string();
    let out = output(&mut limited(
        LIMIT_KB,
        &[
            "convert",
            "folder",
            "--root",
            &s(d.join("tree/train")),
            "--out",
            &s(d.join("lmdb")),
            "--format",
            "lmdb",
            "--shard-size",
            "2",
        ],
    ));
    assert!(out.status.success(), "{}", text(&out));
    // 30 shards, each an open file and a map while open, read with 24 open files at most:
    // the loader keeps a quarter of that open and closes the least recently used.
    let out = output(&mut limited_files(
        LIMIT_KB,
        24,
        &[
            "bench",
            "data",
            "--data",
            &s(d.join("lmdb")),
            "--batch",
            "4",
            "--seconds",
            "0.5",
            "--workers",
            "2",
        ],
    ));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("images/s"), "{}", text(&out));
}

/// `jpeg` with the frame header's height and width set to `h` x `w` (the scan is unchanged:
/// a decoder that believed the header would allocate `w * h * 3` bytes).
fn claim_size(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut b = jpeg.to_vec();
    let sof = (2..b.len() - 8)
        .find(|&i| b[i] == 0xFF && matches!(b[i + 1], 0xC0..=0xC2))
        .expect("a frame header");
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

/// The first image of `dir`'s first class folder.
fn first_image(dir: &Path) -> PathBuf {
    let class = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .min()
        .unwrap();
    std::fs::read_dir(&class)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap()
}

/// Replaces the first image of `dir` with a bomb; returns its path.
fn plant_bomb(dir: &Path) -> PathBuf {
    let file = first_image(dir);
    let bomb = claim_size(&std::fs::read(&file).unwrap(), 65000, 65000);
    std::fs::write(&file, bomb).unwrap();
    file
}

fn assert_refused(out: &std::process::Output, started: std::time::Instant) {
    let t = text(out);
    assert!(!out.status.success(), "a bomb was accepted:\n{t}");
    assert!(
        t.contains("65000 x 65000") && t.contains("over the limit"),
        "no clear error:\n{t}"
    );
    assert!(
        t.contains("record"),
        "the error does not name the record:\n{t}"
    );
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_decompression_bomb_is_refused_before_any_allocation() {
    let d = tree("rel_bomb", 2, 6);
    let train = d.join("tree/train");
    let bomb = plant_bomb(&train);
    let s = |p: &Path| p.display().to_string();
    let bench = |data: &Path| {
        limited(
            LIMIT_KB,
            &[
                "bench",
                "data",
                "--data",
                &s(data),
                "--batch",
                "12",
                "--seconds",
                "0.5",
                "--workers",
                "2",
            ],
        )
    };
    // A plain folder dataset is never validated: the loader meets the bomb.
    let t = std::time::Instant::now();
    assert_refused(&output(&mut bench(&train)), t);

    // The converter skips it, whatever the validation, and says why.
    let conv = |out: &Path, env: Option<&str>| {
        let mut c = dinov2();
        c.args(["convert", "folder", "--root", &s(&train), "--out", &s(out)])
            .args(["--format", "lmdb", "--validate", "none"]);
        if let Some(v) = env {
            c.env("DINOV2_MAX_IMAGE_PIXELS", v);
        }
        output(&mut c)
    };
    let out = conv(&d.join("checked"), None);
    assert!(out.status.success(), "{}", text(&out));
    let report = std::fs::read_to_string(d.join("checked/report.json")).unwrap();
    assert!(report.contains("too many pixels"), "{report}");
    assert!(
        report.contains(bomb.file_name().unwrap().to_str().unwrap()),
        "{report}"
    );

    // Shards written without the limit hold it: the loader refuses it on reading.
    let out = conv(&d.join("unchecked"), Some("0"));
    assert!(out.status.success(), "{}", text(&out));
    let t = std::time::Instant::now();
    assert_refused(&output(&mut bench(&d.join("unchecked"))), t);
}

fn ssl_run(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let mut c = dinov2();
    c.arg("train").arg("-c").arg(config);
    for o in [
        format!("train.dataset_path={}", data.display()),
        format!("train.output_dir={}", out.display()),
        "train.batch_size_per_gpu=8".into(),
        "train.OFFICIAL_EPOCH_LENGTH=5".into(),
        "train.saveckp_freq=1".into(),
        "train.max_bad_fraction=0.1".into(),
        "optim.epochs=2".into(),
    ] {
        c.arg("-o").arg(o);
    }
    c.args(extra);
    output(&mut c)
}

#[test]
fn a_pretraining_run_skips_a_bad_record_and_resumes_exactly() {
    let d = tree("rel_skip", 3, 14);
    let train = d.join("tree/train");
    // One truncated JPEG: a folder dataset is read as is.
    let bad = first_image(&train);
    std::fs::write(&bad, &std::fs::read(&bad).unwrap()[..300]).unwrap();
    let name = bad.file_name().unwrap().to_str().unwrap().to_string();

    let full = d.join("full");
    let out = ssl_run(&train, &full, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(
        log.contains("skipped") && log.contains(&name),
        "the skip is not logged:\n{log}"
    );
    let metrics = metrics_without_timings(&full);
    let last = metrics
        .iter()
        .rev()
        .find(|r| r["kind"] == "pretrain")
        .unwrap();
    let skipped = last["skipped_records"].as_u64().unwrap();
    assert!(skipped >= 1, "{last}");

    let part = d.join("part");
    let out = ssl_run(&train, &part, &["-o", "train.max_iterations=5"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ssl_run(&train, &part, &["--resume"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_tensors(
        &full.join("teacher_backbone.safetensors"),
        &part.join("teacher_backbone.safetensors"),
    );
    assert_eq!(metrics, metrics_without_timings(&part));

    // `fail` ends the run at the bad record, naming it; a cap of 0 does too.
    for (i, o) in ["train.bad_records=fail", "train.max_bad_fraction=0"]
        .iter()
        .enumerate()
    {
        let out = ssl_run(&train, &d.join(format!("refused{i}")), &["-o", o]);
        let t = text(&out);
        assert!(!out.status.success(), "{o}: a bad record passed:\n{t}");
        assert!(
            t.contains(&name),
            "{o}: the error does not name the file:\n{t}"
        );
    }
}
