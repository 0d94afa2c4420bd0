//! What a build takes: the root, the file system, the seed, the partition sizes
//! ([`ImageSpec`]) and what the slot boots ([`BootSpec`]: kernel, initramfs, command line).

use std::path::{Path, PathBuf};

use super::error::BuildError;
use crate::disk::{DiskSpec, SectorSize};
use crate::kernel::Kernel;
use crate::root::RootFsType;
use crate::secureboot::KeySet;
use crate::{system, Arch};

/// The image version when a build names none.
pub const DEFAULT_VERSION: &str = "0";

/// What a slot boots: the kernel image, the initramfs and what is added to the command line.
#[derive(Debug, Clone)]
pub struct BootSpec {
    pub kernel: PathBuf,
    pub initramfs: Vec<u8>,
    /// Added after Liftoff's keys on the slot's command line ([`crate::boot::slot_cmdline`]).
    pub append: String,
    /// `IMAGE_VERSION=` of the UKI's `.osrel` (dotted numbers): `prairiedog install`
    /// refuses an update older than the running slot.
    pub version: String,
    /// The kernel whose modules the root gets at `lib/modules/<version>`, depmod'ed
    /// ([`system::install_root_modules`]): containerd's and CNI's `modprobe` load from
    /// there. `None` for a kernel with everything built in.
    pub modules: Option<Kernel>,
}

impl BootSpec {
    /// The cached Debian cloud kernel of `arch` ([`Kernel::debian`]) and Liftoff's initramfs
    /// for it ([`system::initramfs`]: PID 1 from `scripts/build-guest` and the modules it
    /// loads).
    pub fn debian(arch: Arch, append: &str) -> Result<BootSpec, BuildError> {
        let kernel = Kernel::debian(arch).map_err(|e| BuildError::Boot(e.to_string()))?;
        let initramfs = system::initramfs(arch, &kernel).map_err(BuildError::Boot)?;
        Ok(BootSpec {
            kernel: kernel.image.clone(),
            initramfs,
            append: append.to_owned(),
            version: DEFAULT_VERSION.into(),
            modules: Some(kernel),
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
        let modules = modules.map(|dir| Kernel {
            arch,
            version: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            image: kernel.to_path_buf(),
            modules_dir: dir.to_path_buf(),
        });
        let initramfs = match &modules {
            Some(k) => system::initramfs(arch, k).map_err(BuildError::Boot)?,
            None => system::pid1_initramfs(arch).map_err(BuildError::Boot)?,
        };
        Ok(BootSpec {
            kernel: kernel.to_path_buf(),
            initramfs,
            append: append.to_owned(),
            version: DEFAULT_VERSION.into(),
            modules,
        })
    }
}

/// Everything [`super::build_image`] and [`super::build_payloads`] take.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub arch: Arch,
    /// The root: a directory, or a tarball (`.tar`, `.tar.gz`, ...).
    pub root: PathBuf,
    pub fs: RootFsType,
    /// Seed of every GUID, UUID and salt.
    pub seed: String,
    pub boot: BootSpec,
    /// Signs shim, GRUB and the slot's unified kernel image.
    pub keys: KeySet,
    /// Update payloads only: the unique GUID of the BOOT partition the payload goes to, put
    /// on the UKI's command line (`liftoff.boot_partuuid=`); a disk build names its own.
    pub boot_partuuid: Option<String>,
    pub esp_mib: u64,
    pub boot_mib: u64,
    pub private_mib: u64,
    pub data_mib: u64,
    /// Logical sector size of the disk (512, or 4096 for 4Kn devices).
    pub sector_size: SectorSize,
    /// Files added to the staged root (`scripts/boot`'s demo: [`system::demo_files`]).
    pub files: Vec<system::RootFile>,
}

impl ImageSpec {
    /// The defaults of DESIGN.md section 3 (ESP and PRIVATE 16 MiB, BOOT 64 MiB), erofs, a
    /// 64 MiB DATA (PID 1 grows it to fill the disk), seed `liftoff`, 512-byte sectors.
    pub fn new(arch: Arch, root: &Path, boot: BootSpec, keys: KeySet) -> ImageSpec {
        let disk = DiskSpec::default();
        ImageSpec {
            arch,
            root: root.to_path_buf(),
            fs: RootFsType::Erofs,
            seed: disk.seed,
            boot,
            keys,
            boot_partuuid: None,
            esp_mib: disk.esp_mib,
            boot_mib: disk.boot_mib,
            private_mib: disk.private_mib,
            data_mib: disk.data_mib,
            sector_size: disk.sector_size,
            files: Vec::new(),
        }
    }
}
