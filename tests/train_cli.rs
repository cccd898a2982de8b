//! `dinov2 train` from the tiny CPU config: a run killed with SIGKILL mid-training and resumed
//! with --resume ends with the same head and metrics as an uninterrupted run; outputs (resolved
//! config, metrics, summary, plot, head) are written; config mistakes are clear errors.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn data() -> PathBuf {
    small_arrow_set("train_cli", 6, 40, 8)
}

fn train_args(data: &Path, out: &Path, epochs: u32) -> Vec<std::ffi::OsString> {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_lp_cpu.yaml");
    let root = data.join("arrow");
    let mut v: Vec<std::ffi::OsString> = vec!["train".into(), "-c".into(), config.into()];
    for o in [
        format!("DataLoader.Train.dataset.root={}", root.display()),
        format!("DataLoader.Eval.dataset.root={}", root.display()),
        "DataLoader.Train.dataset.name=Shards".into(),
        "DataLoader.Eval.dataset.name=Shards".into(),
        "Model.class_num=6".into(),
        format!("Global.output_dir={}", out.display()),
        format!("Global.epochs={epochs}"),
        "DataLoader.Train.sampler.batch_size=8".into(),
    ] {
        v.push("-o".into());
        v.push(o.into());
    }
    v
}

fn run_dir(out: &Path) -> PathBuf {
    out.join("dinov2_custom_linearprobe")
}

#[test]
fn killed_run_resumes_to_the_uninterrupted_result() {
    let d = data();
    let full = d.join("full");
    let text = dinov2_ok(
        &train_args(&d, &full, 8)
            .iter()
            .map(|s| s.as_os_str())
            .collect::<Vec<_>>(),
    );
    assert!(
        text.contains("best top-1") && text.contains("summary.md"),
        "{text}"
    );
    for f in [
        "config.yaml",
        "metrics.jsonl",
        "summary.md",
        "curves.png",
        "linear_head.safetensors",
    ] {
        assert!(run_dir(&full).join(f).is_file(), "{f} missing");
    }

    // Kill the same run once it has checkpointed an epoch.
    let part = d.join("part");
    let mut child = dinov2()
        .args(train_args(&d, &part, 8))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let latest = run_dir(&part).join("checkpoints/latest.json");
    let t = Instant::now();
    while !latest.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&latest).unwrap()).unwrap();
    let done = st["epochs_done"].as_u64().unwrap();
    assert!(
        status.code().is_none() && done < 8,
        "the run was not interrupted ({status:?}, {done} epochs)"
    );

    // Without --resume the directory is refused; with it the run completes.
    let mut again = train_args(&d, &part, 8);
    let out = output(dinov2().args(&again));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--resume"));
    again.push("--resume".into());
    let text = dinov2_ok(&again.iter().map(|s| s.as_os_str()).collect::<Vec<_>>());
    assert!(text.contains("best top-1"), "{text}");
    let a = read_sorted_safetensors(&run_dir(&full).join("linear_head.safetensors"));
    let b = read_sorted_safetensors(&run_dir(&part).join("linear_head.safetensors"));
    assert_eq!(a.len(), 2);
    for ((ka, ta), (_, tb)) in a.iter().zip(&b) {
        assert!(
            ta.equal(tb),
            "{ka} differs after kill + resume (killed after epoch {done})"
        );
    }
    assert_eq!(
        metrics_without_timings(&run_dir(&full)),
        metrics_without_timings(&run_dir(&part))
    );
}

#[test]
fn config_mistakes_name_the_key() {
    let d = scratch("train_cli_errors");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_lp_cpu.yaml");
    let out = output(dinov2().args(args![
        "train",
        "-c",
        config,
        "-o",
        "Optimizer.momentumm=0.8"
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Optimizer.momentumm"),
        "{err}"
    );
    let out = output(dinov2().args(args!["train", "-c", config, "-o", "Global.epochs=ten"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Global.epochs"),
        "{err}"
    );
    // A dataset root that does not exist.
    let out = output(dinov2().args(args![
        "train",
        "-c",
        config,
        "-o",
        format!("Global.output_dir={}", d.display()),
        "-o",
        "DataLoader.Train.dataset.root=/nonexistent/train"
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/train") && !err.contains("panicked"),
        "{err}"
    );
}

/// PASSL's convention: `Global.pretrained_model` names a `.pdparams` without its suffix; the
/// released files hold the backbone and the probe head. The backbone is loaded, the head left
/// out and reported.
#[test]
fn pretrained_model_takes_a_passl_pdparams_with_its_head() {
    // Its own data set: `data()` recreates the directory another test is using.
    let d = small_arrow_set("train_cli_pretrained", 6, 8, 4);
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/passl_vit_tiny.pdparams");
    let weights = d.join("pretrained");
    std::fs::create_dir_all(&weights).unwrap();
    std::fs::copy(&fixture, weights.join("passl_vit_tiny.pdparams")).unwrap();
    for (name, given) in [
        ("no_suffix", weights.join("passl_vit_tiny")),
        ("suffix", weights.join("passl_vit_tiny.pdparams")),
    ] {
        let mut a = train_args(&d, &d.join(name), 1);
        a.push("-o".into());
        a.push(format!("Global.pretrained_model={}", given.display()).into());
        let out = output(dinov2().args(&a));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!(
                "{} (backbone: 35 tensors at the top level; left out: linear (2 tensors))",
                weights.join("passl_vit_tiny.pdparams").display()
            )),
            "{err}"
        );
    }
}
