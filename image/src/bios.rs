//! Legacy BIOS boot on x86_64 (issue 16, docs/grub.md "Legacy BIOS"): the same disk that
//! UEFI firmware boots also boots under a PC BIOS (SeaBIOS in QEMU, Xen-based EC2
//! instances), as Bottlerocket's hybrid images do.
//!
//! | where | what | made by |
//! |---|---|---|
//! | LBA 0, bytes 0-439 | GRUB's `boot.img` (stock `grub-pc-bin`), pointing at the core image | [`mbr_code`] |
//! | LBA 0, bytes 440-511 | the protective MBR's disk signature, partition record and 0x55AA, unchanged | [`crate::disk::build_disk`] |
//! | partition 10 `BIOS-BOOT` | GRUB's `core.img` with `grub/grub-bios.cfg` in its memdisk | [`grub_core`] (`grub/build-bios`), [`place_core`] |
//! | `bios/` on BOOT-A and BOOT-B | the slot's kernel, initramfs and command line | [`crate::boot::boot_files`] |
//!
//! This is what `grub-bios-setup --no-rs-codes` does when it embeds GRUB into a BIOS boot
//! partition (Debian ships that tool only in `grub-pc`, whose installation would set up the
//! build host's own boot), done here on the image file: `boot.img` keeps its code and takes
//! the existing MBR's BPB bytes, its kernel sector field (offset 0x5c, `KERNEL_SECTOR` in
//! GRUB's `include/grub/i386/pc/boot.h`) names the core image's first LBA, its boot drive
//! (0x64) stays 0xff (use the drive the BIOS passes in DL) and the floppy drive check
//! (0x66) becomes two NOPs, as for any hard disk. The core image's first sector
//! (`diskboot.img`) ends in a block list, `{start: u64, len: u16, segment: u16}` at
//! 0x1f4, which `grub-mkimage` fills for a core image at LBA 1; [`place_core`] moves its
//! start to the sector after the core image's real first sector. No Reed-Solomon codes:
//! the redundancy field `grub-mkimage` leaves at 0 tells the core image there are none.
//!
//! Only for 512-byte-sector disks ([`supported`]): a BIOS reads disks in 512-byte sectors
//! through int 13h, and `boot.img`'s LBAs count those; there is no such thing as a 4Kn
//! boot disk under BIOS. There is no Secure Boot either, and no trust anchor: the root hash
//! comes from `bios/cmdline.env` on BOOT, which anyone who can write the disk can change
//! (docs/secure-boot.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::disk::{self, BuiltDisk, SectorSize};
use crate::kernel::workspace_root;
use crate::tool::{io_err, run, ImageError};
use crate::Arch;

/// GRUB's i386-pc modules and images (Debian's `grub-pc-bin`).
pub const MODULE_DIR: &str = "/usr/lib/grub/i386-pc";

/// The slot's kernel on its BOOT partition, for GRUB's `linux`.
pub const KERNEL_FILE: &str = "bios/vmlinuz";
/// The slot's initramfs, for GRUB's `initrd` (absent: the kernel boots without one).
pub const INITRAMFS_FILE: &str = "bios/initramfs";
/// A GRUB environment block holding [`CMDLINE_KEY`]: the slot's command line.
pub const CMDLINE_FILE: &str = "bios/cmdline.env";
/// The one key `grub-bios.cfg` reads from [`CMDLINE_FILE`].
pub const CMDLINE_KEY: &str = "liftoff_cmdline";

/// DATA's key source under BIOS: a key file on PRIVATE. TPM2 mode seals to PCR 7, which
/// under UEFI holds the Secure Boot state and keys; a BIOS has no Secure Boot, so PCR 7
/// says nothing about what booted (and EC2's Xen instances, the BIOS machines Liftoff
/// targets, have no TPM at all).
pub const DATA_MODE: &str = "liftoff.data=keyfile";

/// Whether a disk for `arch` with `sector_size` sectors can boot under BIOS: x86_64 with
/// 512-byte sectors.
pub fn supported(arch: Arch, sector_size: SectorSize) -> bool {
    arch == Arch::X86_64 && sector_size == SectorSize::S512
}

