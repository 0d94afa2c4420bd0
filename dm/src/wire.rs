//! The ioctl buffer of `/dev/mapper/control`, encoded and decoded as plain bytes.
//!
//! Every device-mapper ioctl passes one buffer that starts with `struct dm_ioctl`
//! (include/uapi/linux/dm-ioctl.h) and continues with command data at `data_start`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 12 | `version[3]` (u32 each) |
//! | 12 | 4 | `data_size`: the whole buffer |
//! | 16 | 4 | `data_start`: offset of the command data |
//! | 20 | 4 | `target_count` |
//! | 24 | 4 | `open_count` (i32) |
//! | 28 | 4 | `flags` |
//! | 32 | 4 | `event_nr` |
//! | 36 | 4 | padding |
//! | 40 | 8 | `dev` (the kernel's huge-encoded dev_t) |
//! | 48 | 128 | `name`, NUL-terminated |
//! | 176 | 129 | `uuid`, NUL-terminated |
//! | 305 | 7 | `data[7]` padding; sizeof is 312 |
//!
//! A table (`DM_TABLE_LOAD` in, `DM_TABLE_STATUS` out) is a list of `struct dm_target_spec`
//! (40 bytes: `sector_start` u64, `length` u64, `status` i32, `next` u32, `target_type[16]`),
//! each followed by its NUL-terminated parameter string and padded to 8 bytes. On load,
//! `next` is the distance from this spec to the next; on status it is the offset of the next
//! spec from the start of the data area. Integers are native-endian (both supported
//! architectures are little-endian).

/// `sizeof(struct dm_ioctl)`.
pub const DM_IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
pub const TARGET_SPEC_SIZE: usize = 40;
/// `DM_NAME_LEN`: the name field, including its NUL.
pub const NAME_LEN: usize = 128;
/// `DM_UUID_LEN`: the uuid field, including its NUL.
pub const UUID_LEN: usize = 129;
/// `DM_MAX_TYPE_NAME`: the target type field, including its NUL.
pub const TYPE_NAME_LEN: usize = 16;

/// Interface version this crate speaks (the kernel accepts any 4.x with x at most its own).
pub const VERSION: [u32; 3] = [4, 0, 0];

pub(crate) const OFF_DATA_SIZE: usize = 12;
pub(crate) const OFF_DATA_START: usize = 16;
pub(crate) const OFF_TARGET_COUNT: usize = 20;
pub(crate) const OFF_OPEN_COUNT: usize = 24;
pub(crate) const OFF_FLAGS: usize = 28;
pub(crate) const OFF_EVENT_NR: usize = 32;
pub(crate) const OFF_DEV: usize = 40;
pub(crate) const OFF_NAME: usize = 48;
pub(crate) const OFF_UUID: usize = 176;

/// `DM_READONLY_FLAG`: the device (table) is read-only.
pub const FLAG_READONLY: u32 = 1 << 0;
/// `DM_SUSPEND_FLAG`: with `DM_DEV_SUSPEND`, suspend (without it: resume).
pub const FLAG_SUSPEND: u32 = 1 << 1;
/// `DM_STATUS_TABLE_FLAG`: `DM_TABLE_STATUS` returns the table instead of the status.
pub const FLAG_STATUS_TABLE: u32 = 1 << 4;
/// `DM_ACTIVE_PRESENT_FLAG`: the device has a live table.
pub const FLAG_ACTIVE_PRESENT: u32 = 1 << 5;
/// `DM_INACTIVE_PRESENT_FLAG`: a loaded table waits for resume.
pub const FLAG_INACTIVE_PRESENT: u32 = 1 << 6;
/// `DM_BUFFER_FULL_FLAG`: the output did not fit; retry with a larger buffer.
pub const FLAG_BUFFER_FULL: u32 = 1 << 8;
/// `DM_SECURE_DATA_FLAG`: the kernel wipes its copies of the buffer (tables with keys).
pub const FLAG_SECURE_DATA: u32 = 1 << 15;

