//! A slot's unified kernel image (UKI): systemd-stub (Debian's `systemd-boot-efi` 252) with
//! the kernel, the initramfs and the complete kernel command line added as PE sections, and
//! the whole signed with the db key, so the firmware (through shim_lock) verifies them as one
//! image. The section names are systemd-stub's (systemd's "Unified Kernel Image"
//! specification, UAPI.5):
//!
//! | section | content |
//! |---|---|
//! | `.osrel` | `ID=liftoff` and the slot, for people and `bootctl` |
//! | `.cmdline` | the slot's command line with the root hash and every `liftoff.` key |
//! | `.linux` | the kernel image (bzImage on x86_64, the uncompressed `Image` on arm64) |
//! | `.initrd` | Liftoff's initramfs, then a second newc archive holding `etc/liftoff/cmdline`, the `.cmdline` section again, for PID 1 to hold `/proc/cmdline` to under Secure Boot (left out, both, for a kernel booted without an initramfs) |
//!
//! Each new section starts at the next 4 KiB boundary past the stub's image (or the section
//! before it), in this order, so the 27 MB arm64 kernel sits below the initramfs. Under
//! Secure Boot the stub ignores any command line its loader passes (systemd 252
//! `src/boot/efi/stub.c`: loader options are taken only when Secure Boot is off), and GRUB
//! passes none, so the `.cmdline` section is the whole command line in both modes.

use std::path::{Path, PathBuf};
use std::process::Command;

use prairiedog::pe::PeInfo;

use super::{clear_timestamp, objcopy, sign, KeySet};
use crate::cpio::Archive;
use crate::tool::{io_err, run, ImageError};
use crate::Arch;

/// Where PID 1 finds the signed command line (init's `stage::cmdline::SIGNED_CMDLINE`).
pub const SIGNED_CMDLINE: &str = "etc/liftoff/cmdline";

/// The file name of the UKI on a BOOT partition (GRUB chainloads it).
pub const UKI_FILE: &str = "liftoff.efi";

/// systemd-stub for `arch` (Debian's `systemd-boot-efi`).
pub fn stub(arch: Arch) -> PathBuf {
    match arch {
        Arch::X86_64 => PathBuf::from("/usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
        Arch::Aarch64 => PathBuf::from("/usr/lib/systemd/boot/efi/linuxaa64.efi.stub"),
    }
}

/// What goes into one UKI.
#[derive(Debug, Clone)]
pub struct UkiSpec<'a> {
    pub arch: Arch,
    pub kernel: &'a Path,
    /// `None`: no `.initrd` section.
    pub initramfs: Option<&'a [u8]>,
    pub cmdline: &'a str,
    /// `.osrel` content.
    pub osrel: &'a str,
}

const ALIGN: u64 = 4096;

/// Builds the UKI of `spec`, signed with the set's db key, and returns its bytes. `work` is
/// a scratch folder (created).
pub fn build_uki(keys: &KeySet, spec: &UkiSpec<'_>, work: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let stub = stub(spec.arch);
    let stub_bytes = std::fs::read(&stub).map_err(io_err(format!(
        "reading systemd-stub {} (scripts/setup installs systemd-boot-efi)",
        stub.display()
    )))?;
    let pe = PeInfo::parse(&stub_bytes).map_err(|e| ImageError::Tool {
        command: format!("reading {}", stub.display()),
        output: e.to_string(),
    })?;
    let mut sections: Vec<(&str, PathBuf)> = Vec::new();
    let osrel = work.join("osrel");
    write(&osrel, spec.osrel.as_bytes())?;
    sections.push((".osrel", osrel));
    let cmdline = work.join("cmdline");
    write(&cmdline, spec.cmdline.as_bytes())?;
    sections.push((".cmdline", cmdline));
    sections.push((".linux", spec.kernel.to_path_buf()));
    if let Some(initramfs) = spec.initramfs {
        let path = work.join("initrd");
        let mut initrd = initramfs.to_vec();
        initrd.extend(signed_cmdline_archive(spec.cmdline)?);
        write(&path, &initrd)?;
        sections.push((".initrd", path));
    }
    let mut cmd = Command::new(objcopy(spec.arch));
    let mut vma = pe.end_of_image().next_multiple_of(ALIGN);
    for (name, path) in &sections {
        let len = std::fs::metadata(path)
            .map_err(io_err(format!("reading the size of {}", path.display())))?
            .len();
        cmd.arg("--add-section")
            .arg(format!("{name}={}", path.display()))
            .arg("--change-section-vma")
            .arg(format!("{name}={:#x}", pe.image_base + vma));
        vma = (vma + len).next_multiple_of(ALIGN);
    }
    let unsigned = work.join("uki.unsigned.efi");
    let signed = work.join("uki.efi");
    run(cmd.arg(&stub).arg(&unsigned))?;
    clear_timestamp(&unsigned)?;
    sign(keys, &unsigned, &signed)?;
    let bytes = std::fs::read(&signed).map_err(io_err(format!("reading {}", signed.display())))?;
    for path in [&unsigned, &signed] {
        let _ = std::fs::remove_file(path);
    }
    Ok(bytes)
}

