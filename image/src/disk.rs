//! The Liftoff disk (DESIGN.md section 3): a GPT disk with the ESP, the A and B slot sets
//! (BOOT, ROOT, HASH), PRIVATE and DATA, all 1 MiB aligned, and on x86_64 disks with
//! 512-byte sectors a BIOS boot partition (10, before DATA: [`BIOS_BOOT`]); the partition
//! numbers, labels and type GUIDs, and [`build_disk`], which assembles the partitions into
//! one disk image.
//!
//! The partition table is made by the `gpt` crate, laid out as `sgdisk --clear` lays it out
//! (byte for byte: its tests compare), for 512- or 4096-byte logical sectors
//! ([`DiskSpec::sector_size`]); the root and its hash tree by [`crate::root`], the ESP and
//! BOOT-A by [`crate::fat`], PRIVATE by `mkfs.ext4`. GUIDs and every file system's UUID
//! derive from a seed ([`crate::seed`]), so the same inputs give the same bytes.
//!
//! # 4Kn disks
//!
//! A disk made with 4096-byte sectors is for a device whose logical block is 4096 bytes (4Kn
//! NVMe namespaces, `logical_block_size=4096`): its GPT counts 4096-byte LBAs (the usable
//! range starts at LBA 6, not 34), its FAT file systems have 4096-byte sectors, and on a
//! 512-byte device it is not a valid GPT disk, nor the other way round. Partitions stay
//! 1 MiB aligned either way; dm-verity and the root file systems use 4096-byte blocks
//! ([`crate::root::VERITY_BLOCK`]) and DATA's dm-crypt picks 4096-byte sectors in PID 1, so
//! nothing else depends on the sector size.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub use gpt::SectorSize;

use crate::fat::make_fat_tree;
use crate::root::make_hash;
use crate::seed::seeded_guid;
use crate::tool::{io_err, run, ImageError};
use crate::{round_up_mib, MIB};

/// What goes on the disk.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// Seed for every GUID, UUID and salt.
    pub seed: String,
    pub esp_mib: u64,
    pub boot_mib: u64,
    pub private_mib: u64,
    pub data_mib: u64,
    /// Logical sector size of the disk the image is for (default 512).
    pub sector_size: SectorSize,
    /// Files to put on the ESP (name, contents), e.g. `grubenv`.
    pub esp_files: Vec<(String, Vec<u8>)>,
    /// Files for BOOT-A's FAT file system; empty means BOOT-A stays blank.
    pub boot_a_files: Vec<(String, Vec<u8>)>,
    /// A BIOS boot partition (number [`BIOS_BOOT`]) for legacy BIOS: x86_64 disks with
    /// 512-byte sectors only ([`crate::bios::supported`]); [`build_disk`] refuses it on a
    /// 4Kn disk.
    pub bios_boot: bool,
}

impl Default for DiskSpec {
    fn default() -> Self {
        DiskSpec {
            seed: "liftoff".into(),
            esp_mib: 16,
            boot_mib: 64,
            private_mib: 16,
            data_mib: 64,
            sector_size: SectorSize::S512,
            esp_files: Vec::new(),
            boot_a_files: Vec::new(),
            bios_boot: false,
        }
    }
}

/// The partition numbers of DESIGN.md section 3.
pub const ESP: u32 = 1;
pub const BOOT_A: u32 = 2;
pub const ROOT_A: u32 = 3;
pub const HASH_A: u32 = 4;
pub const BOOT_B: u32 = 5;
pub const ROOT_B: u32 = 6;
pub const HASH_B: u32 = 7;
pub const PRIVATE: u32 = 8;
pub const DATA: u32 = 9;

