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
    assert!(version.starts_with("2.13.0"), "{version}");
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
        "2.13.0",
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
fn demo_benchmarks_matmul_and_writes_its_outputs() {
    let dir = scratch("demo");
    let out = output(
        dinov2()
            .args(["demo", "--size", "128", "--reps", "3", "--out"])
            .arg(&dir),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("GFLOP/s"), "{text}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let cpu = &summary["matmul"][0];
    assert_eq!(cpu["device"], "Cpu");
    assert!(cpu["gflops"].as_f64().unwrap() > 0.0);
    assert!(cpu["rel_error"].as_f64().unwrap() < 1e-3);
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().next().unwrap().contains("\"matmul\""));
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
