//! Installing an update payload (BOOT, ROOT and HASH images) into the inactive slot.
//!
//! # Manifest
//!
//! A text file, one item a line (`#` comments and blank lines ignored):
//!
//! ```text
//! boot <bytes> <blake3 hex>
//! root <bytes> <blake3 hex>
//! hash <bytes> <blake3 hex>
//! verity-root-hash <hex>
//! version <dotted numbers>
//! ```
//!
//! The first four are required. `version` is the UKI's `IMAGE_VERSION=` (its `.osrel`,
//! [`crate::uki`]); a manifest without it promises a UKI without one. [`Manifest::for_files`]
//! makes one from image files, taking the version from the BOOT image's UKI.
//!
//! # Signature
//!
//! `manifest.sig` beside it (or `--manifest-sig`) is a detached RSA PKCS#1 v1.5 SHA-256
//! signature over the manifest's exact bytes by the db key, the key that signs the UKI
//! ([`crate::authenticode::detached`]; `openssl dgst -sha256 -sign db.key`). Whenever the
//! UKI's signature is checked ([`Signature::Verify`]: `--trust` or Secure Boot), so is the
//! manifest's, with the same certificates, before the manifest is parsed ([`read_manifest`]);
//! a missing or bad signature stops the install before anything is written. It covers the
//! sizes and digests of all three images, the version and the root hash: a payload whose
//! ROOT or HASH was swapped together with the manifest's digests is refused unless the
//! db key signed that manifest. With no trust in force neither signature is checked.
//!
//! # Order (crash safety)
//!
//! 0. The BOOT image is read into memory and checked against the manifest (size, BLAKE3);
//!    its kernel image's signature must verify when [`InstallOptions::signature`] asks
//!    (Authenticode against db/dbx or `--trust` certificates), its command line must name
//!    the inactive slot and the manifest's verity root hash
//!    ([`crate::uki::check_boot_image`]), its `IMAGE_VERSION=` must be the manifest's
//!    `version`, and not lower than the running slot's unless the caller allows a
//!    downgrade. (The manifest's own signature was checked when it was read,
//!    [`read_manifest`].) The HASH image's superblock
//!    and the top block of its tree must give that root hash, with the salt the UKI names
//!    ([`check_hash_image`]): HASH is tied to the signed UKI before anything is written,
//!    and ROOT to HASH in step 5. A refusal here writes nothing.
//! 1. `clear-inactive` is written to the GPT first: from here until step 6 the inactive slot
//!    has priority 0 and no tries, so it cannot boot whatever happens.
//! 2. Each image file is checked against the manifest (size, BLAKE3) before anything of it is
//!    written, and must fit its partition.
//! 3. Each image is copied into its partition, hashing what is written; the disk is synced.
//! 4. The written ranges are dropped from the page cache ([`DropCache`]; `posix_fadvise`
//!    `DONTNEED` after the sync), then each partition's first `size` bytes are read back from
//!    the device and hashed again.
//! 5. The ROOT partition is checked against the HASH partition's verity tree and the
//!    manifest's verity root hash (the `verity` crate; every data and tree block).
//! 6. `mark-inactive-valid` (one try, priority still 0). The slot boots only after
//!    `upgrade-to-inactive`.
//!
//! What boots is decided by the signed UKI (kernel, initramfs, command line with the root
//! hash); the manifest's root hash and version must be the UKI's, and its signature makes
//! the sizes and BLAKE3 digests the db key holder's word, not only a check for damage.
//!
//! Any failure stops the install and leaves the slot as step 1 left it: not bootable. An
//! interrupted install (power cut) is the same. Running it again starts over.

use crate::decide::SlotWords;
use crate::disk::{DiskError, Part, Region, SlotDisk};
use crate::uki::{Signature, Version};
use crate::{transition, Slot};
use gpt::BlockIo;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Copy and hash buffer size.
const CHUNK: usize = 1 << 20;

/// A BLAKE3 digest.
pub type Digest = [u8; 32];

/// One image of the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageDigest {
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its bytes.
    pub blake3: Digest,
}

