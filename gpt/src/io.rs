//! The small I/O surface the table code needs: positional reads and writes, a durability
//! barrier, and the size. Implemented for [`std::fs::File`] (block devices and image files)
//! and for [`crate::testing::MemDisk`].

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// Positional block I/O on a disk or disk image.
pub trait BlockIo {
    /// Fills `buf` from byte `offset`; a short read is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at byte `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Returns once everything written so far is durable (fdatasync; for a block device
    /// this also flushes the device's write cache).
    fn sync(&mut self) -> io::Result<()>;
    /// Size in bytes.
    fn size(&self) -> io::Result<u64>;
}

impl BlockIo for File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    /// Seeking to the end works for regular files and block devices alike (the kernel
    /// answers with the device size), so no ioctl is needed here.
    fn size(&self) -> io::Result<u64> {
        let mut f: &File = self;
        f.seek(SeekFrom::End(0))
    }
}

impl<T: BlockIo + ?Sized> BlockIo for &mut T {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }

    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
}
