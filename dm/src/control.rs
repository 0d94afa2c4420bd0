//! The effectful half: the control file and the ioctl calls themselves.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::wire::{
    self, Command, Header, Reply, Target, WireError, FLAG_BUFFER_FULL, FLAG_READONLY,
    FLAG_SECURE_DATA,
};

/// Where the device-mapper control node lives.
pub const CONTROL_PATH: &str = "/dev/mapper/control";

/// Reply buffer size for status queries; doubled while the kernel says it is too small.
const STATUS_BUFFER: usize = 16 * 1024;
const MAX_STATUS_BUFFER: usize = 4 << 20;

/// A device-mapper failure: which step, on which device, and why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control node could not be opened (no dm-mod, or no permission).
    #[error("opening {path}: {source}")]
    Open {
        /// The control node path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A request could not be encoded (bad name, UUID or target type).
    #[error("device {name:?}: {source}")]
    Encode {
        /// Device name.
        name: String,
        /// What was wrong.
        source: WireError,
    },
    /// The kernel refused an ioctl.
    #[error("{command:?} on device {name:?}: {source}")]
    Ioctl {
        /// The command.
        command: Command,
        /// Device name (empty for `DM_VERSION`).
        name: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// The kernel's reply could not be decoded.
    #[error("{command:?} on device {name:?}: bad reply: {source}")]
    Decode {
        /// The command.
        command: Command,
        /// Device name.
        name: String,
        /// What was wrong.
        source: WireError,
    },
    /// A status reply did not fit even the largest buffer.
    #[error("status of device {0:?} does not fit 4 MiB")]
    StatusTooLarge(String),
}

/// What the kernel reports about a mapped device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device name.
    pub name: String,
    /// Device UUID (empty if none).
    pub uuid: String,
    /// The device number, as glibc's `makedev` encodes it.
    pub dev: u64,
    /// Number of openers.
    pub open_count: i32,
    /// `DM_*_FLAG` bits (see [`crate::wire`]).
    pub flags: u32,
    /// Targets in the live table.
    pub target_count: u32,
}

impl DeviceInfo {
    fn from_reply(r: Reply) -> Self {
        Self {
            name: r.name,
            uuid: r.uuid,
            dev: r.dev,
            open_count: r.open_count,
            flags: r.flags,
            target_count: r.target_count,
        }
    }

    /// Major number (the kernel's encoding, decoded as glibc's `major` does).
    pub fn major(&self) -> u32 {
        rustix::fs::major(self.dev)
    }

    /// Minor number.
    pub fn minor(&self) -> u32 {
        rustix::fs::minor(self.dev)
    }

    /// `/dev/dm-<minor>`: the node devtmpfs makes for the device under `dev_root`
    /// (normally `/dev`).
    pub fn devnode(&self, dev_root: &Path) -> PathBuf {
        dev_root.join(format!("dm-{}", self.minor()))
    }

    /// Whether the live table is read-only.
    pub fn read_only(&self) -> bool {
        self.flags & FLAG_READONLY != 0
    }
}

/// Something that runs device-mapper ioctls: the control node, or a test double.
pub trait Ioctl {
    /// Runs `command` on `buf`: an encoded `struct dm_ioctl` (whose `data_size` is
    /// `buf.len()`) followed by the command's data; the reply is written in place.
    fn ioctl(&self, command: Command, buf: &mut [u8]) -> io::Result<()>;
}

/// The real control node, `/dev/mapper/control`.
#[derive(Debug)]
pub struct ControlFile {
    file: File,
}

impl Ioctl for ControlFile {
    fn ioctl(&self, command: Command, buf: &mut [u8]) -> io::Result<()> {
        if buf.len() < wire::DM_IOCTL_SIZE {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let request = DmRequest {
            opcode: command.request(),
            buf,
        };
        // SAFETY: `request.buf` is a live, exclusively borrowed allocation of `buf.len()`
        // bytes, at least sizeof(struct dm_ioctl), whose `data_size` field (set by
        // `wire::encode`) equals `buf.len()`; the kernel reads and writes at most
        // `data_size` bytes of it and keeps no reference after the call returns.
        unsafe { rustix::ioctl::ioctl(&self.file, request) }?;
        Ok(())
    }
}

/// One device-mapper ioctl: `_IOWR(0xfd, cmd, struct dm_ioctl)` on a buffer that is the
/// header followed by the command's data. rustix's fixed-size patterns (`Updater`) do
/// not fit a variable-length buffer, hence this small implementation of its trait.
struct DmRequest<'a> {
    opcode: rustix::ioctl::Opcode,
    buf: &'a mut [u8],
}