/// (number, label, type GUID) in disk order.
pub const PARTITIONS: [(u32, &str, &str); 9] = [
    (ESP, "EFI-SYSTEM", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
    (BOOT_A, "BOOT-A", "6b636168-7420-6568-2070-6c616e657421"),
    (ROOT_A, "ROOT-A", "5526016a-1a97-4ea4-b39a-b7c8c6ca4502"),
    (HASH_A, "HASH-A", "598f10af-c955-4456-6a99-7720068a6cea"),
    (BOOT_B, "BOOT-B", "6b636168-7420-6568-2070-6c616e657421"),
    (ROOT_B, "ROOT-B", "5526016a-1a97-4ea4-b39a-b7c8c6ca4502"),
    (HASH_B, "HASH-B", "598f10af-c955-4456-6a99-7720068a6cea"),
    (PRIVATE, "PRIVATE", "440408bb-eb0b-4328-a6e5-a29038fad706"),
    (DATA, "DATA", "626f7474-6c65-6474-6861-726d61726b73"),
];

/// The BIOS boot partition: where legacy BIOS GRUB's core image sits (GPT's "BIOS boot"
/// type, as Bottlerocket's hybrid images have). Numbered after DATA so that partitions 1-9
/// keep their numbers, and placed before DATA on the disk so that DATA stays last and can
/// grow; 1 MiB, like every partition here.
pub const BIOS_BOOT: u32 = 10;
pub const BIOS_BOOT_PARTITION: (u32, &str, &str) = (
    BIOS_BOOT,
    "BIOS-BOOT",
    "21686148-6449-6e6f-744e-656564454649",
);

/// Size of [`BIOS_BOOT`]: GRUB's core image is about 180 KiB.
pub const BIOS_BOOT_MIB: u64 = 1;

/// The partitions of a disk by number (1-9, and [`BIOS_BOOT`] when it has one).
pub fn partitions(bios_boot: bool) -> Vec<(u32, &'static str, &'static str)> {
    let mut all = PARTITIONS.to_vec();
    if bios_boot {
        all.push(BIOS_BOOT_PARTITION);
    }
    all
}

/// The same partitions in the order they sit on the disk: DATA last.
fn disk_order(bios_boot: bool) -> Vec<(u32, &'static str, &'static str)> {
    let mut all = partitions(bios_boot);
    all.sort_by_key(|(number, _, _)| *number == DATA);
    all
}

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
            Slot::A => BOOT_A,
            Slot::B => BOOT_B,
        }
    }
}

/// A built disk and what its command line needs.
#[derive(Debug, Clone)]
pub struct BuiltDisk {
    pub path: PathBuf,
    pub root_hash: String,
    pub salt: String,
    /// Unique GUID of each partition, by number (index 0 = partition 1).
    pub partuuids: Vec<String>,
    /// (first byte, length in bytes) of each partition, by number (index 0 = partition 1).
    pub extents: Vec<(u64, u64)>,
    /// Logical sector size the GPT and the FAT file systems are made for.
    pub sector_size: SectorSize,
}

