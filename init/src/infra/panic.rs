//! The last resort: a panic hook that writes one line to the kernel log and reboots (in
//! PID 1; a forked child of it ends instead).
//!
//! Installed as the first statement of `main`. It opens `/dev/kmsg` itself rather than use
//! the logger, whose lock the panicking code may hold. A second panic (inside the hook)
//! only waits: the first one is already on its way to a reboot.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::infra::{failure, kmsg, process};

static ENTERED: AtomicBool = AtomicBool::new(false);

pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        if ENTERED.swap(true, Ordering::SeqCst) {
            failure::halt();
        }
        // A child of PID 1 (the module child, which also reads PRIVATE and opens DATA)
        // only ends: PID 1 sees it fail and does that work itself.
        let pid = std::process::id();
        let action = if pid == 1 {
            "reboot"
        } else {
            "this process ends"
        };
        let record = kmsg::format_record(
            kmsg::Level::Err,
            &format!("panic in pid {pid}: {info}; action: {action}"),
        );
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .and_then(|mut f| f.write_all(record.as_bytes()));
        if written.is_err() {
            // No /dev yet: the console is all there is.
            let _ = std::io::stderr().write_all(record.as_bytes());
        }
        if pid != 1 {
            process::end(101);
        }
        failure::reboot();
    }));
}
