//! The boot step PID 1 runs (stage 5 of DESIGN.md section 1) as one call: read grubenv, decide,
//! write grubenv, write the GPT. See the crate docs for the order and the pending-flag table.

use crate::decide::{bootloader_fell_back, decide, Decision};
use crate::disk::{DiskError, SlotDisk};
use crate::grubenv::{self, GrubEnv, GrubEnvFileError};
use crate::Slot;
use gpt::BlockIo;
use std::path::Path;

/// What happened to grubenv. Failures here never stop the boot: the GPT stays the source of
/// truth and the next PID 1 rewrites grubenv.
#[derive(Debug)]
pub enum GrubEnvOutcome {
    /// No grubenv path was given.
    NotConfigured,
    /// Rewritten with the new slot and pending cleared.
    Written,
    /// Already held the new slot with pending cleared.
    Unchanged,
    /// Could not be read (missing, torn): no fallback could be detected, and it was not
    /// rewritten (GRUB's `save_env` needs the file to exist; the image builder creates it).
    Unreadable(GrubEnvFileError),
    /// Read but could not be written.
    WriteFailed(GrubEnvFileError),
}

/// The outcome of [`run`].
#[derive(Debug)]
pub struct BootOutcome {
    /// The decision (log `selection.why`, `fallback`, `counted`, `crash_loop`).
    pub decision: Decision,
    /// Whether the GPT was written.
    pub gpt_written: bool,
    /// What happened to grubenv.
    pub grubenv: GrubEnvOutcome,
}

/// Decides the boot for the slot GRUB booted (`liftoff.slot=`), updates grubenv at
/// `grubenv_path` (pending cleared, next slot) and then the GPT. Writes to the disk. Only a
/// GPT write failure is an error; the caller then boots as decided or fails per its policy.
pub fn run<D: BlockIo>(
    disk: &mut SlotDisk<D>,
    grubenv_path: Option<&Path>,
    booted: Slot,
    unhealthy_limit: u8,
) -> Result<BootOutcome, DiskError> {
    let env: Option<Result<GrubEnv, GrubEnvFileError>> = grubenv_path.map(grubenv::read_file);
    let (slot, pending) = match &env {
        Some(Ok(env)) => (env.slot(), env.pending()),
        _ => (None, None),
    };
    let decision = decide(
        disk.words(),
        booted,
        bootloader_fell_back(booted, slot, pending),
        unhealthy_limit,
    );
    let grubenv = match (grubenv_path, env) {
        (Some(path), Some(Ok(mut env))) => match env.set_liftoff(decision.next, false) {
            Ok(false) => GrubEnvOutcome::Unchanged,
            Ok(true) => match grubenv::write_in_place(path, &env) {
                Ok(()) => GrubEnvOutcome::Written,
                Err(e) => GrubEnvOutcome::WriteFailed(e),
            },
            Err(source) => GrubEnvOutcome::WriteFailed(GrubEnvFileError::Parse {
                path: path.to_owned(),
                source,
            }),
        },
        (_, Some(Err(e))) => GrubEnvOutcome::Unreadable(e),
        _ => GrubEnvOutcome::NotConfigured,
    };
    let gpt_written = disk.store(decision.new)?;
    Ok(BootOutcome {
        decision,
        gpt_written,
        grubenv,
    })
}
