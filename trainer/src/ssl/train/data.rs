//! The pretraining data: the dataset of a config, its multi-crop loader with iBOT masks, and
//! a loader batch as the meta-architecture's tensors.

use crate::ssl::config::SslConfig;
use crate::ssl::meta_arch::SslBatch;
use anyhow::{Context, Result};
use pipeline::bad_records::{BadRecordPolicy, BadRecords};
use pipeline::dataset::open_dataset;
use pipeline::loader::{Loader, LoaderConfig, MaskConfig};
use pipeline::presets::{MultiCrop, Preset};
use pipeline::sampler::SamplerKind;
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// A loader batch as the meta-architecture's tensors on `device`.
pub fn batch_tensors(
    b: &mut pipeline::loader::Batch,
    g: usize,
    l: usize,
    n_local: usize,
    device: Device,
) -> Result<SslBatch> {
    let n = b.len();
    let masks = b
        .masks
        .take()
        .context("the pretraining loader produced no iBOT masks")?;
    let planes = b.planes();
    let img = |plane: &[u8], count: usize, size: usize| {
        crate::batch_memory::upload(
            &plane[..count * n * size * size * 3],
            &[(count * n) as i64, size as i64, size as i64, 3],
            device,
        )
    };
    let global = model::input::normalize_uint8(&img(planes[0], 2, g), Kind::Float);
    let local = if n_local > 0 {
        model::input::normalize_uint8(&img(planes[1], n_local, l), Kind::Float)
    } else {
        Tensor::zeros([0, 3, l as i64, l as i64], (Kind::Float, device))
    };
    let m: Vec<u8> = masks.masks.iter().map(|&x| x as u8).collect();
    Ok(SslBatch {
        global,
        local,
        masks: Tensor::from_slice(&m)
            .view([(2 * n) as i64, masks.n_tokens as i64])
            .to_kind(Kind::Bool)
            .to_device(device),
        mask_indices: Tensor::from_slice(&masks.mask_indices).to_device(device),
        masks_weight: Tensor::from_slice(&masks.masks_weight).to_device(device),
    })
}

/// The dataset `train.dataset_path` / `train.split` names.
pub fn open_train_dataset(c: &SslConfig) -> Result<Arc<dyn pipeline::Dataset>> {
    Ok(Arc::from(
        open_dataset(Path::new(&c.train.dataset_path), &c.train.split)
            .with_context(|| format!("opening train.dataset_path {}", c.train.dataset_path))?,
    ))
}

/// The pretraining loader of a config: multi-crop preset, iBOT masks, infinite sampler
/// sharded over `(rank, world)`.
pub fn build_loader(
    c: &SslConfig,
    ds: Arc<dyn pipeline::Dataset>,
    (rank, world): (usize, usize),
    device: Device,
) -> Result<Loader> {
    let (cr, aug) = (&c.crops, &c.crops.augmentation);
    aug.check()?;
    let preset = Preset::Dinov2(MultiCrop {
        global_size: cr.global_crops_size as usize,
        local_size: cr.local_crops_size as usize,
        global_scale: cr.global_crops_scale,
        local_scale: cr.local_crops_scale,
        local_crops: cr.local_crops_number as usize,
        blur_p: aug.blur_p,
        solarize_p: aug.solarize_p,
        jitter_p: aug.jitter_p,
        grayscale_p: aug.grayscale_p,
        flip_p: aug.flip_p,
        jitter: aug.jitter,
    });
    let batch = c.train.batch_size_per_gpu as usize;
    let workers = (c.train.num_workers as usize).clamp(
        1,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let storages = crate::batch_memory::storages(&preset, batch, device, 3);
    Loader::new(
        ds,
        LoaderConfig {
            preset,
            batch_size: batch,
            workers,
            seed: c.train.seed,
            sampler: SamplerKind::Infinite,
            rank,
            world,
            masks: Some(MaskConfig {
                patch_size: c.student.patch_size as usize,
                ratio: c.ibot.mask_ratio_min_max,
                probability: c.ibot.mask_sample_probability,
            }),
            keep_partial_batch: false,
            bad_records: match c.train.bad_records {
                BadRecordPolicy::Fail => BadRecords::FAIL,
                BadRecordPolicy::Skip => BadRecords::skip(c.train.max_bad_fraction),
            },
        },
        storages,
    )
}
