//! Writing one shard under a temporary name; [`ShardWriter::finish`] makes it durable, and the
//! caller renames it into place only then.

use anyhow::{Context, Result};
use arrow_array::{LargeBinaryArray, RecordBatch, StringArray, UInt32Array};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions};
use pipeline::shards::ShardFormat;
use pipeline::shards::record::{self, META_KEY};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most records per LMDB write transaction / Arrow record batch ...
const BATCH: usize = 256;
/// ... and most image bytes: a batch is copied into the file while it is still in the CPU's
/// caches, and LMDB reuses the same dirty-page memory (at 256 ImageNet-sized records, 28 MB,
/// the commit's copy ran from DRAM into freshly faulted pages).
const BATCH_BYTES: usize = 4 << 20;
/// LMDB's first address-space reservation per shard; it doubles whenever a write finds the map
/// full (`MDB_MAP_FULL`), so a shard maps at most about twice its size and conversion works
/// under an address-space limit (`ulimit -v`, common on clusters).
const LMDB_INITIAL_MAP: usize = 64 << 20;

/// An open shard being written.
pub enum ShardWriter {
    Lmdb(LmdbWriter),
    Arrow(Box<ArrowWriter>),
}

impl ShardWriter {
    /// Creates `path` (a temporary name) for a shard described by `meta`.
    pub fn create(format: ShardFormat, path: &Path, meta: serde_json::Value) -> Result<Self> {
        let _ = std::fs::remove_file(path);
        Ok(match format {
            ShardFormat::Lmdb => Self::Lmdb(LmdbWriter::create(path, meta)?),
            ShardFormat::Arrow => Self::Arrow(Box::new(ArrowWriter::create(path, meta)?)),
        })
    }

    /// Adds a record; `crc` is the CRC-32C of `image`.
    pub fn append(
        &mut self,
        key: &str,
        label: u32,
        size: (u32, u32),
        crc: u32,
        image: Vec<u8>,
    ) -> Result<()> {
        match self {
            Self::Lmdb(x) => x.append(key, label, size, crc, image),
            Self::Arrow(x) => x.append(key, label, size, crc, image),
        }
    }

    /// Writes what is buffered and closes the file (not synced: the conversion syncs all of
    /// its shards once at the end, and a resumed run re-checks checksums instead).
    pub fn finish(self) -> Result<()> {
        match self {
            Self::Lmdb(x) => x.finish(),
            Self::Arrow(x) => x.finish(),
        }
    }
}

pub struct LmdbWriter {
    path: PathBuf,
    env: Env,
    /// The current map size (a multiple of the page size).
    map_size: usize,
    db: Database<Bytes, Bytes>,
    /// Records waiting for the next write transaction: key, header + record key, image.
    pending: Vec<([u8; 10], Vec<u8>, Vec<u8>)>,
    pending_bytes: usize,
    count: u64,
    meta: serde_json::Value,
}

impl LmdbWriter {
    fn create(path: &Path, meta: serde_json::Value) -> Result<Self> {
        let ctx = || format!("creating LMDB shard {}", path.display());
        // SAFETY: a fresh file only this writer touches; NO_LOCK is sound with one writer and
        // no readers until the file is renamed into place.
        let env = unsafe {
            EnvOpenOptions::new()
                .map_size(LMDB_INITIAL_MAP)
                .flags(
                    EnvFlags::NO_SUB_DIR
                        | EnvFlags::NO_LOCK
                        | EnvFlags::NO_SYNC
                        | EnvFlags::NO_META_SYNC,
                )
                .open(path)
                .with_context(ctx)?
        };
        let mut wtxn = env.write_txn().with_context(ctx)?;
        let db = env
            .create_database::<Bytes, Bytes>(&mut wtxn, None)
            .with_context(ctx)?;
        wtxn.commit().with_context(ctx)?;
        Ok(Self {
            path: path.to_path_buf(),
            env,
            map_size: LMDB_INITIAL_MAP,
            db,
            pending: Vec::with_capacity(BATCH),
            pending_bytes: 0,
            count: 0,
            meta,
        })
    }

