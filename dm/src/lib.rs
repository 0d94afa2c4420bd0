//! Device-mapper control through the ioctls of `/dev/mapper/control`, without libdevmapper
//! and without udev.
//!
//! # Lifecycle of a device
//!
//! 1. [`Control::create`] (`DM_DEV_CREATE`) makes an empty mapped device with a name and
//!    an optional UUID; the kernel assigns the minor number and returns the `dev_t`.
//! 2. [`Control::load`] (`DM_TABLE_LOAD`) loads a table (one or more [`Target`]s) into the
//!    device's inactive slot, read-only if asked.
//! 3. [`Control::resume`] (`DM_DEV_SUSPEND` without the suspend flag) swaps the inactive
//!    table in: the device now serves I/O.
//! 4. [`Control::table_status`] (`DM_TABLE_STATUS`) reads each target's status line (a
//!    verity target answers `V` or `C`); [`Control::info`] (`DM_DEV_STATUS`) reads the
//!    header (open count, flags, dev_t).
//! 5. [`Control::remove`] (`DM_DEV_REMOVE`) deletes the device.
//!
//! [`Control::create_device`] runs steps 1-3 and removes the half-made device if a later
//! step fails.
//!
//! # Device nodes
//!
//! The kernel names a mapped block device `dm-<minor>` and registers the disk at the
//! first table load (since Linux 5.16; at create before). devtmpfs creates nodes
//! synchronously, so with devtmpfs on `/dev` (as in Liftoff's PID 1) `/dev/dm-<minor>`
//! exists when [`Control::create_device`] returns, without waiting for an event;
//! [`DeviceInfo::devnode`] returns that path, and [`DeviceInfo::major`] /
//! [`DeviceInfo::minor`] let a caller without devtmpfs `mknod` it instead. No
//! `/dev/mapper/<name>` link is made: that is udev's job.
//!
//! # Secrets
//!
//! Targets are generic: PID 1 also loads `crypt` tables, whose parameters hold the key.
//! Parameters are never logged or shown by `Debug`, buffers that held them are zeroed
//! after use, and table loads pass `DM_SECURE_DATA_FLAG` so the kernel wipes its copies.

mod control;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod wire;

pub use control::{Control, ControlFile, DeviceInfo, Error, Ioctl, CONTROL_PATH};
pub use wire::Target;
