//! The signed unified kernel image (UKI) of an update's BOOT image, checked before
//! `prairiedog install` writes anything (issue 13): the BOOT image must hold `liftoff.efi`,
//! a PE image whose `.cmdline` names the slot the update goes to and carries the manifest's
//! verity root hash. The root hash that dm-verity will use at boot is the one in that signed
//! command line; a manifest that promises another one, or a BOOT image for the other slot,
//! is refused.
//!
//! The check runs on the BOOT image's bytes in memory, after their BLAKE3 matched the
//! manifest, so the UKI checked is the one that gets written.
//!
//! Not here yet: verifying the UKI's Authenticode signature against the machine's db
//! certificates (the firmware and shim do that at every boot, so an unsigned or foreign
//! UKI never runs, but install does not refuse it early).

use std::io;

use gpt::BlockIo;

use crate::disk::Region;
use crate::fat;
use crate::pe::PeInfo;
use crate::Slot;

/// The UKI's file name on a BOOT partition.
pub const UKI_FILE: &str = "liftoff.efi";

/// Why a BOOT image's UKI is refused.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// No readable `liftoff.efi` on the BOOT image's FAT.
    #[error("no signed kernel image {UKI_FILE} on the BOOT image: {0}")]
    Missing(#[from] fat::FatError),
    /// `liftoff.efi` is not a PE image, or has no `.cmdline` section.
    #[error("{UKI_FILE} is not a unified kernel image: {0}")]
    NotUki(String),
    /// The command line names no root hash, or another one.
    #[error("{UKI_FILE}'s signed command line has root hash {uki}, the manifest says {manifest}")]
    RootHash {
        /// `liftoff.roothash=` in the UKI (empty: none).
        uki: String,
        /// The manifest's root hash.
        manifest: String,
    },
    /// The command line names another slot.
    #[error("{UKI_FILE} boots slot {uki}, the update goes to slot {target}")]
    Slot {
        /// `liftoff.slot=` in the UKI (empty: none).
        uki: String,
        /// The inactive slot.
        target: Slot,
    },
}

/// A byte buffer as a read-only disk, for the FAT reader.
struct Bytes<'a>(&'a [u8]);

impl BlockIo for Bytes<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&mut self, _offset: u64, _buf: &[u8]) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::PermissionDenied))
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

/// The value of `key=` on `cmdline` (the last one wins, as for the kernel and PID 1).
fn value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

/// The `.cmdline` of the UKI on the FAT image `boot`.
pub fn boot_cmdline(boot: &[u8]) -> Result<String, UkiError> {
    let disk = Bytes(boot);
    let whole = Region {
        offset: 0,
        len: boot.len() as u64,
    };
    let file = fat::locate(&disk, whole, UKI_FILE)?;
    let uki = fat::read_file(&disk, &file)?;
    let pe = PeInfo::parse(&uki).map_err(|e| UkiError::NotUki(e.to_string()))?;
    let cmdline = pe
        .section_data(&uki, ".cmdline")
        .ok_or_else(|| UkiError::NotUki("no .cmdline section".into()))?;
    Ok(String::from_utf8_lossy(cmdline).into_owned())
}

/// Checks that the UKI on the BOOT image `boot` boots `target` with `root_hash`.
pub fn check_boot_image(boot: &[u8], target: Slot, root_hash: &str) -> Result<(), UkiError> {
    let cmdline = boot_cmdline(boot)?;
    let slot = value(&cmdline, "liftoff.slot").unwrap_or_default();
    if Slot::parse(slot) != Some(target) {
        return Err(UkiError::Slot {
            uki: slot.to_owned(),
            target,
        });
    }
    let hash = value(&cmdline, "liftoff.roothash").unwrap_or_default();
    if !hash.eq_ignore_ascii_case(root_hash) {
        return Err(UkiError::RootHash {
            uki: hash.to_owned(),
            manifest: root_hash.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_values() {
        let c = "liftoff.slot=A liftoff.roothash=aa x liftoff.roothash=bb liftoff.slotx=C";
        assert_eq!(value(c, "liftoff.slot"), Some("A"));
        assert_eq!(value(c, "liftoff.roothash"), Some("bb"));
        assert_eq!(value(c, "liftoff.salt"), None);
    }

    /// Bytes that are not a FAT image are refused, not a panic.
    #[test]
    fn not_a_boot_image() {
        for bytes in [&[][..], &[0u8; 512][..], &[0xffu8; 4096][..]] {
            assert!(matches!(
                check_boot_image(bytes, Slot::B, "00"),
                Err(UkiError::Missing(_))
            ));
        }
    }
}
