//! One writer per output directory: a conversion, a training or a probe holds an exclusive
//! lock on `DIR/.lock` (`flock`, released by the kernel when the process ends, even by
//! SIGKILL) for as long as it writes there. A second process aimed at the same directory is
//! refused at once, naming the holder, instead of interleaving its files with the first's.

use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = ".lock";

/// A held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Creates `dir` if needed and locks it for `what` (e.g. "dinov2 convert"); an error when
    /// another process holds it or the directory cannot be written.
    pub fn acquire(dir: &Path, what: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the output directory {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot write to the output directory {} (creating {LOCK_FILE})",
                    dir.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "{} is in use by another process ({}); wait for it to end or choose another \
                     output directory",
                    dir.display(),
                    holder.trim()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let note = format!("{what}, pid {}", std::process::id());
        file.set_len(0)
            .and_then(|_| file.write_all(note.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("dinov2-lock-{}", std::process::id()));
        let first = DirLock::acquire(&dir, "first").unwrap();
        let err = format!("{:#}", DirLock::acquire(&dir, "second").unwrap_err());
        assert!(
            err.contains("in use by another process") && err.contains("first, pid"),
            "{err}"
        );
        drop(first);
        DirLock::acquire(&dir, "second").unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
