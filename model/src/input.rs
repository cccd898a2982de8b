//! Device-side input normalisation: uint8 HWC batches (what the pipeline produces) to the
//! float NCHW tensors the ViT takes, `(x / 255 - mean) / std` with the ImageNet statistics the
//! reference uses (`dinov2/data/transforms.py`).

use tch::{Kind, Tensor};

pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// `[B, H, W, 3]` uint8 (any device) -> `[B, 3, H, W]` of `kind`, normalised. Computed in
/// float32 as torchvision's `ToTensor` + `Normalize`, then cast.
pub fn normalize_uint8(batch: &Tensor, kind: Kind) -> Tensor {
    let dev = batch.device();
    let mean = Tensor::from_slice(&IMAGENET_MEAN.map(|v| v as f32))
        .to_device(dev)
        .view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&IMAGENET_STD.map(|v| v as f32))
        .to_device(dev)
        .view([1, 3, 1, 1]);
    let x = batch.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
    ((x - mean) / std).to_kind(kind)
}
