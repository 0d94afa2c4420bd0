//! Firmware boots: a Liftoff disk started the way a real machine starts it, by UEFI firmware
//! (OVMF on x86_64, AAVMF on aarch64) loading shim and GRUB from the ESP (DESIGN.md sections
//! 1 and 5). What is on the disk is the image builder's (`liftoff_image::esp` for the ESP,
//! `liftoff_image::boot` for the BOOT partitions); this module only starts it.
//!
//! [`Mode::SecureBoot`] is the default: the firmware enforces Secure Boot with a key set
//! enrolled (`liftoff_image::secureboot::varstore`). x86_64 runs `OVMF_CODE_4M.secboot.fd`
//! on `q35` with SMM and a secure pflash, so the variable store is protected from the OS;
//! aarch64 runs `AAVMF_CODE.snakeoil.fd` (Secure Boot capable) on plain `virt` (`secure=on`
//! hangs there), whose store has no such protection: fine for tests, not a boundary.
//! [`Mode::Off`] boots the same disk without Secure Boot (Debian's plain firmware and blank
//! store), for the one test that keeps that path working.
//!
//! [`bios_vm_config`] boots the same x86_64 disk through legacy BIOS instead (SeaBIOS,
//! no Secure Boot; `liftoff_image::bios`).
//!
//! [`fresh_vars`] copies the variable store for one guest and [`vm_config`] makes the
//! [`VmConfig`]: the firmware code read-only and that copy as pflash, no `-kernel`; the
//! caller adds the disk and starts it with [`crate::vm::Vm::start`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use liftoff_image::secureboot::{varstore, KeySet};
use liftoff_image::tool::ImageError;

use crate::vm::VmConfig;
use crate::Arch;

/// Whether the firmware enforces Secure Boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Enforced, with a key set enrolled.
    SecureBoot,
    /// Off: the firmware starts any EFI binary.
    Off,
}

/// A step of preparing a firmware boot that failed.
#[derive(Debug)]
pub enum FirmwareError {
    /// Reading or writing a file.
    Io { what: String, source: io::Error },
    /// The firmware files are not installed.
    NoFirmware { path: PathBuf },
    /// Making the variable store with the keys enrolled.
    Vars(ImageError),
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirmwareError::Io { what, source } => write!(f, "{what}: {source}"),
            FirmwareError::NoFirmware { path } => write!(
                f,
                "no firmware at {} (scripts/setup installs ovmf, qemu-efi-aarch64 and, with \
                 qemu-system-x86, seabios)",
                path.display()
            ),
            FirmwareError::Vars(e) => write!(f, "enrolling the Secure Boot keys: {e}"),
        }
    }
}

impl std::error::Error for FirmwareError {}

/// The firmware code for `arch` in `mode` (Debian's `ovmf` and `qemu-efi-aarch64`).
pub fn firmware_code(arch: Arch, mode: Mode) -> PathBuf {
    PathBuf::from(match (arch, mode) {
        (Arch::X86_64, Mode::SecureBoot) => "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
        (Arch::X86_64, Mode::Off) => "/usr/share/OVMF/OVMF_CODE_4M.fd",
        (Arch::Aarch64, Mode::SecureBoot) => "/usr/share/AAVMF/AAVMF_CODE.snakeoil.fd",
        (Arch::Aarch64, Mode::Off) => "/usr/share/AAVMF/AAVMF_CODE.fd",
    })
}

/// The blank variable store of [`Mode::Off`].
fn blank_vars(arch: Arch) -> PathBuf {
    PathBuf::from(match arch {
        Arch::X86_64 => "/usr/share/OVMF/OVMF_VARS_4M.fd",
        Arch::Aarch64 => "/usr/share/AAVMF/AAVMF_VARS.fd",
    })
}

/// Copies the variable store for one guest of `arch` to `vars`: with `keys` enrolled and
/// Secure Boot on, or the firmware's blank store for [`Mode::Off`]. Either has no boot
/// entries, so the firmware boots the removable-media path.
pub fn fresh_vars(arch: Arch, mode: Mode, keys: &KeySet, vars: &Path) -> Result<(), FirmwareError> {
    let code = firmware_code(arch, mode);
    if !code.is_file() {
        return Err(FirmwareError::NoFirmware { path: code });
    }
    let template = match mode {
        Mode::SecureBoot => varstore::cached_vars(arch, keys).map_err(FirmwareError::Vars)?,
        Mode::Off => blank_vars(arch),
    };
    if !template.is_file() {
        return Err(FirmwareError::NoFirmware { path: template });
    }
    std::fs::copy(&template, vars).map_err(|source| FirmwareError::Io {
        what: format!("copying {} to {}", template.display(), vars.display()),
        source,
    })?;
    Ok(())
}

