//! A whole GUID partition table in memory: the state both copies should hold, its
//! geometry rules, and the accessors and mutators that change memory only. Reading and
//! validating both copies is in `read`, writing them back crash-safely in `write`.

mod read;
mod write;

use std::path::Path;

use crate::entry::Entry;
use crate::guid::Guid;
use crate::{Error, SectorSize};

/// "EFI PART", the header signature.
pub const SIGNATURE: [u8; 8] = *b"EFI PART";
/// The only header revision defined (UEFI 2.x): 1.0.
pub const REVISION_1_0: u32 = 0x0001_0000;
/// Bytes of the header fields UEFI defines.
pub const HEADER_MIN_SIZE: u32 = 92;
/// Largest entry array this reader accepts (1 MiB; sgdisk makes 16 KiB). Bounds the
/// memory an untrusted header can make us allocate.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;

/// Why one copy of the table is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The header's LBA is past the end of the disk.
    #[error("header LBA {0} is past the end of the disk")]
    OutsideDisk(u64),
    /// No "EFI PART" signature.
    #[error("no \"EFI PART\" signature")]
    NoSignature,
    /// A revision other than 1.0.
    #[error("unsupported header revision {0:#010x}")]
    Revision(u32),
    /// Header size below 92 or above the sector size.
    #[error("impossible header size {0}")]
    HeaderSize(u32),
    /// Header CRC32 does not match.
    #[error("header CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderCrc {
        /// Value in the header.
        stored: u32,
        /// Value computed over the header.
        computed: u32,
    },
    /// The header names another LBA than the one it was read from.
    #[error("header at LBA {expected} says it is at LBA {found}")]
    MyLba {
        /// Where it was read.
        expected: u64,
        /// What it says.
        found: u64,
    },
    /// The alternate header LBA is impossible.
    #[error("alternate header LBA {0} is impossible on this disk")]
    AlternateLba(u64),
    /// The usable range is empty, overlaps a header or leaves the disk.
    #[error("usable range {first}..={last} is impossible on this disk")]
    UsableRange {
        /// First usable LBA.
        first: u64,
        /// Last usable LBA.
        last: u64,
    },
    /// Entry size not 128 times a power of two, no entries, or an array too large.
    #[error("impossible entry array: {count} entries of {size} bytes")]
    EntryGeometry {
        /// Number of entries.
        count: u32,
        /// Bytes per entry.
        size: u32,
    },
    /// The entry array overlaps a header or the usable range, or leaves the disk.
    #[error("entry array at LBA {0} overlaps a header or the usable range, or leaves the disk")]
    EntriesLocation(u64),
    /// Entry array CRC32 does not match.
    #[error("entry array CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    EntriesCrc {
        /// Value in the header.
        stored: u32,
        /// Value computed over the array.
        computed: u32,
    },
    /// A partition ends before it starts or leaves the usable range.
    #[error("partition {number} (LBAs {first}..={last}) is outside the usable range")]
    PartitionOutside {
        /// Partition number (1-based entry index).
        number: u32,
        /// Its first LBA.
        first: u64,
        /// Its last LBA.
        last: u64,
    },
    /// Two partitions share sectors.
    #[error("partitions {a} and {b} overlap")]
    Overlap {
        /// One partition number.
        a: u32,
        /// The other.
        b: u32,
    },
    /// A valid backup that does not describe the same table as the valid primary.
    #[error("differs from the primary copy")]
    Mismatch,
}

/// The state of both copies as found when reading. A copy with a problem is rewritten by
/// the next [`Gpt::write`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// Why the primary copy (LBA 1) is bad, if it is.
    pub primary: Option<Problem>,
    /// Why the backup copy is bad, if it is.
    pub backup: Option<Problem>,
}

impl Health {
    /// Both copies valid and identical.
    pub fn is_clean(&self) -> bool {
        self.primary.is_none() && self.backup.is_none()
    }
}

/// Which copy a header claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Primary,
    Backup,
}

/// A GUID partition table: the state both copies should hold, plus what was found on disk.
///
/// Mutators change memory only; [`Gpt::write`] is the one step that writes. `PartialEq`
/// compares the whole state, so `table != original` is the cheap "did anything change"
/// check before writing (together with [`Health::is_clean`] for repairs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    sector_size: SectorSize,
    disk_size: u64,
    revision: u32,
    header_size: u32,
    reserved: u32,
    disk_guid: Guid,
    first_usable: u64,
    last_usable: u64,
    primary_entries_lba: u64,
    backup_lba: u64,
    backup_entries_lba: u64,
    entry_size: u32,
    header_tail: Vec<u8>,
    entries: Vec<Entry>,
    health: Health,
    /// LBA of a backup header seen on disk (signature present), to wipe if the backup moves.
    stale_backup_lba: Option<u64>,
}