impl BuiltDisk {
    pub fn partuuid(&self, number: u32) -> &str {
        self.partuuids
            .get(number as usize - 1)
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn extent(&self, number: u32) -> (u64, u64) {
        self.extents
            .get(number as usize - 1)
            .copied()
            .unwrap_or((0, 0))
    }

    /// Whether the disk has a BIOS boot partition ([`BIOS_BOOT`]).
    pub fn bios_boot(&self) -> bool {
        self.extent(BIOS_BOOT).1 > 0
    }

    /// Its partitions by number, as [`partitions`] lists them.
    pub fn partitions(&self) -> Vec<(u32, &'static str, &'static str)> {
        partitions(self.bios_boot())
    }

    /// The Liftoff keys of the kernel command line for booting slot A of this disk.
    pub fn cmdline_slot_a(&self) -> String {
        format!(
            "liftoff.slot=A liftoff.boot_partuuid={} liftoff.roothash={} liftoff.salt={}",
            self.partuuid(BOOT_A),
            self.root_hash,
            self.salt
        )
    }
}

/// The sector size `bytes` names: 512 or 4096, else an error that says so.
pub fn sector_size(bytes: u64) -> Result<SectorSize, String> {
    match bytes {
        512 => Ok(SectorSize::S512),
        4096 => Ok(SectorSize::S4096),
        other => Err(format!(
            "unsupported sector size {other}: a Liftoff disk has 512- or 4096-byte sectors"
        )),
    }
}

/// Copies `len` bytes at `offset` of `disk` into `dest` (a partition's content).
pub fn extract(disk: &Path, offset: u64, len: u64, dest: &Path) -> Result<(), ImageError> {
    let mut src = File::open(disk).map_err(io_err(format!("opening {}", disk.display())))?;
    src.seek(SeekFrom::Start(offset))
        .map_err(io_err(format!("seeking in {}", disk.display())))?;
    let mut out = File::create(dest).map_err(io_err(format!("creating {}", dest.display())))?;
    let copied = io::copy(&mut src.take(len), &mut out)
        .map_err(io_err(format!("writing {}", dest.display())))?;
    if copied != len {
        return Err(ImageError::Io {
            what: format!("reading {len} bytes at {offset} of {}", disk.display()),
            source: io::ErrorKind::UnexpectedEof.into(),
        });
    }
    Ok(())
}

/// Puts `data` into PRIVATE's file system as `/name` (mode 0600, root's), replacing a file
/// of that name: how a per-host bootconfig (`prairiedog generate-boot-config`) gets onto
/// an image before its first boot. Works on a copy of the partition in `work` with
/// debugfs (e2fsprogs), reads the file back to check it, and writes the partition back.
pub fn put_private_file(
    disk: &BuiltDisk,
    name: &str,
    data: &[u8],
    work: &Path,
) -> Result<(), ImageError> {
    if name.is_empty() || name.contains(['/', '"', '\n', ' ']) {
        return Err(ImageError::Io {
            what: format!("putting {name:?} on PRIVATE"),
            source: io::Error::new(io::ErrorKind::InvalidInput, "a plain file name"),
        });
    }
    let (offset, len) = disk.extent(PRIVATE);
    let part = work.join("private-edit.img");
    let src = work.join("private-file");
    extract(&disk.path, offset, len, &part)?;
    std::fs::write(&src, data).map_err(io_err(format!("writing {}", src.display())))?;
    let script = format!(
        "rm {name}\nwrite {} {name}\nsif {name} mode 0100600\nsif {name} uid 0\nsif {name} gid 0\n",
        src.display()
    );
    let commands = work.join("private-edit.debugfs");
    std::fs::write(&commands, script).map_err(io_err(format!("writing {}", commands.display())))?;
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&commands)
        .arg(&part))?;
    // debugfs exits 0 even when a command fails: read the file back.
    let back = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {name}"))
        .arg(&part)
        .output()
        .map_err(io_err("running debugfs (run scripts/setup)".to_owned()))?;
    if back.stdout != data {
        return Err(ImageError::Tool {
            command: format!("debugfs -w {}", part.display()),
            output: format!(
                "/{name} on PRIVATE does not read back as written: {}",
                String::from_utf8_lossy(&back.stderr)
            ),
        });
    }
    let bytes = std::fs::read(&part).map_err(io_err(format!("reading {}", part.display())))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.path)
        .map_err(io_err(format!("opening {}", disk.path.display())))?;
    out.seek(SeekFrom::Start(offset))
        .and_then(|_| out.write_all(&bytes))
        .and_then(|()| out.sync_all())
        .map_err(io_err(format!(
            "writing PRIVATE of {}",
            disk.path.display()
        )))
}

/// Copies `src` into `disk` at byte `offset`, skipping zero blocks (the disk is sparse).
pub fn write_at(disk: &mut File, offset: u64, src: &Path) -> Result<u64, ImageError> {
    let mut input = File::open(src).map_err(io_err(format!("opening {}", src.display())))?;
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = offset;
    loop {
        let n = input
            .read(&mut buf)
            .map_err(io_err(format!("reading {}", src.display())))?;
        if n == 0 {
            break;
        }
        // read() never returns more than the buffer holds.
        let chunk = buf.get(..n).unwrap_or_default();
        if chunk.iter().any(|b| *b != 0) {
            disk.seek(SeekFrom::Start(pos))
                .and_then(|_| disk.write_all(chunk))
                .map_err(io_err("writing the disk image"))?;
        }
        pos += n as u64;
    }
    Ok(pos - offset)
}

