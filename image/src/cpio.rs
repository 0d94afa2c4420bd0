//! The `newc` cpio format the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Each member is a 110-byte ASCII header (`070701` and thirteen 8-digit hex fields), the
//! NUL-terminated name padded to a multiple of 4, and the data padded to a multiple of 4.
//! The archive ends with a member named `TRAILER!!!`. Members are written in the order they
//! are added; directories must come before what they contain. Times are 0 and owners root,
//! so the same inputs always give the same bytes.

use std::io;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// A cpio archive being written to memory.
#[derive(Debug, Default)]
pub struct Archive {
    bytes: Vec<u8>,
    ino: u32,
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> io::Result<()> {
        self.member(name, S_IFDIR | mode, (0, 0), &[])
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.member(name, S_IFREG | mode, (0, 0), data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.member(name, S_IFLNK | 0o777, (0, 0), target.as_bytes())
    }

    /// A character device node with the given major and minor numbers.
    pub fn char_dev(&mut self, name: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.member(name, S_IFCHR | mode, (major, minor), &[])
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        self.member("TRAILER!!!", 0, (0, 0), &[])?;
        Ok(self.bytes)
    }

    fn member(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        if name.is_empty() || name.as_bytes().contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio member name {name:?} is empty or contains NUL"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio member {name} is larger than 4 GiB"),
            )
        })?;
        self.ino += 1;
        let nlink = if mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            // namesize includes the NUL.
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn header_layout() {
        let mut a = Archive::new();
        a.file("/init", 0o755, b"hi").unwrap();
        let bytes = a.finish().unwrap();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(
            header,
            "070701\
             00000001\
             000081ed\
             00000000\
             00000000\
             00000001\
             00000000\
             00000002\
             00000000\
             00000000\
             00000000\
             00000000\
             00000005\
             00000000"
        );
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..120], b"hi\0\0");
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn gnu_cpio_reads_it() {
        let mut a = Archive::new();
        a.dir("dev", 0o755).unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        a.dir("etc", 0o755).unwrap();
        a.file("etc/odd-size", 0o644, b"12345").unwrap();
        a.symlink("sbin", "bin").unwrap();
        let bytes = a.finish().unwrap();
        let dir = std::env::temp_dir().join(format!("liftoff-cpio-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.cpio");
        std::fs::write(&archive, &bytes).unwrap();
        let out = Command::new("cpio")
            .args(["-t", "-v", "-F"])
            .arg(&archive)
            .output()
            .expect("cpio (from scripts/setup) must be installed");
        assert!(out.status.success(), "{out:?}");
        let listing = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 5, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" dev"));
        assert!(lines[1].starts_with("crw-------") && lines[1].contains("5,"));
        assert!(lines[3].starts_with("-rw-r--r--") && lines[3].contains(" 5 "));
        assert!(lines[4].starts_with("lrwxrwxrwx") && lines[4].ends_with("sbin -> bin"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn same_input_same_bytes() {
        let build = || {
            let mut a = Archive::new();
            a.file("x", 0o644, b"data").unwrap();
            a.finish().unwrap()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn bad_names() {
        let mut a = Archive::new();
        assert!(a.file("/", 0o644, b"").is_err());
        assert!(a.file("a\0b", 0o644, b"").is_err());
    }
}
