//! Disk images made by the real `sgdisk` (gdisk, installed by scripts/setup), in the layout of
//! DESIGN.md section 3. 4096-byte-sector images are made through a loop device with
//! `losetup --sector-size 4096` (tests run as root), because sgdisk treats an image file as
//! 512-byte sectors; they are read back the same way.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const EFI: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
pub const BOOT: &str = "6b636168-7420-6568-2070-6c616e657421";
pub const ROOT: &str = "5526016a-1a97-4ea4-b39a-b7c8c6ca4502";
pub const HASH: &str = "598f10af-c955-4456-6a99-7720068a6cea";
pub const PRIVATE: &str = "440408bb-eb0b-4328-a6e5-a29038fad706";
pub const DATA: &str = "626f7474-6c65-6474-6861-726d61726b73";

/// (number, label, type, MiB) of the layout (DATA ends on a MiB boundary so that `sgdisk -v`
/// has nothing to caution about).
pub const LAYOUT: [(u32, &str, &str, u32); 9] = [
    (1, "EFI-SYSTEM", EFI, 1),
    (2, "BOOT-A", BOOT, 1),
    (3, "ROOT-A", ROOT, 2),
    (4, "HASH-A", HASH, 1),
    (5, "BOOT-B", BOOT, 1),
    (6, "ROOT-B", ROOT, 2),
    (7, "HASH-B", HASH, 1),
    (8, "PRIVATE", PRIVATE, 1),
    (9, "DATA", DATA, 4),
];

pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A loop device over an image, detached on drop.
pub struct Loop(pub PathBuf);

impl Loop {
    pub fn attach(image: &Path, sector: u32) -> Loop {
        let dev = run(Command::new("losetup")
            .args(["--sector-size", &sector.to_string(), "-f", "--show"])
            .arg(image));
        Loop(PathBuf::from(dev.trim()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// Runs `sgdisk args... <image>` with the image's sector size.
pub fn sgdisk(image: &Path, sector: u32, args: &[String]) -> String {
    if sector == 512 {
        run(Command::new("sgdisk").args(args).arg(image))
    } else {
        let dev = Loop::attach(image, sector);
        let out = run(Command::new("sgdisk").args(args).arg(&dev.0));
        drop(dev);
        out
    }
}

/// A 16 MiB image in the Liftoff layout; `attrs[i]` is BOOT-A's and BOOT-B's initial word.
pub fn make_image(dir: &Path, name: &str, sector: u32, a: u64, b: u64) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(16 << 20).unwrap();
    drop(file);
    let mut args = vec![
        "-o".to_owned(),
        "-U".to_owned(),
        "6F6A3E1C-6C0B-4D8C-9D0E-1A2B3C4D5E6F".to_owned(),
    ];
    for (n, label, ty, mib) in LAYOUT {
        args.push(format!("-n={n}:0:+{mib}M"));
        args.push(format!("-t={n}:{ty}"));
        args.push(format!("-c={n}:{label}"));
        args.push(format!("-u={n}:00000000-0000-4000-8000-00000000000{n}"));
    }
    args.push(format!("-A=2:=:{a:016x}"));
    args.push(format!("-A=5:=:{b:016x}"));
    sgdisk(&path, sector, &args);
    path
}

/// The attribute word sgdisk reports for partition `n`.
pub fn sgdisk_attrs(image: &Path, sector: u32, n: u32) -> u64 {
    let out = sgdisk(image, sector, &["-i".to_owned(), n.to_string()]);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("Attribute flags: "))
        .unwrap_or_else(|| panic!("no attribute flags in {out}"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// sgdisk's verdict on the table: true when `sgdisk -v` finds both copies good (no
/// "Caution", "Warning" or "ERROR", and "No problems found").
pub fn sgdisk_clean(image: &Path, sector: u32) -> bool {
    let verdict = |dev: &Path| {
        let out = Command::new("sgdisk").arg("-v").arg(dev).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.contains("No problems found")
            && !["Caution", "Warning", "ERROR"]
                .iter()
                .any(|w| text.contains(w))
    };
    if sector == 512 {
        verdict(image)
    } else {
        let dev = Loop::attach(image, sector);
        verdict(&dev.0)
    }
}

/// Overwrites `len` bytes at `offset` with `byte`.
pub fn smash(image: &Path, offset: u64, len: usize, byte: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    f.write_all_at(&vec![byte; len], offset).unwrap();
}

/// Word with the given A/B fields and no other bits.
pub fn w(priority: u64, tries: u64, successful: u64, unhealthy: u64) -> u64 {
    priority << 48 | tries << 52 | successful << 56 | unhealthy << 57
}

/// Formats partition 1 (1 MiB at 1 MiB) of an sgdisk image as FAT with mkfs.vfat and puts a
/// grubenv made by grub-editenv with `settings` at `/grubenv` with mtools.
pub fn put_esp(dir: &Path, img: &Path, sector: u32, settings: &[&str]) {
    use std::os::unix::fs::FileExt;
    let esp = dir.join("esp.part");
    let _ = std::fs::remove_file(&esp);
    run(Command::new("mkfs.vfat")
        .arg("-S")
        .arg(sector.to_string())
        .arg("-C")
        .arg(&esp)
        .arg("1024"));
    let env = dir.join("esp.grubenv");
    let _ = std::fs::remove_file(&env);
    run(Command::new("grub-editenv").arg(&env).arg("create"));
    if !settings.is_empty() {
        run(Command::new("grub-editenv")
            .arg(&env)
            .arg("set")
            .args(settings));
    }
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&esp)
        .arg(&env)
        .arg("::/grubenv"));
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&std::fs::read(&esp).unwrap(), 1 << 20)
        .unwrap();
}

/// `grub-editenv list` of the grubenv on partition 1 of an image, read out with mtools.
pub fn esp_grubenv_list(dir: &Path, img: &Path) -> String {
    let esp = dir.join("esp.out");
    let bytes = std::fs::read(img).unwrap();
    std::fs::write(&esp, &bytes[1 << 20..2 << 20]).unwrap();
    let out = dir.join("esp.grubenv.out");
    let _ = std::fs::remove_file(&out);
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&esp)
        .arg("::/grubenv")
        .arg(&out));
    run(Command::new("grub-editenv").arg(&out).arg("list"))
}

