//! GUID partition tables (GPT): read both copies, validate them, change entries, write
//! them back crash-safely. Shared by prairiedog (A/B bits in partition attributes),
//! growpart and PID 1.
//!
//! # Format
//!
//! A GPT disk of `N` logical sectors (512 or 4096 bytes) holds:
//!
//! | LBA | content |
//! |---|---|
//! | 0 | protective MBR ([`mbr`]) |
//! | 1 | primary header |
//! | 2.. | primary entry array (usually 128 entries of 128 bytes) |
//! | first_usable..=last_usable | partitions |
//! | .. | backup entry array |
//! | N-1 | backup header |
//!
//! A header (92 bytes, little-endian, rest of the sector reserved) holds the signature
//! "EFI PART", revision 1.0, its size, its CRC32 (computed with the CRC field zeroed), its
//! own LBA and the other copy's LBA, the usable range, the disk GUID, the location, count,
//! entry size and CRC32 of its entry array. Each entry ([`Entry`]) holds a type GUID, a
//! unique GUID, first and last LBA, 64 attribute bits and a UTF-16LE name. GUIDs use the
//! mixed-endian layout ([`Guid`]).
//!
//! # Lifecycle
//!
//! 0. [`Gpt::new`] lays out a table for a blank disk as `sgdisk --clear` does (an image
//!    builder's start; [`mbr::ProtectiveMbr::new`] makes LBA 0).
//! 1. [`Gpt::read`] validates both copies fully (signature, revision, header size and
//!    CRC32, `my_lba`/`alternate_lba`, usable range, entry geometry, entry array CRC32,
//!    partitions inside the usable range and not overlapping; and that a valid backup
//!    agrees with a valid primary). It uses the primary when valid, else the backup, and
//!    records in [`Gpt::health`] which copies were bad. Both bad is an error naming the
//!    device.
//! 2. Mutators ([`Gpt::partition_mut`], [`Entry::set_name`], [`Gpt::move_backup_to_end`])
//!    change memory only.
//! 3. The caller decides whether to write: `table != original || !table.health().is_clean()`.
//! 4. [`Gpt::write`] rewrites both copies, syncing after each, in the order that keeps one
//!    valid copy holding the old or the new state at every cut point (see its docs), and
//!    repairs a bad copy. Every byte that was read and not changed is written back as it
//!    was (reserved header bytes, unused entries, name bytes after the NUL, entry bytes past
//!    128).
//!
//! I/O goes through [`BlockIo`], implemented for [`std::fs::File`] and for the
//! fault-injecting [`testing::MemDisk`].

mod crc32;
mod entry;
mod guid;
mod io;
mod le;
pub mod mbr;
mod table;
pub mod testing;
pub mod types;

use std::path::PathBuf;

pub use crc32::crc32;
pub use entry::{Entry, NameTooLong, ENTRY_MIN_SIZE, NAME_BYTES};
pub use guid::{Guid, ParseGuidError};
pub use io::BlockIo;
pub use table::{
    Gpt, Health, Problem, HEADER_MIN_SIZE, MAX_ENTRY_ARRAY_BYTES, NEW_ENTRIES, REVISION_1_0,
    SIGNATURE,
};

/// A logical sector size: a power of two from 512 to 4096 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SectorSize(u32);

impl SectorSize {
    /// 512-byte sectors.
    pub const S512: SectorSize = SectorSize(512);
    /// 4096-byte sectors ("4Kn").
    pub const S4096: SectorSize = SectorSize(4096);

    /// `None` unless `bytes` is a power of two from 512 to 4096.
    pub fn new(bytes: u32) -> Option<SectorSize> {
        (bytes.is_power_of_two() && (512..=4096).contains(&bytes)).then_some(SectorSize(bytes))
    }

    /// Bytes per sector.
    pub fn bytes(self) -> u64 {
        u64::from(self.0)
    }

    /// Byte offset of `lba`; `None` on overflow.
    pub fn offset(self, lba: u64) -> Option<u64> {
        lba.checked_mul(self.bytes())
    }
}

/// Errors of this crate; each names the device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O step failed.
    #[error("{what} on {device}: {source}")]
    Io {
        /// Disk or image.
        device: PathBuf,
        /// The step, e.g. "writing the backup header".
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// No GPT signature at either end of the disk.
    #[error("{device} has no GPT (no \"EFI PART\" header at LBA 1 or at the end)")]
    NotGpt {
        /// Disk or image.
        device: PathBuf,
    },
    /// Both copies are bad.
    #[error("both GPT copies on {device} are damaged: primary: {primary}; backup: {backup}")]
    Damaged {
        /// Disk or image.
        device: PathBuf,
        /// What is wrong with the primary.
        primary: Problem,
        /// What is wrong with the backup.
        backup: Problem,
    },
    /// The table does not fit the disk (refused before writing anything).
    #[error("GPT on {device} does not fit the disk: {problem}")]
    Layout {
        /// Disk or image.
        device: PathBuf,
        /// The inconsistency.
        problem: Problem,
    },
    /// The disk changed size between reading and writing.
    #[error("{device} changed size from {was} to {now} bytes since the GPT was read")]
    SizeChanged {
        /// Disk or image.
        device: PathBuf,
        /// Size when read.
        was: u64,
        /// Size now.
        now: u64,
    },
}
