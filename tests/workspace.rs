//! Properties of the workspace itself.

mod common;
use std::process::Command;

#[test]
fn pipeline_does_not_depend_on_libtorch() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = common::output(
        Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "tree",
                "--offline",
                "-p",
                "pipeline",
                "-e",
                "normal,build",
                "--prefix",
                "none",
            ]),
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree.contains("turbojpeg"), "unexpected tree:\n{tree}");
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            !matches!(name, "tch" | "torch-sys"),
            "pipeline pulls in {name}:\n{tree}"
        );
    }
}
