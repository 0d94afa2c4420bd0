//! PID 1's boot step on an sgdisk image and a grub-editenv grubenv: the fallback is detected
//! from grubenv, recorded in the GPT, and grubenv is rewritten for GRUB.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use prairiedog::boot::{run as boot, GrubEnvAt, GrubEnvOutcome};
use prairiedog::decide::{Action, Counted, DEFAULT_UNHEALTHY_LIMIT};
use prairiedog::disk::SlotDisk;
use prairiedog::Slot;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::Command;

/// The image's slot state, open for writing.
fn open_rw(img: &Path) -> SlotDisk<std::fs::File> {
    let f = OpenOptions::new().read(true).write(true).open(img).unwrap();
    SlotDisk::open(f, img, None).unwrap()
}

fn editenv(env: &Path, args: &[&str]) -> String {
    run(Command::new("grub-editenv").arg(env).args(args))
}

#[test]
fn fallback_is_recorded_and_grubenv_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    // After upgrade-to-inactive: B has one try, A is the fallback.
    let img = make_image(dir.path(), "d.img", 512, w(1, 0, 1, 0), w(2, 1, 0, 0));
    let env = dir.path().join("grubenv");
    editenv(&env, &["create"]);
    // GRUB was told B, set pending, B's kernel died, GRUB found pending and booted A.
    editenv(&env, &["set", "liftoff_slot=B", "liftoff_pending=1"]);
    let mut disk = open_rw(&img);
    let out = boot(
        &mut disk,
        GrubEnvAt::File(&env),
        Slot::A,
        DEFAULT_UNHEALTHY_LIMIT,
    )
    .unwrap();
    let d = &out.decision;
    assert_eq!(
        d.fallback.map(|f| (f.failed, f.counted)),
        Some((Slot::B, Counted::Try { left: 0 }))
    );
    assert_eq!(
        (d.action, d.boot, d.next),
        (Action::Continue, Slot::A, Slot::A)
    );
    assert!(out.gpt_written);
    assert!(matches!(out.grubenv, GrubEnvOutcome::Written));
    assert_eq!(
        sgdisk_attrs(&img, 512, 5),
        w(2, 0, 0, 0),
        "B's try is spent"
    );
    assert_eq!(
        sgdisk_attrs(&img, 512, 2),
        w(1, 0, 1, 1),
        "A counts this boot"
    );
    assert_eq!(
        editenv(&env, &["list"]),
        "liftoff_slot=A\nliftoff_pending=0\n"
    );

    // A normal boot of A with pending set by GRUB: no fallback.
    editenv(&env, &["set", "liftoff_pending=1"]);
    let out = boot(
        &mut disk,
        GrubEnvAt::File(&env),
        Slot::A,
        DEFAULT_UNHEALTHY_LIMIT,
    )
    .unwrap();
    assert_eq!(out.decision.fallback, None);
    assert_eq!(sgdisk_attrs(&img, 512, 2), w(1, 0, 1, 2));
    assert_eq!(
        editenv(&env, &["list"]),
        "liftoff_slot=A\nliftoff_pending=0\n"
    );

    // A missing grubenv: no fallback can be seen, the GPT is still updated.
    let missing = dir.path().join("nope");
    let out = boot(
        &mut disk,
        GrubEnvAt::File(&missing),
        Slot::A,
        DEFAULT_UNHEALTHY_LIMIT,
    )
    .unwrap();
    assert!(matches!(out.grubenv, GrubEnvOutcome::Unreadable(_)));
    assert_eq!(sgdisk_attrs(&img, 512, 2), w(1, 0, 1, 3));
}

#[test]
fn grubenv_on_the_disks_own_esp() {
    let dir = tempfile::tempdir().unwrap();
    for sector in [512u32, 4096] {
        let img = make_image(dir.path(), "d.img", sector, w(1, 0, 1, 0), w(2, 1, 0, 0));
        put_esp(
            dir.path(),
            &img,
            sector,
            &["liftoff_slot=B", "liftoff_pending=1"],
        );
        let mut disk = open_rw(&img);
        let out = boot(
            &mut disk,
            GrubEnvAt::Esp("/grubenv"),
            Slot::A,
            DEFAULT_UNHEALTHY_LIMIT,
        )
        .unwrap();
        assert!(
            matches!(out.grubenv, GrubEnvOutcome::Written),
            "{sector}: {:?}",
            out.grubenv
        );
        assert_eq!(
            out.decision.fallback.map(|f| f.failed),
            Some(Slot::B),
            "{sector}"
        );
        assert_eq!(sgdisk_attrs(&img, sector, 5), w(2, 0, 0, 0));
        assert_eq!(
            esp_grubenv_list(dir.path(), &img),
            "liftoff_slot=A\nliftoff_pending=0\n",
            "{sector}"
        );
    }
}