fn io_err<'a>(device: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        device: device.to_path_buf(),
        what,
        source,
    }
}

/// Sectors needed for `bytes` bytes.
fn sectors_for(bytes: u64, ss: SectorSize) -> u64 {
    bytes.div_ceil(ss.bytes())
}

/// Entries in a new table, and bytes per entry: what sgdisk and every UEFI tool make
/// (a 16 KiB array).
pub const NEW_ENTRIES: u32 = 128;
const NEW_ENTRY_SIZE: u32 = 128;

impl Gpt {
    /// A new table for a blank disk of `disk_size` bytes, laid out as `sgdisk --clear`
    /// lays it out: [`NEW_ENTRIES`] entries of 128 bytes at LBA 2, the usable range right
    /// after that array and up to the backup array, which sits just before the backup
    /// header in the last sector. `partitions` become entries 1, 2, ... and the rest are
    /// unused. Refuses more than [`NEW_ENTRIES`] partitions, a disk too small for the two
    /// copies, and partitions outside the usable range or overlapping. Does not write to
    /// the disk: [`Gpt::write`] does, and [`crate::mbr::ProtectiveMbr::new`] makes LBA 0.
    pub fn new(
        sector_size: SectorSize,
        disk_size: u64,
        disk_guid: Guid,
        partitions: Vec<Entry>,
    ) -> Result<Gpt, Problem> {
        let geometry = Problem::EntryGeometry {
            count: u32::try_from(partitions.len()).unwrap_or(u32::MAX),
            size: NEW_ENTRY_SIZE,
        };
        let unused = NEW_ENTRIES
            .checked_sub(u32::try_from(partitions.len()).map_err(|_| geometry.clone())?)
            .ok_or(geometry)?;
        let mut entries = partitions;
        entries.extend((0..unused).map(|_| Entry::unused()));
        let ents = array_sectors(NEW_ENTRIES, NEW_ENTRY_SIZE, sector_size);
        let last = (disk_size / sector_size.bytes()).saturating_sub(1);
        let backup_entries_lba = last.saturating_sub(ents);
        let table = Gpt {
            sector_size,
            disk_size,
            revision: REVISION_1_0,
            header_size: HEADER_MIN_SIZE,
            reserved: 0,
            disk_guid,
            first_usable: 2 + ents,
            last_usable: backup_entries_lba.saturating_sub(1),
            primary_entries_lba: 2,
            backup_lba: last,
            backup_entries_lba,
            entry_size: NEW_ENTRY_SIZE,
            header_tail: Vec::new(),
            entries,
            health: Health::default(),
            stale_backup_lba: None,
        };
        table.check_layout()?;
        Ok(table)
    }

    /// Logical sector size.
    pub fn sector_size(&self) -> SectorSize {
        self.sector_size
    }

    /// Disk size in bytes when read.
    pub fn disk_size(&self) -> u64 {
        self.disk_size
    }

    /// Last LBA of the disk.
    pub fn disk_last_lba(&self) -> u64 {
        (self.disk_size / self.sector_size.bytes()).saturating_sub(1)
    }

    /// Disk GUID.
    pub fn disk_guid(&self) -> Guid {
        self.disk_guid
    }

    /// First LBA partitions may use.
    pub fn first_usable_lba(&self) -> u64 {
        self.first_usable
    }

    /// Last LBA partitions may use.
    pub fn last_usable_lba(&self) -> u64 {
        self.last_usable
    }

    /// LBA of the backup header.
    pub fn backup_lba(&self) -> u64 {
        self.backup_lba
    }

    /// LBA of the primary entry array.
    pub fn primary_entries_lba(&self) -> u64 {
        self.primary_entries_lba
    }

    /// LBA of the backup entry array.
    pub fn backup_entries_lba(&self) -> u64 {
        self.backup_entries_lba
    }

    /// Bytes per entry.
    pub fn entry_size(&self) -> u32 {
        self.entry_size
    }

    /// All entries, used or not, in table order (entry `i` is partition `i + 1`).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// All entries, mutable. Does not write to the disk; [`Gpt::write`] validates.
    pub fn entries_mut(&mut self) -> &mut [Entry] {
        &mut self.entries
    }

    /// Partition `number` (1-based), used or not; `None` past the array.
    pub fn partition(&self, number: u32) -> Option<&Entry> {
        self.entries
            .get(usize::try_from(number).ok()?.checked_sub(1)?)
    }

    /// Partition `number` (1-based), mutable. Does not write to the disk.
    pub fn partition_mut(&mut self, number: u32) -> Option<&mut Entry> {
        self.entries
            .get_mut(usize::try_from(number).ok()?.checked_sub(1)?)
    }

    /// The first used entry whose name is `label`, with its 1-based number.
    pub fn find_by_name(&self, label: &str) -> Option<(u32, &Entry)> {
        self.used().find(|(_, e)| e.name() == label)
    }

