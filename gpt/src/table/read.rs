//! Reading a table: probing the sector size, finding both copies, validating each
//! (header fields and CRC32, entry geometry and CRC32, partitions in range and apart),
//! checking that they agree, and choosing the one to use.

use std::path::Path;

use super::{array_sectors, check_partitions, io_err, sectors_for, Gpt, Health, Problem, Which};
use super::{HEADER_MIN_SIZE, MAX_ENTRY_ARRAY_BYTES, REVISION_1_0, SIGNATURE};
use crate::crc32::crc32;
use crate::entry::{Entry, ENTRY_MIN_SIZE};
use crate::guid::Guid;
use crate::io::BlockIo;
use crate::le;
use crate::{Error, SectorSize};

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

        let reader = |offset, buf: &mut [u8]| disk.read_at(offset, buf);
        let copy_at = |at, which| read_copy(&reader, device, ss, at, last, which);
        let (primary, primary_sig) = copy_at(1, Which::Primary)?;
        let (mut backup_at, mut backup, mut backup_sig);
        let mut stale_elsewhere = None;
        match &primary {
            Ok(p) => {
                backup_at = p.header.alternate_lba;
                (backup, backup_sig) = copy_at(backup_at, Which::Backup)?;
            }
            Err(_) => {
                backup_at = last;
                (backup, backup_sig) = copy_at(last, Which::Backup)?;
                // After the disk grew the backup is not in the last sector; a damaged
                // primary's alternate-LBA field is still a good hint (the backup header
                // validates itself, so a wrong hint costs one read).
                let hint = raw_alternate_lba(disk, ss).filter(|&h| h != last && h > 1 && h < last);
                if let Some(h) = hint {
                    let (b, sig) = copy_at(h, Which::Backup)?;
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
}

fn parse_entries(raw: &[u8], entry_size: u32) -> Vec<Entry> {
    raw.chunks_exact(entry_size as usize)
        .filter_map(Entry::parse)
        .collect()
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

/// The reads [`read_copy`] makes, as a trait object: one copy of it for every kind of
/// disk (each crate reading a `File` had its own, 1.4 KiB of PID 1 each).
type ReadAt<'a> = &'a dyn Fn(u64, &mut [u8]) -> std::io::Result<()>;

/// Reads the copy whose header is at `at` through `disk` ([`BlockIo::read_at`]). The
/// outer error is an I/O failure; the inner result says whether the copy is valid. The
/// flag says whether the signature was there.
fn read_copy(
    disk: ReadAt<'_>,
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
    disk(off, &mut sector).map_err(io_err(device, "reading a GPT header"))?;
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
    disk(eoff, &mut entries_raw).map_err(io_err(device, "reading a GPT entry array"))?;
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
