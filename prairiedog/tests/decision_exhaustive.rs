//! The boot decision checked against a plainly written reference of DESIGN.md section 4 (and
//! the crate's documented reading of it) over every pair of attribute words that differ in the
//! fields we own: 4096 x 4096 pairs, both booted slots, bootloader fallback or not.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use prairiedog::attrs::{SlotAttrs, OWNED_MASK};
use prairiedog::decide::{decide, Action, Counted, SlotWords, DEFAULT_UNHEALTHY_LIMIT};
use prairiedog::Slot;

/// Bits we do not own, different per slot, that must survive every decision.
const FOREIGN_A: u64 = 0x8000_0000_0000_0001;
const FOREIGN_B: u64 = 0x5000_a5a5_0000_0004;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Plain {
    priority: u8,
    tries: u8,
    successful: bool,
    unhealthy: u8,
}

fn plain(owned: u64) -> Plain {
    Plain {
        priority: (owned & 0xf) as u8,
        tries: ((owned >> 4) & 0xf) as u8,
        successful: (owned >> 8) & 1 == 1,
        unhealthy: ((owned >> 9) & 7) as u8,
    }
}

fn word(p: Plain, foreign: u64) -> u64 {
    foreign
        | (p.priority as u64) << 48
        | (p.tries as u64) << 52
        | (p.successful as u64) << 56
        | (p.unhealthy as u64) << 57
}

fn can_boot(p: Plain) -> bool {
    p.priority > 0 && (p.tries > 0 || p.successful)
}

/// One boot (or one failed boot) of a slot.
fn count(p: &mut Plain) {
    if p.successful {
        if p.unhealthy < 7 {
            p.unhealthy += 1;
        }
    } else if p.tries > 0 {
        p.tries -= 1;
    }
}

/// The rules, written out longhand over `[A, B]`; index 0 is A.
fn choose(s: &[Plain; 2], limit: u8, keep: Option<usize>) -> (usize, Option<usize>) {
    let winner;
    if can_boot(s[0]) && can_boot(s[1]) {
        if s[1].priority > s[0].priority {
            winner = Some(1);
        } else {
            winner = Some(0);
        }
    } else if can_boot(s[0]) {
        winner = Some(0);
    } else if can_boot(s[1]) {
        winner = Some(1);
    } else {
        winner = None;
    }
    match winner {
        Some(w) => {
            let other = 1 - w;
            if s[w].successful && s[w].unhealthy >= limit && can_boot(s[other]) {
                (other, Some(w))
            } else {
                (w, None)
            }
        }
        None => {
            if let Some(k) = keep {
                (k, None)
            } else if s[1].priority > s[0].priority {
                (1, None)
            } else {
                (0, None)
            }
        }
    }
}

struct Expected {
    slots: [Plain; 2],
    boot: usize,
    reboot: bool,
    next: usize,
}

fn reference(mut s: [Plain; 2], booted: usize, fell_back: bool, limit: u8) -> Expected {
    if fell_back {
        count(&mut s[1 - booted]);
    }
    let (boot, demote) = choose(&s, limit, if fell_back { Some(booted) } else { None });
    if let Some(d) = demote {
        s[d].successful = false;
        s[d].tries = 0;
    }
    let reboot = boot != booted;
    if !reboot {
        count(&mut s[booted]);
    }
    let (next, _) = choose(&s, limit, None);
    Expected {
        slots: s,
        boot,
        reboot,
        next,
    }
}

fn slot(i: usize) -> Slot {
    if i == 0 {
        Slot::A
    } else {
        Slot::B
    }
}

fn check_range(a_owned: std::ops::Range<u64>) {
    let limit = DEFAULT_UNHEALTHY_LIMIT;
    for oa in a_owned {
        let pa = plain(oa);
        let wa = word(pa, FOREIGN_A);
        for ob in 0..4096u64 {
            let pb = plain(ob);
            let words = SlotWords {
                a: wa,
                b: word(pb, FOREIGN_B),
            };
            for booted in 0..2 {
                for fell_back in [false, true] {
                    let got = decide(words, slot(booted), fell_back, limit);
                    let want = reference([pa, pb], booted, fell_back, limit);
                    let ctx = || format!("a={pa:?} b={pb:?} booted={booted} fell_back={fell_back}");
                    assert_eq!(got.boot, slot(want.boot), "boot: {}", ctx());
                    assert_eq!(
                        got.action,
                        if want.reboot {
                            Action::Reboot
                        } else {
                            Action::Continue
                        },
                        "action: {}",
                        ctx()
                    );
                    assert_eq!(got.new.a, word(want.slots[0], FOREIGN_A), "A: {}", ctx());
                    assert_eq!(got.new.b, word(want.slots[1], FOREIGN_B), "B: {}", ctx());
                    assert_eq!(got.next, slot(want.next), "next: {}", ctx());
                    assert_eq!(got.changed(), got.new != words, "changed: {}", ctx());
                    // A reboot always goes where grubenv will point.
                    if want.reboot {
                        assert_eq!(got.next, got.boot, "reboot target: {}", ctx());
                    }
                    assert_eq!(got.fallback.is_some(), fell_back, "{}", ctx());
                }
            }
        }
    }
}

#[test]
fn decide_matches_reference_for_every_owned_pair() {
    // Two halves on two threads: the machine has two cores.
    std::thread::scope(|scope| {
        let h = scope.spawn(|| check_range(0..2048));
        check_range(2048..4096);
        h.join().unwrap();
    });
}