/// GRUB's core image for BIOS, built by `grub/build-bios` and cached under
/// `<target>/grub/i386-pc-<key>/core.img`, where the key covers the script,
/// `grub/grub-bios.cfg`, the installed modules' `moddep.lst` and the GRUB version.
pub fn grub_core() -> Result<PathBuf, ImageError> {
    let grub = workspace_root().join("grub");
    let script = grub.join("build-bios");
    let inputs = [
        script.clone(),
        grub.join("grub-bios.cfg"),
        Path::new(MODULE_DIR).join("moddep.lst"),
    ];
    crate::esp::grub_built("i386-pc", &inputs, "grub-pc-bin", "core.img", |partial| {
        run(Command::new(&script).arg(partial))
    })
}

/// GRUB's stock `boot.img` (512 bytes).
pub fn boot_img() -> Result<Vec<u8>, ImageError> {
    let path = Path::new(MODULE_DIR).join("boot.img");
    std::fs::read(&path).map_err(io_err(format!(
        "reading {} (scripts/setup installs grub-pc-bin)",
        path.display()
    )))
}

/// Offsets in `boot.img` (GRUB's `include/grub/i386/pc/boot.h`).
const BPB_START: usize = 0x03;
const BPB_END: usize = 0x5a;
const KERNEL_SECTOR: usize = 0x5c;
const BOOT_DRIVE: usize = 0x64;
const DRIVE_CHECK: usize = 0x66;
/// Where the MBR's own bytes start: disk signature, partition records, 0x55AA.
pub const MBR_TABLE: usize = 0x1b8;
/// The block list at the end of the core image's first sector (`diskboot.img`).
const BLOCKLIST: usize = 0x200 - 12;
/// `segment` of the first block list entry: the core image's second sector is loaded at
/// 0x8200 (`GRUB_BOOT_I386_PC_KERNEL_SEG` + 0x20).
const FIRST_SEGMENT: u16 = 0x820;

/// What `boot.img` holds at the fields [`mbr_code`] sets, as GRUB 2.06 ships it: kernel
/// sector 1, boot drive 0xff, a 2-byte `jmp` over the drive check. Anything else is a GRUB
/// whose layout this code does not know.
fn check_stock_boot_img(boot_img: &[u8]) -> Result<(), String> {
    let kernel_sector = boot_img.get(KERNEL_SECTOR..KERNEL_SECTOR + 8);
    let drive = boot_img.get(BOOT_DRIVE).copied();
    let check = boot_img.get(DRIVE_CHECK).copied();
    if boot_img.len() != 512
        || kernel_sector != Some(&1u64.to_le_bytes()[..])
        || drive != Some(0xff)
        || check != Some(0xeb)
        || boot_img.get(510..512) != Some(&[0x55, 0xaa][..])
    {
        return Err("boot.img is not GRUB 2.06's i386-pc boot sector".into());
    }
    Ok(())
}

/// Writes `bytes` into `buf` at `at`; a range outside `buf` is an error naming `field`.
fn put(buf: &mut [u8], at: usize, bytes: &[u8], field: &str) -> Result<(), String> {
    let len = buf.len();
    buf.get_mut(at..at + bytes.len())
        .ok_or_else(|| format!("{field} at {at:#x} is outside the {len} bytes"))?
        .copy_from_slice(bytes);
    Ok(())
}

/// The MBR `mbr` (the protective MBR) with `boot_img`'s code in bytes 0-439, set to load
/// the core image from LBA `core_lba`. Bytes 440-511 (disk signature, the 0xEE record,
/// 0x55AA) and the BPB bytes 3-89 stay `mbr`'s, as `grub-bios-setup` leaves them.
pub fn mbr_code(mbr: &[u8; 512], boot_img: &[u8], core_lba: u64) -> Result<[u8; 512], String> {
    check_stock_boot_img(boot_img)?;
    let mut out = *mbr;
    put(
        &mut out,
        0,
        boot_img.get(..MBR_TABLE).unwrap_or_default(),
        "boot code",
    )?;
    put(
        &mut out,
        BPB_START,
        mbr.get(BPB_START..BPB_END).unwrap_or_default(),
        "BPB",
    )?;
    put(
        &mut out,
        KERNEL_SECTOR,
        &core_lba.to_le_bytes(),
        "kernel sector",
    )?;
    put(&mut out, BOOT_DRIVE, &[0xff], "boot drive")?;
    put(&mut out, DRIVE_CHECK, &[0x90, 0x90], "drive check")?;
    Ok(out)
}

