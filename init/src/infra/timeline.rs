//! The boot timeline (DESIGN.md section 9): one machine-readable log line per stage,
//! `timeline stage=<name> boottime_us=<CLOCK_BOOTTIME in microseconds>`, so a boot can be
//! broken down from the kernel's start to the handoff with nothing but the kernel log.
//!
//! The clock is read through musl's `clock_gettime` ([`boottime`]): its one unsafe call.

#![allow(unsafe_code)]

use crate::infra::kmsg;

/// Reads CLOCK_BOOTTIME: the time since the kernel started, including suspend. Through
/// musl's `clock_gettime` (its vDSO lookup is linked already, for std's `Instant`), not
/// rustix's, whose own vDSO parser cost PID 1 1.6 KiB.
pub fn boottime() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives across the call.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0;
    if !ok {
        // Cannot happen on a kernel with CLOCK_BOOTTIME (Linux 2.6.39 and later); a zero
        // in the timeline would show it.
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// [`boottime`] in microseconds.
pub fn boottime_us() -> u64 {
    u64::try_from(boottime().as_micros()).unwrap_or(u64::MAX)
}

/// A duration for people: `250 ms`, `1.5 s`, `30 s` (integer arithmetic only, so PID 1
/// links no floating-point formatting).
pub fn duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{}.{} s", ms / 1000, ms % 1000 / 100)
    }
}

/// Formats one timeline message (without the kmsg prefix).
pub fn format_mark(stage: &str, boottime_us: u64) -> String {
    format!("timeline stage={stage} boottime_us={boottime_us}")
}

/// Logs that `stage` has been reached now.
pub fn mark(stage: &str) {
    mark_at(stage, boottime_us());
}

/// Logs that `stage` was reached at `boottime_us` (for marks taken before the kernel log
/// could be opened).
pub fn mark_at(stage: &str, boottime_us: u64) {
    kmsg::info(&format_mark(stage, boottime_us));
}

/// The `VmHWM` (peak resident set) of `/proc/self/status` text, in KiB.
pub fn peak_kib(status: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    rest.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Logs PID 1's peak memory so far (DESIGN.md section 9 asks for a cheap boot; the
/// benchmark reads this line).
pub fn log_peak_memory() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match peak_kib(&status) {
        Some(kib) => kmsg::info(&format!("memory: peak resident set {kib} KiB (VmHWM)")),
        None => kmsg::debug("memory: no VmHWM in /proc/self/status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock reads (a failed read would give zero) and does not go back.
    #[test]
    fn boottime_reads_and_moves_forward() {
        let first = boottime();
        assert!(first > std::time::Duration::ZERO);
        let second = boottime();
        assert!(second >= first);
        assert!(boottime_us() >= u64::try_from(second.as_micros()).unwrap());
    }

    #[test]
    fn peak_memory_from_proc_status() {
        let status = "Name:\tinit\nVmPeak:\t    5000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(peak_kib(status), Some(1234));
        assert_eq!(peak_kib("VmRSS:\t 1000 kB\n"), None);
        assert_eq!(peak_kib("VmHWM:\t lots kB\n"), None);
        assert_eq!(peak_kib("VmHWM:\t 12 MB\n"), None);
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        let cases = [
            (Duration::from_millis(0), "0 ms"),
            (Duration::from_millis(250), "250 ms"),
            (Duration::from_millis(1000), "1 s"),
            (Duration::from_millis(1549), "1.5 s"),
            (Duration::from_millis(30_000), "30 s"),
            (Duration::from_millis(30_050), "30.0 s"),
        ];
        for (d, want) in cases {
            assert_eq!(duration(d), want);
        }
    }

    #[test]
    fn mark_format() {
        assert_eq!(
            format_mark("modules", 1_234_567),
            "timeline stage=modules boottime_us=1234567"
        );
    }

    #[test]
    fn boottime_moves_forward() {
        let a = boottime_us();
        let b = boottime_us();
        assert!(a > 0 && b >= a);
    }
}