/// An update manifest (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The BOOT image.
    pub boot: ImageDigest,
    /// The ROOT image.
    pub root: ImageDigest,
    /// The HASH image (verity superblock and tree).
    pub hash: ImageDigest,
    /// The verity root hash of ROOT with HASH, hex.
    pub verity_root_hash: String,
    /// The UKI's `IMAGE_VERSION=` (`None`: the UKI has none).
    pub version: Option<Version>,
}

/// A manifest that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A line that is not one of the four items.
    #[error("manifest line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An item given twice.
    #[error("manifest line {line}: {item} given twice")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// The item.
        item: String,
    },
    /// An item missing.
    #[error("manifest has no {0} line")]
    Missing(&'static str),
    /// Bytes that are not UTF-8.
    #[error("the manifest is not UTF-8 text")]
    NotText,
}

impl Manifest {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let mut images: [Option<ImageDigest>; 3] = [None; 3];
        let mut root_hash: Option<String> = None;
        let mut version: Option<Version> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let fields: Vec<&str> = raw.split_whitespace().collect();
            let bad = |reason| ManifestError::Line { line, reason };
            match fields.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["version", v] => {
                    let v = Version::parse(v).ok_or(bad("version is not dotted numbers"))?;
                    if version.replace(v).is_some() {
                        return Err(ManifestError::Duplicate {
                            line,
                            item: "version".into(),
                        });
                    }
                }
                ["verity-root-hash", h] => {
                    if verity::hex::decode(h).is_err() {
                        return Err(bad("verity root hash is not hex"));
                    }
                    if root_hash.replace(h.to_ascii_lowercase()).is_some() {
                        return Err(ManifestError::Duplicate {
                            line,
                            item: "verity-root-hash".into(),
                        });
                    }
                }
                [name, size, digest] => {
                    let index = Part::ALL
                        .iter()
                        .position(|p| p.as_str() == *name)
                        .ok_or(bad(
                            "unknown item (boot, root, hash, verity-root-hash, version)",
                        ))?;
                    let size = size.parse().map_err(|_| bad("size is not a number"))?;
                    let blake3 = verity::hex::decode_array(digest)
                        .map_err(|_| bad("digest is not 64 hex digits"))?;
                    let slot = images.get_mut(index).ok_or(bad("unknown item"))?;
                    if slot.replace(ImageDigest { size, blake3 }).is_some() {
                        return Err(ManifestError::Duplicate {
                            line,
                            item: (*name).to_owned(),
                        });
                    }
                }
                _ => return Err(bad(
                    "expected `<item> <bytes> <blake3>`, `verity-root-hash <hex>` or `version <v>`",
                )),
            }
        }
        let [boot, root, hash] = images;
        Ok(Manifest {
            boot: boot.ok_or(ManifestError::Missing("boot"))?,
            root: root.ok_or(ManifestError::Missing("root"))?,
            hash: hash.ok_or(ManifestError::Missing("hash"))?,
            verity_root_hash: root_hash.ok_or(ManifestError::Missing("verity-root-hash"))?,
            version,
        })
    }

    /// The text form ([`Manifest::parse`] reads it back).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for part in Part::ALL {
            let d = self.image(part);
            out.push_str(&format!(
                "{} {} {}\n",
                part.as_str(),
                d.size,
                verity::hex::encode(&d.blake3)
            ));
        }
        out.push_str(&format!("verity-root-hash {}\n", self.verity_root_hash));
        if let Some(v) = &self.version {
            out.push_str(&format!("version {v}\n"));
        }
        out
    }

    /// The digest of `part`.
    pub fn image(&self, part: Part) -> ImageDigest {
        match part {
            Part::Boot => self.boot,
            Part::Root => self.root,
            Part::Hash => self.hash,
        }
    }

    /// A manifest for image files (digests computed here) and a verity root hash; the
    /// version is the one the BOOT image's UKI names (its signature is not checked here).
    pub fn for_files(payload: &Payload, verity_root_hash: &str) -> Result<Manifest, InstallError> {
        let boot = payload.path(Part::Boot);
        let bytes = std::fs::read(boot).map_err(|source| InstallError::Read {
            path: boot.to_owned(),
            source,
        })?;
        let version = crate::uki::read_boot_image(&bytes)
            .map_err(|source| InstallError::Uki {
                path: boot.to_owned(),
                source,
            })?
            .version;
        let digest = |part| -> Result<ImageDigest, InstallError> {
            let path = payload.path(part);
            let (size, blake3) = digest_file(path)?;
            Ok(ImageDigest { size, blake3 })
        };
        Ok(Manifest {
            boot: digest(Part::Boot)?,
            root: digest(Part::Root)?,
            hash: digest(Part::Hash)?,
            verity_root_hash: verity_root_hash.to_ascii_lowercase(),
            version,
        })
    }
}

