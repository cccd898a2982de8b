//! The GPU acceptance run cannot rot: `scripts/gpu_check.sh --dry-run` runs every step of it on
//! the CPU at tiny sizes (doctor, features vs the reference model, probe + resume, pretraining +
//! `bench train`, the reference pretraining step, `bench model`, a one-process launch, `bench
//! data` vs torchvision, the digits learning check's steps) and writes its three output files.
//! And the binary that travels to a GPU machine needs nothing of this one: every library
//! resolves from another PyTorch installation through LD_LIBRARY_PATH, and it stays well under
//! the 48 MiB a device call can carry beside the repository.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn gpu_check_dry_run_passes_every_step_and_writes_its_report() {
    let dir = scratch("gpu_check");
    let out = dir.join("out");
    let o = output(
        Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu_check.sh"))
            .arg(&out)
            .args(["--dry-run", "--workdir"])
            .arg(dir.join("work"))
            .env("DINOV2_BIN", env!("CARGO_BIN_EXE_dinov2"))
            .env("DINOV2_PYTHON", python()),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "gpu_check.sh --dry-run failed:\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("gpu_check.json")).unwrap()).unwrap();
    let steps = report["steps"].as_object().unwrap();
    let names = [
        "doctor",
        "features",
        "probe",
        "pretrain",
        "reference",
        "model",
        "nccl",
        "data",
        "learning",
        "demo",
    ];
    for name in names {
        let s = &steps[name];
        assert_eq!(s["status"], "pass", "{name}: {s}");
        assert!(!s["commands"].as_array().unwrap().is_empty(), "{name}");
    }
    // the figures the GPU run reports, present in the dry run too
    let f = |step: &str, key: &str| steps[step]["figures"][key].clone();
    assert!(
        f("features", "fp32")["cls"]["max_abs_diff"]
            .as_f64()
            .unwrap()
            <= 1e-4
    );
    assert_eq!(f("probe", "resume")["head_max_abs_diff"], 0.0);
    assert!(
        f("pretrain", "bench_train")["fed_vs_premade"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(f("reference", "ours_vs_reference").as_f64().unwrap() > 0.0);
    assert_eq!(f("nccl", "backend"), "gloo");
    assert!(
        f("data", "rows").as_array().unwrap().last().unwrap()["speedup_vs_torchvision"].is_number()
    );
    assert_eq!(f("demo", "opening").as_array().unwrap().len(), 3);
    let md = std::fs::read_to_string(out.join("gpu_check.md")).unwrap();
    for name in names {
        assert!(
            md.contains(&format!("## {name}: ")),
            "gpu_check.md lacks {name}"
        );
    }
    // commands as a user types them in the checkout (paths relative to it)
    assert!(md.contains("dinov2 train -c configs/"), "{md}");
    assert!(out.join("logs.tar.gz").is_file());
    // OUT holds the three files and nothing else (a device call brings back at most 8)
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["gpu_check.json", "gpu_check.md", "logs.tar.gz"]);
}

#[test]
fn the_binary_travels_with_ld_library_path_alone() {
    let bin = env!("CARGO_BIN_EXE_dinov2");
    let size = std::fs::metadata(bin).unwrap().len();
    assert!(size < 48 << 20, "{bin} is {size} bytes");
    // RUNPATH (searched after LD_LIBRARY_PATH), not RPATH (searched before it)
    let dynamic = output(Command::new("readelf").args(["-d", bin]));
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic.contains("(RUNPATH)") && !dynamic.contains("(RPATH)"),
        "{dynamic}"
    );
    // another PyTorch installation: the venv's torch/ and nvidia/ seen through links elsewhere
    let site = run_python("import sysconfig; print(sysconfig.get_paths()['purelib'])");
    let site = Path::new(site.trim());
    let other = scratch("travel");
    for d in ["torch", "nvidia"] {
        std::os::unix::fs::symlink(site.join(d), other.join(d)).unwrap();
    }
    let lib = other.join("torch/lib");
    let ldd = output(Command::new("ldd").arg(bin).env("LD_LIBRARY_PATH", &lib));
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    assert!(!ldd.contains("not found"), "{ldd}");
    for needed in dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .filter(|n| n.starts_with("libtorch") || n.starts_with("libc10"))
    {
        let line = ldd.lines().find(|l| l.trim_start().starts_with(needed));
        assert!(
            line.is_some_and(|l| l.contains(&format!("=> {}/", lib.display()))),
            "{needed} not resolved from LD_LIBRARY_PATH:\n{ldd}"
        );
    }
    let o = output(
        Command::new(bin)
            .env_clear()
            .env("LD_LIBRARY_PATH", &lib)
            .args(["doctor", "--json"]),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