/// The archive the kernel unpacks after the initramfs (archives may follow one another):
/// the command line as PID 1's `etc/liftoff/cmdline`.
pub fn signed_cmdline_archive(cmdline: &str) -> Result<Vec<u8>, ImageError> {
    let mut archive = Archive::new();
    let path = SIGNED_CMDLINE;
    let made = archive
        .dir("etc", 0o755)
        .and_then(|()| archive.dir("etc/liftoff", 0o755))
        .and_then(|()| archive.file(path, 0o444, cmdline.as_bytes()))
        .and_then(|()| archive.finish());
    made.map_err(io_err(format!("writing {path} into the UKI's initramfs")))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    std::fs::write(path, bytes).map_err(io_err(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secureboot::verifies;

    /// A UKI for each architecture: signed so that `sbverify` accepts it with the db
    /// certificate and refuses it with another, carrying each input byte for byte in its
    /// section, in the order that puts the initramfs above the kernel, and the same bytes
    /// when built twice.
    #[test]
    fn builds_signed_reproducible_ukis() {
        let dir = std::env::temp_dir().join(format!("liftoff-uki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let keys = KeySet::create(&dir.join("keys"), "Test", None).unwrap();
        let other = KeySet::create(&dir.join("other"), "Other", None).unwrap();
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let kernel = dir.join("kernel");
            // Not a real kernel: the stub is not run here, only assembled and signed.
            std::fs::write(&kernel, vec![0x4b; 300_000]).unwrap();
            let spec = UkiSpec {
                arch,
                kernel: &kernel,
                initramfs: Some(b"070701 initramfs"),
                cmdline: "liftoff.slot=A liftoff.roothash=00ff",
                osrel: "ID=liftoff\n",
            };
            let uki = build_uki(&keys, &spec, &dir.join("work")).unwrap();
            assert_eq!(uki, build_uki(&keys, &spec, &dir.join("again")).unwrap());
            let path = dir.join("uki.efi");
            std::fs::write(&path, &uki).unwrap();
            assert!(verifies(&path, &keys.db.cert).unwrap(), "{arch}");
            assert!(!verifies(&path, &other.db.cert).unwrap(), "{arch}");
            let pe = PeInfo::parse(&uki).unwrap();
            assert!(pe.cert_table.is_some());
            let data = |name| pe.section_data(&uki, name).unwrap();
            assert_eq!(data(".cmdline"), spec.cmdline.as_bytes());
            assert_eq!(data(".linux"), std::fs::read(&kernel).unwrap().as_slice());
            let initrd = data(".initrd");
            let (first, second) = initrd.split_at(b"070701 initramfs".len());
            assert_eq!(first, b"070701 initramfs");
            assert_eq!(second, signed_cmdline_archive(spec.cmdline).unwrap());
            assert_eq!(data(".osrel"), b"ID=liftoff\n");
            let linux = pe.section(".linux").unwrap();
            let initrd = pe.section(".initrd").unwrap();
            assert!(initrd.virtual_address >= linux.virtual_address + linux.virtual_size);
            assert_eq!(initrd.virtual_address % 4096, 0);
            let without = UkiSpec {
                initramfs: None,
                ..spec
            };
            let bare = build_uki(&keys, &without, &dir.join("work")).unwrap();
            assert!(PeInfo::parse(&bare).unwrap().section(".initrd").is_none());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The kernel's unpacker, played by `cpio`: the second archive holds the command line
    /// byte for byte at `etc/liftoff/cmdline`, read-only.
    #[test]
    fn the_signed_command_line_unpacks_with_cpio() {
        let dir = std::env::temp_dir().join(format!("liftoff-uki-cpio-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let line = "console=ttyS0 liftoff.slot=B liftoff.roothash=00ff";
        let archive = signed_cmdline_archive(line).unwrap();
        let mut cpio = Command::new("cpio")
            .args(["-idm", "--quiet"])
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        cpio.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(cpio.wait().unwrap().success());
        let file = dir.join(SIGNED_CMDLINE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), line);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o444);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
