//! Opening, inspecting and closing a dm-verity device through device-mapper ioctls.
//!
//! `open` runs create, load (read-only table, one verity target) and resume; `status`
//! reads the target's status back (`V` verified so far, `C` a corruption was seen);
//! `close` removes the device. Each takes the [`dm::Control`] to use so that callers
//! control where `/dev/mapper/control` is (and tests can pass `dm::fake::FakeKernel`).

use std::path::Path;

use crate::geometry::{Geometry, Layout};
use crate::image::{check_data_size, check_expected, check_top_block, read_superblock, Expected};
use crate::table::{TableOptions, VerityTable};

/// A device-mapper step failed for a verity device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The hash device's superblock is unreadable, invalid or not the trusted one.
    #[error(transparent)]
    Superblock(#[from] Box<crate::image::Error>),
    /// The tree placement is invalid.
    #[error(transparent)]
    Layout(#[from] crate::geometry::LayoutError),
    /// The ioctl layer failed (the message names the step and the device).
    #[error(transparent)]
    Dm(#[from] dm::Error),
    /// The device's live table is not a single verity target.
    #[error("device {name:?} is not a verity device (targets: {types})")]
    NotVerity {
        /// Device name.
        name: String,
        /// The target types found.
        types: String,
    },
    /// The verity status line is neither `V` nor `C`.
    #[error("device {name:?}: unexpected verity status {status:?}")]
    Status {
        /// Device name.
        name: String,
        /// The status line.
        status: String,
    },
}

/// The verity target's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// `V`: every block read so far matched.
    Verified,
    /// `C`: at least one block did not match.
    Corrupted,
}

/// A verity device's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Device header (name, dev_t, open count, flags).
    pub info: dm::DeviceInfo,
    /// The verdict.
    pub health: Health,
    /// The full status line (for FEC counters and future fields).
    pub line: String,
}

/// Parses a verity target's status line (`V` or `C`, possibly followed by more fields).
pub fn parse_status(line: &str) -> Option<Health> {
    match line.split_whitespace().next() {
        Some("V") => Some(Health::Verified),
        Some("C") => Some(Health::Corrupted),
        _ => None,
    }
}

/// Creates the read-only device `name` (with `uuid`, may be empty) serving `table`, and
/// returns its header; its node is [`dm::DeviceInfo::devnode`] (`/dev/dm-<minor>`).
/// A device left half-made by a failed step is removed again.
pub fn open<I: dm::Ioctl>(
    control: &dm::Control<I>,
    name: &str,
    uuid: &str,
    table: &VerityTable,
) -> Result<dm::DeviceInfo, DeviceError> {
    Ok(control.create_device(name, uuid, &[table.target()], true)?)
}

/// What [`setup`] needs: the two devices, the trusted values from the command line, and
/// how the device should react to corruption.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// Device-mapper name (`root`).
    pub name: &'a str,
    /// Device-mapper UUID (may be empty).
    pub dm_uuid: &'a str,
    /// The data partition (`ROOT-<slot>`).
    pub data_device: &'a Path,
    /// The hash partition (`HASH-<slot>`), superblock at offset 0.
    pub hash_device: &'a Path,
    /// Root hash, salt (and algorithm) from the trusted command line.
    pub expected: &'a Expected,
    /// Error mode and optional parameters.
    pub options: TableOptions,
}

/// PID 1's whole verity step: reads and validates the superblock of the hash device,
/// checks it against the trusted values and the data device's size, checks that the top
/// block of the tree hashes to the trusted root hash, builds the table
/// (devices named by path) and opens the read-only device. Returns the device header and the table that was loaded.
pub fn setup<I: dm::Ioctl>(
    control: &dm::Control<I>,
    req: &Setup<'_>,
) -> Result<(dm::DeviceInfo, VerityTable), DeviceError> {
    let sb = read_superblock(req.hash_device, 0).map_err(Box::new)?;
    let root = check_expected(&sb, req.expected, req.hash_device).map_err(Box::new)?;
    check_data_size(req.data_device, &sb.params).map_err(Box::new)?;
    let geometry = Geometry::new(&sb.params, &Layout::default())?;
    check_top_block(
        req.data_device,
        req.hash_device,
        &sb.params,
        &geometry,
        &root,
    )
    .map_err(Box::new)?;
    let table = VerityTable::new(
        req.data_device.display().to_string(),
        req.hash_device.display().to_string(),
        &sb.params,
        &geometry,
        &root,
        req.options,
    );
    let info = open(control, req.name, req.dm_uuid, &table)?;
    Ok((info, table))
}

