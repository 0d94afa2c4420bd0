//! The previous boot's failure, from pstore (DESIGN.md section 7), for the slots stage to
//! charge: pstore is mounted at `<sys>/fs/pstore` once the modules are loaded (efi-pstore
//! reads its EFI variables when it loads), its `dmesg-*` records are read as one text for
//! [`prairiedog::pstore::parse`], and erased ([`erase`]) only once the charge is on disk,
//! so a failure is charged once, and never lost to a cut before the GPT write.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use prairiedog::pstore::Record;

use crate::infra::kmsg;

/// At most this much of each record file is read (efi-pstore parts are 1 KiB, ramoops
/// records a few).
const MAX_PART: u64 = 64 * 1024;

/// The previous boot's record, if pstore has one.
#[derive(Debug)]
pub struct Found {
    pub record: Record,
    /// When it was written (seconds since the epoch), if pstore says.
    pub time: Option<u64>,
    /// Its files, erased once the charge is written.
    pub files: Vec<PathBuf>,
}

/// Mounts pstore under `sys` (if it is not yet) and reads the previous boot's record.
/// Trouble is logged and means no record: failure memory never fails a boot.
#[inline(never)]
pub fn read(sys: &Path) -> Option<Found> {
    let dir = sys.join("fs/pstore");
    use rustix::mount::MountFlags as F;
    let flags = F::NOSUID | F::NODEV | F::NOEXEC;
    if let Err(e) = rustix::mount::mount("pstore", &dir, "pstore", flags, None) {
        // BUSY: mounted already. NOENT, NODEV: a kernel without pstore, nothing to read.
        if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NODEV {
            return None;
        }
        if e != rustix::io::Errno::BUSY {
            kmsg::warn(&format!(
                "mounting pstore at {}: {e}; the previous boot's failure is not charged",
                dir.display()
            ));
            return None;
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            e.file_name()
                .to_str()?
                .starts_with("dmesg-")
                .then(|| e.path())
        })
        .collect();
    // efi-pstore numbers the parts of one dump from the end of the log (Part1 is the
    // newest): read the oldest first, so the text runs as the log did.
    files.sort_by(|a, b| b.cmp(a));
    let mut text = Vec::new();
    let mut time = None;
    for f in &files {
        let Ok(file) = std::fs::File::open(f) else {
            continue;
        };
        if let Ok(t) = file.metadata().and_then(|m| m.modified()) {
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            time = time.max(Some(secs));
        }
        let _ = file.take(MAX_PART).read_to_end(&mut text);
        text.push(b'\n');
    }
    let Some(record) = prairiedog::pstore::parse(&text) else {
        if !files.is_empty() {
            kmsg::warn(&format!(
                "pstore in {} holds no panic or oops record: erased",
                dir.display()
            ));
            erase(&files);
        }
        return None;
    };
    Some(Found {
        record,
        time: time.filter(|t| *t > 0),
        files,
    })
}

/// Erases the record (efi-pstore deletes the EFI variables behind the files).
pub fn erase(files: &[PathBuf]) {
    for f in files {
        if let Err(e) = std::fs::remove_file(f) {
            kmsg::warn(&format!(
                "erasing {}: {e}; the next boot charges this failure again",
                f.display()
            ));
        }
    }
}
