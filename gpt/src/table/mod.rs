//! Reading, validating, changing and writing a whole GPT (both copies).

use std::path::Path;

use crate::crc32::crc32;
use crate::entry::{Entry, ENTRY_MIN_SIZE};
use crate::guid::Guid;
use crate::io::BlockIo;
use crate::le;
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

/// The fields of one header plus the bytes UEFI reserves.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    revision: u32,
    header_size: u32,
    reserved: u32,
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: Guid,
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
    /// Bytes 92.. of the header sector.
    tail: Vec<u8>,
}

/// One copy that passed every check.
#[derive(Debug)]
struct GoodCopy {
    header: Header,
    entries_raw: Vec<u8>,
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

impl Gpt {
    /// Reads and validates both copies from `disk`.
    ///
    /// `sector_size` is the logical sector size when known (BLKSSZGET on a block device);
    /// `None` probes for the signature at LBA 1 with 512-byte, then 4096-byte sectors, then
    /// for a backup header in the last sector. `device` names the disk in errors.
    ///
    /// The table comes from the primary when it is valid, else from the backup; the copies
    /// found bad are listed in [`Gpt::health`]. Both bad is [`Error::Damaged`], no signature
    /// anywhere is [`Error::NotGpt`].
    pub fn read<D: BlockIo + ?Sized>(
        disk: &D,
        device: &Path,
        sector_size: Option<SectorSize>,
    ) -> Result<Gpt, Error> {
        let disk_size = disk.size().map_err(io_err(device, "getting the size"))?;
        let ss = match sector_size {
            Some(ss) => ss,
            None => probe_sector_size(disk, device, disk_size)?,
        };
        let total = disk_size / ss.bytes();
        // LBA 0 (MBR), a header and an entry sector at each end, one usable sector.
        if total < 6 {
            return Err(Error::NotGpt {
                device: device.to_path_buf(),
            });
        }
        let last = total - 1;

        let (primary, primary_sig) = read_copy(disk, device, ss, 1, last, Which::Primary)?;
        let (mut backup_at, mut backup, mut backup_sig);
        let mut stale_elsewhere = None;
        match &primary {
            Ok(p) => {
                backup_at = p.header.alternate_lba;
                (backup, backup_sig) = read_copy(disk, device, ss, backup_at, last, Which::Backup)?;
            }
            Err(_) => {
                backup_at = last;
                (backup, backup_sig) = read_copy(disk, device, ss, last, last, Which::Backup)?;
                // After the disk grew the backup is not in the last sector; a damaged
                // primary's alternate-LBA field is still a good hint (the backup header
                // validates itself, so a wrong hint costs one read).
                let hint = raw_alternate_lba(disk, ss).filter(|&h| h != last && h > 1 && h < last);
                if let Some(h) = hint {
                    let (b, sig) = read_copy(disk, device, ss, h, last, Which::Backup)?;
                    match (&backup, b) {
                        (Err(_), b @ Ok(_)) => (backup_at, backup, backup_sig) = (h, b, sig),
                        // A complete older backup at the hinted place while the one at the
                        // end is valid: a grow was cut before the old header was wiped.
                        (Ok(_), Ok(_)) => stale_elsewhere = Some(h),
                        _ => {}
                    }
                }
            }
        }
        if let (Ok(p), Ok(b)) = (&primary, &backup) {
            if !copies_agree(p, b) {
                backup = Err(Problem::Mismatch);
            }
        }
        let health = Health {
            primary: primary.as_ref().err().cloned(),
            backup: backup.as_ref().err().cloned(),
        };
        let stale_backup_lba = stale_elsewhere.or(backup_sig.then_some(backup_at));
        let backup_entries_found = backup.as_ref().ok().map(|b| b.header.entries_lba);
        let (source, which) = match (primary, backup) {
            (Ok(p), _) => (p, Which::Primary),
            (Err(_), Ok(b)) => (b, Which::Backup),
            (Err(p), Err(b)) => {
                if !primary_sig && !backup_sig {
                    return Err(Error::NotGpt {
                        device: device.to_path_buf(),
                    });
                }
                return Err(Error::Damaged {
                    device: device.to_path_buf(),
                    primary: p,
                    backup: b,
                });
            }
        };
        let h = source.header;
        let ents = array_sectors(h.num_entries, h.entry_size, ss);
        let (primary_entries_lba, backup_lba, backup_entries_lba) = match which {
            Which::Primary => {
                let bl = h.alternate_lba;
                let be = backup_entries_found.unwrap_or(bl.saturating_sub(ents));
                (h.entries_lba, bl, be)
            }
            // The backup does not say where the primary's array was: use the standard LBA 2.
            Which::Backup => (2, h.my_lba, h.entries_lba),
        };
        let entries = parse_entries(&source.entries_raw, h.entry_size);
        let gpt = Gpt {
            sector_size: ss,
            disk_size,
            revision: h.revision,
            header_size: h.header_size,
            reserved: h.reserved,
            disk_guid: h.disk_guid,
            first_usable: h.first_usable,
            last_usable: h.last_usable,
            primary_entries_lba,
            backup_lba,
            backup_entries_lba,
            entry_size: h.entry_size,
            header_tail: h.tail,
            entries,
            health,
            stale_backup_lba,
        };
        // The copy read was valid, but the other copy's place derived from it may not be.
        gpt.check_layout().map_err(|problem| Error::Layout {
            device: device.to_path_buf(),
            problem,
        })?;
        Ok(gpt)
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

    /// The entry array as stored on disk.
    fn entries_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.entries.len().saturating_mul(self.entry_size as usize));
        for e in &self.entries {
            e.serialize_into(&mut out);
        }
        out
    }