/// The detached signature's file for `manifest` when none is named: `<manifest>.sig`.
pub fn default_signature_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Reads the manifest at `path` and, when `signature` asks for checks, first checks its
/// detached signature `sig` over the bytes read (see the module docs), so an unsigned or
/// changed manifest is not even parsed. Returns the manifest and, when checked, the subject
/// of the certificate whose key signed it. Does not write.
pub fn read_manifest(
    path: &Path,
    sig: &Path,
    signature: &Signature,
) -> Result<(Manifest, Option<String>), InstallError> {
    let bytes = std::fs::read(path).map_err(|source| InstallError::Read {
        path: path.to_owned(),
        source,
    })?;
    let signed_by = match signature {
        Signature::Unchecked => None,
        #[cfg(feature = "authenticode")]
        Signature::Verify(trust) => {
            let signature = match std::fs::read(sig) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(InstallError::ManifestUnsigned {
                        sig: sig.to_owned(),
                        manifest: path.to_owned(),
                    })
                }
                Err(source) => {
                    return Err(InstallError::Read {
                        path: sig.to_owned(),
                        source,
                    })
                }
            };
            Some(
                crate::authenticode::verify_detached(&bytes, &signature, trust).map_err(
                    |source| InstallError::ManifestSignature {
                        sig: sig.to_owned(),
                        manifest: path.to_owned(),
                        source,
                    },
                )?,
            )
        }
    };
    #[cfg(not(feature = "authenticode"))]
    let _ = sig;
    let text = std::str::from_utf8(&bytes).map_err(|_| InstallError::Manifest {
        path: path.to_owned(),
        source: ManifestError::NotText,
    })?;
    let manifest = Manifest::parse(text).map_err(|source| InstallError::Manifest {
        path: path.to_owned(),
        source,
    })?;
    Ok((manifest, signed_by))
}

/// The image files of an update.
#[derive(Debug, Clone)]
pub struct Payload {
    /// BOOT image.
    pub boot: PathBuf,
    /// ROOT image.
    pub root: PathBuf,
    /// HASH image.
    pub hash: PathBuf,
}

impl Payload {
    /// The file for `part`.
    pub fn path(&self, part: Part) -> &Path {
        match part {
            Part::Boot => &self.boot,
            Part::Root => &self.root,
            Part::Hash => &self.hash,
        }
    }
}

