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
//! Versions: the image builder writes `IMAGE_VERSION=` (dotted numbers, e.g. `1.4.2`) into
//! the UKI's `.osrel` (os-release format), inside the signature. Install compares the
//! update's with the running slot's ([`read_boot`] on its BOOT partition) and refuses a lower
//! one unless told to. A UKI without a version counts as lower than any version; a running
//! slot without a UKI or a version (a disk from before Secure Boot) allows any update.
//!
//! Signature: with [`Signature::Verify`] (feature `authenticode`) the UKI's Authenticode
//! signature is checked first, against db and dbx of the running machine or certificates
//! given with `--trust` ([`crate::authenticode::Trust::for_install`]), so that a forged or
//! unsigned UKI is refused before anything is written, as the firmware and shim would
//! refuse it at boot. Only then are its command line and version believed.

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
    /// `.osrel` holds an `IMAGE_VERSION=` that is not dotted numbers.
    #[error("{UKI_FILE} has IMAGE_VERSION={0:?}, not dotted numbers")]
    BadVersion(String),
    /// The Authenticode signature does not verify.
    #[cfg(feature = "authenticode")]
    #[error("{UKI_FILE}: {0}")]
    Signature(crate::authenticode::VerifyError),
    /// The command line names another slot.
    #[error("{UKI_FILE} boots slot {uki}, the update goes to slot {target}")]
    Slot {
        /// `liftoff.slot=` in the UKI (empty: none).
        uki: String,
        /// The inactive slot.
        target: Slot,
    },
}

/// A version: dotted numbers, compared number by number (`1.10` > `1.9`, `1.0` > `1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(Vec<u64>);

impl Version {
    /// Parses `1`, `1.4.2`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Version> {
        text.split('.')
            .map(|n| {
                (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse().ok())
                    .flatten()
            })
            .collect::<Option<Vec<u64>>>()
            .map(Version)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// What a BOOT partition's UKI says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootUki {
    /// Its `.cmdline`.
    pub cmdline: String,
    /// `IMAGE_VERSION=` of its `.osrel`, if any.
    pub version: Option<Version>,
}

/// Whether and how [`check_boot_image`] checks the UKI's signature.
#[derive(Debug, Clone)]
pub enum Signature {
    /// Not checked (Secure Boot off and nothing given to trust; the caller says so).
    Unchecked,
    /// Must verify against these certificates, and not be revoked.
    #[cfg(feature = "authenticode")]
    Verify(crate::authenticode::Trust),
}

/// A BOOT image's UKI that passed [`check_boot_image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUki {
    /// What it says.
    pub uki: BootUki,
    /// Who signed it, and through which trusted certificate (`None`: not checked).
    pub signed_by: Option<String>,
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

/// The bytes of the UKI file on the FAT file system in `region` of `disk`.
pub fn read_uki_file<D: BlockIo + ?Sized>(disk: &D, region: Region) -> Result<Vec<u8>, UkiError> {
    let file = fat::locate(disk, region, UKI_FILE)?;
    Ok(fat::read_file(disk, &file)?)
}

/// What the UKI `uki` (a PE image) says: its command line and version.
pub fn parse_uki(uki: &[u8]) -> Result<BootUki, UkiError> {
    let pe = PeInfo::parse(uki).map_err(|e| UkiError::NotUki(e.to_string()))?;
    let cmdline = pe
        .section_data(uki, ".cmdline")
        .ok_or_else(|| UkiError::NotUki("no .cmdline section".into()))?;
    let osrel = pe
        .section_data(uki, ".osrel")
        .map(|o| String::from_utf8_lossy(o).into_owned())
        .unwrap_or_default();
    let version = match osrel
        .lines()
        .filter_map(|l| l.strip_prefix("IMAGE_VERSION="))
        .next_back()
    {
        None => None,
        Some(v) => {
            let v = v.trim_matches('"');
            Some(Version::parse(v).ok_or_else(|| UkiError::BadVersion(v.to_owned()))?)
        }
    };
    Ok(BootUki {
        cmdline: String::from_utf8_lossy(cmdline).into_owned(),
        version,
    })
}

/// The UKI on the FAT file system in `region` of `disk`: its command line and version.
pub fn read_boot<D: BlockIo + ?Sized>(disk: &D, region: Region) -> Result<BootUki, UkiError> {
    parse_uki(&read_uki_file(disk, region)?)
}

impl BootUki {
    /// The value of `key=` on its command line (the last one wins).
    pub fn value(&self, key: &str) -> Option<&str> {
        value(&self.cmdline, key)
    }
}

/// What the UKI on the BOOT image `boot` (its bytes) says, signature not checked: what
/// [`crate::install::Manifest::for_files`] takes the version from.
pub fn read_boot_image(boot: &[u8]) -> Result<BootUki, UkiError> {
    let whole = Region {
        offset: 0,
        len: boot.len() as u64,
    };
    parse_uki(&read_uki_file(&Bytes(boot), whole)?)
}

/// Checks that the UKI on the BOOT image `boot` is signed as `signature` asks, and boots
/// `target` with `root_hash`; returns what it says.
pub fn check_boot_image(
    boot: &[u8],
    target: Slot,
    root_hash: &str,
    signature: &Signature,
) -> Result<CheckedUki, UkiError> {
    let whole = Region {
        offset: 0,
        len: boot.len() as u64,
    };
    let image = read_uki_file(&Bytes(boot), whole)?;
    let signed_by = match signature {
        Signature::Unchecked => None,
        #[cfg(feature = "authenticode")]
        Signature::Verify(trust) => {
            let v = crate::authenticode::verify(&image, trust).map_err(UkiError::Signature)?;
            Some(if v.signer == v.anchor {
                v.signer
            } else {
                format!("{}, issued by {}", v.signer, v.anchor)
            })
        }
    };
    let uki = parse_uki(&image)?;
    let slot = uki.value("liftoff.slot").unwrap_or_default();
    if Slot::parse(slot) != Some(target) {
        return Err(UkiError::Slot {
            uki: slot.to_owned(),
            target,
        });
    }
    let hash = uki.value("liftoff.roothash").unwrap_or_default();
    if !hash.eq_ignore_ascii_case(root_hash) {
        return Err(UkiError::RootHash {
            uki: hash.to_owned(),
            manifest: root_hash.to_owned(),
        });
    }
    Ok(CheckedUki { uki, signed_by })
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

    #[test]
    fn versions() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.99.99"));
        assert!(v("1.0") > v("1"));
        assert_eq!(v("0.3.1").to_string(), "0.3.1");
        for bad in [
            "",
            "1.",
            ".1",
            "1.a",
            "v1",
            "1..2",
            "-1",
            "99999999999999999999",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }

    /// Bytes that are not a FAT image are refused, not a panic.
    #[test]
    fn not_a_boot_image() {
        for bytes in [&[][..], &[0u8; 512][..], &[0xffu8; 4096][..]] {
            assert!(matches!(
                check_boot_image(bytes, Slot::B, "00", &Signature::Unchecked),
                Err(UkiError::Missing(_))
            ));
        }
    }
}
