//! The tensors that checkpoint readers produce: an element type, a shape and contiguous
//! (C-order) little-endian bytes; strided views of a buffer gathered into that form.

use anyhow::{Result, anyhow, ensure};

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
}

/// A tensor read from a checkpoint: contiguous little-endian bytes in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// What a checkpoint reader found: the tensors by (dotted) name in the file's order, and the
/// entries that are not tensors (ints, argparse namespaces, pickled callables ...) as
/// `(name, type description)`, which are left out.
#[derive(Debug, Clone, Default)]
pub struct Entries {
    pub tensors: Vec<(String, RawTensor)>,
    pub skipped: Vec<(String, String)>,
}

/// Number of elements of `shape`, or an error if it overflows.
pub fn numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &s| n.checked_mul(s))
        .ok_or_else(|| anyhow!("shape {shape:?} is too large"))
}

impl RawTensor {
    /// Gathers the view `shape`/`stride` (in elements, starting at element `offset`) of
    /// `buffer` into a contiguous tensor; errors if the view runs past the buffer.
    pub fn from_strided(
        dtype: DType,
        shape: &[usize],
        stride: &[usize],
        offset: usize,
        buffer: &[u8],
    ) -> Result<Self> {
        let es = dtype.size();
        let n = numel(shape)?;
        ensure!(
            shape.len() == stride.len(),
            "shape and stride lengths differ"
        );
        let last = shape.iter().zip(stride).try_fold(offset, |acc, (s, st)| {
            s.saturating_sub(1)
                .checked_mul(*st)
                .and_then(|x| acc.checked_add(x))
        });
        ensure!(
            n == 0
                || last
                    .and_then(|l| l.checked_add(1)?.checked_mul(es))
                    .is_some_and(|end| end <= buffer.len()),
            "view runs past its buffer ({} bytes)",
            buffer.len()
        );
        let tensor = |data| Self {
            dtype,
            shape: shape.to_vec(),
            data,
        };
        let mut expect = 1usize;
        let contiguous = shape.iter().zip(stride).rev().all(|(s, st)| {
            let ok = *s == 1 || *st == expect;
            expect *= s;
            ok
        });
        if contiguous || n == 0 {
            return Ok(tensor(buffer[offset * es..(offset + n) * es].to_vec()));
        }
        let mut data = Vec::with_capacity(n * es);
        let mut idx = vec![0usize; shape.len()];
        loop {
            let off = offset + idx.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
            data.extend_from_slice(&buffer[off * es..(off + 1) * es]);
            let mut d = shape.len();
            loop {
                if d == 0 {
                    return Ok(tensor(data));
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }

    /// The transpose of a 2-D tensor (`[r, c]` -> `[c, r]`).
    pub fn transposed(&self) -> Result<Self> {
        let &[r, c] = self.shape.as_slice() else {
            anyhow::bail!("transpose of a {}-D tensor", self.shape.len())
        };
        Self::from_strided(self.dtype, &[c, r], &[1, c], 0, &self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn strided_views_and_transpose() {
        let m = RawTensor {
            dtype: DType::F32,
            shape: vec![2, 3],
            data: f32s(&[0., 1., 2., 3., 4., 5.]),
        };
        let t = m.transposed().unwrap();
        assert_eq!(t.shape, [3, 2]);
        assert_eq!(t.data, f32s(&[0., 3., 1., 4., 2., 5.]));
        assert_eq!(t.transposed().unwrap(), m);
        let slice = RawTensor::from_strided(DType::F32, &[2], &[2], 1, &m.data).unwrap();
        assert_eq!(slice.data, f32s(&[1., 3.]));
        assert!(RawTensor::from_strided(DType::F32, &[4], &[2], 0, &m.data).is_err());
        assert!(RawTensor::from_strided(DType::F32, &[usize::MAX, 2], &[1, 1], 0, &[]).is_err());
    }
}
