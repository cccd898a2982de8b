//! Atomic file output: write under a temporary name in the same directory, then rename, so a
//! killed run never leaves a partial file under the final name.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name `path` is written under before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `path` through `write`, which gets the temporary name to write: renamed into place
/// on success, removed on failure (a full disk leaves nothing behind, under either name).
pub fn write_via_temp(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    write_set_via_temp(&[path.to_path_buf()], |tmps| write(&tmps[0]))
}

/// [`write_via_temp`] for a set of files (`paths[0]` names the set in errors): `write` gets
/// their temporary names; they take their names only when every one is written, and all go
/// on failure, so a full disk never leaves part of a set looking complete.
pub fn write_set_via_temp(
    paths: &[PathBuf],
    write: impl FnOnce(&[PathBuf]) -> Result<()>,
) -> Result<()> {
    let tmps: Vec<PathBuf> = paths.iter().map(|p| temp_path(p)).collect();
    let result = write(&tmps).and_then(|()| {
        for (tmp, path) in tmps.iter().zip(paths) {
            std::fs::rename(tmp, path)
                .with_context(|| format!("renaming into {}", path.display()))?;
        }
        Ok(())
    });
    if let Err(e) = result {
        for tmp in &tmps {
            let _ = std::fs::remove_file(tmp);
        }
        let first = paths
            .first()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("."));
        let dir = first.parent().filter(|d| !d.as_os_str().is_empty());
        let note = free_space_note(dir.unwrap_or(Path::new(".")));
        return Err(e.context(format!("writing {}{note}", first.display())));
    }
    Ok(())
}

/// Whether `name` is a temporary name of [`temp_path`] or of the checkpoint writer
/// (`NAME.<pid>.tmp`).
pub fn is_temp_name(name: &str) -> bool {
    name.strip_suffix(".tmp")
        .and_then(|s| s.rsplit_once('.'))
        .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the temporary files a killed writer left in `dir` (call it holding the directory's
/// lock, so no live writer's file goes). Returns how many.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for e in entries {
        let e = e?;
        if is_temp_name(&e.file_name().to_string_lossy()) {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// `" (the filesystem holding DIR has N KiB free: disk full?)"` when little space is left
/// there, else nothing: a write error on a full disk is not always ENOSPC (LMDB reports a
/// short write as EIO).
pub fn free_space_note(dir: &Path) -> String {
    let probe = std::iter::successors(Some(dir), |d| d.parent())
        .find(|d| d.exists())
        .unwrap_or(dir);
    let Ok(c) = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes()) else {
        return String::new();
    };
    // SAFETY: a valid C string and a zeroed out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return String::new();
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    if free < 64 << 20 {
        format!(
            " (the filesystem holding {} has {} KiB free: disk full?)",
            probe.display(),
            free >> 10
        )
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("dinov2-atomic-{}", std::process::id()));
        let path = dir.join("sub/out.json");
        write_atomic(&path, b"first version, longer").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind: {names:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn temporary_names_are_recognised() {
        let t = temp_path(Path::new("/x/.progress.json"));
        assert!(is_temp_name(&t.file_name().unwrap().to_string_lossy()));
        assert!(is_temp_name(".iter_6.safetensors.30611.tmp"));
        assert!(!is_temp_name("notes.tmp"));
        assert!(!is_temp_name("train-00000.lmdb"));
    }

    #[test]
    fn unwritable_target_is_a_clear_error() {
        let err = write_atomic(Path::new("/proc/definitely/not/here.json"), b"x").unwrap_err();
        assert!(
            format!("{err:#}").contains("/proc/definitely/not"),
            "{err:#}"
        );
    }
}
