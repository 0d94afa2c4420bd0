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
//! | `.initrd` | Liftoff's initramfs (left out for a kernel booted without one) |
//!
//! Each new section starts at the next 4 KiB boundary past the stub's image (or the section
//! before it), in this order, so the 27 MB arm64 kernel sits below the initramfs. Under
//! Secure Boot the stub ignores any command line its loader passes (systemd 252
//! `src/boot/efi/stub.c`: loader options are taken only when Secure Boot is off), and GRUB
//! passes none, so the `.cmdline` section is the whole command line in both modes.

use std::path::{Path, PathBuf};
use std::process::Command;

use prairiedog::pe::PeInfo;

use super::{objcopy, sign, KeySet};
use crate::tool::{io_err, run, ImageError};
use crate::Arch;

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
        write(&path, initramfs)?;
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
    sign(keys, &unsigned, &signed)?;
    let bytes = std::fs::read(&signed).map_err(io_err(format!("reading {}", signed.display())))?;
    for path in [&unsigned, &signed] {
        let _ = std::fs::remove_file(path);
    }
    Ok(bytes)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    std::fs::write(path, bytes).map_err(io_err(format!("writing {}", path.display())))
}
