//! PyTorch `torch.save` checkpoints (a zip of `data.pkl` + raw storages) read in Rust: the
//! pickle's `torch._utils._rebuild_tensor_v2(storage, offset, size, stride)` objects become
//! tensors gathered from their storages (any strides, made contiguous), and nested dicts are
//! flattened to dotted names (`{"teacher": {"backbone.x": t}}` -> `teacher.backbone.x`).
//! Other values (ints, argparse namespaces, optimizer state classes) are skipped.

use crate::pickle::{Value, dict_leaves, unpickle, usize_list};
use crate::tensor::{DType, Entries, RawTensor};
use anyhow::{Context, Result, anyhow, bail, ensure};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// How many times its size a checkpoint's tensors may take once copied out of their storages.
pub const MAX_EXPANSION: u64 = 16;

/// A tensor's view of a storage (`key` names the zip entry `data/<key>`).
struct TensorRef {
    dtype: DType,
    key: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// From a legacy storage class name (`FloatStorage`, ...).
fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "DoubleStorage" => DType::F64,
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

/// The tensor `v` stands for, if it is one (parameters are unwrapped).
fn tensor_ref(v: &Value) -> Result<Option<TensorRef>> {
    let Value::Object(o) = v else {
        return Ok(None);
    };
    let args = o.args.items().unwrap_or_default();
    match o.global() {
        Some(("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor")) => {
            let [Value::Persistent(pid), Value::Int(offset), size, stride, ..] = args.as_slice()
            else {
                bail!("unexpected arguments to _rebuild_tensor_v2");
            };
            let pid = pid.items().unwrap_or_default();
            let [
                Value::Str(kind),
                Value::Global(_, class),
                Value::Str(key),
                ..,
            ] = pid.as_slice()
            else {
                bail!("unsupported persistent id");
            };
            ensure!(&**kind == "storage", "unsupported persistent id {kind:?}");
            Ok(Some(TensorRef {
                dtype: storage_dtype(class)
                    .ok_or_else(|| anyhow!("unsupported storage type {class}"))?,
                key: key.to_string(),
                offset: usize::try_from(*offset)?,
                shape: usize_list(size)?,
                stride: usize_list(stride)?,
            }))
        }
        Some(("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state")) => {
            args.first().map_or(Ok(None), tensor_ref)
        }
        _ => Ok(None),
    }
}

/// All tensors of a `torch.save` file, by dotted path, in the file's order.
pub fn read_torch_checkpoint(path: &Path) -> Result<Vec<(String, RawTensor)>> {
    Ok(read_torch_entries(path)?.tensors)
}

/// All tensors of a `torch.save` file, by dotted path, in the file's order, and the entries
/// that are not tensors (key and type), which are skipped.
pub fn read_torch_entries(path: &Path) -> Result<Entries> {
    let ctx = || format!("reading PyTorch checkpoint {}", path.display());
    let file = std::fs::File::open(path).with_context(ctx)?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| {
            anyhow!(
                "not a torch.save zip archive ({e}); legacy (pre-1.6) checkpoints are not supported"
            )
        })
        .with_context(ctx)?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().map(|f| f.name().to_string()))
        .find(|n| n.ends_with("/data.pkl") || n == "data.pkl")
        .ok_or_else(|| anyhow!("no data.pkl in the archive"))
        .with_context(ctx)?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let file_len = std::fs::metadata(path).with_context(ctx)?.len();
    let read = |zip: &mut zip::ZipArchive<std::fs::File>, name: &str| -> Result<Vec<u8>> {
        let f = zip.by_name(name).map_err(|e| anyhow!("{name}: {e}"))?;
        // The entry's size field is only a claim: reserve no more than the archive holds
        // (a hostile size asked for gigabytes), and read no more than the claim.
        let claimed = f.size();
        let mut v = Vec::with_capacity(claimed.min(file_len) as usize);
        f.take(claimed).read_to_end(&mut v)?;
        Ok(v)
    };
    if let Ok(order) = read(&mut zip, &format!("{prefix}byteorder")) {
        ensure!(
            order == b"little",
            "{}: big-endian checkpoints are not supported",
            path.display()
        );
    }
    let root = unpickle(&read(&mut zip, &pkl_name).with_context(ctx)?).with_context(ctx)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Entries::default();
    // Views are copied out of their storages, so names sharing a storage (or a stride-0
    // view) can ask for far more than the file holds: at most MAX_EXPANSION times its size.
    let mut budget = file_len.saturating_mul(MAX_EXPANSION);
    for (name, v) in dict_leaves(&root).with_context(ctx)? {
        let mut tensor = || -> Result<Option<RawTensor>> {
            let Some(t) = tensor_ref(&v)? else {
                return Ok(None);
            };
            if !storages.contains_key(&t.key) {
                let bytes = read(&mut zip, &format!("{prefix}data/{}", t.key))?;
                storages.insert(t.key.clone(), bytes);
            }
            let storage = &storages[&t.key];
            let bytes = crate::tensor::numel(&t.shape)?
                .checked_mul(t.dtype.size())
                .map_or(u64::MAX, |b| b as u64);
            budget = budget.checked_sub(bytes).ok_or_else(|| {
                anyhow!(
                    "the tensors' views add up to more than {MAX_EXPANSION} times the file's \
                     {file_len} bytes (shared or stride-0 views)"
                )
            })?;
            RawTensor::from_strided(t.dtype, &t.shape, &t.stride, t.offset, storage).map(Some)
        };
        match tensor().with_context(|| format!("{}: tensor {name}", path.display()))? {
            Some(t) => out.tensors.push((name, t)),
            None => out.skipped.push((name, v.describe())),
        }
    }
    Ok(out)
}
