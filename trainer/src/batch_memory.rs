//! Where the loader writes batches and how they reach the device: on CUDA, page-locked
//! (pinned) host buffers and asynchronous host-to-device copies; on the CPU, plain heap
//! buffers copied into tensors.

use pipeline::loader::{BatchStorage, VecStorage};
use pipeline::presets::Preset;
use tch::{Device, Kind, Tensor};

/// Batch buffers pinned for `device`'s GPU (`cudaHostAlloc` through libtorch's host
/// allocator), one per crop group.
pub struct PinnedStorage {
    planes: Vec<Tensor>,
}

// SAFETY: the tensors are host buffers owned by this storage; only the thread holding the
// storage touches them.
unsafe impl Send for PinnedStorage {}

impl PinnedStorage {
    pub fn for_preset(preset: &Preset, batch_size: usize, device: Device) -> Self {
        let planes = preset
            .groups()
            .iter()
            .map(|g| {
                let bytes = (g.count * batch_size * g.crop_bytes()) as i64;
                Tensor::zeros([bytes], (Kind::Uint8, Device::Cpu)).pin_memory(device)
            })
            .collect();
        Self { planes }
    }
}

impl BatchStorage for PinnedStorage {
    fn planes(&mut self) -> Vec<&mut [u8]> {
        self.planes
            .iter_mut()
            .map(|t| {
                let n = t.numel();
                // SAFETY: a contiguous uint8 CPU tensor of n bytes that this storage owns.
                unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, n) }
            })
            .collect()
    }
}

/// `n` loader storages for `batch_size` samples of `preset`: pinned when training on CUDA.
pub fn storages(
    preset: &Preset,
    batch_size: usize,
    device: Device,
    n: usize,
) -> Vec<Box<dyn BatchStorage>> {
    (0..n)
        .map(|_| -> Box<dyn BatchStorage> {
            if device.is_cuda() {
                Box::new(PinnedStorage::for_preset(preset, batch_size, device))
            } else {
                Box::new(VecStorage::for_preset(preset, batch_size))
            }
        })
        .collect()
}

/// `bytes` of a batch plane as a uint8 tensor of `shape` on `device`. On CUDA the copy is
/// asynchronous (from pinned memory): the batch must stay alive until the step has used the
/// tensor (the training loops drop it after the step's values are read back). On the CPU the
/// bytes are copied, so the storage can be reused at once.
pub fn upload(bytes: &[u8], shape: &[i64], device: Device) -> Tensor {
    assert_eq!(
        bytes.len() as i64,
        shape.iter().product::<i64>(),
        "plane size"
    );
    if device.is_cuda() {
        let strides = contiguous_strides(shape);
        // SAFETY: `bytes` covers the view; the copy is enqueued before this returns and the
        // caller keeps the memory alive until the stream has used it (see above).
        let host =
            unsafe { Tensor::from_blob(bytes.as_ptr(), shape, &strides, Kind::Uint8, Device::Cpu) };
        host.to_device_(device, Kind::Uint8, true, false)
    } else {
        Tensor::from_slice(bytes).view(shape)
    }
}

fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_upload_copies_the_plane() {
        let mut bytes: Vec<u8> = (0..24).collect();
        let t = upload(&bytes, &[2, 2, 2, 3], Device::Cpu);
        bytes.iter_mut().for_each(|b| *b = 0); // the storage is reused at once
        assert_eq!(t.size(), vec![2, 2, 2, 3]);
        assert_eq!(
            i64::try_from(t.sum(Kind::Int64)).unwrap(),
            (0..24).sum::<i64>()
        );
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
