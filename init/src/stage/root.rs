//! The verified root: dm-verity over the slot's ROOT and HASH partitions, mounted
//! read-only, and the writable but non-persistent parts around it.
//!
//! Trust flows from the kernel command line only: `liftoff.roothash` and `liftoff.salt`
//! must match the HASH partition's superblock (its salt, and a root hash of the length
//! its algorithm gives) before any table is loaded; the kernel then checks every block
//! read against the tree. The device is named `root`, read-only, and the error mode
//! comes from `liftoff.verity`.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::stage::mounts::{Mount, MountFlags};
use prairiedog::cmdline::{RootHashBytes, Salt, VerityMode};

/// The device-mapper name of the verified root.
pub const DM_NAME: &str = "root";

#[derive(Debug)]
pub enum RootError {
    NoRootHash,
    Superblock(verity::Error),
    Control(dm::Error),
    Setup(verity::device::DeviceError),
    UnknownFs { device: PathBuf },
    ReadFs { device: PathBuf, source: io::Error },
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootError::NoRootHash => write!(
                f,
                "no liftoff.roothash on the command line: refusing to use an unverified root"
            ),
            RootError::Superblock(e) => write!(f, "reading the verity superblock: {e}"),
            RootError::Control(e) => write!(f, "opening device-mapper: {e}"),
            RootError::Setup(e) => write!(f, "{e}"),
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
        }
    }
}

impl std::error::Error for RootError {}

/// The verity table options for a `liftoff.verity` mode.
pub fn table_options(mode: VerityMode) -> verity::TableOptions {
    verity::TableOptions {
        error_mode: match mode {
            VerityMode::Restart => verity::ErrorMode::Restart,
            VerityMode::Panic => verity::ErrorMode::Panic,
            VerityMode::Eio => verity::ErrorMode::Eio,
        },
        ..verity::TableOptions::default()
    }
}

/// The trusted values from the command line. Without `liftoff.salt` the superblock's salt
/// is taken: the root hash already commits to it, since every digest in the tree is salted.
pub fn expected(
    hash: &Path,
    root_hash: Option<&RootHashBytes>,
    salt: Option<&Salt>,
) -> Result<verity::Expected, RootError> {
    let root_hash = root_hash.ok_or(RootError::NoRootHash)?;
    let salt = match salt {
        None => {
            verity::read_superblock(hash, 0)
                .map_err(RootError::Superblock)?
                .params
                .salt
        }
        Some(salt) => salt.clone(),
    };
    Ok(verity::Expected {
        salt,
        algorithm: None,
        root_hash: root_hash.clone(),
    })
}

/// Checks the HASH partition against the trusted values (superblock, data size, the top
/// block of the tree) and creates the read-only dm-verity device `root`. Returns its node
/// under `dev` and the table loaded.
pub fn open_verity(
    data: &Path,
    hash: &Path,
    expected: &verity::Expected,
    mode: VerityMode,
    dev: &Path,
) -> Result<(PathBuf, verity::VerityTable), RootError> {
    let control = dm::Control::open().map_err(RootError::Control)?;
    let (info, table) = verity::device::setup(
        &control,
        &verity::device::Setup {
            name: DM_NAME,
            dm_uuid: "",
            data_device: data,
            hash_device: hash,
            expected,
            options: table_options(mode),
        },
    )
    .map_err(RootError::Setup)?;
    Ok((info.devnode(dev), table))
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

    #[test]
    fn verity_modes_map_to_table_options() {
        assert_eq!(
            table_options(VerityMode::Restart).words(),
            ["restart_on_corruption"]
        );
        assert_eq!(
            table_options(VerityMode::Panic).words(),
            ["panic_on_corruption"]
        );
        assert!(table_options(VerityMode::Eio).words().is_empty());
    }

    #[test]
    fn no_root_hash_is_refused() {
        let err = expected(Path::new("/nonexistent"), None, None).unwrap_err();
        assert!(matches!(err, RootError::NoRootHash));
        let ab: RootHashBytes = "ab".parse().unwrap();
        assert_eq!(
            expected(Path::new("/x"), Some(&ab), Some(&Salt::none()))
                .unwrap()
                .salt,
            verity::Salt::none()
        );
    }
}
