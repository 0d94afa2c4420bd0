//! pstore record and failure-history parsers: never panic; a record that parses names a
//! slot only from one of PID 1's lines; a history read back from what `add_to_history`
//! wrote is what went in (at most `KEEP` per slot, the newest kept); PID 1's failure record
//! parses only with a stage of PID 1, and one written by `pid1_record` reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prairiedog::pstore::{
    add_to_history, parse, parse_pid1, pid1_record, read_history, Cause, Failure, Stage, KEEP,
    PID1_ERROR_MAX,
};
use prairiedog::Slot;

fuzz_target!(|data: &[u8]| {
    if let Some(r) = parse(data) {
        if r.slot.is_some() {
            assert!(
                contains(data, b"liftoff: slots: booted ")
                    || contains(data, b"serves ROOT-")
                    || contains(data, b"answers: slot ")
            );
        }
        if r.stage == Stage::Healthy {
            assert!(contains(data, b"answers: slot "));
        }
    }
    if let Some((f, error)) = parse_pid1(data) {
        assert!(matches!(f.stage, Stage::Pid1(_)) && f.cause == Cause::Pid1);
        let text = pid1_record(&f, &error);
        let (back, back_error) = parse_pid1(text.as_bytes()).expect("a record pid1_record wrote");
        assert_eq!(back, f);
        assert!(back_error.len() <= PID1_ERROR_MAX);
        assert!(!back_error.contains('\n'));
    }
    let old = read_history(data);
    let new = Failure {
        slot: Slot::B,
        time: Some(u64::MAX),
        stage: Stage::Healthy,
        cause: Cause::Verity,
    };
    let text = add_to_history(&old, &[new]);
    let back = read_history(text.as_bytes());
    assert_eq!(back.last(), Some(&new));
    for slot in [Slot::A, Slot::B] {
        let kept: Vec<_> = back.iter().filter(|f| f.slot == slot).collect();
        let all: Vec<_> = old
            .iter()
            .chain([&new])
            .filter(|f| f.slot == slot)
            .collect();
        assert!(kept.len() <= KEEP);
        assert_eq!(kept.as_slice(), &all[all.len().saturating_sub(KEEP)..]);
    }
    assert_eq!(add_to_history(&back[..back.len() - 1], &[new]), text);
});

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
