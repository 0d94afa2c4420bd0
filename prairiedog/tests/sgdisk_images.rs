//! The disk layer on images made by the real sgdisk: 512- and 4096-byte sectors, a corrupt
//! primary, a corrupt backup, both corrupt, and two disks with the same GUIDs.

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
use prairiedog::decide::{decide, SlotWords, DEFAULT_UNHEALTHY_LIMIT};
use prairiedog::disk::{Part, SlotDisk};
use prairiedog::{transition, Slot};
use std::fs::{File, OpenOptions};
use std::path::Path;

type Step = fn(SlotWords) -> SlotWords;

fn open(path: &Path) -> SlotDisk<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    SlotDisk::open(f, path, None).unwrap()
}

/// Bits outside 48-59 that must survive (bit 0 "required", bit 63 a type-specific bit).
const FOREIGN: u64 = 0x8000_0000_0000_0001;

#[test]
fn layout_and_transitions_for_both_sector_sizes() {
    for sector in [512u32, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let a0 = w(2, 0, 1, 0) | FOREIGN;
        let img = make_image(dir.path(), "disk.img", sector, a0, w(1, 0, 1, 0));
        let mut disk = open(&img);
        assert_eq!(disk.gpt().sector_size().bytes(), u64::from(sector));
        let l = disk.layout();
        assert_eq!((l.a.boot, l.a.root, l.a.hash), (2, 3, 4), "{sector}");
        assert_eq!((l.b.boot, l.b.root, l.b.hash), (5, 6, 7), "{sector}");
        assert_eq!((l.private, l.data), (Some(8), Some(9)));
        let root_b = disk.region(Slot::B, Part::Root).unwrap();
        assert_eq!(root_b.len, 2 << 20);
        assert_eq!(root_b.offset % u64::from(sector), 0);
        let words = disk.words();
        assert_eq!((words.a, words.b), (a0, w(1, 0, 1, 0)));

        // The update lifecycle, each step written and checked with sgdisk -i.
        let steps: [(&str, Step); 3] = [
            ("clear-inactive", |w| transition::clear_inactive(w, Slot::A)),
            ("mark-inactive-valid", |w| {
                transition::mark_inactive_valid(w, Slot::A).unwrap()
            }),
            ("upgrade-to-inactive", |w| {
                transition::upgrade_to_inactive(w, Slot::A).unwrap()
            }),
        ];
        for (name, step) in steps {
            let new = step(disk.words());
            assert!(disk.store(new).unwrap(), "{name} writes");
            assert_eq!(sgdisk_attrs(&img, sector, 2), new.a, "{sector} {name} A");
            assert_eq!(sgdisk_attrs(&img, sector, 5), new.b, "{sector} {name} B");
            disk = open(&img);
            assert_eq!(disk.words(), new);
        }
        assert_eq!(sgdisk_attrs(&img, sector, 2), w(1, 0, 1, 0) | FOREIGN);
        assert_eq!(sgdisk_attrs(&img, sector, 5), w(2, 1, 0, 0));
        assert!(sgdisk_clean(&img, sector));

        // A store without a change does not write.
        let before = std::fs::read(&img).unwrap();
        let mtime = std::fs::metadata(&img).unwrap().modified().unwrap();
        assert!(!disk.store(disk.words()).unwrap());
        assert_eq!(std::fs::read(&img).unwrap(), before);
        assert_eq!(std::fs::metadata(&img).unwrap().modified().unwrap(), mtime);

        // PID 1 boots B: its try is spent, and sgdisk sees it.
        let d = decide(disk.words(), Slot::B, false, DEFAULT_UNHEALTHY_LIMIT);
        disk.store(d.new).unwrap();
        assert_eq!(sgdisk_attrs(&img, sector, 5), w(2, 0, 0, 0));
    }
}

fn header_offsets(img: &Path, sector: u64) -> (u64, u64) {
    let len = std::fs::metadata(img).unwrap().len();
    (sector, len - sector)
}