/// Named scenarios, each a line of the story they tell.
#[test]
fn scenarios() {
    let s = SlotAttrs::new;
    // (A, B, booted, fell_back, boot, action, A after, B after, next)
    let table = [
        // Steady state on A.
        (
            s(2, 0, true, 0),
            s(1, 0, true, 0),
            Slot::A,
            false,
            Slot::A,
            Action::Continue,
            s(2, 0, true, 1),
            s(1, 0, true, 0),
            Slot::A,
        ),
        // First boot of an upgrade to B: its one try is spent; if it dies, A is next.
        (
            s(1, 0, true, 0),
            s(2, 1, false, 0),
            Slot::B,
            false,
            Slot::B,
            Action::Continue,
            s(1, 0, true, 0),
            s(2, 0, false, 0),
            Slot::A,
        ),
        // B's kernel panicked before PID 1: GRUB fell back to A, B's try is recorded.
        (
            s(1, 0, true, 0),
            s(2, 1, false, 0),
            Slot::A,
            true,
            Slot::A,
            Action::Continue,
            s(1, 0, true, 1),
            s(2, 0, false, 0),
            Slot::A,
        ),
        // B panicked before PID 1 but has tries left: reboot into B again.
        (
            s(1, 0, true, 0),
            s(2, 3, false, 0),
            Slot::A,
            true,
            Slot::B,
            Action::Reboot,
            s(1, 0, true, 0),
            s(2, 2, false, 0),
            Slot::B,
        ),
        // A crash-loops (3 boots without health), B is eligible: A demoted, reboot into B.
        (
            s(2, 0, true, 3),
            s(1, 0, true, 0),
            Slot::A,
            false,
            Slot::B,
            Action::Reboot,
            s(2, 0, false, 3),
            s(1, 0, true, 0),
            Slot::B,
        ),
        // The third unhealthy boot of A: grubenv already points at B for the next boot.
        (
            s(2, 0, true, 2),
            s(1, 0, true, 0),
            Slot::A,
            false,
            Slot::A,
            Action::Continue,
            s(2, 0, true, 3),
            s(1, 0, true, 0),
            Slot::B,
        ),
        // A crash-loops but B cannot boot: A keeps booting.
        (
            s(2, 0, true, 5),
            s(0, 0, false, 0),
            Slot::A,
            false,
            Slot::A,
            Action::Continue,
            s(2, 0, true, 6),
            s(0, 0, false, 0),
            Slot::A,
        ),
        // Nothing eligible: best priority boots anyway.
        (
            s(1, 0, false, 0),
            s(3, 0, false, 0),
            Slot::A,
            false,
            Slot::B,
            Action::Reboot,
            s(1, 0, false, 0),
            s(3, 0, false, 0),
            Slot::B,
        ),
        // Nothing eligible after a fallback: keep the slot that reached PID 1.
        (
            s(1, 0, false, 0),
            s(3, 1, false, 0),
            Slot::A,
            true,
            Slot::A,
            Action::Continue,
            s(1, 0, false, 0),
            s(3, 0, false, 0),
            Slot::B,
        ),
        // Priority 0 is never eligible even when successful (signpost disagrees).
        (
            s(0, 0, true, 0),
            s(1, 0, true, 0),
            Slot::A,
            false,
            Slot::B,
            Action::Reboot,
            s(0, 0, true, 0),
            s(1, 0, true, 0),
            Slot::B,
        ),
        // Tie goes to A.
        (
            s(2, 0, true, 0),
            s(2, 0, true, 0),
            Slot::B,
            false,
            Slot::A,
            Action::Reboot,
            s(2, 0, true, 0),
            s(2, 0, true, 0),
            Slot::A,
        ),
    ];
    for (i, (a, b, booted, fb, boot, action, a2, b2, next)) in table.into_iter().enumerate() {
        let words = SlotWords {
            a: a.apply(FOREIGN_A),
            b: b.apply(FOREIGN_B),
        };
        let d = decide(words, booted, fb, DEFAULT_UNHEALTHY_LIMIT);
        assert_eq!((d.boot, d.action, d.next), (boot, action, next), "row {i}");
        assert_eq!(d.new.attrs(Slot::A), a2, "row {i} A");
        assert_eq!(d.new.attrs(Slot::B), b2, "row {i} B");
        assert_eq!(d.new.a & !OWNED_MASK, FOREIGN_A);
        assert_eq!(d.new.b & !OWNED_MASK, FOREIGN_B);
    }
}

#[test]
fn what_was_counted() {
    let s = SlotAttrs::new;
    let w = SlotWords {
        a: s(1, 0, true, 6).apply(0),
        b: s(2, 4, false, 0).apply(0),
    };
    let d = decide(w, Slot::A, true, DEFAULT_UNHEALTHY_LIMIT);
    assert_eq!(
        d.fallback.map(|f| (f.failed, f.counted)),
        Some((Slot::B, Counted::Try { left: 3 }))
    );
    assert_eq!(d.action, Action::Reboot);
    assert_eq!(d.counted, None);
    let d = decide(w, Slot::B, false, DEFAULT_UNHEALTHY_LIMIT);
    assert_eq!(d.counted, Some(Counted::Try { left: 3 }));
    let w = SlotWords {
        a: s(1, 0, true, 7).apply(0),
        b: 0,
    };
    let d = decide(w, Slot::A, false, DEFAULT_UNHEALTHY_LIMIT);
    assert_eq!(d.counted, Some(Counted::Unhealthy { count: 7 }));
    assert!(!d.changed(), "a saturated counter is not a change");
}