/// `core` (as `grub-mkimage -O i386-pc` made it, for LBA 1) set to run from LBA
/// `core_lba`: its block list starts at the sector after `core_lba` and covers the rest of
/// the image; padded to whole sectors.
pub fn place_core(core: &[u8], core_lba: u64) -> Result<Vec<u8>, String> {
    let sectors = core.len().div_ceil(512);
    let rest = u16::try_from(sectors.saturating_sub(1))
        .map_err(|_| format!("core.img of {} bytes is too large", core.len()))?;
    let mut entry = [0u8; 12];
    put(&mut entry, 0, &2u64.to_le_bytes(), "start")?;
    put(&mut entry, 8, &rest.to_le_bytes(), "length")?;
    put(&mut entry, 10, &FIRST_SEGMENT.to_le_bytes(), "segment")?;
    let terminator = core.get(BLOCKLIST - 12..BLOCKLIST);
    if sectors < 2
        || core.get(BLOCKLIST..BLOCKLIST + 12) != Some(&entry[..])
        || terminator != Some(&[0u8; 12][..])
    {
        return Err("core.img has no grub-mkimage block list for LBA 1 in its first sector".into());
    }
    let mut out = core.to_vec();
    out.resize(sectors * 512, 0);
    let start = core_lba
        .checked_add(1)
        .ok_or("core image LBA out of range")?;
    put(&mut out, BLOCKLIST, &start.to_le_bytes(), "block list")?;
    Ok(out)
}

/// Writes GRUB for BIOS into `disk`: the core image into its BIOS boot partition and
/// `boot.img`'s code into its MBR (see the module docs). Writes to the disk.
pub fn install(disk: &BuiltDisk) -> Result<(), ImageError> {
    let problem = |problem: String| ImageError::BiosBoot {
        disk: disk.path.clone(),
        problem,
    };
    if disk.sector_size != SectorSize::S512 || !disk.bios_boot() {
        return Err(problem(
            "no BIOS boot partition (x86_64 disks with 512-byte sectors have one)".into(),
        ));
    }
    let (offset, len) = disk.extent(disk::BIOS_BOOT);
    let core_lba = offset / 512;
    let core_path = grub_core()?;
    let core =
        std::fs::read(&core_path).map_err(io_err(format!("reading {}", core_path.display())))?;
    let core = place_core(&core, core_lba).map_err(problem)?;
    if core.len() as u64 > len {
        return Err(problem(format!(
            "core.img of {} bytes does not fit the BIOS boot partition ({len} bytes)",
            core.len()
        )));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk.path)
        .map_err(io_err(format!("opening {}", disk.path.display())))?;
    let mut mbr = [0u8; 512];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut mbr, 0).map_err(io_err(format!(
        "reading the MBR of {}",
        disk.path.display()
    )))?;
    let mbr = mbr_code(&mbr, &boot_img()?, core_lba).map_err(problem)?;
    let what = format!("writing GRUB for BIOS into {}", disk.path.display());
    std::os::unix::fs::FileExt::write_all_at(&f, &core, offset).map_err(io_err(what.clone()))?;
    std::os::unix::fs::FileExt::write_all_at(&f, &mbr, 0).map_err(io_err(what))?;
    f.sync_all()
        .map_err(io_err(format!("syncing {}", disk.path.display())))
}

