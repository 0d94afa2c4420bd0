//! The boot files of a Liftoff disk and where they go (DESIGN.md sections 1, 3 and 5):
//! firmware loads GRUB from the ESP ([`crate::esp`]), GRUB reads grubenv and loads a slot's
//! kernel from its BOOT partition.
//!
//! | partition | file | made by |
//! |---|---|---|
//! | 1 `EFI-SYSTEM` | GRUB, `grubenv` | [`crate::esp::esp_files`] |
//! | 2 `BOOT-A`, 5 `BOOT-B` | `vmlinuz`, `initramfs` | the kernel image and the initramfs with PID 1 |
//! | 2 `BOOT-A`, 5 `BOOT-B` | `grub.cfg` | [`slot_grub_cfg`]: one line, `set liftoff_cmdline='...'` with [`slot_cmdline`] |
//!
//! GRUB appends `liftoff.boot_partuuid=` itself (`probe --part-uuid` on the BOOT partition it
//! loaded from), so the slot's files do not depend on the partition's GUID.
//!
//! # Lifecycle
//!
//! 1. [`crate::system::build`] makes (or reuses) the verified disk and [`crate::system::guest_disk`]
//!    copies it for one guest; the root hash is known only then, so the boot files are written
//!    after it, into the copy: [`install`] writes the ESP and the BOOT partitions'
//!    FAT images into their extents, and [`copy_slot_a_to_b`] gives slot B the same root.
//! 2. The runner (the `qemu` crate's `firmware` module) boots the copy through UEFI firmware.
//! 3. [`crate::esp::read_grubenv`] reads grubenv back from the disk with `mcopy` and
//!    `grub-editenv`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::disk::{self, BuiltDisk, Slot};
use crate::esp::esp_files;
use crate::fat::make_fat_tree;
use crate::tool::ImageError;
use crate::Arch;

/// A step of writing the boot files that failed.
#[derive(Debug)]
pub enum BootError {
    /// A host tool or file while building images.
    Image(ImageError),
    /// Reading or writing a file.
    Io { what: String, source: io::Error },
    /// A command line GRUB cannot carry in single quotes.
    Cmdline { cmdline: String },
    /// A FAT image larger than the partition it goes to.
    TooBig {
        partition: u32,
        image: u64,
        extent: u64,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Image(e) => e.fmt(f),
            BootError::Io { what, source } => write!(f, "{what}: {source}"),
            BootError::Cmdline { cmdline } => write!(
                f,
                "kernel command line {cmdline:?} holds a single quote or a newline, \
                 which a GRUB single-quoted word cannot carry"
            ),
            BootError::TooBig {
                partition,
                image,
                extent,
            } => write!(
                f,
                "FAT image of {image} bytes does not fit partition {partition} ({extent} bytes)"
            ),
        }
    }
}

impl std::error::Error for BootError {}

