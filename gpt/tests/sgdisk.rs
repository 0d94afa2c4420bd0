//! The reader and writer against images made and checked by the real `sgdisk`.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::path::Path;

use gpt::mbr::ProtectiveMbr;
use gpt::testing::MemDisk;
use gpt::{Error, Gpt, Problem, SectorSize};
use support::*;

const SECTORS: [u32; 2] = [512, 4096];

fn ss(sector: u32) -> SectorSize {
    SectorSize::new(sector).unwrap()
}

fn load(image: &Path) -> MemDisk {
    MemDisk::new(std::fs::read(image).unwrap())
}

fn store(image: &Path, disk: &MemDisk) {
    std::fs::write(image, disk.bytes()).unwrap();
}

#[test]
fn reads_what_sgdisk_wrote() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let file = std::fs::File::open(&image).unwrap();
        for hint in [None, Some(ss(sector))] {
            let t = Gpt::read(&file, &image, hint).unwrap();
            assert_eq!(t.sector_size(), ss(sector));
            assert!(t.health().is_clean(), "{:?}", t.health());
            assert_eq!(t.disk_guid().to_string(), DISK_GUID);
            assert_eq!(t.entries().len(), 128);
            assert_eq!(t.used().count(), 9);
            for (n, e) in t.used() {
                let want = sgdisk_info(sector, &image, n);
                let got = SgdiskPart {
                    type_guid: e.type_guid.to_string(),
                    unique_guid: e.unique_guid.to_string(),
                    first: e.first_lba,
                    last: e.last_lba,
                    attributes: e.attributes,
                    name: e.name(),
                };
                assert_eq!(got, want, "{sector}-byte sectors, partition {n}");
            }
            let (n, _) = t.find_by_name("DATA").unwrap();
            assert_eq!(n, 9);
            assert_eq!(t.find_by_type(gpt::types::BOOT).unwrap().0, 2);
        }
    }
}

#[test]
fn unchanged_rewrite_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let mut disk = load(&image);
        let mut t = Gpt::read(&disk, &image, None).unwrap();
        let before = t.clone();
        t.write(&mut disk, &image).unwrap();
        assert_eq!(t, before);
        assert!(
            disk.bytes() == std::fs::read(&image).unwrap().as_slice(),
            "{sector}: bytes changed"
        );
        assert_eq!(disk.syncs(), 2);
    }
}

/// Our attribute and name changes give the same bytes as sgdisk making the same change.
#[test]
fn changes_match_sgdisk_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let mut disk = load(&image);
        sgdisk_ok(
            sector,
            &image,
            &[
                "--attributes=5:set:56",
                "--attributes=2:clear:49",
                "--change-name=8:STATE",
            ],
        );
        let mut t = Gpt::read(&disk, &image, None).unwrap();
        let original = t.clone();
        let boot_b = t.partition_mut(5).unwrap();
        boot_b.attributes |= 1 << 56;
        t.partition_mut(2).unwrap().attributes &= !(1 << 49);
        t.partition_mut(8).unwrap().set_name("STATE").unwrap();
        assert_ne!(t, original);
        t.write(&mut disk, &image).unwrap();
        assert!(
            disk.bytes() == std::fs::read(&image).unwrap().as_slice(),
            "{sector}: differs from sgdisk"
        );
    }
}

