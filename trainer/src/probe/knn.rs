//! The probe's k-NN evaluation: normed CLS features of whole datasets, classified by
//! [`crate::knn`].

use super::data::{batch_tensors, crop_size, loader};
use super::settings::{DataSpec, KnnSpec, ProbeSettings};
use crate::knn::{KnnResult, knn_eval};
use anyhow::Result;
use model::DinoVisionTransformer;
use model::runtime::{Precision, autocast};
use pipeline::dataset::Dataset;
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Normed CLS features of a whole dataset (evaluation transform, dataset order) and labels.
pub fn extract_features(
    vit: &DinoVisionTransformer,
    ds: Arc<dyn Dataset>,
    spec: &DataSpec,
    device: Device,
    precision: Precision,
) -> Result<(Tensor, Tensor)> {
    let spec = DataSpec {
        shuffle: false,
        drop_last: false,
        ..spec.clone()
    };
    let mut l = loader(ds, &spec, 0, true, (0, 1), device)?;
    let crop = crop_size(&spec.preset);
    let (mut feats, mut labels) = (Vec::new(), Vec::new());
    for b in l.epoch(0, 0)? {
        let mut b = b?;
        let (x, y) = batch_tensors(&mut b, crop, device);
        let _g = tch::no_grad_guard();
        let f = autocast(device, precision, || vit.forward_features(&x, None, false))??;
        feats.push(f.cls.to_kind(Kind::Float));
        labels.push(y);
    }
    Ok((Tensor::cat(&feats, 0), Tensor::cat(&labels, 0)))
}

pub(super) fn run_knn(
    vit: &DinoVisionTransformer,
    train: &Arc<dyn Dataset>,
    eval: &Arc<dyn Dataset>,
    s: &ProbeSettings,
    k: &KnnSpec,
    classes: i64,
) -> Result<Vec<KnnResult>> {
    let t = Instant::now();
    let (tf, tl) = extract_features(vit, train.clone(), &s.eval, s.device, s.precision)?;
    let (qf, ql) = extract_features(vit, eval.clone(), &s.eval, s.device, s.precision)?;
    let r = knn_eval(&tf, &tl, &qf, &ql, &k.ks, k.temperature, classes, 256)?;
    for x in &r {
        eprintln!(
            "k-NN k={}: top-1 {:.2}%, top-5 {:.2}%",
            x.k,
            x.top1 * 100.0,
            x.top5 * 100.0
        );
    }
    eprintln!(
        "k-NN on {} train / {} eval images in {:.1} s",
        tl.size()[0],
        ql.size()[0],
        t.elapsed().as_secs_f64()
    );
    Ok(r)
}
