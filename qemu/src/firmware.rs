//! Firmware boots: a Liftoff disk started the way a real machine starts it, by UEFI firmware
//! (OVMF on x86_64, AAVMF on aarch64) loading stock GRUB from the ESP, GRUB reading grubenv and
//! loading a slot's kernel from its BOOT partition (DESIGN.md sections 1, 3 and 5).
//!
//! # What goes where
//!
//! | partition | file | made by |
//! |---|---|---|
//! | 1 `EFI-SYSTEM` | `EFI/BOOT/BOOTX64.EFI` or `BOOTAA64.EFI` | [`grub_efi`]: `grub/build-efi`, stock Debian GRUB 2.06 with `grub/grub.cfg` embedded |
//! | 1 `EFI-SYSTEM` | `grubenv` | [`grubenv`]: `grub-editenv`, keys `liftoff_slot` and `liftoff_pending` |
//! | 2 `BOOT-A`, 5 `BOOT-B` | `vmlinuz`, `initramfs` | the kernel image and the initramfs with PID 1 |
//! | 2 `BOOT-A`, 5 `BOOT-B` | `grub.cfg` | [`slot_grub_cfg`]: one line, `set liftoff_cmdline='...'` with [`slot_cmdline`] |
//!
//! GRUB appends `liftoff.boot_partuuid=` itself (`probe --part-uuid` on the BOOT partition it
//! loaded from), so the slot's files do not depend on the partition's GUID.
//!
//! # Lifecycle
//!
//! 1. [`crate::system::build`] makes (or reuses) the verified disk and [`crate::system::guest_disk`]
//!    copies it for one guest; the root hash is known only then, so the boot files are written
//!    after it, into the copy: [`install`] writes the ESP and the BOOT partitions'
//!    FAT images into their extents, and [`copy_slot_a_to_b`] gives slot B the same root.
//! 2. [`fresh_vars`] copies the firmware's variable store for one guest and [`vm_config`]
//!    makes the [`VmConfig`]: the firmware code read-only and that copy as pflash, no
//!    `-kernel`; the test adds the disk and starts it with [`crate::vm::Vm::start`].
//! 4. [`read_grubenv`] reads grubenv back from the disk with `mcopy` and `grub-editenv`.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::image::{self, BuiltDisk, ImageError};
use crate::kernel::workspace_root;
use crate::vm::VmConfig;
use crate::{artifacts, Arch};

/// A slot, as GRUB and the command line name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// The slot's BOOT partition number (DESIGN.md section 3).
    pub fn boot_partition(self) -> u32 {
        match self {
            Slot::A => image::BOOT_A,
            Slot::B => image::BOOT_B,
        }
    }
}

