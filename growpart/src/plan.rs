//! The pure half: given a table, decide the new end of the partition. Nothing here reads
//! or writes a disk.

use gpt::Gpt;

use crate::PlanError as Error;

/// Partition ends are kept on this boundary (the layout aligns everything to 1 MiB).
pub const ALIGNMENT_BYTES: u64 = 1 << 20;

/// What growing partition `number` to the end of its disk would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Partition number (1-based).
    pub number: u32,
    /// Logical sector size in bytes.
    pub sector_size: u64,
    /// First LBA (never changes).
    pub first_lba: u64,
    /// Last LBA now.
    pub old_last_lba: u64,
    /// Last LBA after growing (equal to `old_last_lba` when it cannot grow).
    pub new_last_lba: u64,
    /// Backup header LBA now.
    pub old_backup_lba: u64,
    /// Backup header LBA after growing (the last LBA of the disk).
    pub new_backup_lba: u64,
}

impl Plan {
    /// Whether the partition gets bigger.
    pub fn grows_partition(&self) -> bool {
        self.new_last_lba > self.old_last_lba
    }

    /// Whether the backup header moves to the end of the disk.
    pub fn moves_backup(&self) -> bool {
        self.new_backup_lba != self.old_backup_lba
    }

    /// Whether anything on disk changes.
    pub fn changes(&self) -> bool {
        self.grows_partition() || self.moves_backup()
    }

    /// Partition size in bytes now.
    pub fn old_size(&self) -> u64 {
        span(self.first_lba, self.old_last_lba, self.sector_size)
    }

    /// Partition size in bytes after growing.
    pub fn new_size(&self) -> u64 {
        span(self.first_lba, self.new_last_lba, self.sector_size)
    }

    /// The partition as `BLKPG_RESIZE_PARTITION` wants it after growing: (start, length)
    /// in bytes, whatever the logical sector size.
    pub fn kernel_extent(&self) -> (u64, u64) {
        (
            self.first_lba.saturating_mul(self.sector_size),
            self.new_size(),
        )
    }

    /// Applies the plan to `table`: backup to the end of the disk, partition end moved.
    /// Does not write to the disk.
    pub fn apply(&self, table: &mut Gpt) -> Result<(), Error> {
        table.move_backup_to_end().map_err(Error::Geometry)?;
        let entries = u32::try_from(table.entries().len()).unwrap_or(u32::MAX);
        let entry = table
            .partition_mut(self.number)
            .ok_or(Error::NoSuchPartition {
                number: self.number,
                entries,
            })?;
        entry.last_lba = self.new_last_lba;
        table.check_layout().map_err(Error::Geometry)
    }
}

fn span(first: u64, last: u64, sector: u64) -> u64 {
    last.saturating_sub(first)
        .saturating_add(1)
        .saturating_mul(sector)
}

/// Plans growing partition `number` of `table` to the last 1 MiB-aligned sector before the
/// backup entry array at the end of the disk.
///
/// Refuses an unused or missing entry and a partition that is not the last one on the
/// disk. A partition that already ends at or past the last aligned sector keeps its end
/// (never shrinks); the plan may still move the backup header.
pub fn plan(table: &Gpt, number: u32) -> Result<Plan, Error> {
    let entries = u32::try_from(table.entries().len()).unwrap_or(u32::MAX);
    let entry = table
        .partition(number)
        .ok_or(Error::NoSuchPartition { number, entries })?;
    if !entry.is_used() {
        return Err(Error::UnusedPartition { number });
    }
    if let Some((next, _)) = table.used().find(|(_, e)| e.first_lba > entry.last_lba) {
        return Err(Error::NotLast { number, next });
    }
    let mut grown = table.clone();
    grown.move_backup_to_end().map_err(Error::Geometry)?;
    let ss = table.sector_size().bytes();
    let align = (ALIGNMENT_BYTES / ss).max(1);
    // Last sector of the last whole alignment unit inside the usable range.
    let aligned_end = (grown.last_usable_lba().saturating_add(1) / align)
        .checked_mul(align)
        .and_then(|v| v.checked_sub(1))
        .ok_or(Error::Geometry(gpt::Problem::UsableRange {
            first: grown.first_usable_lba(),
            last: grown.last_usable_lba(),
        }))?;
    let new_last_lba = aligned_end.max(entry.last_lba);
    Ok(Plan {
        number,
        sector_size: ss,
        first_lba: entry.first_lba,
        old_last_lba: entry.last_lba,
        new_last_lba,
        old_backup_lba: table.backup_lba(),
        new_backup_lba: grown.backup_lba(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_kernel_extent_are_in_bytes() {
        // (sector, first, old last, new last, old size, new size, BLKPG start)
        let cases = [
            (
                512u64,
                2048u64,
                4095u64,
                8191u64,
                1u64 << 20,
                3u64 << 20,
                1u64 << 20,
            ),
            (4096, 256, 511, 1023, 1 << 20, 3 << 20, 1 << 20),
            (4096, 256, 511, 511, 1 << 20, 1 << 20, 1 << 20),
        ];
        for (ss, first, old, new, old_size, new_size, start) in cases {
            let p = Plan {
                number: 9,
                sector_size: ss,
                first_lba: first,
                old_last_lba: old,
                new_last_lba: new,
                old_backup_lba: 100,
                new_backup_lba: 100,
            };
            assert_eq!((p.old_size(), p.new_size()), (old_size, new_size), "{ss}");
            assert_eq!(p.kernel_extent(), (start, new_size), "{ss}");
            assert_eq!(p.grows_partition(), new > old);
            assert_eq!(p.changes(), new > old);
        }
    }
}
