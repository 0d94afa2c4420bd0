//! The boot step PID 1 runs (stage 5 of DESIGN.md section 1) as one call: read grubenv, decide,
//! write grubenv, write the GPT. See the crate docs for the order and the pending-flag table.
//!
//! grubenv is found either as a file (a mounted ESP, a test) or, without mounting anything,
//! inside the FAT file system of the boot disk's EFI system partition ([`GrubEnvAt::Esp`]),
//! rewritten in the sectors it already occupies as GRUB's `save_env` does.

use crate::decide::{bootloader_fell_back, decide, Decision};
use crate::disk::{DiskError, SlotDisk};
use crate::fat::{self, FatError, FatFile};
use crate::grubenv::{self, GrubEnv, GrubEnvError, GrubEnvFileError};
use crate::Slot;
use gpt::BlockIo;
use std::path::{Path, PathBuf};

/// Where grubenv lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrubEnvAt<'a> {
    /// Not used.
    None,
    /// A file (on a mounted ESP).
    File(&'a Path),
    /// A path inside the FAT file system of the disk's EFI system partition (`/grubenv`).
    Esp(&'a str),
}

/// Where a loaded grubenv came from, to write it back to the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// A file.
    File(PathBuf),
    /// Sectors of the ESP.
    Esp(FatFile),
}

/// A failure reading or writing grubenv.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The grubenv file.
    #[error(transparent)]
    File(#[from] GrubEnvFileError),
    /// The disk has no EFI system partition.
    #[error("{0}: no EFI system partition")]
    NoEsp(PathBuf),
    /// The ESP's partition range.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Finding, reading or writing grubenv in the ESP's FAT.
    #[error("grubenv {path} on the ESP of {device}: {source}")]
    Fat {
        /// The path in the FAT.
        path: String,
        /// The disk.
        device: PathBuf,
        /// The cause.
        source: FatError,
    },
    /// grubenv on the ESP is not a valid block.
    #[error("grubenv {path} on the ESP of {device}: {source}")]
    Parse {
        /// The path in the FAT.
        path: String,
        /// The disk.
        device: PathBuf,
        /// The cause.
        source: GrubEnvError,
    },
}

/// grubenv as found: a valid block, or a file whose bytes are not one (a torn write).
#[derive(Debug)]
pub enum Found {
    /// A valid block and where it came from.
    Valid(GrubEnv, Located),
    /// A file of `size` bytes at `at` that holds no valid block. GRUB's `save_env` owns its
    /// sectors: a fresh block of the same size can be written into them.
    Torn {
        /// Where the file is.
        at: Located,
        /// Its size in bytes.
        size: u64,
        /// Why its bytes are not a block.
        error: EnvError,
    },
}