    /// One header sector.
    fn header_bytes(&self, which: Which, entries_crc: u32) -> Vec<u8> {
        let (my, alt, el) = match which {
            Which::Primary => (1, self.backup_lba, self.primary_entries_lba),
            Which::Backup => (self.backup_lba, 1, self.backup_entries_lba),
        };
        let mut h = Vec::with_capacity(self.sector_size.bytes() as usize);
        h.extend_from_slice(&SIGNATURE);
        h.extend_from_slice(&self.revision.to_le_bytes());
        h.extend_from_slice(&self.header_size.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&self.reserved.to_le_bytes());
        h.extend_from_slice(&u64::to_le_bytes(my));
        h.extend_from_slice(&u64::to_le_bytes(alt));
        h.extend_from_slice(&self.first_usable.to_le_bytes());
        h.extend_from_slice(&self.last_usable.to_le_bytes());
        h.extend_from_slice(&self.disk_guid.to_disk_bytes());
        h.extend_from_slice(&u64::to_le_bytes(el));
        h.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        h.extend_from_slice(&self.entry_size.to_le_bytes());
        h.extend_from_slice(&entries_crc.to_le_bytes());
        h.extend_from_slice(&self.header_tail);
        h.resize(self.sector_size.bytes() as usize, 0);
        let crc = crc32(h.get(..self.header_size as usize).unwrap_or(&[]));
        if let Some(field) = h.get_mut(16..20) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
        h
    }

    /// Writes both copies crash-safely and repairs a bad one.
    ///
    /// Order: the copy a reader would *not* use is written first (entries, header, sync),
    /// then the other one (entries, header, sync). With a valid primary that is backup
    /// first; with a bad primary it is primary first. At every cut point the copy the
    /// reader uses is therefore either the untouched old one or the complete new one. If
    /// the backup moved ([`Gpt::move_backup_to_end`]), the old backup header sector is
    /// zeroed (and synced) right after the new backup is durable: with a valid primary
    /// that is before the primary is rewritten, so a cut between the two leaves the old
    /// primary (still valid, still the copy in use, now with a missing backup that the
    /// next write repairs) and never a stale header that nothing points to any more.
    ///
    /// Refuses a table that fails [`Gpt::check_layout`] or a disk whose size changed since
    /// it was read. On success [`Gpt::health`] is clean.
    pub fn write<D: BlockIo + ?Sized>(&mut self, disk: &mut D, device: &Path) -> Result<(), Error> {
        let dev = || device.to_path_buf();
        let now = disk.size().map_err(io_err(device, "getting the size"))?;
        if now != self.disk_size {
            return Err(Error::SizeChanged {
                device: dev(),
                was: self.disk_size,
                now,
            });
        }
        self.check_layout().map_err(|problem| Error::Layout {
            device: dev(),
            problem,
        })?;
        let entries = self.entries_bytes();
        let entries_crc = crc32(&entries);
        let order = if self.health.primary.is_none() {
            [Which::Backup, Which::Primary]
        } else {
            [Which::Primary, Which::Backup]
        };
        let ss = self.sector_size;
        let stale = self
            .stale_backup_lba
            .filter(|&old| self.is_free_of_metadata(old));
        for which in order {
            let (hl, el, what_e, what_h) = match which {
                Which::Primary => (
                    1,
                    self.primary_entries_lba,
                    "writing the primary entry array",
                    "writing the primary header",
                ),
                Which::Backup => (
                    self.backup_lba,
                    self.backup_entries_lba,
                    "writing the backup entry array",
                    "writing the backup header",
                ),
            };
            let eo = ss.offset(el).ok_or_else(|| Error::Layout {
                device: dev(),
                problem: Problem::EntriesLocation(el),
            })?;
            let ho = ss.offset(hl).ok_or_else(|| Error::Layout {
                device: dev(),
                problem: Problem::AlternateLba(hl),
            })?;
            disk.write_at(eo, &entries)
                .map_err(io_err(device, what_e))?;
            disk.write_at(ho, &self.header_bytes(which, entries_crc))
                .map_err(io_err(device, what_h))?;
            disk.sync().map_err(io_err(device, "syncing"))?;
            // The old backup header goes right after the new backup is durable: from then
            // on the primary (old or new) is the copy in use, and no stale header is left
            // for a later read to miss.
            if let (Which::Backup, Some(old)) = (which, stale) {
                let off = ss.offset(old).ok_or(Error::Layout {
                    device: dev(),
                    problem: Problem::OutsideDisk(old),
                })?;
                disk.write_at(off, &vec![0u8; ss.bytes() as usize])
                    .map_err(io_err(device, "wiping the old backup header"))?;
                disk.sync().map_err(io_err(device, "syncing"))?;
            }
        }
        self.health = Health::default();
        self.stale_backup_lba = Some(self.backup_lba);
        Ok(())
    }

