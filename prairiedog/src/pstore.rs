//! Failure memory across boots (DESIGN.md section 7): what the previous boot's pstore
//! record says, what that means for the A/B state, and the per-slot history PID 1 keeps on
//! PRIVATE. Pure: the bytes come from the caller, nothing here reads or writes a disk.
//!
//! # The record
//!
//! On a kernel panic or oops the kernel hands the tail of its log to pstore, which keeps it
//! in EFI variables (`efi-pstore`) or reserved RAM (ramoops); on the next boot it shows up
//! as files `dmesg-efi-<id>` / `dmesg-ramoops-<n>` in `/sys/fs/pstore`, each part starting
//! with a header like `Panic#1 Part1` and then log lines `<6>[    4.123456] text`. A softdog
//! reset is a panic too (`softdog.soft_panic=1`, which the image sets with
//! `liftoff.watchdog`), and so is a dm-verity corruption with `liftoff.verity=panic`.
//! [`parse`] takes the parts as one byte string and finds the cause and the slot that ran.
//!
//! # The history file
//!
//! `liftoff/failures` on PRIVATE (copied to [`RUN_FILE`] on every boot for
//! `prairiedog status`): one failure per line, oldest first, at most [`KEEP`] per slot,
//! `<slot> <unix seconds or -> <stage> <cause>`, for example `A 1765000000 healthy panic`,
//! or `A 1765000000 verity pid1` for a stage of PID 1 that failed and rebooted.
//!
//! # PID 1's own failure
//!
//! A stage that fails and reboots is no panic, so pstore keeps nothing of it. Before the
//! reboot PID 1 writes [`pid1_record`] into the non-volatile EFI variable [`PID1_VAR`]
//! (vendor [`VENDOR`], Liftoff's own); the next boot reads it back with [`parse_pid1`],
//! adds it to the history with cause `pid1` and the failed stage's name, and deletes it.
//! The A/B rules counted that boot already: it is never charged again.

use crate::attrs::SlotAttrs;
use crate::decide::SlotWords;
use crate::Slot;

/// The history's name on PRIVATE.
pub const PRIVATE_FILE: &str = "liftoff/failures";
/// The copy of the history for `prairiedog status` on the running host.
pub const RUN_FILE: &str = "run/liftoff/failures";
/// How many failures are kept per slot.
pub const KEEP: usize = 4;

/// What ended the previous boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// dm-verity found a block that does not match the hash tree.
    Verity,
    /// The watchdog was not petted in time (softdog's panic).
    Watchdog,
    /// Any other kernel panic.
    Panic,
    /// A kernel oops the machine survived until a reset.
    Oops,
    /// A stage of PID 1 failed and PID 1 rebooted (already counted by the A/B rules).
    Pid1,
}

impl Cause {
    /// The word used in the log, the history file and `prairiedog status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Verity => "verity",
            Cause::Watchdog => "watchdog",
            Cause::Panic => "panic",
            Cause::Oops => "oops",
            Cause::Pid1 => "pid1",
        }
    }

    fn from_word(w: &str) -> Option<Cause> {
        [
            Cause::Verity,
            Cause::Watchdog,
            Cause::Panic,
            Cause::Oops,
            Cause::Pid1,
        ]
        .into_iter()
        .find(|c| c.as_str() == w)
    }
}

/// How far the failed boot had come, from PID 1's lines in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No PID 1 line: the kernel, or PID 1's lines scrolled out of the record.
    Kernel,
    /// PID 1 had run, the next stage had not answered.
    Boot,
    /// The slot had reached health.
    Healthy,
    /// The stage of PID 1 that failed, one of [`PID1_STAGES`].
    Pid1(&'static str),
}

/// The names of PID 1's stages (`init`'s `Stage::name`), as [`Stage::Pid1`] holds them.
pub const PID1_STAGES: [&str; 13] = [
    "api-mounts",
    "cmdline",
    "modules",
    "disk",
    "slots",
    "verity",
    "root",
    "switch-root",
    "settings",
    "data",
    "caps",
    "host",
    "handoff",
];

impl Stage {
    /// The word used in the history file and `prairiedog status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Kernel => "kernel",
            Stage::Boot => "boot",
            Stage::Healthy => "healthy",
            Stage::Pid1(name) => name,
        }
    }

    /// A word of the history: one of the kernel's three, or a stage of PID 1.
    pub fn from_word(w: &str) -> Option<Stage> {
        [Stage::Kernel, Stage::Boot, Stage::Healthy]
            .into_iter()
            .find(|s| s.as_str() == w)
            .or_else(|| PID1_STAGES.into_iter().find(|n| *n == w).map(Stage::Pid1))
    }
}

