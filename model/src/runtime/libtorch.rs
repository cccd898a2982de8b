//! Where the loaded libtorch lives and which version it is.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// The libtorch version tch 0.26 / torch-sys 0.26 are written against.
pub const EXPECTED_TORCH_VERSION: &str = "2.13.0";

/// The libtorch actually mapped into this process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Libtorch {
    /// Directory holding `libtorch_cpu.so`.
    pub lib_dir: PathBuf,
    /// Version string as the installation records it (`2.13.0+cu130`), when it records one.
    pub version: Option<String>,
}

impl Libtorch {
    /// `2.13.0+cu130` -> `2.13.0`.
    pub fn release(&self) -> Option<&str> {
        self.version
            .as_deref()
            .map(|v| v.split('+').next().unwrap_or(v))
    }

    /// Whether this libtorch is the release tch was built for.
    pub fn is_expected(&self) -> bool {
        self.release() == Some(EXPECTED_TORCH_VERSION)
    }
}

/// Finds the loaded `libtorch_cpu.so` among the process's shared objects and reads its version
/// from the installation (`../version.py` of a PyTorch wheel, `../build-version` of a
/// standalone libtorch archive).
pub fn libtorch() -> Option<Libtorch> {
    let path = loaded_object_path("libtorch_cpu.so")?;
    let lib_dir = path.parent()?.to_path_buf();
    let root = lib_dir.parent().unwrap_or(&lib_dir).to_path_buf();
    let version = wheel_version(&root).or_else(|| {
        std::fs::read_to_string(root.join("build-version"))
            .ok()
            .map(|s| s.trim().to_string())
    });
    Some(Libtorch { lib_dir, version })
}

fn wheel_version(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("version.py")).ok()?;
    text.lines().find_map(|line| {
        let rest = line
            .strip_prefix("__version__")?
            .trim_start()
            .strip_prefix('=')?;
        Some(
            rest.trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_string(),
        )
    })
}

/// Full path of the first loaded shared object whose file name is `file_name`.
pub(crate) fn loaded_object_path(file_name: &str) -> Option<PathBuf> {
    struct Search<'a> {
        want: &'a str,
        found: Option<PathBuf>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Search` passed below and `info` is valid for this call.
        let (search, info) = unsafe { (&mut *(data as *mut Search), &*info) };
        if info.dlpi_name.is_null() {
            return 0;
        }
        let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy();
        let path = PathBuf::from(name.as_ref());
        if path.file_name().and_then(|f| f.to_str()) == Some(search.want) {
            search.found = Some(path);
            return 1;
        }
        0
    }
    let mut search = Search {
        want: file_name,
        found: None,
    };
    // SAFETY: the callback only reads the entries it is handed.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut search as *mut Search as *mut libc::c_void) };
    search.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_linked_libtorch_and_its_version() {
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu)); // make sure it is mapped
        let lt = libtorch().expect("libtorch_cpu.so is mapped into the test binary");
        assert!(lt.lib_dir.join("libtorch_cpu.so").is_file(), "{lt:?}");
        assert!(
            lt.is_expected(),
            "expected torch {EXPECTED_TORCH_VERSION}, found {lt:?}"
        );
    }
}
