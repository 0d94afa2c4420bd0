//! The running host: which disk the root came from, which slot is running, and opening a disk
//! with its logical sector size. Readers take the root of `/sys` and `/proc` so tests can
//! point them at a fixture tree.
//!
//! The boot disk is found from the root file system's device, never by searching for labels
//! or GUIDs, so a second disk carrying the same GUIDs (a cloned volume) is never used: `/`
//! is a dm-verity device whose first lower device (`/sys/dev/block/M:m/slaves/`) is ROOT-x or
//! HASH-x; the disk is that partition's parent in sysfs.

use crate::disk::{DiskError, SlotDisk};
use crate::Slot;
use gpt::SectorSize;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// A failure finding the boot disk or the running slot.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// stat() of the root directory.
    #[error("stat {path}: {source}")]
    StatRoot {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A sysfs entry that should exist.
    #[error("reading {path}: {source}")]
    Sysfs {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The root's device is not on a partition.
    #[error("the root file system's device {device} is not a partition of a disk")]
    NotAPartition {
        /// The sysfs name of the device.
        device: String,
    },
    /// Opening the disk.
    #[error("opening {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading the GPT or finding the slots.
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// The partition the root file system comes from: its sysfs name (`vda6`), the parent disk's
/// name (`vda`) and its partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPartition {
    /// sysfs name of the partition.
    pub partition: String,
    /// sysfs name of its disk.
    pub disk: String,
    /// Partition number (`/sys/class/block/<name>/partition`).
    pub number: u32,
}

fn read_trimmed(path: &Path) -> Result<String, HostError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| HostError::Sysfs {
            path: path.to_owned(),
            source,
        })
}

/// Finds the partition under the block device `major:minor` (following the first lower
/// device of a dm device) in the sysfs tree at `sys`.
pub fn root_partition(sys: &Path, major: u32, minor: u32) -> Result<RootPartition, HostError> {
    let mut dev = sys.join(format!("dev/block/{major}:{minor}"));
    let slaves = dev.join("slaves");
    if let Ok(entries) = std::fs::read_dir(&slaves) {
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if let Some(first) = names.first() {
            dev = sys.join("class/block").join(first);
        }
    }
    let real = std::fs::canonicalize(&dev).map_err(|source| HostError::Sysfs {
        path: dev.clone(),
        source,
    })?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let number = read_trimmed(&real.join("partition"))
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| HostError::NotAPartition {
            device: name.clone(),
        })?;
    let disk = real
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| HostError::NotAPartition {
            device: name.clone(),
        })?;
    Ok(RootPartition {
        partition: name,
        disk,
        number,
    })
}

/// The partition the running root (`/`) comes from, through `/sys`.
pub fn running_root_partition() -> Result<RootPartition, HostError> {
    let st = rustix::fs::stat("/").map_err(|e| HostError::StatRoot {
        path: "/".into(),
        source: e.into(),
    })?;
    root_partition(
        Path::new("/sys"),
        rustix::fs::major(st.st_dev),
        rustix::fs::minor(st.st_dev),
    )
}

/// Where PID 1 writes why the running boot is degraded (DESIGN.md section 7), under the
/// root: one line on the tmpfs `/run`, so it lasts exactly as long as the boot.
pub const DEGRADED_FILE: &str = "run/liftoff/degraded";

/// Where PID 1 hands a DATA recovery key over (tmpfs, mode 0400): docs/data.md.
pub const RECOVERY_KEY_FILE: &str = "/run/liftoff/recovery-key";

/// The `type` of the LUKS2 token on DATA that marks a recovery key nobody has confirmed
/// saving: while it is there, every boot gives its keyslot a new key in
/// [`RECOVERY_KEY_FILE`]; `prairiedog data recovery-key-saved` removes it.
pub const UNSAVED_RECOVERY_TOKEN: &str = "liftoff-recovery-unsaved";

/// Why the running boot is degraded, read under `root` (`/` on a host); `None` when it is
/// not (no file, or an empty one).
pub fn degraded(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join(DEGRADED_FILE)).ok()?;
    let reason = text.trim();
    (!reason.is_empty()).then(|| reason.to_owned())
}

