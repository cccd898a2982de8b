//! Arrow IPC shards: one IPC *file* per shard (random access through its footer), read through
//! a memory map without copying: a record's image bytes are a slice of the mapped file.
//!
//! Columns: `key` (utf8), `label`, `width`, `height`, `crc32c` (uint32), `image` (large_binary).
//! pyarrow reads them with `pyarrow.ipc.open_file(pyarrow.memory_map(path))`.

use super::record::{self, Record};
use anyhow::{Context, Result, anyhow, bail, ensure};
use arrow_array::{Array, LargeBinaryArray, RecordBatch, StringArray, UInt32Array};
use arrow_buffer::Buffer;
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{FileDecoder, read_footer_length};
use arrow_ipc::root_as_footer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The schema every Arrow shard is written with.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("label", DataType::UInt32, false),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("crc32c", DataType::UInt32, false),
        Field::new("image", DataType::LargeBinary, false),
    ]))
}

struct Batch {
    key: StringArray,
    label: UInt32Array,
    width: UInt32Array,
    height: UInt32Array,
    crc: UInt32Array,
    image: LargeBinaryArray,
}

/// One memory-mapped Arrow shard; safe to share between threads.
pub struct ArrowShard {
    path: PathBuf,
    map: bytes::Bytes,
    batches: Vec<Batch>,
    /// Cumulative row counts: batch `b` holds rows `starts[b]..starts[b + 1]`.
    starts: Vec<u64>,
}

impl ArrowShard {
    /// Maps and decodes the footer and record-batch metadata of `path`. Errors name the file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_inner(path).with_context(|| format!("opening Arrow shard {}", path.display()))
    }

    fn open_inner(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)?;
        // SAFETY: shards are immutable once renamed into place; nothing writes them while mapped.
        let mmap = unsafe { memmap2::Mmap::map(&file)? };
        let map = bytes::Bytes::from_owner(mmap);
        let buffer = Buffer::from(map.clone());
        let n = buffer.len();
        ensure!(
            n >= 10 + 8,
            "file of {n} bytes is too short to be an Arrow IPC file"
        );
        ensure!(
            &buffer[n - 6..] == b"ARROW1",
            "not an Arrow IPC file (no ARROW1 trailer)"
        );
        let footer_len = read_footer_length(buffer[n - 10..].try_into().unwrap())?;
        ensure!(
            footer_len + 10 <= n,
            "footer length {footer_len} exceeds the file"
        );
        let footer = root_as_footer(&buffer[n - 10 - footer_len..n - 10])
            .map_err(|e| anyhow!("corrupt footer: {e}"))?;
        let file_schema = try_fb_to_schema(footer.schema().ok_or_else(|| anyhow!("no schema"))?)?;
        ensure!(
            file_schema.fields() == schema().fields(),
            "unexpected columns {:?}",
            file_schema
                .fields()
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
        );
        let decoder = FileDecoder::new(schema(), footer.version());
        let mut batches = Vec::new();
        let mut starts = vec![0u64];
        for (i, block) in footer.recordBatches().into_iter().flatten().enumerate() {
            let (offset, len) =
                checked_block(block, n, &buffer).with_context(|| format!("record batch {i}"))?;
            let data = buffer.slice_with_length(offset, len);
            // arrow-data's validation asserts rather than errs on some corrupt offset buffers
            // (`typed_buffer`'s alignment assertion, found by `dinov2 bench fuzz`): a panic
            // there is this file's error, not the process's.
            let rb = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decoder.read_record_batch(block, &data)
            }))
            .map_err(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                anyhow!("record batch {i} is corrupt (arrow: {msg})")
            })??
            .ok_or_else(|| anyhow!("record batch {i} is missing"))?;
            starts.push(starts.last().unwrap() + rb.num_rows() as u64);
            batches.push(Batch::from_record_batch(&rb)?);
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            batches,
            starts,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records in the shard.
    pub fn len(&self) -> u64 {
        *self.starts.last().unwrap()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `index` of this shard; the image bytes point into the mapped file.
    pub fn get(&self, index: u64) -> Result<Record> {
        if index >= self.len() {
            bail!(
                "{} has no record {index} (shard holds {})",
                self.path.display(),
                self.len()
            );
        }
        let b = self.starts.partition_point(|&s| s <= index) - 1;
        let row = (index - self.starts[b]) as usize;
        let batch = &self.batches[b];
        let key = batch.key.value(row).to_string();
        let image = batch.image.value(row);
        record::verify_checksum(&key, image, batch.crc.value(row))
            .with_context(|| format!("{} record {index}", self.path.display()))?;
        Ok(Record {
            key,
            label: batch.label.value(row),
            width: batch.width.value(row),
            height: batch.height.value(row),
            bytes: self.share(image),
        })
    }
}

