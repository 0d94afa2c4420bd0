//! FAT images, the file system of the ESP and the BOOT partitions: made by `mkfs.vfat` and
//! mtools, the same bytes for the same inputs (volume ID from the seed, every time stamp at
//! [`FAT_EPOCH`], and in UTC: FAT stores local time, so mtools runs with `TZ=UTC`).
//!
//! A FAT's logical sector is the disk's (`mkfs.vfat -S`): Linux refuses to mount a FAT whose
//! sectors are smaller than the device's logical block, so a 4Kn disk gets 4096-byte FAT
//! sectors (UEFI's FAT driver and GRUB read both).

use std::path::Path;
use std::process::Command;

use gpt::SectorSize;

use crate::seed::seeded_guid;
use crate::tool::{io_err, run, ImageError};

/// The time stamp of every file in a FAT image: 1980-01-01 00:00:00 UTC, the earliest time
/// FAT can store (0, the Unix epoch, comes out as 2098 in a FAT directory entry).
pub const FAT_EPOCH: &str = "315532800";

/// Makes a FAT file system image of `mib` MiB with `sector`-byte logical sectors holding
/// `files` in its root folder. The volume ID comes from the seed (`-i` after `--invariant`,
/// which would set 1234-ABCD).
pub fn make_fat(
    out: &Path,
    mib: u64,
    sector: SectorSize,
    label: &str,
    seed: &str,
    files: &[(String, Vec<u8>)],
    work: &Path,
) -> Result<(), ImageError> {
    let _ = std::fs::remove_file(out);
    let volid = &seeded_guid(seed, label)[..8];
    run(Command::new("mkfs.vfat")
        .args(["-C", "-n", label, "--invariant", "-i", volid])
        .arg("-S")
        .arg(sector.bytes().to_string())
        .arg(out)
        .arg((mib * 1024).to_string())
        .env("TZ", "UTC"))?;
    for (name, data) in files {
        let staged = work.join(format!("fat-{name}"));
        std::fs::write(&staged, data).map_err(io_err(format!("writing {}", staged.display())))?;
        // A fixed modification time keeps the image reproducible.
        run(Command::new("touch")
            .arg("-d")
            .arg(format!("@{FAT_EPOCH}"))
            .arg(&staged))?;
        run(Command::new("mcopy")
            .arg("-m")
            .arg("-o")
            .arg("-i")
            .arg(out)
            .arg(&staged)
            .arg(format!("::/{name}"))
            .env("SOURCE_DATE_EPOCH", FAT_EPOCH)
            .env("TZ", "UTC"))?;
        let _ = std::fs::remove_file(&staged);
    }
    Ok(())
}

/// Makes a FAT image of `mib` MiB holding `files`, whose names may contain folders
/// (`EFI/BOOT/BOOTX64.EFI`): [`make_fat`] plus the folders, made with `mmd`.
/// Same inputs, same bytes. With only root-level names it makes what [`make_fat`] makes, so
/// [`crate::disk::build_disk`] can call it for the ESP to accept `EFI/BOOT/...` in
/// `DiskSpec::esp_files`.
pub fn make_fat_tree(
    out: &Path,
    mib: u64,
    sector: SectorSize,
    label: &str,
    seed: &str,
    files: &[(String, Vec<u8>)],
    work: &Path,
) -> Result<(), ImageError> {
    make_fat(out, mib, sector, label, seed, &[], work)?;
    let mut made: Vec<&str> = Vec::new();
    for (name, data) in files {
        // Every folder on the way, parents first: "EFI", then "EFI/BOOT".
        for folder in name.match_indices('/').filter_map(|(i, _)| name.get(..i)) {
            if !made.contains(&folder) {
                run(Command::new("mmd")
                    .arg("-i")
                    .arg(out)
                    .arg(format!("::/{folder}"))
                    .env("SOURCE_DATE_EPOCH", FAT_EPOCH)
                    .env("TZ", "UTC"))?;
                made.push(folder);
            }
        }
        let staged = work.join(format!("fat-{}", name.replace('/', "_")));
        std::fs::write(&staged, data).map_err(|source| ImageError::Io {
            what: format!("writing {}", staged.display()),
            source,
        })?;
        // A fixed modification time keeps the image reproducible.
        run(Command::new("touch")
            .arg("-d")
            .arg(format!("@{FAT_EPOCH}"))
            .arg(&staged))?;
        run(Command::new("mcopy")
            .args(["-m", "-o", "-i"])
            .arg(out)
            .arg(&staged)
            .arg(format!("::/{name}"))
            .env("SOURCE_DATE_EPOCH", FAT_EPOCH)
            .env("TZ", "UTC"))?;
        let _ = std::fs::remove_file(&staged);
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use super::*;

    /// Folders are made, each file reads back byte for byte with `mtype`, and the same
    /// inputs give the same image.
    #[test]
    fn fat_tree_with_folders() {
        let dir = crate::test_work("fat");
        let files = vec![
            ("EFI/BOOT/BOOTX64.EFI".to_owned(), b"MZ efi".to_vec()),
            ("EFI/BOOT/extra".to_owned(), vec![7u8; 5000]),
            ("grubenv".to_owned(), b"# GRUB Environment Block\n".to_vec()),
        ];
        let one = dir.join("one.img");
        let two = dir.join("two.img");
        let s512 = SectorSize::S512;
        make_fat_tree(&one, 2, s512, "EFI-SYSTEM", "s", &files, &dir).unwrap();
        make_fat_tree(&two, 2, s512, "EFI-SYSTEM", "s", &files, &dir).unwrap();
        for (name, data) in &files {
            let out = Command::new("mtype")
                .arg("-i")
                .arg(&one)
                .arg(format!("::/{name}"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {out:?}");
            assert_eq!(&out.stdout, data, "{name}");
        }
        assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
        // The seeded volume ID and the fixed time, as mtools lists them.
        let out = Command::new("mdir")
            .arg("-i")
            .arg(&one)
            .arg("::/EFI/BOOT")
            .env("TZ", "UTC")
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        let id = seeded_guid("s", "EFI-SYSTEM")[..8].to_uppercase();
        assert!(
            listing.contains(&format!(
                "Volume Serial Number is {}-{}",
                &id[..4],
                &id[4..]
            )),
            "{listing}"
        );
        assert!(listing.contains("BOOTX64  EFI"), "{listing}");
        for line in listing
            .lines()
            .filter(|l| l.contains("EFI ") || l.contains("extra"))
        {
            assert!(line.contains("1980-01-01   0:00"), "{line}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
