//! The probe's data: opening the training and evaluation sets, their loaders, and a batch as
//! tensors.

use super::settings::{DataSpec, ProbeSettings};
use anyhow::{Context, Result, bail};
use pipeline::dataset::{Dataset, open_dataset};
use pipeline::loader::{Loader, LoaderConfig};
use pipeline::presets::Preset;
use pipeline::sampler::SamplerKind;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

fn open(spec: &DataSpec) -> Result<Arc<dyn Dataset>> {
    Ok(Arc::from(
        open_dataset(&spec.root, &spec.split)
            .with_context(|| format!("opening {} ({})", spec.root.display(), spec.split))?,
    ))
}

/// The training and evaluation sets and their number of classes.
pub(super) type Datasets = (Arc<dyn Dataset>, Arc<dyn Dataset>, i64);

/// The training and evaluation sets of `s` and their number of classes: both sets must have the
/// same classes, as many as `Model.class_num` where the config gives it.
pub(super) fn open_datasets(s: &ProbeSettings) -> Result<Datasets> {
    let train_ds = open(&s.train)?;
    let eval_ds = open(&s.eval)?;
    if train_ds.classes() != eval_ds.classes() {
        bail!(
            "the training and evaluation sets have different classes ({} vs {})",
            train_ds.classes().len(),
            eval_ds.classes().len()
        );
    }
    let classes = train_ds.classes().len() as i64;
    if let Some(n) = s.class_num
        && n != classes
    {
        bail!(
            "Model.class_num is {n} but {} has {classes} classes",
            s.train.root.display()
        );
    }
    Ok((train_ds, eval_ds, classes))
}

/// `rank`/`world`: this process's shard of the samples (evaluation runs on rank 0 alone).
pub(super) fn loader(
    ds: Arc<dyn Dataset>,
    spec: &DataSpec,
    seed: u64,
    eval: bool,
    (rank, world): (usize, usize),
    device: Device,
) -> Result<Loader> {
    let cfg = LoaderConfig {
        preset: spec.preset.clone(),
        batch_size: spec.batch_size,
        workers: spec.workers,
        seed,
        sampler: SamplerKind::Epoch {
            shuffle: spec.shuffle,
            drop_last: spec.drop_last,
        },
        rank,
        world,
        masks: None,
        keep_partial_batch: eval || !spec.drop_last,
        bad_records: spec.bad_records,
    };
    let storages = crate::batch_memory::storages(&spec.preset, spec.batch_size, device, 3);
    Loader::new(ds, cfg, storages)
}

/// A batch's images as a normalised float tensor on `device`, and its labels.
pub(super) fn batch_tensors(
    b: &mut pipeline::loader::Batch,
    crop: usize,
    device: Device,
) -> (Tensor, Tensor) {
    let n = b.len();
    let plane = &b.planes()[0][..n * crop * crop * 3];
    let x = crate::batch_memory::upload(plane, &[n as i64, crop as i64, crop as i64, 3], device);
    let labels: Vec<i64> = b.labels.iter().map(|&l| l as i64).collect();
    (
        model::input::normalize_uint8(&x, Kind::Float),
        Tensor::from_slice(&labels).to_device(device),
    )
}

pub(super) fn crop_size(p: &Preset) -> usize {
    p.groups()[0].size
}
