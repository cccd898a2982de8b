//! PaddlePaddle / PASSL `.pdparams` checkpoints read in Rust, and their mapping to the
//! official PyTorch DINOv2 names and layouts.
//!
//! `paddle.save(layer.state_dict(), path)` writes a plain pickle (protocol 4 by default, 2 or 3
//! on request) of a dict `name -> numpy.ndarray`, plus the key `StructuredToParameterName@@`
//! (structured name -> internal parameter name), which is ignored. Nested dicts are flattened
//! to dotted names; inside them paddle writes each tensor as a `(internal name, ndarray)` tuple.

use crate::numpy;
use crate::pickle::{Value, dict_leaves, unpickle};
use crate::tensor::{Entries, RawTensor};
use anyhow::{Context, Result, bail};
use std::path::Path;

/// Bookkeeping keys `paddle.save` adds next to the tensors.
const PARAM_NAMES_KEY: &str = "StructuredToParameterName@@";
/// Present when protocol 2/3 split a tensor over 1 GiB into slices.
const SPLIT_KEY: &str = "UnpackBigParamInfor@@";

/// All arrays of a `.pdparams` file, by (dotted) name, in paddle names and layouts, in the
/// file's order. Plain Python values (ints, strings) are skipped; an object that is not a
/// numpy array (an unknown class) is an error.
pub fn read_pdparams(path: &Path) -> Result<Vec<(String, RawTensor)>> {
    Ok(read_pdparams_entries(path)?.tensors)
}

/// [`read_pdparams`], with the plain Python values it skips (key and type).
pub fn read_pdparams_entries(path: &Path) -> Result<Entries> {
    let ctx = || format!("reading PaddlePaddle checkpoint {}", path.display());
    let bytes = std::fs::read(path).with_context(ctx)?;
    let root = unpickle(&bytes)
        .context("not a valid pickle (paddle.save writes a pickle of a dict of numpy arrays)")
        .with_context(ctx)?;
    // Arrays memoised once and named many times are copied once per name.
    let mut budget = (bytes.len() as u64).saturating_mul(crate::torch_checkpoint::MAX_EXPANSION);
    drop(bytes);
    let Value::Dict(items) = &root else {
        bail!(
            "{}: expected a pickled dict of numpy arrays, found {}",
            path.display(),
            root.describe()
        );
    };
    if items
        .borrow()
        .iter()
        .any(|(k, _)| k.as_str() == Some(SPLIT_KEY))
    {
        bail!(
            "{}: tensors split by paddle.save's protocol 2/3 ({SPLIT_KEY}) are not supported; \
             re-save with protocol=4",
            path.display()
        );
    }
    items
        .borrow_mut()
        .retain(|(k, _)| k.as_str() != Some(PARAM_NAMES_KEY));
    let mut out = Entries::default();
    for (name, v) in dict_leaves(&root).with_context(ctx)? {
        // Tensors inside nested dicts are `(internal name, ndarray)` tuples.
        let array = match v.items().as_deref() {
            Some([Value::Str(_), a @ Value::Object(_)]) => a.clone(),
            _ => v.clone(),
        };
        let tensor = numpy::to_tensor(&array)
            .with_context(|| format!("{}: entry {name:?}", path.display()))?;
        match (tensor, &array) {
            (Some(t), _) => {
                budget = budget.checked_sub(t.data.len() as u64).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: the arrays add up to more than {} times the file's size \
                         (one array named many times?)",
                        path.display(),
                        crate::torch_checkpoint::MAX_EXPANSION
                    )
                })?;
                out.tensors.push((name, t))
            }
            (None, Value::Object(_) | Value::Global(..) | Value::Persistent(_)) => bail!(
                "{}: entry {name:?} is {}, not a numpy array",
                path.display(),
                array.describe()
            ),
            (None, _) => out.skipped.push((name, array.describe())),
        }
    }
    Ok(out)
}

/// A PASSL DINOv2 tensor in the official PyTorch name and layout, keeping the `backbone.`
/// prefix so that `backbone` and `linear` can be selected as groups:
///
/// | PASSL (paddle)                        | PyTorch                                  |
/// |---------------------------------------|------------------------------------------|
/// | `backbone.<key>`                      | `backbone.<key>` (hub `<key>` once the group prefix is dropped) |
/// | `linear.linear.weight` `[2D, C]`      | `linear.weight` `[C, 2D]` (hub `linear_head` `weight`) |
/// | `linear.linear.bias` `[C]`            | `linear.bias`                            |
/// | any 2-D `*.weight` `[in, out]`        | transposed to `[out, in]` (paddle `nn.Linear` stores `y = x W + b`) |
///
/// Everything else keeps its layout: conv weights (4-D, same layout in both), LayerNorm
/// weights and biases (1-D), `ls*.gamma`, `cls_token`, `pos_embed`, and `mask_token` (2-D
/// `[1, D]`, but not a `.weight`).
pub fn passl_to_torch(name: String, t: RawTensor) -> Result<(String, RawTensor)> {
    let t = if name.ends_with(".weight") && t.shape.len() == 2 {
        t.transposed()?
    } else {
        t
    };
    let name = match name.strip_prefix("linear.linear.") {
        Some(rest) => format!("linear.{rest}"),
        None => name,
    };
    Ok((name, t))
}

/// The group whose prefix [`crate::weights::convert_weights`] drops when no group is selected.
pub const BACKBONE_GROUP: &str = "backbone";
