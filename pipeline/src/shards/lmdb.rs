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

/// LMDB trusts its pages: a corrupt node offset, child page number or overflow reference
/// made it read out of bounds (SIGSEGV), and a page cycle made it loop forever. So the main
/// database's B-tree, as each valid meta page names it, is walked here first: every page
/// in the file, reached once, at the depth the meta records, every node inside its page and
/// every overflow value inside the file. Shards are written by `dinov2 convert` (one plain
/// database, no duplicate or integer keys), so anything else is refused. Costs one pass over
/// the branch and leaf pages (not over overflow values, whose first page header is read).
fn check_pages(path: &Path) -> Result<()> {
    use anyhow::{bail, ensure};
    const MAGIC: u32 = 0xBEEF_C0DE;
    const P_BRANCH: u16 = 0x01;
    const P_LEAF: u16 = 0x02;
    const P_OVERFLOW: u16 = 0x04;
    const F_BIGDATA: u16 = 0x01;
    const HDR: usize = 16;
    let file = std::fs::File::open(path)?;
    // SAFETY: read-only map of a shard nothing writes while it is open; its length was
    // checked against the meta pages, and every access below is bounds-checked.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let b: &[u8] = &map;
    let u16_at = |o: usize| b.get(o..o + 2).map(|x| u16::from_le_bytes([x[0], x[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|x| u32::from_le_bytes(x.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|x| u64::from_le_bytes(x.try_into().unwrap()))
    };
    let psize = u32_at(40).unwrap_or(0) as usize;
    ensure!(
        psize.is_power_of_two() && (512..=65536).contains(&psize),
        "page size {psize} in the meta page is not one LMDB writes"
    );
    let pages = (b.len() / psize) as u64;
    let mut metas = 0;
    for m in 0..2usize {
        let o = m * psize;
        if u32_at(o + 16) != Some(MAGIC) {
            continue;
        }
        metas += 1;
        let flags = u16_at(o + 92).unwrap_or(u16::MAX);
        let depth = u16_at(o + 94).unwrap_or(u16::MAX) as usize;
        let root = u64_at(o + 128).unwrap_or(0);
        let last_pg = u64_at(o + 136).unwrap_or(u64::MAX);
        ensure!(
            flags == 0,
            "meta page {m}: main database flags {flags:#x} (a shard has none)"
        );
        ensure!(
            last_pg < pages,
            "meta page {m}: last page {last_pg} past the end of the file"
        );
        if root == u64::MAX {
            continue; // an empty database
        }
        ensure!(
            (1..=16).contains(&depth),
            "meta page {m}: B-tree depth {depth}"
        );
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(root, depth)];
        while let Some((pg, left)) = stack.pop() {
            ensure!(
                (2..=last_pg).contains(&pg),
                "page number {pg} outside the database"
            );
            ensure!(
                seen.insert(pg),
                "page {pg} is reached twice (a cycle or a shared page)"
            );
            let o = pg as usize * psize;
            let page = &b[o..o + psize];
            let p16 = |i: usize| u16::from_le_bytes([page[i], page[i + 1]]) as usize;
            ensure!(
                u64_at(o) == Some(pg),
                "page {pg} is labelled {:?}",
                u64_at(o)
            );
            let kind = p16(10) as u16;
            let (lower, upper) = (p16(12), p16(14));
            ensure!(
                HDR <= lower && lower <= upper && upper <= psize && (lower - HDR).is_multiple_of(2),
                "page {pg}: bounds {lower}..{upper}"
            );
            let leaf = match kind & !0x10 {
                P_LEAF => true,
                P_BRANCH => false,
                _ => bail!("page {pg}: unexpected page flags {kind:#x}"),
            };
            ensure!(
                leaf == (left == 1),
                "page {pg}: a {} page at the wrong depth",
                if leaf { "leaf" } else { "branch" }
            );
            for i in 0..(lower - HDR) / 2 {
                let n = p16(HDR + 2 * i);
                ensure!(
                    n >= upper && n + 8 <= psize,
                    "page {pg}: node {i} at {n} outside the page"
                );
                let (lo, hi, nflags, ksize) = (p16(n), p16(n + 2), p16(n + 4) as u16, p16(n + 6));
                let key_end = n + 8 + ksize;
                ensure!(
                    key_end <= psize,
                    "page {pg}: node {i}'s key runs past the page"
                );
                if !leaf {
                    stack.push(((lo | hi << 16 | (nflags as usize) << 32) as u64, left - 1));
                    continue;
                }
                let dsize = lo | hi << 16;
                match nflags {
                    0 => ensure!(
                        key_end + dsize <= psize,
                        "page {pg}: node {i}'s value runs past the page"
                    ),
                    F_BIGDATA => {
                        ensure!(
                            key_end + 8 <= psize,
                            "page {pg}: node {i}'s overflow reference runs past the page"
                        );
                        let ov = u64::from_le_bytes(page[key_end..key_end + 8].try_into().unwrap());
                        let start = (ov as u128) * psize as u128;
                        ensure!(
                            (2..=last_pg).contains(&ov)
                                && start + (HDR + dsize) as u128 <= b.len() as u128,
                            "page {pg}: node {i}'s value on overflow page {ov} lies outside the file"
                        );
                        let start = start as usize;
                        let oflags = u16_at(start + 10).unwrap_or(0);
                        let opages = u32_at(start + 12).unwrap_or(0) as usize;
                        ensure!(
                            oflags & P_OVERFLOW != 0 && opages.saturating_mul(psize) >= HDR + dsize,
                            "page {pg}: node {i}'s overflow page {ov} is not one of {dsize} bytes"
                        );
                    }
                    f => {
                        bail!("page {pg}: node {i} has flags {f:#x} (sub-databases or duplicates)")
                    }
                }
            }
        }
    }
    ensure!(metas > 0, "no valid meta page");
    Ok(())
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
        check_pages(path)?;
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