/// The device-mapper ioctl commands used here (`DM_*_CMD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    /// `DM_VERSION`
    Version = 0,
    /// `DM_DEV_CREATE`
    DevCreate = 3,
    /// `DM_DEV_REMOVE`
    DevRemove = 4,
    /// `DM_DEV_SUSPEND` (also resume)
    DevSuspend = 6,
    /// `DM_DEV_STATUS`
    DevStatus = 7,
    /// `DM_TABLE_LOAD`
    TableLoad = 9,
    /// `DM_TABLE_STATUS`
    TableStatus = 12,
}

impl Command {
    /// The ioctl request number: `_IOWR(0xfd, cmd, struct dm_ioctl)` (same encoding on
    /// x86_64 and aarch64: direction in bits 30-31, size in bits 16-29).
    pub fn request(self) -> u32 {
        const IOC_READ_WRITE: u32 = 3;
        (IOC_READ_WRITE << 30) | ((DM_IOCTL_SIZE as u32) << 16) | (0xfd << 8) | self as u32
    }
}

/// Why a buffer could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A device name that is too long, or contains `/` or NUL.
    #[error("device name of {0} bytes is longer than 127 bytes or has '/' or NUL")]
    Name(usize),
    /// A UUID that is too long or contains NUL.
    #[error("device UUID of {0} bytes is longer than 128 bytes or has NUL")]
    Uuid(usize),
    /// A target type that is empty, too long or has NUL.
    #[error("target type {0:?} is empty, longer than 15 bytes or has NUL")]
    TargetType(String),
    /// Target parameters that contain NUL (their content is never shown).
    #[error("target parameters contain a NUL byte")]
    Params,
    /// The buffer would exceed 4 GiB.
    #[error("ioctl buffer too large")]
    TooLarge,
    /// The kernel's reply is shorter than its header says or than a field needs.
    #[error("reply is truncated or malformed at byte {0}")]
    Malformed(usize),
}

/// One target of a table: a range of the device and the driver that serves it.
///
/// `Debug` never shows `params`: a `crypt` target's parameters hold its key.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// First sector (512 bytes) of the range.
    pub start: u64,
    /// Length in sectors.
    pub length: u64,
    /// Target type, such as `verity` or `crypt`.
    pub target_type: String,
    /// The target's parameter string.
    pub params: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("start", &self.start)
            .field("length", &self.length)
            .field("target_type", &self.target_type)
            .field(
                "params",
                &format_args!("<{} bytes hidden>", self.params.len()),
            )
            .finish()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        wipe_string(&mut self.params);
    }
}

/// Overwrites a string's bytes with zeros before it is freed (best effort against keys
/// lingering in freed memory).
pub(crate) fn wipe_string(s: &mut String) {
    let mut bytes = std::mem::take(s).into_bytes();
    wipe(&mut bytes);
}

/// Overwrites bytes with zeros in a way the optimiser keeps.
pub(crate) fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    // `black_box` makes the zeros observable, so the stores are not optimised away.
    std::hint::black_box(bytes);
}

/// The header fields the caller sets for a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header<'a> {
    /// Device name (empty for `DM_VERSION`).
    pub name: &'a str,
    /// Device UUID (only for `DM_DEV_CREATE`; empty for none).
    pub uuid: &'a str,
    /// `DM_*_FLAG` bits.
    pub flags: u32,
}

fn put(buf: &mut [u8], off: usize, src: &[u8]) -> Result<(), WireError> {
    buf.get_mut(off..off + src.len())
        .ok_or(WireError::TooLarge)?
        .copy_from_slice(src);
    Ok(())
}

fn get<const N: usize>(buf: &[u8], off: usize) -> Result<[u8; N], WireError> {
    let mut out = [0u8; N];
    out.copy_from_slice(buf.get(off..off + N).ok_or(WireError::Malformed(off))?);
    Ok(out)
}

fn check_name(name: &str) -> Result<(), WireError> {
    if name.len() >= NAME_LEN || name.contains(['/', '\0']) {
        return Err(WireError::Name(name.len()));
    }
    Ok(())
}

