//! The A/B rules as pure functions of the two BOOT partitions' attribute words.
//!
//! Nothing here reads or writes a disk: callers load the words (see the `disk` module), call
//! [`decide`] or a transition, and write the returned words back only when
//! [`Decision::changed`] says so.
//!
//! # Choosing a slot ([`select`])
//!
//! 1. A slot is eligible when `priority > 0 && (tries > 0 || successful)`.
//! 2. The eligible slot with the higher priority wins; a tie goes to A.
//! 3. Crash loop: if the winner is successful and its `unhealthy` count has reached the limit
//!    (default 3) and the other slot is eligible, the winner is demoted (loses `successful` and
//!    any tries left, so it stays ineligible until an update or a rollback restores it) and the
//!    other slot wins. With no eligible alternative the crash-looping slot keeps booting.
//! 4. Never brick: with no eligible slot, boot the slot with the best priority (tie: A) anyway
//!    and say so, except after a bootloader fallback, where the running slot is kept: it is the
//!    one that just proved it reaches PID 1, and going back would loop.
//!
//! # Booting ([`decide`])
//!
//! PID 1 knows the slot GRUB booted (`liftoff.slot=`) and whether GRUB fell back (see
//! [`bootloader_fell_back`]). In order:
//!
//! 1. Fallback: the other slot's kernel never reached PID 1. Its failed boot is recorded now:
//!    one try spent if it is not successful, one more unhealthy boot if it is.
//! 2. [`select`] on the words after step 1 (running slot kept in the never-brick case after a
//!    fallback). A crash-loop demotion is written into the words.
//! 3. If the selected slot is the running one, this boot is counted against it: a try is spent
//!    if it is not successful, otherwise its unhealthy count goes up by one (both saturate).
//!    [`Action::Continue`]: use its root.
//! 4. Otherwise [`Action::Reboot`]: PID 1 must not mount another slot's root under this kernel;
//!    it points grubenv at the selected slot and reboots. Nothing is counted against the running
//!    slot.
//! 5. [`Decision::next`] is [`select`] over the new words: what grubenv's `liftoff_slot` must
//!    say, so that if this boot dies before reaching health GRUB already boots what PID 1 would
//!    choose.
//!
//! Reaching health ([`crate::transition::mark_successful_boot`]) sets `successful`, clears
//! `tries` and the unhealthy count.

use crate::attrs::{SlotAttrs, MAX_UNHEALTHY};
use crate::Slot;

/// Default crash-loop limit: boots without reaching health before a successful slot is demoted.
pub const DEFAULT_UNHEALTHY_LIMIT: u8 = 3;

/// The attribute words of BOOT-A and BOOT-B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotWords {
    /// BOOT-A's 64-bit attribute word.
    pub a: u64,
    /// BOOT-B's 64-bit attribute word.
    pub b: u64,
}

impl SlotWords {
    /// The word of `slot`.
    pub fn word(self, slot: Slot) -> u64 {
        match slot {
            Slot::A => self.a,
            Slot::B => self.b,
        }
    }

    /// The decoded A/B fields of `slot`.
    pub fn attrs(self, slot: Slot) -> SlotAttrs {
        SlotAttrs::from_word(self.word(slot))
    }

    /// Replaces the A/B fields of `slot`, keeping its other bits.
    pub fn set_attrs(&mut self, slot: Slot, attrs: SlotAttrs) {
        let word = match slot {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        };
        *word = attrs.apply(*word);
    }

    /// Applies `f` to the A/B fields of `slot`.
    pub fn update(&mut self, slot: Slot, f: impl FnOnce(&mut SlotAttrs)) {
        let mut attrs = self.attrs(slot);
        f(&mut attrs);
        self.set_attrs(slot, attrs);
    }
}

/// Why [`select`] chose its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The only eligible slot.
    OnlyEligible,
    /// Both eligible; the chosen one has the higher priority.
    HigherPriority,
    /// Both eligible with the same priority: A wins ties.
    TieGoesToA,
    /// The slot that would have won was demoted for a crash loop (see [`CrashLoop`]).
    OtherCrashLooping,
    /// No slot is eligible: the best priority boots anyway (tie: A) so the machine never bricks.
    NoEligibleBestPriority,
    /// No slot is eligible after a bootloader fallback: the running slot, which reached PID 1,
    /// is kept.
    NoEligibleKeepRunning,
}

