//! `dinov2 train` with a pretraining config: a run stopped and resumed ends bit-identical to
//! an uninterrupted one (teacher backbone, metrics); outputs are written; the exported
//! teacher backbone loads into `dinov2 features`; the step-time breakdown adds up.

mod common;
use common::*;
use converters::synth::{SynthSpec, generate};
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    let dir = scratch("ssl_train");
    let spec = SynthSpec {
        classes: 3,
        train_per_class: 20,
        val_per_class: 0,
        mean_width: 60,
        mean_height: 50,
        ..SynthSpec::default()
    };
    generate(&dir.join("tree"), &spec).unwrap();
    dir
}

fn run(data: &Path, out: &Path, extra: &[&str]) -> String {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let mut a: Vec<std::ffi::OsString> = vec!["train".into(), "-c".into(), config.into()];
    for o in [
        format!("train.dataset_path={}", data.join("tree").display()),
        format!("train.output_dir={}", out.display()),
        "train.batch_size_per_gpu=8".into(),
        "train.OFFICIAL_EPOCH_LENGTH=5".into(),
        "train.saveckp_freq=1".into(),
        "optim.epochs=4".into(),
    ] {
        a.push("-o".into());
        a.push(o.into());
    }
    a.extend(extra.iter().map(Into::into));
    dinov2_ok(&a.iter().map(|s| s.as_os_str()).collect::<Vec<_>>())
}

#[test]
fn pretraining_resumes_bit_identically() {
    let d = data();
    let full = d.join("full");
    let text = run(&d, &full, &[]);
    assert!(text.contains("20 iterations"), "{text}");
    for f in [
        "config.yaml",
        "metrics.jsonl",
        "curves.png",
        "teacher_backbone.safetensors",
    ] {
        assert!(full.join(f).is_file(), "{f} missing");
    }
    // Every record says where its steps' time went; the phases add up to about the step time
    // (the step is forward + backward, optimizer and EMA), the loader kept up, and the summary
    // says what bounded the run.
    let records = trainer::metrics::read_metrics(&full.join("metrics.jsonl")).unwrap();
    for r in records.iter().filter(|r| r["kind"] == "pretrain") {
        let b = trainer::step_timer::Breakdown::from_record(r).expect("a step-time breakdown");
        assert!(b.steps >= 1, "{r}");
        let step = r["step_s"].as_f64().unwrap();
        let inside = b.total()
            - b.get(trainer::step_timer::Phase::DataWait)
            - b.get(trainer::step_timer::Phase::HostToDevice)
            - b.get(trainer::step_timer::Phase::Logging);
        assert!(
            (inside - step).abs() <= 0.05 * step + 2e-3,
            "{inside} vs step_s {step}: {r}"
        );
        assert!(r["bound"].is_string(), "{r}");
    }
    assert!(text.contains("## Where the step's time goes"), "{text}");
    assert!(text.contains("The run was **"), "{text}");
    let part = d.join("part");
    run(&d, &part, &["-o", "train.max_iterations=10"]);
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("checkpoints/latest.json")).unwrap())
            .unwrap();
    assert_eq!(st["iteration"], 10);
    run(&d, &part, &["--resume"]);
    assert_same_tensors(
        &full.join("teacher_backbone.safetensors"),
        &part.join("teacher_backbone.safetensors"),
    );
    assert_eq!(
        metrics_without_timings(&full),
        metrics_without_timings(&part)
    );

    // The export loads strictly into the features command (official key names).
    let feats = d.join("f.safetensors");
    dinov2_ok(args![
        "features",
        "--weights",
        full.join("teacher_backbone.safetensors"),
        "--num-heads",
        "4",
        "--input",
        d.join("tree/train"),
        "--out",
        feats,
        "--resize",
        "36",
        "--crop",
        "32"
    ]);
}

/// `student.pretrained_weights` takes one of our training checkpoints as is: the teacher's
/// backbone is used, the student, heads, optimizer state and loss buffers are left out and
/// reported.
#[test]
fn pretraining_starts_from_a_training_checkpoint() {
    let dir = scratch("ssl_train_pretrained");
    let spec = SynthSpec {
        classes: 2,
        train_per_class: 8,
        val_per_class: 0,
        mean_width: 60,
        mean_height: 50,
        ..SynthSpec::default()
    };
    generate(&dir.join("tree"), &spec).unwrap();
    let first = dir.join("first");
    run(&dir, &first, &["-o", "train.max_iterations=5"]);
    let ckpt = std::fs::read_dir(first.join("checkpoints"))
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .expect("a training checkpoint");

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let second = dir.join("second");
    let mut a: Vec<std::ffi::OsString> = vec!["train".into(), "-c".into(), config.into()];
    for o in [
        format!("train.dataset_path={}", dir.join("tree").display()),
        format!("train.output_dir={}", second.display()),
        format!("student.pretrained_weights={}", ckpt.display()),
        "train.batch_size_per_gpu=8".into(),
        "train.OFFICIAL_EPOCH_LENGTH=5".into(),
        "train.max_iterations=1".into(),
    ] {
        a.push("-o".into());
        a.push(o.into());
    }
    let out = output(dinov2().args(&a));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for needle in [
        format!("student initialised from {}", ckpt.display()),
        "backbone: 63 tensors under \"teacher.backbone.\"; left out:".into(),
        "student (71 tensors)".into(),
        "teacher.dino_head (8 tensors)".into(),
        "63 of the model's".into(),
    ] {
        assert!(err.contains(&needle), "{needle:?} not in {err}");
    }
}