/// Damage applied to a fresh image, what the reader must say, and that a write repairs it
/// to the original bytes.
#[test]
fn damaged_copies_are_reported_and_repaired() {
    type Damage = fn(&mut Vec<u8>, usize);
    let cases: [(&str, Damage, Option<&str>, Option<&str>); 6] = [
        (
            "primary header CRC",
            |d, s| d[s + 40] ^= 1,
            Some("header CRC32"),
            None,
        ),
        (
            "primary entries",
            |d, s| d[2 * s + 100] ^= 1,
            Some("entry array CRC32"),
            None,
        ),
        (
            "primary signature",
            |d, s| d[s] = b'X',
            Some("signature"),
            None,
        ),
        (
            "backup header CRC",
            |d, s| {
                let l = d.len() - s;
                d[l + 40] ^= 1
            },
            None,
            Some("header CRC32"),
        ),
        (
            "backup entries",
            |d, s| {
                let l = d.len() - 2 * s;
                d[l] ^= 1
            },
            None,
            Some("entry array CRC32"),
        ),
        (
            "missing backup",
            |d, s| {
                let l = d.len() - s;
                d[l..].fill(0)
            },
            None,
            Some("signature"),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let pristine = std::fs::read(&image).unwrap();
        let clean = Gpt::read(&MemDisk::new(pristine.clone()), &image, None).unwrap();
        for (what, damage, primary, backup) in cases {
            let mut bytes = pristine.clone();
            damage(&mut bytes, sector as usize);
            let mut disk = MemDisk::new(bytes);
            let mut t = Gpt::read(&disk, &image, None).unwrap();
            let h = t.health().clone();
            let msg = |p: &Option<Problem>| p.as_ref().map(|p| p.to_string());
            assert_eq!(
                h.primary.is_some(),
                primary.is_some(),
                "{sector} {what}: {h:?}"
            );
            assert_eq!(
                h.backup.is_some(),
                backup.is_some(),
                "{sector} {what}: {h:?}"
            );
            for (got, want) in [(msg(&h.primary), primary), (msg(&h.backup), backup)] {
                if let (Some(got), Some(want)) = (got, want) {
                    assert!(
                        got.contains(want),
                        "{sector} {what}: {got:?} lacks {want:?}"
                    );
                }
            }
            assert_eq!(t.entries(), clean.entries(), "{sector} {what}");
            t.write(&mut disk, &image).unwrap();
            assert!(t.health().is_clean());
            assert!(
                disk.bytes() == pristine.as_slice(),
                "{sector} {what}: repair differs from sgdisk's image"
            );
        }
    }
}

#[test]
fn repaired_image_passes_sgdisk_verify() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let mut bytes = std::fs::read(&image).unwrap();
        let s = sector as usize;
        bytes[s + 24] ^= 0xff; // primary my_lba
        let mut disk = MemDisk::new(bytes);
        store(&image, &disk);
        assert!(!sgdisk_verifies(sector, &image));
        let mut t = Gpt::read(&disk, &image, None).unwrap();
        assert!(t.health().primary.is_some());
        t.write(&mut disk, &image).unwrap();
        store(&image, &disk);
        assert!(sgdisk_verifies(sector, &image), "{sector}");
    }
}

#[test]
fn both_copies_bad_or_no_gpt_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let mut bytes = std::fs::read(&image).unwrap();
        let s = sector as usize;
        let l = bytes.len() - s;
        bytes[s + 40] ^= 1;
        bytes[l + 40] ^= 1;
        let err = Gpt::read(&MemDisk::new(bytes.clone()), &image, Some(ss(sector))).unwrap_err();
        assert!(matches!(err, Error::Damaged { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&image.display().to_string()) && text.contains("both"),
            "{text}"
        );

        bytes[s..s + 8].fill(0);
        bytes[l..l + 8].fill(0);
        let err = Gpt::read(&MemDisk::new(bytes), &image, None).unwrap_err();
        assert!(matches!(err, Error::NotGpt { .. }), "{err:?}");
    }
    let err = Gpt::read(&MemDisk::zeroed(1 << 20), Path::new("/dev/zero-disk"), None).unwrap_err();
    assert!(
        err.to_string().contains("/dev/zero-disk has no GPT"),
        "{err}"
    );
}

/// A primary-only reader: the backup is found through the primary's alternate LBA even
/// when the disk grew and it is no longer in the last sector; moving it matches `sgdisk -e`.
#[test]
fn grown_disk_and_move_backup_to_end_match_sgdisk_e() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap();
        f.set_len(96 << 20).unwrap();
        drop(f);
        let mut disk = load(&image);
        let mut t = Gpt::read(&disk, &image, None).unwrap();
        assert!(t.health().is_clean(), "{:?}", t.health());
        let old_backup = t.backup_lba();
        assert!(old_backup < t.disk_last_lba());
        assert!(t.move_backup_to_end().unwrap());
        assert_eq!(t.backup_lba(), t.disk_last_lba());
        t.write(&mut disk, &image).unwrap();
        assert!(
            !t.move_backup_to_end().unwrap(),
            "second move changed something"
        );
        let mut mbr = ProtectiveMbr::read(&disk, &image).unwrap();
        assert!(mbr.fit_to_disk(t.disk_last_lba() + 1));
        mbr.write(&mut disk, &image).unwrap();

        sgdisk_ok(sector, &image, &["-e"]);
        let theirs = std::fs::read(&image).unwrap();
        let s = sector as usize;
        let old = old_backup as usize * s;
        // sgdisk leaves the old backup header in place; we wipe it. Everything else agrees.
        assert!(theirs[old..old + 8] == *b"EFI PART");
        assert!(
            disk.bytes()[old..old + s].iter().all(|&b| b == 0),
            "{sector}: old backup not wiped"
        );
        let mut ours = disk.bytes().to_vec();
        ours[old..old + s].copy_from_slice(&theirs[old..old + s]);
        assert!(ours == theirs, "{sector}: differs from sgdisk -e");
        store(&image, &disk);
        assert!(sgdisk_verifies(sector, &image));
    }
}

