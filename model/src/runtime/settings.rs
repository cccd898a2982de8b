//! Process-wide libtorch settings that tch has no call for, through `csrc/torch_settings.cpp`:
//! TF32, and autocast per device type with its dtype ([`autocast`], [`Precision`]).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::ffi::{CStr, c_char, c_int};
use tch::{Device, Kind};

unsafe extern "C" {
    fn dinov2_set_cuda_tf32(matmul: c_int, conv: c_int, err: *mut c_char, n: usize) -> c_int;
    fn dinov2_get_cuda_tf32(
        matmul: *mut c_int,
        conv: *mut c_int,
        err: *mut c_char,
        n: usize,
    ) -> c_int;
    fn dinov2_get_autocast(
        device_type: c_int,
        enabled: *mut c_int,
        dtype: *mut c_int,
        err: *mut c_char,
        n: usize,
    ) -> c_int;
    fn dinov2_set_autocast(
        device_type: c_int,
        enabled: c_int,
        dtype: c_int,
        err: *mut c_char,
        n: usize,
    ) -> c_int;
    fn dinov2_autocast_enter(
        device_type: c_int,
        enabled: c_int,
        dtype: c_int,
        prev_enabled: *mut c_int,
        prev_dtype: *mut c_int,
        err: *mut c_char,
        n: usize,
    ) -> c_int;
    fn dinov2_autocast_exit(
        device_type: c_int,
        prev_enabled: c_int,
        prev_dtype: c_int,
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

/// The precision a forward pass computes in: fp32 (autocast off), or autocast to fp16 or bf16
/// (matrix products and convolutions in the reduced type, reductions and normalisations in
/// fp32, as libtorch's autocast lists decide; parameters stay fp32). Written `fp32`, `fp16`,
/// `bf16` (also `float32`, `float16`/`half`, `bfloat16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    #[serde(alias = "float32")]
    Fp32,
    #[serde(alias = "float16", alias = "half")]
    Fp16,
    #[serde(alias = "bfloat16")]
    Bf16,
}

impl Precision {
    pub const NAMES: &'static str = "fp32, fp16 or bf16";

    /// `fp32`, `fp16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Fp16 => "fp16",
            Self::Bf16 => "bf16",
        }
    }

    /// The names [`Precision`] deserializes from (case-insensitive here).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Self::Fp32,
            "fp16" | "float16" | "half" => Self::Fp16,
            "bf16" | "bfloat16" => Self::Bf16,
            _ => bail!("unknown precision {s:?} (expected {})", Self::NAMES),
        })
    }

    /// The autocast dtype: `None` for fp32 (autocast off).
    pub fn autocast_kind(self) -> Option<Kind> {
        match self {
            Self::Fp32 => None,
            Self::Fp16 => Some(Kind::Half),
            Self::Bf16 => Some(Kind::BFloat16),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// libtorch's device type number (c10::DeviceType) of the devices autocast covers here.
fn device_type(device: Device) -> Result<c_int> {
    Ok(match device {
        Device::Cpu => 0,
        Device::Cuda(_) => 1,
        d => bail!("autocast: {d:?} is neither the CPU nor a CUDA device"),
    })
}

/// c10::ScalarType numbers (tch's `Kind` keeps its own conversion private).
fn kind_code(k: Kind) -> Result<c_int> {
    Ok(match k {
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::BFloat16 => 15,
        k => bail!("autocast: {k:?} is not an autocast dtype (Half, BFloat16 or Float)"),
    })
}

fn code_kind(c: c_int) -> Result<Kind> {
    Ok(match c {
        5 => Kind::Half,
        6 => Kind::Float,
        15 => Kind::BFloat16,
        c => bail!("autocast: libtorch reports dtype number {c}"),
    })
}

/// Whether autocast is on for `device`'s type in this thread, and its dtype (libtorch's
/// defaults: off; fp16 on CUDA, bf16 on the CPU).
pub fn autocast_state(device: Device) -> Result<(bool, Kind)> {
    let d = device_type(device)?;
    let (mut on, mut dtype) = (0, 0);
    let mut err = [0 as c_char; 512];
    // SAFETY: plain C call; the out-pointers and `err` are valid for writes.
    let rc = unsafe { dinov2_get_autocast(d, &mut on, &mut dtype, err.as_mut_ptr(), err.len()) };
    check(rc, &err, "reading the autocast state")?;
    Ok((on != 0, code_kind(dtype)?))
}

/// Sets autocast for `device`'s type in this thread (no nesting bookkeeping: prefer
/// [`autocast`], which restores the previous state).
pub fn set_autocast_state(device: Device, enabled: bool, dtype: Kind) -> Result<()> {
    let (d, k) = (device_type(device)?, kind_code(dtype)?);
    let mut err = [0 as c_char; 512];
    // SAFETY: plain C call; `err` outlives it and its length is passed.
    let rc = unsafe { dinov2_set_autocast(d, enabled as c_int, k, err.as_mut_ptr(), err.len()) };
    check(rc, &err, "setting autocast")
}

/// An autocast scope of one device type, as `torch.autocast(device_type, dtype, enabled)`:
/// entering sets the state and counts a nesting level; dropping (on any exit: return, `?`,
/// panic) undoes both, clearing libtorch's cache of casted weights when the outermost scope
/// ends, and puts back the state found on entry.
#[must_use = "autocast ends when the guard is dropped"]
pub struct AutocastGuard {
    device_type: c_int,
    prev_enabled: c_int,
    prev_dtype: c_int,
}

impl AutocastGuard {
    /// Autocast to `precision`'s dtype on `device`'s type; [`Precision::Fp32`] turns it off
    /// there (keeping the dtype), as `autocast(enabled=False)`.
    pub fn enter(device: Device, precision: Precision) -> Result<Self> {
        let d = device_type(device)?;
        let (on, k) = match precision.autocast_kind() {
            Some(k) => (1, kind_code(k)?),
            None => (0, -1),
        };
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        let mut err = [0 as c_char; 512];
        // SAFETY: plain C call; the out-pointers and `err` are valid for writes.
        let rc = unsafe {
            dinov2_autocast_enter(
                d,
                on,
                k,
                &mut prev_enabled,
                &mut prev_dtype,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        check(rc, &err, "entering autocast")?;
        Ok(Self {
            device_type: d,
            prev_enabled,
            prev_dtype,
        })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        let mut err = [0 as c_char; 512];
        // SAFETY: plain C call with the values `enter` read back from libtorch.
        let rc = unsafe {
            dinov2_autocast_exit(
                self.device_type,
                self.prev_enabled,
                self.prev_dtype,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        // Cannot fail with the device type and dtype `enter` checked; never panic in drop.
        if let Err(e) = check(rc, &err, "leaving autocast") {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Runs `f` under autocast to `precision` on `device`'s type (the CPU or CUDA), restoring the
/// previous autocast state afterwards whatever `f` returns (or if it panics). With
/// [`Precision::Fp32`], autocast is off for that device type inside `f`. Parameters are not
/// touched: they stay fp32 (autocast casts per op, and caches the casts of leaf tensors
/// within the outermost scope). Run the backward pass outside.
pub fn autocast<T>(device: Device, precision: Precision, f: impl FnOnce() -> T) -> Result<T> {
    let _g = AutocastGuard::enter(device, precision)?;
    Ok(f())
}

/// Runs `f` with autocast off on the CPU and CUDA (the reference's
/// `torch.cuda.amp.autocast(enabled=False)` around math that must stay fp32, e.g. KoLeo).
/// With autocast already off everywhere, just `f()` (no libtorch call at all).
pub fn without_autocast<T>(f: impl FnOnce() -> T) -> T {
    let on = |d| autocast_state(d).is_ok_and(|(on, _)| on);
    let guards: Vec<AutocastGuard> = [Device::Cpu, Device::Cuda(0)]
        .into_iter()
        .filter(|&d| on(d))
        .filter_map(|d| AutocastGuard::enter(d, Precision::Fp32).ok())
        .collect();
    let out = f();
    drop(guards);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn autocast_sets_the_dtype_per_device_nests_and_restores() {
        // libtorch's defaults (this test's thread is fresh: autocast state is per thread).
        assert_eq!(
            autocast_state(Device::Cpu).unwrap(),
            (false, Kind::BFloat16)
        );
        assert_eq!(
            autocast_state(Device::Cuda(0)).unwrap(),
            (false, Kind::Half)
        );
        let a = Tensor::ones([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::ones([8, 2], (Kind::Float, Device::Cpu));
        let k = autocast(Device::Cpu, Precision::Bf16, || {
            assert_eq!(autocast_state(Device::Cpu).unwrap(), (true, Kind::BFloat16));
            // CUDA autocast is untouched.
            assert!(!autocast_state(Device::Cuda(0)).unwrap().0);
            let inner = autocast(Device::Cpu, Precision::Fp32, || a.mm(&b).kind()).unwrap();
            // A softmax stays fp32 (autocast's fp32 list) even from a bf16 input.
            let sm = a.mm(&b).softmax(-1, Kind::Float).kind();
            let without = without_autocast(|| a.mm(&b).kind());
            assert!(
                autocast_state(Device::Cpu).unwrap().0,
                "restored after nesting"
            );
            (a.mm(&b).kind(), inner, sm, without)
        })
        .unwrap();
        assert_eq!(k, (Kind::BFloat16, Kind::Float, Kind::Float, Kind::Float));
        assert_eq!(
            autocast_state(Device::Cpu).unwrap(),
            (false, Kind::BFloat16)
        );
        assert_eq!(a.mm(&b).kind(), Kind::Float);

        // fp16 on the CPU dtype, and the CUDA state, set without a GPU (thread-local flags).
        let k = autocast(Device::Cuda(0), Precision::Bf16, || {
            autocast_state(Device::Cuda(0)).unwrap()
        })
        .unwrap();
        assert_eq!(k, (true, Kind::BFloat16));
        assert_eq!(
            autocast_state(Device::Cuda(0)).unwrap(),
            (false, Kind::Half)
        );

        // Restored when the closure panics, too.
        let r = std::panic::catch_unwind(|| {
            autocast(Device::Cpu, Precision::Fp16, || panic!("inside")).unwrap()
        });
        assert!(r.is_err());
        assert_eq!(
            autocast_state(Device::Cpu).unwrap(),
            (false, Kind::BFloat16)
        );

        set_autocast_state(Device::Cpu, true, Kind::Half).unwrap();
        assert_eq!(autocast_state(Device::Cpu).unwrap(), (true, Kind::Half));
        set_autocast_state(Device::Cpu, false, Kind::BFloat16).unwrap();
        assert!(set_autocast_state(Device::Cpu, false, Kind::Double).is_err());
        assert!(autocast(Device::Mps, Precision::Bf16, || ()).is_err());
    }

    #[test]
    fn precision_names() {
        for (s, p) in [
            ("fp32", Precision::Fp32),
            ("float16", Precision::Fp16),
            ("BF16", Precision::Bf16),
            ("bfloat16", Precision::Bf16),
        ] {
            assert_eq!(Precision::parse(s).unwrap(), p);
        }
        let e = Precision::parse("fp8").unwrap_err().to_string();
        assert!(e.contains("fp8") && e.contains("bf16"), "{e}");
        assert_eq!(Precision::Bf16.to_string(), "bf16");
    }

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
