//! numpy arrays in an unpickled object graph. `ndarray.__reduce__` pickles an array as
//! `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b"b")` (`numpy._core` in numpy 2)
//! followed by `BUILD` with the state `(version, shape, dtype, is_fortran, data)`; the dtype is
//! `numpy.dtype("f4", False, True)` with `BUILD` state `(3, "<", ...)` (the byte order).
//! numpy scalars are `numpy.core.multiarray.scalar(dtype, data)`.

use crate::pickle::{Object, Value, usize_list};
use crate::tensor::{DType, RawTensor, numel};
use anyhow::{Result, anyhow, bail, ensure};

fn is_multiarray(module: &str) -> bool {
    matches!(module, "numpy.core.multiarray" | "numpy._core.multiarray")
}

/// The array (or numpy scalar, as a 0-d tensor) `v` stands for, as a C-order little-endian
/// tensor; `Ok(None)` if `v` is not a numpy array or scalar.
pub fn to_tensor(v: &Value) -> Result<Option<RawTensor>> {
    let Value::Object(o) = v else {
        return Ok(None);
    };
    match o.global() {
        Some((m, "_reconstruct")) if is_multiarray(m) => array(o).map(Some),
        Some((m, "scalar")) if is_multiarray(m) => {
            let args = o.args.items().unwrap_or_default();
            let [dt, Value::Bytes(data)] = args.as_slice() else {
                bail!("unexpected arguments to numpy scalar()");
            };
            let dtype = dtype(dt)?;
            ensure!(data.len() == dtype.size(), "numpy scalar of the wrong size");
            Ok(Some(RawTensor {
                dtype,
                shape: vec![],
                data: data.to_vec(),
            }))
        }
        _ => Ok(None),
    }
}

fn array(o: &Object) -> Result<RawTensor> {
    let args = o.args.items().unwrap_or_default();
    match args.first() {
        Some(Value::Global(m, n)) if &**m == "numpy" && &**n == "ndarray" => {}
        Some(other) => bail!(
            "numpy array of class {} is not supported (only numpy.ndarray)",
            other.describe()
        ),
        None => bail!("numpy _reconstruct without arguments"),
    }
    let state = o.state.borrow();
    let state = state
        .as_ref()
        .and_then(Value::items)
        .ok_or_else(|| anyhow!("numpy array without its state (BUILD)"))?;
    // Version 1 states lead with the version; older ones do not.
    let fields = match state.as_slice() {
        [Value::Int(_), rest @ ..] | rest => rest,
    };
    let [shape, dt, Value::Bool(fortran), data] = fields else {
        bail!("unexpected numpy array state ({} items)", state.len());
    };
    let shape = usize_list(shape)?;
    let dtype = dtype(dt)?;
    let Value::Bytes(data) = data else {
        bail!(
            "numpy array data is {} (object arrays are not supported)",
            data.describe()
        );
    };
    let n = numel(&shape)?;
    ensure!(
        n.checked_mul(dtype.size()) == Some(data.len()),
        "numpy array of shape {shape:?} and {dtype:?} has {} bytes of data",
        data.len()
    );
    let c_order = RawTensor {
        dtype,
        shape: shape.clone(),
        data: Vec::new(),
    };
    if !*fortran || shape.len() < 2 {
        return Ok(RawTensor {
            data: data.to_vec(),
            ..c_order
        });
    }
    // Fortran order: the first index varies fastest.
    let mut stride = Vec::with_capacity(shape.len());
    let mut s = 1;
    for d in &shape {
        stride.push(s);
        s *= d;
    }
    RawTensor::from_strided(dtype, &shape, &stride, 0, data)
}

/// A `numpy.dtype(code, align, copy)` object with its byte order from the `BUILD` state.
fn dtype(v: &Value) -> Result<DType> {
    let Value::Object(o) = v else {
        bail!("expected a numpy dtype, found {}", v.describe());
    };
    ensure!(
        o.global() == Some(("numpy", "dtype")),
        "expected a numpy dtype, found {}",
        v.describe()
    );
    let code = o.args.items().unwrap_or_default();
    let code = code
        .first()
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("numpy dtype without a type code"))?;
    let order = o
        .state
        .borrow()
        .as_ref()
        .and_then(Value::items)
        .and_then(|s| s.get(1)?.as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("numpy dtype {code:?} without its byte order (BUILD state)"))?;
    let dtype = match code {
        "f8" => DType::F64,
        "f4" => DType::F32,
        "f2" => DType::F16,
        "i8" => DType::I64,
        "i4" => DType::I32,
        "i2" => DType::I16,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "b1" => DType::Bool,
        "u2" => bail!(
            "numpy dtype uint16 is not supported (paddle saves bfloat16 tensors as uint16; \
             cast them to float32 before saving)"
        ),
        other => bail!("numpy dtype {other:?} is not supported"),
    };
    match order.as_str() {
        "<" | "|" | "=" => Ok(dtype),
        ">" => bail!("big-endian numpy arrays ('>{code}') are not supported"),
        other => bail!("unknown numpy byte order {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::unpickle;

    /// `pickle.dumps(x, protocol=2)` by numpy 2.4 of
    /// `x = np.asfortranarray(np.arange(-3, 3, dtype=f"{order}i2").reshape(2, 3))`:
    /// the data, in Fortran order, as a latin-1 string through `_codecs.encode`.
    fn fortran_i16(order: u8) -> Vec<u8> {
        let (dtype_order, data): (&[u8], &[u8]) = match order {
            b'<' => (
                b"<",
                b"\xc3\xbd\xc3\xbf\x00\x00\xc3\xbe\xc3\xbf\x01\x00\xc3\xbf\xc3\xbf\x02\x00",
            ),
            _ => (
                b">",
                b"\xc3\xbf\xc3\xbd\x00\x00\xc3\xbf\xc3\xbe\x00\x01\xc3\xbf\xc3\xbf\x00\x02",
            ),
        };
        [
            &b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02\
c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\t\
(K\x01K\x02K\x03\x86q\ncnumpy\ndtype\nq\x0bX\x02\x00\x00\x00i2q\x0c\x89\x88\x87q\rRq\x0e(K\x03X\x01\x00\x00\x00"[..],
            dtype_order,
            b"q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x88h\x03X\x12\x00\x00\x00",
            data,
            b"q\x11h\x05\x86q\x12Rq\x13tq\x14b.",
        ]
        .concat()
    }

    #[test]
    fn fortran_arrays_become_c_order() {
        let t = to_tensor(&unpickle(&fortran_i16(b'<')).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(t.dtype, DType::I16);
        assert_eq!(t.shape, [2, 3]);
        let vals: Vec<i16> = t
            .data
            .chunks(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(vals, [-3, -2, -1, 0, 1, 2]);
    }

    #[test]
    fn big_endian_arrays_are_refused() {
        let err = to_tensor(&unpickle(&fortran_i16(b'>')).unwrap()).unwrap_err();
        assert!(err.to_string().contains("big-endian"), "{err}");
    }
}