/// A guest of `arch` that boots through its firmware in `mode`: no kernel for QEMU to load,
/// the firmware code read-only and the variable store `vars` (see [`fresh_vars`]) writable
/// as pflash, 1 GiB of memory, and a TPM 2.0 (swtpm) whose state sits beside the variable
/// store in `<vars>.tpm/`: the machine's own, kept across its boots like its variables.
/// Add the disks and start it with [`crate::vm::Vm::start`].
pub fn vm_config(arch: Arch, mode: Mode, vars: &Path, log: &Path) -> VmConfig {
    let code = firmware_code(arch, mode);
    let mut config = VmConfig::new(arch, &code, log);
    config.kernel = None;
    config.memory_mib = 1024;
    let mut tpm = vars.as_os_str().to_owned();
    tpm.push(".tpm");
    config.tpm = Some(PathBuf::from(tpm));
    if (arch, mode) == (Arch::X86_64, Mode::SecureBoot) {
        // SMM guards the variable store; only SMM code may write the secure pflash.
        config.extra.extend(
            [
                "-machine",
                "smm=on",
                "-global",
                "driver=cfi.pflash01,property=secure,value=on",
            ]
            .map(String::from),
        );
    }
    if arch == Arch::Aarch64 {
        // AAVMF waits its boot-menu timeout (PcdPlatformBootTimeOut) for a key before it
        // boots: about 5 s of every aarch64 firmware boot with QEMU idle (its CPU time
        // sampled beside the console). A boot-menu wait from QEMU (fw_cfg
        // `etc/boot-menu-wait`, 0 here) takes the timeout's place. OVMF does not wait
        // without one (x86_64 boots sampled the same way are busy throughout).
        config
            .extra
            .extend(["-boot", "menu=on,splash-time=0"].map(String::from));
    }
    config.extra.extend([
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
    ]);
    config
}

/// SeaBIOS, the legacy BIOS QEMU runs on x86_64 when no pflash is given (Debian's
/// `seabios`, found by QEMU in its data folders).
pub const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";

/// An x86_64 guest that boots through legacy BIOS: SeaBIOS (QEMU's default firmware: no
/// pflash, no `-bios`) reads the disk's MBR, which starts GRUB for i386-pc from the BIOS
/// boot partition (`liftoff_image::bios`). 1 GiB of memory and a TPM 2.0 in `tpm` (as
/// [`vm_config`]: SeaBIOS measures into it, but nothing Liftoff does under BIOS uses it).
/// No variable store: a BIOS has no variables. Add the disks and start it with
/// [`crate::vm::Vm::start`].
pub fn bios_vm_config(tpm: &Path, log: &Path) -> Result<VmConfig, FirmwareError> {
    if !Path::new(SEABIOS).is_file() {
        return Err(FirmwareError::NoFirmware {
            path: PathBuf::from(SEABIOS),
        });
    }
    let mut config = VmConfig::new(Arch::X86_64, Path::new(SEABIOS), log);
    config.kernel = None;
    config.memory_mib = 1024;
    config.tpm = Some(tpm.to_path_buf());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{Bus, Disk};

    #[test]
    fn qemu_arguments() {
        let mut config = vm_config(
            Arch::X86_64,
            Mode::SecureBoot,
            Path::new("/v.fd"),
            Path::new("/l"),
        );
        config.disks.push(Disk {
            path: "/d.img".into(),
            read_only: false,
            serial: Some("boot".into()),
            bus: Bus::VirtioBlk,
            block_size: None,
        });
        assert_eq!(
            config.args().join(" "),
            "-M q35 -accel tcg -cpu max -m 1024 -smp 1 -nodefaults -no-user-config \
             -display none -serial stdio -no-reboot \
             -drive file=/d.img,format=raw,if=none,id=disk0,cache=unsafe \
             -device virtio-blk-pci,drive=disk0,serial=boot \
             -chardev socket,id=chrtpm,path=/v.fd.tpm/swtpm.sock \
             -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
             -machine smm=on -global driver=cfi.pflash01,property=secure,value=on \
             -drive if=pflash,format=raw,unit=0,readonly=on,\
             file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd \
             -drive if=pflash,format=raw,unit=1,file=/v.fd"
        );
        let off = vm_config(Arch::X86_64, Mode::Off, Path::new("/v.fd"), Path::new("/l"))
            .args()
            .join(" ");
        assert!(
            off.contains("file=/usr/share/OVMF/OVMF_CODE_4M.fd"),
            "{off}"
        );
        assert!(!off.contains("smm=on") && !off.contains("secure"), "{off}");
        let args = vm_config(
            Arch::Aarch64,
            Mode::SecureBoot,
            Path::new("/v.fd"),
            Path::new("/l"),
        )
        .args()
        .join(" ");
        assert!(
            args.contains("file=/usr/share/AAVMF/AAVMF_CODE.snakeoil.fd"),
            "{args}"
        );
        assert!(
            !args.contains("-kernel") && !args.contains("secure"),
            "{args}"
        );
        assert!(args.contains("-boot menu=on,splash-time=0"), "{args}");
        assert!(!off.contains("-boot"), "{off}");
        // Legacy BIOS: QEMU's own SeaBIOS, no pflash, no kernel of QEMU's.
        let bios = bios_vm_config(Path::new("/t"), Path::new("/l"))
            .unwrap()
            .args()
            .join(" ");
        assert!(
            bios.starts_with("-M q35 -accel tcg -cpu max -m 1024 "),
            "{bios}"
        );
        assert!(bios.ends_with("-device tpm-tis,tpmdev=tpm0"), "{bios}");
        assert!(
            !bios.contains("pflash") && !bios.contains("-kernel") && !bios.contains("-bios"),
            "{bios}"
        );
    }
}
