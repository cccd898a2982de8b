//! Where the loaded libtorch lives and which version it is.

use std::path::PathBuf;

/// The libtorch release this build linked (`2.11.0` with tch 0.24, `2.13.0` with tch 0.26), as
/// the installation recorded it at build time (`model/build.rs`); empty when it recorded none.
/// A libtorch of another release at run time has another C++ ABI: the loaded one must match.
pub const EXPECTED_TORCH_VERSION: &str = release_of(env!("DINOV2_LIBTORCH_BUILD_VERSION"));

/// `2.11.0+cu130` -> `2.11.0`, at compile time.
const fn release_of(v: &'static str) -> &'static str {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] != b'+' {
        i += 1;
    }
    match v.split_at_checked(i) {
        Some((head, _)) => head,
        None => v,
    }
}

/// The libtorch actually mapped into this process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Libtorch {
    /// Directory holding `libtorch_cpu.so`.
    pub lib_dir: PathBuf,
    /// Version string as the installation records it (`2.11.0+cu130`), when it records one.
    pub version: Option<String>,
}

impl Libtorch {
    /// `2.11.0+cu130` -> `2.11.0`.
    pub fn release(&self) -> Option<&str> {
        self.version
            .as_deref()
            .map(|v| v.split('+').next().unwrap_or(v))
    }

    /// Whether this libtorch is the release this binary was built against (true when the
    /// build recorded no version: nothing to check against).
    pub fn is_expected(&self) -> bool {
        EXPECTED_TORCH_VERSION.is_empty() || self.release() == Some(EXPECTED_TORCH_VERSION)
    }
}

/// Finds the loaded `libtorch_cpu.so` among the process's shared objects and reads its version
/// from the installation (`../version.py` of a PyTorch wheel, `../build-version` of a
/// standalone libtorch archive).
pub fn libtorch() -> Option<Libtorch> {
    let path = super::loaded::loaded_object_path("libtorch_cpu.so")?;
    let lib_dir = path.parent()?.to_path_buf();
    let root = lib_dir.parent().unwrap_or(&lib_dir);
    let version = super::version_file::recorded_version(root);
    Some(Libtorch { lib_dir, version })
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
