//! growpart against images made by `sgdisk` and enlarged with `truncate`, 512- and
//! 4096-byte sectors (the 4096 ones through the sector-size shim, see gpt's tests).

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../../gpt/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use gpt::testing::MemDisk;
use gpt::{Gpt, SectorSize};
use growpart::{grow_table, Error, Options, PlanError, Target};

const WRITE: Options = Options {
    dry_run: false,
    repair: false,
};
const DRY: Options = Options {
    dry_run: true,
    repair: false,
};
const REPAIR: Options = Options {
    dry_run: false,
    repair: true,
};
use support::*;

const SECTORS: [u32; 2] = [512, 4096];

fn growpart(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_growpart"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn enlarge(image: &Path, mib: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    f.set_len(mib << 20).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The image with `sgdisk` and `truncate` (64 MiB grown to 100 MiB + 512 bytes, so the
/// new end is not aligned).
fn grown_image(dir: &Path, sector: u32) -> PathBuf {
    let image = liftoff_image(dir, sector, 64);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    f.set_len((100 << 20) + u64::from(sector)).unwrap();
    image
}

#[test]
fn grows_data_and_sgdisk_agrees() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = grown_image(dir.path(), sector);
        let before: Vec<_> = (1..=9).map(|n| sgdisk_info(sector, &image, n)).collect();
        let old = Gpt::read(&MemDisk::new(std::fs::read(&image).unwrap()), &image, None).unwrap();
        let old_backup = old.backup_lba();

        let (code, out, err) = growpart(&[s(&image)]);
        assert_eq!(code, 0, "{sector}: {out}{err}");
        assert!(out.starts_with("CHANGED: partition=9 "), "{out}");
        assert!(out.contains("kernel: skipped: not a block device"), "{out}");
        assert!(
            sgdisk_verifies(sector, &image),
            "{sector}: {}",
            sgdisk(sector, &image, &["-v"]).1
        );

        // The partition ends at the last 1 MiB-aligned sector before the backup array.
        let total = ((100u64 << 20) + u64::from(sector)) / u64::from(sector);
        let array = 16384 / u64::from(sector);
        let last_usable = total - 1 - array - 1;
        let align = (1 << 20) / u64::from(sector);
        let want_end = (last_usable + 1) / align * align - 1;
        let after: Vec<_> = (1..=9).map(|n| sgdisk_info(sector, &image, n)).collect();
        assert_eq!(after[8].last, want_end, "{sector}");
        assert!(want_end > before[8].last);
        // Everything else about every partition is unchanged.
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(
                (&b.type_guid, &b.unique_guid, b.first, b.attributes, &b.name),
                (&a.type_guid, &a.unique_guid, a.first, a.attributes, &a.name)
            );
        }
        for (b, a) in before.iter().zip(&after).take(8) {
            assert_eq!(b.last, a.last);
        }
        // The old backup header is gone, the new one is in the last sector.
        let bytes = std::fs::read(&image).unwrap();
        let at = |lba: u64| &bytes[(lba * u64::from(sector)) as usize..][..8];
        assert_eq!(
            at(old_backup),
            &[0u8; 8],
            "{sector}: old backup header still there"
        );
        assert_eq!(at(total - 1), b"EFI PART");
        // Protective MBR covers the new disk.
        let mbr_size = u32::from_le_bytes(bytes[446 + 12..446 + 16].try_into().unwrap());
        assert_eq!(u64::from(mbr_size), total - 1);

        // Idempotent: the second run changes nothing and says so.
        let (code, out, _) = growpart(&[s(&image), "9"]);
        assert_eq!(code, 1, "{out}");
        assert!(out.starts_with("NOCHANGE: partition 9 "), "{out}");
        assert!(std::fs::read(&image).unwrap() == bytes);
    }
}

/// The same result as sgdisk moving the backup (-e) and recreating partition 9 with the
/// same start, GUIDs, name and type and our end: identical bytes except the old backup
/// header, which sgdisk leaves behind and growpart wipes.
#[test]
fn byte_identical_to_sgdisk_doing_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = grown_image(dir.path(), sector);
        let theirs = dir.path().join("theirs.img");
        std::fs::copy(&image, &theirs).unwrap();
        let old = Gpt::read(&MemDisk::new(std::fs::read(&image).unwrap()), &image, None).unwrap();
        let (code, out, err) = growpart(&[s(&image)]);
        assert_eq!(code, 0, "{out}{err}");
        let p9 = sgdisk_info(sector, &image, 9);
        sgdisk_ok(
            sector,
            &theirs,
            &[
                "-e",
                "-d",
                "9",
                &format!("--new=9:{}:{}", p9.first, p9.last),
                &format!("--typecode=9:{}", p9.type_guid),
                &format!("--change-name=9:{}", p9.name),
                &format!("--partition-guid=9:{}", p9.unique_guid),
            ],
        );
        let ours = std::fs::read(&image).unwrap();
        let mut theirs = std::fs::read(&theirs).unwrap();
        let o = (old.backup_lba() * u64::from(sector)) as usize;
        assert_eq!(&theirs[o..o + 8], b"EFI PART");
        theirs[o..o + sector as usize].fill(0);
        assert!(ours == theirs, "{sector}: growpart and sgdisk differ");
    }
}