/// Overwrites the first bytes of the grubenv block found in `img` (a torn `save_env`).
fn tear_grubenv(img: &Path) {
    let bytes = std::fs::read(img).unwrap();
    let at = bytes
        .windows(prairiedog::grubenv::SIGNATURE.len())
        .position(|w| w == prairiedog::grubenv::SIGNATURE)
        .expect("a grubenv block in the image");
    smash(img, at as u64, 16, 0);
}

#[test]
fn torn_grubenv_is_rewritten_and_steers_grub() {
    let dir = tempfile::tempdir().unwrap();
    // As a file: a torn block of grub-editenv's size.
    let img = make_image(dir.path(), "d.img", 512, w(1, 0, 1, 0), w(2, 1, 0, 0));
    let env = dir.path().join("grubenv");
    editenv(&env, &["create"]);
    editenv(&env, &["set", "liftoff_slot=B", "liftoff_pending=1"]);
    tear_grubenv(&env);
    let mut disk = open_rw(&img);
    // GRUB booted A (it could not read grubenv); the GPT says B (one try) boots first.
    let out = boot(
        &mut disk,
        GrubEnvAt::File(&env),
        Slot::A,
        DEFAULT_UNHEALTHY_LIMIT,
    )
    .unwrap();
    assert_eq!(
        (out.decision.action, out.decision.boot),
        (Action::Reboot, Slot::B)
    );
    assert!(
        matches!(out.grubenv, GrubEnvOutcome::Repaired(_)),
        "{:?}",
        out.grubenv
    );
    assert!(out.grubenv.steers_grub());
    assert_eq!(std::fs::metadata(&env).unwrap().len(), 1024);
    assert_eq!(
        editenv(&env, &["list"]),
        "liftoff_slot=B\nliftoff_pending=0\n"
    );

    // On the ESP, both sector sizes: the block in the FAT's sectors is rewritten.
    for sector in [512u32, 4096] {
        let img = make_image(dir.path(), "e.img", sector, w(1, 0, 1, 0), w(2, 1, 0, 0));
        put_esp(dir.path(), &img, sector, &["liftoff_slot=B"]);
        tear_grubenv(&img);
        let mut disk = open_rw(&img);
        let out = boot(
            &mut disk,
            GrubEnvAt::Esp("/grubenv"),
            Slot::A,
            DEFAULT_UNHEALTHY_LIMIT,
        )
        .unwrap();
        assert!(
            matches!(out.grubenv, GrubEnvOutcome::Repaired(_)),
            "{sector}: {:?}",
            out.grubenv
        );
        assert_eq!(
            esp_grubenv_list(dir.path(), &img),
            "liftoff_slot=B\nliftoff_pending=0\n",
            "{sector}"
        );
    }
}

#[test]
fn a_missing_grubenv_cannot_steer_grub() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "d.img", 512, w(1, 0, 1, 0), w(2, 1, 0, 0));
    let mut disk = open_rw(&img);
    let out = boot(
        &mut disk,
        GrubEnvAt::File(&dir.path().join("missing")),
        Slot::A,
        DEFAULT_UNHEALTHY_LIMIT,
    )
    .unwrap();
    assert_eq!(out.decision.action, Action::Reboot);
    assert!(matches!(out.grubenv, GrubEnvOutcome::Unreadable(_)));
    assert!(!out.grubenv.steers_grub());
    // No grubenv in play at all (no GRUB): nothing to steer.
    assert!(
        boot(&mut disk, GrubEnvAt::None, Slot::A, DEFAULT_UNHEALTHY_LIMIT)
            .unwrap()
            .grubenv
            .steers_grub()
    );
}