// SAFETY: `as_ptr` points at the whole exclusively borrowed buffer, which outlives the
// request; `IS_MUTATING` is true because the kernel writes its reply into it, and the
// output is the ioctl's return value only (nothing is read back through the pointer here).
unsafe impl rustix::ioctl::Ioctl for DmRequest<'_> {
    type Output = ();

    const IS_MUTATING: bool = true;

    fn opcode(&self) -> rustix::ioctl::Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        self.buf.as_mut_ptr().cast()
    }

    unsafe fn output_from_ptr(
        _: rustix::ioctl::IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<()> {
        Ok(())
    }
}

/// A device-mapper control channel: [`ControlFile`] in production.
#[derive(Debug)]
pub struct Control<I = ControlFile> {
    io: I,
}

impl Control {
    /// Opens [`CONTROL_PATH`].
    pub fn open() -> Result<Self, Error> {
        Self::open_path(Path::new(CONTROL_PATH))
    }

    /// Opens a control node at another path (a test root, a chroot).
    pub fn open_path(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| Error::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            io: ControlFile { file },
        })
    }
}

impl<I: Ioctl> Control<I> {
    /// A control channel over another ioctl implementation (a test double).
    pub fn with_ioctl(io: I) -> Self {
        Self { io }
    }

    /// The ioctl implementation.
    pub fn ioctl_impl(&self) -> &I {
        &self.io
    }

    /// Runs one ioctl on `buf` and decodes the reply header.
    fn ioctl(&self, command: Command, name: &str, buf: &mut [u8]) -> Result<Reply, Error> {
        self.io.ioctl(command, buf).map_err(|source| Error::Ioctl {
            command,
            name: name.to_owned(),
            source,
        })?;
        wire::decode_header(buf).map_err(|source| Error::Decode {
            command,
            name: name.to_owned(),
            source,
        })
    }

    fn simple(&self, command: Command, header: &Header<'_>, min: usize) -> Result<Reply, Error> {
        let mut buf = wire::encode(header, &[], min).map_err(|source| Error::Encode {
            name: header.name.to_owned(),
            source,
        })?;
        self.ioctl(command, header.name, &mut buf)
    }

    /// The kernel's device-mapper interface version (`DM_VERSION`).
    pub fn version(&self) -> Result<[u32; 3], Error> {
        Ok(self
            .simple(Command::Version, &Header::default(), 0)?
            .version)
    }

    /// Creates an empty device (`DM_DEV_CREATE`); `uuid` may be empty, `name` not.
    pub fn create(&self, name: &str, uuid: &str) -> Result<DeviceInfo, Error> {
        if name.is_empty() {
            return Err(Error::Encode {
                name: String::new(),
                source: WireError::Name(0),
            });
        }
        let header = Header {
            name,
            uuid,
            flags: 0,
        };
        self.simple(Command::DevCreate, &header, 0)
            .map(DeviceInfo::from_reply)
    }

    /// Loads `targets` as the device's inactive table (`DM_TABLE_LOAD`). The buffer that
    /// carried the parameters is zeroed afterwards and the kernel is asked to wipe its
    /// copies.
    pub fn load(&self, name: &str, targets: &[Target], read_only: bool) -> Result<(), Error> {
        let flags = FLAG_SECURE_DATA | if read_only { FLAG_READONLY } else { 0 };
        let header = Header {
            name,
            uuid: "",
            flags,
        };
        let mut buf = wire::encode(&header, targets, 0).map_err(|source| Error::Encode {
            name: name.to_owned(),
            source,
        })?;
        let result = self.ioctl(Command::TableLoad, name, &mut buf);
        wire::wipe(&mut buf);
        result.map(|_| ())
    }