/// Builds the disk: the root image (already made) and its hash tree into slot A, an empty
/// slot B, the ESP with `spec.esp_files`, PRIVATE as ext4, DATA and the BIOS boot partition
/// (if any: [`crate::bios::install`] fills it) blank. Slot A gets priority
/// 1 and `successful` (DESIGN.md section 4).
pub fn build_disk(
    root_image: &Path,
    out: &Path,
    spec: &DiskSpec,
    work: &Path,
) -> Result<BuiltDisk, ImageError> {
    if spec.bios_boot && spec.sector_size != SectorSize::S512 {
        return Err(layout_err(
            out,
            format!(
                "no BIOS boot partition on a disk with {}-byte sectors: legacy BIOS boots \
                 512-byte-sector disks only",
                spec.sector_size.bytes()
            ),
        ));
    }
    std::fs::create_dir_all(work).map_err(io_err(format!("creating {}", work.display())))?;
    let hash_image = work.join("hash.img");
    let (root_hash, salt) = make_hash(root_image, &hash_image, &spec.seed)?;
    let root_bytes = round_up_mib(file_len(root_image)?);
    let hash_bytes = round_up_mib(file_len(&hash_image)?);
    let size_of = |number: u32| match number {
        ESP => spec.esp_mib * MIB,
        BOOT_A | BOOT_B => spec.boot_mib * MIB,
        ROOT_A | ROOT_B => root_bytes,
        HASH_A | HASH_B => hash_bytes,
        PRIVATE => spec.private_mib * MIB,
        DATA => spec.data_mib * MIB,
        // BIOS_BOOT, the only other number.
        _ => BIOS_BOOT_MIB * MIB,
    };
    let order = disk_order(spec.bios_boot);
    let total = MIB + order.iter().map(|p| size_of(p.0)).sum::<u64>() + MIB;
    let _ = std::fs::remove_file(out);
    let mut disk = File::create(out).map_err(io_err(format!("creating {}", out.display())))?;
    disk.set_len(total)
        .map_err(io_err(format!("sizing {}", out.display())))?;

    // By number (index 0 = partition 1), laid out in disk order.
    let mut extents = vec![(0, 0); order.len()];
    let mut partuuids = vec![String::new(); order.len()];
    let mut entries = vec![None; order.len()];
    let ss = spec.sector_size.bytes();
    let mut start = MIB;
    for (number, label, type_guid) in order {
        let size = size_of(number);
        let guid = seeded_guid(&spec.seed, label);
        // Slot A: priority 1 (bit 48) and successful (bit 56).
        let attributes = if number == BOOT_A {
            1 << 48 | 1 << 56
        } else {
            0
        };
        let entry = gpt::Entry::new(
            parse_guid(type_guid, out)?,
            parse_guid(&guid, out)?,
            start / ss,
            (start + size) / ss - 1,
            attributes,
            label,
        )
        .map_err(|e| layout_err(out, e.to_string()))?;
        let index = number as usize - 1;
        if let (Some(x), Some(u), Some(e)) = (
            extents.get_mut(index),
            partuuids.get_mut(index),
            entries.get_mut(index),
        ) {
            *x = (start, size);
            *u = guid;
            *e = Some(entry);
        }
        start += size;
    }
    // The numbers of `partitions` are 1..=len: every slot was filled.
    let entries: Vec<gpt::Entry> = entries.into_iter().flatten().collect();
    let disk_guid = parse_guid(&seeded_guid(&spec.seed, "disk"), out)?;
    let mut table =
        gpt::Gpt::new(spec.sector_size, total, disk_guid, entries).map_err(|problem| {
            ImageError::Gpt(gpt::Error::Layout {
                device: out.to_path_buf(),
                problem,
            })
        })?;
    gpt::mbr::ProtectiveMbr::new(total / ss)
        .write(&mut disk, out)
        .map_err(ImageError::Gpt)?;
    table.write(&mut disk, out).map_err(ImageError::Gpt)?;

    let esp = work.join("esp.img");
    make_fat_tree(
        &esp,
        spec.esp_mib,
        spec.sector_size,
        "EFI-SYSTEM",
        &spec.seed,
        &spec.esp_files,
        work,
    )?;
    // Where partition `number` starts: every partition of PARTITIONS was laid out above.
    let start_of = |number: u32| {
        (number as usize)
            .checked_sub(1)
            .and_then(|i| extents.get(i))
            .map(|e| e.0)
            .ok_or_else(|| ImageError::Io {
                what: format!("laying out {}", out.display()),
                source: io::Error::other(format!("partition {number} has no extent")),
            })
    };
    write_at(&mut disk, start_of(ESP)?, &esp)?;
    if !spec.boot_a_files.is_empty() {
        let boot = work.join("boot-a.img");
        make_fat_tree(
            &boot,
            spec.boot_mib,
            spec.sector_size,
            "BOOT-A",
            &spec.seed,
            &spec.boot_a_files,
            work,
        )?;
        write_at(&mut disk, start_of(BOOT_A)?, &boot)?;
    }
    write_at(&mut disk, start_of(ROOT_A)?, root_image)?;
    write_at(&mut disk, start_of(HASH_A)?, &hash_image)?;

    let private = work.join("private.img");
    let _ = std::fs::remove_file(&private);
    File::create(&private)
        .and_then(|f| f.set_len(spec.private_mib * MIB))
        .map_err(io_err(format!("creating {}", private.display())))?;
    let private_uuid = seeded_guid(&spec.seed, "private-fs");
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-L",
            "PRIVATE",
            "-U",
            &private_uuid,
        ])
        .arg("-E")
        .arg(format!("hash_seed={private_uuid}"))
        .arg(&private)
        .env("E2FSPROGS_FAKE_TIME", "1"))?;
    write_at(&mut disk, start_of(PRIVATE)?, &private)?;
    disk.sync_all()
        .map_err(io_err(format!("syncing {}", out.display())))?;
    Ok(BuiltDisk {
        path: out.to_path_buf(),
        root_hash,
        salt,
        partuuids,
        extents,
        sector_size: spec.sector_size,
    })
}

