//! Logging to the kernel log.
//!
//! Every record is formatted first and then written with one `write()` to `/dev/kmsg`, so
//! the kernel stores it as one line with our level: `<6>liftoff: message`. Before devtmpfs
//! is mounted there is no `/dev/kmsg`; records then go to standard error, which the kernel
//! connected to `/dev/console` for PID 1. Logging never fails the boot: a record that
//! cannot be written is dropped.
//!
//! The kernel rate-limits writes to `/dev/kmsg` (`printk_devkmsg=ratelimit`). PID 1 turns
//! that off while it runs ([`DevkmsgGuard`]) so that none of its lines are lost, and gives the
//! next stage the setting it found.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Longest message we hand to the kernel; longer ones are cut at a character boundary.
/// The kernel keeps about 1 KiB per record including its own prefix.
pub const MAX_MESSAGE: usize = 900;

/// Syslog levels as the kernel understands them in the `<N>` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// Formats one record: `<level>liftoff: message\n`.
///
/// Control characters (a newline would split the record) are replaced by spaces and the
/// message is cut at [`MAX_MESSAGE`] bytes.
pub fn format_record(level: Level, message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE) + 16);
    out.push('<');
    out.push(char::from(b'0' + level as u8));
    out.push_str(">liftoff: ");
    let mut used = 0;
    for c in message.chars() {
        let len = c.len_utf8();
        if used + len > MAX_MESSAGE {
            break;
        }
        used += len;
        out.push(if c.is_control() { ' ' } else { c });
    }
    out.push('\n');
    out
}

struct Sink {
    kmsg: Option<File>,
    debug: bool,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    kmsg: None,
    debug: false,
});

/// Opens `<root>/dev/kmsg` for all later records. Until this succeeds, records go to stderr.
pub fn open(root: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(root.join("dev/kmsg"))?;
    if let Ok(mut sink) = SINK.lock() {
        sink.kmsg = Some(file);
    }
    Ok(())
}

/// Enables or disables [`Level::Debug`] records (`liftoff.debug`).
pub fn set_debug(enabled: bool) {
    if let Ok(mut sink) = SINK.lock() {
        sink.debug = enabled;
    }
}

/// Whether [`Level::Debug`] records are written: callers skip building costly ones.
pub fn debug_enabled() -> bool {
    match SINK.lock() {
        Ok(sink) => sink.debug,
        Err(poisoned) => poisoned.into_inner().debug,
    }
}

/// Writes one record. Never fails and never panics.
pub fn log(level: Level, message: &str) {
    let mut sink = match SINK.lock() {
        Ok(sink) => sink,
        // A panic while logging poisoned the lock; the data is a file handle, still usable.
        Err(poisoned) => poisoned.into_inner(),
    };
    if level == Level::Debug && !sink.debug {
        return;
    }
    let record = format_record(level, message);
    let written = match sink.kmsg.as_mut() {
        Some(kmsg) => kmsg.write(record.as_bytes()).is_ok(),
        None => false,
    };
    if !written {
        // The console is the only other place a boot log can go; if that fails too the
        // record is lost, which must not stop the boot.
        let _ = std::io::stderr().write_all(record.as_bytes());
    }
}

pub fn error(message: &str) {
    log(Level::Err, message);
}

pub fn warn(message: &str) {
    log(Level::Warning, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Turns the kernel's `/dev/kmsg` rate limit off and restores the previous setting on
/// [`DevkmsgGuard::restore`].
#[derive(Debug)]
pub struct DevkmsgGuard {
    path: std::path::PathBuf,
    previous: Option<String>,
}

impl DevkmsgGuard {
    /// Writes `on` to `<root>/proc/sys/kernel/printk_devkmsg`. The sysctl is locked when the
    /// command line sets `printk.devkmsg=`; that choice is the administrator's and is kept.
    pub fn enable(root: &Path) -> Self {
        let path = root.join("proc/sys/kernel/printk_devkmsg");
        let previous = std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_owned());
        if previous.as_deref() != Some("on") && std::fs::write(&path, "on\n").is_err() {
            debug(&format!(
                "keeping printk_devkmsg={} (the command line locks it)",
                previous.as_deref().unwrap_or("?")
            ));
            return DevkmsgGuard {
                path,
                previous: None,
            };
        }
        DevkmsgGuard { path, previous }
    }

    /// Gives the next stage the rate-limit setting the kernel started with.
    pub fn restore(self) {
        if let Some(previous) = self.previous.filter(|p| p != "on") {
            // Restoring is a courtesy to the next stage; a failure leaves logging unlimited,
            // which loses nothing.
            let _ = std::fs::write(&self.path, format!("{previous}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_format() {
        let cases: &[(Level, &str, &str)] = &[
            (Level::Info, "hello", "<6>liftoff: hello\n"),
            (Level::Err, "stage x failed", "<3>liftoff: stage x failed\n"),
            (Level::Warning, "a\nb\tc", "<4>liftoff: a b c\n"),
            (Level::Debug, "", "<7>liftoff: \n"),
            (Level::Notice, "ünïcode", "<5>liftoff: ünïcode\n"),
        ];
        for (level, msg, want) in cases {
            assert_eq!(format_record(*level, msg), *want, "{msg:?}");
        }
    }

    #[test]
    fn long_records_are_cut_at_a_char_boundary() {
        let msg = "é".repeat(MAX_MESSAGE);
        let rec = format_record(Level::Info, &msg);
        let body = rec
            .strip_prefix("<6>liftoff: ")
            .and_then(|r| r.strip_suffix('\n'))
            .unwrap();
        assert_eq!(body.len(), MAX_MESSAGE);
        assert!(body.chars().all(|c| c == 'é'));
    }

    #[test]
    fn devkmsg_guard_sets_and_restores() {
        let dir = tempdir();
        let sysctl = dir.join("proc/sys/kernel");
        std::fs::create_dir_all(&sysctl).unwrap();
        let file = sysctl.join("printk_devkmsg");
        std::fs::write(&file, "ratelimit\n").unwrap();
        let guard = DevkmsgGuard::enable(&dir);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "on\n");
        guard.restore();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "ratelimit\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "liftoff-kmsg-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
