//! Tensors grouped by (device, dtype), as PyTorch groups them before a multi-tensor kernel or a
//! flattened collective (`_group_tensors_by_device_and_dtype`).

use tch::{Device, Kind, Tensor};

/// `ts` grouped by (device, dtype) in order of first appearance, each group in the given order.
pub(crate) fn by_device_and_kind<'a>(ts: &[&'a Tensor]) -> Vec<Vec<&'a Tensor>> {
    let mut groups: Vec<((Device, Kind), Vec<&Tensor>)> = Vec::new();
    for &t in ts {
        let key = (t.device(), t.kind());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(t),
            None => groups.push((key, vec![t])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}
