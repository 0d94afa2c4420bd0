//! The boot files of a Liftoff disk and where they go (DESIGN.md sections 1, 3 and 5):
//! firmware loads shim, shim loads GRUB from the ESP ([`crate::esp`]), GRUB reads grubenv and
//! chainloads a slot's signed unified kernel image from its BOOT partition.
//!
//! | partition | file | made by |
//! |---|---|---|
//! | 1 `EFI-SYSTEM` | shim, GRUB, `grubenv` | [`crate::esp::esp_files`] |
//! | 2 `BOOT-A`, 5 `BOOT-B` | `liftoff.efi` | [`boot_files`]: the UKI ([`crate::secureboot::uki`]) with the kernel, the initramfs and [`slot_cmdline`] |
//! | 2, 5 (x86_64, 512-byte sectors) | `bios/vmlinuz`, `bios/initramfs`, `bios/cmdline.env` | [`boot_files`]: the same kernel and initramfs and [`bios_cmdline`], for GRUB under legacy BIOS ([`crate::bios`]) |
//! | 10 `BIOS-BOOT`, and the MBR | GRUB's core image and boot sector | [`crate::bios::install`] |
//!
//! The command line is the UKI's alone (GRUB passes none, and systemd-stub ignores loader
//! arguments under Secure Boot), so it names the BOOT partition itself
//! (`liftoff.boot_partuuid=`) when the builder knows it: a disk build does, since it writes
//! the GPT. An update payload is built for any disk and leaves it out unless told.
//!
//! # Lifecycle
//!
//! 1. [`crate::system::build`] makes (or reuses) the verified disk and [`crate::system::guest_disk`]
//!    copies it for one guest; the root hash is known only then, so the boot files are written
//!    after it, into the copy: [`install`] writes the ESP and the BOOT partitions'
//!    FAT images into their extents, and [`copy_slot_a_to_b`] gives slot B the same root.
//! 2. The runner (the `qemu` crate's `firmware` module) boots the copy through UEFI firmware.
//! 3. [`crate::esp::read_grubenv`] reads grubenv back from the disk with `mcopy` and
//!    `grub-editenv`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::bios;
use crate::disk::{self, BuiltDisk, Slot};
use crate::esp::esp_files;
use crate::fat::make_fat_tree;
use crate::secureboot::uki::{build_uki, UkiSpec, UKI_FILE};
use crate::secureboot::KeySet;
use crate::tool::ImageError;
use crate::Arch;

/// A step of writing the boot files that failed.
#[derive(Debug)]
pub enum BootError {
    /// A host tool or file while building images.
    Image(ImageError),
    /// Reading or writing a file.
    Io { what: String, source: io::Error },
    /// A FAT image larger than the partition it goes to.
    TooBig {
        partition: u32,
        image: u64,
        extent: u64,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Image(e) => e.fmt(f),
            BootError::Io { what, source } => write!(f, "{what}: {source}"),
            BootError::TooBig {
                partition,
                image,
                extent,
            } => write!(
                f,
                "FAT image of {image} bytes does not fit partition {partition} ({extent} bytes)"
            ),
        }
    }
}

impl std::error::Error for BootError {}

