//! The CI slice of the hostile-input campaign: `dinov2 bench fuzz` with a fixed seed over
//! every parser (the seeds themselves first, which must be accepted, then mutations), in
//! supervised workers. Any panic, abort, hang, outsized allocation or rejected seed fails.

mod common;

use std::time::Instant;

#[test]
fn every_parser_survives_a_fixed_seed_slice() {
    let out = std::env::temp_dir().join(format!("dinov2-fuzz-ci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let t0 = Instant::now();
    let o = common::output(common::dinov2().args([
        "bench",
        "fuzz",
        "--inputs",
        "60000",
        "--min-per-parser",
        "500",
        "--seed",
        "17",
        "--jobs",
        "2",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]));
    let secs = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "findings:\n{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(v["findings"], 0, "{stdout}");
    let parsers = v["parsers"].as_object().unwrap();
    assert_eq!(parsers.len(), 16, "every parser ran");
    let mut total = 0;
    for (name, p) in parsers {
        let tried = p["tried"].as_u64().unwrap();
        assert!(tried >= 500, "{name}: {tried} inputs");
        // Each parser accepts its seeds and some mutations, and refuses others.
        assert!(p["ok"].as_u64().unwrap() > 0, "{name} accepted nothing");
        total += tried;
    }
    assert!(total >= 60_000, "{total} inputs");
    eprintln!("fuzz slice: {total} inputs in {secs:.1} s");
    let _ = std::fs::remove_dir_all(&out);
}
