//! The image builder: a root tree (a directory or a tarball) into the complete Liftoff disk of
//! DESIGN.md section 3, or into the update payloads `prairiedog install` consumes.
//!
//! # The disk ([`build_image`])
//!
//! | # | label | content |
//! |---|---|---|
//! | 1 | `EFI-SYSTEM` | FAT: stock GRUB at the removable-media path ([`crate::esp::grub_efi`]), `grubenv` with `liftoff_slot=A`, `liftoff_pending=0` |
//! | 2 | `BOOT-A` | FAT: `vmlinuz`, `initramfs`, `grub.cfg` (slot A's command line with the root hash) |
//! | 3, 4 | `ROOT-A`, `HASH-A` | the root file system (erofs or ext4) and its dm-verity superblock and tree |
//! | 5-7 | `BOOT-B`, `ROOT-B`, `HASH-B` | blank, as large as slot A's |
//! | 8 | `PRIVATE` | empty ext4 |
//! | 9 | `DATA` | blank; PID 1 grows, encrypts and formats it |
//! | 10 | `BIOS-BOOT` | x86_64 with 512-byte sectors: GRUB's core image for legacy BIOS, its boot sector in the MBR, and `bios/` files on BOOT-A ([`crate::bios`]) |
//!
//! BOOT-A carries priority 1 and `successful` (DESIGN.md section 4); BOOT-B is all zero.
//!
//! # The payloads ([`build_payloads`], [`write_payloads`])
//!
//! A folder with `boot.img` (the BOOT partition's FAT image for the slot the update goes to,
//! holding its signed unified kernel image),
//! `root.img`, `hash.img`, `manifest` (`boot|root|hash <bytes> <blake3>`,
//! `verity-root-hash <hex>` and `version <v>`, made by `prairiedog`'s own
//! [`prairiedog::install::Manifest::for_files`]) and `manifest.sig` (the manifest signed with
//! the db key, [`crate::secureboot::sign_detached`]), exactly the arguments of
//! `prairiedog install --manifest --boot --root --hash`, which reads `manifest.sig` beside
//! the manifest.
//!
//! # Steps
//!
//! Steps 1 and 2 are in `build/stage.rs`, the payloads in `build/payload.rs`, the inputs in
//! `build/spec.rs`, the error and the work folder in `build/error.rs`, the disk here.
//!
//! 1. Stage: the tree is copied (`cp -a`) or the tarball unpacked (`tar -xp` with xattrs and
//!    numeric owners, any compression tar recognises) into a work folder beside the output.
//!    Missing mount points PID 1 needs (`/local`, `/opt`, `/run`, `/tmp`, `/etc`, `/var`) are
//!    added, and every access and modification time is set to 0.
//! 2. Root file system: [`crate::root::make_root_fs`] (`mkfs.erofs -T0`, or `mkfs.ext4 -d` with
//!    inode times fixed afterwards).
//! 3. Disk: [`disk::build_disk`] (GPT by `sgdisk`, hash tree by the `verity` crate, PRIVATE),
//!    then [`boot::install`] writes the ESP and BOOT-A. Payloads: [`crate::root::make_hash`],
//!    [`crate::fat::make_fat_tree`], the manifest.
//! 4. The output is written under a temporary name and renamed when complete; the work folder
//!    is removed whether the build succeeds or fails, so a failed build leaves nothing behind.
//!
//! # Reproducibility
//!
//! Same inputs and seed, same bytes: every GUID, file system UUID, ext4 hash seed, FAT volume
//! ID and the verity salt and UUID derive from the seed ([`crate::seed::seeded_guid`]); every time
//! stamp is fixed (erofs `-T0`; ext4 `E2FSPROGS_FAKE_TIME` plus `debugfs` for the times
//! `mkfs.ext4 -d` copies from the stage; FAT files at [`crate::fat::FAT_EPOCH`], mtools run with
//! `SOURCE_DATE_EPOCH` and `TZ=UTC`, as FAT keeps local time); the work folder's path never
//! reaches an image.

use std::path::Path;

use crate::boot::{self, Install};
use crate::disk::{self, BuiltDisk, DiskSpec, Slot};

mod error;
mod payload;
mod spec;
mod stage;

use error::{io_err, WorkDir};

pub use error::BuildError;
pub use payload::{build_payloads, write_payloads, BuiltPayloads, PayloadFile, PayloadSpec};
pub use spec::{BootSpec, ImageSpec, DEFAULT_VERSION};
pub use stage::{make_root_image, stage_root, RootSource, MOUNT_POINTS};

/// A built disk.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The disk: its path, root hash, salt, partition GUIDs and extents.
    pub disk: BuiltDisk,
    /// The disk's own GUID.
    pub disk_guid: String,
    /// Length of the root file system image at the start of ROOT-A.
    pub root_bytes: u64,
    /// Length of the verity superblock and tree at the start of HASH-A.
    pub hash_bytes: u64,
    /// BOOT-A's kernel command line, as its unified kernel image carries it.
    pub cmdline: String,
}

/// Writes the whole disk of DESIGN.md section 3 for `spec` to `out` (see the module docs).
/// `progress` gets one line per slow step.
pub fn build_image(
    spec: &ImageSpec,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuiltImage, BuildError> {
    let work = WorkDir::beside(out, "work")?;
    let root = work.0.join("root.img");
    make_root_image(spec, &root, &work.0, progress)?;
    let partial = work.0.join("disk.img");
    progress("building the verity tree and the partition table");
    let disk = disk::build_disk(
        &root,
        &partial,
        &DiskSpec {
            seed: spec.seed.clone(),
            esp_mib: spec.esp_mib,
            boot_mib: spec.boot_mib,
            private_mib: spec.private_mib,
            data_mib: spec.data_mib,
            sector_size: spec.sector_size,
            esp_files: Vec::new(),
            boot_a_files: Vec::new(),
            bios_boot: crate::bios::supported(spec.arch, spec.sector_size),
        },
        &work.0.join("disk"),
    )?;
    progress("installing shim, GRUB, grubenv and the signed kernel image into the ESP and BOOT-A");
    let install = Install {
        arch: spec.arch,
        grubenv: Some(crate::esp::grubenv(Some(Slot::A), Some(false), &work.0)?),
        keys: spec.keys.clone(),
        kernel: spec.boot.kernel.clone(),
        initramfs: spec.boot.initramfs.clone(),
        slots: vec![Slot::A],
        extra_cmdline: spec.boot.append.clone(),
        version: spec.boot.version.clone(),
    };
    boot::install(&disk, &install, &work.0.join("fat"))?;
    let root_bytes = file_len(&root)?;
    let hash_bytes = file_len(&work.0.join("disk/hash.img"))?;
    std::fs::rename(&partial, out).map_err(io_err(format!(
        "renaming {} to {}",
        partial.display(),
        out.display()
    )))?;
    let cmdline = install.cmdline(&disk, Slot::A);
    Ok(BuiltImage {
        disk: BuiltDisk {
            path: out.to_path_buf(),
            ..disk
        },
        disk_guid: crate::seed::seeded_guid(&spec.seed, "disk"),
        root_bytes,
        hash_bytes,
        cmdline,
    })
}

fn file_len(path: &Path) -> Result<u64, BuildError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_err(format!("reading the size of {}", path.display())))
}
