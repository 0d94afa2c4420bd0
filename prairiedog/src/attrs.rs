//! The A/B fields in a BOOT partition's 64-bit GPT attribute word (DESIGN.md section 4).
//!
//! | bits  | field      | width | range |
//! |-------|------------|-------|-------|
//! | 48-51 | priority   | 4     | 0-15  |
//! | 52-55 | tries      | 4     | 0-15  |
//! | 56    | successful | 1     | 0-1   |
//! | 57-59 | unhealthy  | 3     | 0-7   |
//!
//! Every other bit (0-47: the GPT-defined and partition-type-specific bits such as "required
//! partition"; 60-63) belongs to someone else and is carried through unchanged by
//! [`SlotAttrs::apply`].

use std::fmt;

const PRIORITY_SHIFT: u32 = 48;
const TRIES_SHIFT: u32 = 52;
const SUCCESSFUL_SHIFT: u32 = 56;
const UNHEALTHY_SHIFT: u32 = 57;

/// Largest priority or tries value (4 bits).
pub const MAX_NIBBLE: u8 = 0xf;
/// Largest unhealthy count (3 bits); the counter saturates here.
pub const MAX_UNHEALTHY: u8 = 0x7;

/// The attribute bits this crate owns (48-59); all others are left untouched.
pub const OWNED_MASK: u64 = 0x0fff_u64 << PRIORITY_SHIFT;

/// The decoded A/B fields of one slot.
///
/// Constructed values are always in range: the setters saturate to the field width so that an
/// encoded word never spills into a neighbouring field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SlotAttrs {
    priority: u8,
    tries: u8,
    successful: bool,
    unhealthy: u8,
}

impl SlotAttrs {
    /// A slot with the given fields; values wider than their field saturate at its maximum.
    pub fn new(priority: u8, tries: u8, successful: bool, unhealthy: u8) -> Self {
        Self {
            priority: priority.min(MAX_NIBBLE),
            tries: tries.min(MAX_NIBBLE),
            successful,
            unhealthy: unhealthy.min(MAX_UNHEALTHY),
        }
    }

    /// Decodes the A/B fields of a GPT attribute word.
    #[cfg_attr(feature = "no-panic", no_panic::no_panic)]
    pub fn from_word(word: u64) -> Self {
        // The masks make every cast lossless.
        Self {
            priority: ((word >> PRIORITY_SHIFT) & 0xf) as u8,
            tries: ((word >> TRIES_SHIFT) & 0xf) as u8,
            successful: (word >> SUCCESSFUL_SHIFT) & 1 == 1,
            unhealthy: ((word >> UNHEALTHY_SHIFT) & 0x7) as u8,
        }
    }

    /// Returns `word` with bits 48-59 replaced by these fields and every other bit unchanged.
    #[cfg_attr(feature = "no-panic", no_panic::no_panic)]
    pub fn apply(self, word: u64) -> u64 {
        (word & !OWNED_MASK)
            | (u64::from(self.priority) << PRIORITY_SHIFT)
            | (u64::from(self.tries) << TRIES_SHIFT)
            | (u64::from(self.successful) << SUCCESSFUL_SHIFT)
            | (u64::from(self.unhealthy) << UNHEALTHY_SHIFT)
    }

    /// 0 = never boot; higher wins.
    pub fn priority(self) -> u8 {
        self.priority
    }

    /// Boot attempts left while the slot is not yet successful.
    pub fn tries(self) -> u8 {
        self.tries
    }

    /// The slot has reached health at least once (and not been demoted since).
    pub fn successful(self) -> bool {
        self.successful
    }

    /// Boots since the slot last reached health (the crash-loop counter).
    pub fn unhealthy(self) -> u8 {
        self.unhealthy
    }

    /// Sets the priority (saturating at 15).
    pub fn set_priority(&mut self, priority: u8) {
        self.priority = priority.min(MAX_NIBBLE);
    }

