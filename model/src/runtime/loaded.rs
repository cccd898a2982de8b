//! Which shared libraries this process has loaded, from where, and — for a library that did
//! not load — which of its dependencies the system loader cannot find. This is what a user
//! needs when a binary built on one machine runs against another machine's PyTorch.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// One loaded shared object.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadedLibrary {
    /// File name as loaded (`libtorch_cpu.so`, `libcudnn.so.9`).
    pub name: String,
    /// Full path it was mapped from.
    pub path: PathBuf,
}

/// Every shared object mapped into this process, in load order (the executable itself and the
/// kernel's vDSO left out).
pub fn loaded_libraries() -> Vec<LoadedLibrary> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the Vec passed below and `info` is valid for this call.
        let (out, info) = unsafe { (&mut *(data as *mut Vec<PathBuf>), &*info) };
        if !info.dlpi_name.is_null() {
            let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy();
            if name.starts_with('/') {
                out.push(PathBuf::from(name.as_ref()));
            }
        }
        0
    }
    let mut paths: Vec<PathBuf> = Vec::new();
    // SAFETY: the callback only reads the entries it is handed.
    unsafe {
        libc::dl_iterate_phdr(
            Some(visit),
            &mut paths as *mut Vec<PathBuf> as *mut libc::c_void,
        )
    };
    paths
        .into_iter()
        // `.../torch/lib/../../nvidia/cu13/lib/x.so` (a runpath entry of libtorch) as the folder
        // it really is
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some(LoadedLibrary { name, path })
        })
        .collect()
}

/// Full path of the first loaded shared object whose file name is `file_name`.
pub fn loaded_object_path(file_name: &str) -> Option<PathBuf> {
    loaded_libraries()
        .into_iter()
        .find(|l| l.name == file_name)
        .map(|l| l.path)
}

/// The libraries worth naming to a user: libtorch's own, the CUDA family (runtime, cuDNN,
/// cuBLAS, NCCL, ...), OpenMP and the C++ runtime; not the C library and its neighbours.
pub fn is_torch_or_cuda(name: &str) -> bool {
    // libcuda* covers the driver and libcudart; libnv* nvJitLink, nvshmem, nvrtc
    const PREFIXES: [&str; 15] = [
        "libtorch",
        "libc10",
        "libshm",
        "libcuda",
        "libcudnn",
        "libcublas",
        "libcufft",
        "libcurand",
        "libcusolver",
        "libcusparse",
        "libcupti",
        "libnccl",
        "libnv",
        "libgomp",
        "libstdc++",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The dependencies of `library` that the system loader cannot resolve, as `ldd` reports them
/// (`libcudnn.so.9 => not found`); `Err` when `ldd` cannot be run. Used after a library failed
/// to load, where the loader's own message names only the first missing one.
pub fn unresolved_dependencies(library: &Path) -> Result<Vec<String>, String> {
    let out = std::process::Command::new("ldd")
        .arg(library)
        .output()
        .map_err(|e| format!("running ldd {}: {e}", library.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("not found"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_libtorch_with_its_full_path() {
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let libs = loaded_libraries();
        let cpu = libs
            .iter()
            .find(|l| l.name == "libtorch_cpu.so")
            .expect("libtorch_cpu.so is loaded");
        assert!(cpu.path.is_absolute() && cpu.path.is_file(), "{cpu:?}");
        assert!(libs.iter().all(|l| l.path.is_absolute()));
        assert!(is_torch_or_cuda("libc10.so") && !is_torch_or_cuda("libc.so.6"));
        assert_eq!(
            loaded_object_path("libtorch_cpu.so"),
            Some(cpu.path.clone())
        );
    }

    #[test]
    fn names_the_missing_dependency_of_a_library() {
        // A copy of libtorch's small libshm.so in a folder of its own: its $ORIGIN-relative
        // search paths point nowhere there, so libtorch's own libraries are not found.
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let cpu = loaded_object_path("libtorch_cpu.so").unwrap();
        let shm = cpu.with_file_name("libshm.so");
        let dir = std::env::temp_dir().join(format!("dinov2_ldd_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("libshm.so");
        std::fs::copy(&shm, &copy).unwrap();
        let missing = unresolved_dependencies(&copy).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(missing.iter().any(|m| m == "libc10.so"), "{missing:?}");
        assert!(
            missing.iter().any(|m| m == "libtorch_cpu.so"),
            "{missing:?}"
        );
        assert!(unresolved_dependencies(&shm).unwrap().is_empty());
    }
}
