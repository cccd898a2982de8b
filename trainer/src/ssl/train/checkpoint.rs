//! Pretraining checkpoints: the state file (`checkpoints/latest.json`), saving and restoring
//! the student, teacher, optimizer and loss centres, and resuming a run.

use super::step::Optim;
use crate::optim::AdamW;
use crate::scaler::LossScaler;
use crate::ssl::meta_arch::SslMetaArch;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Tensor};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct SslState {
    pub(super) iteration: u64,
    pub(super) scaler: Option<LossScaler>,
    pub(super) tensors: String,
    /// Bad records skipped up to `iteration` (policy `skip`).
    #[serde(default)]
    pub(super) skipped_records: u64,
}

fn parse_state(bytes: &[u8]) -> Result<SslState> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Whether `bytes` read as a pretraining `checkpoints/latest.json` (for `dinov2 bench fuzz`).
pub fn check_state_file(bytes: &[u8]) -> Result<()> {
    parse_state(bytes).map(drop)
}

const STUDENT: &str = "student.";
const TEACHER: &str = "teacher.";
const OPTIM: &str = "optimizer.";
const CENTERS: &str = "loss.";

pub(super) fn save(
    out: &Path,
    arch: &SslMetaArch,
    opt: &AdamW,
    names: &[String],
    st: &SslState,
) -> Result<()> {
    let mut t = Vec::new();
    for (k, v) in model::weights::state_dict(&arch.student_vs, "") {
        t.push((format!("{STUDENT}{k}"), v));
    }
    for (k, v) in model::weights::state_dict(&arch.teacher_vs, "") {
        t.push((format!("{TEACHER}{k}"), v));
    }
    for (k, v) in opt.state_tensors(names)? {
        t.push((format!("{OPTIM}{k}"), v));
    }
    t.push((
        format!("{CENTERS}dino_center"),
        arch.dino_loss.center().to_device(Device::Cpu),
    ));
    t.push((
        format!("{CENTERS}ibot_center"),
        arch.ibot_loss.center().to_device(Device::Cpu),
    ));
    if let Some((sum, n)) = arch.dino_loss.pending_center_update() {
        t.push((
            format!("{CENTERS}dino_pending.{n}"),
            sum.to_device(Device::Cpu),
        ));
    }
    if let Some((sum, n)) = arch.ibot_loss.pending_center_update() {
        t.push((
            format!("{CENTERS}ibot_pending.{n}"),
            sum.to_device(Device::Cpu),
        ));
    }
    crate::checkpoint::commit(&out.join("checkpoints"), &st.tensors, &t, st, "iter_")
}

fn restore(
    out: &Path,
    arch: &mut SslMetaArch,
    opt: &mut AdamW,
    names: &[String],
) -> Result<Option<SslState>> {
    let dir = out.join("checkpoints");
    let json = dir.join("latest.json");
    if !json.exists() {
        return Ok(None);
    }
    let st = parse_state(&std::fs::read(&json)?)
        .with_context(|| format!("{} is not a pretraining checkpoint", json.display()))?;
    let path = dir.join(&st.tensors);
    let all =
        Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut groups: BTreeMap<&str, Vec<(String, Tensor)>> = BTreeMap::new();
    for (k, v) in all {
        let (g, rest) = [STUDENT, TEACHER, OPTIM, CENTERS]
            .iter()
            .find_map(|p| k.strip_prefix(p).map(|r| (*p, r.to_string())))
            .with_context(|| format!("{}: unexpected tensor {k}", path.display()))?;
        groups.entry(g).or_default().push((rest, v));
    }
    let mut take = |g: &str| groups.remove(g).unwrap_or_default();
    let src = path.display().to_string();
    model::weights::load_state_dict(&arch.student_vs, take(STUDENT), true, &src)?;
    model::weights::load_state_dict(&arch.teacher_vs, take(TEACHER), true, &src)?;
    opt.load_state_tensors(names, &take(OPTIM))?;
    let device = arch.dino_loss.center().device();
    for (k, v) in take(CENTERS) {
        let v = v.to_device(device);
        match k.split_once('.') {
            None if k == "dino_center" => arch.dino_loss.set_center(&v),
            None if k == "ibot_center" => arch.ibot_loss.set_center(&v),
            Some(("dino_pending", n)) => arch
                .dino_loss
                .set_pending_center_update(Some((v, n.parse()?))),
            Some(("ibot_pending", n)) => arch
                .ibot_loss
                .set_pending_center_update(Some((v, n.parse()?))),
            _ => bail!("{src}: unexpected tensor {CENTERS}{k}"),
        }
    }
    Ok(Some(st))
}

/// Continues the checkpoint in `out` when `resume` (the metrics after it dropped) and returns
/// the iteration to start at and the bad records skipped so far; without a checkpoint it starts
/// at 0 (an old metrics file removed). A checkpoint found without `resume` is an error.
pub(super) fn resume_or_start(
    out: &Path,
    resume: bool,
    main: bool,
    arch: &mut SslMetaArch,
    o: &mut Optim,
    metrics_path: &Path,
) -> Result<(u64, u64)> {
    let mut start = 0;
    let mut skipped_records = 0u64;
    match restore(out, arch, &mut o.adamw, &o.names)? {
        Some(st) if resume => {
            start = st.iteration;
            skipped_records = st.skipped_records;
            // The saved scaler goes on only where this run's precision uses one.
            if o.scaler.is_some() {
                o.scaler = st.scaler.or(o.scaler.take());
            }
            if main {
                let keep: Vec<String> = crate::metrics::read_metrics(metrics_path)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| r["iteration"].as_u64().is_none_or(|i| i <= start))
                    .map(|r| r.to_string())
                    .collect();
                pipeline::atomic::write_atomic(
                    metrics_path,
                    (keep.join("\n") + if keep.is_empty() { "" } else { "\n" }).as_bytes(),
                )?;
                eprintln!("resuming at iteration {start}");
            }
        }
        Some(_) => bail!(
            "{} already holds a checkpoint; pass --resume to continue it or choose another output directory",
            out.display()
        ),
        None => {
            if main {
                let _ = std::fs::remove_file(metrics_path);
            }
        }
    }
    Ok((start, skipped_records))
}
