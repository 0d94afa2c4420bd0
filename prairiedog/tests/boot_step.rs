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
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut disk = SlotDisk::open(f, &img, None).unwrap();
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
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&img)
            .unwrap();
        let mut disk = SlotDisk::open(f, &img, None).unwrap();
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