impl Why {
    /// One line for `status` and PID 1's log.
    pub fn describe(self) -> &'static str {
        match self {
            Why::OnlyEligible => "the only eligible slot",
            Why::HigherPriority => "both slots eligible, higher priority",
            Why::TieGoesToA => "both slots eligible with equal priority, A wins ties",
            Why::OtherCrashLooping => "the other slot is crash-looping and was demoted",
            Why::NoEligibleBestPriority => {
                "no slot is eligible, booting the best priority anyway (never brick)"
            }
            Why::NoEligibleKeepRunning => {
                "no slot is eligible after a bootloader fallback, keeping the running slot"
            }
        }
    }
}

/// A successful slot whose unhealthy count reached the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoop {
    /// The crash-looping slot.
    pub slot: Slot,
    /// Its unhealthy count.
    pub unhealthy: u8,
    /// Whether it is demoted (the other slot was eligible); if not, it keeps booting.
    pub demoted: bool,
}

/// The outcome of [`select`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// The slot to boot.
    pub slot: Slot,
    /// Why.
    pub why: Why,
    /// A crash loop seen on the slot that would otherwise have won.
    pub crash_loop: Option<CrashLoop>,
}

/// Which slot the rules choose for `words` (see the module docs). `keep` is the running slot
/// after a bootloader fallback (used only when no slot is eligible). Does not change the words:
/// a demotion is reported in [`Selection::crash_loop`] for the caller to apply.
#[cfg_attr(feature = "no-panic", no_panic::no_panic)]
pub fn select(words: SlotWords, unhealthy_limit: u8, keep: Option<Slot>) -> Selection {
    let limit = unhealthy_limit.clamp(1, MAX_UNHEALTHY);
    let (a, b) = (words.attrs(Slot::A), words.attrs(Slot::B));
    let winner = match (a.eligible(), b.eligible()) {
        (true, true) if a.priority() >= b.priority() => {
            let why = if a.priority() == b.priority() {
                Why::TieGoesToA
            } else {
                Why::HigherPriority
            };
            Some((Slot::A, why))
        }
        (true, true) => Some((Slot::B, Why::HigherPriority)),
        (true, false) => Some((Slot::A, Why::OnlyEligible)),
        (false, true) => Some((Slot::B, Why::OnlyEligible)),
        (false, false) => None,
    };
    match winner {
        Some((slot, why)) => {
            let attrs = words.attrs(slot);
            if attrs.successful() && attrs.unhealthy() >= limit {
                let demoted = words.attrs(slot.other()).eligible();
                let crash_loop = Some(CrashLoop {
                    slot,
                    unhealthy: attrs.unhealthy(),
                    demoted,
                });
                if demoted {
                    return Selection {
                        slot: slot.other(),
                        why: Why::OtherCrashLooping,
                        crash_loop,
                    };
                }
                return Selection {
                    slot,
                    why,
                    crash_loop,
                };
            }
            Selection {
                slot,
                why,
                crash_loop: None,
            }
        }
        None => match keep {
            Some(slot) => Selection {
                slot,
                why: Why::NoEligibleKeepRunning,
                crash_loop: None,
            },
            None => Selection {
                slot: if a.priority() >= b.priority() {
                    Slot::A
                } else {
                    Slot::B
                },
                why: Why::NoEligibleBestPriority,
                crash_loop: None,
            },
        },
    }
}

/// Whether GRUB fell back to `booted` because the kernel of the slot it was told to boot never
/// reached PID 1 (DESIGN.md section 5). `grub_slot` and `pending` are grubenv's `liftoff_slot`
/// and `liftoff_pending` (`None`: missing or unreadable).
///
/// | `liftoff_pending` | `liftoff_slot` vs booted | meaning | recorded |
/// |---|---|---|---|
/// | 1 | same | normal boot: GRUB set pending and booted what it was told | nothing extra |
/// | 1 | other | GRUB found pending still 1: the other slot's kernel died before PID 1, GRUB fell back | a failed boot against the other slot |
/// | 0 | same | GRUB did not arm pending (no `save_env`, read-only ESP, direct kernel boot) | nothing extra |
/// | 0 | other | a manual choice (GRUB menu, direct kernel boot): no failure is known | nothing extra |
/// | missing | any | no grubenv or no key: no information | nothing extra |
/// | any | missing | no slot recorded: a fallback cannot be told apart | nothing extra |
///
/// In every row PID 1 then applies [`decide`] and rewrites grubenv with `liftoff_pending=0` and
/// `liftoff_slot=`[`Decision::next`]. GRUB must leave `liftoff_slot` alone when it falls back,
/// otherwise the second row is indistinguishable from the first.
#[cfg_attr(feature = "no-panic", no_panic::no_panic)]
pub fn bootloader_fell_back(booted: Slot, grub_slot: Option<Slot>, pending: Option<bool>) -> bool {
    pending == Some(true) && grub_slot == Some(booted.other())
}

