//! The ESP (partition 1, `EFI-SYSTEM`, DESIGN.md sections 3 and 5): what UEFI firmware loads
//! and what GRUB reads before it picks a slot.
//!
//! | file | made by |
//! |---|---|
//! | `EFI/BOOT/BOOTX64.EFI` or `BOOTAA64.EFI` | shim with our certificate, signed ([`crate::secureboot::loader::shim`]), at the removable-media path so no boot entries are needed |
//! | `EFI/BOOT/grubx64.efi` or `grubaa64.efi` | [`grub_efi`]: `grub/build-efi`, stock Debian GRUB 2.06 with `grub/grub.cfg` embedded and an SBAT section, signed ([`crate::secureboot::loader::grub`]) |
//! | `grubenv` | [`grubenv`]: `grub-editenv`, keys `liftoff_slot` and `liftoff_pending` |
//!
//! [`esp_files`] gathers both for a FAT image ([`crate::fat`]); [`crate::boot::install`]
//! writes it into a built disk, and [`read_grubenv`] reads grubenv back from one.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::disk::{self, BuiltDisk, Slot};
use crate::kernel::workspace_root;
use crate::secureboot::{loader, KeySet};
use crate::tool::{io_err, run, ImageError};
use crate::{artifacts, Arch};

/// GRUB's module folder for `arch` (Debian's `grub-efi-amd64-bin` and
/// `grub-efi-arm64-bin:arm64`).
fn grub_module_dir(arch: Arch) -> PathBuf {
    match arch {
        Arch::X86_64 => PathBuf::from("/usr/lib/grub/x86_64-efi"),
        Arch::Aarch64 => PathBuf::from("/usr/lib/grub/arm64-efi"),
    }
}

/// The GRUB EFI binary for `arch`, built by `grub/build-efi` and cached under
/// `<target>/grub/<arch>-<key>/`, where the key covers the script, `grub/grub.cfg` and the
/// installed GRUB modules (their `moddep.lst` and the GRUB version). Unsigned: see
/// [`loader::grub`].
pub fn grub_efi(arch: Arch) -> Result<PathBuf, ImageError> {
    let grub = workspace_root().join("grub");
    let script = grub.join("build-efi");
    let inputs = [
        script.clone(),
        grub.join("grub.cfg"),
        grub.join("sbat.csv"),
        grub_module_dir(arch).join("moddep.lst"),
    ];
    let name = loader::grub_path(arch)
        .rsplit('/')
        .next()
        .unwrap_or("grub.efi");
    grub_built(&arch.to_string(), &inputs, "GRUB", name, |partial| {
        run(Command::new(&script).arg(arch.name()).arg(partial))
    })
}

/// A GRUB image built once by `build` and cached under `<target>/grub/<label>-<key>/name`,
/// where the key covers the bytes of `inputs` (script, configuration, the modules'
/// `moddep.lst`) and the installed GRUB version. `package` names what scripts/setup
/// installs, for the error when an input is missing.
pub(crate) fn grub_built(
    label: &str,
    inputs: &[PathBuf],
    package: &str,
    name: &str,
    build: impl FnOnce(&Path) -> Result<(), ImageError>,
) -> Result<PathBuf, ImageError> {
    let mut key = Sha256::new();
    key.update(format!("v1 {label}\n"));
    for path in inputs {
        let bytes = std::fs::read(path).map_err(io_err(format!(
            "reading {} (scripts/setup installs {package})",
            path.display()
        )))?;
        key.update(&bytes);
    }
    let version = Command::new("grub-mkimage")
        .arg("--version")
        .output()
        .map_err(io_err("running grub-mkimage (scripts/setup)"))?;
    key.update(&version.stdout);
    let key = verity::hex::encode(key.finalize().get(..8).unwrap_or_default());
    let dir = artifacts::target_dir()
        .join("grub")
        .join(format!("{label}-{key}"));
    artifacts::made_once(&dir, name, build)
}

/// A 1024-byte grubenv made by `grub-editenv`, holding `liftoff_slot` and
/// `liftoff_pending` when given.
pub fn grubenv(
    slot: Option<Slot>,
    pending: Option<bool>,
    work: &Path,
) -> Result<Vec<u8>, ImageError> {
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let path = work.join("grubenv.new");
    let _ = std::fs::remove_file(&path);
    run(Command::new("grub-editenv").arg(&path).arg("create"))?;
    let mut sets = Vec::new();
    if let Some(slot) = slot {
        sets.push(format!("liftoff_slot={}", slot.name()));
    }
    if let Some(pending) = pending {
        sets.push(format!("liftoff_pending={}", u8::from(pending)));
    }
    if !sets.is_empty() {
        run(Command::new("grub-editenv")
            .arg(&path)
            .arg("set")
            .args(&sets))?;
    }
    let bytes = std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
    let _ = std::fs::remove_file(&path);
    Ok(bytes)
}

