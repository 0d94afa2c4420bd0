//! UEFI variables as Linux shows them in efivarfs, and the two that say which disk the
//! firmware booted.
//!
//! - An efivarfs file `<Name>-<vendor GUID>` holds the variable's 4-byte attributes, then
//!   its value.
//! - `BootCurrent` (EFI global variable vendor): the number of the load option the firmware
//!   booted, a little-endian u16; `Boot####` (four uppercase hex digits) that load option
//!   (UEFI 2.10 section 3.1.3, `EFI_LOAD_OPTION`): u32 attributes, u16 length of the device
//!   path list, the description as NUL-terminated UTF-16, then the device path.
//! - A device path (UEFI 2.10 section 10.3) is a list of nodes, each a type byte, a
//!   sub-type byte and a little-endian u16 length that counts the 4-byte header; an End
//!   node (type 0x7f) ends an instance (sub-type 0x01) or the whole path (0xff). Only the
//!   first instance is read.
//! - `LoaderDevicePartUUID` (the Boot Loader Interface vendor of systemd-boot and
//!   systemd-stub): the unique GUID of the partition the loader or unified kernel image was
//!   loaded from, as UTF-16 text.
//!
//! - `SecureBoot` (EFI global variable vendor): one byte, 1 when the firmware enforces
//!   Secure Boot (UEFI 2.10 section 3.3, "Globally Defined Variables").
//! - `db` and `dbx` (vendor `EFI_IMAGE_SECURITY_DATABASE_GUID`): the allowed and the
//!   forbidden signature databases (UEFI 2.10 section 32.4.1, "Signature Database"), each a
//!   sequence of `EFI_SIGNATURE_LIST`s: the signature type GUID, the list's size, its header
//!   size and the size of each entry (little-endian u32s), the header, then entries of an
//!   owner GUID and the data (a DER certificate for `EFI_CERT_X509_GUID`, an Authenticode
//!   SHA-256 image digest for `EFI_CERT_SHA256_GUID`). [`signature_lists`] reads them.
//!
//! The firmware writes these; a buggy or hostile one is still only a source of bytes here:
//! every length is checked, and what cannot be parsed is an error naming the variable.

use gpt::Guid;
use std::path::{Path, PathBuf};

/// Vendor GUID of the variables the UEFI specification defines (`BootCurrent`, `Boot####`).
pub const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// Vendor GUID of the Boot Loader Interface (`LoaderDevicePartUUID`).
pub const LOADER: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// Vendor GUID of `db` and `dbx` (`EFI_IMAGE_SECURITY_DATABASE_GUID`).
pub const IMAGE_SECURITY_DATABASE: &str = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";
/// `EFI_CERT_X509_GUID`: an entry holding one DER X.509 certificate.
pub const CERT_X509: Guid = Guid::from_u128(0xa5c059a1_94e4_4aa7_87b5_ab155c2bf072);
/// `EFI_CERT_SHA256_GUID`: an entry holding a 32-byte SHA-256 digest (of a PE image, its
/// Authenticode digest).
pub const CERT_SHA256: Guid = Guid::from_u128(0xc1c41626_504c_4092_aca9_41f936934328);
/// Where efivarfs is mounted, under the root of `/sys`.
pub const EFIVARS: &str = "firmware/efi/efivars";

