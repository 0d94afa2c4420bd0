//! The LUKS2 binary header (LUKS2 on-disk format specification, section 2) and the
//! choice between its two copies.
//!
//! ```text
//! offset size  field
//!      0    6  magic          "LUKS\xba\xbe" (primary) or "SKUL\xba\xbe" (secondary)
//!      6    2  version        2, big-endian like every integer here
//!      8    8  hdr_size       binary header + JSON area: 16 KiB .. 4 MiB, a power of two
//!     16    8  seqid          incremented on every update; the higher valid copy wins
//!     24   48  label          NUL-padded text
//!     72   32  checksum_alg   "sha256"
//!    104   64  salt           random, per copy
//!    168   40  uuid           text
//!    208   48  subsystem      NUL-padded text
//!    256    8  hdr_offset     where this copy lies on the device
//!    264  184  (padding)
//!    448   64  csum           the hash of hdr_size bytes (binary header + JSON area) with
//!                             this field zeroed, zero-padded
//!    512 3584  (padding)      up to 4096, then the JSON area (NUL-terminated text)
//! ```
//!
//! The primary copy lies at byte 0, the secondary at byte `hdr_size`. When the primary is
//! unreadable its `hdr_size` cannot be trusted, so the secondary is looked for at every
//! size LUKS2 allows, as cryptsetup does.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::HeaderError;

/// Bytes of the binary header before the JSON area.
pub const BINARY_SIZE: usize = 4096;
pub const MAGIC_PRIMARY: [u8; 6] = *b"LUKS\xba\xbe";
pub const MAGIC_SECONDARY: [u8; 6] = *b"SKUL\xba\xbe";
/// Header sizes (binary header + JSON area) LUKS2 allows.
pub const HEADER_SIZES: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];

const CSUM_OFFSET: usize = 448;
const CSUM_LEN: usize = 64;

/// Which of the two header copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    Primary,
    Secondary,
}

impl fmt::Display for Copy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Copy::Primary => "primary",
            Copy::Secondary => "secondary",
        })
    }
}

/// The fields of a binary header copy this crate keeps (the rest is padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHeader {
    pub hdr_size: u64,
    pub seqid: u64,
    pub label: String,
    pub uuid: String,
    pub subsystem: String,
}

fn be16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

/// A NUL-padded text field (lossy: these fields are labels, not keys).
fn text(b: &[u8], at: usize, len: usize) -> String {
    let field = b.get(at..at + len).unwrap_or_default();
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    String::from_utf8_lossy(field.get(..end).unwrap_or_default()).into_owned()
}

/// The SHA-256 of a header copy with its checksum field taken as zeros.
fn checksum(copy: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(copy.get(..CSUM_OFFSET).unwrap_or_default());
    h.update([0u8; CSUM_LEN]);
    h.update(copy.get(CSUM_OFFSET + CSUM_LEN..).unwrap_or_default());
    h.finalize().into()
}

/// Reads the fixed fields of the first 4096 bytes of a copy: the magic for `which`, the
/// version and the header size. Returns the header size, so the caller can read the rest.
pub fn peek_size(head: &[u8], which: Copy) -> Result<u64, HeaderError> {
    let magic = match which {
        Copy::Primary => MAGIC_PRIMARY,
        Copy::Secondary => MAGIC_SECONDARY,
    };
    if head.get(..6) != Some(&magic[..]) {
        return Err(HeaderError::Magic);
    }
    let version = be16(head, 6);
    if version != 2 {
        return Err(HeaderError::Version(version));
    }
    let size = be64(head, 8);
    if !HEADER_SIZES.contains(&size) {
        return Err(HeaderError::Size(size));
    }
    Ok(size)
}

