//! The previous boot's failure, from pstore (DESIGN.md section 7), for the slots stage to
//! charge: pstore is mounted at `<sys>/fs/pstore` once the modules are loaded (efi-pstore
//! reads its EFI variables when it loads), its `dmesg-*` records are read as one text for
//! [`prairiedog::pstore::parse`], and erased ([`erase`]) only once the charge is on disk,
//! so a failure is charged once, and never lost to a cut before the GPT write.
//!
//! PID 1's own failure (a stage that failed and rebooted) is no panic: [`keep_pid1`] writes
//! it into the EFI variable [`prairiedog::pstore::PID1_VAR`] before the reboot, and
//! [`read_pid1`] reads it on the next boot for the history only (the A/B rules counted that
//! boot already). Without UEFI or efivarfs nothing is kept.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use prairiedog::pstore::{Cause, Failure, Record, Stage, PID1_VAR, VENDOR};
use prairiedog::Slot;

use crate::infra::kmsg;
use crate::stage::disk::Efi;

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

/// The efivarfs file of PID 1's failure record, mounting efivarfs if it is not yet; `None`
/// without UEFI or efivarfs.
fn pid1_var(sys: &Path) -> Option<PathBuf> {
    let efi = Efi {
        sys: sys.to_owned(),
    };
    let dir = efi.efivars().ok()?;
    Some(dir.join(format!("{PID1_VAR}-{VENDOR}")))
}

/// Keeps PID 1's failure of `stage` in `slot` for the next boot, in a non-volatile EFI
/// variable. Best effort, before a reboot: without a slot (the command line unread), UEFI
/// or efivarfs, or when the firmware refuses, nothing is kept (the last said in a line).
#[inline(never)]
pub fn keep_pid1(sys: &Path, slot: Option<Slot>, stage: &'static str, error: &str) {
    let (Some(slot), Some(var)) = (slot, pid1_var(sys)) else {
        return;
    };
    // A record the previous boot could not erase: this one replaces it.
    let _ = erase_var(&var);
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs());
    // Non-volatile, boot-service and runtime access (7, little-endian u32): the attributes,
    // then the value, in one write (efivarfs sets the variable in one call).
    let bytes = format!(
        "\x07\0\0\0{}",
        prairiedog::pstore::pid1_record(
            &Failure {
                slot,
                time,
                stage: Stage::Pid1(stage),
                cause: Cause::Pid1,
            },
            error
        )
    );
    // A new efivarfs file: created, never truncated.
    if let Err(e) = std::fs::write(&var, bytes) {
        kmsg::warn(&format!(
            "writing {}: {e}; the next boot will not know of this failure",
            var.display()
        ));
    }
}

/// The previous boot's PID 1 failure, if the variable holds one, for the history (logged):
/// the failure and the efivarfs file to erase once it is kept. A variable that does not parse
/// is erased.
#[inline(never)]
pub fn read_pid1(sys: &Path) -> Option<(Failure, PathBuf)> {
    let var = pid1_var(sys)?;
    let bytes = std::fs::read(&var).ok()?;
    match bytes.get(4..).and_then(prairiedog::pstore::parse_pid1) {
        Some((f, error)) => {
            kmsg::warn(&format!(
                "pstore: the previous boot of slot {} failed in PID 1 at stage {}: {error}; \
                 already counted by the A/B rules",
                f.slot,
                f.stage.as_str(),
            ));
            Some((f, var))
        }
        // Not a record of PID 1's: erased, unsaid.
        None => {
            let _ = erase_var(&var);
            None
        }
    }
}

/// Erases PID 1's failure record once the history holds it; trouble is said in a line.
pub fn forget_pid1(var: &Path) {
    if let Err(e) = erase_var(var) {
        kmsg::warn(&format!(
            "erasing {}: {e}; the next boot reads it again",
            var.display()
        ));
    }
}

/// Deletes an efivarfs file: a variable of a vendor the kernel does not know is immutable
/// until the flag is cleared.
fn erase_var(var: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(var)?;
    let flags = rustix::fs::ioctl_getflags(&file)?;
    rustix::fs::ioctl_setflags(&file, flags - rustix::fs::IFlags::IMMUTABLE)?;
    drop(file);
    std::fs::remove_file(var)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid1_failure_round_trips_through_a_variable() {
        let sys = tempfile::tempdir().unwrap();
        let efivars = sys.path().join(prairiedog::efi::EFIVARS);
        std::fs::create_dir_all(&efivars).unwrap();
        // Something in it: efivarfs counts as mounted.
        std::fs::write(efivars.join("SecureBoot-x"), [6, 0, 0, 0, 0]).unwrap();
        assert!(read_pid1(sys.path()).is_none());
        keep_pid1(sys.path(), Some(Slot::A), "verity", "bad hash");
        // A second failure replaces the first.
        keep_pid1(
            sys.path(),
            Some(Slot::B),
            "root",
            "mounting /dev/dm-0: EINVAL",
        );
        let (f, var) = read_pid1(sys.path()).unwrap();
        assert_eq!(var, efivars.join(format!("{PID1_VAR}-{VENDOR}")));
        let bytes = std::fs::read(&var).unwrap();
        assert_eq!(&bytes[..6], b"\x07\0\0\0B ");
        assert!(bytes.ends_with(b" root pid1 mounting /dev/dm-0: EINVAL"));
        assert_eq!(f.slot, Slot::B);
        assert_eq!(f.stage, Stage::Pid1("root"));
        assert_eq!(f.cause, Cause::Pid1);
        assert!(f.time.is_some());
        forget_pid1(&var);
        assert!(read_pid1(sys.path()).is_none());
        // No slot known: nothing kept.
        keep_pid1(sys.path(), None, "cmdline", "x");
        assert!(!var.exists());
        // Not a record: erased.
        std::fs::write(&var, b"\x07\0\0\0junk").unwrap();
        assert!(read_pid1(sys.path()).is_none());
        assert!(!var.exists());
        // No UEFI: nothing kept.
        let bios = tempfile::tempdir().unwrap();
        keep_pid1(bios.path(), Some(Slot::A), "verity", "x");
        assert!(read_pid1(bios.path()).is_none());
    }

    #[test]
    fn every_stage_of_pid1_is_a_history_word() {
        use crate::stage::Stage as S;
        let all = [
            S::ApiMounts,
            S::Cmdline,
            S::Modules,
            S::Disk,
            S::Slots,
            S::Verity,
            S::Root,
            S::SwitchRoot,
            S::Settings,
            S::Data,
            S::Caps,
            S::Host,
            S::Handoff,
        ];
        let names: Vec<_> = all.iter().map(|s| s.name()).collect();
        assert_eq!(names, prairiedog::pstore::PID1_STAGES);
    }
}
