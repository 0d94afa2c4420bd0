//! The A/B stage: read the slot state from the boot disk's GPT, reconcile it with the slot
//! GRUB booted and GRUB's pending flag, count this boot, and write back only what changed.
//!
//! The rules are prairiedog's ([`prairiedog::decide`]); this module is the effects around
//! them, in the order that keeps the GPT the single source of truth:
//!
//! 1. read GRUB's `grubenv` from the ESP's FAT file system, without mounting it: whether
//!    GRUB fell back from the other slot;
//! 2. decide; write the new attribute words to both GPT copies when they changed (a
//!    damaged copy is repaired by that write);
//! 3. point grubenv's `liftoff_slot` at the slot that should boot next and clear
//!    `liftoff_pending`, in the sectors the file already has, as GRUB's own `save_env` does
//!    (prairiedog writes grubenv before the GPT; its docs say why).
//!
//! Counting the boot here, before the root is used, is what records a later failure: a
//! boot that never reaches health has already spent its try (or raised the crash-loop
//! count), and grubenv already names the slot the rules choose next.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use prairiedog::boot::{GrubEnvAt, GrubEnvOutcome};
use prairiedog::decide::{Action, Counted, SlotWords};
use prairiedog::disk::SlotDisk;
use prairiedog::Slot;

use crate::infra::kmsg;
use crate::stage::disk::{self, BootDisk};

/// grubenv's path on the ESP (the GRUB contract of DESIGN.md section 5).
pub const GRUBENV: &str = "/grubenv";

/// The slots stage's failures.
#[derive(Debug)]
pub enum SlotError {
    NoSlot,
    Open {
        device: PathBuf,
        source: std::io::Error,
    },
    Disk(prairiedog::disk::DiskError),
    /// Reading the GPT back after the stage repaired it.
    Reread(gpt::Error),
    /// BLKPG_ADD_PARTITION for a partition the kernel rejected with the damaged table.
    AddPartition {
        number: u32,
        device: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::NoSlot => write!(
                f,
                "cannot tell which slot's kernel is running: no liftoff.slot, and \
                 liftoff.boot_partuuid names no BOOT partition of the boot disk"
            ),
            SlotError::Open { device, source } => {
                write!(
                    f,
                    "opening {} for the slot state: {source}",
                    device.display()
                )
            }
            SlotError::Disk(e) => write!(f, "{e}"),
            SlotError::Reread(e) => write!(f, "re-reading the repaired GPT: {e}"),
            SlotError::AddPartition {
                number,
                device,
                source,
            } => write!(
                f,
                "telling the kernel about partition {number} of {}: {source}",
                device.display()
            ),
        }
    }
}

impl std::error::Error for SlotError {}

/// What the A/B stage found and did.
#[derive(Debug)]
pub struct Outcome {
    pub boot: prairiedog::boot::BootOutcome,
    /// A damaged GPT copy was found and the write repaired it.
    pub repaired: bool,
}

/// The slot the running kernel came from: `liftoff.slot`, else the slot whose BOOT
/// partition GRUB named.
pub fn booted_slot(
    cmdline_slot: Option<Slot>,
    boot_partuuid: Option<gpt::Guid>,
    layout: &prairiedog::disk::Layout,
    table: &gpt::Gpt,
) -> Option<Slot> {
    cmdline_slot.or_else(|| {
        let want = boot_partuuid?;
        [Slot::A, Slot::B].into_iter().find(|s| {
            table
                .partition(layout.set(*s).boot)
                .is_some_and(|e| e.unique_guid == want)
        })
    })
}

/// Runs the A/B stage on the boot disk.
pub fn run(
    boot: &BootDisk,
    cmdline_slot: Option<Slot>,
    boot_partuuid: Option<gpt::Guid>,
    unhealthy_limit: u8,
    previous: Option<&prairiedog::pstore::Record>,
) -> Result<(Outcome, Slot), SlotError> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(&boot.node)
        .map_err(|source| SlotError::Open {
            device: boot.node.clone(),
            source,
        })?;
    // The table the disk stage has just read: nothing else writes it during the boot.
    let mut disk =
        SlotDisk::with_gpt(file, &boot.node, boot.gpt.clone()).map_err(SlotError::Disk)?;
    let booted = booted_slot(cmdline_slot, boot_partuuid, &disk.layout(), disk.gpt())
        .ok_or(SlotError::NoSlot)?;
    let damaged = !disk.health().is_clean();
    // The previous boot's failure is charged in the same GPT write as this boot's count.
    let outcome = prairiedog::boot::run_after(
        &mut disk,
        GrubEnvAt::Esp(GRUBENV),
        booted,
        unhealthy_limit,
        previous,
    )
    .map_err(SlotError::Disk)?;
    Ok((
        Outcome {
            repaired: damaged && outcome.gpt_written,
            boot: outcome,
        },
        booted,
    ))
}