impl From<ImageError> for BootError {
    fn from(e: ImageError) -> Self {
        BootError::Image(e)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BootError {
    let what = what.into();
    move |source| BootError::Io { what, source }
}

/// Kernel parameters every slot gets for the machines it runs on: NVMe commands never time
/// out (`nvme_core.io_timeout`, the largest value, as Amazon Linux and Bottlerocket set it
/// for EC2: an EBS volume may stall for longer than the default 30 s, and a timed-out
/// command on the root disk would fail reads the verified root cannot lose). PID 1 passes
/// module parameters like this one to modules it loads, so it holds where NVMe is a module
/// too.
pub const PLATFORM_ARGS: &str = "nvme_core.io_timeout=4294967295";

/// The kernel command line of `slot` on `disk` (DESIGN.md section 6): the BOOT partition's
/// unique GUID when known (first, as the boot disk's name), the slot, the root hash and
/// salt, the console of `arch` if it must be named ([`Arch::console`]: x86_64 only;
/// aarch64 takes the one the firmware describes), [`PLATFORM_ARGS`], `panic=-1` (a kernel
/// that dies reboots, so GRUB's pending flag can make the other slot boot),
/// `liftoff.verity=panic` (a corrupted block reboots as `restart` does, but as a panic, so
/// pstore keeps the record and the next boot demotes the slot: docs/init.md) and `extra`.
pub fn slot_cmdline(
    arch: Arch,
    slot: Slot,
    disk: &BuiltDisk,
    boot_partuuid: Option<&str>,
    extra: &str,
) -> String {
    let partuuid = boot_partuuid
        .map(|u| format!("liftoff.boot_partuuid={u} "))
        .unwrap_or_default();
    let console = arch
        .console()
        .map(|c| format!("console={c} "))
        .unwrap_or_default();
    format!(
        "{partuuid}liftoff.slot={} liftoff.roothash={} liftoff.salt={} {console}{PLATFORM_ARGS} panic=-1 liftoff.verity=panic {extra}",
        slot.name(),
        disk.root_hash,
        disk.salt,
    )
    .trim_end()
    .to_owned()
}

/// How long a kernel with softdog built in has from softdog's registration (an initcall,
/// well before PID 1) until PID 1 opens `/dev/watchdog` (`softdog.soft_margin`): PID 1
/// opens it about 1-2 s after the kernel starts on the minimal kernel under TCG, and real
/// machines that probe slow disks take longer. Seconds.
pub const EARLY_WATCHDOG_SECS: u32 = 60;

/// The kernel parameters that reset a boot which hangs before PID 1 takes the watchdog over
/// (issue 17 item 4), or `None` when they cannot or must not be set.
///
/// The firmware's watchdog cannot cover this window: stock GRUB turns the UEFI watchdog
/// off, and firmware stops it at `ExitBootServices`, which the kernel's EFI stub calls.
/// softdog built into the kernel can: `softdog.soft_active_on_boot=1` starts its timer when
/// it registers, and in Linux 6.1 nothing pets it until somebody opens `/dev/watchdog`
/// (softdog does not mark itself running for the watchdog core, so the core's
/// `watchdog.open_timeout` and pre-userspace petting do not apply to it): it fires
/// `softdog.soft_margin` seconds after it registered unless PID 1 opened it by then.
/// `softdog.soft_panic=1` makes that a kernel panic (`panic=-1`: an immediate reboot, with
/// the panic in the log), and GRUB's pending flag makes the next boot fall back.
///
/// Set only when `kernel_config` (the kernel's `.config`) has `CONFIG_SOFT_WATCHDOG=y`
/// (as a module softdog exists only once PID 1 loads it) and `extra` asks for
/// `liftoff.watchdog=`: PID 1 opens the watchdog only then, and a softdog started at boot
/// that nobody opens resets a healthy host too. The first watchdog registered must be
/// softdog (no hardware watchdog on the machine), since PID 1 opens `/dev/watchdog`.
pub fn early_watchdog_args(kernel_config: &str, extra: &str) -> Option<String> {
    let softdog_built_in = kernel_config
        .lines()
        .any(|l| l.trim() == "CONFIG_SOFT_WATCHDOG=y");
    let pid1_opens = extra
        .split_whitespace()
        .any(|w| w.starts_with("liftoff.watchdog="));
    (softdog_built_in && pid1_opens).then(|| {
        format!(
            "softdog.soft_active_on_boot=1 softdog.soft_margin={EARLY_WATCHDOG_SECS} \
             softdog.soft_panic=1"
        )
    })
}

/// Where the `.config` of the kernel image `kernel` is: `config-VERSION` beside
/// `vmlinuz-VERSION` (Debian's packages), else `config` beside the image
/// (`scripts/build-kernel`'s cache).
pub fn kernel_config_path(kernel: &Path) -> PathBuf {
    let name = kernel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let config = match name.strip_prefix("vmlinuz-") {
        Some(version) => format!("config-{version}"),
        None => "config".to_owned(),
    };
    kernel.with_file_name(config)
}

/// What a slot booting `kernel` gets after its own keys: [`early_watchdog_args`] when they
/// apply to the kernel's `.config` ([`kernel_config_path`]; a kernel without one gets
/// none), then `extra`, whose keys come later and so win.
pub fn slot_extra(kernel: &Path, extra: &str) -> String {
    let config = std::fs::read_to_string(kernel_config_path(kernel)).unwrap_or_default();
    match early_watchdog_args(&config, extra) {
        Some(args) => format!("{args} {extra}"),
        None => extra.to_owned(),
    }
}

/// The command line of `slot` on `disk` under legacy BIOS, which GRUB reads from
/// `bios/cmdline.env` ([`crate::bios`]): [`slot_cmdline`] without
/// `liftoff.boot_partuuid` (GRUB adds it from `probe --part-uuid`, so a payload made for
/// any disk names its partition too) and with [`bios::DATA_MODE`] before `extra`, so the
/// image's own `liftoff.data=` still wins.
pub fn bios_cmdline(arch: Arch, slot: Slot, disk: &BuiltDisk, extra: &str) -> String {
    slot_cmdline(
        arch,
        slot,
        disk,
        None,
        format!("{} {extra}", bios::DATA_MODE).trim_end(),
    )
}

/// What one slot boots.
#[derive(Debug, Clone, Copy)]
pub struct SlotBoot<'a> {
    pub arch: Arch,
    pub slot: Slot,
    pub kernel: &'a Path,
    /// `None`: the UKI (and the BIOS files) carry no initramfs.
    pub initramfs: Option<&'a [u8]>,
    pub cmdline: &'a str,
    /// The command line under legacy BIOS ([`bios_cmdline`]); `None`: no BIOS files.
    pub bios_cmdline: Option<&'a str>,
    /// `IMAGE_VERSION=` in `.osrel`.
    pub version: &'a str,
}

/// The files of a BOOT partition: the slot's UKI, signed with the set's db key, and with
/// `boot.bios_cmdline` the files GRUB boots under legacy BIOS: [`bios::KERNEL_FILE`],
/// [`bios::INITRAMFS_FILE`] (when the slot has an initramfs) and [`bios::CMDLINE_FILE`].
/// GRUB under UEFI reads only the UKI.
pub fn boot_files(
    keys: &KeySet,
    boot: &SlotBoot<'_>,
    work: &Path,
) -> Result<Vec<(String, Vec<u8>)>, BootError> {
    let osrel = format!(
        "ID=liftoff\nNAME=Liftoff\nVARIANT_ID=slot-{}\nIMAGE_VERSION={}\n",
        boot.slot.name().to_ascii_lowercase(),
        boot.version
    );
    let uki = build_uki(
        keys,
        &UkiSpec {
            arch: boot.arch,
            kernel: boot.kernel,
            initramfs: boot.initramfs,
            cmdline: boot.cmdline,
            osrel: &osrel,
        },
        &work.join("uki"),
    )?;
    let mut files = vec![(UKI_FILE.into(), uki)];
    if let Some(cmdline) = boot.bios_cmdline {
        let kernel = std::fs::read(boot.kernel)
            .map_err(io_err(format!("reading {}", boot.kernel.display())))?;
        files.push((bios::KERNEL_FILE.into(), kernel));
        if let Some(initramfs) = boot.initramfs {
            files.push((bios::INITRAMFS_FILE.into(), initramfs.to_vec()));
        }
        files.push((bios::CMDLINE_FILE.into(), bios::cmdline_env(cmdline, work)?));
    }
    Ok(files)
}

/// Writes a FAT file system with `files` over partition `number` of `disk` (the whole
/// extent: the image is made at the partition's size, with the disk's sector size). Writes
/// to the disk.
pub fn write_fat_partition(
    disk: &BuiltDisk,
    number: u32,
    label: &str,
    files: &[(String, Vec<u8>)],
    work: &Path,
) -> Result<(), BootError> {
    const MIB: u64 = 1024 * 1024;
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let (offset, extent) = disk.extent(number);
    let fat = work.join(format!("part{number}.fat"));
    make_fat_tree(
        &fat,
        extent / MIB,
        disk.sector_size,
        label,
        label,
        files,
        work,
    )?;
    let image = std::fs::metadata(&fat)
        .map_err(io_err(format!("reading the size of {}", fat.display())))?
        .len();
    if image > extent {
        return Err(BootError::TooBig {
            partition: number,
            image,
            extent,
        });
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.path)
        .map_err(io_err(format!("opening {}", disk.path.display())))?;
    disk::write_at(&mut f, offset, &fat)?;
    f.sync_all()
        .map_err(io_err(format!("syncing {}", disk.path.display())))?;
    let _ = std::fs::remove_file(&fat);
    Ok(())
}

/// What [`install`] puts on a disk.
#[derive(Debug, Clone)]
pub struct Install {
    pub arch: Arch,
    /// Signs the loader and the UKIs.
    pub keys: KeySet,
    /// grubenv on the ESP; `None` leaves it out.
    pub grubenv: Option<Vec<u8>>,
    /// The kernel image both slots boot.
    pub kernel: PathBuf,
    /// The initramfs with PID 1.
    pub initramfs: Vec<u8>,
    /// Which slots get a kernel; a slot left out keeps an unformatted BOOT partition.
    pub slots: Vec<Slot>,
    /// Added to each slot's command line ([`slot_cmdline`]).
    pub extra_cmdline: String,
    /// The UKIs' `IMAGE_VERSION=`.
    pub version: String,
}

impl Install {
    /// Slot `slot`'s command line on `disk`, naming its BOOT partition, with
    /// [`slot_extra`] for the kernel.
    pub fn cmdline(&self, disk: &BuiltDisk, slot: Slot) -> String {
        slot_cmdline(
            self.arch,
            slot,
            disk,
            Some(disk.partuuid(slot.boot_partition())),
            &slot_extra(&self.kernel, &self.extra_cmdline),
        )
    }

