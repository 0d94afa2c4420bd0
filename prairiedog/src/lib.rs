//! prairiedog: A/B slot state for Liftoff (DESIGN.md sections 3-5).
//!
//! PID 1 links this library to choose the slot at boot; the `prairiedog` binary is what an
//! administrator or an updater runs on a booted host.
//!
//! - [`attrs`]: the priority/tries/successful/unhealthy bits of BOOT-A and BOOT-B.
//! - [`decide`]: the boot decision, a pure function of the two attribute words.
//! - [`transition`]: `upgrade-to-inactive` and friends, pure functions.
//! - [`grubenv`]: GRUB's environment block, the bootloader's mirror of the decision.
//! - [`bootconfig`]: the kernel's bootconfig format.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod attrs;
pub mod bootconfig;
pub mod decide;
pub mod disk;
pub mod grubenv;
pub mod host;
pub mod install;
pub mod status;
pub mod transition;

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
