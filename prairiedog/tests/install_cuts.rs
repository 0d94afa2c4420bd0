//! An install cut by a power loss after every write (the cut write storing nothing or half):
//! the table stays readable, and slot B is never half-bootable. B is eligible only in its
//! untouched old state; B marked valid (one try) only with every partition holding the new
//! image.

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
use gpt::testing::MemDisk;
use prairiedog::disk::{Part, SlotDisk};
use prairiedog::install::{install, InstallOptions, Manifest, Payload};
use prairiedog::uki::Signature;
use prairiedog::Slot;
use std::path::Path;
use std::process::Command;

#[test]
fn every_cut_leaves_b_old_or_unbootable_or_complete() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "d.img", 512, w(2, 0, 1, 0), w(1, 0, 1, 0));
    let root = dir.path().join("root.img");
    let bytes: Vec<u8> = (0u32..256 * 1024)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    std::fs::write(&root, &bytes).unwrap();
    let hash = dir.path().join("hash.img");
    let out = run(Command::new("veritysetup")
        .arg("format")
        .arg(&root)
        .arg(&hash));
    let root_hash = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_owned();
    let boot = boot_image(
        dir.path(),
        "boot.img",
        &format!("liftoff.slot=B liftoff.roothash={root_hash}"),
        "IMAGE_VERSION=1\n",
        512,
    );
    let payload = Payload { boot, root, hash };
    let manifest = Manifest::for_files(&payload, &root_hash).unwrap();
    let image = std::fs::read(&img).unwrap();
    let open =
        |bytes: Vec<u8>| SlotDisk::open(MemDisk::new(bytes), Path::new("mem"), None).unwrap();

    let reference = open(image.clone());
    let old_words = reference.words();
    let contents = |disk: &SlotDisk<MemDisk>, part: Part, len: usize| -> Vec<u8> {
        let r = disk.region(Slot::B, part).unwrap();
        disk.io_ref().bytes()[r.offset as usize..r.offset as usize + len].to_vec()
    };
    let old_parts: Vec<Vec<u8>> = Part::ALL
        .iter()
        .map(|&p| contents(&reference, p, manifest.image(p).size as usize))
        .collect();
    let new_parts: Vec<Vec<u8>> = Part::ALL
        .iter()
        .map(|&p| std::fs::read(payload.path(p)).unwrap())
        .collect();

    let options = InstallOptions {
        allow_downgrade: false,
        signature: Signature::Unchecked,
    };
    let mut full = open(image.clone());
    install(&mut full, Slot::A, &manifest, &payload, &options).unwrap();
    let total = full.into_inner().writes();

    let mut outcomes = [0usize; 3];
    for cut in 0..=total {
        for tear in [false, true] {
            let mut mem = MemDisk::new(image.clone());
            mem.cut_after_writes(cut);
            mem.tear_cut_write(tear);
            let mut disk = SlotDisk::open(mem, Path::new("mem"), None).unwrap();
            let result = install(&mut disk, Slot::A, &manifest, &payload, &options);
            assert_eq!(result.is_ok(), cut == total, "cut {cut}");
            let after = open(disk.into_inner().into_bytes());
            let b = after.words().attrs(Slot::B);
            let parts: Vec<Vec<u8>> = Part::ALL
                .iter()
                .map(|&p| contents(&after, p, manifest.image(p).size as usize))
                .collect();
            assert_eq!(after.words().a, old_words.a, "cut {cut}: A untouched");
            if b.eligible() {
                assert_eq!(
                    after.words(),
                    old_words,
                    "cut {cut}: eligible only as before"
                );
                assert_eq!(parts, old_parts, "cut {cut}: old B untouched");
                outcomes[0] += 1;
            } else if b.tries() > 0 {
                assert_eq!(parts, new_parts, "cut {cut}: valid only when complete");
                assert_eq!(b.priority(), 0);
                outcomes[2] += 1;
            } else {
                assert_eq!((b.priority(), b.successful()), (0, false), "cut {cut}");
                outcomes[1] += 1;
            }
        }
    }
    assert!(
        outcomes.iter().all(|&n| n > 0),
        "every outcome was reached: {outcomes:?}"
    );
}
