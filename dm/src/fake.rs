//! An in-memory stand-in for the kernel's device-mapper, for tests of code that drives
//! [`crate::Control`] (this crate's, and PID 1's). Enabled by the `fake` feature.
//!
//! It implements enough of create, load, resume, status and remove to check the order of
//! calls, their flags and the buffer handling: every call is recorded, one command can
//! be made to fail, and every target reports the same status line.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;

use rustix::io::Errno;

use crate::control::Ioctl;
use crate::wire::{
    self, Command, Target, DM_IOCTL_SIZE, FLAG_BUFFER_FULL, FLAG_READONLY, FLAG_SUSPEND,
    OFF_DATA_SIZE, OFF_DEV, OFF_FLAGS, OFF_TARGET_COUNT, TARGET_SPEC_SIZE,
};

/// What the fake kernel saw: command, device name, flags.
pub type Call = (Command, String, u32);

/// A table and whether it was loaded read-only.
pub type Table = (Vec<Target>, bool);

#[derive(Debug, Default)]
struct Dev {
    minor: u32,
    inactive: Option<Table>,
    live: Option<Table>,
}

/// The fake kernel.
#[derive(Debug, Default)]
pub struct FakeKernel {
    devices: RefCell<HashMap<String, Dev>>,
    calls: RefCell<Vec<Call>>,
    fail: Option<Command>,
    status_line: String,
}

fn put32(buf: &mut [u8], off: usize, v: u32) -> io::Result<()> {
    put(buf, off, &v.to_ne_bytes())
}

fn put(buf: &mut [u8], off: usize, src: &[u8]) -> io::Result<()> {
    buf.get_mut(off..off + src.len())
        .ok_or(io::ErrorKind::InvalidInput)?
        .copy_from_slice(src);
    Ok(())
}

impl FakeKernel {
    /// A kernel whose targets all report `line` as their status.
    pub fn with_status(line: &str) -> Self {
        Self {
            status_line: line.to_owned(),
            ..Self::default()
        }
    }

    /// A kernel that refuses `command` with EINVAL.
    pub fn failing(command: Command) -> Self {
        Self {
            fail: Some(command),
            ..Self::default()
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// The live table of `name`.
    pub fn live_table(&self, name: &str) -> Option<Table> {
        self.devices.borrow().get(name)?.live.clone()
    }

    /// Names of the existing devices.
    pub fn device_names(&self) -> Vec<String> {
        self.devices.borrow().keys().cloned().collect()
    }

    fn write_status(&self, buf: &mut [u8], targets: &[Target]) -> io::Result<bool> {
        let line = self.status_line.as_bytes();
        let spec = (TARGET_SPEC_SIZE + line.len() + 1).next_multiple_of(8);
        if DM_IOCTL_SIZE + targets.len() * spec > buf.len() {
            return Ok(false);
        }
        for (i, t) in targets.iter().enumerate() {
            let at = DM_IOCTL_SIZE + i * spec;
            put(buf, at, &t.start.to_ne_bytes())?;
            put(buf, at + 8, &t.length.to_ne_bytes())?;
            put32(buf, at + 20, ((i + 1) * spec) as u32)?;
            put(buf, at + 24, t.target_type.as_bytes())?;
            put(buf, at + TARGET_SPEC_SIZE, line)?;
            put(buf, at + TARGET_SPEC_SIZE + line.len(), &[0])?;
        }
        Ok(true)
    }
}

impl Ioctl for FakeKernel {
    fn ioctl(&self, command: Command, buf: &mut [u8]) -> io::Result<()> {
        let bad = |_| io::Error::from(io::ErrorKind::InvalidData);
        let req = wire::decode_header(buf).map_err(bad)?;
        if req.data_size as usize != buf.len() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        self.calls
            .borrow_mut()
            .push((command, req.name.clone(), req.flags));
        if self.fail == Some(command) {
            return Err(io::Error::from(Errno::INVAL));
        }
        let mut devices = self.devices.borrow_mut();
        let enxio = || io::Error::from(Errno::NXIO);
        let mut flags = 0;
        let mut minor = 0;
        match command {
            Command::Version => {}
            Command::DevCreate => {
                if devices.contains_key(&req.name) {
                    return Err(io::Error::from(Errno::BUSY));
                }
                minor = devices.len() as u32 + 3;
                let dev = Dev {
                    minor,
                    ..Dev::default()
                };
                devices.insert(req.name.clone(), dev);
            }
            Command::TableLoad => {
                let dev = devices.get_mut(&req.name).ok_or_else(enxio)?;
                // `next` is relative on load and absolute on status; they agree for the
                // first target, and only single-target loads are decoded here.
                if req.target_count != 1 {
                    return Err(io::Error::from(Errno::OPNOTSUPP));
                }
                let targets = wire::decode_targets(buf, &req).map_err(bad)?;
                dev.inactive = Some((targets, req.flags & FLAG_READONLY != 0));
                minor = dev.minor;
            }
            Command::DevSuspend => {
                let dev = devices.get_mut(&req.name).ok_or_else(enxio)?;
                if req.flags & FLAG_SUSPEND != 0 {
                    return Err(io::Error::from(Errno::OPNOTSUPP));
                }
                dev.live = Some(dev.inactive.take().ok_or_else(enxio)?);
                minor = dev.minor;
            }
            Command::DevStatus | Command::TableStatus => {
                let dev = devices.get(&req.name).ok_or_else(enxio)?;
                minor = dev.minor;
                let (targets, ro) = dev.live.as_ref().ok_or_else(enxio)?;
                if *ro {
                    flags |= FLAG_READONLY;
                }
                put32(buf, OFF_TARGET_COUNT, targets.len() as u32)?;
                if command == Command::TableStatus && !self.write_status(buf, targets)? {
                    flags |= FLAG_BUFFER_FULL;
                }
            }
            Command::DevRemove => {
                devices.remove(&req.name).ok_or_else(enxio)?;
            }
        }
        put32(buf, OFF_FLAGS, flags)?;
        let dev: u64 = rustix::fs::makedev(253, minor);
        put(buf, OFF_DEV, &dev.to_ne_bytes())?;
        let size = buf.len() as u32;
        put32(buf, OFF_DATA_SIZE, size)
    }
}