/// Encodes a request: the header, then (for `DM_TABLE_LOAD`) the targets, in a buffer of
/// at least `min_size` bytes (room for the reply).
pub fn encode(
    header: &Header<'_>,
    targets: &[Target],
    min_size: usize,
) -> Result<Vec<u8>, WireError> {
    check_name(header.name)?;
    if header.uuid.len() >= UUID_LEN || header.uuid.contains('\0') {
        return Err(WireError::Uuid(header.uuid.len()));
    }
    let mut body = Vec::new();
    for t in targets {
        if t.target_type.is_empty()
            || t.target_type.len() >= TYPE_NAME_LEN
            || t.target_type.contains('\0')
        {
            return Err(WireError::TargetType(t.target_type.clone()));
        }
        if t.params.contains('\0') {
            return Err(WireError::Params);
        }
        let spec_len = (TARGET_SPEC_SIZE + t.params.len() + 1).next_multiple_of(8);
        let start = body.len();
        body.resize(start + spec_len, 0);
        let next = u32::try_from(spec_len).map_err(|_| WireError::TooLarge)?;
        put(&mut body, start, &t.start.to_ne_bytes())?;
        put(&mut body, start + 8, &t.length.to_ne_bytes())?;
        put(&mut body, start + 20, &next.to_ne_bytes())?;
        put(&mut body, start + 24, t.target_type.as_bytes())?;
        put(&mut body, start + TARGET_SPEC_SIZE, t.params.as_bytes())?;
    }
    let size = (DM_IOCTL_SIZE + body.len()).max(min_size);
    let mut buf = vec![0u8; size];
    for (i, v) in VERSION.iter().enumerate() {
        put(&mut buf, i * 4, &v.to_ne_bytes())?;
    }
    let data_size = u32::try_from(size).map_err(|_| WireError::TooLarge)?;
    let count = u32::try_from(targets.len()).map_err(|_| WireError::TooLarge)?;
    put(&mut buf, OFF_DATA_SIZE, &data_size.to_ne_bytes())?;
    put(
        &mut buf,
        OFF_DATA_START,
        &(DM_IOCTL_SIZE as u32).to_ne_bytes(),
    )?;
    put(&mut buf, OFF_TARGET_COUNT, &count.to_ne_bytes())?;
    put(&mut buf, OFF_FLAGS, &header.flags.to_ne_bytes())?;
    put(&mut buf, OFF_NAME, header.name.as_bytes())?;
    put(&mut buf, OFF_UUID, header.uuid.as_bytes())?;
    put(&mut buf, DM_IOCTL_SIZE, &body)?;
    wipe(&mut body);
    Ok(buf)
}

/// The header of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Interface version the kernel speaks.
    pub version: [u32; 3],
    /// Size of the valid data the kernel returned.
    pub data_size: u32,
    /// Offset of the command data.
    pub data_start: u32,
    /// Number of targets in the returned table or status.
    pub target_count: u32,
    /// Number of openers of the device.
    pub open_count: i32,
    /// `DM_*_FLAG` bits.
    pub flags: u32,
    /// Event counter.
    pub event_nr: u32,
    /// The device number in the kernel's "huge" encoding (same as glibc's `makedev`).
    pub dev: u64,
    /// Device name.
    pub name: String,
    /// Device UUID (empty if none).
    pub uuid: String,
}

fn c_string(buf: &[u8], off: usize, len: usize) -> Result<String, WireError> {
    let field = buf.get(off..off + len).ok_or(WireError::Malformed(off))?;
    let end = field.iter().position(|&b| b == 0).unwrap_or(len);
    Ok(String::from_utf8_lossy(field.get(..end).unwrap_or_default()).into_owned())
}

/// Decodes the header of a reply buffer.
pub fn decode_header(buf: &[u8]) -> Result<Reply, WireError> {
    if buf.len() < DM_IOCTL_SIZE {
        return Err(WireError::Malformed(buf.len()));
    }
    let u32_at = |off| get::<4>(buf, off).map(u32::from_ne_bytes);
    Ok(Reply {
        version: [u32_at(0)?, u32_at(4)?, u32_at(8)?],
        data_size: u32_at(OFF_DATA_SIZE)?,
        data_start: u32_at(OFF_DATA_START)?,
        target_count: u32_at(OFF_TARGET_COUNT)?,
        open_count: i32::from_ne_bytes(get(buf, OFF_OPEN_COUNT)?),
        flags: u32_at(OFF_FLAGS)?,
        event_nr: u32_at(OFF_EVENT_NR)?,
        dev: u64::from_ne_bytes(get(buf, OFF_DEV)?),
        name: c_string(buf, OFF_NAME, NAME_LEN)?,
        uuid: c_string(buf, OFF_UUID, UUID_LEN)?,
    })
}

