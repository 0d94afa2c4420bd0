//! The slot sets on one disk and their A/B state in the GPT (through the shared `gpt` crate).
//!
//! # Finding the slots
//!
//! Partitions are found by type GUID (DESIGN.md section 3), in partition-number order: the
//! first BOOT, ROOT and HASH partitions form slot A, the second ones slot B. The ESP, PRIVATE
//! and DATA are found the same way (the first of each). Labels are not used: a relabelled disk still
//! works, and Bottlerocket's tools agree. Only the one disk handed to [`SlotDisk::open`] is
//! read: a second disk with the same GUIDs (a cloned volume) is never looked at.
//!
//! # Reading and writing
//!
//! [`SlotDisk::open`] reads and validates both GPT copies; a corrupt copy is reported in
//! [`SlotDisk::health`] and the table comes from the good one. [`SlotDisk::store`] writes only
//! when the attribute words changed; the write rewrites both copies (repairing a corrupt one)
//! with a sync after each, in the order the `gpt` crate documents, so a cut at any point
//! leaves a valid table holding the old or the new state.

use crate::decide::SlotWords;
use crate::Slot;
use gpt::types::{BOOT, DATA, EFI_SYSTEM, HASH, PRIVATE, ROOT};
use gpt::{BlockIo, Gpt, Guid, Health, SectorSize};
use std::path::{Path, PathBuf};

/// One of the three partitions of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// BOOT-x: the slot's signed unified kernel image; carries the A/B bits.
    Boot,
    /// ROOT-x: the verity-protected root.
    Root,
    /// HASH-x: the verity superblock and hash tree.
    Hash,
}

impl Part {
    /// All three, in install order.
    pub const ALL: [Part; 3] = [Part::Boot, Part::Root, Part::Hash];

    /// `"boot"`, `"root"`, `"hash"` (as in the install manifest).
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Boot => "boot",
            Part::Root => "root",
            Part::Hash => "hash",
        }
    }

    fn type_guid(self) -> Guid {
        match self {
            Part::Boot => BOOT,
            Part::Root => ROOT,
            Part::Hash => HASH,
        }
    }
}

/// Partition numbers (1-based) of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSet {
    /// BOOT partition number.
    pub boot: u32,
    /// ROOT partition number.
    pub root: u32,
    /// HASH partition number.
    pub hash: u32,
}

impl SlotSet {
    /// The partition number of `part`.
    pub fn number(&self, part: Part) -> u32 {
        match part {
            Part::Boot => self.boot,
            Part::Root => self.root,
            Part::Hash => self.hash,
        }
    }

    /// Whether partition `number` belongs to this set.
    pub fn contains(&self, number: u32) -> bool {
        Part::ALL.iter().any(|&p| self.number(p) == number)
    }
}

/// The Liftoff partitions on one disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Slot A.
    pub a: SlotSet,
    /// Slot B.
    pub b: SlotSet,
    /// The EFI system partition (GRUB and grubenv), if present.
    pub esp: Option<u32>,
    /// PRIVATE, if present.
    pub private: Option<u32>,
    /// DATA, if present.
    pub data: Option<u32>,
}

impl Layout {
    /// The partitions of `slot`.
    pub fn set(&self, slot: Slot) -> SlotSet {
        match slot {
            Slot::A => self.a,
            Slot::B => self.b,
        }
    }

    /// Which slot partition `number` belongs to.
    pub fn slot_of(&self, number: u32) -> Option<Slot> {
        [Slot::A, Slot::B]
            .into_iter()
            .find(|&s| self.set(s).contains(number))
    }

    /// Finds the slot sets in `gpt` by partition type (see the module docs).
    pub fn find(gpt: &Gpt, device: &Path) -> Result<Layout, DiskError> {
        let numbers = |guid: Guid| -> Vec<u32> {
            gpt.used()
                .filter(|(_, e)| e.type_guid == guid)
                .map(|(n, _)| n)
                .collect()
        };
        let pick = |part: Part, nth: usize, slot: Slot| -> Result<u32, DiskError> {
            numbers(part.type_guid())
                .get(nth)
                .copied()
                .ok_or_else(|| DiskError::MissingPartition {
                    device: device.to_owned(),
                    part,
                    slot,
                })
        };
        let set = |nth: usize, slot: Slot| -> Result<SlotSet, DiskError> {
            Ok(SlotSet {
                boot: pick(Part::Boot, nth, slot)?,
                root: pick(Part::Root, nth, slot)?,
                hash: pick(Part::Hash, nth, slot)?,
            })
        };
        Ok(Layout {
            a: set(0, Slot::A)?,
            b: set(1, Slot::B)?,
            esp: numbers(EFI_SYSTEM).first().copied(),
            private: numbers(PRIVATE).first().copied(),
            data: numbers(DATA).first().copied(),
        })
    }
}

