//! The version a libtorch installation records about itself: `version.py` of a PyTorch wheel
//! (`__version__ = '2.11.0+cu130'`), `build-version` of a standalone libtorch archive.
//! Shared by the run-time check and `model/build.rs` (which records the version a build links).

use std::path::Path;

/// The version string of the installation whose root (the folder holding `lib/`) is `root`.
pub fn recorded_version(root: &Path) -> Option<String> {
    wheel_version(root).or_else(|| {
        std::fs::read_to_string(root.join("build-version"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
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
