//! Writing a table back: both copies, in the order that leaves one valid copy holding
//! the old or the new state at every cut point, and the old backup header wiped.

use std::path::Path;

use super::{array_sectors, io_err, Gpt, Health, Problem, Which, SIGNATURE};
use crate::crc32::crc32;
use crate::io::BlockIo;
use crate::Error;

impl Gpt {
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