/// Checks one whole copy (`hdr_size` bytes read at byte `offset`) and returns its fields
/// and its JSON text.
pub fn parse_copy(
    bytes: &[u8],
    which: Copy,
    offset: u64,
) -> Result<(BinaryHeader, &str), HeaderError> {
    let hdr_size = peek_size(bytes, which)?;
    let copy = usize::try_from(hdr_size)
        .ok()
        .and_then(|n| bytes.get(..n))
        .ok_or(HeaderError::Truncated { offset })?;
    let hdr_offset = be64(copy, 256);
    if hdr_offset != offset {
        return Err(HeaderError::Offset {
            found: hdr_offset,
            expected: offset,
        });
    }
    let alg = text(copy, 72, 32);
    if alg != "sha256" {
        return Err(HeaderError::ChecksumAlgorithm(alg));
    }
    let stored = copy.get(CSUM_OFFSET..CSUM_OFFSET + 32).unwrap_or_default();
    if !crate::crypto::ct_eq(stored, &checksum(copy)) {
        return Err(HeaderError::Checksum);
    }
    let area = copy.get(BINARY_SIZE..).unwrap_or_default();
    let end = area
        .iter()
        .position(|&c| c == 0)
        .ok_or(HeaderError::JsonUnterminated)?;
    let json = std::str::from_utf8(area.get(..end).unwrap_or_default())
        .map_err(|_| HeaderError::JsonNotUtf8)?;
    Ok((
        BinaryHeader {
            hdr_size,
            seqid: be64(copy, 16),
            label: text(copy, 24, 48),
            uuid: text(copy, 168, 40),
            subsystem: text(copy, 208, 48),
        },
        json,
    ))
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Builds one copy: binary header, then `json` NUL-padded to `hdr_size`, with its checksum.
/// `json` must be shorter than the JSON area (the caller checks: [`json_fits`]).
pub fn build_copy(h: &BinaryHeader, which: Copy, salt: &[u8; 64], json: &str) -> Vec<u8> {
    let size = usize::try_from(h.hdr_size).unwrap_or(0);
    let mut buf = vec![0u8; size];
    let (magic, offset) = match which {
        Copy::Primary => (MAGIC_PRIMARY, 0),
        Copy::Secondary => (MAGIC_SECONDARY, h.hdr_size),
    };
    put(&mut buf, 0, &magic);
    put(&mut buf, 6, &2u16.to_be_bytes());
    put(&mut buf, 8, &h.hdr_size.to_be_bytes());
    put(&mut buf, 16, &h.seqid.to_be_bytes());
    put_text(&mut buf, 24, 48, &h.label);
    put_text(&mut buf, 72, 32, "sha256");
    put(&mut buf, 104, salt);
    put_text(&mut buf, 168, 40, &h.uuid);
    put_text(&mut buf, 208, 48, &h.subsystem);
    put(&mut buf, 256, &offset.to_be_bytes());
    put(&mut buf, BINARY_SIZE, json.as_bytes());
    let sum = checksum(&buf);
    put(&mut buf, CSUM_OFFSET, &sum);
    buf
}

/// Text into a NUL-padded field, cut to leave at least one NUL.
fn put_text(buf: &mut [u8], at: usize, len: usize, s: &str) {
    let b = s.as_bytes();
    put(buf, at, b.get(..b.len().min(len - 1)).unwrap_or_default());
}

/// Whether `json_len` bytes of JSON plus the terminating NUL fit a header of `hdr_size`.
pub fn json_fits(json_len: usize, hdr_size: u64) -> bool {
    (json_len as u64) < hdr_size.saturating_sub(BINARY_SIZE as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BinaryHeader {
        BinaryHeader {
            hdr_size: 0x4000,
            seqid: 7,
            label: "data".into(),
            uuid: "0b5a8b5e-7e3c-4b7e-9f0b-3d8e3c2b1a00".into(),
            subsystem: String::new(),
        }
    }

    #[test]
    fn build_then_parse_both_copies() {
        let h = sample();
        for (which, offset) in [(Copy::Primary, 0), (Copy::Secondary, 0x4000)] {
            let b = build_copy(&h, which, &[3; 64], "{\"a\":1}");
            assert_eq!(b.len(), 0x4000);
            let (got, json) = parse_copy(&b, which, offset).unwrap();
            assert_eq!(got, h);
            assert_eq!(json, "{\"a\":1}");
        }
    }

    #[test]
    fn every_damage_is_named() {
        let h = sample();
        let good = build_copy(&h, Copy::Primary, &[3; 64], "{}");
        let damaged = |at: usize, v: u8| {
            let mut b = good.clone();
            b[at] = v;
            parse_copy(&b, Copy::Primary, 0).unwrap_err()
        };
        assert_eq!(damaged(0, b'X'), HeaderError::Magic);
        assert_eq!(damaged(7, 1), HeaderError::Version(1));
        assert_eq!(damaged(14, 0x41), HeaderError::Size(0x4100));
        assert_eq!(damaged(30, 1), HeaderError::Checksum); // seqid
        assert_eq!(damaged(200, b'x'), HeaderError::Checksum); // uuid
        assert_eq!(damaged(4097, b'x'), HeaderError::Checksum); // JSON
        assert_eq!(damaged(460, 0), HeaderError::Checksum); // the checksum itself
        assert_eq!(
            damaged(263, 1),
            HeaderError::Offset {
                found: 1,
                expected: 0
            }
        );
        assert_eq!(
            damaged(73, b'x'),
            HeaderError::ChecksumAlgorithm("sxa256".into())
        );
        assert_eq!(
            parse_copy(&good[..0x3000], Copy::Primary, 0).unwrap_err(),
            HeaderError::Truncated { offset: 0 }
        );
        assert_eq!(
            parse_copy(&good, Copy::Secondary, 0).unwrap_err(),
            HeaderError::Magic
        );
    }

    #[test]
    fn json_area_must_be_terminated_utf8() {
        let h = sample();
        let full = "x".repeat(0x4000 - BINARY_SIZE);
        let b = build_copy(&h, Copy::Primary, &[0; 64], &full);
        assert_eq!(
            parse_copy(&b, Copy::Primary, 0).unwrap_err(),
            HeaderError::JsonUnterminated
        );
        assert!(!json_fits(full.len(), 0x4000));
        assert!(json_fits(full.len() - 1, 0x4000));
        let b = build_copy(&h, Copy::Primary, &[0; 64], "\u{e9}");
        let mut b2 = b.clone();
        b2[BINARY_SIZE] = 0xff;
        let sum = checksum(&b2);
        b2[CSUM_OFFSET..CSUM_OFFSET + 32].copy_from_slice(&sum);
        assert_eq!(
            parse_copy(&b2, Copy::Primary, 0).unwrap_err(),
            HeaderError::JsonNotUtf8
        );
    }
}