/// What a pstore record says about the previous boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub cause: Cause,
    /// How far the boot had come.
    pub stage: Stage,
    /// The slot PID 1 said it ran, if one of its lines is in the record.
    pub slot: Option<Slot>,
}

/// Lines of PID 1 that name the running slot, each followed by the slot's letter.
const SLOT_MARKS: [&[u8]; 3] = [
    b"liftoff: slots: booted ",
    b"serves ROOT-",
    b"answers: slot ",
];

/// The cause and the slot in the text of a pstore record (all its parts, in any order).
/// `None` when it is not a panic or oops record. Never panics, on any bytes.
pub fn parse(record: &[u8]) -> Option<Record> {
    let cause = if find(record, b"dm-verity device corrupted").is_some() {
        Cause::Verity
    } else if find(record, b"Software Watchdog Timer expired").is_some() {
        Cause::Watchdog
    } else if find(record, b"Panic#").is_some() || find(record, b"Kernel panic").is_some() {
        Cause::Panic
    } else if find(record, b"Oops#").is_some() {
        Cause::Oops
    } else {
        return None;
    };
    let stage = if SLOT_MARKS.get(2).is_some_and(|m| find(record, m).is_some()) {
        Stage::Healthy
    } else if find(record, b"liftoff: ").is_some() {
        Stage::Boot
    } else {
        Stage::Kernel
    };
    // The last line that names a slot: the one closest to the failure.
    let slot = SLOT_MARKS
        .iter()
        .filter_map(|m| {
            let at = rfind(record, m)?;
            let letter = record.get(at.checked_add(m.len())?)?;
            let slot = match letter {
                b'A' => Slot::A,
                b'B' => Slot::B,
                _ => return None,
            };
            Some((at, slot))
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, s)| s);
    Some(Record { cause, stage, slot })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// Charges a failure of `cause` to `slot`, whether or not it had reached health: one more
/// unhealthy boot (the crash-loop rule of DESIGN.md section 4 then decides), and a verity
/// corruption demotes the slot at once (no longer successful, no try left) when the other
/// slot is eligible. Does not write to the disk.
pub fn charge(words: SlotWords, slot: Slot, cause: Cause) -> SlotWords {
    let other = words.attrs(slot.other()).eligible();
    let mut new = words;
    new.update(slot, |a: &mut SlotAttrs| {
        a.set_unhealthy(a.unhealthy().saturating_add(1).min(7));
        if cause == Cause::Verity && other {
            a.set_successful(false);
            a.set_tries(0);
        }
    });
    new
}

/// The name of the EFI variable that carries PID 1's failure to the next boot.
pub const PID1_VAR: &str = "LiftoffFailure";
/// Liftoff's own EFI vendor GUID, for [`PID1_VAR`].
pub const VENDOR: &str = "428edd67-9f89-4cfe-9e03-30bf1b0bb88e";
/// How much of the error [`pid1_record`] keeps.
pub const PID1_ERROR_MAX: usize = 200;

/// The text of [`PID1_VAR`]: one line, `failure`'s line in the history, a space and the
/// error's first line cut to [`PID1_ERROR_MAX`] bytes (at a character).
pub fn pid1_record(failure: &Failure, error: &str) -> String {
    let error = error.lines().next().unwrap_or_default();
    let mut end = error.len().min(PID1_ERROR_MAX);
    while !error.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let mut text = failure.line();
    text.pop();
    text.push(' ');
    text.push_str(error.get(..end).unwrap_or_default());
    text
}

/// Reads [`pid1_record`]'s text back: the failure (cause `pid1`, a stage of
/// [`PID1_STAGES`]) and the error; `None` when it is not one. Never panics, on any bytes.
pub fn parse_pid1(bytes: &[u8]) -> Option<(Failure, String)> {
    let text = String::from_utf8_lossy(bytes.get(..bytes.len().min(1024))?);
    let line = text.lines().next()?;
    let f = *read_history(line.as_bytes()).first()?;
    let error = line.splitn(5, ' ').nth(4).unwrap_or_default().to_owned();
    (f.cause == Cause::Pid1 && matches!(f.stage, Stage::Pid1(_))).then_some((f, error))
}

/// One failure in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub slot: Slot,
    /// When it happened (the record's time), in seconds since the epoch, if known.
    pub time: Option<u64>,
    pub stage: Stage,
    pub cause: Cause,
}