/// Debian's systemd-stub with `cmdline` and `osrel` added as its `.cmdline` and `.osrel`
/// sections by `objcopy`, as the image builder makes a slot's UKI (unsigned), at
/// `dir/<name>.efi`.
pub fn uki_file(dir: &Path, name: &str, cmdline: &str, osrel: &str) -> PathBuf {
    let section = dir.join(format!("{name}.cmdline"));
    std::fs::write(&section, cmdline).unwrap();
    let os = dir.join(format!("{name}.osrel"));
    std::fs::write(&os, osrel).unwrap();
    let uki = dir.join(format!("{name}.efi"));
    let _ = std::fs::remove_file(&uki);
    run(Command::new("objcopy")
        .arg("--add-section")
        .arg(format!(".cmdline={}", section.display()))
        .arg("--change-section-vma")
        .arg(".cmdline=0x30000")
        .arg("--add-section")
        .arg(format!(".osrel={}", os.display()))
        .arg("--change-section-vma")
        .arg(".osrel=0x38000")
        .arg("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
        .arg(&uki));
    uki
}

/// A BOOT image of `kib` KiB (FAT, `mkfs.vfat`) holding `uki` as `liftoff.efi`.
pub fn boot_image_with(dir: &Path, name: &str, uki: &Path, kib: u32) -> PathBuf {
    boot_image_sectors(dir, name, uki, kib, None)
}

/// [`boot_image_with`] whose FAT has `sector`-byte logical sectors (`mkfs.vfat -S`).
pub fn boot_image_sectors(
    dir: &Path,
    name: &str,
    uki: &Path,
    kib: u32,
    sector: Option<u32>,
) -> PathBuf {
    let img = dir.join(name);
    let _ = std::fs::remove_file(&img);
    let mut mkfs = Command::new("mkfs.vfat");
    if let Some(sector) = sector {
        mkfs.arg("-S").arg(sector.to_string());
    }
    run(mkfs.arg("-C").arg(&img).arg(kib.to_string()));
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&img)
        .arg(uki)
        .arg("::/liftoff.efi"));
    img
}

/// A BOOT image of `kib` KiB holding an unsigned [`uki_file`] with `cmdline` and `osrel`
/// (install reads the command line and the version; without Secure Boot or `--trust` it
/// does not check the signature).
pub fn boot_image(dir: &Path, name: &str, cmdline: &str, osrel: &str, kib: u32) -> PathBuf {
    let uki = uki_file(dir, name, cmdline, osrel);
    boot_image_with(dir, name, &uki, kib)
}