/// A failed install step; each names the file, partition or disk.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The active and inactive slots are the same.
    #[error("reading or writing the slot state: {0}")]
    Disk(#[from] DiskError),
    /// Opening a payload file.
    #[error("opening {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading a payload file.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A payload file's size differs from the manifest (truncated or padded).
    #[error("{path} is {actual} bytes, the manifest says {expected}")]
    Size {
        /// The file.
        path: PathBuf,
        /// Its size.
        actual: u64,
        /// The manifest's size.
        expected: u64,
    },
    /// A payload file's digest differs from the manifest.
    #[error("{path} has BLAKE3 {actual}, the manifest says {expected}")]
    Digest {
        /// The file.
        path: PathBuf,
        /// Its digest.
        actual: String,
        /// The manifest's digest.
        expected: String,
    },
    /// The BOOT image's FAT was made for another logical sector size than the disk's, so
    /// the firmware could not read it there.
    #[error("{path}: its FAT file system has {image}-byte sectors, but {device} has {disk}-byte sectors (build the payload with --sector-size {disk})", path = path.display(), device = device.display())]
    SectorSize {
        /// The BOOT image.
        path: PathBuf,
        /// Bytes per sector in the image's FAT boot sector.
        image: u64,
        /// The disk.
        device: PathBuf,
        /// The disk's logical sector size.
        disk: u64,
    },
    /// An image larger than its partition.
    #[error("{part} image of {size} bytes does not fit partition {number} ({len} bytes)", part = part.as_str())]
    TooLarge {
        /// Which image.
        part: Part,
        /// Its size.
        size: u64,
        /// The partition number.
        number: u32,
        /// The partition size.
        len: u64,
    },
    /// Writing an image into its partition.
    #[error("writing the {part} image to partition {number} of {device}: {source}", part = part.as_str(), device = device.display())]
    Write {
        /// Which image.
        part: Part,
        /// The partition number.
        number: u32,
        /// The disk.
        device: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Syncing the disk after writing.
    #[error("syncing {device}: {source}", device = device.display())]
    Sync {
        /// The disk.
        device: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// What was read back differs from the manifest.
    #[error("partition {number} ({part}) of {device} reads back as BLAKE3 {actual}, expected {expected}", part = part.as_str(), device = device.display())]
    ReadBack {
        /// Which image.
        part: Part,
        /// The partition number.
        number: u32,
        /// The disk.
        device: PathBuf,
        /// The digest read back.
        actual: String,
        /// The manifest's digest.
        expected: String,
    },
    /// Reading back a partition.
    #[error("reading back partition {number} of {device}: {source}", device = device.display())]
    ReadBackIo {
        /// The partition number.
        number: u32,
        /// The disk.
        device: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The HASH partition's superblock or parameters are unusable.
    #[error("verity superblock of the new HASH partition on {device}: {reason}", device = device.display())]
    Superblock {
        /// The disk.
        device: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The new ROOT does not match the verity tree and root hash.
    #[error("new ROOT on {device} fails verity against root hash {root_hash}: {detail}", device = device.display())]
    Verity {
        /// The disk.
        device: PathBuf,
        /// The manifest's root hash.
        root_hash: String,
        /// What failed.
        detail: String,
    },
    /// The slot state refuses the final transition.
    #[error("marking the inactive slot valid: {0}")]
    Transition(#[from] transition::TransitionError),
    /// The update's kernel image is older than the running slot's.
    #[error(
        "the update's kernel image is version {payload}, lower than the running slot's \
         {running} (--allow-downgrade installs it anyway)"
    )]
    Downgrade {
        /// The running slot's version.
        running: String,
        /// The update's version (`none` when it has none).
        payload: String,
    },
    /// The HASH image does not give the root hash of the signed kernel image.
    #[error("{path} does not carry the signed root hash {root_hash}: {reason}", path = path.display())]
    HashImage {
        /// The HASH image.
        path: PathBuf,
        /// The UKI's (and the manifest's) root hash.
        root_hash: String,
        /// What differs.
        reason: String,
    },
    /// The manifest does not parse.
    #[error("{path}: {source}", path = path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        source: ManifestError,
    },
    /// Signatures are checked and the manifest has none.
    #[error(
        "{sig}: missing: with --trust or Secure Boot on, {manifest} must be signed \
         (openssl dgst -sha256 -sign db.key -out {sig} {manifest})",
        sig = sig.display(), manifest = manifest.display()
    )]
    ManifestUnsigned {
        /// The signature file looked for.
        sig: PathBuf,
        /// The manifest.
        manifest: PathBuf,
    },
    /// The manifest's signature is refused.
    #[cfg(feature = "authenticode")]
    #[error("{sig}: the signature of {manifest} {source}", sig = sig.display(), manifest = manifest.display())]
    ManifestSignature {
        /// The signature file.
        sig: PathBuf,
        /// The manifest.
        manifest: PathBuf,
        /// Why.
        source: crate::authenticode::DetachedError,
    },
    /// The manifest's version is not the signed kernel image's.
    #[error(
        "{path}: {uki_file} has IMAGE_VERSION {uki}, the manifest says version {manifest}",
        path = path.display(), uki_file = crate::uki::UKI_FILE
    )]
    Version {
        /// The BOOT image.
        path: PathBuf,
        /// The UKI's version (`none` when it has none).
        uki: String,
        /// The manifest's (`none` when it has none).
        manifest: String,
    },
    /// The BOOT image's signed kernel image does not match the update.
    #[error("{path}: {source}")]
    Uki {
        /// The BOOT image.
        path: PathBuf,
        /// What is wrong.
        source: crate::uki::UkiError,
    },
}