    /// Slot `slot`'s command line under legacy BIOS ([`bios_cmdline`]) when `disk` boots
    /// under BIOS (it has a BIOS boot partition), else `None`.
    pub fn bios_cmdline(&self, disk: &BuiltDisk, slot: Slot) -> Option<String> {
        disk.bios_boot().then(|| {
            let extra = slot_extra(&self.kernel, &self.extra_cmdline);
            bios_cmdline(self.arch, slot, disk, &extra)
        })
    }
}

/// Writes the ESP (shim, GRUB and grubenv) and the BOOT partitions of `install.slots` into
/// `disk`, and on a disk with a BIOS boot partition GRUB for legacy BIOS
/// ([`bios::install`]) and each slot's BIOS files. Writes to the disk.
pub fn install(disk: &BuiltDisk, install: &Install, work: &Path) -> Result<(), BootError> {
    let esp = esp_files(install.arch, &install.keys, install.grubenv.clone(), work)?;
    write_fat_partition(disk, disk::ESP, "EFI-SYSTEM", &esp, work)?;
    if disk.bios_boot() {
        bios::install(disk)?;
    }
    for &slot in &install.slots {
        let cmdline = install.cmdline(disk, slot);
        let bios_cmdline = install.bios_cmdline(disk, slot);
        let boot = SlotBoot {
            arch: install.arch,
            slot,
            kernel: &install.kernel,
            initramfs: Some(&install.initramfs),
            cmdline: &cmdline,
            bios_cmdline: bios_cmdline.as_deref(),
            version: &install.version,
        };
        let files = boot_files(&install.keys, &boot, work)?;
        let label = format!("BOOT-{}", slot.name());
        write_fat_partition(disk, slot.boot_partition(), &label, &files, work)?;
    }
    Ok(())
}

/// Copies ROOT-A and HASH-A into ROOT-B and HASH-B (same sizes on a Liftoff disk), so slot
/// B carries the same verified root and the same root hash. Writes to the disk.
pub fn copy_slot_a_to_b(disk: &BuiltDisk) -> Result<(), BootError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk.path)
        .map_err(io_err(format!("opening {}", disk.path.display())))?;
    for (from, to) in [(disk::ROOT_A, disk::ROOT_B), (disk::HASH_A, disk::HASH_B)] {
        let (src, len) = disk.extent(from);
        let (dst, dst_len) = disk.extent(to);
        if dst_len < len {
            return Err(BootError::TooBig {
                partition: to,
                image: len,
                extent: dst_len,
            });
        }
        let what = format!(
            "copying partition {from} to {to} in {}",
            disk.path.display()
        );
        const CHUNK: u64 = 1024 * 1024;
        let mut buf = Vec::new();
        let mut done = 0u64;
        while done < len {
            buf.resize(CHUNK.min(len - done) as usize, 0);
            let chunk = buf.as_mut_slice();
            std::os::unix::fs::FileExt::read_exact_at(&f, chunk, src + done)
                .map_err(io_err(what.clone()))?;
            if chunk.iter().any(|b| *b != 0) {
                std::os::unix::fs::FileExt::write_all_at(&f, chunk, dst + done)
                    .map_err(io_err(what.clone()))?;
            }
            done += buf.len() as u64;
        }
    }
    f.sync_all()
        .map_err(io_err(format!("syncing {}", disk.path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let disk = BuiltDisk {
            path: "/d".into(),
            root_hash: "12ab".into(),
            salt: "cd".into(),
            partuuids: Vec::new(),
            extents: Vec::new(),
            sector_size: disk::SectorSize::S512,
        };
        for (arch, slot, uuid, extra, want) in [
            (
                Arch::X86_64,
                Slot::A,
                None,
                "",
                "liftoff.slot=A liftoff.roothash=12ab liftoff.salt=cd console=ttyS0 \
                 nvme_core.io_timeout=4294967295 panic=-1 liftoff.verity=panic",
            ),
            (
                Arch::Aarch64,
                Slot::B,
                Some("0123abcd-89ab-4def-8123-456789abcdef"),
                "liftoff.debug",
                "liftoff.boot_partuuid=0123abcd-89ab-4def-8123-456789abcdef liftoff.slot=B \
                 liftoff.roothash=12ab liftoff.salt=cd nvme_core.io_timeout=4294967295 panic=-1 liftoff.verity=panic \
                 liftoff.debug",
            ),
        ] {
            assert_eq!(slot_cmdline(arch, slot, &disk, uuid, extra), want);
        }
    }

    #[test]
    fn early_watchdog_only_with_softdog_built_in_and_a_pid1_watchdog() {
        let args = "softdog.soft_active_on_boot=1 softdog.soft_margin=60 softdog.soft_panic=1";
        // (.config, extra, args expected)
        let cases = [
            ("CONFIG_SOFT_WATCHDOG=y\n", "liftoff.watchdog=120", true),
            (
                "CONFIG_WATCHDOG=y\nCONFIG_SOFT_WATCHDOG=y\n",
                "liftoff.handoff=/p liftoff.watchdog=5 liftoff.debug",
                true,
            ),
            // Debian's cloud kernels: a module exists only once PID 1 loads it.
            ("CONFIG_SOFT_WATCHDOG=m\n", "liftoff.watchdog=120", false),
            (
                "# CONFIG_SOFT_WATCHDOG is not set\n",
                "liftoff.watchdog=120",
                false,
            ),
            ("", "liftoff.watchdog=120", false),
            // Nobody opens the device: softdog would reset a healthy host.
            ("CONFIG_SOFT_WATCHDOG=y\n", "liftoff.handoff=/p", false),
            ("CONFIG_SOFT_WATCHDOG=y\n", "", false),
            ("CONFIG_SOFT_WATCHDOG=y\n", "xliftoff.watchdog=120", false),
            (
                "CONFIG_SOFT_WATCHDOG_PRETIMEOUT=y\n",
                "liftoff.watchdog=120",
                false,
            ),
        ];
        for (config, extra, want) in cases {
            assert_eq!(
                early_watchdog_args(config, extra).as_deref(),
                want.then_some(args),
                "{config:?} {extra:?}"
            );
        }
    }

    #[test]
    fn the_kernel_config_is_found_beside_the_image() {
        for (kernel, config) in [
            (
                "/c/kernels/amd64/root/boot/vmlinuz-6.1.0-57-cloud-amd64",
                "/c/kernels/amd64/root/boot/config-6.1.0-57-cloud-amd64",
            ),
            (
                "/c/kernel-build/x86_64-31a3/bzImage",
                "/c/kernel-build/x86_64-31a3/config",
            ),
            (
                "/c/kernel-build/aarch64-103d/Image",
                "/c/kernel-build/aarch64-103d/config",
            ),
        ] {
            assert_eq!(kernel_config_path(Path::new(kernel)), Path::new(config));
        }
    }

    #[test]
    fn slot_extra_reads_the_config_beside_the_kernel() {
        let dir = std::env::temp_dir().join(format!("liftoff-slot-extra-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = dir.join("bzImage");
        // No .config: nothing added.
        assert_eq!(
            slot_extra(&kernel, "liftoff.watchdog=9"),
            "liftoff.watchdog=9"
        );
        std::fs::write(dir.join("config"), "CONFIG_SOFT_WATCHDOG=y\n").unwrap();
        // The image's own keys come last, so they win over the defaults.
        let got = slot_extra(&kernel, "liftoff.watchdog=9 softdog.soft_margin=5");
        assert!(
            got.starts_with("softdog.soft_active_on_boot=1 ")
                && got.ends_with(" softdog.soft_panic=1 liftoff.watchdog=9 softdog.soft_margin=5"),
            "{got}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
