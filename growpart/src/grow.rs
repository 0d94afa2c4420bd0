//! The effectful half: read the table, plan, write, tell the kernel.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use gpt::mbr::{MbrKind, ProtectiveMbr};
use gpt::{BlockIo, Gpt, SectorSize};

use crate::plan::{plan, Plan};
use crate::{blkpg, Error};

/// Which partition to grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The DATA partition: the first of type [`gpt::types::DATA`], else the first named
    /// `DATA`.
    Data,
    /// Partition by number (1-based), as in `growpart DISK PARTNUM`.
    Number(u32),
}

/// How the running kernel learned about the new size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelUpdate {
    /// `BLKPG_RESIZE_PARTITION` succeeded.
    Resized,
    /// Nothing changed, so the kernel was not asked.
    NotNeeded,
    /// A dry run: nothing was written.
    DryRun,
    /// An image file, not a block device: there is no kernel partition to resize.
    NotABlockDevice,
}

/// How to treat the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Plan and report only; write nothing (the disk may be opened read-only).
    pub dry_run: bool,
    /// When one GPT copy is damaged and the other valid, rewrite the damaged one from the
    /// valid one while growing, instead of refusing. A power cut in the middle of a grow
    /// leaves exactly such a disk (see [`grow_table`]), so PID 1 sets this; the CLI sets it
    /// with `--repair`. Both copies damaged is always refused.
    pub repair: bool,
}

/// What growing the table did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOutcome {
    /// The geometry before and after.
    pub plan: Plan,
    /// Whether the protective MBR's size field is (or would be) rewritten.
    pub mbr_updated: bool,
    /// What the protective MBR is (a hybrid MBR is left alone).
    pub mbr: MbrKind,
    /// The damaged copy that is (or would be) rewritten from the valid one.
    pub repaired: gpt::Health,
}

impl TableOutcome {
    /// Whether anything changes: the partition, the backup's place, the protective MBR,
    /// or a repaired copy.
    pub fn changes(&self) -> bool {
        self.plan.changes() || self.mbr_updated || !self.repaired.is_clean()
    }
}

/// What growing did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The disk.
    pub device: PathBuf,
    /// The table side.
    pub table: TableOutcome,
    /// Whether the disk was written (false in a dry run or without changes).
    pub written: bool,
    /// The kernel's side.
    pub kernel: KernelUpdate,
}

impl Report {
    /// Whether anything changes (or would, in a dry run).
    pub fn changes(&self) -> bool {
        self.table.changes()
    }
}

/// Grows the table on `disk` (any [`BlockIo`]); the kernel is not involved.
///
/// Steps: read and validate both copies (a damaged copy is refused unless
/// [`Options::repair`]; both damaged always), pick the partition, plan, then, if anything
/// changes and it is not a dry run: write both GPT copies (backup at the new end first,
/// then the primary, then the old backup header is wiped; see [`Gpt::write`]) and last the
/// protective MBR's size. A cut anywhere leaves a readable table in which the partition has
/// its old or its new size; a rerun with `repair` finishes the job.
pub fn grow_table<D: BlockIo + ?Sized>(
    disk: &mut D,
    device: &Path,
    sector_size: Option<SectorSize>,
    target: Target,
    options: Options,
) -> Result<TableOutcome, Error> {
    let dev = || device.to_path_buf();
    let mut table = read_table(disk, device, sector_size, options.repair)?;
    let number = match target {
        Target::Number(n) => n,
        Target::Data => table
            .find_by_type(gpt::types::DATA)
            .or_else(|| table.find_by_name(gpt::types::LABEL_DATA))
            .map(|(n, _)| n)
            .ok_or_else(|| Error::NoDataPartition { device: dev() })?,
    };
    let plan = plan(&table, number).map_err(|source| Error::Partition {
        device: dev(),
        source,
    })?;
    let mut mbr = ProtectiveMbr::read(disk, device).map_err(gpt_error)?;
    let kind = mbr.kind();
    let mbr_updated = mbr.fit_to_disk(table.disk_last_lba().saturating_add(1));
    let outcome = TableOutcome {
        plan,
        mbr_updated,
        mbr: kind,
        repaired: table.health().clone(),
    };
    if options.dry_run || !outcome.changes() {
        return Ok(outcome);
    }
    outcome
        .plan
        .apply(&mut table)
        .map_err(|source| Error::Partition {
            device: dev(),
            source,
        })?;
    table.write(disk, device).map_err(gpt_error)?;
    if mbr_updated {
        mbr.write(disk, device).map_err(gpt_error)?;
    }
    Ok(outcome)
}

fn read_table<D: BlockIo + ?Sized>(
    disk: &D,
    device: &Path,
    ss: Option<SectorSize>,
    repair: bool,
) -> Result<Gpt, Error> {
    let table = match Gpt::read(disk, device, ss) {
        Ok(t) => t,
        Err(e @ gpt::Error::Damaged { .. }) => {
            return Err(match shrunk_backup_lba(disk, ss) {
                Some(backup_lba) => Error::DiskShrank {
                    device: device.to_path_buf(),
                    backup_lba,
                },
                None => gpt_error(e),
            })
        }
        Err(e) => return Err(gpt_error(e)),
    };
    let health = table.health();
    if !health.is_clean() && !repair {
        let describe =
            |p: &Option<gpt::Problem>| p.as_ref().map_or("valid".to_owned(), |p| p.to_string());
        return Err(Error::DamagedTable {
            device: device.to_path_buf(),
            primary: describe(&health.primary),
            backup: describe(&health.backup),
        });
    }
    Ok(table)
}

