//! Firmware boots: a Liftoff disk started the way a real machine starts it, by UEFI firmware
//! (OVMF on x86_64, AAVMF on aarch64) loading stock GRUB from the ESP (DESIGN.md sections 1
//! and 5). What is on the disk is the image builder's (`liftoff_image::esp` for the ESP,
//! `liftoff_image::boot` for the BOOT partitions); this module only starts it.
//!
//! [`fresh_vars`] copies the firmware's variable store for one guest and [`vm_config`] makes
//! the [`VmConfig`]: the firmware code read-only and that copy as pflash, no `-kernel`; the
//! caller adds the disk and starts it with [`crate::vm::Vm::start`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::vm::VmConfig;
use crate::Arch;

/// A step of preparing a firmware boot that failed.
#[derive(Debug)]
pub enum FirmwareError {
    /// Reading or writing a file.
    Io { what: String, source: io::Error },
    /// The firmware files are not installed.
    NoFirmware { path: PathBuf },
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirmwareError::Io { what, source } => write!(f, "{what}: {source}"),
            FirmwareError::NoFirmware { path } => write!(
                f,
                "no UEFI firmware at {} (scripts/setup installs ovmf and qemu-efi-aarch64)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for FirmwareError {}

/// The firmware code and its variable-store template (Debian's `ovmf` and
/// `qemu-efi-aarch64`).
pub fn firmware_files(arch: Arch) -> (PathBuf, PathBuf) {
    match arch {
        Arch::X86_64 => (
            PathBuf::from("/usr/share/OVMF/OVMF_CODE.fd"),
            PathBuf::from("/usr/share/OVMF/OVMF_VARS.fd"),
        ),
        Arch::Aarch64 => (
            PathBuf::from("/usr/share/AAVMF/AAVMF_CODE.fd"),
            PathBuf::from("/usr/share/AAVMF/AAVMF_VARS.fd"),
        ),
    }
}

/// Copies the firmware's variable-store template for `arch` to `vars`: every boot starts
/// from the firmware's defaults (no boot entries, so it boots the removable-media path).
pub fn fresh_vars(arch: Arch, vars: &Path) -> Result<(), FirmwareError> {
    let (code, template) = firmware_files(arch);
    for path in [&code, &template] {
        if !path.is_file() {
            return Err(FirmwareError::NoFirmware { path: path.clone() });
        }
    }
    std::fs::copy(&template, vars).map_err(|source| FirmwareError::Io {
        what: format!("copying {} to {}", template.display(), vars.display()),
        source,
    })?;
    Ok(())
}

/// A guest of `arch` that boots through its firmware: no kernel for QEMU to load, the
/// firmware code read-only and the variable store `vars` (see [`fresh_vars`]) writable as
/// pflash, 1 GiB of memory. Add the disks and start it with [`crate::vm::Vm::start`].
pub fn vm_config(arch: Arch, vars: &Path, log: &Path) -> VmConfig {
    let (code, _) = firmware_files(arch);
    let mut config = VmConfig::new(arch, &code, log);
    config.kernel = None;
    config.memory_mib = 1024;
    config.extra = vec![
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
    ];
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::Disk;

    #[test]
    fn qemu_arguments() {
        let mut config = vm_config(Arch::X86_64, Path::new("/v.fd"), Path::new("/l"));
        config.disks.push(Disk {
            path: "/d.img".into(),
            read_only: false,
            serial: Some("boot".into()),
        });
        assert_eq!(
            config.args().join(" "),
            "-M q35 -accel tcg -cpu max -m 1024 -smp 1 -nodefaults -no-user-config \
             -display none -serial stdio -no-reboot \
             -drive file=/d.img,format=raw,if=none,id=disk0,cache=unsafe \
             -device virtio-blk-pci,drive=disk0,serial=boot \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
             -drive if=pflash,format=raw,unit=1,file=/v.fd"
        );
        let args = vm_config(Arch::Aarch64, Path::new("/v.fd"), Path::new("/l"))
            .args()
            .join(" ");
        assert!(
            args.contains("file=/usr/share/AAVMF/AAVMF_CODE.fd"),
            "{args}"
        );
        assert!(!args.contains("-kernel"), "{args}");
    }
}