impl Failure {
    fn line(&self) -> String {
        let time = self.time.map_or("-".to_owned(), |t| t.to_string());
        format!(
            "{} {time} {} {}\n",
            self.slot.as_str(),
            self.stage.as_str(),
            self.cause.as_str()
        )
    }
}

/// The failures in a history file; lines it cannot read are skipped (a newer format, a
/// torn write of an older tool). Never panics.
pub fn read_history(text: &[u8]) -> Vec<Failure> {
    let text = String::from_utf8_lossy(text);
    text.lines()
        .filter_map(|line| {
            let mut w = line.split(' ');
            let slot = match w.next()? {
                "A" => Slot::A,
                "B" => Slot::B,
                _ => return None,
            };
            let time = match w.next()? {
                "-" => None,
                t => Some(t.parse().ok()?),
            };
            let stage = Stage::from_word(w.next()?)?;
            let cause = Cause::from_word(w.next()?)?;
            Some(Failure {
                slot,
                time,
                stage,
                cause,
            })
        })
        .collect()
}

/// The history with `new` added (oldest first), keeping the last [`KEEP`] failures per
/// slot, as text.
pub fn add_to_history(old: &[Failure], new: &[Failure]) -> String {
    let mut all: Vec<Failure> = old.to_vec();
    all.extend_from_slice(new);
    let mut out = String::new();
    for (i, f) in all.iter().enumerate() {
        let later = all
            .iter()
            .skip(i.saturating_add(1))
            .filter(|g| g.slot == f.slot)
            .count();
        if later < KEEP {
            out.push_str(&f.line());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 13 parts efi-pstore kept of a dm-verity panic (`liftoff.verity=panic`) of slot A
    /// after PID 1's handoff, under OVMF (the `vm::firmware` corrupted-root test), oldest part
    /// first as PID 1 reads them: the EFI variables `dump-type0-N-1-*-C` taken from the VM's
    /// variable store after the panic and inflated (raw deflate).
    const VERITY_PANIC: &[u8] = include_bytes!("../tests/fixtures/pstore/verity-panic-x86_64.txt");

    fn words(a: SlotAttrs, b: SlotAttrs) -> SlotWords {
        SlotWords {
            a: a.apply(0),
            b: b.apply(0),
        }
    }

    #[test]
    fn parses_a_real_record() {
        assert_eq!(
            parse(VERITY_PANIC),
            Some(Record {
                cause: Cause::Verity,
                stage: Stage::Boot,
                slot: Some(Slot::A),
            })
        );
        // Part 1 alone (the last 1.8 KiB of the log): PID 1's slot lines have scrolled out.
        let part1 = VERITY_PANIC
            .windows(14)
            .position(|w| w == b"Panic#1 Part1\n")
            .unwrap();
        assert_eq!(
            parse(&VERITY_PANIC[part1..]),
            Some(Record {
                cause: Cause::Verity,
                stage: Stage::Boot,
                slot: None,
            })
        );
        // Any cut of it: no panic, an answer or none.
        for end in (0..VERITY_PANIC.len()).step_by(97) {
            let _ = parse(&VERITY_PANIC[..end]);
        }
    }

    #[test]
    fn parses_causes_stages_and_the_last_slot() {
        let cases: [(&str, Option<Record>); 6] = [
            ("", None),
            ("<6>[    1.0] liftoff: slots: booted A, using slot A", None),
            (
                "Panic#1 Part1\n<0>[ 9.0] Kernel panic - not syncing: dm-verity device corrupted",
                Some(Record {
                    cause: Cause::Verity,
                    stage: Stage::Kernel,
                    slot: None,
                }),
            ),
            (
                "Panic#1 Part1\n<6>[1.0] liftoff: slots: booted A, using slot B\n\
                 <6>[2.0] liftoff: verity: /dev/dm-0 serves ROOT-B checked\n\
                 <0>[9.0] Kernel panic - not syncing: Software Watchdog Timer expired",
                Some(Record {
                    cause: Cause::Watchdog,
                    stage: Stage::Boot,
                    slot: Some(Slot::B),
                }),
            ),
            (
                "Oops#1 Part1\n<6>[1.0] liftoff: containerd 1.7 answers: slot B marked",
                Some(Record {
                    cause: Cause::Oops,
                    stage: Stage::Healthy,
                    slot: Some(Slot::B),
                }),
            ),
            (
                "Panic#2 Part1\n<6>[1.0] liftoff: slots: booted X",
                Some(Record {
                    cause: Cause::Panic,
                    stage: Stage::Boot,
                    slot: None,
                }),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn charges_the_slot_that_ran() {
        let healthy = SlotAttrs::new(2, 0, true, 0);
        let other = SlotAttrs::new(1, 0, true, 0);
        // A panic: one more unhealthy boot, still successful.
        let w = charge(words(healthy, other), Slot::A, Cause::Panic);
        assert_eq!(w.attrs(Slot::A), SlotAttrs::new(2, 0, true, 1));
        assert_eq!(w.attrs(Slot::B), other);
        // Verity with the other slot eligible: demoted at once.
        let w = charge(words(healthy, other), Slot::A, Cause::Verity);
        assert_eq!(w.attrs(Slot::A), SlotAttrs::new(2, 0, false, 1));
        assert!(!w.attrs(Slot::A).eligible());
        // Verity with no other slot: never bricked, only counted.
        let none = SlotAttrs::new(0, 0, false, 0);
        let w = charge(words(healthy, none), Slot::A, Cause::Verity);
        assert_eq!(w.attrs(Slot::A), SlotAttrs::new(2, 0, true, 1));
        // The 3-bit count saturates.
        let w = charge(
            words(other, SlotAttrs::new(2, 0, true, 7)),
            Slot::B,
            Cause::Watchdog,
        );
        assert_eq!(w.attrs(Slot::B).unhealthy(), 7);
    }

    #[test]
    fn pid1_records_round_trip() {
        let f = |slot, time, stage| Failure {
            slot,
            time,
            stage: Stage::Pid1(stage),
            cause: Cause::Pid1,
        };
        let long = "é".repeat(150);
        let a = f(Slot::A, Some(1765000000), "verity");
        let text = pid1_record(&a, &long);
        assert_eq!(text.len(), "A 1765000000 verity pid1 ".len() + 200);
        assert_eq!(parse_pid1(text.as_bytes()), Some((a, "é".repeat(100))));
        let b = f(Slot::B, None, "switch-root");
        let text = pid1_record(&b, "moving /sysroot: EINVAL\nmore");
        assert_eq!(text, "B - switch-root pid1 moving /sysroot: EINVAL");
        assert_eq!(
            parse_pid1(text.as_bytes()),
            Some((b, "moving /sysroot: EINVAL".into()))
        );
        for bad in [
            "",
            "A",
            "A 1 verity",
            "A 1 healthy pid1 x",
            "A 1 verity panic x",
            "- 1 verity pid1 x",
            "A x verity pid1 x",
            "A 1 nope pid1 x",
        ] {
            assert_eq!(parse_pid1(bad.as_bytes()), None, "{bad}");
        }
        // In the history: the stage's name and cause pid1.
        let f = Failure {
            slot: Slot::B,
            time: Some(7),
            stage: Stage::Pid1("handoff"),
            cause: Cause::Pid1,
        };
        let text = add_to_history(&[], &[f]);
        assert_eq!(text, "B 7 handoff pid1\n");
        assert_eq!(read_history(text.as_bytes()), vec![f]);
    }

    #[test]
    fn keeps_the_last_failures_per_slot() {
        let f = |slot, time| Failure {
            slot,
            time: Some(time),
            stage: Stage::Healthy,
            cause: Cause::Panic,
        };
        let mut text = String::new();
        for t in 0..6 {
            text = add_to_history(&read_history(text.as_bytes()), &[f(Slot::A, t)]);
        }
        text = add_to_history(&read_history(text.as_bytes()), &[f(Slot::B, 9)]);
        assert_eq!(
            text,
            "A 2 healthy panic\nA 3 healthy panic\nA 4 healthy panic\nA 5 healthy panic\n\
             B 9 healthy panic\n"
        );
        let odd = "A - kernel verity\nbad line\nC 1 boot panic\nB x boot panic\n";
        assert_eq!(
            read_history(odd.as_bytes()),
            vec![Failure {
                slot: Slot::A,
                time: None,
                stage: Stage::Kernel,
                cause: Cause::Verity
            }]
        );
    }
}
