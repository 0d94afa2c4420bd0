//! The last resort: a panic hook that writes one line to the kernel log and reboots.
//!
//! Installed as the first statement of `main`. It opens `/dev/kmsg` itself rather than use
//! the logger, whose lock the panicking code may hold. A second panic (inside the hook)
//! only waits: the first one is already on its way to a reboot.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::infra::{failure, kmsg};

static ENTERED: AtomicBool = AtomicBool::new(false);

pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        if ENTERED.swap(true, Ordering::SeqCst) {
            failure::halt();
        }
        let record =
            kmsg::format_record(kmsg::Level::Err, &format!("panic: {info}; action: reboot"));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .and_then(|mut f| f.write_all(record.as_bytes()));
        if written.is_err() {
            // No /dev yet: the console is all there is.
            let _ = std::io::stderr().write_all(record.as_bytes());
        }
        failure::reboot();
    }));
}