/// Reads the verdict of the verity device `name`.
pub fn status<I: dm::Ioctl>(control: &dm::Control<I>, name: &str) -> Result<Status, DeviceError> {
    let (info, targets) = control.table_status(name)?;
    let types = || {
        targets
            .iter()
            .map(|t| t.target_type.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let [target] = targets.as_slice() else {
        return Err(DeviceError::NotVerity {
            name: name.to_owned(),
            types: types(),
        });
    };
    if target.target_type != "verity" {
        return Err(DeviceError::NotVerity {
            name: name.to_owned(),
            types: types(),
        });
    }
    let health = parse_status(&target.params).ok_or_else(|| DeviceError::Status {
        name: name.to_owned(),
        status: target.params.clone(),
    })?;
    Ok(Status {
        info,
        health,
        line: target.params.clone(),
    })
}

/// Removes the device `name`.
pub fn close<I: dm::Ioctl>(control: &dm::Control<I>, name: &str) -> Result<(), DeviceError> {
    Ok(control.remove(name)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Geometry, Layout};
    use crate::params::{HashAlgorithm, HashType, Params, RootHash, Salt};
    use crate::table::TableOptions;
    use dm::fake::FakeKernel;
    use dm::wire::Command;

    fn table() -> VerityTable {
        let params = Params {
            hash_type: HashType::Normal,
            algorithm: HashAlgorithm::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 244,
            salt: Salt::none(),
        };
        let geometry = Geometry::new(&params, &Layout::default()).unwrap();
        let root = RootHash::new(HashAlgorithm::Sha256, vec![0xab; 32]).unwrap();
        VerityTable::new(
            "/dev/vda3",
            "/dev/vda4",
            &params,
            &geometry,
            &root,
            TableOptions::default(),
        )
    }

    #[test]
    fn open_loads_one_read_only_verity_target_then_status_and_close() {
        for (line, health) in [("V", Health::Verified), ("C", Health::Corrupted)] {
            let control = dm::Control::with_ioctl(FakeKernel::with_status(line));
            let t = table();
            let info = open(&control, "root", "LIFTOFF-VERITY-A", &t).unwrap();
            assert_eq!(
                info.devnode(std::path::Path::new("/dev")).to_str(),
                Some("/dev/dm-3")
            );
            let (targets, read_only) = control.ioctl_impl().live_table("root").unwrap();
            assert!(read_only);
            assert_eq!(targets, vec![t.target()]);
            assert_eq!(targets[0].length, 244 * 8);
            let s = status(&control, "root").unwrap();
            assert_eq!((s.health, s.line.as_str()), (health, line));
            assert!(s.info.read_only());
            close(&control, "root").unwrap();
            let commands: Vec<Command> = control
                .ioctl_impl()
                .calls()
                .into_iter()
                .map(|c| c.0)
                .collect();
            assert_eq!(
                commands,
                [
                    Command::DevCreate,
                    Command::TableLoad,
                    Command::DevSuspend,
                    Command::TableStatus,
                    Command::DevRemove
                ]
            );
        }
    }

    #[test]
    fn setup_checks_the_superblock_before_touching_device_mapper() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("root");
        let hash = dir.path().join("hash");
        std::fs::write(&data, vec![7u8; 64 * 4096]).unwrap();
        let opts = crate::FormatOptions {
            salt: "abcd".parse().unwrap(),
            ..crate::FormatOptions::default()
        };
        let f = crate::format(&data, &hash, &opts, &crate::RunOptions::default()).unwrap();
        let expected = Expected {
            salt: "abcd".parse().unwrap(),
            algorithm: None,
            root_hash: (&f.root_hash).into(),
        };
        let req = Setup {
            name: "root",
            dm_uuid: "LIFTOFF-VERITY-A",
            data_device: &data,
            hash_device: &hash,
            expected: &expected,
            options: TableOptions::default(),
        };
        let control = dm::Control::with_ioctl(FakeKernel::with_status("V"));
        let (info, table) = setup(&control, &req).unwrap();
        assert_eq!(info.name, "root");
        assert_eq!(table.root_hash, f.root_hash);
        assert!(
            table.line().ends_with(" abcd 1 restart_on_corruption"),
            "{}",
            table.line()
        );
        let (targets, read_only) = control.ioctl_impl().live_table("root").unwrap();
        assert!(read_only);
        assert_eq!(targets, vec![table.target()]);

        // A wrong salt stops before any ioctl.
        let wrong = Expected {
            salt: Salt::none(),
            ..expected.clone()
        };
        let control = dm::Control::with_ioctl(FakeKernel::with_status("V"));
        let err = setup(
            &control,
            &Setup {
                expected: &wrong,
                ..req.clone()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("salt is abcd, expected -"),
            "{err}"
        );
        assert!(control.ioctl_impl().calls().is_empty());

        // So does a data device shorter than the tree says.
        let short = dir.path().join("short");
        std::fs::write(&short, vec![7u8; 63 * 4096]).unwrap();
        let err = setup(
            &control,
            &Setup {
                data_device: &short,
                ..req.clone()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("has 258048 bytes; 262144 are needed"),
            "{err}"
        );
        assert!(control.ioctl_impl().calls().is_empty());
    }

    #[test]
    fn status_rejects_odd_lines_and_missing_devices() {
        let control = dm::Control::with_ioctl(FakeKernel::with_status("?"));
        open(&control, "root", "", &table()).unwrap();
        assert!(matches!(
            status(&control, "root"),
            Err(DeviceError::Status { .. })
        ));
        assert!(matches!(status(&control, "other"), Err(DeviceError::Dm(_))));
        let failing = dm::Control::with_ioctl(FakeKernel::failing(Command::TableLoad));
        let err = open(&failing, "root", "", &table()).unwrap_err();
        assert!(err.to_string().contains("\"root\""), "{err}");
        assert!(failing.ioctl_impl().device_names().is_empty());
    }

    #[test]
    fn status_lines() {
        let table = [
            ("V", Some(Health::Verified)),
            ("C", Some(Health::Corrupted)),
            ("V -", Some(Health::Verified)),
            ("C 12", Some(Health::Corrupted)),
            ("", None),
            ("X", None),
            ("v", None),
        ];
        for (line, want) in table {
            assert_eq!(parse_status(line), want, "{line:?}");
        }
    }
}