/// The ESP's files: shim at the removable-media path and GRUB beside it, both signed with
/// the set's db key, and grubenv when given (a missing grubenv makes GRUB boot slot A
/// without arming the pending flag). `work` is a scratch folder.
pub fn esp_files(
    arch: Arch,
    keys: &KeySet,
    grubenv: Option<Vec<u8>>,
    work: &Path,
) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
    let mut files = vec![
        (
            loader::shim_path(arch).to_owned(),
            loader::shim(arch, keys, work)?,
        ),
        (
            loader::grub_path(arch).to_owned(),
            loader::grub(&grub_efi(arch)?, keys, work)?,
        ),
    ];
    if let Some(env) = grubenv {
        files.push(("grubenv".into(), env));
    }
    Ok(files)
}

/// grubenv on the disk's ESP as `grub-editenv list` prints it (`key=value` lines).
pub fn read_grubenv(disk: &BuiltDisk, work: &Path) -> Result<String, ImageError> {
    let (offset, _) = disk.extent(disk::ESP);
    let out = work.join("grubenv.read");
    let _ = std::fs::remove_file(&out);
    run(Command::new("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{offset}", disk.path.display()))
        .arg("::/grubenv")
        .arg(&out))?;
    let list = Command::new("grub-editenv")
        .arg(&out)
        .arg("list")
        .output()
        .map_err(io_err("running grub-editenv (scripts/setup)"))?;
    if !list.status.success() {
        return Err(ImageError::Tool {
            command: format!("grub-editenv {} list", out.display()),
            output: String::from_utf8_lossy(&list.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&list.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grubenv blocks `grub-editenv` makes, read back by `grub-editenv list`.
    #[test]
    fn grubenv_blocks() {
        let dir = crate::test_work("env");
        for (slot, pending, want) in [
            (None, None, ""),
            (
                Some(Slot::A),
                Some(false),
                "liftoff_slot=A\nliftoff_pending=0\n",
            ),
            (
                Some(Slot::B),
                Some(true),
                "liftoff_slot=B\nliftoff_pending=1\n",
            ),
            (None, Some(true), "liftoff_pending=1\n"),
        ] {
            let block = grubenv(slot, pending, &dir).unwrap();
            assert_eq!(block.len(), 1024);
            assert!(block.starts_with(b"# GRUB Environment Block\n"));
            let path = dir.join("check");
            std::fs::write(&path, &block).unwrap();
            let out = Command::new("grub-editenv")
                .arg(&path)
                .arg("list")
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `grub-script-check` (GRUB's own parser) accepts the embedded configuration.
    #[test]
    fn grub_script_check_accepts_the_configuration() {
        let out = Command::new("grub-script-check")
            .arg(workspace_root().join("grub/grub.cfg"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// Under UEFI GRUB reads only the slot's signed UKI from BOOT: never the BIOS files
    /// beside it (unsigned kernel, initramfs and command line).
    #[test]
    fn uefi_configuration_never_reads_the_bios_files() {
        let cfg = std::fs::read_to_string(workspace_root().join("grub/grub.cfg")).unwrap();
        for name in [
            crate::bios::KERNEL_FILE,
            crate::bios::INITRAMFS_FILE,
            crate::bios::CMDLINE_FILE,
            "bios/",
            "linux ",
            "initrd ",
        ] {
            assert!(!cfg.contains(name), "grub.cfg names {name:?}");
        }
    }

    /// `grub/build-efi` makes a PE image (an EFI application) for each architecture, for
    /// the machine type UEFI expects (x86_64 0x8664, arm64 0xaa64), and refuses a bad
    /// architecture with exit status 2.
    #[test]
    fn build_efi_makes_pe_images() {
        let dir = crate::test_work("efi");
        let script = workspace_root().join("grub/build-efi");
        for (arch, machine) in [(Arch::X86_64, 0x8664u16), (Arch::Aarch64, 0xaa64)] {
            let out = dir.join(format!("{arch}.efi"));
            let status = Command::new(&script)
                .arg(arch.name())
                .arg(&out)
                .status()
                .unwrap();
            assert!(status.success());
            let pe = std::fs::read(&out).unwrap();
            // Reproducible: a second build gives the same bytes.
            let again = dir.join(format!("{arch}-again.efi"));
            let status = Command::new(&script)
                .arg(arch.name())
                .arg(&again)
                .env("TZ", "Pacific/Auckland")
                .status()
                .unwrap();
            assert!(status.success());
            assert!(
                pe == std::fs::read(&again).unwrap(),
                "{arch}: builds differ"
            );
            assert_eq!(&pe[..2], b"MZ");
            let at = u32::from_le_bytes(pe[0x3c..0x40].try_into().unwrap()) as usize;
            assert_eq!(&pe[at..at + 4], b"PE\0\0");
            assert_eq!(u16::from_le_bytes([pe[at + 4], pe[at + 5]]), machine);
            // Only the modules grub.cfg needs: far below the ~10 MB of a full image.
            assert!(pe.len() < 2 * 1024 * 1024, "{arch}: {} bytes", pe.len());
            // The SBAT section shim 16.1 checks: generation 5 of grub.
            let info = prairiedog::pe::PeInfo::parse(&pe).unwrap();
            let sbat = info.section_data(&pe, ".sbat").unwrap();
            assert!(
                String::from_utf8_lossy(sbat).contains("\ngrub,5,"),
                "{arch}: {}",
                String::from_utf8_lossy(sbat)
            );
        }
        let out = Command::new(&script)
            .arg("sparc")
            .arg(dir.join("x"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("usage: "));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