/// Duplicate unique GUIDs, made by sgdisk (which accepts them and whose -v does not flag
/// them): reported, and a PARTUUID lookup refuses to pick one.
#[test]
fn duplicate_unique_guids_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let dup = "000000a2-0000-4000-8000-000000000002"; // partition 2's GUID
        sgdisk_ok(
            sector,
            &image,
            &[
                &format!("--partition-guid=5:{dup}"),
                &format!("--partition-guid=9:{dup}"),
            ],
        );
        assert!(sgdisk_verifies(sector, &image));
        let t = Gpt::read(&load(&image), &image, None).unwrap();
        assert!(t.health().is_clean());
        assert_eq!(t.duplicate_unique_guids(), vec![(2, 5), (2, 9), (5, 9)]);
        assert!(t.find_by_unique_guid(dup.parse().unwrap()).is_none());
        let (n, e) = t
            .find_by_unique_guid("000000a3-0000-4000-8000-000000000003".parse().unwrap())
            .unwrap();
        assert_eq!((n, e.name().as_str()), (3, "ROOT-A"));
    }
    let clean = liftoff_image(dir.path(), 512, 64);
    assert!(Gpt::read(&load(&clean), &clean, None)
        .unwrap()
        .duplicate_unique_guids()
        .is_empty());
}

/// A new table made from the entries sgdisk wrote is the bytes `sgdisk -o --new ...` made,
/// protective MBR included, for both sector sizes.
#[test]
fn new_table_matches_sgdisk_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let theirs = std::fs::read(&image).unwrap();
        let read = Gpt::read(&load(&image), &image, Some(ss(sector))).unwrap();
        let partitions: Vec<_> = read.used().map(|(_, e)| e.clone()).collect();
        let mut t = Gpt::new(ss(sector), 64 << 20, read.disk_guid(), partitions).unwrap();
        let mut disk = MemDisk::zeroed(64 << 20);
        ProtectiveMbr::new((64 << 20) / u64::from(sector))
            .write(&mut disk, &image)
            .unwrap();
        t.write(&mut disk, &image).unwrap();
        assert!(
            disk.bytes() == theirs.as_slice(),
            "{sector}: differs from sgdisk"
        );
    }
}

/// A new table refuses what cannot be laid out: too many partitions, a partition past the
/// usable range, overlaps, a disk too small for both copies.
#[test]
fn new_table_refuses_impossible_layouts() {
    let part = |first, last| {
        gpt::Entry::new(
            gpt::types::DATA,
            gpt::Guid::from_u128(1),
            first,
            last,
            0,
            "P",
        )
        .unwrap()
    };
    let mib = 1 << 20;
    for sector in SECTORS {
        let s = ss(sector);
        let lbas = mib / u64::from(sector);
        let ok = Gpt::new(s, mib, gpt::Guid::from_u128(9), vec![]).unwrap();
        assert_eq!(ok.first_usable_lba(), 2 + 16384 / u64::from(sector));
        assert_eq!(ok.last_usable_lba(), lbas - 2 - 16384 / u64::from(sector));
        assert_eq!(ok.entries().len(), 128);
        let cases = [
            vec![part(ok.first_usable_lba() - 1, ok.first_usable_lba() + 1)],
            vec![part(ok.last_usable_lba(), ok.last_usable_lba() + 1)],
            vec![part(40, 50), part(50, 60)],
            vec![part(40, 40); 129],
        ];
        for parts in cases {
            assert!(Gpt::new(s, mib, gpt::Guid::NIL, parts).is_err());
        }
        assert!(matches!(
            Gpt::new(s, 8 * u64::from(sector), gpt::Guid::NIL, vec![]),
            Err(Problem::UsableRange { .. })
        ));
    }
}
