//! Opening, inspecting and closing a dm-verity device through device-mapper ioctls.
//!
//! `open` runs create, load (read-only table, one verity target) and resume; `status`
//! reads the target's status back (`V` verified so far, `C` a corruption was seen);
//! `close` removes the device. Each takes the [`dm::Control`] to use so that callers
//! control where `/dev/mapper/control` is.

use crate::table::VerityTable;

/// A device-mapper step failed for a verity device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
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
pub fn open(
    control: &dm::Control,
    name: &str,
    uuid: &str,
    table: &VerityTable,
) -> Result<dm::DeviceInfo, DeviceError> {
    Ok(control.create_device(name, uuid, &[table.target()], true)?)
}

/// Reads the verdict of the verity device `name`.
pub fn status(control: &dm::Control, name: &str) -> Result<Status, DeviceError> {
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
pub fn close(control: &dm::Control, name: &str) -> Result<(), DeviceError> {
    Ok(control.remove(name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
