//! The signed loader on the ESP: shim from Debian's `shim-unsigned` (16.1) at the
//! removable-media path, and Liftoff's GRUB next to it, both signed with the db key.
//!
//! | ESP file | what |
//! |---|---|
//! | `EFI/BOOT/BOOTX64.EFI`, `BOOTAA64.EFI` | shim, its `.vendor_cert` replaced by our db certificate ([`vendor_cert_section`]) |
//! | `EFI/BOOT/grubx64.efi`, `grubaa64.efi` | `grub/build-efi` (SBAT `grub,5`), the name shim starts from its own folder |
//!
//! Stock shim trusts Debian's CA through `.vendor_cert`; signed by us unchanged it would also
//! start every Debian-signed kernel, and GRUB would boot one with any command line. The
//! section is replaced (`objcopy --update-section`) before signing, so shim trusts the
//! firmware's db and our certificate only. No MokManager or fallback binary is shipped.
//!
//! Without Secure Boot the same files boot: shim starts GRUB unverified, GRUB chainloads the
//! UKI through the firmware, and the UKI's embedded command line is the command line.

use std::path::Path;
use std::process::Command;

use super::{clear_timestamp, objcopy, sign, KeySet};
use crate::tool::{io_err, run, ImageError};
use crate::Arch;

/// shim's removable-media path (the firmware's default loader) on `arch`.
pub fn shim_path(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "EFI/BOOT/BOOTX64.EFI",
        Arch::Aarch64 => "EFI/BOOT/BOOTAA64.EFI",
    }
}

/// Where shim looks for its second stage (GRUB) on `arch`.
pub fn grub_path(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "EFI/BOOT/grubx64.efi",
        Arch::Aarch64 => "EFI/BOOT/grubaa64.efi",
    }
}

/// Debian's unsigned shim for `arch`.
fn shim_unsigned(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "/usr/lib/shim/shimx64.efi",
        Arch::Aarch64 => "/usr/lib/shim/shimaa64.efi",
    }
}

/// shim's `.vendor_cert` section holding one DER certificate and no revocations: shim's
/// `cert_table` (four little-endian u32: authorized size, deauthorized size, authorized
/// offset, deauthorized offset, offsets from the section start), then the certificate.
pub fn vendor_cert_section(der: &[u8]) -> Vec<u8> {
    const HEADER: u32 = 16;
    let len = u32::try_from(der.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(der.len() + 16);
    for field in [len, 0, HEADER, HEADER.saturating_add(len)] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(der);
    out
}

/// shim for `arch` with the set's db certificate as its vendor certificate, signed.
pub fn shim(arch: Arch, keys: &KeySet, work: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let section = work.join("vendor_cert.bin");
    std::fs::write(&section, vendor_cert_section(&keys.db_cert_der()?))
        .map_err(io_err(format!("writing {}", section.display())))?;
    let unsigned = work.join("shim.unsigned.efi");
    let signed = work.join("shim.efi");
    run(Command::new(objcopy(arch))
        .arg("--update-section")
        .arg(format!(".vendor_cert={}", section.display()))
        .arg(shim_unsigned(arch))
        .arg(&unsigned))?;
    clear_timestamp(&unsigned)?;
    sign(keys, &unsigned, &signed)?;
    read_and_remove(&[&section, &unsigned], &signed)
}

/// The GRUB binary `unsigned` (`crate::esp::grub_efi`), signed.
pub fn grub(unsigned: &Path, keys: &KeySet, work: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let signed = work.join("grub.efi");
    sign(keys, unsigned, &signed)?;
    read_and_remove(&[], &signed)
}

fn read_and_remove(scratch: &[&Path], out: &Path) -> Result<Vec<u8>, ImageError> {
    let bytes = std::fs::read(out).map_err(io_err(format!("reading {}", out.display())))?;
    for path in scratch.iter().copied().chain([out]) {
        let _ = std::fs::remove_file(path);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secureboot::pe::PeInfo;
    use crate::secureboot::verifies;

    /// shim and GRUB for each architecture: signed (`sbverify` with the db certificate),
    /// shim's `.vendor_cert` our certificate and no longer Debian's, GRUB's `.sbat` at
    /// generation 5.
    #[test]
    fn signed_shim_and_grub() {
        let dir = std::env::temp_dir().join(format!("liftoff-loader-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let keys = KeySet::create(&dir.join("keys"), "Test", None).unwrap();
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let shim_bytes = shim(arch, &keys, &dir).unwrap();
            let grub_bytes = grub(&crate::esp::grub_efi(arch).unwrap(), &keys, &dir).unwrap();
            for (name, bytes) in [("shim", &shim_bytes), ("grub", &grub_bytes)] {
                let path = dir.join(format!("{name}.efi"));
                std::fs::write(&path, bytes).unwrap();
                assert!(verifies(&path, &keys.db.cert).unwrap(), "{arch} {name}");
            }
            let pe = PeInfo::parse(&shim_bytes).unwrap();
            let vendor = pe.section_data(&shim_bytes, ".vendor_cert").unwrap();
            // objcopy keeps the section's old virtual size and pads it with zeros.
            let ours = vendor_cert_section(&keys.db_cert_der().unwrap());
            assert!(
                vendor.starts_with(&ours),
                "{arch}: .vendor_cert is not ours"
            );
            assert!(vendor[ours.len()..].iter().all(|b| *b == 0));
            let stock = std::fs::read(shim_unsigned(arch)).unwrap();
            let stock_pe = PeInfo::parse(&stock).unwrap();
            assert_ne!(
                stock_pe.section_data(&stock, ".vendor_cert").unwrap(),
                vendor
            );
            let pe = PeInfo::parse(&grub_bytes).unwrap();
            let sbat = String::from_utf8_lossy(pe.section_data(&grub_bytes, ".sbat").unwrap())
                .into_owned();
            assert!(sbat.contains("\ngrub,5,"), "{sbat}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn vendor_cert_layout() {
        let s = vendor_cert_section(b"CERT");
        assert_eq!(
            s,
            [4, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 20, 0, 0, 0, b'C', b'E', b'R', b'T']
        );
    }
}
