//! The verity stage: dm-verity over the slot's ROOT and HASH partitions.
//!
//! Trust flows from the kernel command line only: `liftoff.roothash` and `liftoff.salt`
//! must match the HASH partition's superblock (its salt, and a root hash of the length
//! its algorithm gives) before any table is loaded; the kernel then checks every block
//! read against the tree. The device is named `root`, read-only, and the error mode
//! comes from `liftoff.verity`.

use std::fmt;
use std::path::{Path, PathBuf};

use prairiedog::cmdline::{RootHashBytes, Salt, VerityMode};
use prairiedog::disk::Layout;
use prairiedog::Slot;

use crate::stage::disk::BootDisk;

/// The device-mapper name of the verified root.
pub const DM_NAME: &str = "root";

/// The verity stage's failures.
#[derive(Debug)]
pub enum VerityError {
    /// The boot disk's slot sets, PRIVATE and DATA cannot be told apart.
    Layout(prairiedog::disk::DiskError),
    /// ROOT-x or HASH-x is in the GPT but the kernel made no node for it.
    NoNode {
        part: &'static str,
        slot: Slot,
        number: u32,
        disk: PathBuf,
    },
    NoRootHash,
    Superblock(verity::Error),
    Control(dm::Error),
    Setup(verity::device::DeviceError),
}

impl fmt::Display for VerityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerityError::Layout(e) => write!(f, "{e}"),
            VerityError::NoNode {
                part,
                slot,
                number,
                disk,
            } => write!(
                f,
                "{part}-{slot} (partition {number} of {}) has no device node",
                disk.display()
            ),
            VerityError::NoRootHash => write!(
                f,
                "no liftoff.roothash on the command line: refusing to use an unverified root"
            ),
            VerityError::Superblock(e) => write!(f, "reading the verity superblock: {e}"),
            VerityError::Control(e) => write!(f, "opening device-mapper: {e}"),
            VerityError::Setup(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for VerityError {}

/// The verity stage: checks `slot`'s HASH against the trusted values and opens the
/// read-only `root` device over its ROOT. Returns the device node under `dev` and the
/// table loaded.
pub fn run(
    boot_disk: &BootDisk,
    layout: &Layout,
    slot: Slot,
    root_hash: Option<&RootHashBytes>,
    salt: Option<&Salt>,
    mode: VerityMode,
    dev: &Path,
) -> Result<(PathBuf, verity::VerityTable), VerityError> {
    let (root_node, hash_node) = slot_partitions(boot_disk, layout, slot, dev)?;
    let expected = expected(&hash_node, root_hash, salt)?;
    open_verity(&root_node, &hash_node, &expected, mode, dev)
}

/// The device nodes of `ROOT-<slot>` and `HASH-<slot>` on the boot disk.
pub fn slot_partitions(
    boot_disk: &BootDisk,
    layout: &Layout,
    slot: Slot,
    dev: &Path,
) -> Result<(PathBuf, PathBuf), VerityError> {
    let set = layout.set(slot);
    let node = |number: u32, part: &'static str| {
        boot_disk
            .disk
            .partition_node(dev, number)
            .ok_or_else(|| VerityError::NoNode {
                part,
                slot,
                number,
                disk: boot_disk.node.clone(),
            })
    };
    Ok((node(set.root, "ROOT")?, node(set.hash, "HASH")?))
}

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
) -> Result<verity::Expected, VerityError> {
    let root_hash = root_hash.ok_or(VerityError::NoRootHash)?;
    let salt = match salt {
        None => {
            verity::read_superblock(hash, 0)
                .map_err(VerityError::Superblock)?
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
) -> Result<(PathBuf, verity::VerityTable), VerityError> {
    let control = dm::Control::open().map_err(VerityError::Control)?;
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
    .map_err(VerityError::Setup)?;
    Ok((info.devnode(dev), table))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(err, VerityError::NoRootHash));
        let ab: RootHashBytes = "ab".parse().unwrap();
        assert_eq!(
            expected(Path::new("/x"), Some(&ab), Some(&Salt::none()))
                .unwrap()
                .salt,
            verity::Salt::none()
        );
    }
}
