//! Reading LMDB shards (heed). Each shard is one LMDB file opened read-only, without a lock
//! file and without read-ahead (access is random); see [`super::record`] for the layout.

use super::record::{self, META_KEY, Record};
use anyhow::{Context, Result, anyhow};
use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

struct Inner {
    env: Env,
    db: Database<Bytes, Bytes>,
}

/// One open LMDB shard; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct LmdbShard {
    path: PathBuf,
    inner: Arc<Inner>,
    len: u64,
}

/// heed refuses to open one file twice in a process, so open shards are shared.
fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<Inner>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Inner>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// LMDB maps the whole database and faults (SIGBUS) on a page past the end of a truncated
/// file instead of returning an error, so the length is checked against the newest meta page
/// before the file is opened.
fn check_file_length(path: &Path) -> Result<u64> {
    const MAGIC: u32 = 0xBEEF_C0DE;
    let bytes = {
        use std::io::Read;
        let mut head = vec![0u8; 2 * 65536];
        let mut f = std::fs::File::open(path)?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        head.truncate(n);
        head
    };
    let len = std::fs::metadata(path)?.len();
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    // Page header (16 bytes), then MDB_meta: magic, version, address, mapsize, two MDB_db
    // records of 48 bytes (the first one's md_pad holds the page size), last_pg, txnid.
    if u32_at(16) != Some(MAGIC) {
        anyhow::bail!("not an LMDB file (no meta page magic); {len} bytes");
    }
    let psize = u32_at(40)
        .filter(|p| p.is_power_of_two() && *p >= 512)
        .unwrap_or(4096) as usize;
    let meta = |page: usize| -> Option<(u64, u64)> {
        let o = page * psize;
        (u32_at(o + 16)? == MAGIC).then_some(())?;
        Some((u64_at(o + 144)?, u64_at(o + 136)?))
    };
    let (_, last_pg) = [meta(0), meta(1)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or((0, 1));
    let needed = (last_pg + 1) * psize as u64;
    if len < needed {
        anyhow::bail!("truncated: {len} bytes, its last page ends at byte {needed}");
    }
    Ok(len)
}

impl LmdbShard {
    /// Opens `path` read-only. Errors name the file.
    pub fn open(path: &Path) -> Result<Self> {
        let canonical = path
            .canonicalize()
            .with_context(|| format!("opening LMDB shard {}", path.display()))?;
        let mut open = registry().lock().unwrap_or_else(|e| e.into_inner());
        let inner = match open.get(&canonical).and_then(Weak::upgrade) {
            Some(inner) => inner,
            None => {
                let inner = Arc::new(
                    Self::open_env(&canonical)
                        .with_context(|| format!("opening LMDB shard {}", path.display()))?,
                );
                open.insert(canonical, Arc::downgrade(&inner));
                inner
            }
        };
        drop(open);
        let rtxn = inner.env.read_txn()?;
        let entries = inner.db.len(&rtxn)?;
        let has_meta = inner.db.get(&rtxn, META_KEY)?.is_some();
        drop(rtxn);
        Ok(Self {
            path: path.to_path_buf(),
            len: entries - has_meta as u64,
            inner,
        })
    }

    fn open_env(path: &Path) -> Result<Inner> {
        let size = check_file_length(path)? as usize;
        let page = 4096usize;
        let map = size.div_ceil(page).max(1) * page;
        // SAFETY: the file is opened read-only and never written while mapped by us.
        let env = unsafe {
            EnvOpenOptions::new()
                .map_size(map)
                .max_readers(4096)
                .flags(
                    EnvFlags::READ_ONLY
                        | EnvFlags::NO_LOCK
                        | EnvFlags::NO_SUB_DIR
                        | EnvFlags::NO_READ_AHEAD,
                )
                .open(path)?
        };
        let rtxn = env.read_txn()?;
        let db = env
            .open_database::<Bytes, Bytes>(&rtxn, None)?
            .ok_or_else(|| anyhow!("no main database"))?;
        drop(rtxn);
        Ok(Inner { env, db })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records in the shard.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Record `index` of this shard (copied out of the map), checksum verified.
    pub fn get(&self, index: u64) -> Result<Record> {
        let rtxn = self.inner.env.read_txn()?;
        let key = record::lmdb_key(index);
        let value = self
            .inner
            .db
            .get(&rtxn, &key)
            .with_context(|| format!("{} record {index}: LMDB read failed", self.path.display()))?
            .with_context(|| {
                format!(
                    "{} has no record {index} (shard holds {})",
                    self.path.display(),
                    self.len
                )
            })?;
        record::decode(value).with_context(|| format!("{} record {index}", self.path.display()))
    }

    /// The shard's self-description (`__meta__`).
    pub fn meta(&self) -> Result<serde_json::Value> {
        let rtxn = self.inner.env.read_txn()?;
        let v = self
            .inner
            .db
            .get(&rtxn, META_KEY)?
            .with_context(|| format!("{} has no __meta__ entry", self.path.display()))?;
        serde_json::from_slice(v).with_context(|| format!("{} __meta__", self.path.display()))
    }
}
