//! Process-wide libtorch settings that tch has no call for, through `csrc/torch_settings.cpp`.

use anyhow::{Result, bail};
use std::ffi::{CStr, c_char, c_int};

unsafe extern "C" {
    fn dinov2_set_cuda_tf32(matmul: c_int, conv: c_int, err: *mut c_char, n: usize) -> c_int;
    fn dinov2_get_cuda_tf32(
        matmul: *mut c_int,
        conv: *mut c_int,
        err: *mut c_char,
        n: usize,
    ) -> c_int;
}

fn check(rc: c_int, err: &[c_char], what: &str) -> Result<()> {
    if rc != 0 {
        // SAFETY: the shim wrote a NUL-terminated message into `err` (snprintf).
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
        bail!("{what}: {msg}");
    }
    Ok(())
}

/// Whether CUDA fp32 matrix products (cuBLAS) and convolutions (cuDNN) may use TF32 tensor
/// cores. libtorch's (and PyTorch's) defaults: products no, convolutions yes. `false` for both
/// gives IEEE fp32 everywhere (what exactness checks against the reference want).
pub fn set_cuda_tf32(matmul: bool, conv: bool) -> Result<()> {
    let mut err = [0 as c_char; 512];
    // SAFETY: plain C call; `err` outlives it and its length is passed.
    let rc = unsafe {
        dinov2_set_cuda_tf32(matmul as c_int, conv as c_int, err.as_mut_ptr(), err.len())
    };
    check(rc, &err, "setting TF32")
}

/// The current TF32 settings: (matrix products, convolutions).
pub fn cuda_tf32() -> Result<(bool, bool)> {
    let (mut m, mut c) = (0, 0);
    let mut err = [0 as c_char; 512];
    // SAFETY: as above; `m` and `c` are valid for writes.
    let rc = unsafe { dinov2_get_cuda_tf32(&mut m, &mut c, err.as_mut_ptr(), err.len()) };
    check(rc, &err, "reading the TF32 settings")?;
    Ok((m != 0, c != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_settings_round_trip_and_start_at_libtorchs_defaults() {
        assert_eq!(cuda_tf32().unwrap(), (false, true), "libtorch's defaults");
        set_cuda_tf32(false, false).unwrap();
        assert_eq!(cuda_tf32().unwrap(), (false, false));
        set_cuda_tf32(true, true).unwrap();
        assert_eq!(cuda_tf32().unwrap(), (true, true));
        set_cuda_tf32(false, true).unwrap();
        assert_eq!(cuda_tf32().unwrap(), (false, true));
    }
}
