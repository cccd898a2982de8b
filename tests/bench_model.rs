//! `dinov2 bench model` runs ours and both PyTorch eager baselines side by side and writes
//! its results (a tiny size, one repetition: this checks the command, not the speed).

mod common;
use common::*;

#[test]
fn bench_model_compares_against_both_baselines() {
    let dir = scratch("bench_model");
    let text = dinov2_ok(args![
        "bench",
        "model",
        "--batch",
        "2",
        "--size",
        "56",
        "--reps",
        "2",
        "--workdir",
        dir
    ]);
    for name in [
        "dinov2-rs (tch)",
        "PyTorch eager (dinov2)",
        "PyTorch eager (timm)",
    ] {
        assert!(text.contains(name), "{text}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert!(r["forward_ms"].as_f64().unwrap() > 0.0);
        assert!(r["forward_backward_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(r["forward_runs"].as_array().unwrap().len(), 2);
    }
    let out = output(dinov2().args(args![
        "bench",
        "model",
        "--baselines",
        "jax",
        "--workdir",
        dir
    ]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown baseline"));
}
