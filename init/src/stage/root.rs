//! The root stage: the verified root (the device the verity stage opened) mounted
//! read-only at /sysroot, and the writable but non-persistent parts around it.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::stage::mounts::{self, Mount, MountFlags};

/// The root stage's failures.
#[derive(Debug)]
pub enum RootError {
    UnknownFs {
        device: PathBuf,
    },
    ReadFs {
        device: PathBuf,
        source: io::Error,
    },
    /// An overlay's upper or work folder on /run.
    CreateDir {
        dir: String,
        source: io::Error,
    },
    Mount(mounts::MountError),
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootError::UnknownFs { device } => {
                write!(f, "{} holds neither erofs nor ext4", device.display())
            }
            RootError::ReadFs { device, source } => {
                write!(
                    f,
                    "reading the file-system superblock of {}: {source}",
                    device.display()
                )
            }
            RootError::CreateDir { dir, source } => write!(f, "creating {dir}: {source}"),
            RootError::Mount(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RootError {}

/// The root stage: mounts the verified device at /sysroot read-only with /tmp and the
/// overlays of [`sysroot_plan`] (the /var overlay only when `var_overlay`). Returns the
/// root's file system.
pub fn mount(verified: &Path, var_overlay: bool) -> Result<RootFs, RootError> {
    let fs = read_fs_type(verified)?;
    for (upper, work) in OVERLAID.map(overlay_dirs) {
        for dir in [upper, work] {
            std::fs::create_dir_all(&dir).map_err(|source| RootError::CreateDir {
                dir: dir.clone(),
                source,
            })?;
        }
    }
    mounts::run(
        &mut mounts::System,
        Path::new("/"),
        &sysroot_plan(verified, fs, var_overlay),
    )
    .map_err(RootError::Mount)?;
    Ok(fs)
}

/// File systems a verified root may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFs {
    Erofs,
    Ext4,
}

impl RootFs {
    pub fn name(self) -> &'static str {
        match self {
            RootFs::Erofs => "erofs",
            RootFs::Ext4 => "ext4",
        }
    }
}

/// Recognises erofs (magic 0xe0f5e1e2 at 1024) and ext2/3/4 (0xef53 at 1024 + 0x38) from
/// the first 2 KiB of a device.
pub fn detect_fs(head: &[u8]) -> Option<RootFs> {
    let le32 = |at: usize| {
        head.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let le16 = |at: usize| {
        head.get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    if le32(1024) == Some(0xe0f5_e1e2) {
        Some(RootFs::Erofs)
    } else if le16(1024 + 0x38) == Some(0xef53) {
        Some(RootFs::Ext4)
    } else {
        None
    }
}

/// Reads the file-system type from a device.
pub fn read_fs_type(device: &Path) -> Result<RootFs, RootError> {
    let mut head = vec![0u8; 2048];
    std::fs::File::open(device)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|source| RootError::ReadFs {
            device: device.to_path_buf(),
            source,
        })?;
    detect_fs(&head).ok_or_else(|| RootError::UnknownFs {
        device: device.to_path_buf(),
    })
}

/// Where the verified root is mounted before switch_root.
pub const SYSROOT: &str = "/sysroot";
/// Folders of the verified root made writable with an overlay whose upper layer lives on
/// /run (tmpfs, moved into the new root with it): changes last until the next boot. /etc
/// always; /var only on a disk without DATA (otherwise DATA's /local/var is bound there).
pub const OVERLAID: [&str; 2] = ["etc", "var"];

/// The upper and work folders of the overlay over `/sysroot/<dir>`.
pub fn overlay_dirs(dir: &str) -> (String, String) {
    (
        format!("/run/liftoff/{dir}/upper"),
        format!("/run/liftoff/{dir}/work"),
    )
}

/// The mounts that make the verified root a system: the root itself read-only, a fresh
/// /tmp, /etc (and /var when `var_overlay`) writable through overlays whose changes live in
/// memory only.
pub fn sysroot_plan(device: &Path, fs: RootFs, var_overlay: bool) -> Vec<Mount> {
    let ro = MountFlags::RDONLY | MountFlags::NODEV;
    let mut root = Mount::new(&device.display().to_string(), SYSROOT, fs.name(), ro, "");
    if fs == RootFs::Ext4 {
        // A verified ext4 must not be touched: no journal replay, no orphan cleanup.
        root.data = "noload".to_owned();
    }
    let mut plan = vec![
        root,
        Mount::new(
            "tmpfs",
            "/sysroot/tmp",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=1777",
        ),
    ];
    for dir in OVERLAID {
        if dir == "var" && !var_overlay {
            continue;
        }
        let (upper, work) = overlay_dirs(dir);
        plan.push(Mount::new(
            "overlay",
            &format!("/sysroot/{dir}"),
            "overlay",
            MountFlags::NODEV,
            &format!("lowerdir=/sysroot/{dir},upperdir={upper},workdir={work}"),
        ));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_root_file_systems() {
        let mut erofs = vec![0u8; 2048];
        erofs[1024..1028].copy_from_slice(&0xe0f5_e1e2u32.to_le_bytes());
        assert_eq!(detect_fs(&erofs), Some(RootFs::Erofs));
        let mut ext4 = vec![0u8; 2048];
        ext4[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
        assert_eq!(detect_fs(&ext4), Some(RootFs::Ext4));
        assert_eq!(detect_fs(&[0u8; 2048]), None);
        assert_eq!(detect_fs(&[0u8; 10]), None);
    }

    #[test]
    fn plan_for_erofs_and_ext4() {
        let plan = sysroot_plan(Path::new("/dev/dm-0"), RootFs::Erofs, true);
        let summary: Vec<String> = plan
            .iter()
            .map(|m| format!("{} {} {} {}", m.source, m.target, m.fstype, m.data))
            .collect();
        assert_eq!(
            summary,
            [
                "/dev/dm-0 /sysroot erofs ",
                "tmpfs /sysroot/tmp tmpfs mode=1777",
                "overlay /sysroot/etc overlay lowerdir=/sysroot/etc,upperdir=/run/liftoff/etc/upper,workdir=/run/liftoff/etc/work",
                "overlay /sysroot/var overlay lowerdir=/sysroot/var,upperdir=/run/liftoff/var/upper,workdir=/run/liftoff/var/work",
            ]
        );
        assert!(plan[0].flags.contains(MountFlags::RDONLY));
        let plan = sysroot_plan(Path::new("/dev/dm-0"), RootFs::Ext4, false);
        assert_eq!(plan[0].data, "noload");
        assert_eq!(plan.len(), 3, "no /var overlay when DATA is mounted there");
    }
}