impl GrubEnvAt<'_> {
    /// Reads grubenv (`Ok(None)` for [`GrubEnvAt::None`]); a torn block is an error.
    pub fn load<D: BlockIo>(
        &self,
        disk: &SlotDisk<D>,
    ) -> Result<Option<(GrubEnv, Located)>, EnvError> {
        match self.find(disk)? {
            None => Ok(None),
            Some(Found::Valid(env, at)) => Ok(Some((env, at))),
            Some(Found::Torn { error, .. }) => Err(error),
        }
    }

    /// Finds grubenv and reads it, telling a torn block (a file that exists but holds no
    /// valid block) from one that cannot be found or read at all.
    pub fn find<D: BlockIo>(&self, disk: &SlotDisk<D>) -> Result<Option<Found>, EnvError> {
        match *self {
            GrubEnvAt::None => Ok(None),
            GrubEnvAt::File(path) => {
                let at = Located::File(path.to_owned());
                match grubenv::read_file(path) {
                    Ok(env) => Ok(Some(Found::Valid(env, at))),
                    Err(error @ GrubEnvFileError::Parse { .. }) => {
                        let size = std::fs::metadata(path)
                            .map_err(|source| GrubEnvFileError::Read {
                                path: path.to_owned(),
                                source,
                            })?
                            .len();
                        Ok(Some(Found::Torn {
                            at,
                            size,
                            error: error.into(),
                        }))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            GrubEnvAt::Esp(path) => {
                let device = disk.device().to_owned();
                let esp = disk
                    .layout()
                    .esp
                    .ok_or_else(|| EnvError::NoEsp(device.clone()))?;
                let region = disk.partition_region(esp)?;
                let fat_err = |source| EnvError::Fat {
                    path: path.to_owned(),
                    device: device.clone(),
                    source,
                };
                let file = fat::locate(disk.io_ref(), region, path).map_err(fat_err)?;
                let bytes = fat::read_file(disk.io_ref(), &file).map_err(fat_err)?;
                Ok(Some(match GrubEnv::parse(&bytes) {
                    Ok(env) => Found::Valid(env, Located::Esp(file)),
                    Err(source) => Found::Torn {
                        size: file.size,
                        at: Located::Esp(file),
                        error: EnvError::Parse {
                            path: path.to_owned(),
                            device,
                            source,
                        },
                    },
                }))
            }
        }
    }
}

/// Writes `env` back where it was loaded from, in place.
pub fn save_grubenv<D: BlockIo>(
    disk: &mut SlotDisk<D>,
    at: &Located,
    env: &GrubEnv,
) -> Result<(), EnvError> {
    match at {
        Located::File(path) => Ok(grubenv::write_in_place(path, env)?),
        Located::Esp(file) => {
            let device = disk.device().to_owned();
            fat::write_in_place(disk.io(), file, env.as_bytes()).map_err(|source| EnvError::Fat {
                path: file.path.clone(),
                device,
                source,
            })
        }
    }
}

/// What happened to grubenv. Failures here never stop the boot: the GPT stays the source of
/// truth and the next PID 1 rewrites grubenv.
#[derive(Debug)]
pub enum GrubEnvOutcome {
    /// No grubenv location was given.
    NotConfigured,
    /// Rewritten with the new slot and pending cleared.
    Written,
    /// Already held the new slot with pending cleared.
    Unchanged,
    /// Held no valid block (a torn write, the error says why): no fallback could be
    /// detected, and a fresh block with the new slot and pending cleared was written into
    /// the file's sectors.
    Repaired(EnvError),
    /// Could not be found or read: no fallback could be detected, and it was not rewritten
    /// (GRUB's `save_env` needs the file to exist; the image builder creates it).
    Unreadable(EnvError),
    /// Read but could not be written.
    WriteFailed(EnvError),
}

impl GrubEnvOutcome {
    /// Whether GRUB's next boot follows [`Decision::next`]: grubenv names it (or no grubenv
    /// is in play). When it does not, GRUB boots what it booted last time (slot A without a
    /// grubenv), whatever the GPT says.
    pub fn steers_grub(&self) -> bool {
        matches!(
            self,
            GrubEnvOutcome::NotConfigured
                | GrubEnvOutcome::Written
                | GrubEnvOutcome::Unchanged
                | GrubEnvOutcome::Repaired(_)
        )
    }
}

/// The outcome of [`run`].
#[derive(Debug)]
pub struct BootOutcome {
    /// The decision (log `selection.why`, `fallback`, `counted`, `crash_loop`).
    pub decision: Decision,
    /// Whether the GPT was written (new words, or a damaged copy repaired).
    pub gpt_written: bool,
    /// What happened to grubenv.
    pub grubenv: GrubEnvOutcome,
    /// The slot the previous boot's failure belongs to ([`run_after`]), and whether it was
    /// charged now (in the GPT write) or had been counted by the bootloader's fallback.
    pub charged: Option<(Slot, bool)>,
}

/// Decides the boot for the slot GRUB booted (`liftoff.slot=`), updates grubenv (pending
/// cleared, next slot) and then the GPT. Writes to the disk. Only a GPT write failure is an
/// error; the caller then boots as decided or fails per its policy.
pub fn run<D: BlockIo>(
    disk: &mut SlotDisk<D>,
    grubenv_at: GrubEnvAt<'_>,
    booted: Slot,
    unhealthy_limit: u8,
) -> Result<BootOutcome, DiskError> {
    run_after(disk, grubenv_at, booted, unhealthy_limit, None)
}

/// [`run`], first charging `previous`, the previous boot's failure from pstore, to the slot
/// that ran ([`crate::pstore::charge`]), so that the rules see it and one GPT write holds
/// both. A record that names no slot: after a bootloader fallback it is the other slot's
/// kernel that died before PID 1, which the fallback counts already (not charged again);
/// else the slot booting again ran (after PID 1's slot stage grubenv names the slot that
/// runs on, unless an update was staged since). Writes to the disk.
pub fn run_after<D: BlockIo>(
    disk: &mut SlotDisk<D>,
    grubenv_at: GrubEnvAt<'_>,
    booted: Slot,
    unhealthy_limit: u8,
    previous: Option<&crate::pstore::Record>,
) -> Result<BootOutcome, DiskError> {
    let found = grubenv_at.find(disk);
    let (slot, pending) = match &found {
        Ok(Some(Found::Valid(env, _))) => (env.slot(), env.pending()),
        _ => (None, None),
    };
    let fell_back = bootloader_fell_back(booted, slot, pending);
    let mut words = disk.words();
    let charged = previous.map(|r| match r.slot {
        None if fell_back => (booted.other(), false),
        slot => {
            let slot = slot.unwrap_or(booted);
            words = crate::pstore::charge(words, slot, r.cause);
            (slot, true)
        }
    });
    let decision = decide(words, booted, fell_back, unhealthy_limit);
    let grubenv = match found {
        Ok(None) => GrubEnvOutcome::NotConfigured,
        Err(e) => GrubEnvOutcome::Unreadable(e),
        Ok(Some(Found::Valid(mut env, at))) => match env.set_liftoff(decision.next, false) {
            Ok(false) => GrubEnvOutcome::Unchanged,
            Ok(true) => save_outcome(disk, &at, &env, GrubEnvOutcome::Written),
            Err(source) => GrubEnvOutcome::WriteFailed(EnvError::Parse {
                path: format!("{at:?}"),
                device: disk.device().to_owned(),
                source,
            }),
        },
        // A torn block would make GRUB ignore grubenv for good: its sectors get a fresh
        // block of the same size, as `grub-editenv create` lays it out.
        Ok(Some(Found::Torn { at, size, error })) => {
            let fresh = usize::try_from(size).ok().and_then(GrubEnv::blank);
            match fresh.map(|mut env| env.set_liftoff(decision.next, false).map(|_| env)) {
                Some(Ok(env)) => save_outcome(disk, &at, &env, GrubEnvOutcome::Repaired(error)),
                Some(Err(source)) => GrubEnvOutcome::WriteFailed(EnvError::Parse {
                    path: format!("{at:?}"),
                    device: disk.device().to_owned(),
                    source,
                }),
                None => GrubEnvOutcome::Unreadable(error),
            }
        }
    };
    // A damaged copy is repaired on every boot that sees it, changed words or not: the
    // kernel ignores a damaged primary, and PID 1 announces the partitions after a repair.
    let gpt_written = disk.store(decision.new)? || disk.repair()?;
    Ok(BootOutcome {
        decision,
        gpt_written,
        grubenv,
        charged,
    })
}

/// Saves `env` at `at`: `done` when it was written, [`GrubEnvOutcome::WriteFailed`] if not.
fn save_outcome<D: BlockIo>(
    disk: &mut SlotDisk<D>,
    at: &Located,
    env: &GrubEnv,
    done: GrubEnvOutcome,
) -> GrubEnvOutcome {
    match save_grubenv(disk, at, env) {
        Ok(()) => done,
        Err(e) => GrubEnvOutcome::WriteFailed(e),
    }
}
