//! What every stage and the supervisor stand on, and nothing boot-specific: logging to the
//! kernel log ([`kmsg`]), the boot timeline ([`timeline`]), the failure policy
//! ([`failure`]: one line, then the action the error's kind calls for), the last-resort
//! panic hook ([`panic`](mod@panic)), the boot watchdog ([`watchdog`]) and starting
//! programs ([`process`]).

pub mod failure;
pub mod kmsg;
pub mod panic;
pub mod process;
pub mod timeline;
pub mod watchdog;

/// `parts` joined with `sep`: what `[S]::join` does, in one small function for every
/// list of strings PID 1 prints. std's `join` is about 1.1 KiB of copying code for each
/// element type, and PID 1 joins `String`s and `&str`s in a dozen places.
pub fn join<S: AsRef<str>>(parts: &[S], sep: &str) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(part.as_ref());
    }
    out
}