/// A failure reading or parsing a variable.
#[derive(Debug, thiserror::Error)]
pub enum EfiError {
    /// Reading the efivarfs file.
    #[error("reading EFI variable {path}: {source}")]
    Read {
        /// The efivarfs file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The value is not what the variable holds.
    #[error("EFI variable {name}: {why}")]
    Malformed {
        /// The variable's name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// One node of a device path, as far as telling disks apart needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// A PCI root bridge (ACPI `PNP0A03`/`PNP0A08`): `PciRoot(uid)`.
    PciRoot { uid: u32 },
    /// `Pci(device, function)` below the previous bridge.
    Pci { device: u8, function: u8 },
    /// An NVMe namespace.
    Nvme { nsid: u32 },
    /// A SCSI target and LUN (virtio-scsi and friends).
    Scsi { target: u16, lun: u16 },
    /// A SATA port of an AHCI controller.
    Sata { port: u16 },
    /// A partition; `partuuid` for GPT partitions.
    HardDrive { number: u32, partuuid: Option<Guid> },
    /// A node this reader has no use for.
    Other { kind: u8, subtype: u8 },
}

/// A load option: what the firmware booted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOption {
    /// The description the boot menu shows.
    pub description: String,
    /// The first instance of the device path.
    pub path: Vec<Node>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Parses the first instance of a device path. `None` for a node whose length does not fit.
pub fn parse_device_path(mut bytes: &[u8]) -> Option<Vec<Node>> {
    let mut nodes = Vec::new();
    loop {
        let kind = *bytes.first()?;
        let subtype = *bytes.get(1)?;
        let len = usize::from(le16(bytes, 2)?);
        if len < 4 {
            return None;
        }
        let node = bytes.get(..len)?;
        let data = node.get(4..)?;
        nodes.push(match (kind, subtype) {
            (0x7f, _) => return Some(nodes),
            // ACPI _HID: EISA ID of PNP0A03 or PNP0A08 (a PCI or PCIe root bridge).
            (0x02, 0x01) if matches!(le32(data, 0)?, 0x0a03_41d0 | 0x0a08_41d0) => Node::PciRoot {
                uid: le32(data, 4)?,
            },
            (0x01, 0x01) => Node::Pci {
                function: *data.first()?,
                device: *data.get(1)?,
            },
            (0x03, 0x17) => Node::Nvme {
                nsid: le32(data, 0)?,
            },
            (0x03, 0x02) => Node::Scsi {
                target: le16(data, 0)?,
                lun: le16(data, 2)?,
            },
            (0x03, 0x12) => Node::Sata {
                port: le16(data, 0)?,
            },
            (0x04, 0x01) => {
                // Partition number, start and size (u64 each), 16-byte signature, MBR
                // type, signature type (0x02: GUID).
                let signature: [u8; 16] = data.get(20..36)?.try_into().ok()?;
                Node::HardDrive {
                    number: le32(data, 0)?,
                    partuuid: (*data.get(37)? == 0x02).then(|| Guid::from_disk_bytes(signature)),
                }
            }
            _ => Node::Other { kind, subtype },
        });
        bytes = bytes.get(len..)?;
    }
}

/// UTF-16LE up to the first NUL (or the end); the bytes after that NUL.
fn utf16_until_nul(bytes: &[u8]) -> Option<(String, &[u8])> {
    let mut units = Vec::new();
    let mut at = 0;
    while let Some(unit) = le16(bytes, at) {
        at += 2;
        if unit == 0 {
            return Some((String::from_utf16_lossy(&units), bytes.get(at..)?));
        }
        units.push(unit);
    }
    None
}

/// Parses an `EFI_LOAD_OPTION` (a `Boot####` value without its attributes).
pub fn parse_load_option(bytes: &[u8]) -> Option<LoadOption> {
    let path_len = usize::from(le16(bytes, 4)?);
    let (description, rest) = utf16_until_nul(bytes.get(6..)?)?;
    let path = parse_device_path(rest.get(..path_len)?)?;
    Some(LoadOption { description, path })
}

/// The value of variable `name` of `vendor` in the efivarfs at `efivars`, without its
/// attributes.
pub fn read_var(efivars: &Path, name: &str, vendor: &str) -> Result<Vec<u8>, EfiError> {
    let path = efivars.join(format!("{name}-{vendor}"));
    let bytes = std::fs::read(&path).map_err(|source| EfiError::Read { path, source })?;
    bytes
        .get(4..)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| EfiError::Malformed {
            name: name.to_owned(),
            why: "shorter than its attributes",
        })
}

/// Whether the firmware booted with Secure Boot on (`SecureBoot`: one byte, 1 = on).
/// `Ok(None)` when the firmware has no such variable (a UEFI older than 2.3.1, which has
/// no Secure Boot).
pub fn secure_boot(efivars: &Path) -> Result<Option<bool>, EfiError> {
    let name = "SecureBoot";
    match read_var(efivars, name, GLOBAL) {
        Ok(value) => match value.as_slice() {
            [0] => Ok(Some(false)),
            [1] => Ok(Some(true)),
            _ => Err(EfiError::Malformed {
                name: name.to_owned(),
                why: "not one byte of 0 or 1",
            }),
        },
        Err(EfiError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The load option the firmware booted (`BootCurrent`, then its `Boot####`).
pub fn boot_current(efivars: &Path) -> Result<(u16, LoadOption), EfiError> {
    let current = read_var(efivars, "BootCurrent", GLOBAL)?;
    let number = le16(&current, 0).ok_or_else(|| EfiError::Malformed {
        name: "BootCurrent".to_owned(),
        why: "not a 16-bit number",
    })?;
    let name = format!("Boot{number:04X}");
    let option = read_var(efivars, &name, GLOBAL)?;
    let option = parse_load_option(&option).ok_or(EfiError::Malformed {
        name,
        why: "not a load option with a device path",
    })?;
    Ok((number, option))
}

/// `LoaderDevicePartUUID`: the partition the loader (or a unified kernel image) came from.
/// `Ok(None)` when no loader set it.
pub fn loader_device_partuuid(efivars: &Path) -> Result<Option<Guid>, EfiError> {
    let name = "LoaderDevicePartUUID";
    let bytes = match read_var(efivars, name, LOADER) {
        Ok(b) => b,
        Err(EfiError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    // UTF-16 text, NUL-terminated or not.
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .take_while(|&u| u != 0)
        .collect();
    let text = String::from_utf16_lossy(&units);
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| EfiError::Malformed {
            name: name.to_owned(),
            why: "not a GUID",
        })
}

/// One entry of a signature list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEntry {
    /// The list's `SignatureType` ([`CERT_X509`], [`CERT_SHA256`], ...).
    pub kind: Guid,
    /// The entry's `SignatureOwner`.
    pub owner: Guid,
    /// The entry's data (a DER certificate, a digest).
    pub data: Vec<u8>,
}

/// The entries of the `EFI_SIGNATURE_LIST`s in `bytes` (a `db`/`dbx` value without its
/// attributes, or an `.esl` file). `None` when a list's sizes do not add up: a list
/// shorter than its header, an entry size smaller than an owner GUID or one that does not
/// divide the list, or a list running past the end.
pub fn signature_lists(mut bytes: &[u8]) -> Option<Vec<SignatureEntry>> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let kind = Guid::from_disk_bytes(bytes.get(..16)?.try_into().ok()?);
        let list_size = usize::try_from(le32(bytes, 16)?).ok()?;
        let header_size = usize::try_from(le32(bytes, 20)?).ok()?;
        let entry_size = usize::try_from(le32(bytes, 24)?).ok()?;
        let list = bytes.get(..list_size)?;
        let body = list.get(28usize.checked_add(header_size)?..)?;
        if entry_size <= 16 || body.len() % entry_size != 0 {
            return None;
        }
        for entry in body.chunks_exact(entry_size) {
            let (owner, data) = entry.split_at_checked(16)?;
            entries.push(SignatureEntry {
                kind,
                owner: Guid::from_disk_bytes(owner.try_into().ok()?),
                data: data.to_vec(),
            });
        }
        bytes = bytes.get(list_size..)?;
    }
    Some(entries)
}

/// The entries of signature database `name` (`db`, `dbx`) in the efivarfs at `efivars`;
/// `Ok(None)` when the variable does not exist.
pub fn signature_database(
    efivars: &Path,
    name: &str,
) -> Result<Option<Vec<SignatureEntry>>, EfiError> {
    let bytes = match read_var(efivars, name, IMAGE_SECURITY_DATABASE) {
        Ok(b) => b,
        Err(EfiError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    signature_lists(&bytes)
        .map(Some)
        .ok_or_else(|| EfiError::Malformed {
            name: name.to_owned(),
            why: "not a sequence of EFI_SIGNATURE_LISTs",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: u8, subtype: u8, data: &[u8]) -> Vec<u8> {
        let mut n = vec![kind, subtype];
        n.extend_from_slice(&(data.len() as u16 + 4).to_le_bytes());
        n.extend_from_slice(data);
        n
    }

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    /// `PciRoot(0x0)/Pci(0x4,0x0)/NVMe(0x1,...)/HD(1,GPT,<guid>,0x800,0x8000)/\EFI\BOOT`.
    fn nvme_path(guid: Guid) -> Vec<u8> {
        let mut hd = Vec::new();
        hd.extend_from_slice(&1u32.to_le_bytes());
        hd.extend_from_slice(&0x800u64.to_le_bytes());
        hd.extend_from_slice(&0x8000u64.to_le_bytes());
        hd.extend_from_slice(&guid.to_disk_bytes());
        hd.extend_from_slice(&[0x02, 0x02]);
        let mut nvme = 1u32.to_le_bytes().to_vec();
        nvme.extend_from_slice(&[0; 8]);
        let mut acpi = 0x0a03_41d0u32.to_le_bytes().to_vec();
        acpi.extend_from_slice(&0u32.to_le_bytes());
        [
            node(0x02, 0x01, &acpi),
            node(0x01, 0x01, &[0x00, 0x04]),
            node(0x03, 0x17, &nvme),
            node(0x04, 0x01, &hd),
            node(0x04, 0x04, &utf16z("\\EFI\\BOOT")),
            node(0x7f, 0xff, &[]),
        ]
        .concat()
    }

    #[test]
    fn load_option_with_an_nvme_path() {
        let guid: Guid = "0123abcd-89ab-cdef-0123-456789abcdef".parse().unwrap();
        let path = nvme_path(guid);
        let mut option = 1u32.to_le_bytes().to_vec();
        option.extend_from_slice(&(path.len() as u16).to_le_bytes());
        option.extend_from_slice(&utf16z("UEFI QEMU NVMe Ctrl"));
        option.extend_from_slice(&path);
        option.extend_from_slice(b"optional data");
        let parsed = parse_load_option(&option).unwrap();
        assert_eq!(parsed.description, "UEFI QEMU NVMe Ctrl");
        assert_eq!(
            parsed.path,
            [
                Node::PciRoot { uid: 0 },
                Node::Pci {
                    device: 4,
                    function: 0
                },
                Node::Nvme { nsid: 1 },
                Node::HardDrive {
                    number: 1,
                    partuuid: Some(guid)
                },
                Node::Other {
                    kind: 0x04,
                    subtype: 0x04
                },
            ]
        );
    }

    #[test]
    fn bad_paths_are_refused_not_guessed() {
        let guid = Guid::from_u128(1);
        let good = nvme_path(guid);
        // Every truncation of a good path fails to parse or ends early at a whole node.
        for cut in 0..good.len() {
            if let Some(nodes) = parse_device_path(&good[..cut]) {
                panic!("cut at {cut} parsed as {nodes:?}");
            }
        }
        // A node claiming less than its header, or more than there is.
        assert_eq!(parse_device_path(&[0x01, 0x01, 0x02, 0x00]), None);
        assert_eq!(parse_device_path(&[0x01, 0x01, 0x40, 0x00, 0, 4]), None);
        // A load option whose path length runs past its end.
        let mut option = 1u32.to_le_bytes().to_vec();
        option.extend_from_slice(&200u16.to_le_bytes());
        option.extend_from_slice(&utf16z("x"));
        option.extend_from_slice(&good);
        assert_eq!(parse_load_option(&option), None);
    }

    #[test]
    fn variables_from_an_efivarfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, vendor: &str, value: &[u8]| {
            let mut bytes = 7u32.to_le_bytes().to_vec();
            bytes.extend_from_slice(value);
            std::fs::write(dir.path().join(format!("{name}-{vendor}")), bytes).unwrap();
        };
        assert!(matches!(
            boot_current(dir.path()),
            Err(EfiError::Read { .. })
        ));
        assert_eq!(loader_device_partuuid(dir.path()).unwrap(), None);
        assert_eq!(secure_boot(dir.path()).unwrap(), None);
        for (value, want) in [(0, false), (1, true)] {
            write("SecureBoot", GLOBAL, &[value]);
            assert_eq!(secure_boot(dir.path()).unwrap(), Some(want));
        }
        for bad in [&[2u8][..], &[1, 0], &[]] {
            write("SecureBoot", GLOBAL, bad);
            assert!(matches!(
                secure_boot(dir.path()),
                Err(EfiError::Malformed { .. })
            ));
        }

        let guid = Guid::from_u128(0x0123abcd_89ab_cdef_0123_456789abcdef);
        let path = nvme_path(guid);
        let mut option = 1u32.to_le_bytes().to_vec();
        option.extend_from_slice(&(path.len() as u16).to_le_bytes());
        option.extend_from_slice(&utf16z("disk"));
        option.extend_from_slice(&path);
        write("BootCurrent", GLOBAL, &0x000au16.to_le_bytes());
        write("Boot000A", GLOBAL, &option);
        let (number, parsed) = boot_current(dir.path()).unwrap();
        assert_eq!((number, parsed.description.as_str()), (10, "disk"));

        write(
            "LoaderDevicePartUUID",
            LOADER,
            &utf16z("0123ABCD-89AB-CDEF-0123-456789ABCDEF"),
        );
        assert_eq!(loader_device_partuuid(dir.path()).unwrap(), Some(guid));
        write("LoaderDevicePartUUID", LOADER, &utf16z("not a guid"));
        assert!(matches!(
            loader_device_partuuid(dir.path()),
            Err(EfiError::Malformed { .. })
        ));
        write("BootCurrent", GLOBAL, &[1]);
        assert!(matches!(
            boot_current(dir.path()),
            Err(EfiError::Malformed { .. })
        ));
    }

    fn list(kind: Guid, entries: &[&[u8]]) -> Vec<u8> {
        let size = entries.first().map_or(16, |e| e.len() + 16);
        let mut l = kind.to_disk_bytes().to_vec();
        l.extend_from_slice(&((28 + size * entries.len()) as u32).to_le_bytes());
        l.extend_from_slice(&0u32.to_le_bytes());
        l.extend_from_slice(&(size as u32).to_le_bytes());
        for e in entries {
            l.extend_from_slice(&Guid::from_u128(7).to_disk_bytes());
            l.extend_from_slice(e);
        }
        l
    }

    #[test]
    fn signature_lists_and_their_sizes() {
        // The GUIDs in their on-disk byte order, as the UEFI specification prints them.
        assert_eq!(
            CERT_X509.to_disk_bytes()[..4],
            [0xa1, 0x59, 0xc0, 0xa5],
            "{CERT_X509}"
        );
        assert_eq!(
            CERT_SHA256.to_string(),
            "c1c41626-504c-4092-aca9-41f936934328"
        );
        let bytes = [
            list(CERT_X509, &[b"certificate one"]),
            list(CERT_SHA256, &[&[1; 32], &[2; 32]]),
        ]
        .concat();
        let entries = signature_lists(&bytes).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].kind, CERT_X509);
        assert_eq!(entries[0].data, b"certificate one");
        assert_eq!(entries[0].owner, Guid::from_u128(7));
        assert_eq!(entries[2].data, [2; 32]);
        assert_eq!(signature_lists(&[]), Some(vec![]));
        // Every truncation fails, except at a list boundary.
        let first = list(CERT_X509, &[b"certificate one"]).len();
        for cut in 1..bytes.len() {
            assert_eq!(
                signature_lists(&bytes[..cut]).is_some(),
                cut == first,
                "cut at {cut}"
            );
        }
        // An entry size that does not divide the list, or is no larger than its owner.
        let mut bad = list(CERT_SHA256, &[&[1; 32], &[2; 32]]);
        bad[24..28].copy_from_slice(&40u32.to_le_bytes());
        assert_eq!(signature_lists(&bad), None);
        bad[24..28].copy_from_slice(&16u32.to_le_bytes());
        assert_eq!(signature_lists(&bad), None);
        bad[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(signature_lists(&bad), None);
    }

    #[test]
    fn databases_from_efivarfs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(signature_database(dir.path(), "db").unwrap(), None);
        let write = |name: &str, vendor: &str, value: &[u8]| {
            let mut bytes = 0x27u32.to_le_bytes().to_vec();
            bytes.extend_from_slice(value);
            std::fs::write(dir.path().join(format!("{name}-{vendor}")), bytes).unwrap();
        };
        write("db", IMAGE_SECURITY_DATABASE, &list(CERT_X509, &[b"der"]));
        let db = signature_database(dir.path(), "db").unwrap().unwrap();
        assert_eq!(db[0].data, b"der");
        write("dbx", IMAGE_SECURITY_DATABASE, &[1, 2, 3]);
        assert!(matches!(
            signature_database(dir.path(), "dbx"),
            Err(EfiError::Malformed { .. })
        ));
    }
}
