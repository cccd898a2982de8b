//! Evaluation of every classifier on the evaluation set.

use super::classifiers;
use super::data::{batch_tensors, crop_size};
use super::session::Run;
use crate::knn::topk_hits;
use anyhow::{Result, ensure};
use model::runtime::autocast;
use pipeline::loader::Loader;
use tch::Kind;

impl Run<'_> {
    /// Top-1, top-5 and mean loss of every classifier on the evaluation set.
    pub(super) fn evaluate(&self, eval: &mut Loader) -> Result<Vec<(f64, f64, f64)>> {
        let crop = crop_size(&self.s.eval.preset);
        let mut acc = vec![(0i64, 0i64, 0f64); self.classifiers.len()];
        let mut n = 0i64;
        for b in eval.epoch(0, 0)? {
            let mut b = b?;
            let (x, y) = batch_tensors(&mut b, crop, self.s.device);
            let layers = self.layers(&x)?;
            let _g = tch::no_grad_guard();
            let logits = autocast(self.s.device, self.s.precision, || {
                classifiers::logits(&self.classifiers, &layers)
            })?;
            for (a, l) in acc.iter_mut().zip(&logits) {
                let l = l.to_kind(Kind::Float);
                let (t1, t5) = topk_hits(&l, &y);
                a.0 += t1;
                a.1 += t5;
                a.2 += l.cross_entropy_for_logits(&y).double_value(&[]) * b.len() as f64;
            }
            n += b.len() as i64;
        }
        ensure!(n > 0, "the evaluation set is empty");
        Ok(acc
            .into_iter()
            .map(|(a, b, c)| (a as f64 / n as f64, b as f64 / n as f64, c / n as f64))
            .collect())
    }
}