/// `liftoff.slot=` from a kernel command line, read as PID 1 reads it ([`crate::cmdline`]:
/// quoting, `--`, the last well-formed value).
pub fn cmdline_slot(cmdline: &str) -> Option<Slot> {
    crate::cmdline::parse(cmdline).config.slot
}

/// Opens a disk or image for reading and, with `write`, writing, and reads its slot state.
/// A block device's logical sector size comes from BLKSSZGET; an image's is probed.
pub fn open_disk(path: &Path, write: bool) -> Result<SlotDisk<File>, HostError> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|source| HostError::Open {
            path: path.to_owned(),
            source,
        })?;
    let is_block = file
        .metadata()
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    let sector_size = if is_block {
        rustix::fs::ioctl_blksszget(&file)
            .ok()
            .and_then(SectorSize::new)
    } else {
        None
    };
    Ok(SlotDisk::open(file, path, sector_size)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs fixture: a virtio disk `vda` with partitions 3 and 6, a clone `vdb` with the
    /// same layout, and dm-0 over vda6.
    fn fixture(dir: &Path) {
        let dev = dir.join("devices/pci0000:00/virtio1/block");
        for (disk, major) in [("vda", 254), ("vdb", 253)] {
            for n in [3u32, 6] {
                let p = dev.join(disk).join(format!("{disk}{n}"));
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("partition"), format!("{n}\n")).unwrap();
                std::fs::create_dir_all(dir.join("class/block")).unwrap();
                symlink(&p, dir.join(format!("class/block/{disk}{n}"))).unwrap();
                std::fs::create_dir_all(dir.join("dev/block")).unwrap();
                symlink(&p, dir.join(format!("dev/block/{major}:{n}"))).unwrap();
            }
        }
        let dm = dir.join("devices/virtual/block/dm-0");
        std::fs::create_dir_all(dm.join("slaves")).unwrap();
        symlink(dev.join("vda/vda6"), dm.join("slaves/vda6")).unwrap();
        symlink(&dm, dir.join("dev/block/252:0")).unwrap();
    }

    #[test]
    fn finds_the_disk_under_dm_and_never_the_clone() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let want = |partition: &str, disk: &str, number| RootPartition {
            partition: partition.into(),
            disk: disk.into(),
            number,
        };
        assert_eq!(
            root_partition(dir.path(), 252, 0).unwrap(),
            want("vda6", "vda", 6)
        );
        assert_eq!(
            root_partition(dir.path(), 254, 3).unwrap(),
            want("vda3", "vda", 3)
        );
        assert_eq!(
            root_partition(dir.path(), 253, 6).unwrap(),
            want("vdb6", "vdb", 6)
        );
        assert!(matches!(
            root_partition(dir.path(), 9, 9),
            Err(HostError::Sysfs { .. })
        ));
    }

    #[test]
    fn degraded_reason_from_the_run_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(degraded(dir.path()), None);
        let file = dir.path().join(DEGRADED_FILE);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "").unwrap();
        assert_eq!(degraded(dir.path()), None);
        std::fs::write(&file, "data: /dev/vda9 holds data\n").unwrap();
        assert_eq!(
            degraded(dir.path()).as_deref(),
            Some("data: /dev/vda9 holds data")
        );
    }

    #[test]
    fn slot_from_cmdline() {
        let table = [
            ("quiet liftoff.slot=B", Some(Slot::B)),
            ("liftoff.slot=A ro", Some(Slot::A)),
            ("liftoff.slot=A liftoff.slot=B", Some(Slot::B)),
            ("liftoff.slot=C", None),
            ("xliftoff.slot=A", None),
            ("", None),
            // The kernel's rules, as PID 1 reads them: quotes, `--`, a malformed last value.
            ("\"liftoff.slot=B\"", Some(Slot::B)),
            ("liftoff.slot=A -- liftoff.slot=B", Some(Slot::A)),
            ("liftoff.slot=B liftoff.slot=C", Some(Slot::B)),
            (
                "init=\"/bin/x liftoff.slot=B\" liftoff.slot=A",
                Some(Slot::A),
            ),
        ];
        for (cmdline, want) in table {
            assert_eq!(cmdline_slot(cmdline), want, "{cmdline}");
        }
    }
}
