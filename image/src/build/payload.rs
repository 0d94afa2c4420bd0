//! Update payloads: the files `prairiedog install` takes (`boot.img`, `root.img`,
//! `hash.img`, the BLAKE3 `manifest` and its db-key signature `manifest.sig`) for one slot, made from a root tree
//! ([`build_payloads`]) or from an existing root image ([`write_payloads`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use prairiedog::install::{Manifest, Payload};

use super::error::{io_err, BuildError, WorkDir};
use super::spec::{BootSpec, ImageSpec};
use super::stage::make_root_image;
use crate::boot;
use crate::disk::{BuiltDisk, SectorSize, Slot};
use crate::root;
use crate::secureboot::KeySet;
use crate::tool;
use crate::Arch;

/// One payload file.
#[derive(Debug, Clone)]
pub struct PayloadFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// BLAKE3, hex, as in the manifest.
    pub blake3: String,
}

/// Built update payloads.
#[derive(Debug, Clone)]
pub struct BuiltPayloads {
    pub slot: Slot,
    pub root_hash: String,
    pub salt: String,
    pub boot: PayloadFile,
    pub root: PayloadFile,
    pub hash: PayloadFile,
    pub manifest: PathBuf,
    /// The manifest's detached signature by the db key ([`crate::secureboot::sign_detached`]).
    pub manifest_sig: PathBuf,
    /// The BOOT image's kernel command line.
    pub cmdline: String,
}

/// Writes the update payloads of `spec` for `slot` into `out_dir` (created if missing; only
/// the five payload files in it are replaced).
pub fn build_payloads(
    spec: &ImageSpec,
    slot: Slot,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuiltPayloads, BuildError> {
    let work = WorkDir::beside(out_dir, "root")?;
    let root = work.0.join("root.img");
    make_root_image(spec, &root, &work.0, progress)?;
    write_payloads(
        &PayloadSpec {
            arch: spec.arch,
            seed: &spec.seed,
            boot: &spec.boot,
            keys: &spec.keys,
            boot_partuuid: spec.boot_partuuid.as_deref(),
            boot_mib: spec.boot_mib,
            sector_size: spec.sector_size,
            slot,
        },
        &root,
        out_dir,
        progress,
    )
}

/// What [`write_payloads`] needs besides the root image.
#[derive(Debug, Clone)]
pub struct PayloadSpec<'a> {
    pub arch: Arch,
    /// The seed the root image was made with: the same seed gives the same salt, so the
    /// same root hash as a disk of the same version.
    pub seed: &'a str,
    pub boot: &'a BootSpec,
    /// Signs the slot's unified kernel image and the manifest.
    pub keys: &'a KeySet,
    /// The unique GUID of the BOOT partition the payload goes to, when known: it names the
    /// boot disk on the command line (`liftoff.boot_partuuid=`).
    pub boot_partuuid: Option<&'a str>,
    /// Size of the BOOT image (the BOOT partitions of the disks it goes to).
    pub boot_mib: u64,
    /// Logical sector size of the disks it goes to: the BOOT image's FAT sectors.
    pub sector_size: SectorSize,
    /// The slot the update is installed into: it names the slot on the command line.
    pub slot: Slot,
}

/// Writes the payloads for an existing root file system image `root` (copied, not moved)
/// into `out_dir`: its verity tree, the BOOT image, the manifest and its signature.
pub fn write_payloads(
    spec: &PayloadSpec<'_>,
    root: &Path,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuiltPayloads, BuildError> {
    let work = WorkDir::beside(out_dir, "payload")?;
    let staged = |name: &str| work.0.join(name);
    let root_copy = staged("root.img");
    tool::run(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(root)
            .arg(&root_copy),
    )?;
    progress("building the verity tree");
    let (root_hash, salt) = root::make_hash(&root_copy, &staged("hash.img"), spec.seed)?;
    let slot_disk = BuiltDisk {
        path: PathBuf::new(),
        root_hash: root_hash.clone(),
        salt: salt.clone(),
        partuuids: Vec::new(),
        extents: Vec::new(),
        sector_size: spec.sector_size,
    };
    let cmdline = boot::slot_cmdline(
        spec.arch,
        spec.slot,
        &slot_disk,
        spec.boot_partuuid,
        &boot::slot_extra(&spec.boot.kernel, &spec.boot.append),
    );
    // The disks an x86_64 512-byte-sector payload goes to boot under BIOS too: the BOOT
    // image carries the slot's BIOS files as a disk's BOOT partition does.
    let bios_cmdline = crate::bios::supported(spec.arch, spec.sector_size).then(|| {
        let extra = boot::slot_extra(&spec.boot.kernel, &spec.boot.append);
        boot::bios_cmdline(spec.arch, spec.slot, &slot_disk, &extra)
    });
    progress(&format!(
        "making the BOOT image for slot {}",
        spec.slot.name()
    ));
    let files = boot::boot_files(
        spec.keys,
        &boot::SlotBoot {
            arch: spec.arch,
            slot: spec.slot,
            kernel: &spec.boot.kernel,
            initramfs: Some(&spec.boot.initramfs),
            cmdline: &cmdline,
            bios_cmdline: bios_cmdline.as_deref(),
            version: &spec.boot.version,
        },
        &work.0,
    )?;
    // Label and seed as boot::install gives a BOOT partition: a payload for slot A holds
    // exactly what a disk's BOOT-A holds.
    let label = format!("BOOT-{}", spec.slot.name());
    let fat_work = staged("fat");
    std::fs::create_dir_all(&fat_work)
        .map_err(io_err(format!("creating {}", fat_work.display())))?;
    crate::fat::make_fat_tree(
        &staged("boot.img"),
        spec.boot_mib,
        spec.sector_size,
        &label,
        &label,
        &files,
        &fat_work,
    )?;
    progress("digesting the payloads (BLAKE3) for the manifest");
    let payload = Payload {
        boot: staged("boot.img"),
        root: staged("root.img"),
        hash: staged("hash.img"),
    };
    let manifest = Manifest::for_files(&payload, &root_hash).map_err(BuildError::Manifest)?;
    std::fs::write(staged("manifest"), manifest.render())
        .map_err(io_err(format!("writing {}", staged("manifest").display())))?;
    progress("signing the manifest with the db key");
    crate::secureboot::sign_detached(spec.keys, &staged("manifest"), &staged("manifest.sig"))?;
    std::fs::create_dir_all(out_dir).map_err(io_err(format!("creating {}", out_dir.display())))?;
    for name in [
        "boot.img",
        "root.img",
        "hash.img",
        "manifest",
        "manifest.sig",
    ] {
        let dest = out_dir.join(name);
        std::fs::rename(staged(name), &dest)
            .map_err(io_err(format!("renaming to {}", dest.display())))?;
    }
    let file = |name: &str, digest: prairiedog::install::ImageDigest| PayloadFile {
        path: out_dir.join(name),
        bytes: digest.size,
        blake3: verity::hex::encode(&digest.blake3),
    };
    Ok(BuiltPayloads {
        slot: spec.slot,
        root_hash,
        salt,
        boot: file("boot.img", manifest.boot),
        root: file("root.img", manifest.root),
        hash: file("hash.img", manifest.hash),
        manifest: out_dir.join("manifest"),
        manifest_sig: out_dir.join("manifest.sig"),
        cmdline,
    })
}
