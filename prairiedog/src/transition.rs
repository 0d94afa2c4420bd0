//! The updater's and administrator's transitions, after Bottlerocket's signpost.
//!
//! Each is a pure function of the two attribute words and the active slot (the one running)
//! that returns the new words or says why the transition is not allowed. None of them writes to
//! the disk. The lifecycle of an update:
//!
//! ```text
//!   clear-inactive        inactive: priority 0, tries 0, not successful, unhealthy 0
//!   (write BOOT/ROOT/HASH of the new version into the inactive slot)
//!   mark-inactive-valid   inactive: tries 1            (requires it cleared)
//!   upgrade-to-inactive   inactive: priority 2, active: priority 1
//!   reboot                PID 1 of the new slot spends its one try
//!   mark-successful-boot  active: successful, tries 0, unhealthy 0
//! ```
//!
//! `cancel-upgrade` undoes `upgrade-to-inactive` before the reboot; `rollback-to-inactive` makes
//! the other, still eligible, slot boot next.

use crate::decide::SlotWords;
use crate::Slot;

/// Priority given to the slot that should boot next.
pub const PRIORITY_NEXT: u8 = 2;
/// Priority given to the slot to fall back to.
pub const PRIORITY_FALLBACK: u8 = 1;

/// Why a transition is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// `mark-inactive-valid` and `upgrade-to-inactive` need a cleared inactive slot.
    #[error(
        "inactive slot {slot} is not cleared (priority {priority}, successful {successful}): \
         run clear-inactive and write the new images first"
    )]
    InactiveNotCleared {
        /// The inactive slot.
        slot: Slot,
        /// Its priority.
        priority: u8,
        /// Its successful bit.
        successful: bool,
    },
    /// `upgrade-to-inactive` needs `mark-inactive-valid` first.
    #[error("inactive slot {slot} has not been marked valid (tries 0): run mark-inactive-valid")]
    InactiveNotValid {
        /// The inactive slot.
        slot: Slot,
    },
    /// `rollback-to-inactive` needs an eligible inactive slot.
    #[error(
        "inactive slot {slot} is not bootable (priority {priority}, tries {tries}, successful \
         {successful}): cannot roll back to it"
    )]
    InactiveNotBootable {
        /// The inactive slot.
        slot: Slot,
        /// Its priority.
        priority: u8,
        /// Its tries.
        tries: u8,
        /// Its successful bit.
        successful: bool,
    },
    /// `cancel-upgrade` with no upgrade pending.
    #[error(
        "no upgrade to cancel: inactive slot {slot} is not a pending upgrade (priority \
         {priority}, successful {successful})"
    )]
    NoUpgradePending {
        /// The inactive slot.
        slot: Slot,
        /// Its priority.
        priority: u8,
        /// Its successful bit.
        successful: bool,
    },
}

/// `clear-inactive`: the inactive slot can never boot, ready to be overwritten. Always allowed.
/// Does not write to the disk.
pub fn clear_inactive(words: SlotWords, active: Slot) -> SlotWords {
    let mut new = words;
    new.update(active.other(), |a| {
        a.set_priority(0);
        a.set_tries(0);
        a.set_successful(false);
        a.set_unhealthy(0);
    });
    new
}

fn require_cleared(words: SlotWords, active: Slot) -> Result<(), TransitionError> {
    let slot = active.other();
    let a = words.attrs(slot);
    if a.priority() != 0 || a.successful() {
        return Err(TransitionError::InactiveNotCleared {
            slot,
            priority: a.priority(),
            successful: a.successful(),
        });
    }
    Ok(())
}

/// `mark-inactive-valid`: the freshly written inactive slot gets one try (priority unchanged,
/// still 0). Requires a cleared inactive slot. Does not write to the disk.
pub fn mark_inactive_valid(words: SlotWords, active: Slot) -> Result<SlotWords, TransitionError> {
    require_cleared(words, active)?;
    let mut new = words;
    new.update(active.other(), |a| a.set_tries(1));
    Ok(new)
}

/// `upgrade-to-inactive`: the inactive slot boots next (priority 2, one try from
/// `mark-inactive-valid`), the active one is the fallback (priority 1). Requires a cleared and
/// valid inactive slot. Does not write to the disk.
pub fn upgrade_to_inactive(words: SlotWords, active: Slot) -> Result<SlotWords, TransitionError> {
    require_cleared(words, active)?;
    let slot = active.other();
    if words.attrs(slot).tries() == 0 {
        return Err(TransitionError::InactiveNotValid { slot });
    }
    let mut new = words;
    new.update(slot, |a| {
        a.set_priority(PRIORITY_NEXT);
        a.set_unhealthy(0);
    });
    new.update(active, |a| a.set_priority(PRIORITY_FALLBACK));
    Ok(new)
}