#[test]
fn ungrown_disk_is_nochange_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = liftoff_image(dir.path(), sector, 64);
        let bytes = std::fs::read(&image).unwrap();
        for args in [
            vec![s(&image)],
            vec![s(&image), "9"],
            vec!["--dry-run", s(&image)],
        ] {
            let (code, out, _) = growpart(&args);
            assert_eq!(code, 1, "{args:?}: {out}");
            assert!(out.starts_with("NOCHANGE"), "{out}");
        }
        let (code, out, _) = growpart(&["--json", s(&image)]);
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["outcome"], "nochange");
        assert_eq!(v["written"], false);
        assert!(std::fs::read(&image).unwrap() == bytes);
    }
}

#[test]
fn dry_run_and_json() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = grown_image(dir.path(), sector);
        let bytes = std::fs::read(&image).unwrap();
        let (code, out, _) = growpart(&["--dry-run", s(&image)]);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("CHANGE: partition=9"), "{out}");
        let (code, out, _) = growpart(&["--dry-run", "--json", s(&image)]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["outcome"], "change");
        assert_eq!(v["sector_size"], sector);
        assert_eq!(v["written"], false);
        assert!(std::fs::read(&image).unwrap() == bytes, "dry run wrote");

        let (code, out, _) = growpart(&["--json", s(&image)]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["outcome"], "changed");
        assert_eq!(v["partition"], 9);
        assert_eq!(v["written"], true);
        assert_eq!(v["kernel"], "skipped: not a block device");
        assert!(v["new"]["size_bytes"].as_u64() > v["old"]["size_bytes"].as_u64());
    }
}

/// Each bad input: exit 2, one clear message, the image untouched.
#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let image = grown_image(dir.path(), 512);
    let damaged = dir.path().join("damaged.img");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[512 + 40] ^= 1;
    std::fs::write(&damaged, &bytes).unwrap();
    let zeros = dir.path().join("zeros.img");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let shrunk = dir.path().join("shrunk.img");
    std::fs::copy(liftoff_image(dir.path(), 512, 64), &shrunk).unwrap();
    enlarge(&shrunk, 48);
    let shrunk4k = dir.path().join("shrunk4k.img");
    std::fs::copy(liftoff_image(dir.path(), 4096, 64), &shrunk4k).unwrap();
    enlarge(&shrunk4k, 40);
    let missing = dir.path().join("missing.img");
    let no_data = dir.path().join("nodata.img");
    std::fs::File::create(&no_data)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    sgdisk_ok(
        512,
        &no_data,
        &["-o", "--new=1:0:0", "--change-name=1:ROOT-A"],
    );
    enlarge(&no_data, 16);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![s(&zeros)], "is not a GPT disk"),
        (
            vec![s(&image), "0"],
            "partition number 0 is out of range (the table has entries 1-128)",
        ),
        (
            vec![s(&image), "129"],
            "partition number 129 is out of range",
        ),
        (vec![s(&image), "10"], "partition 10 does not exist"),
        (
            vec![s(&image), "8"],
            "partition 8 is not the last one on the disk: partition 9 follows it",
        ),
        (vec![s(&image), "1"], "partition 1 is not the last one"),
        (
            vec![s(&damaged)],
            "is damaged (primary: header CRC32 mismatch",
        ),
        (
            vec![s(&damaged), "--dry-run"],
            "is damaged (primary: header CRC32 mismatch",
        ),
        (vec![s(&shrunk)], "is smaller than its GPT"),
        (
            vec![s(&shrunk4k)],
            "is smaller than its GPT (backup header at LBA 16383 is past the end)",
        ),
        (vec![s(&missing)], "opening"),
        (vec![s(&no_data)], "has no DATA partition"),
    ];
    for (args, want) in cases {
        let snapshot: Vec<_> = [&image, &damaged, &zeros, &shrunk, &shrunk4k, &no_data]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        let (code, out, err) = growpart(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        let after: Vec<_> = [&image, &damaged, &zeros, &shrunk, &shrunk4k, &no_data]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert!(snapshot == after, "{args:?} changed a file");
    }
    // --json reports errors as JSON too (and still one line on stderr).
    let (code, out, err) = growpart(&["--json", s(&image), "8"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "error");
    assert!(
        v["error"].as_str().unwrap().contains("not the last one"),
        "{v}"
    );
    assert_eq!(err.lines().count(), 1);
    // The same disk grows partition 1 when asked by number.
    let (code, out, _) = growpart(&[s(&no_data), "1"]);
    assert_eq!(code, 0, "{out}");
    // With --repair the damaged copy is rewritten while growing.
    let (code, out, err) = growpart(&["--repair", s(&damaged)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("repaired-primary: header CRC32 mismatch"),
        "{out}"
    );
    assert!(sgdisk_verifies(512, &damaged));
}

#[test]
fn read_only_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = grown_image(dir.path(), 512);
    let bytes = std::fs::read(&image).unwrap();
    let mut disk = MemDisk::new(bytes.clone());
    disk.set_read_only(true);
    let err = grow_table(&mut disk, &image, None, Target::Data, WRITE).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(err
        .to_string()
        .contains("is read-only; nothing was changed"));
    assert!(disk.bytes() == bytes.as_slice());
    // A dry run on a read-only device is fine.
    let out = grow_table(&mut disk, &image, None, Target::Data, DRY).unwrap();
    assert!(out.plan.grows_partition());
}

#[test]
fn plan_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let image = grown_image(dir.path(), 4096);
    let bytes = std::fs::read(&image).unwrap();
    let cases = [
        (
            Target::Number(0),
            PlanError::NoSuchPartition {
                number: 0,
                entries: 128,
            },
        ),
        (
            Target::Number(300),
            PlanError::NoSuchPartition {
                number: 300,
                entries: 128,
            },
        ),
        (
            Target::Number(12),
            PlanError::UnusedPartition { number: 12 },
        ),
        (Target::Number(2), PlanError::NotLast { number: 2, next: 3 }),
    ];
    for (target, want) in cases {
        let mut disk = MemDisk::new(bytes.clone());
        match grow_table(&mut disk, &image, Some(SectorSize::S4096), target, WRITE) {
            Err(Error::Partition { source, .. }) => assert_eq!(source, want),
            other => panic!("{target:?}: {other:?}"),
        }
        assert!(disk.bytes() == bytes.as_slice());
    }
}

