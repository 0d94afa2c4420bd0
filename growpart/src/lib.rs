//! growpart: grow one GPT partition (DATA by default) to the end of its disk, live.
//!
//! # What happens
//!
//! 1. The table is read and both copies validated ([`gpt::Gpt::read`]); a damaged table
//!    (unless [`Options::repair`] and one copy is valid), a missing partition, or a
//!    partition that is not the last one on the disk is refused before anything is
//!    written.
//! 2. [`plan::plan`] (pure) computes the new geometry: the backup header and entry array
//!    move to the last sectors of the disk, the usable range extends up to them, and the
//!    partition's end moves to the last sector of the last whole 1 MiB unit before them.
//!    A partition never shrinks. If neither the partition nor the backup's place nor the
//!    protective MBR's size would change, nothing is written: NOCHANGE.
//! 3. [`gpt::Gpt::write`] writes the backup copy at the new end, syncs, writes the primary,
//!    syncs, zeroes the old backup header, syncs; then the protective MBR's size field is
//!    rewritten. Every cut point leaves a readable table where the partition has its old or
//!    its new size (`tests/grow.rs` cuts at every write).
//! 4. On a block device the kernel learns the new size through `BLKPG_RESIZE_PARTITION`
//!    ([`blkpg`]), which works while partitions of the disk are mounted and does not make
//!    udev re-probe the disk. BLKRRPART is never used: it fails with EBUSY while anything on
//!    the disk is mounted and races udev (the reason Bottlerocket replaced its first
//!    growpart). On an image file that step is skipped and the report says so.
//! 5. Separately, the caller grows what is inside: the dm-crypt mapping ([`crypt`]) and
//!    the filesystem ([`fs`]: `resize2fs` / `xfs_growfs` from the running root).
//!
//! PID 1 calls [`grow_data`]; the `growpart` binary is a thin CLI over [`grow_device`].

pub mod blkpg;
pub mod crypt;
pub mod fs;
mod grow;
pub mod plan;

use std::path::PathBuf;

pub use grow::{
    grow_data, grow_device, grow_table, open_disk, KernelUpdate, Options, Report, TableOutcome,
    Target,
};
pub use plan::Plan;

/// Why a partition cannot be grown (from the pure planner; wrapped with the device in
/// [`Error::Partition`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The number is 0 or past the entry array.
    #[error("partition number {number} is out of range (the table has entries 1-{entries})")]
    NoSuchPartition {
        /// Requested number.
        number: u32,
        /// Entries in the table.
        entries: u32,
    },
    /// The entry exists but holds no partition.
    #[error("partition {number} does not exist (its entry is unused)")]
    UnusedPartition {
        /// Requested number.
        number: u32,
    },
    /// Another partition follows it on the disk.
    #[error("partition {number} is not the last one on the disk: partition {next} follows it")]
    NotLast {
        /// Requested number.
        number: u32,
        /// A partition after it.
        next: u32,
    },
    /// The grown table would not be consistent.
    #[error("the grown table would be inconsistent: {0}")]
    Geometry(gpt::Problem),
}

/// Errors of growpart; each names the device, partition, tool or mapping.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening the device failed.
    #[error("opening {device}: {source}")]
    Open {
        /// The disk.
        device: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The device is read-only (BLKROGET, EROFS or EACCES on opening for writing).
    #[error("{device} is read-only; nothing was changed")]
    ReadOnly {
        /// The disk.
        device: PathBuf,
    },
    /// BLKSSZGET failed.
    #[error("getting the logical sector size of {device}: {source}")]
    SectorSize {
        /// The disk.
        device: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A sector size the GPT code does not handle.
    #[error("{device} has {bytes}-byte logical sectors (supported: 512 to 4096)")]
    UnsupportedSectorSize {
        /// The disk.
        device: PathBuf,
        /// BLKSSZGET's answer.
        bytes: u32,
    },
    /// No GPT on the disk.
    #[error("{device} is not a GPT disk (no \"EFI PART\" header); nothing was changed")]
    NotGpt {
        /// The disk.
        device: PathBuf,
    },
    /// A copy of the table is damaged; growpart does not repair.
    #[error("the GPT on {device} is damaged (primary: {primary}; backup: {backup}); nothing was changed (--repair rewrites the damaged copy from the valid one)")]
    DamagedTable {
        /// The disk.
        device: PathBuf,
        /// State of the primary copy.
        primary: String,
        /// State of the backup copy.
        backup: String,
    },
    /// The disk is smaller than its table says: growing would have to shrink.
    #[error("{device} is smaller than its GPT (backup header at LBA {backup_lba} is past the end): the disk shrank, refusing to shrink partitions")]
    DiskShrank {
        /// The disk.
        device: PathBuf,
        /// Where the primary says the backup is.
        backup_lba: u64,
    },
    /// No partition of type DATA or named DATA.
    #[error(
        "{device} has no DATA partition (type 626f7474-6c65-6474-6861-726d61726b73 or label DATA)"
    )]
    NoDataPartition {
        /// The disk.
        device: PathBuf,
    },
    /// The partition cannot be grown.
    #[error("{device}: {source}; nothing was changed")]
    Partition {
        /// The disk.
        device: PathBuf,
        /// Why.
        source: PlanError,
    },
    /// Reading or writing the table failed.
    #[error(transparent)]
    Gpt(gpt::Error),
    /// BLKPG_RESIZE_PARTITION failed (the table on disk is already grown).
    #[error("telling the kernel the new size of partition {number} of {device} (BLKPG_RESIZE_PARTITION): {source}; the table on disk is grown, a reboot picks it up")]
    Blkpg {
        /// The disk.
        device: PathBuf,
        /// Partition number.
        number: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// A filesystem tool could not be started.
    #[error("running {program}: {source}")]
    Tool {
        /// The tool.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A filesystem tool failed.
    #[error("{program} failed ({status}): {output}")]
    ToolFailed {
        /// The tool.
        program: PathBuf,
        /// Exit status.
        status: String,
        /// Its stderr (or stdout).
        output: String,
    },
    /// The crypt parameters have no usable data offset or sector size, or leave no room.
    #[error(
        "dm-crypt mapping {name}: parameters lack a data offset or a valid sector_size, or the partition is too small"
    )]
    CryptParams {
        /// Mapping name.
        name: String,
    },
    /// Reloading the crypt mapping failed.
    #[error("reloading dm-crypt mapping {name} with the new length: {source}")]
    Crypt {
        /// Mapping name.
        name: String,
        /// The device-mapper error.
        source: dm::Error,
    },
}