/// Decodes the targets of a `DM_TABLE_STATUS` reply (status or table lines).
pub fn decode_targets(buf: &[u8], reply: &Reply) -> Result<Vec<Target>, WireError> {
    let start = reply.data_start as usize;
    let end = (reply.data_size as usize).min(buf.len());
    let data = buf.get(start..end).ok_or(WireError::Malformed(start))?;
    let mut targets = Vec::new();
    let mut off = 0usize;
    for _ in 0..reply.target_count {
        let sector_start = u64::from_ne_bytes(get(data, off)?);
        let length = u64::from_ne_bytes(get(data, off + 8)?);
        let next = u32::from_ne_bytes(get(data, off + 20)?) as usize;
        let target_type = c_string(data, off + 24, TYPE_NAME_LEN)?;
        let params_start = off + TARGET_SPEC_SIZE;
        let rest = data
            .get(params_start..)
            .ok_or(WireError::Malformed(start + params_start))?;
        let params_len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::Malformed(start + params_start))?;
        let params =
            String::from_utf8_lossy(rest.get(..params_len).unwrap_or_default()).into_owned();
        targets.push(Target {
            start: sector_start,
            length,
            target_type,
            params,
        });
        // `next` counts from the start of the data area; it must move forward.
        if next <= off {
            if targets.len() as u32 == reply.target_count {
                break;
            }
            return Err(WireError::Malformed(start + off + 20));
        }
        off = next;
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles a C program against the kernel's own `<linux/dm-ioctl.h>` (linux-libc-dev)
    /// and compares every size, offset, flag and request number with ours.
    #[test]
    fn layout_matches_the_kernel_header() {
        let dir = std::env::temp_dir().join(format!("dm-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("layout.c");
        std::fs::write(
            &src,
            r#"#include <stdio.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <linux/dm-ioctl.h>
#define P(x) printf("%s %llu\n", #x, (unsigned long long)(x))
int main(void) {
  P(sizeof(struct dm_ioctl)); P(offsetof(struct dm_ioctl, data_size));
  P(offsetof(struct dm_ioctl, data_start)); P(offsetof(struct dm_ioctl, target_count));
  P(offsetof(struct dm_ioctl, open_count)); P(offsetof(struct dm_ioctl, flags));
  P(offsetof(struct dm_ioctl, event_nr)); P(offsetof(struct dm_ioctl, dev));
  P(offsetof(struct dm_ioctl, name)); P(offsetof(struct dm_ioctl, uuid));
  P(sizeof(struct dm_target_spec)); P(offsetof(struct dm_target_spec, next));
  P(offsetof(struct dm_target_spec, target_type)); P(DM_NAME_LEN); P(DM_UUID_LEN);
  P(DM_MAX_TYPE_NAME); P(DM_VERSION); P(DM_DEV_CREATE); P(DM_DEV_REMOVE);
  P(DM_DEV_SUSPEND); P(DM_DEV_STATUS); P(DM_TABLE_LOAD); P(DM_TABLE_STATUS);
  P(DM_READONLY_FLAG); P(DM_SUSPEND_FLAG); P(DM_STATUS_TABLE_FLAG);
  P(DM_ACTIVE_PRESENT_FLAG); P(DM_INACTIVE_PRESENT_FLAG); P(DM_BUFFER_FULL_FLAG);
  P(DM_SECURE_DATA_FLAG); P(DM_VERSION_MAJOR);
  return 0;
}
"#,
        )
        .unwrap();
        let exe = dir.join("layout");
        let out = std::process::Command::new("cc")
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("cc is needed (run scripts/setup)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = std::process::Command::new(&exe).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let kernel: std::collections::HashMap<&str, u64> = text
            .lines()
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        let ours: &[(&str, u64)] = &[
            ("sizeof(struct dm_ioctl)", DM_IOCTL_SIZE as u64),
            ("offsetof(struct dm_ioctl, data_size)", OFF_DATA_SIZE as u64),
            (
                "offsetof(struct dm_ioctl, data_start)",
                OFF_DATA_START as u64,
            ),
            (
                "offsetof(struct dm_ioctl, target_count)",
                OFF_TARGET_COUNT as u64,
            ),
            (
                "offsetof(struct dm_ioctl, open_count)",
                OFF_OPEN_COUNT as u64,
            ),
            ("offsetof(struct dm_ioctl, flags)", OFF_FLAGS as u64),
            ("offsetof(struct dm_ioctl, event_nr)", OFF_EVENT_NR as u64),
            ("offsetof(struct dm_ioctl, dev)", OFF_DEV as u64),
            ("offsetof(struct dm_ioctl, name)", OFF_NAME as u64),
            ("offsetof(struct dm_ioctl, uuid)", OFF_UUID as u64),
            ("sizeof(struct dm_target_spec)", TARGET_SPEC_SIZE as u64),
            ("offsetof(struct dm_target_spec, next)", 20),
            ("offsetof(struct dm_target_spec, target_type)", 24),
            ("DM_NAME_LEN", NAME_LEN as u64),
            ("DM_UUID_LEN", UUID_LEN as u64),
            ("DM_MAX_TYPE_NAME", TYPE_NAME_LEN as u64),
            ("DM_VERSION", Command::Version.request().into()),
            ("DM_DEV_CREATE", Command::DevCreate.request().into()),
            ("DM_DEV_REMOVE", Command::DevRemove.request().into()),
            ("DM_DEV_SUSPEND", Command::DevSuspend.request().into()),
            ("DM_DEV_STATUS", Command::DevStatus.request().into()),
            ("DM_TABLE_LOAD", Command::TableLoad.request().into()),
            ("DM_TABLE_STATUS", Command::TableStatus.request().into()),
            ("DM_READONLY_FLAG", FLAG_READONLY.into()),
            ("DM_SUSPEND_FLAG", FLAG_SUSPEND.into()),
            ("DM_STATUS_TABLE_FLAG", FLAG_STATUS_TABLE.into()),
            ("DM_ACTIVE_PRESENT_FLAG", FLAG_ACTIVE_PRESENT.into()),
            ("DM_INACTIVE_PRESENT_FLAG", FLAG_INACTIVE_PRESENT.into()),
            ("DM_BUFFER_FULL_FLAG", FLAG_BUFFER_FULL.into()),
            ("DM_SECURE_DATA_FLAG", FLAG_SECURE_DATA.into()),
            ("DM_VERSION_MAJOR", VERSION[0].into()),
        ];
        for (name, value) in ours {
            assert_eq!(kernel.get(name), Some(value), "{name}");
        }
        assert_eq!(kernel.len(), ours.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn target(ty: &str, params: &str, start: u64) -> Target {
        Target {
            start,
            length: 8,
            target_type: ty.into(),
            params: params.into(),
        }
    }

    #[test]
    fn encodes_a_table_load() {
        let header = Header {
            name: "root",
            uuid: "VERITY-1",
            flags: FLAG_READONLY,
        };
        let buf = encode(
            &header,
            &[target("verity", "abc", 0), target("linear", "8:0 0", 8)],
            0,
        )
        .unwrap();
        // 312 + (40 + 4 -> 48) + (40 + 6 -> 48)
        assert_eq!(buf.len(), 312 + 48 + 48);
        let r = decode_header(&buf).unwrap();
        assert_eq!(r.version, VERSION);
        assert_eq!(r.data_size, 408);
        assert_eq!(r.data_start, 312);
        assert_eq!(r.target_count, 2);
        assert_eq!(r.flags, FLAG_READONLY);
        assert_eq!((r.name.as_str(), r.uuid.as_str()), ("root", "VERITY-1"));
        let spec = &buf[312..];
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().unwrap()), 8);
        assert_eq!(u32::from_ne_bytes(spec[20..24].try_into().unwrap()), 48);
        assert_eq!(&spec[24..31], b"verity\0");
        assert_eq!(&spec[40..44], b"abc\0");
        assert_eq!(&spec[48 + 24..48 + 31], b"linear\0");
        assert_eq!(&spec[48 + 40..48 + 46], b"8:0 0\0");
    }

    #[test]
    fn min_size_leaves_room_for_the_reply() {
        let buf = encode(&Header::default(), &[], 16384).unwrap();
        assert_eq!(buf.len(), 16384);
        assert_eq!(decode_header(&buf).unwrap().data_size, 16384);
    }

    #[test]
    fn rejects_bad_names_and_targets() {
        let long = "a".repeat(128);
        let long_uuid = "u".repeat(129);
        let cases: Vec<(Header<'_>, Vec<Target>, WireError)> = vec![
            (
                Header {
                    name: &long,
                    ..Header::default()
                },
                vec![],
                WireError::Name(128),
            ),
            (
                Header {
                    name: "a/b",
                    ..Header::default()
                },
                vec![],
                WireError::Name(3),
            ),
            (
                Header {
                    name: "a",
                    uuid: &long_uuid,
                    flags: 0,
                },
                vec![],
                WireError::Uuid(129),
            ),
            (
                Header {
                    name: "a",
                    ..Header::default()
                },
                vec![target("a-very-long-target", "", 0)],
                WireError::TargetType("a-very-long-target".into()),
            ),
            (
                Header {
                    name: "a",
                    ..Header::default()
                },
                vec![target("crypt", "key\0", 0)],
                WireError::Params,
            ),
        ];
        for (h, t, err) in cases {
            assert_eq!(encode(&h, &t, 0), Err(err));
        }
        assert!(encode(
            &Header {
                name: &long[..127],
                ..Header::default()
            },
            &[],
            0
        )
        .is_ok());
    }

    /// A DM_TABLE_STATUS reply as the kernel lays it out: `next` counted from the start of
    /// the data area.
    fn status_reply(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = encode(
            &Header {
                name: "root",
                ..Header::default()
            },
            &[],
            0,
        )
        .unwrap();
        let mut data = Vec::new();
        for (i, (ty, params)) in entries.iter().enumerate() {
            let start = data.len();
            let len = (TARGET_SPEC_SIZE + params.len() + 1).next_multiple_of(8);
            data.resize(start + len, 0);
            data[start..start + 8].copy_from_slice(&(i as u64 * 100).to_ne_bytes());
            data[start + 8..start + 16].copy_from_slice(&100u64.to_ne_bytes());
            data[start + 20..start + 24].copy_from_slice(&((start + len) as u32).to_ne_bytes());
            data[start + 24..start + 24 + ty.len()].copy_from_slice(ty.as_bytes());
            data[start + 40..start + 40 + params.len()].copy_from_slice(params.as_bytes());
        }
        buf.extend_from_slice(&data);
        let size = buf.len() as u32;
        buf[OFF_DATA_SIZE..OFF_DATA_SIZE + 4].copy_from_slice(&size.to_ne_bytes());
        let n = entries.len() as u32;
        buf[OFF_TARGET_COUNT..OFF_TARGET_COUNT + 4].copy_from_slice(&n.to_ne_bytes());
        buf[OFF_DEV..OFF_DEV + 8].copy_from_slice(&((253u64 << 8) | 3).to_ne_bytes());
        buf
    }

    #[test]
    fn decodes_a_status_reply() {
        let buf = status_reply(&[("verity", "V"), ("linear", "")]);
        let r = decode_header(&buf).unwrap();
        assert_eq!(r.dev, (253 << 8) | 3);
        let t = decode_targets(&buf, &r).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].start, t[0].length, t[0].target_type.as_str()),
            (0, 100, "verity")
        );
        assert_eq!(t[0].params, "V");
        assert_eq!(
            (t[1].start, t[1].target_type.as_str(), t[1].params.as_str()),
            (100, "linear", "")
        );
    }

    #[test]
    fn rejects_malformed_replies() {
        assert_eq!(decode_header(&[0u8; 100]), Err(WireError::Malformed(100)));
        let good = status_reply(&[("verity", "C")]);
        // Claim two targets but provide one.
        let mut two = good.clone();
        two[OFF_TARGET_COUNT] = 2;
        let r = decode_header(&two).unwrap();
        assert!(decode_targets(&two, &r).is_err());
        // Parameters without their NUL.
        let mut cut = good.clone();
        cut.truncate(312 + 41);
        let mut r = decode_header(&cut).unwrap();
        r.data_size = cut.len() as u32;
        assert!(decode_targets(&cut, &r).is_err());
    }

    #[test]
    fn debug_hides_parameters() {
        let t = target("crypt", "aes-xts-plain64 0123456789abcdef 0 8:0 0", 0);
        let shown = format!("{t:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("crypt"));
    }
}