/// Size and BLAKE3 of a file.
pub fn digest_file(path: &Path) -> Result<(u64, Digest), InstallError> {
    let mut file = File::open(path).map_err(|source| InstallError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|source| InstallError::Read {
            path: path.to_owned(),
            source,
        })?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        size += n as u64;
    }
    Ok((size, *hasher.finalize().as_bytes()))
}

/// Evicting written data from the page cache so a read-back comes from the device.
pub trait DropCache {
    /// Drops the cached pages of `region` (after a sync, so they are clean).
    fn drop_cache(&self, region: Region) -> std::io::Result<()>;
}

impl DropCache for File {
    fn drop_cache(&self, region: Region) -> std::io::Result<()> {
        let Some(len) = std::num::NonZeroU64::new(region.len) else {
            return Ok(());
        };
        rustix::fs::fadvise(self, region.offset, Some(len), rustix::fs::Advice::DontNeed)
            .map_err(std::io::Error::from)
    }
}

/// Memory has no cache to drop.
impl DropCache for gpt::testing::MemDisk {
    fn drop_cache(&self, _region: Region) -> std::io::Result<()> {
        Ok(())
    }
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The slot written.
    pub slot: Slot,
    /// The attribute words after the install.
    pub words: SlotWords,
    /// Bytes written in all.
    pub bytes: u64,
    /// Who signed the kernel image (`None`: its signature was not checked).
    pub signed_by: Option<String>,
}

/// A partition as a `verity` reader.
struct RegionReader<'a, D> {
    disk: &'a D,
    region: Region,
}

impl<D: BlockIo + Sync> verity::tree::ReadAt for RegionReader<'_, D> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.region.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the partition",
            ));
        }
        self.disk.read_at(self.region.offset + offset, buf)
    }
}

fn check_verity<D: BlockIo + Sync>(
    disk: &SlotDisk<D>,
    slot: Slot,
    root_hash: &str,
) -> Result<(), InstallError> {
    let device = disk.device().to_owned();
    let sb_err = |reason: String| InstallError::Superblock {
        device: device.clone(),
        reason,
    };
    let io = disk.io_ref();
    let root = RegionReader {
        disk: io,
        region: disk.region(slot, Part::Root)?,
    };
    let hash = RegionReader {
        disk: io,
        region: disk.region(slot, Part::Hash)?,
    };
    let mut head = [0u8; verity::SUPERBLOCK_SIZE];
    verity::tree::ReadAt::read_exact_at(&hash, &mut head, 0).map_err(|e| sb_err(e.to_string()))?;
    let sb = verity::Superblock::parse(&head).map_err(|e| sb_err(e.to_string()))?;
    let layout = verity::Layout {
        hash_offset: 0,
        superblock: true,
        same_device: false,
    };
    let geometry = verity::Geometry::new(&sb.params, &layout).map_err(|e| sb_err(e.to_string()))?;
    if sb.params.data_size() > root.region.len || geometry.hash_device_min_size > hash.region.len {
        return Err(sb_err(
            "the tree describes more data than the partitions hold".into(),
        ));
    }
    let fail = |detail: String| InstallError::Verity {
        device: device.clone(),
        root_hash: root_hash.to_owned(),
        detail,
    };
    let expected = verity::RootHash::from_hex(sb.params.algorithm, root_hash)
        .map_err(|e| fail(e.to_string()))?;
    let run = verity::RunOptions {
        threads: std::num::NonZeroUsize::new(1),
        progress: None,
    };
    let report = verity::tree::check(&sb.params, &geometry, &root, &hash, &expected, &run)
        .map_err(|e| fail(e.to_string()))?;
    if !report.is_ok() {
        return Err(fail(format!("{} mismatching blocks", report.total)));
    }
    Ok(())
}

/// Step 0 of [`install`]: the BOOT image `path` matches the manifest and its UKI is signed
/// as `signature` asks and boots `slot` with the manifest's root hash; returns the UKI.
fn check_boot(
    manifest: &Manifest,
    path: &Path,
    slot: Slot,
    signature: &Signature,
) -> Result<crate::uki::CheckedUki, InstallError> {
    let open = |source| InstallError::Open {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(open)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| InstallError::Read {
            path: path.to_owned(),
            source,
        })?;
    let want = manifest.image(Part::Boot);
    if bytes.len() as u64 != want.size {
        return Err(InstallError::Size {
            path: path.to_owned(),
            actual: bytes.len() as u64,
            expected: want.size,
        });
    }
    let digest: Digest = blake3::hash(&bytes).into();
    if digest != want.blake3 {
        return Err(InstallError::Digest {
            path: path.to_owned(),
            actual: verity::hex::encode(&digest),
            expected: verity::hex::encode(&want.blake3),
        });
    }
    crate::uki::check_boot_image(&bytes, slot, &manifest.verity_root_hash, signature).map_err(
        |source| InstallError::Uki {
            path: path.to_owned(),
            source,
        },
    )
}

