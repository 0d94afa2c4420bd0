//! grubenv rewritten in place inside a FAT file system made by the real mkfs.vfat and filled
//! by mtools (both installed by scripts/setup), as GRUB's save_env does: FAT12, FAT16 and
//! FAT32, in the root and in a subdirectory, with a fragmented cluster chain, at an offset.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::run;
use gpt::testing::MemDisk;
use prairiedog::disk::Region;
use prairiedog::fat;
use prairiedog::grubenv::GrubEnv;
use prairiedog::Slot;
use std::path::Path;
use std::process::Command;

fn mtools(cmd: &str, image: &Path, args: &[&str]) -> String {
    run(Command::new(cmd).arg("-i").arg(image).args(args))
}

/// A FAT image of `kib` KiB with one-sector clusters and a grubenv made by grub-editenv in
/// `/grubenv` and `/EFI/BOOT/grubenv`; with `fragment`, the root grubenv's two clusters are
/// not contiguous.
fn make_esp(dir: &Path, fat_bits: u32, kib: u32, fragment: bool) -> std::path::PathBuf {
    let img = dir.join(format!("esp{fat_bits}.img"));
    run(Command::new("mkfs.vfat")
        .args(["-F", &fat_bits.to_string(), "-s", "1", "-C"])
        .arg(&img)
        .arg(kib.to_string()));
    let env = dir.join("grubenv");
    run(Command::new("grub-editenv").arg(&env).arg("create"));
    run(Command::new("grub-editenv").arg(&env).args([
        "set",
        "liftoff_slot=A",
        "liftoff_pending=1",
    ]));
    if fragment {
        let small = dir.join("small");
        std::fs::write(&small, b"x").unwrap();
        mtools("mcopy", &img, &[small.to_str().unwrap(), "::/a"]);
        mtools("mcopy", &img, &[small.to_str().unwrap(), "::/b"]);
        mtools("mdel", &img, &["::/a"]);
    }
    mtools("mcopy", &img, &[env.to_str().unwrap(), "::/grubenv"]);
    mtools("mmd", &img, &["::/EFI", "::/EFI/BOOT"]);
    mtools(
        "mcopy",
        &img,
        &[env.to_str().unwrap(), "::/EFI/BOOT/grubenv"],
    );
    img
}

fn listing(img: &Path, path: &str) -> String {
    let out = img.with_extension("out");
    let _ = std::fs::remove_file(&out);
    mtools("mcopy", img, &[&format!("::{path}"), out.to_str().unwrap()]);
    run(Command::new("grub-editenv").arg(&out).arg("list"))
}

#[test]
fn grubenv_in_place_on_fat12_16_32() {
    // (FAT bits, KiB, fragmented)
    let cases = [
        (12u32, 2048u32, false),
        (12, 2048, true),
        (16, 16384, true),
        (32, 66000, true),
    ];
    for (bits, kib, fragment) in cases {
        let dir = tempfile::tempdir().unwrap();
        let img = make_esp(dir.path(), bits, kib, fragment);
        // Embed the file system 1 MiB into a bigger disk to exercise the partition offset.
        let fs = std::fs::read(&img).unwrap();
        let mut disk_bytes = vec![0u8; 1 << 20];
        disk_bytes.extend_from_slice(&fs);
        let mut disk = MemDisk::new(disk_bytes);
        let part = Region {
            offset: 1 << 20,
            len: fs.len() as u64,
        };
        // The third path is the second file again, in other case: it already holds B.
        let paths = [
            ("/grubenv", true),
            ("EFI/BOOT/grubenv", true),
            ("/efi/boot/GRUBENV", false),
        ];
        for (path, fresh) in paths {
            let file = fat::locate(&disk, part, path).unwrap();
            assert_eq!(file.size, 1024, "FAT{bits} {path}");
            // mtools reuses the freed cluster on FAT12/16; on FAT32 it follows the FSInfo
            // next-free hint, so the file stays contiguous there.
            if fragment && bits != 32 && path == "/grubenv" {
                assert!(
                    file.extents.len() >= 2,
                    "FAT{bits}: the chain is fragmented: {:?}",
                    file.extents
                );
            }
            let bytes = fat::read_file(&disk, &file).unwrap();
            let mut env = GrubEnv::parse(&bytes).unwrap();
            let want = if fresh {
                (Some(Slot::A), Some(true))
            } else {
                (Some(Slot::B), Some(false))
            };
            assert_eq!((env.slot(), env.pending()), want, "FAT{bits} {path}");
            env.set_liftoff(Slot::B, false).unwrap();
            fat::write_in_place(&mut disk, &file, env.as_bytes()).unwrap();
        }
        // Back to an image file for mtools and fsck.
        let bytes = disk.into_bytes();
        std::fs::write(&img, &bytes[1 << 20..]).unwrap();
        for path in ["/grubenv", "/EFI/BOOT/grubenv"] {
            assert_eq!(
                listing(&img, path),
                "liftoff_slot=B\nliftoff_pending=0\n",
                "FAT{bits} {path}"
            );
        }
        let fsck = Command::new("fsck.vfat")
            .arg("-n")
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "FAT{bits}: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
}

#[test]
fn errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_esp(dir.path(), 16, 16384, false);
    let disk = MemDisk::new(std::fs::read(&img).unwrap());
    let part = Region {
        offset: 0,
        len: 16384 * 1024,
    };
    let table: &[(&str, &str)] = &[
        ("/missing", "/missing not found"),
        ("/EFI", "is not a file"),
        ("/grubenv/x", "is not a directory"),
        ("/a-very-long-name", "not an 8.3 name"),
    ];
    for (path, want) in table {
        let err = fat::locate(&disk, part, path).unwrap_err().to_string();
        assert!(err.contains(want), "{path}: {err}");
    }
    let file = fat::locate(&disk, part, "/grubenv").unwrap();
    let mut disk2 = disk.clone();
    let err = fat::write_in_place(&mut disk2, &file, b"short")
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing"), "{err}");
    let zero = MemDisk::zeroed(1 << 20);
    assert!(fat::locate(
        &zero,
        Region {
            offset: 0,
            len: 1 << 20
        },
        "/grubenv"
    )
    .is_err());
}
