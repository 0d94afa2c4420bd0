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
//!
//! BOOT-A carries priority 1 and `successful` (DESIGN.md section 4); BOOT-B is all zero.
//!
//! # The payloads ([`build_payloads`], [`write_payloads`])
//!
//! A folder with `boot.img` (the BOOT partition's FAT image for the slot the update goes to),
//! `root.img`, `hash.img` and `manifest` (`boot|root|hash <bytes> <blake3>` and
//! `verity-root-hash <hex>`, made by `prairiedog`'s own [`prairiedog::install::Manifest::for_files`]), exactly the
//! arguments of `prairiedog install --manifest --boot --root --hash`.
//!
//! # Steps
//!
//! Steps 1 and 2 are in `build/stage.rs`, the payloads in `build/payload.rs`, the disk here.
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

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use prairiedog::install::InstallError;

use crate::boot::{self, BootError, Install};
use crate::disk::{self, BuiltDisk, DiskSpec, Slot};
use crate::initramfs::Initramfs;
use crate::kernel::Kernel;
use crate::root::RootFsType;
use crate::tool::{self, ImageError};
use crate::{artifacts, system, Arch};

mod payload;
mod stage;

pub use payload::{build_payloads, write_payloads, BuiltPayloads, PayloadFile, PayloadSpec};
pub use stage::{make_root_image, stage_root, RootSource, MOUNT_POINTS};

/// What a slot boots: the kernel image, the initramfs and what is added to the command line.
#[derive(Debug, Clone)]
pub struct BootSpec {
    pub kernel: PathBuf,
    pub initramfs: Vec<u8>,
    /// Added after Liftoff's keys on the slot's command line ([`boot::slot_cmdline`]).
    pub append: String,
}

impl BootSpec {
    /// The cached Debian cloud kernel of `arch` ([`Kernel::debian`]) and Liftoff's initramfs
    /// for it ([`system::initramfs`]: PID 1 from `scripts/build-guest` and the modules it
    /// loads).
    pub fn debian(arch: Arch, append: &str) -> Result<BootSpec, BuildError> {
        let kernel = Kernel::debian(arch).map_err(|e| BuildError::Boot(e.to_string()))?;
        let initramfs = system::initramfs(arch, &kernel).map_err(BuildError::Boot)?;
        Ok(BootSpec {
            kernel: kernel.image,
            initramfs,
            append: append.to_owned(),
        })
    }

    /// `kernel` with Liftoff's initramfs: PID 1 and, when `modules` (the kernel's
    /// `lib/modules/<version>` tree) is given, the modules of [`system::SYSTEM_MODULES`] from
    /// it; without `modules`, PID 1 alone, for a kernel with everything built in (the
    /// minimal kernel of `kernel-config/`).
    pub fn kernel(
        arch: Arch,
        kernel: &Path,
        modules: Option<&Path>,
        append: &str,
    ) -> Result<BootSpec, BuildError> {
        if !kernel.is_file() {
            return Err(BuildError::Boot(format!(
                "the kernel {} is not a file",
                kernel.display()
            )));
        }
        let initramfs = match modules {
            Some(dir) => {
                let k = Kernel {
                    arch,
                    version: dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    image: kernel.to_path_buf(),
                    modules_dir: dir.to_path_buf(),
                };
                system::initramfs(arch, &k).map_err(BuildError::Boot)?
            }
            None => {
                let init = artifacts::musl_binary(arch, "init").map_err(BuildError::Boot)?;
                let mut initramfs =
                    Initramfs::new().map_err(|e| BuildError::Boot(e.to_string()))?;
                initramfs
                    .host_file("init", 0o755, &init)
                    .map_err(|e| BuildError::Boot(e.to_string()))?;
                initramfs
                    .finish()
                    .map_err(|e| BuildError::Boot(e.to_string()))?
            }
        };
        Ok(BootSpec {
            kernel: kernel.to_path_buf(),
            initramfs,
            append: append.to_owned(),
        })
    }
}

/// Everything [`build_image`] and [`build_payloads`] take.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub arch: Arch,
    /// The root: a directory, or a tarball (`.tar`, `.tar.gz`, ...).
    pub root: PathBuf,
    pub fs: RootFsType,
    /// Seed of every GUID, UUID and salt.
    pub seed: String,
    pub boot: BootSpec,
    pub esp_mib: u64,
    pub boot_mib: u64,
    pub private_mib: u64,
    pub data_mib: u64,
}

impl ImageSpec {
    /// The defaults of DESIGN.md section 3 (ESP and PRIVATE 16 MiB, BOOT 64 MiB), erofs, a
    /// 64 MiB DATA (PID 1 grows it to fill the disk), seed `liftoff`.
    pub fn new(arch: Arch, root: &Path, boot: BootSpec) -> ImageSpec {
        let disk = DiskSpec::default();
        ImageSpec {
            arch,
            root: root.to_path_buf(),
            fs: RootFsType::Erofs,
            seed: disk.seed,
            boot,
            esp_mib: disk.esp_mib,
            boot_mib: disk.boot_mib,
            private_mib: disk.private_mib,
            data_mib: disk.data_mib,
        }
    }
}

