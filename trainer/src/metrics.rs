//! Run metrics as JSON lines: one object per event, appended and flushed as it happens, so a
//! crashed run keeps everything it logged and `tail -f` shows progress.

use anyhow::{Context, Result};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Appends JSON objects, one per line, to a metrics file.
pub struct MetricsWriter {
    path: PathBuf,
    /// `None`: records are dropped (the non-zero ranks of a data-parallel run).
    file: Option<File>,
}

impl MetricsWriter {
    /// Opens (creating if needed) `path` for appending; a rerun adds to what is there.
    pub fn append(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening metrics file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    /// A writer that drops every record (for processes that do not log).
    pub fn discard() -> Self {
        Self {
            path: PathBuf::new(),
            file: None,
        }
    }

    /// [`append`](Self::append) on the logging process, [`discard`](Self::discard) elsewhere.
    pub fn append_if(log: bool, path: &Path) -> Result<Self> {
        if log {
            Self::append(path)
        } else {
            Ok(Self::discard())
        }
    }

    /// Writes one record as a single line and flushes it.
    pub fn log<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        file.write_all(&line)
            .and_then(|_| file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Reads every record of a metrics file. A torn last line (the run was killed mid-write) is
/// skipped; a malformed line elsewhere is an error naming the file and line.
pub fn read_metrics(path: &Path) -> Result<Vec<serde_json::Value>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => anyhow::bail!("{}:{}: not a JSON object: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_back_skipping_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("dinov2-metrics-{}", std::process::id()));
        let path = dir.join("metrics.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let mut w = MetricsWriter::append(&path).unwrap();
            w.log(&serde_json::json!({"step": 1, "loss": 2.5})).unwrap();
        }
        let mut w = MetricsWriter::append(&path).unwrap();
        w.log(&serde_json::json!({"step": 2, "loss": 2.0})).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"step\": 3, \"lo")
            .unwrap();
        let recs = read_metrics(&path).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1]["loss"], 2.0);

        std::fs::write(&path, "{\"a\":1}\nnot json\n{\"b\":2}\n").unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:2"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
