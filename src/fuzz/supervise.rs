//! Child processes: the parent runs every chunk of inputs in a `--worker` child, reads its
//! progress lines, and classifies a death. The child writes the index it is on into a cursor
//! file before each input, so a crash (abort, stack overflow, failed allocation, signal) names
//! its input; a watchdog thread in the child exits with [`HANG_EXIT`] when one input runs
//! too long.

use super::Stats;
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

/// A worker's exit status when its watchdog saw a hang.
pub const HANG_EXIT: i32 = 124;

/// A chunk of one parser's inputs: `start..end`.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub parser: String,
    pub start: u64,
    pub end: u64,
}

/// How a child ended.
pub enum Outcome {
    Done(Stats),
    /// Died on input `index` (`hang`, `abort` or `over-allocation`), after `stats`.
    Died {
        stats: Stats,
        index: u64,
        kind: &'static str,
        message: String,
    },
}

pub struct Running {
    pub chunk: Chunk,
    pub started: std::time::Instant,
    child: Child,
    cursor: PathBuf,
    stdout: JoinHandle<Option<Stats>>,
    stderr: JoinHandle<String>,
}

pub fn spawn(
    chunk: Chunk,
    seed: u64,
    out: &Path,
    hang_s: u64,
    deadline_unix_ms: Option<u64>,
) -> Result<Running> {
    let cursor = out.join(format!("cursor-{}-{}", chunk.parser, chunk.start));
    std::fs::write(&cursor, chunk.start.to_le_bytes())?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["bench", "fuzz", "--worker", &chunk.parser])
        .args([
            "--seed",
            &seed.to_string(),
            "--start",
            &chunk.start.to_string(),
            "--end",
            &chunk.end.to_string(),
        ])
        .args(["--hang-seconds", &hang_s.to_string()])
        .arg("--out")
        .arg(out)
        .arg("--cursor")
        .arg(&cursor)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = deadline_unix_ms {
        cmd.args(["--deadline-ms", &d.to_string()]);
    }
    let mut child = cmd.spawn().context("starting a fuzz worker")?;
    let so = child.stdout.take().unwrap();
    let se = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut last = None;
        for line in BufReader::new(so).lines().map_while(Result::ok) {
            if let Ok(s) = serde_json::from_str::<Stats>(&line) {
                last = Some(s);
            }
        }
        last
    });
    let stderr = std::thread::spawn(move || {
        // Keep the tail only: a dying worker's last words.
        let mut tail = Vec::new();
        let mut buf = [0u8; 4096];
        let mut se = se;
        while let Ok(n) = se.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 16384 {
                tail.drain(..tail.len() - 8192);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    Ok(Running {
        chunk,
        started: std::time::Instant::now(),
        child,
        cursor,
        stdout,
        stderr,
    })
}

impl Running {
    /// `Some` once the child has exited.
    pub fn poll(&mut self) -> Result<Option<Outcome>> {
        let Some(status) = self.child.try_wait()? else {
            return Ok(None);
        };
        let stats = self.stdout_stats();
        let err = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new))
            .join()
            .unwrap_or_default();
        let mut cur = [0u8; 8];
        std::fs::File::open(&self.cursor)?.read_exact_at(&mut cur, 0)?;
        let _ = std::fs::remove_file(&self.cursor);
        let index = u64::from_le_bytes(cur);
        let stats = stats.unwrap_or_else(|| Stats::new(&self.chunk.parser));
        if status.success() && stats.finished {
            return Ok(Some(Outcome::Done(stats)));
        }
        let tail: String = err
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        let kind = if status.code() == Some(HANG_EXIT) {
            "hang"
        } else if err.contains("memory allocation of") {
            "over-allocation"
        } else {
            "abort"
        };
        let message = format!("{status}: {tail}");
        Ok(Some(Outcome::Died {
            stats,
            index,
            kind,
            message,
        }))
    }

    fn stdout_stats(&mut self) -> Option<Stats> {
        std::mem::replace(&mut self.stdout, std::thread::spawn(|| None))
            .join()
            .ok()
            .flatten()
    }
}