/// Saturated words (A successful with the crash-loop count at its maximum, B never to
/// boot) do not change when A boots again: the boot step still repairs a damaged copy, so
/// the kernel sees the partitions on the next boot (issue 17).
#[test]
fn a_damaged_copy_is_repaired_even_when_the_words_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    for sector in [512u32, 4096] {
        for corrupt_primary in [true, false] {
            let img = make_image(dir.path(), "s.img", sector, w(1, 0, 1, 7), w(0, 0, 0, 0));
            let len = std::fs::metadata(&img).unwrap().len();
            let header = if corrupt_primary {
                u64::from(sector)
            } else {
                len - u64::from(sector)
            };
            // Inside the header's disk GUID: a CRC mismatch.
            smash(&img, header + 60, 4, 0xa5);
            assert!(!sgdisk_clean(&img, sector));
            let mut disk = open_rw(&img);
            let out = boot(&mut disk, GrubEnvAt::None, Slot::A, DEFAULT_UNHEALTHY_LIMIT).unwrap();
            assert_eq!(out.decision.old, out.decision.new, "{sector}: saturated");
            assert!(out.gpt_written, "{sector} {corrupt_primary}");
            assert!(
                sgdisk_clean(&img, sector),
                "{sector} {corrupt_primary}: repaired"
            );
            assert_eq!(sgdisk_attrs(&img, sector, 2), w(1, 0, 1, 7));
            // A clean disk in the same state: nothing written.
            let mut disk = open_rw(&img);
            let out = boot(&mut disk, GrubEnvAt::None, Slot::A, DEFAULT_UNHEALTHY_LIMIT).unwrap();
            assert!(!out.gpt_written, "{sector}: clean and unchanged");
        }
    }
}

/// The previous boot's pstore record is charged in the boot step's one GPT write: a panic
/// of a healthy slot adds an unhealthy boot, a verity corruption demotes it at once (the
/// rules then reboot into the other slot), and a record without a slot after a GRUB
/// fallback is the fallen-back slot's, which the fallback counts already.
#[test]
fn the_previous_boots_failure_is_charged() {
    use prairiedog::boot::run_after;
    use prairiedog::pstore::{Cause, Record, Stage};
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("grubenv");
    let record = |cause, slot| Record {
        cause,
        stage: Stage::Healthy,
        slot,
    };
    // (A's word, B's word, grubenv slot and pending, record) -> (A's word, B's word, the
    // failure's slot and whether charged, action)
    let cases = [
        // A panicked after health: one unhealthy boot for the record, one for this boot.
        (
            (w(2, 0, 1, 0), w(1, 0, 1, 0)),
            "A",
            "0",
            record(Cause::Panic, Some(Slot::A)),
            (w(2, 0, 1, 2), w(1, 0, 1, 0)),
            (Slot::A, true),
            Action::Continue,
        ),
        // At the limit: the crash-loop rule demotes A now, not one boot later.
        (
            (w(2, 0, 1, 2), w(1, 0, 1, 0)),
            "A",
            "0",
            record(Cause::Watchdog, None),
            (w(2, 0, 0, 3), w(1, 0, 1, 0)),
            (Slot::A, true),
            Action::Reboot,
        ),
        // Verity: demoted at once.
        (
            (w(2, 0, 1, 0), w(1, 0, 1, 0)),
            "A",
            "0",
            record(Cause::Verity, Some(Slot::A)),
            (w(2, 0, 0, 1), w(1, 0, 1, 0)),
            (Slot::A, true),
            Action::Reboot,
        ),
        // B's kernel hung before PID 1; GRUB fell back to A: B's try is spent, nothing more.
        (
            (w(1, 0, 1, 0), w(2, 1, 0, 0)),
            "B",
            "1",
            record(Cause::Watchdog, None),
            (w(1, 0, 1, 1), w(2, 0, 0, 0)),
            (Slot::B, false),
            Action::Continue,
        ),
    ];
    for (i, (before, slot, pending, r, after, charged, action)) in cases.into_iter().enumerate() {
        let img = make_image(dir.path(), &format!("{i}.img"), 512, before.0, before.1);
        editenv(&env, &["create"]);
        editenv(
            &env,
            &[
                "set",
                &format!("liftoff_slot={slot}"),
                &format!("liftoff_pending={pending}"),
            ],
        );
        let mut disk = open_rw(&img);
        let out = run_after(
            &mut disk,
            GrubEnvAt::File(&env),
            Slot::A,
            DEFAULT_UNHEALTHY_LIMIT,
            Some(&r),
        )
        .unwrap();
        assert_eq!(out.charged, Some(charged), "case {i}");
        assert_eq!(out.decision.action, action, "case {i}");
        assert_eq!(
            (sgdisk_attrs(&img, 512, 2), sgdisk_attrs(&img, 512, 5)),
            after,
            "case {i}"
        );
    }
}