/// A step of a build that failed; each names the file or tool.
#[derive(Debug)]
pub enum BuildError {
    /// The root path does not exist or cannot be read.
    NoRoot {
        path: PathBuf,
        source: io::Error,
    },
    /// The root path is neither a directory nor a regular file.
    NotATree {
        path: PathBuf,
    },
    /// `tar` could not unpack the root (not a tarball, truncated, unknown compression).
    Unpack {
        tarball: PathBuf,
        output: String,
    },
    /// Copying the root directory into the stage.
    Copy {
        tree: PathBuf,
        output: String,
    },
    /// Creating, changing or removing a file of the build.
    Io {
        what: String,
        source: io::Error,
    },
    /// The kernel or the initramfs.
    Boot(String),
    /// A path `debugfs` cannot name in an ext4 root (a `"` or a line break in it).
    Ext4Path {
        path: PathBuf,
    },
    Image(ImageError),
    /// Writing the ESP and the BOOT partitions.
    BootFiles(BootError),
    /// Digesting the payload files for the manifest.
    Manifest(InstallError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoRoot { path, source } => {
                write!(f, "reading the root {}: {source}", path.display())
            }
            BuildError::NotATree { path } => write!(
                f,
                "the root {} is neither a directory nor a tarball",
                path.display()
            ),
            BuildError::Unpack { tarball, output } => write!(
                f,
                "unpacking {} with tar (is it a tarball?): {}",
                tarball.display(),
                output.trim()
            ),
            BuildError::Copy { tree, output } => {
                write!(f, "copying {}: {}", tree.display(), output.trim())
            }
            BuildError::Io { what, source } => write!(f, "{what}: {source}"),
            BuildError::Boot(e) => write!(f, "the kernel and initramfs: {e}"),
            BuildError::Ext4Path { path } => write!(
                f,
                "{} holds a double quote or a line break, which debugfs cannot name \
                 (use --fs erofs)",
                path.display()
            ),
            BuildError::Image(e) => e.fmt(f),
            BuildError::BootFiles(e) => e.fmt(f),
            BuildError::Manifest(e) => write!(f, "making the manifest: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<ImageError> for BuildError {
    fn from(e: ImageError) -> Self {
        BuildError::Image(e)
    }
}

impl From<BootError> for BuildError {
    fn from(e: BootError) -> Self {
        BuildError::BootFiles(e)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

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
    /// BOOT-A's kernel command line, without the `liftoff.boot_partuuid=` GRUB puts first.
    pub cmdline: String,
}

/// A work folder beside the output, removed when dropped (success or failure).
struct WorkDir(PathBuf);

impl WorkDir {
    /// `.<out's name>.<purpose>-<pid>` in the folder of `out`: on the same file system, so
    /// the finished files are renamed into place.
    fn beside(out: &Path, purpose: &str) -> Result<WorkDir, BuildError> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = parent.join(format!(".{name}.{purpose}-{}", std::process::id()));
        if dir.exists() {
            remove_tree(&dir)?;
        }
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Best effort: a leftover work folder costs disk space, not correctness.
        let _ = remove_tree(&self.0);
    }
}

/// Removes a folder, making read-only folders of an unpacked root writable first.
fn remove_tree(dir: &Path) -> Result<(), BuildError> {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return Ok(());
    }
    tool::run(Command::new("chmod").arg("-R").arg("u+w").arg(dir))?;
    std::fs::remove_dir_all(dir).map_err(io_err(format!("removing {}", dir.display())))
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
            esp_files: Vec::new(),
            boot_a_files: Vec::new(),
        },
        &work.0.join("disk"),
    )?;
    progress("installing GRUB, grubenv and the kernel into the ESP and BOOT-A");
    let install = Install {
        arch: spec.arch,
        grubenv: Some(crate::esp::grubenv(Some(Slot::A), Some(false), &work.0)?),
        kernel: spec.boot.kernel.clone(),
        initramfs: spec.boot.initramfs.clone(),
        slots: vec![Slot::A],
        extra_cmdline: spec.boot.append.clone(),
    };
    boot::install(&disk, &install, &work.0.join("fat"))?;
    let root_bytes = file_len(&root)?;
    let hash_bytes = file_len(&work.0.join("disk/hash.img"))?;
    std::fs::rename(&partial, out).map_err(io_err(format!(
        "renaming {} to {}",
        partial.display(),
        out.display()
    )))?;
    let cmdline = boot::slot_cmdline(spec.arch, Slot::A, &disk, &spec.boot.append);
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