    /// Runs `write` in one write transaction; when the map is full, the transaction is
    /// dropped (aborted), the map doubled and `write` run again.
    fn transact(
        &mut self,
        what: &str,
        write: impl Fn(&Database<Bytes, Bytes>, &mut heed::RwTxn) -> heed::Result<()>,
    ) -> Result<()> {
        loop {
            let attempt = (|| -> heed::Result<()> {
                let mut txn = self.env.write_txn()?;
                write(&self.db, &mut txn)?;
                txn.commit()
            })();
            match attempt {
                Err(heed::Error::Mdb(heed::MdbError::MapFull)) => {
                    let grown = self.map_size.checked_mul(2).with_context(|| {
                        format!("{what} {}: the map cannot grow", self.path.display())
                    })?;
                    // SAFETY: the failed transaction was dropped above; none is active.
                    unsafe { self.env.resize(grown) }.with_context(|| {
                        format!(
                            "{what} {}: growing the LMDB map to {} MiB",
                            self.path.display(),
                            grown >> 20
                        )
                    })?;
                    self.map_size = grown;
                }
                other => {
                    return other.with_context(|| {
                        let dir = self.path.parent().unwrap_or(Path::new("."));
                        format!(
                            "{what} {}{}",
                            self.path.display(),
                            pipeline::atomic::free_space_note(dir)
                        )
                    });
                }
            }
        }
    }

    /// Writes the pending records in one transaction.
    fn flush(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.transact("writing LMDB shard", |db, txn| {
            for (k, head, image) in &pending {
                // Header and image go straight into the database page: one copy.
                db.put_reserved(txn, k, head.len() + image.len(), |space| {
                    space.write_all(head)?;
                    space.write_all(image)
                })?;
            }
            Ok(())
        })?;
        self.pending = pending;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    fn append(
        &mut self,
        key: &str,
        label: u32,
        size: (u32, u32),
        crc: u32,
        image: Vec<u8>,
    ) -> Result<()> {
        let head = record::encode_head(key, label, size.0, size.1, crc)?;
        self.pending_bytes += image.len();
        self.pending
            .push((record::lmdb_key(self.count), head, image));
        self.count += 1;
        if self.pending.len() >= BATCH || self.pending_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush()?;
        let meta = serde_json::to_vec(&self.meta)?;
        self.transact("finishing LMDB shard", |db, txn| {
            db.put(txn, META_KEY, &meta)
        })?;
        self.env.prepare_for_closing().wait();
        Ok(())
    }
}

pub struct ArrowWriter {
    path: PathBuf,
    writer: arrow_ipc::writer::FileWriter<std::io::BufWriter<File>>,
    keys: Vec<String>,
    labels: Vec<u32>,
    widths: Vec<u32>,
    heights: Vec<u32>,
    crcs: Vec<u32>,
    /// Image bytes of the batch, back to back, and their offsets: the `image` column is built
    /// from them without another copy.
    values: Vec<u8>,
    offsets: Vec<i64>,
}

impl ArrowWriter {
    fn create(path: &Path, meta: serde_json::Value) -> Result<Self> {
        let ctx = || format!("creating Arrow shard {}", path.display());
        let file = File::create(path).with_context(ctx)?;
        let schema = pipeline::shards::arrow::schema();
        let mut metadata = schema.metadata().clone();
        metadata.insert("dinov2".to_string(), meta.to_string());
        let schema = Arc::new(schema.as_ref().clone().with_metadata(metadata));
        // A small buffer: the large image buffers bypass it and go straight to the file.
        let out = std::io::BufWriter::with_capacity(1 << 16, file);
        let writer = arrow_ipc::writer::FileWriter::try_new(out, &schema).with_context(ctx)?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            keys: Vec::new(),
            labels: Vec::new(),
            widths: Vec::new(),
            heights: Vec::new(),
            crcs: Vec::new(),
            values: Vec::new(),
            offsets: vec![0],
        })
    }

    fn append(
        &mut self,
        key: &str,
        label: u32,
        size: (u32, u32),
        crc: u32,
        image: Vec<u8>,
    ) -> Result<()> {
        self.keys.push(key.to_string());
        self.labels.push(label);
        self.widths.push(size.0);
        self.heights.push(size.1);
        self.crcs.push(crc);
        self.values.extend_from_slice(&image);
        self.offsets.push(self.values.len() as i64);
        if self.keys.len() >= BATCH || self.values.len() >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let values = std::mem::take(&mut self.values);
        let image = LargeBinaryArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(values),
            None,
        )?;
        let batch = RecordBatch::try_new(
            Arc::new(self.writer.schema().as_ref().clone()),
            vec![
                Arc::new(StringArray::from_iter_values(self.keys.drain(..))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.labels))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.widths))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.heights))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.crcs))),
                Arc::new(image),
            ],
        )?;
        self.writer
            .write(&batch)
            .with_context(|| format!("writing Arrow shard {}", self.path.display()))
    }

    fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.writer.finish()?;
        let mut out = self.writer.into_inner()?;
        out.flush()
            .with_context(|| format!("writing Arrow shard {}", self.path.display()))
    }
}
