//! What `prairiedog status` shows: both slots, the active and next slot, the counters and why.
//! Pure: built from the attribute words and what is known about the host.

use crate::attrs::SlotAttrs;
use crate::decide::{select, Selection, SlotWords};
use crate::Slot;
use std::fmt::Write as _;

/// One slot as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotStatus {
    /// Which slot.
    pub slot: Slot,
    /// The whole attribute word.
    pub word: u64,
    /// Its A/B fields.
    pub attrs: SlotAttrs,
    /// Whether it may boot.
    pub eligible: bool,
}

/// The state of both slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Slot A then slot B.
    pub slots: [SlotStatus; 2],
    /// The running slot, when known.
    pub active: Option<Slot>,
    /// What boots next and why.
    pub next: Selection,
    /// The crash-loop limit used.
    pub unhealthy_limit: u8,
}

impl Status {
    /// The status of `words` with `active` running.
    pub fn new(words: SlotWords, active: Option<Slot>, unhealthy_limit: u8) -> Status {
        let slot = |s: Slot| SlotStatus {
            slot: s,
            word: words.word(s),
            attrs: words.attrs(s),
            eligible: words.attrs(s).eligible(),
        };
        Status {
            slots: [slot(Slot::A), slot(Slot::B)],
            active,
            next: select(words, unhealthy_limit, None),
            unhealthy_limit,
        }
    }

    /// The human form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.slots {
            let mark = if self.active == Some(s.slot) {
                " (active)"
            } else {
                ""
            };
            let because = s
                .attrs
                .ineligible_because()
                .map_or(String::new(), |r| format!(" ({r})"));
            let _ = writeln!(
                out,
                "Slot {}{mark}: {} eligible={}{because} attributes={:#018x}",
                s.slot,
                s.attrs,
                u8::from(s.eligible),
                s.word
            );
        }
        let active = self.active.map_or("unknown", Slot::as_str);
        let _ = writeln!(out, "Active: {active}");
        let _ = writeln!(
            out,
            "Next:   {} ({})",
            self.next.slot,
            self.next.why.describe()
        );
        if let Some(cl) = self.next.crash_loop {
            let _ = writeln!(
                out,
                "Crash loop: slot {} has {} boots without reaching health (limit {}){}",
                cl.slot,
                cl.unhealthy,
                self.unhealthy_limit,
                if cl.demoted {
                    ", it will be demoted"
                } else {
                    ", but the other slot cannot boot"
                }
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_slots_and_why() {
        let words = SlotWords {
            a: SlotAttrs::new(1, 0, true, 0).apply(0),
            b: SlotAttrs::new(2, 1, false, 0).apply(0),
        };
        let text = Status::new(words, Some(Slot::A), 3).render();
        assert_eq!(
            text,
            "Slot A (active): priority=1 tries=0 successful=1 unhealthy=0 eligible=1 \
             attributes=0x0101000000000000\n\
             Slot B: priority=2 tries=1 successful=0 unhealthy=0 eligible=1 \
             attributes=0x0012000000000000\n\
             Active: A\n\
             Next:   B (both slots eligible, higher priority)\n"
        );
        let words = SlotWords {
            a: SlotAttrs::new(2, 0, true, 3).apply(0),
            b: SlotAttrs::new(1, 0, true, 0).apply(0),
        };
        let text = Status::new(words, None, 3).render();
        assert!(text.contains("Active: unknown"), "{text}");
        assert!(text.contains("Crash loop: slot A has 3 boots"), "{text}");
        assert!(
            text.contains("Next:   B (the other slot is crash-looping"),
            "{text}"
        );
    }
}
