//! `dinov2 shards info|verify`.

use anyhow::Result;
use clap::Subcommand;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ShardsCommand {
    /// Summarise a shard directory from its manifest.
    Info { dir: PathBuf },
    /// Check every shard's size and checksum, then read and decode every record.
    /// Exits non-zero, listing each problem by shard and record, when anything is wrong.
    Verify {
        dir: PathBuf,
        /// Decode threads (default: all cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ShardsCommand) -> Result<ExitCode> {
    match cmd {
        ShardsCommand::Info { dir } => {
            print!("{}", converters::verify::info(&dir)?);
            Ok(ExitCode::SUCCESS)
        }
        ShardsCommand::Verify { dir, workers, json } => {
            let workers = workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let r = converters::verify::verify(&dir, workers, std::io::stderr().is_terminal())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{}: {} shards, {} records, {:.1} MB checked",
                    dir.display(),
                    r.shards,
                    r.records,
                    r.bytes as f64 / 1e6
                );
                for p in &r.problems {
                    println!("  PROBLEM {p}");
                }
                if r.problems.is_empty() {
                    println!("all shards and records are intact");
                }
            }
            Ok(if r.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
