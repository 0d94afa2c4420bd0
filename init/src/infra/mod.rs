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