/// Step 0, BOOT on this disk: the FAT's bytes per sector (boot sector offset 11) equal the
/// disk's logical sector size; UEFI reads a FAT only in its disk's sectors.
fn check_boot_sectors<D: BlockIo>(path: &Path, disk: &SlotDisk<D>) -> Result<(), InstallError> {
    let mut field = [0u8; 2];
    File::open(path)
        .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut field, 11))
        .map_err(|source| InstallError::Read {
            path: path.to_owned(),
            source,
        })?;
    let image = u64::from(u16::from_le_bytes(field));
    let sectors = disk.gpt().sector_size().bytes();
    if image != sectors {
        return Err(InstallError::SectorSize {
            path: path.to_owned(),
            image,
            device: disk.device().to_owned(),
            disk: sectors,
        });
    }
    Ok(())
}

/// Step 0, HASH: the superblock of the HASH image at `path` and the top block of its tree
/// give `root_hash` (the digest of that block, salted as dm-verity does), and its salt is
/// `salt` when the UKI names one (`liftoff.salt=`, which PID 1 then uses). A tree of no
/// levels (one data block) has no top block; step 5 checks it.
pub fn check_hash_image(
    path: &Path,
    root_hash: &str,
    salt: Option<&str>,
) -> Result<(), InstallError> {
    let fail = |reason: String| InstallError::HashImage {
        path: path.to_owned(),
        root_hash: root_hash.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(|source| InstallError::Open {
        path: path.to_owned(),
        source,
    })?;
    let read = |buf: &mut [u8], offset: u64| {
        std::os::unix::fs::FileExt::read_exact_at(&file, buf, offset).map_err(|source| {
            InstallError::Read {
                path: path.to_owned(),
                source,
            }
        })
    };
    let mut head = [0u8; verity::SUPERBLOCK_SIZE];
    read(&mut head, 0)?;
    let sb = verity::Superblock::parse(&head).map_err(|e| fail(format!("superblock: {e}")))?;
    if let Some(salt) = salt {
        let salt: verity::Salt = salt
            .parse()
            .map_err(|e| fail(format!("the UKI's liftoff.salt={salt}: {e}")))?;
        if salt != sb.params.salt {
            return Err(fail(format!(
                "the superblock's salt {} is not the UKI's liftoff.salt={}",
                sb.params.salt.to_table_string(),
                salt.to_table_string()
            )));
        }
    }
    let layout = verity::Layout {
        hash_offset: 0,
        superblock: true,
        same_device: false,
    };
    let geometry =
        verity::Geometry::new(&sb.params, &layout).map_err(|e| fail(format!("geometry: {e}")))?;
    let len = file
        .metadata()
        .map_err(|source| InstallError::Read {
            path: path.to_owned(),
            source,
        })?
        .len();
    if len < geometry.hash_device_min_size {
        return Err(fail(format!(
            "it is {len} bytes, its tree needs {}",
            geometry.hash_device_min_size
        )));
    }
    let Some(top) = geometry.levels.last() else {
        return Ok(());
    };
    let block_size = u64::from(sb.params.hash_block_size);
    let mut block = vec![0u8; sb.params.hash_block_size as usize];
    let offset = top
        .first_block
        .checked_mul(block_size)
        .ok_or_else(|| fail("the tree lies past any file size".into()))?;
    read(&mut block, offset)?;
    let expected = verity::RootHash::from_hex(sb.params.algorithm, root_hash)
        .map_err(|e| fail(e.to_string()))?;
    let top_hash = verity::tree::block_digest(&sb.params, &block);
    if top_hash != expected.as_bytes() {
        return Err(fail(format!(
            "the top of its tree hashes to {}",
            verity::hex::encode(&top_hash)
        )));
    }
    Ok(())
}

/// Refuses `payload` when it is lower than the version of the UKI on the `active` slot's
/// BOOT partition (none there, or none in it: anything goes).
fn check_downgrade<D: BlockIo>(
    disk: &SlotDisk<D>,
    active: Slot,
    payload: Option<Version>,
) -> Result<(), InstallError> {
    let region = disk.region(active, Part::Boot)?;
    let Ok(running) = crate::uki::read_boot(disk.io_ref(), region) else {
        return Ok(());
    };
    match running.version {
        Some(running) if payload.as_ref().is_none_or(|p| *p < running) => {
            Err(InstallError::Downgrade {
                running: running.to_string(),
                payload: payload.map_or_else(|| "none".to_owned(), |p| p.to_string()),
            })
        }
        _ => Ok(()),
    }
}

/// What [`install`] checks besides the manifest.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Install a kernel image older than the running slot's.
    pub allow_downgrade: bool,
    /// Whether and against what the kernel image's signature is checked.
    pub signature: Signature,
}

