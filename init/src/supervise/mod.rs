//! PID 1 as containerd's supervisor (`liftoff.handoff=containerd`, DESIGN.md section 1).
//!
//! After switch_root PID 1 does not exec anything: it stays PID 1 and
//!
//! 1. starts the supervised program (containerd, [`Program::containerd`]) from the verified
//!    root and asks its socket for a real answer ([`crate::health`]) until it gets one; the
//!    first answer after each start is [`Action::HealthReached`], on which the caller marks
//!    the slot successful (and from which on the boot watchdog is petted);
//! 2. reaps every child that dies: orphans (containerd's shims, their containers) are
//!    re-parented to PID 1, and their zombies would pile up otherwise;
//! 3. restarts the program when it dies, after a back-off that starts at
//!    [`Policy::backoff_first`] and doubles up to [`Policy::backoff_max`]. A run that lasted
//!    [`Policy::stable_after`] resets the back-off; [`Policy::give_up_after`] deaths in a row
//!    that each came sooner than that end supervision with [`SuperviseError::GaveUp`], which
//!    the caller hands to the failure policy (log, reboot, and the crash-loop counter decides
//!    which slot boots next). A program that cannot be started counts as such a death;
//! 4. shuts the machine down on SIGTERM or SIGPWR (power off) and SIGINT (reboot: the
//!    kernel sends it for ctrl-alt-del once [`signals::disable_ctrl_alt_del`] ran):
//!    SIGTERM to the program, up to [`Policy::stop_timeout`] for it to exit; SIGTERM to every
//!    process, up to [`Policy::term_timeout`] for them to go; SIGKILL to every process, up
//!    to [`Policy::kill_timeout`] to reap them; sync; unmount the caller's mount points
//!    (DATA at /local and its binds) in reverse order; power off or reboot.
//!
//! The logic is a pure state machine, [`Machine`]: events in (a child exited with a status
//! at a time, a signal, a clock tick, a probe result), [`Action`]s out (spawn, probe, kill,
//! sync, unmount, power, log), and [`Machine::next_wake`] says when it next needs a tick.
//! Time is a [`Duration`](std::time::Duration) since an arbitrary origin that the caller supplies, so back-off,
//! give-up, reaping and the shutdown order are tested without root and without waiting.
//! [`run`](fn@run) is the small loop that feeds the machine from a [`System`]: the real one
//! ([`RealSystem`]) polls a signalfd with the machine's deadline as timeout, reaps with
//! `waitpid(-1, WNOHANG)` until nothing is left, and performs the actions.
//!
//! # Files
//!
//! - [`machine`]: the state machine and its inputs ([`Program`], [`Policy`], [`Config`]):
//!   restart, back-off, give-up and the shutdown order. No system calls, no clock.
//! - [`system`]: the [`System`] trait (spawn, reap, wait, kill, probe, power) and
//!   [`RealSystem`], which makes the system calls; [`signals`] is its signalfd.
//! - [`run`](mod@run): the loop that feeds the machine from a system and performs its actions, and
//!   [`supervise_as_pid1`], PID 1's containerd handoff in one call.

pub mod button;
pub mod machine;
pub mod run;
pub mod service;
pub mod signals;
pub mod system;

pub use machine::{
    Action, Config, Event, Exit, GaveUp, Kill, Machine, Policy, Power, Program, Signal,
    DEFAULT_PATH,
};
pub use run::{run, supervise_as_pid1, Health, SuperviseError, PROBE_TIMEOUT};
pub use service::{Ready, Service, SERVICES_DIR};
pub use system::{descendants, parent_from_stat, KillScope, RealSystem, Reaped, System};

#[cfg(test)]
mod tests;