/// A step of a firmware boot that failed.
#[derive(Debug)]
pub enum FirmwareError {
    /// A host tool or file while building images.
    Image(ImageError),
    /// Reading or writing a file.
    Io { what: String, source: io::Error },
    /// `grub/build-efi` failed.
    BuildEfi { command: String, output: String },
    /// The firmware files are not installed.
    NoFirmware { path: PathBuf },
    /// A command line GRUB cannot carry in single quotes.
    Cmdline { cmdline: String },
    /// A FAT image larger than the partition it goes to.
    TooBig {
        partition: u32,
        image: u64,
        extent: u64,
    },
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirmwareError::Image(e) => e.fmt(f),
            FirmwareError::Io { what, source } => write!(f, "{what}: {source}"),
            FirmwareError::BuildEfi { command, output } => {
                write!(f, "{command} failed: {output}")
            }
            FirmwareError::NoFirmware { path } => write!(
                f,
                "no UEFI firmware at {} (scripts/setup installs ovmf and qemu-efi-aarch64)",
                path.display()
            ),
            FirmwareError::Cmdline { cmdline } => write!(
                f,
                "kernel command line {cmdline:?} holds a single quote or a newline, \
                 which a GRUB single-quoted word cannot carry"
            ),
            FirmwareError::TooBig {
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

impl std::error::Error for FirmwareError {}

impl From<ImageError> for FirmwareError {
    fn from(e: ImageError) -> Self {
        FirmwareError::Image(e)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> FirmwareError {
    let what = what.into();
    move |source| FirmwareError::Io { what, source }
}

/// The removable-media path UEFI firmware boots from on `arch` (no boot entries needed).
pub fn efi_boot_path(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "EFI/BOOT/BOOTX64.EFI",
        Arch::Aarch64 => "EFI/BOOT/BOOTAA64.EFI",
    }
}

/// The firmware code and its variable-store template (Debian's `ovmf` and
/// `qemu-efi-aarch64`).
pub fn firmware_files(arch: Arch) -> (PathBuf, PathBuf) {
    match arch {
        Arch::X86_64 => (
            PathBuf::from("/usr/share/OVMF/OVMF_CODE.fd"),
            PathBuf::from("/usr/share/OVMF/OVMF_VARS.fd"),
        ),
        Arch::Aarch64 => (
            PathBuf::from("/usr/share/AAVMF/AAVMF_CODE.fd"),
            PathBuf::from("/usr/share/AAVMF/AAVMF_VARS.fd"),
        ),
    }
}

/// GRUB's module folder for `arch` (Debian's `grub-efi-amd64-bin` and
/// `grub-efi-arm64-bin:arm64`).
fn grub_module_dir(arch: Arch) -> PathBuf {
    match arch {
        Arch::X86_64 => PathBuf::from("/usr/lib/grub/x86_64-efi"),
        Arch::Aarch64 => PathBuf::from("/usr/lib/grub/arm64-efi"),
    }
}

/// The GRUB EFI binary for `arch`, built by `grub/build-efi` and cached under
/// `<target>/grub/<arch>-<key>/`, where the key covers the script, `grub/grub.cfg` and the
/// installed GRUB modules (their `moddep.lst` and the GRUB version).
pub fn grub_efi(arch: Arch) -> Result<PathBuf, FirmwareError> {
    let grub = workspace_root().join("grub");
    let script = grub.join("build-efi");
    let modules = grub_module_dir(arch);
    let mut key = Sha256::new();
    key.update(format!("v1 {arch}\n"));
    for path in [
        script.clone(),
        grub.join("grub.cfg"),
        modules.join("moddep.lst"),
    ] {
        let bytes = std::fs::read(&path).map_err(io_err(format!(
            "reading {} (scripts/setup installs GRUB)",
            path.display()
        )))?;
        key.update(&bytes);
    }
    let version = Command::new("grub-mkimage")
        .arg("--version")
        .output()
        .map_err(io_err("running grub-mkimage (scripts/setup)"))?;
    key.update(&version.stdout);
    let key: String = key.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = artifacts::target_dir()
        .join("grub")
        .join(format!("{arch}-{key}"));
    let name = efi_boot_path(arch).rsplit('/').next().unwrap_or("BOOT.EFI");
    let out = dir.join(name);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    // One build per key: parallel tests (threads or processes) wait on the lock, then
    // find the finished file.
    let lock_path = dir.join(".lock");
    let lock =
        File::create(&lock_path).map_err(io_err(format!("creating {}", lock_path.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(format!("locking {}", lock_path.display()))(e.into()))?;
    if out.is_file() {
        return Ok(out);
    }
    // Built under another name and renamed: a build cut short leaves no file under `out`.
    let partial = dir.join(format!("{name}.partial"));
    let mut cmd = Command::new(&script);
    cmd.arg(arch.name()).arg(&partial);
    let command = format!("{cmd:?}");
    let result = cmd
        .output()
        .map_err(io_err(format!("running {}", script.display())))?;
    if !result.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(FirmwareError::BuildEfi {
            command,
            output: String::from_utf8_lossy(&result.stderr).into_owned(),
        });
    }
    std::fs::rename(&partial, &out).map_err(io_err(format!("renaming to {}", out.display())))?;
    Ok(out)
}

/// A 1024-byte grubenv made by `grub-editenv`, holding `liftoff_slot` and
/// `liftoff_pending` when given.
pub fn grubenv(
    slot: Option<Slot>,
    pending: Option<bool>,
    work: &Path,
) -> Result<Vec<u8>, FirmwareError> {
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let path = work.join("grubenv.new");
    let _ = std::fs::remove_file(&path);
    image::run(Command::new("grub-editenv").arg(&path).arg("create"))?;
    let mut sets = Vec::new();
    if let Some(slot) = slot {
        sets.push(format!("liftoff_slot={}", slot.name()));
    }
    if let Some(pending) = pending {
        sets.push(format!("liftoff_pending={}", u8::from(pending)));
    }
    if !sets.is_empty() {
        image::run(
            Command::new("grub-editenv")
                .arg(&path)
                .arg("set")
                .args(&sets),
        )?;
    }
    let bytes = std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
    let _ = std::fs::remove_file(&path);
    Ok(bytes)
}

/// The kernel command line of `slot` on `disk` (DESIGN.md section 6), without
/// `liftoff.boot_partuuid`, which GRUB adds: the slot, the root hash and salt, the serial
/// console of `arch`, `panic=-1` (a kernel that dies reboots, so GRUB's pending flag can make
/// the other slot boot) and `extra`.
pub fn slot_cmdline(arch: Arch, slot: Slot, disk: &BuiltDisk, extra: &str) -> String {
    format!(
        "liftoff.slot={} liftoff.roothash={} liftoff.salt={} console={} panic=-1 {extra}",
        slot.name(),
        disk.root_hash,
        disk.salt,
        arch.console()
    )
    .trim_end()
    .to_owned()
}

/// The slot's `grub.cfg` fragment that `grub/grub.cfg` sources: one `set` of
/// `liftoff_cmdline` in single quotes (no expansion), so the fragment cannot run anything.
pub fn slot_grub_cfg(cmdline: &str) -> Result<String, FirmwareError> {
    if cmdline.contains(['\'', '\n', '\r']) {
        return Err(FirmwareError::Cmdline {
            cmdline: cmdline.to_owned(),
        });
    }
    Ok(format!("set liftoff_cmdline='{cmdline}'\n"))
}

/// The files of a BOOT partition.
pub fn boot_files(
    kernel: &Path,
    initramfs: &[u8],
    cmdline: &str,
) -> Result<Vec<(String, Vec<u8>)>, FirmwareError> {
    let vmlinuz = std::fs::read(kernel).map_err(io_err(format!("reading {}", kernel.display())))?;
    Ok(vec![
        ("vmlinuz".into(), vmlinuz),
        ("initramfs".into(), initramfs.to_vec()),
        ("grub.cfg".into(), slot_grub_cfg(cmdline)?.into_bytes()),
    ])
}

/// The ESP's files: GRUB at the removable-media path, and grubenv when given (a missing
/// grubenv makes GRUB boot slot A without arming the pending flag).
pub fn esp_files(
    arch: Arch,
    grubenv: Option<Vec<u8>>,
) -> Result<Vec<(String, Vec<u8>)>, FirmwareError> {
    let efi = grub_efi(arch)?;
    let bytes = std::fs::read(&efi).map_err(io_err(format!("reading {}", efi.display())))?;
    let mut files = vec![(efi_boot_path(arch).to_owned(), bytes)];
    if let Some(env) = grubenv {
        files.push(("grubenv".into(), env));
    }
    Ok(files)
}

/// Makes a FAT image of `mib` MiB holding `files`, whose names may contain folders
/// (`EFI/BOOT/BOOTX64.EFI`): [`image::make_fat`] plus the folders, made with `mmd`.
/// Same inputs, same bytes (volume ID from the seed, every time stamp at
/// [`image::FAT_EPOCH`], and in UTC: FAT stores local time, so mtools runs with `TZ=UTC`). With only
/// root-level names it makes what [`image::make_fat`] makes, so
/// [`image::build_disk`] can call it for the ESP to accept `EFI/BOOT/...` in
/// `DiskSpec::esp_files`.
pub fn make_fat_tree(
    out: &Path,
    mib: u64,
    label: &str,
    seed: &str,
    files: &[(String, Vec<u8>)],
    work: &Path,
) -> Result<(), ImageError> {
    image::make_fat(out, mib, label, seed, &[], work)?;
    let mut made: Vec<&str> = Vec::new();
    for (name, data) in files {
        // Every folder on the way, parents first: "EFI", then "EFI/BOOT".
        for folder in name.match_indices('/').filter_map(|(i, _)| name.get(..i)) {
            if !made.contains(&folder) {
                image::run(
                    Command::new("mmd")
                        .arg("-i")
                        .arg(out)
                        .arg(format!("::/{folder}"))
                        .env("SOURCE_DATE_EPOCH", image::FAT_EPOCH)
                        .env("TZ", "UTC"),
                )?;
                made.push(folder);
            }
        }
        let staged = work.join(format!("fat-{}", name.replace('/', "_")));
        std::fs::write(&staged, data).map_err(|source| ImageError::Io {
            what: format!("writing {}", staged.display()),
            source,
        })?;
        // A fixed modification time keeps the image reproducible.
        image::run(
            Command::new("touch")
                .arg("-d")
                .arg(format!("@{}", image::FAT_EPOCH))
                .arg(&staged),
        )?;
        image::run(
            Command::new("mcopy")
                .args(["-m", "-o", "-i"])
                .arg(out)
                .arg(&staged)
                .arg(format!("::/{name}"))
                .env("SOURCE_DATE_EPOCH", image::FAT_EPOCH)
                .env("TZ", "UTC"),
        )?;
        let _ = std::fs::remove_file(&staged);
    }
    Ok(())
}

/// Writes a FAT file system with `files` over partition `number` of `disk` (the whole
/// extent: the image is made at the partition's size). Writes to the disk.
pub fn write_fat_partition(
    disk: &BuiltDisk,
    number: u32,
    label: &str,
    files: &[(String, Vec<u8>)],
    work: &Path,
) -> Result<(), FirmwareError> {
    const MIB: u64 = 1024 * 1024;
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let (offset, extent) = disk.extent(number);
    let fat = work.join(format!("part{number}.fat"));
    make_fat_tree(&fat, extent / MIB, label, label, files, work)?;
    let image = std::fs::metadata(&fat)
        .map_err(io_err(format!("reading the size of {}", fat.display())))?
        .len();
    if image > extent {
        return Err(FirmwareError::TooBig {
            partition: number,
            image,
            extent,
        });
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.path)
        .map_err(io_err(format!("opening {}", disk.path.display())))?;
    image::write_at(&mut f, offset, &fat)?;
    f.sync_all()
        .map_err(io_err(format!("syncing {}", disk.path.display())))?;
    let _ = std::fs::remove_file(&fat);
    Ok(())
}

/// What [`install`] puts on a disk.
#[derive(Debug, Clone)]
pub struct Install {
    pub arch: Arch,
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
}

/// Writes the ESP (GRUB and grubenv) and the BOOT partitions of `install.slots` into
/// `disk`. Writes to the disk.
pub fn install(disk: &BuiltDisk, install: &Install, work: &Path) -> Result<(), FirmwareError> {
    let esp = esp_files(install.arch, install.grubenv.clone())?;
    write_fat_partition(disk, image::ESP, "EFI-SYSTEM", &esp, work)?;
    for &slot in &install.slots {
        let cmdline = slot_cmdline(install.arch, slot, disk, &install.extra_cmdline);
        let files = boot_files(&install.kernel, &install.initramfs, &cmdline)?;
        let label = format!("BOOT-{}", slot.name());
        write_fat_partition(disk, slot.boot_partition(), &label, &files, work)?;
    }
    Ok(())
}

/// Copies ROOT-A and HASH-A into ROOT-B and HASH-B (same sizes on a Liftoff disk), so slot
/// B carries the same verified root and the same root hash. Writes to the disk.
pub fn copy_slot_a_to_b(disk: &BuiltDisk) -> Result<(), FirmwareError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk.path)
        .map_err(io_err(format!("opening {}", disk.path.display())))?;
    for (from, to) in [
        (image::ROOT_A, image::ROOT_B),
        (image::HASH_A, image::HASH_B),
    ] {
        let (src, len) = disk.extent(from);
        let (dst, dst_len) = disk.extent(to);
        if dst_len < len {
            return Err(FirmwareError::TooBig {
                partition: to,
                image: len,
                extent: dst_len,
            });
        }
        let what = format!(
            "copying partition {from} to {to} in {}",
            disk.path.display()
        );
        let mut buf = vec![0u8; 1024 * 1024];
        let mut done = 0u64;
        while done < len {
            let n = buf.len().min((len - done) as usize);
            let chunk = &mut buf[..n];
            std::os::unix::fs::FileExt::read_exact_at(&f, chunk, src + done)
                .map_err(io_err(what.clone()))?;
            if chunk.iter().any(|b| *b != 0) {
                std::os::unix::fs::FileExt::write_all_at(&f, chunk, dst + done)
                    .map_err(io_err(what.clone()))?;
            }
            done += n as u64;
        }
    }
    f.sync_all()
        .map_err(io_err(format!("syncing {}", disk.path.display())))
}

/// grubenv on the disk's ESP as `grub-editenv list` prints it (`key=value` lines).
pub fn read_grubenv(disk: &BuiltDisk, work: &Path) -> Result<String, FirmwareError> {
    let (offset, _) = disk.extent(image::ESP);
    let out = work.join("grubenv.read");
    let _ = std::fs::remove_file(&out);
    image::run(
        Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(format!("{}@@{offset}", disk.path.display()))
            .arg("::/grubenv")
            .arg(&out),
    )?;
    let list = Command::new("grub-editenv")
        .arg(&out)
        .arg("list")
        .output()
        .map_err(io_err("running grub-editenv (scripts/setup)"))?;
    if !list.status.success() {
        return Err(FirmwareError::Image(ImageError::Tool {
            command: format!("grub-editenv {} list", out.display()),
            output: String::from_utf8_lossy(&list.stderr).into_owned(),
        }));
    }
    Ok(String::from_utf8_lossy(&list.stdout).into_owned())
}

/// Copies the firmware's variable-store template for `arch` to `vars`: every boot starts
/// from the firmware's defaults (no boot entries, so it boots the removable-media path).
pub fn fresh_vars(arch: Arch, vars: &Path) -> Result<(), FirmwareError> {
    let (code, template) = firmware_files(arch);
    for path in [&code, &template] {
        if !path.is_file() {
            return Err(FirmwareError::NoFirmware { path: path.clone() });
        }
    }
    std::fs::copy(&template, vars).map_err(io_err(format!(
        "copying {} to {}",
        template.display(),
        vars.display()
    )))?;
    Ok(())
}

/// A guest of `arch` that boots through its firmware: no kernel for QEMU to load, the
/// firmware code read-only and the variable store `vars` (see [`fresh_vars`]) writable as
/// pflash, 1 GiB of memory. Add the disks and start it with [`crate::vm::Vm::start`].
pub fn vm_config(arch: Arch, vars: &Path, log: &Path) -> VmConfig {
    let (code, _) = firmware_files(arch);
    let mut config = VmConfig::new(arch, &code, log);
    config.kernel = None;
    config.memory_mib = 1024;
    config.extra = vec![
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
    ];
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::Disk;

    fn work(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("liftoff-fw-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `grub-script-check` (GRUB's own parser) accepts the embedded configuration and every
    /// slot fragment we write.
    #[test]
    fn grub_script_check_accepts_the_configurations() {
        let dir = work("check");
        let disk = BuiltDisk {
            path: "/d".into(),
            root_hash: "ab".repeat(32),
            salt: "-".into(),
            partuuids: Vec::new(),
            extents: Vec::new(),
        };
        let fragment = dir.join("fragment.cfg");
        for (arch, slot, extra) in [
            (Arch::X86_64, Slot::A, ""),
            (
                Arch::Aarch64,
                Slot::B,
                "liftoff.handoff=/usr/local/bin/liftoff-probe",
            ),
            (Arch::X86_64, Slot::B, "quiet liftoff.debug \"x y\" $z ;"),
        ] {
            let cmdline = slot_cmdline(arch, slot, &disk, extra);
            std::fs::write(&fragment, slot_grub_cfg(&cmdline).unwrap()).unwrap();
            let out = Command::new("grub-script-check")
                .arg(&fragment)
                .output()
                .unwrap();
            assert!(out.status.success(), "{cmdline}: {out:?}");
        }
        let out = Command::new("grub-script-check")
            .arg(workspace_root().join("grub/grub.cfg"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_lines() {
        let disk = BuiltDisk {
            path: "/d".into(),
            root_hash: "12ab".into(),
            salt: "cd".into(),
            partuuids: Vec::new(),
            extents: Vec::new(),
        };
        for (arch, slot, extra, want) in [
            (
                Arch::X86_64,
                Slot::A,
                "",
                "liftoff.slot=A liftoff.roothash=12ab liftoff.salt=cd console=ttyS0 panic=-1",
            ),
            (
                Arch::Aarch64,
                Slot::B,
                "liftoff.debug",
                "liftoff.slot=B liftoff.roothash=12ab liftoff.salt=cd console=ttyAMA0 panic=-1 \
                 liftoff.debug",
            ),
        ] {
            assert_eq!(slot_cmdline(arch, slot, &disk, extra), want);
            assert_eq!(
                slot_grub_cfg(want).unwrap(),
                format!("set liftoff_cmdline='{want}'\n")
            );
        }
        for bad in ["a 'b'", "a\nb", "a\rb"] {
            assert!(matches!(
                slot_grub_cfg(bad),
                Err(FirmwareError::Cmdline { .. })
            ));
        }
    }

    /// The grubenv blocks `grub-editenv` makes, read back by `grub-editenv list`.
    #[test]
    fn grubenv_blocks() {
        let dir = work("env");
        for (slot, pending, want) in [
            (None, None, ""),
            (
                Some(Slot::A),
                Some(false),
                "liftoff_slot=A\nliftoff_pending=0\n",
            ),
            (
                Some(Slot::B),
                Some(true),
                "liftoff_slot=B\nliftoff_pending=1\n",
            ),
            (None, Some(true), "liftoff_pending=1\n"),
        ] {
            let block = grubenv(slot, pending, &dir).unwrap();
            assert_eq!(block.len(), 1024);
            assert!(block.starts_with(b"# GRUB Environment Block\n"));
            let path = dir.join("check");
            std::fs::write(&path, &block).unwrap();
            let out = Command::new("grub-editenv")
                .arg(&path)
                .arg("list")
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Folders are made, each file reads back byte for byte with `mtype`, and the same
    /// inputs give the same image.
    #[test]
    fn fat_tree_with_folders() {
        let dir = work("fat");
        let files = vec![
            ("EFI/BOOT/BOOTX64.EFI".to_owned(), b"MZ efi".to_vec()),
            ("EFI/BOOT/extra".to_owned(), vec![7u8; 5000]),
            ("grubenv".to_owned(), b"# GRUB Environment Block\n".to_vec()),
        ];
        let one = dir.join("one.img");
        let two = dir.join("two.img");
        make_fat_tree(&one, 2, "EFI-SYSTEM", "s", &files, &dir).unwrap();
        make_fat_tree(&two, 2, "EFI-SYSTEM", "s", &files, &dir).unwrap();
        for (name, data) in &files {
            let out = Command::new("mtype")
                .arg("-i")
                .arg(&one)
                .arg(format!("::/{name}"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {out:?}");
            assert_eq!(&out.stdout, data, "{name}");
        }
        assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
        // The seeded volume ID and the fixed time, as mtools lists them.
        let out = Command::new("mdir")
            .arg("-i")
            .arg(&one)
            .arg("::/EFI/BOOT")
            .env("TZ", "UTC")
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        let id = image::seeded_guid("s", "EFI-SYSTEM")[..8].to_uppercase();
        assert!(
            listing.contains(&format!(
                "Volume Serial Number is {}-{}",
                &id[..4],
                &id[4..]
            )),
            "{listing}"
        );
        assert!(listing.contains("BOOTX64  EFI"), "{listing}");
        for line in listing
            .lines()
            .filter(|l| l.contains("EFI ") || l.contains("extra"))
        {
            assert!(line.contains("1980-01-01   0:00"), "{line}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `grub/build-efi` makes a PE image (an EFI application) for each architecture, for
    /// the machine type UEFI expects (x86_64 0x8664, arm64 0xaa64), and refuses a bad
    /// architecture with exit status 2.
    #[test]
    fn build_efi_makes_pe_images() {
        let dir = work("efi");
        let script = workspace_root().join("grub/build-efi");
        for (arch, machine) in [(Arch::X86_64, 0x8664u16), (Arch::Aarch64, 0xaa64)] {
            let out = dir.join(format!("{arch}.efi"));
            let status = Command::new(&script)
                .arg(arch.name())
                .arg(&out)
                .status()
                .unwrap();
            assert!(status.success());
            let pe = std::fs::read(&out).unwrap();
            // Reproducible: a second build gives the same bytes.
            let again = dir.join(format!("{arch}-again.efi"));
            let status = Command::new(&script)
                .arg(arch.name())
                .arg(&again)
                .env("TZ", "Pacific/Auckland")
                .status()
                .unwrap();
            assert!(status.success());
            assert!(
                pe == std::fs::read(&again).unwrap(),
                "{arch}: builds differ"
            );
            assert_eq!(&pe[..2], b"MZ");
            let at = u32::from_le_bytes(pe[0x3c..0x40].try_into().unwrap()) as usize;
            assert_eq!(&pe[at..at + 4], b"PE\0\0");
            assert_eq!(u16::from_le_bytes([pe[at + 4], pe[at + 5]]), machine);
            // Only the modules grub.cfg needs: far below the ~10 MB of a full image.
            assert!(pe.len() < 2 * 1024 * 1024, "{arch}: {} bytes", pe.len());
        }
        let out = Command::new(&script)
            .arg("sparc")
            .arg(dir.join("x"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("usage: "));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn qemu_arguments() {
        let mut config = vm_config(Arch::X86_64, Path::new("/v.fd"), Path::new("/l"));
        config.disks.push(Disk {
            path: "/d.img".into(),
            read_only: false,
            serial: Some("boot".into()),
        });
        assert_eq!(
            config.args().join(" "),
            "-M q35 -accel tcg -cpu max -m 1024 -smp 1 -nodefaults -no-user-config \
             -display none -serial stdio -no-reboot \
             -drive file=/d.img,format=raw,if=none,id=disk0,cache=unsafe \
             -device virtio-blk-pci,drive=disk0,serial=boot \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
             -drive if=pflash,format=raw,unit=1,file=/v.fd"
        );
        let args = vm_config(Arch::Aarch64, Path::new("/v.fd"), Path::new("/l"))
            .args()
            .join(" ");
        assert!(
            args.contains("file=/usr/share/AAVMF/AAVMF_CODE.fd"),
            "{args}"
        );
        assert!(!args.contains("-kernel"), "{args}");
    }
}