/// `cancel-upgrade`: undoes `upgrade-to-inactive` before the new slot has succeeded (inactive
/// priority 0, active priority 2). Requires a pending upgrade: inactive priority > 0 and not
/// successful. Does not write to the disk.
pub fn cancel_upgrade(words: SlotWords, active: Slot) -> Result<SlotWords, TransitionError> {
    let slot = active.other();
    let a = words.attrs(slot);
    if a.priority() == 0 || a.successful() {
        return Err(TransitionError::NoUpgradePending {
            slot,
            priority: a.priority(),
            successful: a.successful(),
        });
    }
    let mut new = words;
    new.update(slot, |a| a.set_priority(0));
    new.update(active, |a| a.set_priority(PRIORITY_NEXT));
    Ok(new)
}

/// `rollback-to-inactive`: the inactive slot boots next (priority 2, active priority 1).
/// Requires the inactive slot to be eligible. Does not write to the disk.
pub fn rollback_to_inactive(words: SlotWords, active: Slot) -> Result<SlotWords, TransitionError> {
    let slot = active.other();
    let a = words.attrs(slot);
    if !a.eligible() {
        return Err(TransitionError::InactiveNotBootable {
            slot,
            priority: a.priority(),
            tries: a.tries(),
            successful: a.successful(),
        });
    }
    let mut new = words;
    new.update(slot, |a| a.set_priority(PRIORITY_NEXT));
    new.update(active, |a| a.set_priority(PRIORITY_FALLBACK));
    Ok(new)
}

/// `mark-successful-boot`: the active slot reached health (successful, tries 0, unhealthy 0).
/// Always allowed. Does not write to the disk.
pub fn mark_successful_boot(words: SlotWords, active: Slot) -> SlotWords {
    let mut new = words;
    new.update(active, |a| {
        a.set_successful(true);
        a.set_tries(0);
        a.set_unhealthy(0);
    });
    new
}

/// The active slot answered: successful, tries 0, but its unhealthy (crash-loop) count is
/// kept until health has held for a while ([`mark_successful_boot`] then clears it), so a
/// slot that reaches health and then keeps failing is still demoted by the crash-loop rule
/// (DESIGN.md section 4). Does not write to the disk.
pub fn mark_healthy(words: SlotWords, active: Slot) -> SlotWords {
    let mut new = words;
    new.update(active, |a| {
        a.set_successful(true);
        a.set_tries(0);
    });
    new
}

