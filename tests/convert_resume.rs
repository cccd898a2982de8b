//! A conversion killed with SIGKILL resumes on rerun and ends exactly like an uninterrupted one.

mod common;
use common::*;
use converters::synth::{SynthSpec, ValLayout, generate};
use pipeline::shards::Manifest;
use std::time::{Duration, Instant};

#[test]
fn sigkill_midway_then_rerun_equals_an_uninterrupted_run() {
    let dir = scratch("resume");
    let root = dir.join("imagenet");
    let spec = SynthSpec {
        classes: 6,
        train_per_class: 100,
        val_per_class: 0,
        val_layout: ValLayout::Folders,
        bad_files: true,
        ..SynthSpec::default()
    };
    generate(&root, &spec).unwrap();
    // Re-encoding every image (--max-side) keeps one worker busy long enough to be killed.
    let args = |out: &std::path::Path| {
        let v: Vec<std::ffi::OsString> = args![
            "convert",
            "imagenet",
            "--root",
            root,
            "--out",
            out,
            "--format",
            "lmdb",
            "--split",
            "train",
            "--shard-size",
            "20",
            "--workers",
            "1",
            "--max-side",
            "300",
            "--quality",
            "100",
            "--json"
        ]
        .iter()
        .map(|s| s.to_os_string())
        .collect();
        v
    };

    let whole = dir.join("whole");
    dinov2_ok(
        &args(&whole)
            .iter()
            .map(|s| s.as_os_str())
            .collect::<Vec<_>>(),
    );

    let killed = dir.join("killed");
    let mut child = dinov2()
        .args(args(&killed))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // Wait until at least two shards are finished, then kill without warning.
    loop {
        let done = std::fs::read_to_string(killed.join(".progress.json"))
            .map(|s| s.matches("\"first_source\"").count())
            .unwrap_or(0);
        if done >= 2 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "conversion finished before it could be killed"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no shard finished in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        !killed.join("manifest.json").exists(),
        "a killed run must not look complete"
    );

    let out = dinov2_ok(
        &args(&killed)
            .iter()
            .map(|s| s.as_os_str())
            .collect::<Vec<_>>(),
    );
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        summary["resumed_shards"].as_u64().unwrap() >= 2,
        "{summary}"
    );
    assert!(
        summary["written_shards"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_eq!(
        Manifest::load(&killed).unwrap(),
        Manifest::load(&whole).unwrap()
    );
    assert_eq!(
        std::fs::read(killed.join("report.json")).unwrap(),
        std::fs::read(whole.join("report.json")).unwrap()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&killed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".partial") || n.starts_with(".progress"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