    /// The first used entry of type `type_guid`, with its 1-based number.
    pub fn find_by_type(&self, type_guid: Guid) -> Option<(u32, &Entry)> {
        self.used().find(|(_, e)| e.type_guid == type_guid)
    }

    /// The used entry whose unique GUID (PARTUUID) is `guid`, with its 1-based number;
    /// `None` if there is none or more than one (an ambiguous PARTUUID must not pick a
    /// partition).
    pub fn find_by_unique_guid(&self, guid: Guid) -> Option<(u32, &Entry)> {
        let mut hits = self.used().filter(|(_, e)| e.unique_guid == guid);
        let first = hits.next()?;
        hits.next().is_none().then_some(first)
    }

    /// Pairs of used partitions (lower number first) that share a unique GUID. The format
    /// does not forbid it and `sgdisk -v` does not flag it, but it makes PARTUUIDs
    /// ambiguous.
    pub fn duplicate_unique_guids(&self) -> Vec<(u32, u32)> {
        let mut used: Vec<(Guid, u32)> = self.used().map(|(n, e)| (e.unique_guid, n)).collect();
        used.sort_unstable();
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (i, (g, a)) in used.iter().enumerate() {
            for (h, b) in used.iter().skip(i + 1) {
                if h != g {
                    break;
                }
                pairs.push((*a.min(b), *a.max(b)));
            }
        }
        pairs.sort_unstable();
        pairs
    }

    /// Used entries with their 1-based numbers.
    pub fn used(&self) -> impl Iterator<Item = (u32, &Entry)> {
        (1u32..)
            .zip(self.entries.iter())
            .filter(|(_, e)| e.is_used())
    }

    /// What was wrong with each copy when read (cleared by a successful write).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Moves the backup header and array to the end of the disk and extends the usable
    /// range up to them, as after the disk grew. Returns whether anything changed. Does not
    /// write to the disk; the next [`Gpt::write`] also wipes the old backup header.
    pub fn move_backup_to_end(&mut self) -> Result<bool, Problem> {
        let last = self.disk_last_lba();
        let ents = array_sectors(self.entries.len() as u32, self.entry_size, self.sector_size);
        let be = last.checked_sub(ents).ok_or(Problem::EntriesLocation(0))?;
        let lu = be.checked_sub(1).ok_or(Problem::EntriesLocation(be))?;
        if self.backup_lba == last && self.backup_entries_lba == be && self.last_usable == lu {
            return Ok(false);
        }
        let mut moved = self.clone();
        moved.backup_lba = last;
        moved.backup_entries_lba = be;
        moved.last_usable = lu;
        moved.check_layout()?;
        *self = moved;
        Ok(true)
    }

    /// Checks the in-memory table against the disk geometry: headers and arrays in place,
    /// the usable range between them, every partition inside it, no overlaps.
    pub fn check_layout(&self) -> Result<(), Problem> {
        let last = self.disk_last_lba();
        let ents = array_sectors(self.entries.len() as u32, self.entry_size, self.sector_size);
        let (fu, lu) = (self.first_usable, self.last_usable);
        if fu > lu || fu < 2 || lu >= last {
            return Err(Problem::UsableRange {
                first: fu,
                last: lu,
            });
        }
        if self.backup_lba > last || self.backup_lba <= lu {
            return Err(Problem::AlternateLba(self.backup_lba));
        }
        let pe = self.primary_entries_lba;
        if pe < 2 || pe.checked_add(ents).is_none_or(|end| end > fu) {
            return Err(Problem::EntriesLocation(pe));
        }
        let be = self.backup_entries_lba;
        if be <= lu || be.checked_add(ents).is_none_or(|end| end > self.backup_lba) {
            return Err(Problem::EntriesLocation(be));
        }
        check_partitions(&self.entries, fu, lu)
    }
}

fn array_sectors(count: u32, size: u32, ss: SectorSize) -> u64 {
    sectors_for(u64::from(count) * u64::from(size), ss)
}

/// Used partitions inside `first..=last`, none inverted, none overlapping.
fn check_partitions(entries: &[Entry], first: u64, last: u64) -> Result<(), Problem> {
    let mut used: Vec<(u64, u64, u32)> = Vec::new();
    for (number, e) in (1u32..).zip(entries) {
        if !e.is_used() {
            continue;
        }
        if e.first_lba > e.last_lba || e.first_lba < first || e.last_lba > last {
            return Err(Problem::PartitionOutside {
                number,
                first: e.first_lba,
                last: e.last_lba,
            });
        }
        used.push((e.first_lba, e.last_lba, number));
    }
    used.sort_unstable();
    for pair in used.windows(2) {
        if let [(_, a_last, a), (b_first, _, b)] = pair {
            if b_first <= a_last {
                return Err(Problem::Overlap { a: *a, b: *b });
            }
        }
    }
    Ok(())
}