/// After a repair of the primary GPT: the kernel rejects a damaged primary (without the
/// `gpt` parameter it never looks at the backup), so it may know none of the partitions.
/// They are added one by one with BLKPG, as it would have found them, and the boot disk's
/// table and partition list are read again.
pub fn announce_partitions(boot_disk: &mut BootDisk, sys: &Path) -> Result<(), SlotError> {
    let (file, table) = File::open(&boot_disk.node)
        .map_err(|e| gpt::Error::Io {
            device: boot_disk.node.clone(),
            what: "opening",
            source: e,
        })
        .and_then(|f| {
            let table = gpt::Gpt::read(
                &f,
                &boot_disk.node,
                gpt::SectorSize::new(boot_disk.disk.sector_size),
            )?;
            Ok((f, table))
        })
        .map_err(SlotError::Reread)?;
    let ss = table.sector_size().bytes();
    let mut added = Vec::new();
    for (number, entry) in table.used() {
        if boot_disk.disk.partitions.contains_key(&number) {
            continue;
        }
        let start = entry.first_lba.saturating_mul(ss);
        let length = entry.sectors().saturating_mul(ss);
        growpart::blkpg::add_partition(&file, number, start, length).map_err(|source| {
            SlotError::AddPartition {
                number,
                device: boot_disk.node.clone(),
                source,
            }
        })?;
        added.push(number.to_string());
    }
    if !added.is_empty() {
        kmsg::info(&format!(
            "the kernel had rejected the damaged GPT of {}: partitions {} added with BLKPG",
            boot_disk.node.display(),
            crate::infra::join(&added, ", ")
        ));
        if let Some(disk) = disk::scan(sys)
            .into_iter()
            .find(|d| d.name == boot_disk.disk.name)
        {
            boot_disk.disk = disk;
        }
    }
    boot_disk.gpt = table;
    Ok(())
}

/// Applies `transition` to the slot words on the boot disk and writes them when they change
/// (health: [`prairiedog::transition::mark_healthy`]; health that held:
/// [`prairiedog::transition::mark_successful_boot`]). Returns whether the GPT was written.
pub fn record(
    node: &Path,
    sector_size: u32,
    slot: Slot,
    transition: fn(SlotWords, Slot) -> SlotWords,
) -> Result<bool, SlotError> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(node)
        .map_err(|source| SlotError::Open {
            device: node.to_owned(),
            source,
        })?;
    let mut disk =
        SlotDisk::open(file, node, gpt::SectorSize::new(sector_size)).map_err(SlotError::Disk)?;
    let new = transition(disk.words(), slot);
    disk.store(new).map_err(SlotError::Disk)
}

/// One log line for the decision.
pub fn describe(outcome: &Outcome) -> String {
    let d = &outcome.boot.decision;
    let mut line = format!(
        "slots: booted {}, {} ({})",
        d.booted.as_str(),
        match d.action {
            Action::Continue => format!("using slot {}", d.boot.as_str()),
            Action::Reboot => format!("slot {} must boot instead: rebooting", d.boot.as_str()),
        },
        d.selection.why.describe()
    );
    if let Some(f) = d.fallback {
        line.push_str(&format!(
            "; GRUB fell back from slot {}: {}",
            f.failed.as_str(),
            counted(f.counted)
        ));
    }
    if let Some(c) = d.counted {
        line.push_str(&format!("; this boot: {}", counted(c)));
    }
    if let Some(cl) = d.selection.crash_loop {
        line.push_str(&format!(
            "; crash loop on slot {} ({} unhealthy boots){}",
            cl.slot.as_str(),
            cl.unhealthy,
            if cl.demoted { ", demoted" } else { "" }
        ));
    }
    line.push_str(&format!(
        "; next boot: {}; GPT {}{}",
        d.next.as_str(),
        if outcome.boot.gpt_written {
            "written"
        } else {
            "unchanged"
        },
        if outcome.repaired {
            " (damaged copy repaired)"
        } else {
            ""
        }
    ));
    match &outcome.boot.grubenv {
        GrubEnvOutcome::Written => line.push_str("; grubenv updated"),
        GrubEnvOutcome::Unchanged => line.push_str("; grubenv unchanged"),
        GrubEnvOutcome::Repaired(e) => {
            line.push_str(&format!("; grubenv was torn ({e}): rewritten"))
        }
        _ => {}
    }
    line
}

fn counted(c: Counted) -> String {
    match c {
        Counted::Try { left } => format!("try spent, {left} left"),
        Counted::Unhealthy { count } => format!("unhealthy boot {count}"),
        Counted::NothingLeft => "no try left to spend".to_owned(),
    }
}

/// Logs the outcome; grubenv trouble is a warning (the GPT stays the source of truth).
pub fn log(outcome: &Outcome) {
    kmsg::info(&describe(outcome));
    let problem = match &outcome.boot.grubenv {
        GrubEnvOutcome::Unreadable(e) => Some(format!("reading it: {e}")),
        GrubEnvOutcome::WriteFailed(e) => Some(format!("writing it: {e}")),
        _ => None,
    };
    if let Some(why) = problem {
        kmsg::warn(&format!(
            "grubenv not reconciled ({why}); GRUB keeps its last choice"
        ));
    }
}
