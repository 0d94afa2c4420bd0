//! grubenv against the real `grub-editenv` (grub-common, installed by scripts/setup): the bytes
//! we write are the bytes it writes, it lists what we wrote, and we read what it wrote.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use prairiedog::grubenv::{self, GrubEnv};
use prairiedog::Slot;
use std::path::Path;
use std::process::Command;

fn editenv(file: &Path, args: &[&str]) -> String {
    let out = Command::new("grub-editenv")
        .arg(file)
        .args(args)
        .output()
        .expect("running grub-editenv (grub-common, scripts/setup)");
    assert!(out.status.success(), "grub-editenv {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn listing(env: &GrubEnv) -> String {
    env.entries()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}

#[test]
fn create_matches_grub_editenv() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("grubenv");
    editenv(&theirs, &["create"]);
    assert_eq!(std::fs::read(&theirs).unwrap(), GrubEnv::new().as_bytes());
}

#[test]
fn every_set_matches_grub_editenv_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("grubenv");
    editenv(&theirs, &["create"]);
    let mut ours = GrubEnv::new();
    // Each step: key, value; both sides apply it, then the blocks must be identical.
    let steps: &[(&str, &str)] = &[
        ("liftoff_slot", "A"),
        ("liftoff_pending", "0"),
        ("saved_entry", "gnulinux-advanced"),
        ("liftoff_pending", "1"),
        ("liftoff_slot", "B"),
        ("saved_entry", "x"),
        (
            "saved_entry",
            "a much longer value than before, to move what follows",
        ),
        ("back\\slash", "a\\b\nc"),
        ("liftoff_slot", "A"),
        ("empty", ""),
    ];
    for (i, (k, v)) in steps.iter().enumerate() {
        editenv(&theirs, &["set", &format!("{k}={v}")]);
        ours.set(k, v).unwrap();
        assert_eq!(
            std::fs::read(&theirs).unwrap(),
            ours.as_bytes(),
            "step {i}: {k}={v}"
        );
    }
    // They read ours.
    let mine = dir.path().join("mine");
    std::fs::write(&mine, ours.as_bytes()).unwrap();
    assert_eq!(editenv(&mine, &["list"]), listing(&ours));
    // We read theirs after an unset (which we never do, but a host might).
    editenv(&theirs, &["unset", "saved_entry"]);
    let parsed = grubenv::read_file(&theirs).unwrap();
    assert_eq!(listing(&parsed), editenv(&theirs, &["list"]));
    assert_eq!(
        (parsed.slot(), parsed.pending()),
        (Some(Slot::A), Some(true))
    );
}

#[test]
fn write_in_place_keeps_the_file_and_its_size() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    editenv(&path, &["create"]);
    let ino = std::fs::metadata(&path).unwrap().ino();
    let mut env = grubenv::read_file(&path).unwrap();
    env.set_liftoff(Slot::B, false).unwrap();
    grubenv::write_in_place(&path, &env).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        ino,
        "same file, not a replacement"
    );
    assert_eq!(
        editenv(&path, &["list"]),
        "liftoff_slot=B\nliftoff_pending=0\n"
    );
    // A file of another size is refused, not resized.
    let short = dir.path().join("short");
    std::fs::write(&short, &GrubEnv::new().as_bytes()[..512]).unwrap();
    assert!(matches!(
        grubenv::write_in_place(&short, &env),
        Err(grubenv::GrubEnvFileError::SizeMismatch { actual: 512, .. })
    ));
    assert!(matches!(
        grubenv::write_in_place(&dir.path().join("missing"), &env),
        Err(grubenv::GrubEnvFileError::Open { .. })
    ));
}
