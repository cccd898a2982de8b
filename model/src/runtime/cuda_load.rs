//! Loading `libtorch_cuda.so` at start-up so the same binary uses CUDA where it exists.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

/// What happened when `libtorch_cuda.so` was loaded.
#[derive(Debug, Clone, serde::Serialize)]
pub enum CudaLoad {
    /// Loaded from this path.
    Loaded(String),
    /// Not found next to `libtorch_cpu.so` (a CPU-only libtorch).
    Absent,
    /// Present but could not be loaded; the loader's message (usually a missing CUDA library).
    Failed(String),
}

static LOAD: OnceLock<CudaLoad> = OnceLock::new();

/// Loads `libtorch_cuda.so` (once) from the directory of the linked `libtorch_cpu.so`.
/// Call it before the first tch call that asks about CUDA; later calls return the first
/// outcome. Never fails: without it, CPU.
pub fn init() -> &'static CudaLoad {
    LOAD.get_or_init(load)
}

fn load() -> CudaLoad {
    let Some(lib_dir) = super::libtorch().map(|l| l.lib_dir) else {
        return CudaLoad::Failed("libtorch_cpu.so is not loaded in this process".into());
    };
    let path = lib_dir.join("libtorch_cuda.so");
    if !path.exists() {
        return CudaLoad::Absent;
    }
    let c_path = CString::new(path.to_string_lossy().as_bytes()).expect("no NUL in a path");
    // SAFETY: plain dlopen of a library; RTLD_GLOBAL so libtorch's registries see its kernels.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local message after a failed dlopen.
        let msg = unsafe { libc::dlerror() };
        let msg = if msg.is_null() {
            "unknown dlopen error".to_string()
        } else {
            unsafe { CStr::from_ptr(msg) }
                .to_string_lossy()
                .into_owned()
        };
        return CudaLoad::Failed(msg);
    }
    CudaLoad::Loaded(path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_is_idempotent_and_never_panics() {
        let first = format!("{:?}", init());
        let second = format!("{:?}", init());
        assert_eq!(first, second);
        // Whatever the outcome, CPU tensors keep working.
        let t = tch::Tensor::ones([2, 2], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(t.sum(tch::Kind::Float).double_value(&[]), 4.0);
    }
}