    /// Whether `lba` holds none of the structures the current table writes (so an old
    /// header there may be wiped).
    fn is_free_of_metadata(&self, lba: u64) -> bool {
        let ents = array_sectors(self.entries.len() as u32, self.entry_size, self.sector_size);
        let inside = |start: u64| lba >= start && lba < start.saturating_add(ents);
        lba > 1
            && lba != self.backup_lba
            && lba <= self.disk_last_lba()
            && !inside(self.primary_entries_lba)
            && !inside(self.backup_entries_lba)
    }
}

fn array_sectors(count: u32, size: u32, ss: SectorSize) -> u64 {
    sectors_for(u64::from(count) * u64::from(size), ss)
}

fn parse_entries(raw: &[u8], entry_size: u32) -> Vec<Entry> {
    raw.chunks_exact(entry_size as usize)
        .filter_map(Entry::parse)
        .collect()
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

/// Whether a valid backup describes the same table as the valid primary.
fn copies_agree(p: &GoodCopy, b: &GoodCopy) -> bool {
    let (ph, bh) = (&p.header, &b.header);
    bh.my_lba == ph.alternate_lba
        && bh.alternate_lba == 1
        && ph.disk_guid == bh.disk_guid
        && ph.first_usable == bh.first_usable
        && ph.last_usable == bh.last_usable
        && ph.num_entries == bh.num_entries
        && ph.entry_size == bh.entry_size
        && p.entries_raw == b.entries_raw
}

fn probe_sector_size<D: BlockIo + ?Sized>(
    disk: &D,
    device: &Path,
    size: u64,
) -> Result<SectorSize, Error> {
    let sizes = [SectorSize::S512, SectorSize::S4096];
    for ss in sizes {
        if has_signature(disk, device, ss.bytes(), size)? {
            return Ok(ss);
        }
    }
    for ss in sizes {
        let at = (size / ss.bytes())
            .checked_sub(1)
            .and_then(|l| ss.offset(l));
        if let Some(at) = at {
            if has_signature(disk, device, at, size)? {
                return Ok(ss);
            }
        }
    }
    Err(Error::NotGpt {
        device: device.to_path_buf(),
    })
}

/// The alternate-LBA field of whatever is at LBA 1, without any validation.
fn raw_alternate_lba<D: BlockIo + ?Sized>(disk: &D, ss: SectorSize) -> Option<u64> {
    let mut field = [0u8; 8];
    disk.read_at(ss.bytes().checked_add(32)?, &mut field).ok()?;
    Some(u64::from_le_bytes(field))
}

fn has_signature<D: BlockIo + ?Sized>(
    disk: &D,
    device: &Path,
    at: u64,
    size: u64,
) -> Result<bool, Error> {
    if at.checked_add(8).is_none_or(|end| end > size) {
        return Ok(false);
    }
    let mut sig = [0u8; 8];
    disk.read_at(at, &mut sig)
        .map_err(io_err(device, "reading a GPT header"))?;
    Ok(sig == SIGNATURE)
}

/// Reads the copy whose header is at `at`. The outer error is an I/O failure; the inner
/// result says whether the copy is valid. The flag says whether the signature was there.
fn read_copy<D: BlockIo + ?Sized>(
    disk: &D,
    device: &Path,
    ss: SectorSize,
    at: u64,
    last: u64,
    which: Which,
) -> Result<(Result<GoodCopy, Problem>, bool), Error> {
    if at > last || at < 1 {
        return Ok((Err(Problem::OutsideDisk(at)), false));
    }
    let mut sector = vec![0u8; ss.bytes() as usize];
    let off = ss.offset(at).ok_or(Error::Layout {
        device: device.to_path_buf(),
        problem: Problem::OutsideDisk(at),
    })?;
    disk.read_at(off, &mut sector)
        .map_err(io_err(device, "reading a GPT header"))?;
    let has_sig = sector.get(..8) == Some(&SIGNATURE[..]);
    let header = match parse_header(&sector, ss, at, last, which) {
        Ok(h) => h,
        Err(p) => return Ok((Err(p), has_sig)),
    };
    let len = u64::from(header.num_entries) * u64::from(header.entry_size);
    let mut entries_raw = vec![0u8; len as usize];
    let eoff = ss.offset(header.entries_lba).ok_or(Error::Layout {
        device: device.to_path_buf(),
        problem: Problem::EntriesLocation(header.entries_lba),
    })?;
    disk.read_at(eoff, &mut entries_raw)
        .map_err(io_err(device, "reading a GPT entry array"))?;
    let computed = crc32(&entries_raw);
    if computed != header.entries_crc {
        return Ok((
            Err(Problem::EntriesCrc {
                stored: header.entries_crc,
                computed,
            }),
            true,
        ));
    }
    let entries = parse_entries(&entries_raw, header.entry_size);
    if let Err(p) = check_partitions(&entries, header.first_usable, header.last_usable) {
        return Ok((Err(p), true));
    }
    Ok((
        Ok(GoodCopy {
            header,
            entries_raw,
        }),
        true,
    ))
}

/// Parses and checks one header sector read from LBA `at` of a disk whose last LBA is
/// `last`. Everything but the entry array is checked here.
fn parse_header(
    sector: &[u8],
    ss: SectorSize,
    at: u64,
    last: u64,
    which: Which,
) -> Result<Header, Problem> {
    let short = Problem::HeaderSize(0);
    if sector.get(..8) != Some(&SIGNATURE[..]) {
        return Err(Problem::NoSignature);
    }
    let revision = le::u32_at(sector, 8).ok_or(short.clone())?;
    if revision != REVISION_1_0 {
        return Err(Problem::Revision(revision));
    }
    let header_size = le::u32_at(sector, 12).ok_or(short.clone())?;
    if header_size < HEADER_MIN_SIZE || u64::from(header_size) > ss.bytes() {
        return Err(Problem::HeaderSize(header_size));
    }
    let stored = le::u32_at(sector, 16).ok_or(short.clone())?;
    let mut covered = sector
        .get(..header_size as usize)
        .ok_or(short.clone())?
        .to_vec();
    if let Some(field) = covered.get_mut(16..20) {
        field.fill(0);
    }
    let computed = crc32(&covered);
    if computed != stored {
        return Err(Problem::HeaderCrc { stored, computed });
    }
    let field = |off| le::u64_at(sector, off).ok_or(short.clone());
    let h = Header {
        revision,
        header_size,
        reserved: le::u32_at(sector, 20).ok_or(short.clone())?,
        my_lba: field(24)?,
        alternate_lba: field(32)?,
        first_usable: field(40)?,
        last_usable: field(48)?,
        disk_guid: Guid::from_disk_bytes(le::array(sector, 56).ok_or(short.clone())?),
        entries_lba: field(72)?,
        num_entries: le::u32_at(sector, 80).ok_or(short.clone())?,
        entry_size: le::u32_at(sector, 84).ok_or(short.clone())?,
        entries_crc: le::u32_at(sector, 88).ok_or(short.clone())?,
        tail: sector
            .get(HEADER_MIN_SIZE as usize..)
            .ok_or(short)?
            .to_vec(),
    };
    if h.my_lba != at {
        return Err(Problem::MyLba {
            expected: at,
            found: h.my_lba,
        });
    }
    let (fu, lu) = (h.first_usable, h.last_usable);
    if fu > lu || fu < 2 || lu >= last {
        return Err(Problem::UsableRange {
            first: fu,
            last: lu,
        });
    }
    let alt_ok = match which {
        Which::Primary => h.alternate_lba > lu && h.alternate_lba <= last,
        Which::Backup => h.alternate_lba == 1 && at > lu,
    };
    if !alt_ok {
        return Err(Problem::AlternateLba(h.alternate_lba));
    }
    let bytes = u64::from(h.num_entries) * u64::from(h.entry_size);
    let size_ok = (h.entry_size as usize) >= ENTRY_MIN_SIZE
        && h.entry_size.is_power_of_two()
        && h.num_entries > 0
        && bytes <= MAX_ENTRY_ARRAY_BYTES;
    if !size_ok {
        return Err(Problem::EntryGeometry {
            count: h.num_entries,
            size: h.entry_size,
        });
    }
    let el = h.entries_lba;
    let end = el
        .checked_add(sectors_for(bytes, ss))
        .ok_or(Problem::EntriesLocation(el))?;
    let place_ok = match which {
        Which::Primary => el > at && end <= fu,
        Which::Backup => el > lu && end <= at,
    };
    if !place_ok {
        return Err(Problem::EntriesLocation(el));
    }
    Ok(h)
}