    /// Makes the loaded table live (`DM_DEV_SUSPEND` without the suspend flag).
    pub fn resume(&self, name: &str) -> Result<DeviceInfo, Error> {
        let header = Header {
            name,
            uuid: "",
            flags: 0,
        };
        self.simple(Command::DevSuspend, &header, 0)
            .map(DeviceInfo::from_reply)
    }

    /// Reads the device's header (`DM_DEV_STATUS`).
    pub fn info(&self, name: &str) -> Result<DeviceInfo, Error> {
        let header = Header {
            name,
            uuid: "",
            flags: 0,
        };
        self.simple(Command::DevStatus, &header, 0)
            .map(DeviceInfo::from_reply)
    }

    /// Reads each live target's status line (`DM_TABLE_STATUS`, info form). Only status
    /// lines are read, never the table, so no key leaves the kernel here.
    pub fn table_status(&self, name: &str) -> Result<(DeviceInfo, Vec<Target>), Error> {
        let header = Header {
            name,
            uuid: "",
            flags: 0,
        };
        let mut size = STATUS_BUFFER;
        loop {
            let mut buf = wire::encode(&header, &[], size).map_err(|source| Error::Encode {
                name: name.to_owned(),
                source,
            })?;
            let reply = self.ioctl(Command::TableStatus, name, &mut buf)?;
            if reply.flags & FLAG_BUFFER_FULL == 0 {
                let targets =
                    wire::decode_targets(&buf, &reply).map_err(|source| Error::Decode {
                        command: Command::TableStatus,
                        name: name.to_owned(),
                        source,
                    })?;
                return Ok((DeviceInfo::from_reply(reply), targets));
            }
            size *= 2;
            if size > MAX_STATUS_BUFFER {
                return Err(Error::StatusTooLarge(name.to_owned()));
            }
        }
    }

