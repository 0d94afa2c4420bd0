//! The test probe: prints what the guest looks like as one JSON line and powers off.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use liftoff_probe::{liftoff_message, parse_mountinfo, parse_proc_modules, Report, MARKER};

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Liftoff's records from the kernel log buffer (non-blocking: stops at the end).
fn liftoff_log() -> Vec<String> {
    let Ok(mut kmsg) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open("/dev/kmsg")
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let record = String::from_utf8_lossy(&buf[..n]);
                if let Some(m) = liftoff_message(&record) {
                    out.push(m.to_owned());
                }
            }
            // EPIPE: a record was overwritten while reading; go on with the next one.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) => {}
            Err(_) => break,
        }
    }
    out
}

fn main() {
    let report = Report {
        pid: rustix::process::getpid().as_raw_nonzero().get(),
        argv: std::env::args().collect(),
        cmdline: read("/proc/cmdline").trim_end().to_owned(),
        mounts: parse_mountinfo(&read("/proc/self/mountinfo")),
        modules: parse_proc_modules(&read("/proc/modules")),
        liftoff_log: liftoff_log(),
    };
    let line = match serde_json::to_string(&report) {
        Ok(json) => format!("{MARKER}{json}\n"),
        Err(e) => format!("PROBE-ERROR: {e}\n"),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    if report.pid == 1 {
        rustix::fs::sync();
        let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
        // Powering off failed: exiting would panic the kernel, so wait.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
