//! `manifest.json`: what a shard directory holds and how it was made.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT_NAME: &str = "dinov2-shards";
pub const FORMAT_VERSION: u32 = 1;

/// The file format of the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardFormat {
    Lmdb,
    Arrow,
}

impl ShardFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Lmdb => "lmdb",
            Self::Arrow => "arrow",
        }
    }
}

/// Options the shards were written with; a resumed conversion must use the same ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertOptions {
    /// Source images per shard.
    pub shard_size: u64,
    /// Longest side of re-encoded images (`None`: JPEG bytes passed through untouched).
    pub max_side: Option<u32>,
    /// JPEG quality of every re-encoded image (conversions and `max_side`).
    pub quality: u8,
    /// `skip` or `fail`.
    pub on_error: String,
    /// How passed-through JPEGs were checked: `decode`, `structure` or `none`.
    pub validate: String,
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// File name inside the shard directory.
    pub file: String,
    /// Records stored (sources minus skipped ones).
    pub records: u64,
    /// Index of the shard's first source image within the split.
    pub first_source: u64,
    /// Source images the shard covers.
    pub sources: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// xxh3-128 of the whole file, lower-case hex.
    pub xxh3_128: String,
}

/// The shards of one split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitManifest {
    pub sources: u64,
    pub records: u64,
    pub shards: Vec<ShardEntry>,
}

/// Counts of what happened to the source files, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Images stored after a conversion (`cmyk`, `grayscale`, `png`, ...).
    pub converted: BTreeMap<String, u64>,
    /// Images resized on write (`--max-side`).
    pub resized: u64,
    /// Sources left out, by reason (`empty file`, `truncated or corrupt`, `not an image`, ...).
    pub skipped: BTreeMap<String, u64>,
    /// Images stored whose extension names another format (a PNG named `.JPEG`).
    pub misnamed: u64,
    /// Files in the tree not taken as sources (no image extension, no val label).
    pub ignored: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub shard_format: ShardFormat,
    /// `dinov2 <version>`.
    pub created_by: String,
    pub source_root: String,
    pub options: ConvertOptions,
    /// Class names (synsets); a record's label indexes this list.
    pub classes: Vec<String>,
    pub splits: BTreeMap<String, SplitManifest>,
    pub counts: Counts,
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "{} is not a shard directory (no readable {MANIFEST_FILE})",
                dir.display()
            )
        })?;
        let m: Manifest = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        if m.format != FORMAT_NAME || m.format_version != FORMAT_VERSION {
            bail!(
                "{}: format {} v{}, this build reads {FORMAT_NAME} v{FORMAT_VERSION}",
                path.display(),
                m.format,
                m.format_version
            );
        }
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::atomic::write_atomic(&dir.join(MANIFEST_FILE), &serde_json::to_vec_pretty(self)?)
    }

    /// The named split, or an error listing the ones there are.
    pub fn split(&self, name: &str) -> Result<&SplitManifest> {
        self.splits.get(name).with_context(|| {
            let have: Vec<_> = self.splits.keys().collect();
            format!("no split {name:?} in these shards (have {have:?})")
        })
    }
}

/// xxh3-128 of a file, streamed, as lower-case hex.
pub fn file_checksum(path: &Path) -> Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, format!("{:032x}", hasher.digest128())))
}
