//! A state write cut at every write boundary (the cut write storing nothing or half of its
//! buffer), starting from a clean table, a corrupt primary and a corrupt backup: the table is
//! always readable afterwards and holds the old or the new state.

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
use prairiedog::decide::SlotWords;
use prairiedog::disk::SlotDisk;
use prairiedog::{transition, Slot};
use std::path::Path;

fn words_of(bytes: Vec<u8>) -> SlotWords {
    SlotDisk::open(MemDisk::new(bytes), Path::new("mem"), None)
        .expect("the table stays readable")
        .words()
}

#[test]
fn every_cut_leaves_old_or_new_state() {
    for sector in [512u32, 4096] {
        for damage in ["none", "primary", "backup"] {
            let dir = tempfile::tempdir().unwrap();
            let img = make_image(dir.path(), "d.img", sector, w(2, 0, 1, 0), w(1, 0, 1, 0));
            let len = std::fs::metadata(&img).unwrap().len();
            match damage {
                "primary" => smash(&img, u64::from(sector) + 60, 4, 0x5a),
                "backup" => smash(&img, len - u64::from(sector) + 60, 4, 0x5a),
                _ => {}
            }
            let image = std::fs::read(&img).unwrap();
            let old = words_of(image.clone());
            let new = transition::upgrade_to_inactive(
                transition::mark_inactive_valid(transition::clear_inactive(old, Slot::A), Slot::A)
                    .unwrap(),
                Slot::A,
            )
            .unwrap();
            assert_ne!(old, new);

            // How many writes a full store takes.
            let mut full =
                SlotDisk::open(MemDisk::new(image.clone()), Path::new("mem"), None).unwrap();
            assert!(full.store(new).unwrap());
            let total = full.into_inner().writes();
            assert!(total >= 4, "entries and header for each copy, got {total}");

            for cut in 0..=total {
                for tear in [false, true] {
                    let mut mem = MemDisk::new(image.clone());
                    mem.cut_after_writes(cut);
                    mem.tear_cut_write(tear);
                    let mut disk = SlotDisk::open(mem, Path::new("mem"), None).unwrap();
                    let result = disk.store(new);
                    let mem = disk.into_inner();
                    assert_eq!(result.is_ok(), cut == total, "{sector} {damage} cut {cut}");
                    let after = words_of(mem.into_bytes());
                    assert!(
                        after == old || after == new,
                        "{sector} {damage} cut after {cut} writes (tear {tear}): {after:?}"
                    );
                    if cut == total {
                        assert_eq!(after, new);
                    }
                }
            }
        }
    }
}
