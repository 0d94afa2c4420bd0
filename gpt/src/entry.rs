//! One partition entry of the entry array.
//!
//! Layout (little-endian, `entry_size` bytes, at least 128):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 16 | partition type GUID (nil = unused entry) |
//! | 16 | 16 | unique partition GUID |
//! | 32 | 8 | first LBA |
//! | 40 | 8 | last LBA (inclusive) |
//! | 48 | 8 | attributes (bit 0 required, 1 no-block-IO, 2 legacy-bootable, 48-63 type-specific) |
//! | 56 | 72 | name, UTF-16LE, NUL-padded |
//! | 128 | rest | reserved; kept byte for byte |

use crate::guid::Guid;
use crate::le;

/// Bytes of the fields UEFI defines; entries may be longer.
pub const ENTRY_MIN_SIZE: usize = 128;
/// Bytes of the name field (36 UTF-16 code units).
pub const NAME_BYTES: usize = 72;

/// A partition entry. Every byte read from the disk is kept, so an entry written back
/// unchanged is identical on disk, including name bytes after the terminating NUL and
/// reserved bytes of entries longer than 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Partition type; [`Guid::NIL`] marks an unused entry.
    pub type_guid: Guid,
    /// Unique partition GUID (PARTUUID).
    pub unique_guid: Guid,
    /// First LBA of the partition.
    pub first_lba: u64,
    /// Last LBA of the partition, inclusive.
    pub last_lba: u64,
    /// Attribute bits.
    pub attributes: u64,
    name: [u8; NAME_BYTES],
    extra: Vec<u8>,
}

/// A name that does not fit the 36 UTF-16 code units of the name field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition name {0:?} is longer than 36 UTF-16 code units")]
pub struct NameTooLong(pub String);

impl Entry {
    /// A new 128-byte entry for a partition.
    pub fn new(
        type_guid: Guid,
        unique_guid: Guid,
        first_lba: u64,
        last_lba: u64,
        attributes: u64,
        name: &str,
    ) -> Result<Entry, NameTooLong> {
        let mut entry = Entry {
            type_guid,
            unique_guid,
            first_lba,
            last_lba,
            attributes,
            ..Entry::unused()
        };
        entry.set_name(name)?;
        Ok(entry)
    }

    /// An unused 128-byte entry: all zero.
    pub(crate) fn unused() -> Entry {
        Entry {
            type_guid: Guid::NIL,
            unique_guid: Guid::NIL,
            first_lba: 0,
            last_lba: 0,
            attributes: 0,
            name: [0; NAME_BYTES],
            extra: Vec::new(),
        }
    }

    /// Parses one entry; `None` when `raw` is shorter than 128 bytes.
    pub(crate) fn parse(raw: &[u8]) -> Option<Entry> {
        let name: [u8; NAME_BYTES] = raw.get(56..128)?.try_into().ok()?;
        Some(Entry {
            type_guid: Guid::from_disk_bytes(le::array(raw, 0)?),
            unique_guid: Guid::from_disk_bytes(le::array(raw, 16)?),
            first_lba: le::u64_at(raw, 32)?,
            last_lba: le::u64_at(raw, 40)?,
            attributes: le::u64_at(raw, 48)?,
            name,
            extra: raw.get(ENTRY_MIN_SIZE..)?.to_vec(),
        })
    }

    /// Appends the on-disk bytes of this entry to `out`.
    pub(crate) fn serialize_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.type_guid.to_disk_bytes());
        out.extend_from_slice(&self.unique_guid.to_disk_bytes());
        out.extend_from_slice(&self.first_lba.to_le_bytes());
        out.extend_from_slice(&self.last_lba.to_le_bytes());
        out.extend_from_slice(&self.attributes.to_le_bytes());
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.extra);
    }

    /// Whether the entry describes a partition (its type GUID is not nil).
    pub fn is_used(&self) -> bool {
        !self.type_guid.is_nil()
    }

    /// Size in sectors (0 for an unused or inverted entry).
    pub fn sectors(&self) -> u64 {
        if self.is_used() {
            self.last_lba
                .checked_sub(self.first_lba)
                .and_then(|d| d.checked_add(1))
                .unwrap_or(0)
        } else {
            0
        }
    }

    /// The name up to the first NUL; unpaired surrogates become U+FFFD.
    pub fn name(&self) -> String {
        let units = self
            .name
            .chunks_exact(2)
            .map(|c| {
                u16::from_le_bytes([
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                ])
            })
            .take_while(|&u| u != 0);
        char::decode_utf16(units)
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }

    /// Sets the name, NUL-padding the field. Does not write to the disk.
    pub fn set_name(&mut self, name: &str) -> Result<(), NameTooLong> {
        let mut field = [0u8; NAME_BYTES];
        let mut slots = field.chunks_exact_mut(2);
        for unit in name.encode_utf16() {
            let slot = slots.next().ok_or_else(|| NameTooLong(name.to_owned()))?;
            slot.copy_from_slice(&unit.to_le_bytes());
        }
        self.name = field;
        Ok(())
    }

    /// Whether attribute bit `bit` (0-63) is set; false for bits past 63.
    pub fn attribute(&self, bit: u32) -> bool {
        self.attributes.checked_shr(bit).is_some_and(|v| v & 1 == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_entry(size: usize) -> Vec<u8> {
        let mut raw: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        // A name "ab" then NUL then garbage that must survive a round trip.
        raw[56..62].copy_from_slice(&[b'a', 0, b'b', 0, 0, 0]);
        raw
    }

    #[test]
    fn round_trip_keeps_every_byte() {
        for size in [128, 256, 512] {
            let raw = raw_entry(size);
            let e = Entry::parse(&raw).unwrap();
            assert_eq!(e.name(), "ab");
            let mut out = Vec::new();
            e.serialize_into(&mut out);
            assert_eq!(out, raw, "entry size {size}");
        }
        assert!(Entry::parse(&[0u8; 127]).is_none());
    }

    #[test]
    fn names() {
        let mut e = Entry::parse(&raw_entry(128)).unwrap();
        let cases = [
            ("DATA", true),
            ("", true),
            ("\u{1F680}rocket", true),
            ("abcdefghijklmnopqrstuvwxyz0123456789", true),
            ("abcdefghijklmnopqrstuvwxyz0123456789x", false),
        ];
        for (name, fits) in cases {
            assert_eq!(e.set_name(name).is_ok(), fits, "{name}");
            if fits {
                assert_eq!(e.name(), name);
            }
        }
    }

    #[test]
    fn attribute_bits() {
        let mut e = Entry::parse(&raw_entry(128)).unwrap();
        e.attributes = 1 << 56 | 1;
        assert!(e.attribute(0) && e.attribute(56));
        assert!(!e.attribute(1) && !e.attribute(63) && !e.attribute(64));
    }
}