impl ArrowShard {
    /// `bytes` as a zero-copy slice of the map when it lies inside it (it does unless the
    /// decoder had to realign a buffer), else a copy.
    fn share(&self, bytes: &[u8]) -> bytes::Bytes {
        let map = self.map.as_ptr_range();
        let range = bytes.as_ptr_range();
        if map.start <= range.start && range.end <= map.end {
            self.map.slice_ref(bytes)
        } else {
            bytes::Bytes::copy_from_slice(bytes)
        }
    }
}

/// The byte range of a record-batch block, checked before arrow-ipc sees it: arrow-ipc
/// slices the file at the block's and its buffers' offsets without checking them (a hostile
/// file made it panic), so the offsets and lengths must lie inside the file and the body.
fn checked_block(block: &arrow_ipc::Block, n: usize, file: &Buffer) -> Result<(usize, usize)> {
    let field = |v: i64, what: &str| {
        usize::try_from(v).map_err(|_| anyhow!("negative {what} {v} in the footer"))
    };
    let offset = field(block.offset(), "offset")?;
    let meta = field(block.metaDataLength() as i64, "metadata length")?;
    let body = field(block.bodyLength(), "body length")?;
    let len = meta
        .checked_add(body)
        .filter(|l| offset.checked_add(*l).is_some_and(|end| end <= n))
        .ok_or_else(|| anyhow!("lies past the end of the file ({n} bytes)"))?;
    ensure!(meta >= 8, "metadata length {meta} is too short");
    let m = &file[offset..offset + meta];
    let m = if m[..4] == [0xFF; 4] {
        &m[8..]
    } else {
        &m[4..]
    };
    let message =
        arrow_ipc::root_as_message(m).map_err(|e| anyhow!("corrupt message header: {e}"))?;
    let rb = message
        .header_as_record_batch()
        .ok_or_else(|| anyhow!("the block is not a record batch"))?;
    // The IPC format aligns the body and its buffers to 8 bytes; arrow's typed buffers
    // assert alignment (a misaligned hostile offset panicked inside arrow-buffer).
    ensure!(
        (offset + meta).is_multiple_of(8),
        "the body at byte {} is not 8-byte aligned",
        offset + meta
    );
    for b in rb.buffers().into_iter().flatten() {
        ensure!(
            b.offset() % 8 == 0,
            "a buffer at offset {} is not 8-byte aligned",
            b.offset()
        );
        let end = u64::try_from(b.offset())
            .ok()
            .zip(u64::try_from(b.length()).ok())
            .and_then(|(o, l)| o.checked_add(l));
        ensure!(
            end.is_some_and(|e| e <= body as u64),
            "a buffer at offset {} of {} bytes lies outside the body ({body} bytes)",
            b.offset(),
            b.length()
        );
    }
    Ok((offset, len))
}

impl Batch {
    fn from_record_batch(rb: &RecordBatch) -> Result<Self> {
        fn col<T: Array + Clone + 'static>(rb: &RecordBatch, i: usize) -> Result<T> {
            rb.column(i)
                .as_any()
                .downcast_ref::<T>()
                .cloned()
                .ok_or_else(|| anyhow!("column {i} has an unexpected type"))
        }
        Ok(Self {
            key: col(rb, 0)?,
            label: col(rb, 1)?,
            width: col(rb, 2)?,
            height: col(rb, 3)?,
            crc: col(rb, 4)?,
            image: col(rb, 5)?,
        })
    }
}