/// What a bootloader fallback recorded against the slot that failed before PID 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// The slot whose kernel never reached PID 1.
    pub failed: Slot,
    /// What was counted against it.
    pub counted: Counted,
}

/// What one boot (or one failed boot) of a slot counted against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// A try was spent; `left` remain.
    Try {
        /// Tries left afterwards.
        left: u8,
    },
    /// The slot is successful: its unhealthy count went up (saturating at 7).
    Unhealthy {
        /// The count afterwards.
        count: u8,
    },
    /// Not successful and no try left: nothing to spend (a never-brick boot).
    NothingLeft,
}

fn count_boot(attrs: &mut SlotAttrs) -> Counted {
    if attrs.successful() {
        attrs.set_unhealthy(attrs.unhealthy().saturating_add(1));
        Counted::Unhealthy {
            count: attrs.unhealthy(),
        }
    } else if attrs.tries() > 0 {
        attrs.set_tries(attrs.tries() - 1);
        Counted::Try {
            left: attrs.tries(),
        }
    } else {
        Counted::NothingLeft
    }
}

/// What PID 1 does with the running kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Use the running slot's root; the boot was counted ([`Decision::counted`]).
    Continue,
    /// Another slot must boot: point grubenv at [`Decision::boot`] and reboot.
    Reboot,
}

/// The outcome of [`decide`]: what to boot, why, and the new words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The words before.
    pub old: SlotWords,
    /// The words to write back (equal to `old` when nothing changed).
    pub new: SlotWords,
    /// The slot the bootloader booted.
    pub booted: Slot,
    /// The slot that boots: equal to `booted` for [`Action::Continue`].
    pub boot: Slot,
    /// Continue with the running kernel, or reboot into `boot`.
    pub action: Action,
    /// Why `boot` was chosen, and any crash loop seen.
    pub selection: Selection,
    /// The failed boot recorded after a bootloader fallback.
    pub fallback: Option<Fallback>,
    /// What this boot counted against `booted` (`None` when rebooting).
    pub counted: Option<Counted>,
    /// The slot grubenv's `liftoff_slot` must name from now on.
    pub next: Slot,
}

impl Decision {
    /// Whether the words must be written back.
    pub fn changed(&self) -> bool {
        self.old != self.new
    }
}

/// The boot decision (see the module docs). Pure: does not write to the disk.
#[cfg_attr(feature = "no-panic", no_panic::no_panic)]
pub fn decide(words: SlotWords, booted: Slot, fell_back: bool, unhealthy_limit: u8) -> Decision {
    let mut new = words;
    let fallback = fell_back.then(|| {
        let failed = booted.other();
        let mut attrs = new.attrs(failed);
        let counted = count_boot(&mut attrs);
        new.set_attrs(failed, attrs);
        Fallback { failed, counted }
    });
    let selection = select(new, unhealthy_limit, fell_back.then_some(booted));
    if let Some(CrashLoop {
        slot,
        demoted: true,
        ..
    }) = selection.crash_loop
    {
        new.update(slot, |a| {
            a.set_successful(false);
            a.set_tries(0);
        });
    }
    let (action, counted) = if selection.slot == booted {
        let mut attrs = new.attrs(booted);
        let counted = count_boot(&mut attrs);
        new.set_attrs(booted, attrs);
        (Action::Continue, Some(counted))
    } else {
        (Action::Reboot, None)
    };
    let next = select(new, unhealthy_limit, None).slot;
    Decision {
        old: words,
        new,
        booted,
        boot: selection.slot,
        action,
        selection,
        fallback,
        counted,
        next,
    }
}