impl From<ImageError> for BootError {
    fn from(e: ImageError) -> Self {
        BootError::Image(e)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BootError {
    let what = what.into();
    move |source| BootError::Io { what, source }
}

/// The kernel command line of `slot` on `disk` (DESIGN.md section 6), without
/// `liftoff.boot_partuuid`, which GRUB adds: the slot, the root hash and salt, the serial
/// console of `arch`, `panic=-1` (a kernel that dies reboots, so GRUB's pending flag can make
/// the other slot boot) and `extra`.
pub fn slot_cmdline(arch: Arch, slot: Slot, disk: &BuiltDisk, extra: &str) -> String {
    format!(
        "liftoff.slot={} liftoff.roothash={} liftoff.salt={} console={} panic=-1 {extra}",
        slot.name(),
        disk.root_hash,
        disk.salt,
        arch.console()
    )
    .trim_end()
    .to_owned()
}

/// The slot's `grub.cfg` fragment that `grub/grub.cfg` sources: one `set` of
/// `liftoff_cmdline` in single quotes (no expansion), so the fragment cannot run anything.
pub fn slot_grub_cfg(cmdline: &str) -> Result<String, BootError> {
    if cmdline.contains(['\'', '\n', '\r']) {
        return Err(BootError::Cmdline {
            cmdline: cmdline.to_owned(),
        });
    }
    Ok(format!("set liftoff_cmdline='{cmdline}'\n"))
}

/// The files of a BOOT partition.
pub fn boot_files(
    kernel: &Path,
    initramfs: &[u8],
    cmdline: &str,
) -> Result<Vec<(String, Vec<u8>)>, BootError> {
    let vmlinuz = std::fs::read(kernel).map_err(io_err(format!("reading {}", kernel.display())))?;
    Ok(vec![
        ("vmlinuz".into(), vmlinuz),
        ("initramfs".into(), initramfs.to_vec()),
        ("grub.cfg".into(), slot_grub_cfg(cmdline)?.into_bytes()),
    ])
}

/// Writes a FAT file system with `files` over partition `number` of `disk` (the whole
/// extent: the image is made at the partition's size). Writes to the disk.
pub fn write_fat_partition(
    disk: &BuiltDisk,
    number: u32,
    label: &str,
    files: &[(String, Vec<u8>)],
    work: &Path,
) -> Result<(), BootError> {
    const MIB: u64 = 1024 * 1024;
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let (offset, extent) = disk.extent(number);
    let fat = work.join(format!("part{number}.fat"));
    make_fat_tree(&fat, extent / MIB, label, label, files, work)?;
    let image = std::fs::metadata(&fat)
        .map_err(io_err(format!("reading the size of {}", fat.display())))?
        .len();
    if image > extent {
        return Err(BootError::TooBig {
            partition: number,
            image,
            extent,
        });
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.path)
        .map_err(io_err(format!("opening {}", disk.path.display())))?;
    disk::write_at(&mut f, offset, &fat)?;
    f.sync_all()
        .map_err(io_err(format!("syncing {}", disk.path.display())))?;
    let _ = std::fs::remove_file(&fat);
    Ok(())
}

/// What [`install`] puts on a disk.
#[derive(Debug, Clone)]
pub struct Install {
    pub arch: Arch,
    /// grubenv on the ESP; `None` leaves it out.
    pub grubenv: Option<Vec<u8>>,
    /// The kernel image both slots boot.
    pub kernel: PathBuf,
    /// The initramfs with PID 1.
    pub initramfs: Vec<u8>,
    /// Which slots get a kernel; a slot left out keeps an unformatted BOOT partition.
    pub slots: Vec<Slot>,
    /// Added to each slot's command line ([`slot_cmdline`]).
    pub extra_cmdline: String,
}

/// Writes the ESP (GRUB and grubenv) and the BOOT partitions of `install.slots` into
/// `disk`. Writes to the disk.
pub fn install(disk: &BuiltDisk, install: &Install, work: &Path) -> Result<(), BootError> {
    let esp = esp_files(install.arch, install.grubenv.clone())?;
    write_fat_partition(disk, disk::ESP, "EFI-SYSTEM", &esp, work)?;
    for &slot in &install.slots {
        let cmdline = slot_cmdline(install.arch, slot, disk, &install.extra_cmdline);
        let files = boot_files(&install.kernel, &install.initramfs, &cmdline)?;
        let label = format!("BOOT-{}", slot.name());
        write_fat_partition(disk, slot.boot_partition(), &label, &files, work)?;
    }
    Ok(())
}

/// Copies ROOT-A and HASH-A into ROOT-B and HASH-B (same sizes on a Liftoff disk), so slot
/// B carries the same verified root and the same root hash. Writes to the disk.
pub fn copy_slot_a_to_b(disk: &BuiltDisk) -> Result<(), BootError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk.path)
        .map_err(io_err(format!("opening {}", disk.path.display())))?;
    for (from, to) in [(disk::ROOT_A, disk::ROOT_B), (disk::HASH_A, disk::HASH_B)] {
        let (src, len) = disk.extent(from);
        let (dst, dst_len) = disk.extent(to);
        if dst_len < len {
            return Err(BootError::TooBig {
                partition: to,
                image: len,
                extent: dst_len,
            });
        }
        let what = format!(
            "copying partition {from} to {to} in {}",
            disk.path.display()
        );
        const CHUNK: u64 = 1024 * 1024;
        let mut buf = Vec::new();
        let mut done = 0u64;
        while done < len {
            buf.resize(CHUNK.min(len - done) as usize, 0);
            let chunk = buf.as_mut_slice();
            std::os::unix::fs::FileExt::read_exact_at(&f, chunk, src + done)
                .map_err(io_err(what.clone()))?;
            if chunk.iter().any(|b| *b != 0) {
                std::os::unix::fs::FileExt::write_all_at(&f, chunk, dst + done)
                    .map_err(io_err(what.clone()))?;
            }
            done += buf.len() as u64;
        }
    }
    f.sync_all()
        .map_err(io_err(format!("syncing {}", disk.path.display())))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::kernel::workspace_root;

    fn work(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("liftoff-fw-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `grub-script-check` (GRUB's own parser) accepts the embedded configuration and every
    /// slot fragment we write.
    #[test]
    fn grub_script_check_accepts_the_configurations() {
        let dir = work("check");
        let disk = BuiltDisk {
            path: "/d".into(),
            root_hash: "ab".repeat(32),
            salt: "-".into(),
            partuuids: Vec::new(),
            extents: Vec::new(),
        };
        let fragment = dir.join("fragment.cfg");
        for (arch, slot, extra) in [
            (Arch::X86_64, Slot::A, ""),
            (
                Arch::Aarch64,
                Slot::B,
                "liftoff.handoff=/usr/local/bin/liftoff-probe",
            ),
            (Arch::X86_64, Slot::B, "quiet liftoff.debug \"x y\" $z ;"),
        ] {
            let cmdline = slot_cmdline(arch, slot, &disk, extra);
            std::fs::write(&fragment, slot_grub_cfg(&cmdline).unwrap()).unwrap();
            let out = Command::new("grub-script-check")
                .arg(&fragment)
                .output()
                .unwrap();
            assert!(out.status.success(), "{cmdline}: {out:?}");
        }
        let out = Command::new("grub-script-check")
            .arg(workspace_root().join("grub/grub.cfg"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_lines() {
        let disk = BuiltDisk {
            path: "/d".into(),
            root_hash: "12ab".into(),
            salt: "cd".into(),
            partuuids: Vec::new(),
            extents: Vec::new(),
        };
        for (arch, slot, extra, want) in [
            (
                Arch::X86_64,
                Slot::A,
                "",
                "liftoff.slot=A liftoff.roothash=12ab liftoff.salt=cd console=ttyS0 panic=-1",
            ),
            (
                Arch::Aarch64,
                Slot::B,
                "liftoff.debug",
                "liftoff.slot=B liftoff.roothash=12ab liftoff.salt=cd console=ttyAMA0 panic=-1 \
                 liftoff.debug",
            ),
        ] {
            assert_eq!(slot_cmdline(arch, slot, &disk, extra), want);
            assert_eq!(
                slot_grub_cfg(want).unwrap(),
                format!("set liftoff_cmdline='{want}'\n")
            );
        }
        for bad in ["a 'b'", "a\nb", "a\rb"] {
            assert!(matches!(slot_grub_cfg(bad), Err(BootError::Cmdline { .. })));
        }
    }
}
