//! Reading PyTorch `torch.save` checkpoints (a zip of `data.pkl` + raw storages) in Rust,
//! without Python: a pickle virtual machine for the opcodes `torch.save` emits, tensors
//! rebuilt from their storages (any strides, made contiguous), nested dicts flattened to dotted
//! names (`{"teacher": {"backbone.x": t}}` -> `teacher.backbone.x`).

use anyhow::{Context, Result, anyhow, bail, ensure};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Element types a checkpoint's tensors can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// From a legacy storage class name (`FloatStorage`, ...).
    fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }
}

/// A tensor read from a checkpoint: contiguous little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// An unpickled value. Scalars other than ints are kept only for error messages.
#[derive(Debug, Clone)]
#[allow(dead_code)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage {
        dtype: DType,
        key: String,
    },
    Tensor(Box<RawTensorRef>),
    /// Anything else (argparse namespaces, optimizer state classes): kept opaque.
    Object,
    Mark,
}

#[derive(Debug, Clone)]
struct RawTensorRef {
    dtype: DType,
    key: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn as_usize_list(v: &Value) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                other => Err(anyhow!("expected a non-negative int, found {other:?}")),
            })
            .collect(),
        other => bail!("expected a tuple of ints, found {other:?}"),
    }
}

/// Runs the pickle in `data` and returns the unpickled root value.
fn unpickle(data: &[u8]) -> Result<Value> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
        let s = data
            .get(*pos..*pos + n)
            .ok_or_else(|| anyhow!("pickle truncated at byte {pos}"))?;
        *pos += n;
        Ok(s)
    };
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| anyhow!("pickle stack underflow"));
    let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>> {
        let at = stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| anyhow!("pickle MARK missing"))?;
        let items = stack.split_off(at + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        let op = *take(&mut pos, 1)?.first().unwrap();
        match op {
            0x80 => {
                take(&mut pos, 1)?; // PROTO
            }
            0x95 => {
                take(&mut pos, 8)?; // FRAME
            }
            b'.' => return pop(&mut stack),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(take(&mut pos, 1)?[0] as i64)),
            b'M' => {
                let b = take(&mut pos, 2)?;
                stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64))
            }
            b'J' => {
                let b = take(&mut pos, 4)?;
                stack.push(Value::Int(i32::from_le_bytes(b.try_into().unwrap()) as i64))
            }
            0x8a => {
                let n = take(&mut pos, 1)?[0] as usize;
                let b = take(&mut pos, n)?;
                ensure!(n <= 8, "LONG1 of {n} bytes is too large");
                let mut v = [if b.last().is_some_and(|x| x & 0x80 != 0) {
                    0xFF
                } else {
                    0
                }; 8];
                v[..n].copy_from_slice(b);
                stack.push(Value::Int(i64::from_le_bytes(v)));
            }
            b'G' => {
                let b = take(&mut pos, 8)?;
                stack.push(Value::Float(f64::from_be_bytes(b.try_into().unwrap())))
            }
            b'X' | 0x8c | b'T' | b'U' | b'B' | b'C' => {
                let n = match op {
                    b'X' | b'T' | b'B' => {
                        u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap()) as usize
                    }
                    _ => take(&mut pos, 1)?[0] as usize,
                };
                let b = take(&mut pos, n)?.to_vec();
                stack.push(match op {
                    b'X' | 0x8c => {
                        Value::Str(String::from_utf8(b).context("pickle string is not UTF-8")?)
                    }
                    _ => Value::Bytes(b),
                });
            }
            b'q' => {
                let k = take(&mut pos, 1)?[0] as u32;
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| anyhow!("BINPUT on empty stack"))?,
                );
            }
            b'r' => {
                let k = u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap());
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| anyhow!("LONG_BINPUT on empty stack"))?,
                );
            }
            0x94 => {
                let k = memo.len() as u32;
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| anyhow!("MEMOIZE on empty stack"))?,
                );
            }
            b'h' | b'j' => {
                let k = if op == b'h' {
                    take(&mut pos, 1)?[0] as u32
                } else {
                    u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap())
                };
                stack.push(
                    memo.get(&k)
                        .cloned()
                        .ok_or_else(|| anyhow!("pickle memo {k} missing"))?,
                );
            }
            b'c' => {
                let rest = &data[pos..];
                let mut lines = rest.splitn(3, |&b| b == b'\n');
                let module = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
                let name = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
                pos += module.len() + name.len() + 2;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => bail!("STACK_GLOBAL without strings"),
                }
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                ensure!(stack.len() >= n, "pickle stack underflow");
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => d.push((k, v)),
                    Some(_) => {} // __setitem__ on an opaque object
                    None => bail!("SETITEM without a dict"),
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                if let Some(Value::Dict(d)) = stack.last_mut() {
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
            }
            b'a' => {
                let v = pop(&mut stack)?;
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.push(v);
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.extend(items);
                }
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent_load(pid)?);
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                stack.push(reduce(func, args)?);
            }
            0x81 => {
                let _args = pop(&mut stack)?;
                let _cls = pop(&mut stack)?;
                stack.push(Value::Object);
            }
            b'b' => {
                let _state = pop(&mut stack)?; // BUILD: state of an opaque object
            }
            other => bail!("unsupported pickle opcode {other:#04x} at byte {}", pos - 1),
        }
    }
}

