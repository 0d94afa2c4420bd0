//! prairiedog: A/B slot state for Liftoff (DESIGN.md sections 3-5).
//!
//! PID 1 links this library (with `default-features = false`) to choose the slot at boot; the
//! `prairiedog` binary is what an administrator or an updater runs on a booted host.
//!
//! # Modules
//!
//! - [`attrs`]: the priority/tries/successful/unhealthy bits of BOOT-A and BOOT-B (bits 48-59
//!   of the GPT attribute word; every other bit is left untouched).
//! - [`decide`]: the boot decision, a pure function of the two attribute words, the slot GRUB
//!   booted and whether GRUB fell back; it returns the new words and a structured "why".
//! - [`transition`]: `upgrade-to-inactive` and the other updater transitions, pure functions
//!   with an error for each refusal.
//! - [`disk`]: the slot sets on one disk (by partition type) and writing their state back
//!   through the shared `gpt` crate, only on change, crash-safely.
//! - [`grubenv`]: GRUB's environment block, the bootloader's mirror of the decision.
//! - [`bootconfig`]: the kernel's bootconfig format.
//! - [`cmdline`]: the kernel command line split with the kernel's quoting rules, and the
//!   `liftoff.` keys typed (PID 1's configuration).
//! - [`install`]: writing an update payload into the inactive slot, verified.
//! - [`pe`]: the PE/COFF headers and sections of a unified kernel image.
//! - [`uki`]: the update's signed kernel image, checked against the manifest before install.
//! - [`authenticode`]: the Authenticode signature of a PE image (a UKI) checked against db
//!   and dbx or given certificates (feature `authenticode`, part of `cli`).
//! - [`boot`]: PID 1's boot step in one call (grubenv, decision, GPT).
//! - [`host`]: the boot disk and the running slot from sysfs and the command line.
//! - [`status`]: what `prairiedog status` shows.
//!
//! # Lifecycle at boot (PID 1)
//!
//! [`boot::run`]`(&mut disk, GrubEnvAt::Esp("/grubenv"), booted, DEFAULT_UNHEALTHY_LIMIT)`
//! does all of this in one call:
//!
//! ```text
//! disk   = SlotDisk::open(boot disk, name, sector size)      reads and validates both GPT copies
//! env    = grubenv::read_file(ESP/grubenv)                   missing or torn: treat as None
//! fell   = decide::bootloader_fell_back(booted, env.slot(), env.pending())
//! d      = decide::decide(disk.words(), booted, fell, DEFAULT_UNHEALTHY_LIMIT)
//! log      d.selection.why.describe(), d.fallback, d.counted, d.selection.crash_loop
//! env.set_liftoff(d.next, false); grubenv::write_in_place    pending cleared, next slot
//! disk.store(d.new)                                          writes only if d.changed()
//! match d.action { Continue => mount ROOT-<booted>, Reboot => reboot (GRUB boots d.boot) }
//! ```
//!
//! grubenv is written before the GPT. A cut between the two leaves the old GPT state with
//! pending cleared: the next PID 1 decides again from the old words, so nothing is counted
//! twice (the other order would let GRUB see pending still set and record a false fallback).
//!
//! # The pending flag (DESIGN.md section 5)
//!
//! | grubenv at PID 1 | what happened | PID 1 records |
//! |---|---|---|
//! | `liftoff_pending=1`, `liftoff_slot` = booted | GRUB booted what it was told | this boot: a try spent (not successful) or one more unhealthy boot (successful) |
//! | `liftoff_pending=1`, `liftoff_slot` = other | the other slot's kernel died before PID 1; GRUB fell back | a failed boot of the other slot (try or unhealthy count), then this boot as above |
//! | `liftoff_pending=0`, any slot | GRUB did not arm the flag (read-only ESP, direct kernel boot) or a manual menu choice | this boot only |
//! | grubenv missing, torn, or keys missing | no information | this boot only |
//!
//! In every case PID 1 then writes `liftoff_pending=0` and `liftoff_slot=`[`decide::Decision::next`],
//! the slot the rules pick from the new words. GRUB must not change `liftoff_slot` when it falls
//! back. If the rules pick the other slot ([`decide::Action::Reboot`]: a crash loop, or the
//! other slot has the higher priority and can boot) PID 1 reboots instead of mounting a root
//! that does not belong to the running kernel.

pub mod attrs;
#[cfg(feature = "authenticode")]
pub mod authenticode;
pub mod boot;
pub mod bootconfig;
pub mod cmdline;
pub mod decide;
pub mod disk;
pub mod efi;
pub mod fat;
pub mod grubenv;
pub mod host;
pub mod install;
pub mod pe;
pub mod pstore;
pub mod status;
pub mod transition;
pub mod uki;

use std::fmt;

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// BOOT-A, ROOT-A, HASH-A.
    A,
    /// BOOT-B, ROOT-B, HASH-B.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// Parses `A` or `B` (as on the command line and in grubenv).
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "A" => Some(Slot::A),
            "B" => Some(Slot::B),
            _ => None,
        }
    }

    /// `"A"` or `"B"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
