//! A run's checkpoints: the tensors it saves (heads and momentum buffers), restoring them,
//! resuming from the last checkpoint at the start and saving one after an epoch (the files
//! and their format are [`state`]'s).

use super::session::Run;
use super::state::{self, ProbeState};
use crate::metrics::read_metrics;
use anyhow::{Context, Result, bail, ensure};
use std::path::Path;
use tch::{Device, Tensor};

impl Run<'_> {
    /// Continues the checkpoint in the output directory when the run resumes (the metrics of
    /// later epochs dropped) and returns the epochs done, the global step and the best result
    /// so far; without a checkpoint it starts afresh (an old metrics file removed). A
    /// checkpoint found without `resume` is an error.
    pub(super) fn resume(&mut self, main: bool, metrics_path: &Path) -> Result<(u64, u64, Best)> {
        let s = self.s;
        let mut start_epoch = 0;
        let mut global_step = 0;
        let mut best: Option<(f64, u64, String)> = None;
        match state::load(&s.out_dir)? {
            Some((st, tensors)) if s.resume => {
                ensure!(
                    st.classifiers
                        == self
                            .classifiers
                            .iter()
                            .map(|c| c.name.clone())
                            .collect::<Vec<_>>(),
                    "the checkpoint in {} was made with other classifiers",
                    state::dir(&s.out_dir).display()
                );
                self.restore(tensors)?;
                start_epoch = st.epochs_done;
                global_step = st.global_step;
                best = st.best;
                // The saved scaler goes on only where this run's precision uses one.
                if self.scaler.is_some() {
                    self.scaler = st.scaler.or(self.scaler.take());
                }
                if main {
                    truncate_metrics(metrics_path, st.epochs_done)?;
                    eprintln!(
                        "resuming after epoch {} (step {global_step})",
                        st.epochs_done
                    );
                }
            }
            Some(_) => bail!(
                "{} already holds a checkpoint; pass --resume to continue it or choose another output directory",
                s.out_dir.display()
            ),
            None => {
                if main && metrics_path.exists() {
                    std::fs::remove_file(metrics_path)?;
                }
            }
        }
        Ok((start_epoch, global_step, best))
    }

    /// Saves the checkpoint after `done` epochs.
    pub(super) fn save(&self, done: u64, global_step: u64, best: &Best) -> Result<()> {
        let st = ProbeState {
            epochs_done: done,
            global_step,
            scaler: self.scaler.clone(),
            best: best.clone(),
            tensors: format!("epoch_{done}.safetensors"),
            classifiers: self.classifiers.iter().map(|c| c.name.clone()).collect(),
        };
        state::save(&self.s.out_dir, &st, &self.tensors_for_checkpoint())
    }

    fn tensors_for_checkpoint(&self) -> Vec<(String, Tensor)> {
        let mut t = model::weights::state_dict(&self.heads_vs, "");
        // Buffers are stored under the name of their parameter.
        for (name, buf) in self.param_names.iter().zip(&self.sgd.buffers) {
            t.push((
                format!("optimizer.momentum.{name}"),
                buf.to_device(Device::Cpu),
            ));
        }
        t
    }

    fn restore(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let (bufs, weights): (Vec<_>, Vec<_>) = tensors
            .into_iter()
            .partition(|(k, _)| k.starts_with("optimizer.momentum."));
        model::weights::load_state_dict(&self.heads_vs, weights, true, "the probe checkpoint")?;
        for (k, t) in bufs {
            let name = &k["optimizer.momentum.".len()..];
            let i = self
                .param_names
                .iter()
                .position(|n| n == name)
                .with_context(|| format!("checkpoint momentum for unknown parameter {name}"))?;
            tch::no_grad(|| self.sgd.buffers[i].copy_(&t));
        }
        Ok(())
    }
}

/// Drops metric records of epochs after `epochs_done` (written by an interrupted run).
fn truncate_metrics(path: &Path, epochs_done: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let keep: Vec<String> = read_metrics(path)?
        .into_iter()
        .filter(|r| r["epoch"].as_u64().is_none_or(|e| e <= epochs_done) && r["kind"] != "knn")
        .map(|r| r.to_string())
        .collect();
    let mut text = keep.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    pipeline::atomic::write_atomic(path, text.as_bytes())
}

/// The best evaluation so far: (top-1, epoch, classifier).
type Best = Option<(f64, u64, String)>;
