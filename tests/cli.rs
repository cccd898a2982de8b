//! The binary as a user runs it: straight from target/, with no environment variables.

mod common;
use common::*;

#[test]
fn doctor_runs_from_the_bare_binary_with_an_empty_environment() {
    // env_clear: no LD_LIBRARY_PATH, no LIBTORCH. libtorch must be found through the rpath.
    let out = output(dinov2().env_clear().args(["doctor", "--json"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "doctor failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("doctor --json is JSON");
    let version = report["libtorch"]["version"].as_str().unwrap();
    assert!(
        version.starts_with(model::runtime::EXPECTED_TORCH_VERSION),
        "{version}"
    );
    assert_eq!(
        report["build_torch_version"],
        model::runtime::EXPECTED_TORCH_VERSION
    );
    // The libraries it loaded, each with its full path; nothing missing.
    let libs = report["libraries"].as_array().unwrap();
    assert!(
        libs.iter().any(|l| l["name"] == "libtorch_cpu.so"
            && l["path"]
                .as_str()
                .unwrap()
                .ends_with("/lib/libtorch_cpu.so")),
        "{libs:?}"
    );
    assert_eq!(report["missing_libraries"]["Ok"], serde_json::json!([]));
    assert!(report["cpu_tensor_check"]["Ok"].as_f64().unwrap() < 1e-3);
    assert!(report["problems"].as_array().unwrap().is_empty());
    assert!(report["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(
        report["jpeg_self_test"]["Ok"]["decode_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn doctor_text_names_the_essentials() {
    let out = output(dinov2().args(["doctor", "--path", "/definitely/not/a/dir"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in [
        "libtorch",
        model::runtime::EXPECTED_TORCH_VERSION,
        "Libraries (loaded from)",
        "libtorch_cpu.so",
        "CUDA",
        "cuDNN",
        "SIMD",
        "fast_image_resize",
        "memory",
    ] {
        assert!(
            text.contains(needle),
            "doctor output lacks {needle:?}:\n{text}"
        );
    }
    assert!(
        text.contains("unknown (/definitely/not/a/dir not readable)"),
        "{text}"
    );
}

#[test]
fn demo_runs_the_main_job_end_to_end_and_resumes() {
    let dir = scratch("demo");
    let small = [
        "--images",
        "60",
        "--iterations",
        "6",
        "--probe-epochs",
        "1",
        "--bench-seconds",
        "0.5",
        "--size",
        "128",
        "--reps",
        "3",
    ];
    // without the baselines' Python the demo goes on and says what was not measured
    let out = output(
        dinov2()
            .arg("demo")
            .args(small)
            .arg("--out")
            .arg(&dir)
            .env("DINOV2_PYTHON", "/no/such/python"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    assert!(text.contains("GFLOP/s"), "{text}");
    assert!(
        text.contains("the python-lmdb writer was not measured: no Python at /no/such/python"),
        "{text}"
    );
    assert!(
        text.contains("torchvision's DataLoader was not measured"),
        "{text}"
    );
    for section in [
        "## Conversion",
        "## Data pipeline",
        "## Pretraining",
        "## Linear probe and k-NN",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    for f in [
        "summary.md",
        "summary.json",
        "data_throughput.png",
        "probe_accuracy.png",
        "pretrain/curves.png",
        "pretrain/teacher_backbone.safetensors",
        "probe-pretrained/dinov2_custom_linearprobe/curves.png",
        "shards-lmdb/manifest.json",
        "shards-arrow/manifest.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["matmul"][0]["device"], "Cpu");
    assert!(summary["matmul"][0]["rel_error"].as_f64().unwrap() < 1e-3);
    assert_eq!(summary["tree"]["images"], 60);
    assert_eq!(summary["conversions"][1]["images"], 60);
    assert_eq!(summary["pretraining"]["iterations"], 6);
    assert!(summary["data"][1]["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(summary["probes"][0]["best_top1"].as_f64().unwrap() >= 0.0);
    // a rerun skips the finished stages and runs the baselines that could not run before
    let out = output(dinov2().arg("demo").args(small).arg("--out").arg(&dir));
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    assert_eq!(err.matches("done in an earlier run").count(), 8, "{err}");
    // the summary opens with the three comparisons, each measured in this run
    let opening = text
        .split("## What this run shows")
        .nth(1)
        .and_then(|t| t.split("\n## ").next())
        .unwrap_or_else(|| panic!("no comparisons:\n{text}"));
    for needle in [
        "Training ran on the CPU",
        "1. **Conversion: ",
        "x the usual Python script.**",
        "2. **Data pipeline: ",
        "x torchvision's DataLoader.**",
        "3. **Pretraining: ",
        "points over random initialisation.**",
    ] {
        assert!(opening.contains(needle), "{needle:?} missing:\n{opening}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert!(
        summary["baselines"]["convert"]["images_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    for b in summary["baselines"]["loaders"].as_array().unwrap() {
        assert!(b["images_per_s"].as_f64().unwrap() > 0.0, "{b}");
    }
    assert_eq!(summary["device"]["kind"], "cpu");
    let out = output(dinov2().arg("demo").args(small).arg("--out").arg(&dir));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("done in an earlier run").count(), 11, "{err}");

    // `report` on the demo folder re-renders the same summary and every plot
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    let pngs = [
        "data_throughput.png",
        "probe_accuracy.png",
        "pretrain/curves.png",
        "probe-pretrained/dinov2_custom_linearprobe/curves.png",
        "probe-random/dinov2_custom_linearprobe/curves.png",
    ];
    for f in pngs {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let out = output(dinov2().arg("report").arg(&dir));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("summary.md")).unwrap(),
        summary
    );
    for f in pngs {
        assert!(dir.join(f).is_file(), "{f} not re-rendered");
        assert!(
            text.contains(&dir.join(f).display().to_string()),
            "{f} not listed:\n{text}"
        );
    }
    // the pretraining run has its own summary, from the run and again from `report`
    let pre = std::fs::read_to_string(dir.join("pretrain/summary.md")).unwrap();
    assert!(pre.contains("# Pretraining summary: pretrain"), "{pre}");
    assert!(pre.contains("| last iteration "), "{pre}");
    let out = output(dinov2().arg("report").arg(dir.join("pretrain")));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ln 256 = 5.545 for uniform targets"));
    // an unfinished demo is named as such, and nothing is overwritten
    std::fs::remove_file(dir.join("summary.json")).unwrap();
    let out = output(dinov2().arg("report").arg(&dir));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`dinov2 demo` that has not finished"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("summary.md")).unwrap(),
        summary
    );
}

#[test]
fn bad_arguments_are_clear_errors_not_panics() {
    let out = output(dinov2().args(["demo", "--size", "0"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--size"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = output(dinov2().args(["demo", "--out", "/proc/no-such-dir/run"]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: creating /proc/no-such-dir/run"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = output(dinov2().arg("no-such-command"));
    assert_eq!(out.status.code(), Some(2));
}