/// [`CMDLINE_FILE`]: a 1024-byte GRUB environment block made by `grub-editenv` with
/// `liftoff_cmdline=<cmdline>`.
pub fn cmdline_env(cmdline: &str, work: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let path = work.join("cmdline.env.new");
    let _ = std::fs::remove_file(&path);
    run(Command::new("grub-editenv").arg(&path).arg("create"))?;
    run(Command::new("grub-editenv")
        .arg(&path)
        .arg("set")
        .arg(format!("{CMDLINE_KEY}={cmdline}")))?;
    let bytes = std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
    let _ = std::fs::remove_file(&path);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock_core() -> Vec<u8> {
        std::fs::read(grub_core().unwrap()).unwrap()
    }

    /// boot.img goes into bytes 0-439 pointing at the core image; the MBR's table bytes
    /// and BPB stay; a boot sector of another layout is refused.
    #[test]
    fn mbr_code_keeps_the_partition_table() {
        let mbr = *gpt::mbr::ProtectiveMbr::new(1 << 20).as_bytes();
        let boot = boot_img().unwrap();
        let out = mbr_code(&mbr, &boot, 0x1234_5678).unwrap();
        assert_eq!(out[MBR_TABLE..], mbr[MBR_TABLE..]);
        assert_eq!(out[BPB_START..BPB_END], mbr[BPB_START..BPB_END]);
        assert_eq!(out[..BPB_START], boot[..BPB_START]);
        assert_eq!(out[0x68..MBR_TABLE], boot[0x68..MBR_TABLE]);
        assert_eq!(out[0x5c..0x64], 0x1234_5678u64.to_le_bytes());
        assert_eq!(out[0x64], 0xff);
        assert_eq!(out[0x66..0x68], [0x90, 0x90]);
        let mut other = boot.clone();
        other[KERNEL_SECTOR] = 7;
        assert!(mbr_code(&mbr, &other, 1).is_err());
        assert!(mbr_code(&mbr, &boot[..256], 1).is_err());
    }

    /// The core image's block list moves to its LBA; nothing else changes; a file that is
    /// no core image is refused.
    #[test]
    fn place_core_moves_the_block_list() {
        let core = stock_core();
        let out = place_core(&core, 100_000).unwrap();
        assert_eq!(out.len() % 512, 0);
        assert_eq!(out.len(), core.len().div_ceil(512) * 512);
        assert_eq!(out[BLOCKLIST..BLOCKLIST + 8], 100_001u64.to_le_bytes());
        let sectors = u16::from_le_bytes([out[BLOCKLIST + 8], out[BLOCKLIST + 9]]);
        assert_eq!(usize::from(sectors), out.len() / 512 - 1);
        assert_eq!(out[..BLOCKLIST], core[..BLOCKLIST]);
        assert_eq!(out[BLOCKLIST + 8..core.len()], core[BLOCKLIST + 8..]);
        assert!(place_core(&out, 5).is_err(), "a core image placed already");
        assert!(place_core(&[0u8; 4096], 5).is_err());
    }

    /// `grub/build-bios` makes the same bytes twice (also in another time zone), small
    /// enough for the BIOS boot partition and for the 444 KiB GRUB loads below 0x78000;
    /// `grub-script-check` accepts the configuration; bad usage exits 2.
    #[test]
    fn build_bios_is_reproducible() {
        let dir = crate::test_work("bios");
        let script = workspace_root().join("grub/build-bios");
        let mut built = Vec::new();
        for tz in ["UTC", "Pacific/Auckland"] {
            let out = dir.join(format!("core-{}.img", built.len()));
            let status = Command::new(&script)
                .arg(&out)
                .env("TZ", tz)
                .status()
                .unwrap();
            assert!(status.success());
            built.push(std::fs::read(&out).unwrap());
        }
        assert!(built[0] == built[1], "builds differ");
        assert!(built[0].len() < 400 * 1024, "{} bytes", built[0].len());
        place_core(&built[0], 2048).unwrap();
        let out = Command::new("grub-script-check")
            .arg(workspace_root().join("grub/grub-bios.cfg"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = Command::new(&script).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The command line block as GRUB's `load_env` reads it: one key, the whole line.
    #[test]
    fn cmdline_env_block() {
        let dir = crate::test_work("cmdline-env");
        let line = "liftoff.slot=A liftoff.roothash=ab console=ttyS0 liftoff.data=keyfile";
        let block = cmdline_env(line, &dir).unwrap();
        assert_eq!(block.len(), 1024);
        let path = dir.join("check");
        std::fs::write(&path, &block).unwrap();
        let out = Command::new("grub-editenv")
            .arg(&path)
            .arg("list")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("liftoff_cmdline={line}\n")
        );
        // A line longer than the block is an error, not a truncated command line.
        assert!(cmdline_env(&"x".repeat(1100), &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_x86_64_with_512_byte_sectors() {
        assert!(supported(Arch::X86_64, SectorSize::S512));
        assert!(!supported(Arch::X86_64, SectorSize::S4096));
        assert!(!supported(Arch::Aarch64, SectorSize::S512));
    }
}