/// `has-boot-ever-succeeded`: whether the active slot is marked successful.
pub fn has_boot_ever_succeeded(words: SlotWords, active: Slot) -> bool {
    words.attrs(active).successful()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::SlotAttrs;
    use crate::decide::select;

    const FOREIGN_A: u64 = 0x8000_0000_0000_0001;
    const FOREIGN_B: u64 = 0x1000_0000_0000_0004;

    fn words(a: SlotAttrs, b: SlotAttrs) -> SlotWords {
        SlotWords {
            a: a.apply(FOREIGN_A),
            b: b.apply(FOREIGN_B),
        }
    }

    fn s(p: u8, t: u8, ok: bool, u: u8) -> SlotAttrs {
        SlotAttrs::new(p, t, ok, u)
    }

    #[test]
    fn update_lifecycle_from_a_to_b() {
        let w = words(s(2, 0, true, 0), s(1, 0, true, 0));
        let w = clear_inactive(w, Slot::A);
        assert_eq!(w.attrs(Slot::B), s(0, 0, false, 0));
        assert_eq!(
            upgrade_to_inactive(w, Slot::A),
            Err(TransitionError::InactiveNotValid { slot: Slot::B })
        );
        let w = mark_inactive_valid(w, Slot::A).unwrap();
        assert_eq!(w.attrs(Slot::B), s(0, 1, false, 0));
        let w = upgrade_to_inactive(w, Slot::A).unwrap();
        assert_eq!(w.attrs(Slot::A), s(1, 0, true, 0));
        assert_eq!(w.attrs(Slot::B), s(2, 1, false, 0));
        assert_eq!(select(w, 3, None).slot, Slot::B);
        assert!(matches!(
            upgrade_to_inactive(w, Slot::A),
            Err(TransitionError::InactiveNotCleared { .. })
        ));
        let cancelled = cancel_upgrade(w, Slot::A).unwrap();
        assert_eq!(cancelled.attrs(Slot::A), s(2, 0, true, 0));
        assert_eq!(cancelled.attrs(Slot::B), s(0, 1, false, 0));
        assert!(cancel_upgrade(cancelled, Slot::A).is_err());
        // Now running B after the reboot.
        let w = mark_successful_boot(w, Slot::B);
        assert_eq!(w.attrs(Slot::B), s(2, 0, true, 0));
        assert!(has_boot_ever_succeeded(w, Slot::B));
        assert!(matches!(
            cancel_upgrade(w, Slot::B),
            Err(TransitionError::NoUpgradePending { .. })
        ));
        let back = rollback_to_inactive(w, Slot::B).unwrap();
        assert_eq!(select(back, 3, None).slot, Slot::A);
        for w in [w, back, cancelled] {
            assert_eq!(w.a & !crate::attrs::OWNED_MASK, FOREIGN_A);
            assert_eq!(w.b & !crate::attrs::OWNED_MASK, FOREIGN_B);
        }
    }

    /// A slot that answers and then keeps failing: health alone keeps the crash-loop
    /// count, so the third unhealthy boot still demotes it; health that held clears it.
    #[test]
    fn health_keeps_the_crash_loop_count_until_it_holds() {
        use crate::decide::{decide, Action, DEFAULT_UNHEALTHY_LIMIT};
        let mut w = words(s(2, 0, true, 0), s(1, 0, true, 0));
        for boot in 1..=DEFAULT_UNHEALTHY_LIMIT {
            let d = decide(w, Slot::A, false, DEFAULT_UNHEALTHY_LIMIT);
            assert_eq!(
                (d.action, d.boot),
                (Action::Continue, Slot::A),
                "boot {boot}"
            );
            w = mark_healthy(d.new, Slot::A);
            assert_eq!(w.attrs(Slot::A), s(2, 0, true, boot), "boot {boot}");
        }
        let d = decide(w, Slot::A, false, DEFAULT_UNHEALTHY_LIMIT);
        assert_eq!((d.action, d.boot), (Action::Reboot, Slot::B), "demoted");

        // An update's first health: successful, its try gone.
        let w = words(s(1, 0, true, 0), s(2, 1, false, 0));
        let d = decide(w, Slot::B, false, DEFAULT_UNHEALTHY_LIMIT);
        let w = mark_healthy(d.new, Slot::B);
        assert_eq!(w.attrs(Slot::B), s(2, 0, true, 0));
        // Health that held clears the count.
        let w = words(s(2, 0, true, 2), s(1, 0, true, 0));
        assert_eq!(
            mark_successful_boot(mark_healthy(w, Slot::A), Slot::A).attrs(Slot::A),
            s(2, 0, true, 0)
        );
    }

    #[test]
    fn refusals() {
        // (active words, inactive words, transition, allowed)
        type T = fn(SlotWords, Slot) -> Result<SlotWords, TransitionError>;
        let table: &[(SlotAttrs, SlotAttrs, T, bool)] = &[
            (
                s(2, 0, true, 0),
                s(0, 0, false, 0),
                mark_inactive_valid,
                true,
            ),
            (
                s(2, 0, true, 0),
                s(1, 0, false, 0),
                mark_inactive_valid,
                false,
            ),
            (
                s(2, 0, true, 0),
                s(0, 0, true, 0),
                mark_inactive_valid,
                false,
            ),
            (
                s(2, 0, true, 0),
                s(0, 1, false, 0),
                upgrade_to_inactive,
                true,
            ),
            (
                s(2, 0, true, 0),
                s(0, 0, false, 0),
                upgrade_to_inactive,
                false,
            ),
            (
                s(2, 0, true, 0),
                s(0, 1, true, 0),
                upgrade_to_inactive,
                false,
            ),
            (
                s(2, 0, true, 0),
                s(1, 0, true, 0),
                rollback_to_inactive,
                true,
            ),
            (
                s(2, 0, true, 0),
                s(1, 1, false, 0),
                rollback_to_inactive,
                true,
            ),
            (
                s(2, 0, true, 0),
                s(0, 1, true, 0),
                rollback_to_inactive,
                false,
            ),
            (
                s(2, 0, true, 0),
                s(1, 0, false, 0),
                rollback_to_inactive,
                false,
            ),
            (s(1, 0, true, 0), s(2, 1, false, 0), cancel_upgrade, true),
            (s(1, 0, true, 0), s(2, 0, true, 0), cancel_upgrade, false),
            (s(1, 0, true, 0), s(0, 1, false, 0), cancel_upgrade, false),
        ];
        for (i, &(active, inactive, t, allowed)) in table.iter().enumerate() {
            for running in [Slot::A, Slot::B] {
                let w = match running {
                    Slot::A => words(active, inactive),
                    Slot::B => words(inactive, active),
                };
                assert_eq!(t(w, running).is_ok(), allowed, "row {i} running {running}");
            }
        }
    }
}