/// Installs `payload` into the slot that is not `active` (see the module docs for the order).
/// Returns the report and, when the signature was checked, who signed the kernel image.
/// Writes to the disk.
pub fn install<D: BlockIo + DropCache + Sync>(
    disk: &mut SlotDisk<D>,
    active: Slot,
    manifest: &Manifest,
    payload: &Payload,
    options: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    let slot = active.other();
    // 0. The BOOT image, as the manifest describes it, carries a kernel image signed as
    // asked, for this slot and this root hash, not older than the running one; HASH
    // carries that root hash. Nothing is written before this holds.
    let checked = check_boot(manifest, payload.path(Part::Boot), slot, &options.signature)?;
    check_boot_sectors(payload.path(Part::Boot), disk)?;
    if checked.uki.version != manifest.version {
        let show =
            |v: &Option<Version>| v.as_ref().map_or_else(|| "none".into(), Version::to_string);
        return Err(InstallError::Version {
            path: payload.path(Part::Boot).to_owned(),
            uki: show(&checked.uki.version),
            manifest: show(&manifest.version),
        });
    }
    if !options.allow_downgrade {
        check_downgrade(disk, active, checked.uki.version.clone())?;
    }
    check_hash_image(
        payload.path(Part::Hash),
        &manifest.verity_root_hash,
        checked.uki.value("liftoff.salt"),
    )?;
    // 1. Not bootable from here on.
    disk.store(transition::clear_inactive(disk.words(), active))?;

    // 2. Every file matches the manifest and fits, before the first byte is written.
    for part in Part::ALL {
        let want = manifest.image(part);
        let path = payload.path(part);
        let (size, digest) = digest_file(path)?;
        if size != want.size {
            return Err(InstallError::Size {
                path: path.to_owned(),
                actual: size,
                expected: want.size,
            });
        }
        if digest != want.blake3 {
            return Err(InstallError::Digest {
                path: path.to_owned(),
                actual: verity::hex::encode(&digest),
                expected: verity::hex::encode(&want.blake3),
            });
        }
        let region = disk.region(slot, part)?;
        if size > region.len {
            return Err(InstallError::TooLarge {
                part,
                size,
                number: disk.layout().set(slot).number(part),
                len: region.len,
            });
        }
    }

    // 3. Copy, hashing what is written (the file could change under us).
    let device = disk.device().to_owned();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    for part in Part::ALL {
        let want = manifest.image(part);
        let path = payload.path(part);
        let region = disk.region(slot, part)?;
        let number = disk.layout().set(slot).number(part);
        let mut file = File::open(path).map_err(|source| InstallError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mut hasher = blake3::Hasher::new();
        let mut done = 0u64;
        while done < want.size {
            let n = file.read(&mut buf).map_err(|source| InstallError::Read {
                path: path.to_owned(),
                source,
            })?;
            let take = usize::try_from((want.size - done).min(n as u64)).unwrap_or(0);
            let Some(chunk) = buf.get(..take).filter(|c| !c.is_empty()) else {
                return Err(InstallError::Size {
                    path: path.to_owned(),
                    actual: done,
                    expected: want.size,
                });
            };
            hasher.update(chunk);
            disk.io()
                .write_at(region.offset + done, chunk)
                .map_err(|source| InstallError::Write {
                    part,
                    number,
                    device: device.clone(),
                    source,
                })?;
            done += take as u64;
        }
        if *hasher.finalize().as_bytes() != want.blake3 {
            return Err(InstallError::Digest {
                path: path.to_owned(),
                actual: verity::hex::encode(hasher.finalize().as_bytes()),
                expected: verity::hex::encode(&want.blake3),
            });
        }
        bytes += done;
    }
    disk.io().sync().map_err(|source| InstallError::Sync {
        device: device.clone(),
        source,
    })?;

    // 4. Read back from the device, not from the page cache.
    for part in Part::ALL {
        let want = manifest.image(part);
        let region = disk.region(slot, part)?;
        let number = disk.layout().set(slot).number(part);
        disk.io_ref()
            .drop_cache(Region {
                offset: region.offset,
                len: want.size,
            })
            .map_err(|source| InstallError::ReadBackIo {
                number,
                device: device.clone(),
                source,
            })?;
        let mut hasher = blake3::Hasher::new();
        let mut done = 0u64;
        while done < want.size {
            let take = usize::try_from((want.size - done).min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = buf.get_mut(..take).unwrap_or_default();
            disk.io()
                .read_at(region.offset + done, chunk)
                .map_err(|source| InstallError::ReadBackIo {
                    number,
                    device: device.clone(),
                    source,
                })?;
            hasher.update(chunk);
            done += take as u64;
        }
        if *hasher.finalize().as_bytes() != want.blake3 {
            return Err(InstallError::ReadBack {
                part,
                number,
                device: device.clone(),
                actual: verity::hex::encode(hasher.finalize().as_bytes()),
                expected: verity::hex::encode(&want.blake3),
            });
        }
    }

    // 5. Verity over what is on the disk now.
    check_verity(disk, slot, &manifest.verity_root_hash)?;

    // 6. One try, still priority 0.
    let words = transition::mark_inactive_valid(disk.words(), active)?;
    disk.store(words)?;
    Ok(InstallReport {
        slot,
        words,
        bytes,
        signed_by: checked.signed_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn manifest_round_trip_and_errors() {
        let text =
            format!("# update 2\nboot 10 {D}\nroot 20 {D}\n\nhash 30 {D}\nverity-root-hash ABCD\n");
        let m = Manifest::parse(&text).unwrap();
        assert_eq!((m.boot.size, m.root.size, m.hash.size), (10, 20, 30));
        assert_eq!(m.verity_root_hash, "abcd");
        assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
        assert_eq!(m.version, None);
        let v = Manifest::parse(&format!("{text}version 2.10\n")).unwrap();
        assert_eq!(
            v.version.as_ref().map(Version::to_string).as_deref(),
            Some("2.10")
        );
        assert!(v
            .render()
            .ends_with("verity-root-hash abcd\nversion 2.10\n"));
        assert_eq!(Manifest::parse(&v.render()).unwrap(), v);
        let table: &[(&str, &str)] = &[
            ("boot 1 00\n", "digest"),
            ("boot x {D}\n", "size"),
            ("kernel 1 {D}\n", "unknown item"),
            ("boot 1 {D}\nboot 1 {D}\n", "twice"),
            ("boot 1 {D}\nroot 1 {D}\nhash 1 {D}\n", "verity-root-hash"),
            ("boot 1 {D}\nroot 1 {D}\nverity-root-hash ab\n", "no hash"),
            ("verity-root-hash xyz\n", "not hex"),
            ("boot 1\n", "expected"),
            ("version 1.x\n", "dotted"),
            ("version 1\nversion 2\n", "version given twice"),
        ];
        for (text, want) in table {
            let err = Manifest::parse(&text.replace("{D}", D))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn blake3_of_empty_and_abc() {
        let dir = std::env::temp_dir().join(format!("prairiedog-b3-{}", std::process::id()));
        std::fs::write(&dir, b"").unwrap();
        // The BLAKE3 test vector for the empty input.
        assert_eq!(
            verity::hex::encode(&digest_file(&dir).unwrap().1),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        std::fs::write(&dir, b"abc").unwrap();
        assert_eq!(
            verity::hex::encode(&digest_file(&dir).unwrap().1),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        std::fs::remove_file(&dir).unwrap();
    }
}