#[test]
fn a_corrupt_copy_is_read_from_the_good_one_and_repaired_on_the_next_write() {
    for sector in [512u32, 4096] {
        for corrupt_primary in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let img = make_image(dir.path(), "d.img", sector, w(2, 0, 1, 0), w(1, 0, 1, 0));
            let (primary, backup) = header_offsets(&img, u64::from(sector));
            // Flip bytes inside the header's disk GUID field: CRC mismatch.
            smash(
                &img,
                if corrupt_primary { primary } else { backup } + 60,
                4,
                0xa5,
            );
            let mut disk = open(&img);
            let h = disk.health().clone();
            assert_eq!(h.primary.is_some(), corrupt_primary, "{sector}");
            assert_eq!(h.backup.is_some(), !corrupt_primary, "{sector}");
            assert_eq!(
                (disk.words().a, disk.words().b),
                (w(2, 0, 1, 0), w(1, 0, 1, 0))
            );
            assert!(!sgdisk_clean(&img, sector), "sgdisk sees the damage");
            // Nothing changed: no write, so no repair yet.
            assert!(!disk.store(disk.words()).unwrap());
            assert!(!sgdisk_clean(&img, sector));
            let new = transition::rollback_to_inactive(disk.words(), Slot::A).unwrap();
            assert!(disk.store(new).unwrap());
            assert!(
                sgdisk_clean(&img, sector),
                "{sector} {corrupt_primary}: repaired"
            );
            assert_eq!(sgdisk_attrs(&img, sector, 2), w(1, 0, 1, 0));
            assert_eq!(sgdisk_attrs(&img, sector, 5), w(2, 0, 1, 0));
            assert!(open(&img).health().is_clean());
        }
    }
}

#[test]
fn both_copies_corrupt_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "d.img", 512, w(2, 0, 1, 0), w(1, 0, 1, 0));
    let (primary, backup) = header_offsets(&img, 512);
    smash(&img, primary + 60, 4, 0xa5);
    smash(&img, backup + 60, 4, 0xa5);
    let f = File::open(&img).unwrap();
    let err = SlotDisk::open(f, &img, None).unwrap_err().to_string();
    assert!(err.contains("both GPT copies"), "{err}");
    assert!(
        err.contains(img.to_str().unwrap()),
        "names the device: {err}"
    );
}

#[test]
fn a_clone_with_the_same_guids_is_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let boot = make_image(dir.path(), "boot.img", 512, w(2, 0, 1, 0), w(1, 0, 1, 0));
    let clone = dir.path().join("clone.img");
    std::fs::copy(&boot, &clone).unwrap();
    let clone_bytes = std::fs::read(&clone).unwrap();
    let mut disk = open(&boot);
    let new = transition::rollback_to_inactive(disk.words(), Slot::A).unwrap();
    disk.store(new).unwrap();
    assert_eq!(sgdisk_attrs(&boot, 512, 5), w(2, 0, 1, 0));
    assert_eq!(
        std::fs::read(&clone).unwrap(),
        clone_bytes,
        "the clone is untouched"
    );
}

#[test]
fn a_missing_slot_partition_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "d.img", 512, 0, 0);
    sgdisk(&img, 512, &["-d=7".to_owned()]);
    let err = SlotDisk::open(File::open(&img).unwrap(), &img, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no HASH partition for slot B"), "{err}");
}

#[test]
fn a_block_device_is_read_with_its_logical_sector_size() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "d.img", 4096, w(2, 0, 1, 0), w(1, 0, 1, 0));
    let dev = Loop::attach(&img, 4096);
    let mut disk = prairiedog::host::open_disk(&dev.0, true).unwrap();
    assert_eq!(disk.gpt().sector_size().bytes(), 4096);
    assert_eq!(disk.layout().esp, Some(1));
    let new = transition::rollback_to_inactive(disk.words(), Slot::A).unwrap();
    assert!(disk.store(new).unwrap());
    drop(disk);
    drop(dev);
    assert_eq!(sgdisk_attrs(&img, 4096, 5), w(2, 0, 1, 0));
}
