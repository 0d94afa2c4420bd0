//! An in-memory disk for tests, here and in the crates built on this one (prairiedog,
//! growpart): it can fail reads, fail syncs, and "lose power" after a number of writes,
//! optionally tearing the write that was cut.
//!
//! Power loss is modelled at the [`BlockIo`] call level: once the write budget is spent,
//! the cut write stores nothing (or, with [`MemDisk::tear_cut_write`], its first half) and
//! every later write or sync fails, so the bytes left in [`MemDisk::bytes`] are what a
//! machine would find after the reboot.

use std::io;

use crate::io::BlockIo;

/// A disk image held in memory, with fault injection.
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    data: Vec<u8>,
    writes_left: Option<usize>,
    tear: bool,
    cut: bool,
    fail_sync: bool,
    read_only: bool,
    writes: usize,
    syncs: usize,
}

impl MemDisk {
    /// A disk holding `data`.
    pub fn new(data: Vec<u8>) -> MemDisk {
        MemDisk {
            data,
            ..MemDisk::default()
        }
    }

    /// A zero-filled disk of `size` bytes.
    pub fn zeroed(size: usize) -> MemDisk {
        MemDisk::new(vec![0; size])
    }

    /// Lets `n` writes through; the next one is cut (power loss) and all later writes and
    /// syncs fail.
    pub fn cut_after_writes(&mut self, n: usize) {
        self.writes_left = Some(n);
    }

    /// The cut write stores the first half of its buffer instead of nothing.
    pub fn tear_cut_write(&mut self, tear: bool) {
        self.tear = tear;
    }

    /// Every sync fails (a device that reports a flush error).
    pub fn fail_syncs(&mut self, fail: bool) {
        self.fail_sync = fail;
    }

    /// Every write fails with `PermissionDenied`, like a read-only device.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// Whether the power was cut.
    pub fn was_cut(&self) -> bool {
        self.cut
    }

    /// Writes that reached the disk (a torn write counts).
    pub fn writes(&self) -> usize {
        self.writes
    }

    /// Syncs that succeeded.
    pub fn syncs(&self) -> usize {
        self.syncs
    }

    /// The current contents.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Takes the contents out.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    /// Grows (zero-filled) or truncates the disk, like `truncate -s`.
    pub fn resize(&mut self, size: usize) {
        self.data.resize(size, 0);
    }

    fn range(&self, offset: u64, len: usize) -> io::Result<std::ops::Range<usize>> {
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(len).ok_or_else(out_of_range)?;
        if end > self.data.len() {
            return Err(out_of_range());
        }
        Ok(start..end)
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "access beyond the end of the MemDisk",
    )
}

fn power_lost() -> io::Error {
    io::Error::other("MemDisk: power was cut")
}

impl BlockIo for MemDisk {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let r = self.range(offset, buf.len())?;
        let src = self.data.get(r).ok_or_else(out_of_range)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "MemDisk is read-only",
            ));
        }
        if self.cut {
            return Err(power_lost());
        }
        let r = self.range(offset, buf.len())?;
        let mut len = buf.len();
        if let Some(left) = self.writes_left.as_mut() {
            if *left == 0 {
                self.cut = true;
                if !self.tear {
                    return Err(power_lost());
                }
                len /= 2;
            } else {
                *left -= 1;
            }
        }
        let dst = self
            .data
            .get_mut(r.start..r.start + len)
            .ok_or_else(out_of_range)?;
        let src = buf.get(..len).ok_or_else(out_of_range)?;
        dst.copy_from_slice(src);
        self.writes += 1;
        if self.cut {
            return Err(power_lost());
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.cut {
            return Err(power_lost());
        }
        if self.fail_sync {
            return Err(io::Error::other("MemDisk: sync failed"));
        }
        self.syncs += 1;
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        u64::try_from(self.data.len()).map_err(|_| out_of_range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_and_tear() {
        for (tear, want) in [(false, [0u8; 4]), (true, [1, 1, 0, 0])] {
            let mut d = MemDisk::zeroed(8);
            d.cut_after_writes(1);
            d.tear_cut_write(tear);
            d.write_at(4, &[2; 4]).unwrap();
            assert!(d.write_at(0, &[1; 4]).is_err());
            assert!(d.was_cut());
            assert!(d.write_at(0, &[3; 4]).is_err());
            assert!(d.sync().is_err());
            assert_eq!(d.bytes().get(..4).unwrap(), &want);
            assert_eq!(d.bytes().get(4..).unwrap(), &[2; 4]);
        }
    }

    #[test]
    fn out_of_range_is_an_error() {
        let mut d = MemDisk::zeroed(8);
        let mut buf = [0u8; 4];
        assert!(d.read_at(6, &mut buf).is_err());
        assert!(d.write_at(u64::MAX, &buf).is_err());
        d.set_read_only(true);
        assert_eq!(
            d.write_at(0, &buf).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }
}