    /// Sets the tries left (saturating at 15).
    pub fn set_tries(&mut self, tries: u8) {
        self.tries = tries.min(MAX_NIBBLE);
    }

    /// Sets or clears the successful bit.
    pub fn set_successful(&mut self, successful: bool) {
        self.successful = successful;
    }

    /// Sets the crash-loop counter (saturating at 7).
    pub fn set_unhealthy(&mut self, unhealthy: u8) {
        self.unhealthy = unhealthy.min(MAX_UNHEALTHY);
    }

    /// DESIGN.md section 4: `priority > 0 && (tries > 0 || successful)`.
    pub fn eligible(self) -> bool {
        self.priority > 0 && (self.tries > 0 || self.successful)
    }

    /// Why the slot is not eligible (`None` when it is).
    pub fn ineligible_because(self) -> Option<&'static str> {
        if self.priority == 0 {
            Some("priority 0")
        } else if self.tries == 0 && !self.successful {
            Some("no tries left and not successful")
        } else {
            None
        }
    }
}

impl fmt::Display for SlotAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority={} tries={} successful={} unhealthy={}",
            self.priority,
            self.tries,
            u8::from(self.successful),
            self.unhealthy
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_words() {
        // (word, priority, tries, successful, unhealthy)
        let table: &[(u64, u8, u8, bool, u8)] = &[
            (0, 0, 0, false, 0),
            (0x0001_0000_0000_0000, 1, 0, false, 0),
            (0x0012_0000_0000_0000, 2, 1, false, 0),
            (0x0102_0000_0000_0000, 2, 0, true, 0),
            (0x0f00_0000_0000_0000, 0, 0, true, 7),
            (0x0fff_0000_0000_0000, 15, 15, true, 7),
            (0xf000_ffff_ffff_ffff, 0, 0, false, 0),
            (0x0602_0000_0000_0001, 2, 0, false, 3),
        ];
        for &(word, p, t, s, u) in table {
            let a = SlotAttrs::from_word(word);
            assert_eq!(a, SlotAttrs::new(p, t, s, u), "{word:#018x}");
            assert_eq!(a.apply(word), word, "{word:#018x} round trip");
            assert_eq!(
                a.apply(0),
                word & OWNED_MASK,
                "{word:#018x} only owned bits"
            );
        }
    }

    #[test]
    fn every_owned_value_round_trips_and_leaves_other_bits() {
        let foreign = [
            0u64,
            !OWNED_MASK,
            0x8000_0000_0000_0001,
            0x5000_a5a5_0000_0004,
        ];
        for owned in 0..=0xfffu64 {
            for other in foreign {
                let word = (owned << 48) | other;
                let a = SlotAttrs::from_word(word);
                assert_eq!(a.apply(other), word);
                assert_eq!(a.apply(!OWNED_MASK) & !OWNED_MASK, !OWNED_MASK);
            }
        }
    }

    #[test]
    fn setters_saturate_to_field_width() {
        let mut a = SlotAttrs::new(200, 16, false, 9);
        assert_eq!((a.priority(), a.tries(), a.unhealthy()), (15, 15, 7));
        a.set_unhealthy(8);
        a.set_priority(16);
        a.set_tries(99);
        assert_eq!(a.apply(0), 0x0eff_0000_0000_0000);
    }

    #[test]
    fn eligibility_rule() {
        assert!(!SlotAttrs::new(0, 5, true, 0).eligible());
        assert!(!SlotAttrs::new(1, 0, false, 0).eligible());
        assert!(SlotAttrs::new(1, 1, false, 0).eligible());
        assert!(SlotAttrs::new(1, 0, true, 7).eligible());
        for owned in 0..=0xfffu64 {
            let a = SlotAttrs::from_word(owned << 48);
            assert_eq!(a.eligible(), a.ineligible_because().is_none(), "{a}");
        }
    }
}
