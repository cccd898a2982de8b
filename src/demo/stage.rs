//! How the demo runs its stages: each once (its result kept in `stages/NAME.json`), each a real
//! `dinov2` command run as a child process.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs a stage once: its result is kept in `stages/NAME.json` and reused by later runs.
pub(super) fn stage(
    out: &Path,
    name: &str,
    title: &str,
    f: impl FnOnce() -> Result<Value>,
) -> Result<Value> {
    let path = out.join("stages").join(format!("{name}.json"));
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
    {
        eprintln!("\n== {title}: done in an earlier run ({})", path.display());
        return Ok(v);
    }
    eprintln!("\n== {title}");
    let t = Instant::now();
    let mut v = f().with_context(|| format!("demo stage {name:?}"))?;
    v["stage_seconds"] = json!(t.elapsed().as_secs_f64());
    pipeline::atomic::write_atomic(&path, &serde_json::to_vec_pretty(&v)?)?;
    Ok(v)
}

/// `dinov2 ARGS`: stderr shown (progress bars), stdout returned and kept in `logs/NAME.log`.
pub(super) fn dinov2(out: &Path, log: &str, args: &[OsString]) -> Result<String> {
    let exe = std::env::current_exe().context("finding the dinov2 executable")?;
    let o = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    std::fs::create_dir_all(out.join("logs"))?;
    std::fs::write(out.join("logs").join(format!("{log}.log")), &stdout)?;
    if !o.status.success() {
        bail!(
            "`dinov2 {}` failed ({}):\n{stdout}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            o.status
        );
    }
    Ok(stdout)
}

pub(super) fn os<I: IntoIterator<Item = S>, S: Into<OsString>>(v: I) -> Vec<OsString> {
    v.into_iter().map(Into::into).collect()
}

/// `-o key=value` pairs.
pub(super) fn overrides(pairs: &[String]) -> Vec<OsString> {
    pairs
        .iter()
        .flat_map(|p| [OsString::from("-o"), OsString::from(p)])
        .collect()
}