    /// Removes the device (`DM_DEV_REMOVE`); fails with EBUSY while it is open.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let header = Header {
            name,
            uuid: "",
            flags: 0,
        };
        self.simple(Command::DevRemove, &header, 0).map(|_| ())
    }

    /// Creates `name`, loads `targets` and resumes it: a ready device. If loading or
    /// resuming fails the half-made device is removed again and the first error returned.
    pub fn create_device(
        &self,
        name: &str,
        uuid: &str,
        targets: &[Target],
        read_only: bool,
    ) -> Result<DeviceInfo, Error> {
        self.create(name, uuid)?;
        let ready = self
            .load(name, targets, read_only)
            .and_then(|()| self.resume(name));
        if ready.is_err() {
            // The original error is what the caller needs; a failing cleanup would only
            // hide it, and the device holds no table to leak.
            let _ = self.remove(name);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeKernel;

    fn verity_target() -> Target {
        Target {
            start: 0,
            length: 1952,
            target_type: "verity".into(),
            params: "1 /dev/vda3 /dev/vda4 4096 4096 244 1 sha256 00 -".into(),
        }
    }

    fn calls(c: &Control<FakeKernel>) -> Vec<Command> {
        c.ioctl_impl()
            .calls()
            .iter()
            .map(|(cmd, _, _)| *cmd)
            .collect()
    }

    #[test]
    fn create_device_creates_loads_read_only_and_resumes() {
        let c = Control::with_ioctl(FakeKernel::with_status("V"));
        let info = c
            .create_device("root", "LIFTOFF-1", &[verity_target()], true)
            .unwrap();
        assert_eq!((info.major(), info.minor()), (253, 3));
        assert_eq!(info.devnode(Path::new("/dev")), Path::new("/dev/dm-3"));
        assert_eq!(
            calls(&c),
            [Command::DevCreate, Command::TableLoad, Command::DevSuspend]
        );
        let load_flags = c.ioctl_impl().calls()[1].2;
        assert_eq!(load_flags, FLAG_READONLY | FLAG_SECURE_DATA);
        let live = c.ioctl_impl().live_table("root").unwrap();
        assert_eq!(live, (vec![verity_target()], true));

        let (info, status) = c.table_status("root").unwrap();
        assert!(info.read_only());
        assert_eq!(status.len(), 1);
        assert_eq!(
            (status[0].target_type.as_str(), status[0].params.as_str()),
            ("verity", "V")
        );
        c.remove("root").unwrap();
        assert!(c.info("root").is_err());
    }

    #[test]
    fn a_failed_load_or_resume_removes_the_half_made_device() {
        for fail in [Command::TableLoad, Command::DevSuspend] {
            let c = Control::with_ioctl(FakeKernel::failing(fail));
            let err = c
                .create_device("root", "", &[verity_target()], true)
                .unwrap_err();
            assert!(
                matches!(err, Error::Ioctl { command, .. } if command == fail),
                "{err}"
            );
            assert!(err.to_string().contains("\"root\""), "{err}");
            assert_eq!(calls(&c).last(), Some(&Command::DevRemove));
            assert!(c.ioctl_impl().device_names().is_empty());
        }
        // A failed create leaves nothing to remove.
        let c = Control::with_ioctl(FakeKernel::failing(Command::DevCreate));
        assert!(c
            .create_device("root", "", &[verity_target()], true)
            .is_err());
        assert_eq!(calls(&c), [Command::DevCreate]);
    }

    #[test]
    fn table_status_retries_with_a_larger_buffer() {
        let c = Control::with_ioctl(FakeKernel::with_status(&"x".repeat(20000)));
        c.create_device("big", "", &[verity_target()], false)
            .unwrap();
        let (_, status) = c.table_status("big").unwrap();
        assert_eq!(status[0].params.len(), 20000);
        let statuses = calls(&c)
            .iter()
            .filter(|&&c| c == Command::TableStatus)
            .count();
        assert_eq!(statuses, 2, "16 KiB, then 32 KiB");
    }

    #[test]
    fn errors_name_the_device_but_never_the_parameters() {
        let c = Control::with_ioctl(FakeKernel::failing(Command::TableLoad));
        let secret = Target {
            params: "aes-xts-plain64 SECRETKEY 0 /dev/vda9 0".into(),
            target_type: "crypt".into(),
            ..verity_target()
        };
        let err = c.create_device("data", "", &[secret], false).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains("data") && !shown.contains("SECRETKEY"),
            "{shown}"
        );
        assert!(c.create("", "").is_err(), "empty names are refused");
        assert!(matches!(
            c.create(&"n".repeat(128), ""),
            Err(Error::Encode {
                source: WireError::Name(128),
                ..
            })
        ));
    }

    #[test]
    fn devnode_and_numbers_come_from_the_dev_field() {
        // 253:3 and 259:300 in the kernel's huge encoding (minor above 255 splits).
        let mk = |dev| DeviceInfo {
            name: "root".into(),
            uuid: String::new(),
            dev,
            open_count: 0,
            flags: FLAG_READONLY,
            target_count: 1,
        };
        let small = mk((253 << 8) | 3);
        assert_eq!((small.major(), small.minor()), (253, 3));
        assert_eq!(small.devnode(Path::new("/dev")), Path::new("/dev/dm-3"));
        assert!(small.read_only());
        let big = mk((300 & 0xff) | (259 << 8) | ((300 & !0xff) << 12));
        assert_eq!((big.major(), big.minor()), (259, 300));
    }

    #[test]
    fn opening_a_missing_control_node_names_it() {
        let err = Control::open_path(Path::new("/nonexistent/control")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/control"), "{err}");
    }

    /// The real ioctl path, on a node that is not device-mapper's: the kernel's ENOTTY
    /// comes back as the error of the command that was sent.
    #[test]
    fn the_real_ioctl_reports_the_kernels_error() {
        let control = Control::open_path(Path::new("/dev/null")).unwrap();
        match control.version().unwrap_err() {
            Error::Ioctl {
                command: Command::Version,
                source,
                ..
            } => assert_eq!(source.raw_os_error(), Some(25), "{source}"), // ENOTTY
            e => panic!("unexpected {e:?}"),
        }
    }
}