/// A byte range of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Byte offset of the first sector.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A failure reading or writing the slot state; each names the device.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Reading the GPT (both copies bad, no GPT, I/O).
    #[error("reading the GPT: {0}")]
    ReadGpt(#[source] gpt::Error),
    /// Writing the GPT.
    #[error("writing the GPT: {0}")]
    WriteGpt(#[source] gpt::Error),
    /// A slot partition is missing.
    #[error("{device}: no {} partition for slot {slot}", part.as_str().to_uppercase())]
    MissingPartition {
        /// The disk.
        device: PathBuf,
        /// Which partition.
        part: Part,
        /// Which slot.
        slot: Slot,
    },
    /// A partition's byte range overflows.
    #[error("{device}: partition {number} has an impossible byte range")]
    Range {
        /// The disk.
        device: PathBuf,
        /// The partition number.
        number: u32,
    },
}

/// The A/B state of one disk: its GPT, where the slots are, and the I/O to write it back.
#[derive(Debug)]
pub struct SlotDisk<D: BlockIo> {
    disk: D,
    device: PathBuf,
    gpt: Gpt,
    layout: Layout,
}

impl<D: BlockIo> SlotDisk<D> {
    /// Reads the GPT of `disk` (named `device` in errors) and finds the slots.
    /// `sector_size`: the logical sector size when known (a block device), else probed.
    pub fn open(
        disk: D,
        device: &Path,
        sector_size: Option<SectorSize>,
    ) -> Result<Self, DiskError> {
        let gpt = Gpt::read(&disk, device, sector_size).map_err(DiskError::ReadGpt)?;
        Self::with_gpt(disk, device, gpt)
    }

    /// Like [`SlotDisk::open`] with the table `gpt` the caller has just read from `disk`
    /// (PID 1 reads it once to find the boot disk and does not read it again).
    pub fn with_gpt(disk: D, device: &Path, gpt: Gpt) -> Result<Self, DiskError> {
        let layout = Layout::find(&gpt, device)?;
        Ok(Self {
            disk,
            device: device.to_owned(),
            gpt,
            layout,
        })
    }

    /// The disk's name.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Where the slots are.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The table as read (and as last written).
    pub fn gpt(&self) -> &Gpt {
        &self.gpt
    }

    /// Which GPT copies were found corrupt (repaired by the next [`SlotDisk::store`] that
    /// writes).
    pub fn health(&self) -> &Health {
        self.gpt.health()
    }

    fn attributes(&self, number: u32) -> u64 {
        self.gpt.partition(number).map_or(0, |e| e.attributes)
    }

    /// The attribute words of BOOT-A and BOOT-B.
    pub fn words(&self) -> SlotWords {
        SlotWords {
            a: self.attributes(self.layout.a.boot),
            b: self.attributes(self.layout.b.boot),
        }
    }

    /// The byte range of a slot partition.
    pub fn region(&self, slot: Slot, part: Part) -> Result<Region, DiskError> {
        self.partition_region(self.layout.set(slot).number(part))
    }

    /// The byte range of partition `number`.
    pub fn partition_region(&self, number: u32) -> Result<Region, DiskError> {
        let err = || DiskError::Range {
            device: self.device.clone(),
            number,
        };
        let entry = self.gpt.partition(number).ok_or_else(err)?;
        let ss = self.gpt.sector_size();
        let offset = ss.offset(entry.first_lba).ok_or_else(err)?;
        let len = ss.offset(entry.sectors()).ok_or_else(err)?;
        Ok(Region { offset, len })
    }

    /// The disk I/O, for reading.
    pub fn io_ref(&self) -> &D {
        &self.disk
    }

    /// The disk I/O (for writing payloads).
    pub fn io(&mut self) -> &mut D {
        &mut self.disk
    }

    /// Writes `new` into BOOT-A/BOOT-B's attributes when it differs from what the disk holds;
    /// returns whether it wrote. Both copies are rewritten (a corrupt one repaired), synced in
    /// a crash-safe order.
    pub fn store(&mut self, new: SlotWords) -> Result<bool, DiskError> {
        if new == self.words() {
            return Ok(false);
        }
        let mut table = self.gpt.clone();
        for (slot, word) in [(Slot::A, new.a), (Slot::B, new.b)] {
            let number = self.layout.set(slot).boot;
            if let Some(e) = table.partition_mut(number) {
                e.attributes = word;
            }
        }
        table
            .write(&mut self.disk, &self.device)
            .map_err(DiskError::WriteGpt)?;
        self.gpt = table;
        Ok(true)
    }

    /// Rewrites both GPT copies as they are when one of them is damaged (the good copy's
    /// contents into the damaged one first); returns whether it wrote. [`SlotDisk::store`]
    /// repairs only when the attribute words change, which in a saturated state (no try
    /// left to spend, the crash-loop count at its maximum) is never: the boot step calls
    /// this so that a damaged copy does not outlive the boot that saw it.
    pub fn repair(&mut self) -> Result<bool, DiskError> {
        if self.gpt.health().is_clean() {
            return Ok(false);
        }
        self.gpt
            .write(&mut self.disk, &self.device)
            .map_err(DiskError::WriteGpt)?;
        Ok(true)
    }

    /// Gives the I/O back.
    pub fn into_inner(self) -> D {
        self.disk
    }
}