fn parse_guid(text: &str, disk: &Path) -> Result<gpt::Guid, ImageError> {
    text.parse()
        .map_err(|e: gpt::ParseGuidError| layout_err(disk, format!("GUID {text:?}: {e}")))
}

fn layout_err(disk: &Path, message: String) -> ImageError {
    ImageError::Io {
        what: format!("laying out the partitions of {}", disk.display()),
        source: io::Error::other(message),
    }
}

fn file_len(path: &Path) -> Result<u64, ImageError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_err(format!("reading the size of {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::{make_root_fs, RootFsType};

    /// A small tree through the whole builder, with a BIOS boot partition; the table is
    /// checked with sgdisk and the tree with veritysetup.
    #[test]
    fn builds_a_disk_that_sgdisk_and_veritysetup_accept() {
        let work = std::env::temp_dir().join(format!("liftoff-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let tree = work.join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/os-release"), "ID=liftoff-test\n").unwrap();
        let root = work.join("root.erofs");
        make_root_fs(&tree, &root, RootFsType::Erofs, "t").unwrap();
        let spec = DiskSpec {
            seed: "t".into(),
            esp_files: vec![("grubenv".into(), b"# GRUB Environment Block\n".to_vec())],
            boot_mib: 8,
            data_mib: 8,
            bios_boot: true,
            ..DiskSpec::default()
        };
        let disk = build_disk(&root, &work.join("disk.img"), &spec, &work.join("w")).unwrap();
        // BIOS-BOOT is partition 10, 1 MiB right after PRIVATE; DATA stays last.
        assert!(disk.bios_boot());
        let (private, private_len) = disk.extent(PRIVATE);
        assert_eq!(disk.extent(BIOS_BOOT), (private + private_len, MIB));
        assert_eq!(disk.extent(DATA).0, private + private_len + MIB);
        assert_eq!(disk.partitions().len(), 10);
        let out = Command::new("sgdisk")
            .arg("-v")
            .arg(&disk.path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("No problems found"), "{text}");
        let out = Command::new("sgdisk")
            .arg("-i")
            .arg("2")
            .arg(&disk.path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Partition name: 'BOOT-A'"), "{text}");
        let out = Command::new("sgdisk")
            .args(["-i", "10"])
            .arg(&disk.path)
            .output()
            .unwrap();
        let bios = String::from_utf8_lossy(&out.stdout);
        assert!(
            bios.contains("Partition GUID code: 21686148-6449-6E6F-744E-656564454649")
                && bios.contains("Partition name: 'BIOS-BOOT'"),
            "{bios}"
        );
        assert!(text.contains("Attribute flags: 0101000000000000"), "{text}");
        assert!(
            text.to_lowercase()
                .contains(&disk.partuuid(BOOT_A).to_string()),
            "{text}"
        );
        // The root and its tree as veritysetup sees them, read back from the disk.
        let extract = |n: u32, name: &str| {
            let (off, len) = disk.extent(n);
            let mut f = File::open(&disk.path).unwrap();
            f.seek(SeekFrom::Start(off)).unwrap();
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf).unwrap();
            let p = work.join(name);
            std::fs::write(&p, buf).unwrap();
            p
        };
        let root_part = extract(ROOT_A, "root-part");
        let hash_part = extract(HASH_A, "hash-part");
        let out = Command::new("veritysetup")
            .arg("verify")
            .arg(&root_part)
            .arg(&hash_part)
            .arg(&disk.root_hash)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        // Same seed, same bytes.
        let again = build_disk(&root, &work.join("disk2.img"), &spec, &work.join("w2")).unwrap();
        let bytes = std::fs::read(&disk.path).unwrap();
        assert_eq!(bytes, std::fs::read(&again.path).unwrap());
        // The table is what sgdisk made before the builder had its own (the first and last
        // MiB hold only the MBR and the two GPT copies), so 512-byte disks are unchanged.
        let reference = work.join("sgdisk.img");
        File::create(&reference)
            .unwrap()
            .set_len(bytes.len() as u64)
            .unwrap();
        let mut sgdisk = Command::new("sgdisk");
        sgdisk.arg("--clear");
        sgdisk.arg(format!("--disk-guid={}", seeded_guid("t", "disk")));
        for (number, label, type_guid) in disk.partitions() {
            let (start, size) = disk.extent(number);
            sgdisk.arg(format!(
                "--new={number}:{}:{}",
                start / 512,
                (start + size) / 512 - 1
            ));
            sgdisk.arg(format!("--typecode={number}:{type_guid}"));
            sgdisk.arg(format!("--change-name={number}:{label}"));
            sgdisk.arg(format!(
                "--partition-guid={number}:{}",
                disk.partuuid(number)
            ));
        }
        sgdisk.args(["--attributes=2:set:48", "--attributes=2:set:56"]);
        assert!(sgdisk.arg(&reference).status().unwrap().success());
        let theirs = std::fs::read(&reference).unwrap();
        let mib = MIB as usize;
        assert!(
            bytes[..mib] == theirs[..mib],
            "primary GPT differs from sgdisk's"
        );
        let tail = bytes.len() - mib;
        assert!(
            bytes[tail..] == theirs[tail..],
            "backup GPT differs from sgdisk's"
        );
        std::fs::remove_dir_all(&work).unwrap();
    }

    /// No BIOS boot partition on a 4Kn disk: a BIOS reads 512-byte sectors.
    #[test]
    fn refuses_a_bios_boot_partition_on_a_4kn_disk() {
        let work = crate::test_work("bios-4kn");
        let root = work.join("root.img");
        std::fs::write(&root, vec![0u8; 1 << 20]).unwrap();
        let spec = DiskSpec {
            sector_size: SectorSize::S4096,
            bios_boot: true,
            ..DiskSpec::default()
        };
        let err = build_disk(&root, &work.join("disk.img"), &spec, &work.join("w"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("512-byte-sector disks only"), "{err}");
        std::fs::remove_dir_all(&work).unwrap();
    }
}
