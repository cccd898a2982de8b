//! Writing one shard under a temporary name; [`ShardWriter::finish`] makes it durable, and the
//! caller renames it into place only then.

use anyhow::{Context, Result};
use arrow_array::{LargeBinaryArray, RecordBatch, StringArray, UInt32Array};
use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions};
use pipeline::shards::ShardFormat;
use pipeline::shards::record::{self, META_KEY};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Records per LMDB write transaction / Arrow record batch.
const BATCH: usize = 256;
/// LMDB address-space reservation per shard (the file only grows as pages are written).
const LMDB_MAP_SIZE: usize = 1 << 40;

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

    pub fn append(&mut self, key: &str, label: u32, w: u32, h: u32, image: &[u8]) -> Result<()> {
        match self {
            Self::Lmdb(x) => x.append(key, label, w, h, image),
            Self::Arrow(x) => x.append(key, label, w, h, image),
        }
    }

    /// Writes what is buffered, syncs and closes the file.
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
    db: Database<Bytes, Bytes>,
    /// Encoded records waiting for the next write transaction.
    pending: Vec<([u8; 10], Vec<u8>)>,
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
                .map_size(LMDB_MAP_SIZE)
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
            db,
            pending: Vec::with_capacity(BATCH),
            count: 0,
            meta,
        })
    }

    /// Writes the pending records in one transaction.
    fn flush(&mut self) -> Result<()> {
        let write = || -> Result<()> {
            let mut txn = self.env.write_txn()?;
            for (k, v) in &self.pending {
                self.db.put(&mut txn, k, v)?;
            }
            Ok(txn.commit()?)
        };
        write().with_context(|| format!("writing LMDB shard {}", self.path.display()))?;
        self.pending.clear();
        Ok(())
    }

    fn append(&mut self, key: &str, label: u32, w: u32, h: u32, image: &[u8]) -> Result<()> {
        let value = record::encode(key, label, w, h, image)?;
        self.pending.push((record::lmdb_key(self.count), value));
        self.count += 1;
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush()?;
        let ctx = || format!("finishing LMDB shard {}", self.path.display());
        let mut txn = self.env.write_txn().with_context(ctx)?;
        self.db
            .put(&mut txn, META_KEY, &serde_json::to_vec(&self.meta)?)
            .with_context(ctx)?;
        txn.commit().with_context(ctx)?;
        self.env.force_sync().with_context(ctx)?;
        self.env.prepare_for_closing().wait();
        Ok(())
    }
}

/// key, label, width, height, image bytes.
type Row = (String, u32, u32, u32, Vec<u8>);

pub struct ArrowWriter {
    path: PathBuf,
    writer: arrow_ipc::writer::FileWriter<std::io::BufWriter<File>>,
    rows: Vec<Row>,
}

impl ArrowWriter {
    fn create(path: &Path, meta: serde_json::Value) -> Result<Self> {
        let ctx = || format!("creating Arrow shard {}", path.display());
        let file = File::create(path).with_context(ctx)?;
        let schema = pipeline::shards::arrow::schema();
        let mut metadata = schema.metadata().clone();
        metadata.insert("dinov2".to_string(), meta.to_string());
        let schema = Arc::new(schema.as_ref().clone().with_metadata(metadata));
        let writer = arrow_ipc::writer::FileWriter::try_new(
            std::io::BufWriter::with_capacity(1 << 22, file),
            &schema,
        )
        .with_context(ctx)?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            rows: Vec::with_capacity(BATCH),
        })
    }

    fn append(&mut self, key: &str, label: u32, w: u32, h: u32, image: &[u8]) -> Result<()> {
        self.rows
            .push((key.to_string(), label, w, h, image.to_vec()));
        if self.rows.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let u32s = |f: fn(&Row) -> u32| Arc::new(UInt32Array::from_iter_values(rows.iter().map(f)));
        let batch = RecordBatch::try_new(
            Arc::new(self.writer.schema().as_ref().clone()),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0.as_str()),
                )),
                u32s(|r| r.1),
                u32s(|r| r.2),
                u32s(|r| r.3),
                u32s(|r| record::checksum(&r.4)),
                Arc::new(LargeBinaryArray::from_iter_values(
                    rows.iter().map(|r| r.4.as_slice()),
                )),
            ],
        )?;
        self.writer
            .write(&batch)
            .with_context(|| format!("writing Arrow shard {}", self.path.display()))
    }

    fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.writer.finish()?;
        let file = self
            .writer
            .into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?;
        file.sync_all()
            .with_context(|| format!("syncing Arrow shard {}", self.path.display()))
    }
}
