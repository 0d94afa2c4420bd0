//! The block-device ioctls growpart needs: BLKSSZGET (logical sector size), BLKROGET
//! (read-only flag) and BLKPG with `BLKPG_RESIZE_PARTITION` (tell the kernel a partition's new length).
//!
//! BLKPG changes one partition of the in-kernel table and works while other partitions
//! (or this one) are mounted. BLKRRPART, which re-reads the whole table, fails with EBUSY
//! as soon as any partition of the disk is open and races udev; it is never used.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::fs::File;
use std::io;

use rustix::ioctl::{Getter, Opcode, Setter};

/// `_IO(0x12, 94)`, include/uapi/linux/fs.h.
const BLKROGET: Opcode = 0x125e;
/// `_IO(0x12, 105)`, include/uapi/linux/fs.h.
const BLKPG: Opcode = 0x1269;
/// include/uapi/linux/blkpg.h.
const BLKPG_ADD_PARTITION: c_int = 1;
/// include/uapi/linux/blkpg.h.
const BLKPG_RESIZE_PARTITION: c_int = 3;

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: c_int,
    flags: c_int,
    datalen: c_int,
    data: *mut c_void,
}

/// `struct blkpg_partition`.
#[repr(C)]
struct BlkpgPartition {
    /// Start in bytes.
    start: c_longlong,
    /// Length in bytes.
    length: c_longlong,
    pno: c_int,
    devname: [c_char; 64],
    volname: [c_char; 64],
}

/// Logical sector size of the block device `disk` (BLKSSZGET).
pub fn logical_sector_size(disk: &File) -> io::Result<u32> {
    Ok(rustix::fs::ioctl_blksszget(disk)?)
}

/// Whether the block device `disk` is read-only (BLKROGET).
pub fn is_read_only(disk: &File) -> io::Result<bool> {
    // SAFETY: BLKROGET is a getter that writes one `int` (include/uapi/linux/fs.h), the
    // output type given here; rustix passes a pointer to its own, live output slot.
    let ro = unsafe { rustix::ioctl::ioctl(disk, Getter::<BLKROGET, c_int>::new()) }?;
    Ok(ro != 0)
}

/// Tells the kernel that partition `pno` of the whole-disk device `disk` now spans
/// `length` bytes from byte `start` (the start must be the one the kernel has).
pub fn resize_partition(disk: &File, pno: u32, start: u64, length: u64) -> io::Result<()> {
    blkpg(disk, BLKPG_RESIZE_PARTITION, pno, start, length)
}

/// Tells the kernel about partition `pno` of `disk` (`length` bytes from byte `start`),
/// which it did not find when it read the table: PID 1 uses this after repairing a
/// damaged primary GPT that the kernel's own parser rejected.
pub fn add_partition(disk: &File, pno: u32, start: u64, length: u64) -> io::Result<()> {
    blkpg(disk, BLKPG_ADD_PARTITION, pno, start, length)
}

fn blkpg(disk: &File, op: c_int, pno: u32, start: u64, length: u64) -> io::Result<()> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    let mut part = BlkpgPartition {
        start: i64::try_from(start).map_err(|_| invalid("partition start overflows"))?,
        length: i64::try_from(length).map_err(|_| invalid("partition length overflows"))?,
        pno: c_int::try_from(pno).map_err(|_| invalid("partition number overflows"))?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: BLKPG reads a `struct blkpg_ioctl_arg` through the pointer (rustix's Setter
    // holds `arg` and passes its address), and through its `data` field `datalen` bytes of
    // a `struct blkpg_partition`. Both are #[repr(C)] copies of the uapi structs, live
    // until the call returns (`part` on this stack frame), and the kernel writes to
    // neither and keeps no pointer.
    unsafe { rustix::ioctl::ioctl(disk, Setter::<BLKPG, BlkpgIoctlArg>::new(arg)) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The struct layout the kernel expects on 64-bit targets (blkpg.h): 8+8+4+64+64 plus
    /// padding to 8, and 4+4+4(+4)+8 for the argument.
    #[test]
    fn uapi_layout() {
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
    }

    #[test]
    fn ioctls_on_a_regular_file_fail_cleanly() {
        let f = tempfile::tempfile().unwrap();
        assert!(logical_sector_size(&f).is_err());
        assert!(is_read_only(&f).is_err());
        assert!(resize_partition(&f, 1, 1 << 20, 1 << 20).is_err());
        assert_eq!(
            resize_partition(&f, 1, u64::MAX, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
