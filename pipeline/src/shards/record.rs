//! One record as stored in an LMDB shard value (the Arrow shards hold the same fields as
//! columns). Little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `D2R1` |
//! | 4 | label (u32, index into the manifest's class list) |
//! | 4 | original width (u32) |
//! | 4 | original height (u32) |
//! | 4 | CRC-32C of the image bytes (u32) |
//! | 2 | key length in bytes (u16) |
//! | key length | key (UTF-8 path relative to the source root) |
//! | rest | image bytes (JPEG) |
//!
//! In Python: `magic, label, w, h, crc, n = struct.unpack_from("<4sIIIIH", v)`,
//! `key = v[22:22+n].decode()`, `jpeg = v[22+n:]`. LMDB keys are the in-shard record index as
//! ten ASCII digits (`b"0000000012"`); the key `__meta__` holds the shard's JSON description.

use anyhow::{Result, bail, ensure};
use bytes::Bytes;

pub const MAGIC: &[u8; 4] = b"D2R1";
pub const HEADER_LEN: usize = 22;
/// LMDB key of the shard's JSON self-description.
pub const META_KEY: &[u8] = b"__meta__";

/// LMDB key of in-shard record `index`.
pub fn lmdb_key(index: u64) -> [u8; 10] {
    let mut key = [b'0'; 10];
    let digits = index.to_string();
    key[10 - digits.len()..].copy_from_slice(digits.as_bytes());
    key
}

/// A decoded record: the source key, label, original size and image bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub label: u32,
    pub width: u32,
    pub height: u32,
    pub bytes: Bytes,
}

/// CRC-32C of image bytes (hardware-accelerated where the CPU has it).
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// The bytes of an LMDB value that precede the image: header and key. `crc` is
/// [`checksum`] of the image.
pub fn encode_head(key: &str, label: u32, width: u32, height: u32, crc: u32) -> Result<Vec<u8>> {
    ensure!(
        key.len() <= u16::MAX as usize,
        "key longer than 65535 bytes: {key}"
    );
    let mut v = Vec::with_capacity(HEADER_LEN + key.len());
    v.extend_from_slice(MAGIC);
    for x in [label, width, height, crc] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&(key.len() as u16).to_le_bytes());
    v.extend_from_slice(key.as_bytes());
    Ok(v)
}

/// Serialises a record into the LMDB value layout.
pub fn encode(key: &str, label: u32, width: u32, height: u32, image: &[u8]) -> Result<Vec<u8>> {
    let mut v = encode_head(key, label, width, height, checksum(image))?;
    v.extend_from_slice(image);
    Ok(v)
}

/// Parses an LMDB value and checks the image checksum.
pub fn decode(value: &[u8]) -> Result<Record> {
    if value.len() < HEADER_LEN || &value[..4] != MAGIC {
        bail!(
            "not a dinov2 record (bad magic or {} bytes only)",
            value.len()
        );
    }
    let u32_at = |o: usize| u32::from_le_bytes(value[o..o + 4].try_into().unwrap());
    let key_len = u16::from_le_bytes([value[20], value[21]]) as usize;
    ensure!(
        value.len() >= HEADER_LEN + key_len,
        "record truncated inside its key"
    );
    let key = std::str::from_utf8(&value[HEADER_LEN..HEADER_LEN + key_len])
        .map_err(|_| anyhow::anyhow!("record key is not UTF-8"))?
        .to_string();
    let image = &value[HEADER_LEN + key_len..];
    verify_checksum(&key, image, u32_at(16))?;
    Ok(Record {
        key,
        label: u32_at(4),
        width: u32_at(8),
        height: u32_at(12),
        bytes: Bytes::copy_from_slice(image),
    })
}

/// Checks image bytes against their stored CRC-32C.
pub fn verify_checksum(key: &str, image: &[u8], expected: u32) -> Result<()> {
    let got = checksum(image);
    ensure!(
        got == expected,
        "image bytes of {key} are corrupt (CRC-32C {got:08x}, stored {expected:08x})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let v = encode("train/n01/a.JPEG", 7, 500, 375, b"\xFF\xD8\xFFjpeg").unwrap();
        let r = decode(&v).unwrap();
        assert_eq!(
            (r.key.as_str(), r.label, r.width, r.height),
            ("train/n01/a.JPEG", 7, 500, 375)
        );
        assert_eq!(&r.bytes[..], b"\xFF\xD8\xFFjpeg");
        let mut bad = v.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(decode(&bad).unwrap_err().to_string().contains("corrupt"));
        assert!(decode(&v[..10]).is_err());
        assert_eq!(&lmdb_key(12), b"0000000012");
    }
}