/// When both copies are bad: the backup LBA a CRC-valid primary names, if it lies past
/// the end of the disk (the disk shrank under the table).
fn shrunk_backup_lba<D: BlockIo + ?Sized>(disk: &D, ss: Option<SectorSize>) -> Option<u64> {
    let size = disk.size().ok()?;
    let sizes = ss.map_or([SectorSize::S512, SectorSize::S4096], |s| [s, s]);
    sizes.into_iter().find_map(|ss| {
        let mut sector = vec![0u8; usize::try_from(ss.bytes()).ok()?];
        disk.read_at(ss.bytes(), &mut sector).ok()?;
        let header_size =
            usize::try_from(u32::from_le_bytes(sector.get(12..16)?.try_into().ok()?)).ok()?;
        let stored = u32::from_le_bytes(sector.get(16..20)?.try_into().ok()?);
        let mut covered = sector.get(..header_size)?.to_vec();
        covered.get_mut(16..20)?.fill(0);
        if sector.get(..8)? != gpt::SIGNATURE || gpt::crc32(&covered) != stored {
            return None;
        }
        let alternate = u64::from_le_bytes(sector.get(32..40)?.try_into().ok()?);
        (alternate >= size / ss.bytes()).then_some(alternate)
    })
}

/// Maps errors of the gpt crate, turning a refused write into [`Error::ReadOnly`].
fn gpt_error(e: gpt::Error) -> Error {
    match e {
        gpt::Error::NotGpt { device } => Error::NotGpt { device },
        gpt::Error::Io { device, source, .. } if is_read_only_error(&source) => {
            Error::ReadOnly { device }
        }
        e => Error::Gpt(e),
    }
}

fn is_read_only_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error())
}

/// Opens `device` for growing: read-write, or read-only for a dry run. A device or file
/// that cannot be opened for writing is [`Error::ReadOnly`].
pub fn open_disk(device: &Path, dry_run: bool) -> Result<File, Error> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(!dry_run)
        .open(device);
    match file {
        Ok(f) => Ok(f),
        Err(e) if !dry_run && is_read_only_error(&e) => Err(Error::ReadOnly {
            device: device.to_path_buf(),
        }),
        Err(source) => Err(Error::Open {
            device: device.to_path_buf(),
            source,
        }),
    }
}

/// Grows partition `target` of the open disk `file` to the end of the disk and tells the
/// kernel with `BLKPG_RESIZE_PARTITION` (never BLKRRPART). On an image file the kernel
/// step is skipped and the report says so. Use [`open_disk`] to open it.
pub fn grow_device(
    file: &mut File,
    device: &Path,
    target: Target,
    options: Options,
) -> Result<Report, Error> {
    let dry_run = options.dry_run;
    let dev = || device.to_path_buf();
    let meta = file.metadata().map_err(|source| Error::Open {
        device: dev(),
        source,
    })?;
    let is_block = meta.file_type().is_block_device();
    let sector_size = if is_block {
        let bytes = blkpg::logical_sector_size(file).map_err(|source| Error::SectorSize {
            device: dev(),
            source,
        })?;
        let ss = SectorSize::new(bytes).ok_or(Error::UnsupportedSectorSize {
            device: dev(),
            bytes,
        })?;
        if !dry_run
            && blkpg::is_read_only(file).map_err(|source| Error::Open {
                device: dev(),
                source,
            })?
        {
            return Err(Error::ReadOnly { device: dev() });
        }
        Some(ss)
    } else {
        None
    };
    let table = grow_table(file, device, sector_size, target, options)?;
    let changes = table.changes();
    let plan = &table.plan;
    let kernel = match (dry_run, changes, is_block) {
        (true, _, _) => KernelUpdate::DryRun,
        (false, false, _) => KernelUpdate::NotNeeded,
        (false, true, false) => KernelUpdate::NotABlockDevice,
        (false, true, true) => {
            let (start, length) = plan.kernel_extent();
            blkpg::resize_partition(file, plan.number, start, length).map_err(|source| {
                Error::Blkpg {
                    device: dev(),
                    number: plan.number,
                    source,
                }
            })?;
            KernelUpdate::Resized
        }
    };
    Ok(Report {
        device: dev(),
        table,
        written: changes && !dry_run,
        kernel,
    })
}

/// PID 1's entry point: grows DATA on the open boot disk `file` (opened read-write) and
/// tells the kernel with BLKPG. Repairs a damaged copy (as a power cut during an earlier
/// grow leaves it) while growing; both copies damaged is an error. Growing the dm-crypt mapping ([`crate::crypt`]) and the
/// filesystem ([`crate::fs`]) are separate steps that follow when
/// [`Report::changes`]`()` says the partition grew.
pub fn grow_data(file: &mut File, device: &Path) -> Result<Report, Error> {
    grow_device(
        file,
        device,
        Target::Data,
        Options {
            dry_run: false,
            repair: true,
        },
    )
}