/// Power cut after every write of the grow sequence, torn or not: the table always reads
/// back (both copies checked), partition 9 is either its old or its new size, never lost,
/// and a rerun finishes with exactly the bytes of an uninterrupted run.
#[test]
fn crash_at_every_write_keeps_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    for sector in SECTORS {
        let image = grown_image(dir.path(), sector);
        let bytes = std::fs::read(&image).unwrap();
        let old = Gpt::read(&MemDisk::new(bytes.clone()), &image, None).unwrap();
        let old_p9 = old.partition(9).unwrap().clone();
        let mut full = MemDisk::new(bytes.clone());
        let out = grow_table(&mut full, &image, None, Target::Data, WRITE).unwrap();
        let plan = out.plan;
        assert!(plan.grows_partition() && plan.moves_backup() && out.mbr_updated);
        let total = full.writes();
        assert_eq!(
            total, 6,
            "backup array+header, primary array+header, wipe, MBR"
        );
        for n in 0..total {
            for tear in [false, true] {
                let ctx = format!("{sector}: cut after {n} writes, tear {tear}");
                let mut disk = MemDisk::new(bytes.clone());
                disk.cut_after_writes(n);
                disk.tear_cut_write(tear);
                assert!(
                    grow_table(&mut disk, &image, None, Target::Data, WRITE).is_err(),
                    "{ctx}"
                );
                let cut = disk.into_bytes();
                let t = Gpt::read(&MemDisk::new(cut.clone()), &image, None)
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let p9 = t.partition(9).unwrap();
                assert_eq!(p9.first_lba, old_p9.first_lba, "{ctx}");
                assert!(
                    p9.last_lba == old_p9.last_lba || p9.last_lba == plan.new_last_lba,
                    "{ctx}: {}",
                    p9.last_lba
                );
                assert_eq!(
                    (p9.unique_guid, p9.type_guid, p9.name()),
                    (old_p9.unique_guid, old_p9.type_guid, old_p9.name())
                );
                // The reboot reruns growpart (PID 1 repairs): it finishes the job.
                let mut again = MemDisk::new(cut);
                grow_table(&mut again, &image, None, Target::Data, REPAIR)
                    .unwrap_or_else(|e| panic!("{ctx}: rerun: {e}"));
                assert!(
                    again.bytes() == full.bytes(),
                    "{ctx}: rerun differs from an uninterrupted run"
                );
            }
        }
    }
}

/// The CLI on a file it cannot open for writing (immutable, so even root gets EPERM):
/// one clear error, nothing changed; a dry run still works. Needs `chattr +i` support in
/// the filesystem of the target directory.
#[test]
fn cli_refuses_a_read_only_disk() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let image = grown_image(dir.path(), 512);
    let bytes = std::fs::read(&image).unwrap();
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&image)
            .status()
            .map(|s| s.success())
    };
    if !matches!(chattr("+i"), Ok(true)) {
        eprintln!(
            "skipping: chattr +i is not supported under {}",
            dir.path().display()
        );
        return;
    }
    let (code, out, err) = growpart(&[s(&image)]);
    let (dry_code, dry_out, _) = growpart(&["--dry-run", s(&image)]);
    assert!(matches!(chattr("-i"), Ok(true)));
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err.trim(),
        format!(
            "FAILED: {0} is read-only; nothing was changed",
            image.display()
        )
    );
    assert_eq!(dry_code, 0, "{dry_out}");
    assert!(std::fs::read(&image).unwrap() == bytes);
}