fn persistent_load(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else {
        bail!("persistent id is not a tuple")
    };
    match items.as_slice() {
        [
            Value::Str(kind),
            Value::Global(_, class),
            Value::Str(key),
            _location,
            _numel,
        ] if kind == "storage" => {
            let dtype = DType::from_storage(class)
                .ok_or_else(|| anyhow!("unsupported storage type {class}"))?;
            Ok(Value::Storage {
                dtype,
                key: key.clone(),
            })
        }
        other => bail!("unsupported persistent id {other:?}"),
    }
}

fn reduce(func: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &func else {
        return Ok(Value::Object);
    };
    let Value::Tuple(args) = args else {
        return Ok(Value::Object);
    };
    Ok(match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let [
                Value::Storage { dtype, key },
                Value::Int(offset),
                size,
                stride,
                ..,
            ] = args.as_slice()
            else {
                bail!("unexpected arguments to {module}.{name}");
            };
            Value::Tensor(Box::new(RawTensorRef {
                dtype: *dtype,
                key: key.clone(),
                offset: *offset as usize,
                shape: as_usize_list(size)?,
                stride: as_usize_list(stride)?,
            }))
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(Value::None)
        }
        ("collections", "OrderedDict") => Value::Dict(Vec::new()),
        _ => Value::Object,
    })
}

/// All tensors of a `torch.save` file, by dotted path, in the file's order.
pub fn read_torch_checkpoint(path: &Path) -> Result<Vec<(String, RawTensor)>> {
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
    let read = |zip: &mut zip::ZipArchive<std::fs::File>, name: &str| -> Result<Vec<u8>> {
        let mut f = zip.by_name(name).map_err(|e| anyhow!("{name}: {e}"))?;
        let mut v = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut v)?;
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
    let mut refs = Vec::new();
    flatten(&root, String::new(), &mut refs);
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        if !storages.contains_key(&t.key) {
            let bytes = read(&mut zip, &format!("{prefix}data/{}", t.key)).with_context(ctx)?;
            storages.insert(t.key.clone(), bytes);
        }
        let tensor = materialise(&t, &storages[&t.key])
            .with_context(|| format!("{}: tensor {name}", path.display()))?;
        out.push((name, tensor));
    }
    Ok(out)
}

fn flatten(v: &Value, prefix: String, out: &mut Vec<(String, RawTensorRef)>) {
    match v {
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(v, name, out);
            }
        }
        Value::Tensor(t) => out.push((prefix, (**t).clone())),
        _ => {}
    }
}

/// Contiguous bytes of a (possibly strided) view into a storage.
fn materialise(t: &RawTensorRef, storage: &[u8]) -> Result<RawTensor> {
    let es = t.dtype.size();
    let numel: usize = t.shape.iter().product();
    ensure!(
        t.shape.len() == t.stride.len(),
        "shape and stride lengths differ"
    );
    let max_index = t.offset
        + t.shape
            .iter()
            .zip(&t.stride)
            .map(|(s, st)| s.saturating_sub(1) * st)
            .sum::<usize>();
    ensure!(
        numel == 0 || (max_index + 1) * es <= storage.len(),
        "view runs past its storage ({} bytes)",
        storage.len()
    );
    // Contiguous (the usual case): one copy.
    let mut contiguous = true;
    let mut expect = 1usize;
    for (s, st) in t.shape.iter().zip(&t.stride).rev() {
        if *s != 1 && *st != expect {
            contiguous = false;
        }
        expect *= s;
    }
    if contiguous {
        let data = storage[t.offset * es..(t.offset + numel) * es].to_vec();
        return Ok(RawTensor {
            dtype: t.dtype,
            shape: t.shape.clone(),
            data,
        });
    }
    let mut data = Vec::with_capacity(numel * es);
    if numel > 0 {
        let mut idx = vec![0usize; t.shape.len()];
        loop {
            let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            data.extend_from_slice(&storage[off * es..(off + 1) * es]);
            let mut d = t.shape.len();
            loop {
                if d == 0 {
                    return Ok(RawTensor {
                        dtype: t.dtype,
                        shape: t.shape.clone(),
                        data,
                    });
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    Ok(RawTensor {
        dtype: t.dtype,
        shape: t.shape.clone(),
        data,
    })
}
