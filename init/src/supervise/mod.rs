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
//! Time is a [`Duration`] since an arbitrary origin that the caller supplies, so back-off,
//! give-up, reaping and the shutdown order are tested without root and without waiting.
//! [`run`] is the small loop that feeds the machine from a [`System`]: the real one
//! ([`RealSystem`]) polls a signalfd with the machine's deadline as timeout, reaps with
//! `waitpid(-1, WNOHANG)` until nothing is left, and performs the actions.

pub mod signals;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal as RustixSignal, WaitOptions};

use crate::health;
use crate::infra::kmsg::{self, Level};
use crate::infra::watchdog::Watchdog;
use signals::SignalFd;

/// The program PID 1 supervises: path, arguments and the complete environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub path: PathBuf,
    pub args: Vec<OsString>,
    /// The whole environment of the program; PID 1's own is not passed on.
    pub env: Vec<(OsString, OsString)>,
}

/// The default search path for the supervised program and what it runs.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Program {
    /// `/usr/bin/containerd` with its default configuration and socket.
    pub fn containerd() -> Self {
        Program {
            path: PathBuf::from("/usr/bin/containerd"),
            args: Vec::new(),
            env: vec![("PATH".into(), DEFAULT_PATH.into())],
        }
    }

    /// The file name, for log lines.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// Timings of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Delay before the first restart after a fast death.
    pub backoff_first: Duration,
    /// The delay doubles after each fast death up to this.
    pub backoff_max: Duration,
    /// A run at least this long is not a fast death and resets the back-off.
    pub stable_after: Duration,
    /// This many fast deaths in a row end supervision.
    pub give_up_after: u32,
    /// Time between health probes until the program answers.
    pub probe_every: Duration,
    /// Time the program gets to exit after SIGTERM at shutdown.
    pub stop_timeout: Duration,
    /// Time every other process gets to exit after SIGTERM at shutdown.
    pub term_timeout: Duration,
    /// Time to reap every process after SIGKILL at shutdown.
    pub kill_timeout: Duration,
    /// Pet the watchdog this often once health was reached (none: no watchdog).
    pub watchdog_pet: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            backoff_first: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            give_up_after: 5,
            probe_every: Duration::from_millis(100),
            stop_timeout: Duration::from_secs(10),
            term_timeout: Duration::from_secs(5),
            kill_timeout: Duration::from_secs(2),
            watchdog_pet: None,
        }
    }
}

/// Everything [`run`] needs besides the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub program: Program,
    pub policy: Policy,
    /// Mount points to unmount at shutdown, in the order they were mounted; unmounted in
    /// reverse.
    pub unmount: Vec<PathBuf>,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// The signals that shut the machine down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: power off.
    Term,
    /// SIGINT (ctrl-alt-del): reboot.
    Int,
    /// SIGPWR: power off.
    Pwr,
}

impl Signal {
    pub fn from_raw(signo: i32) -> Option<Self> {
        match signo {
            libc::SIGTERM => Some(Signal::Term),
            libc::SIGINT => Some(Signal::Int),
            libc::SIGPWR => Some(Signal::Pwr),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
            Signal::Pwr => "SIGPWR",
        }
    }

    /// What the signal asks for.
    pub fn power(self) -> Power {
        match self {
            Signal::Term | Signal::Pwr => Power::Off,
            Signal::Int => Power::Reboot,
        }
    }
}

/// The end of a clean shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Off,
    Reboot,
}

impl fmt::Display for Power {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Power::Off => "power off",
            Power::Reboot => "reboot",
        })
    }
}

/// The signals the supervisor sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    Term,
    Kill,
}

impl Kill {
    fn name(self) -> &'static str {
        match self {
            Kill::Term => "SIGTERM",
            Kill::Kill => "SIGKILL",
        }
    }
}

/// What happened; `at` is the time it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The clock moved (a wake-up). The first event of a run.
    Tick {
        at: Duration,
    },
    /// [`Action::Spawn`] started the program.
    Spawned {
        pid: i32,
        at: Duration,
    },
    /// [`Action::Spawn`] could not start the program.
    SpawnFailed {
        error: String,
        at: Duration,
    },
    /// A child was reaped.
    Exited {
        pid: i32,
        exit: Exit,
        at: Duration,
    },
    /// `waitpid` says no child is left.
    NoChildren {
        at: Duration,
    },
    Signal {
        signal: Signal,
        at: Duration,
    },
    /// [`Action::Probe`] got an answer: the version the program reported.
    Healthy {
        version: String,
        at: Duration,
    },
    /// [`Action::Probe`] got no valid answer.
    Unhealthy {
        error: String,
        at: Duration,
    },
}

/// What the machine asks for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the program; answer with [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn,
    /// Ask the program's socket; answer with [`Event::Healthy`] or [`Event::Unhealthy`].
    Probe,
    /// The program answered for the first time since it was (re)started: mark the slot
    /// successful.
    HealthReached {
        version: String,
    },
    PetWatchdog,
    /// Signal one process.
    Kill {
        pid: i32,
        signal: Kill,
    },
    /// Signal every process (`kill(-1)`: all but PID 1 itself).
    KillAll {
        signal: Kill,
    },
    Sync,
    Unmount {
        path: PathBuf,
    },
    /// The last action of a clean shutdown.
    Power {
        power: Power,
    },
    /// The last action when the program keeps dying: the caller fails the boot.
    GiveUp {
        error: GaveUp,
    },
    Log {
        level: Level,
        message: String,
    },
}

/// The program died too fast too often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    pub program: PathBuf,
    pub deaths: u32,
    pub within: Duration,
    /// How the last run ended.
    pub last: String,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} died {} times in a row, each within {} of its start (last: {}); giving up",
            self.program.display(),
            self.deaths,
            secs(self.within),
            self.last
        )
    }
}

/// Where the shutdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// SIGTERM sent to the program; waiting for it.
    Program { pid: i32 },
    /// SIGTERM sent to everyone; waiting for no child to be left.
    TermAll,
    /// SIGKILL sent to everyone; waiting for no child to be left.
    KillAll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Back-off: the program starts at `until`.
    Waiting {
        until: Duration,
    },
    /// [`Action::Spawn`] was asked for.
    Spawning,
    Running {
        pid: i32,
        started: Duration,
        healthy: bool,
        next_probe: Duration,
    },
    Stopping {
        power: Power,
        phase: Phase,
        deadline: Duration,
    },
    Done,
}

/// The supervisor's state machine. Pure: no system calls, no clock.
#[derive(Debug, Clone)]
pub struct Machine {
    program: PathBuf,
    name: String,
    policy: Policy,
    unmount: Vec<PathBuf>,
    state: State,
    /// Deaths in a row that came sooner than `stable_after`.
    fast_deaths: u32,
    /// The next back-off delay.
    backoff: Duration,
    ever_healthy: bool,
    next_pet: Option<Duration>,
    /// The last probe error logged, to log each different one once.
    last_probe_error: Option<String>,
}

impl Machine {
    pub fn new(config: &Config) -> Self {
        Machine {
            program: config.program.path.clone(),
            name: config.program.name(),
            policy: config.policy,
            unmount: config.unmount.clone(),
            state: State::Waiting {
                until: Duration::ZERO,
            },
            fast_deaths: 0,
            backoff: config.policy.backoff_first,
            ever_healthy: false,
            next_pet: None,
            last_probe_error: None,
        }
    }

    /// The supervised program's pid while it runs.
    pub fn running_pid(&self) -> Option<i32> {
        match self.state {
            State::Running { pid, .. } => Some(pid),
            State::Stopping {
                phase: Phase::Program { pid },
                ..
            } => Some(pid),
            _ => None,
        }
    }

    /// Whether the machine has asked for its last action.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The latest time by which the machine wants an [`Event::Tick`]; `None`: only events.
    pub fn next_wake(&self) -> Option<Duration> {
        let own = match self.state {
            State::Waiting { until } => Some(until),
            State::Running {
                healthy: false,
                next_probe,
                ..
            } => Some(next_probe),
            State::Stopping { deadline, .. } => Some(deadline),
            State::Running { .. } | State::Spawning | State::Done => None,
        };
        let pet = if self.state == State::Done {
            None
        } else {
            self.next_pet
        };
        match (own, pet) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Feeds one event and returns the actions it calls for, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Done {
            return out;
        }
        match event {
            Event::Tick { at } => self.tick(at, &mut out),
            Event::Spawned { pid, at } => self.spawned(pid, at, &mut out),
            Event::SpawnFailed { error, at } => {
                if self.state == State::Spawning {
                    let last = format!("starting it failed: {error}");
                    out.push(log(
                        Level::Err,
                        format!("starting {}: {error}", self.program.display()),
                    ));
                    self.died(Duration::ZERO, last, at, &mut out);
                }
            }
            Event::Exited { pid, exit, at } => self.exited(pid, exit, at, &mut out),
            Event::NoChildren { at: _ } => {
                if let State::Stopping {
                    power,
                    phase: Phase::TermAll | Phase::KillAll,
                    ..
                } = self.state
                {
                    out.push(log(Level::Info, "shutdown: no process left".to_owned()));
                    self.finish(power, &mut out);
                }
            }
            Event::Signal { signal, at } => self.signal(signal, at, &mut out),
            Event::Healthy { version, at } => {
                if let State::Running {
                    pid,
                    started,
                    healthy: healthy @ false,
                    ..
                } = &mut self.state
                {
                    *healthy = true;
                    out.push(log(
                        Level::Info,
                        format!(
                            "{} (pid {pid}) is healthy {} after its start: version {version}",
                            self.name,
                            secs(at.saturating_sub(*started))
                        ),
                    ));
                    out.push(Action::HealthReached { version });
                    self.last_probe_error = None;
                    if !self.ever_healthy {
                        self.ever_healthy = true;
                        if self.policy.watchdog_pet.is_some() {
                            out.push(Action::PetWatchdog);
                            self.next_pet = self.policy.watchdog_pet.map(|p| at + p);
                        }
                    }
                }
            }
            Event::Unhealthy { error, at: _ } => {
                if matches!(self.state, State::Running { healthy: false, .. })
                    && self.last_probe_error.as_deref() != Some(error.as_str())
                {
                    out.push(log(
                        Level::Debug,
                        format!("{} not answering yet: {error}", self.name),
                    ));
                    self.last_probe_error = Some(error);
                }
            }
        }
        out
    }

    fn tick(&mut self, at: Duration, out: &mut Vec<Action>) {
        if let (Some(next), Some(every)) = (self.next_pet, self.policy.watchdog_pet) {
            if at >= next {
                out.push(Action::PetWatchdog);
                self.next_pet = Some(at + every);
            }
        }
        match &mut self.state {
            State::Waiting { until } if at >= *until => {
                self.state = State::Spawning;
                out.push(Action::Spawn);
            }
            State::Running {
                healthy: false,
                next_probe,
                ..
            } if at >= *next_probe => {
                *next_probe = at + self.policy.probe_every;
                out.push(Action::Probe);
            }
            State::Stopping {
                power,
                phase,
                deadline,
            } if at >= *deadline => {
                let power = *power;
                match *phase {
                    Phase::Program { pid } => {
                        out.push(log(
                            Level::Warning,
                            format!(
                                "shutdown: {} (pid {pid}) still runs {} after SIGTERM",
                                self.name,
                                secs(self.policy.stop_timeout)
                            ),
                        ));
                        self.term_all(power, at, out);
                    }
                    Phase::TermAll => {
                        out.push(log(
                            Level::Warning,
                            format!(
                                "shutdown: processes left {} after SIGTERM; sending SIGKILL",
                                secs(self.policy.term_timeout)
                            ),
                        ));
                        self.kill_all(power, at, out);
                    }
                    Phase::KillAll => {
                        out.push(log(
                            Level::Warning,
                            format!(
                                "shutdown: processes left {} after SIGKILL; going on",
                                secs(self.policy.kill_timeout)
                            ),
                        ));
                        self.finish(power, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn spawned(&mut self, pid: i32, at: Duration, out: &mut Vec<Action>) {
        match self.state {
            State::Spawning => {
                out.push(log(
                    Level::Info,
                    format!("started {} (pid {pid})", self.program.display()),
                ));
                self.state = State::Running {
                    pid,
                    started: at,
                    healthy: false,
                    next_probe: at,
                };
                out.push(Action::Probe);
                self.set_probe(at + self.policy.probe_every);
            }
            // A start that raced with a shutdown signal: stop it like the rest.
            State::Stopping { .. } => out.push(Action::Kill {
                pid,
                signal: Kill::Term,
            }),
            _ => {}
        }
    }

    fn set_probe(&mut self, when: Duration) {
        if let State::Running { next_probe, .. } = &mut self.state {
            *next_probe = when;
        }
    }

    fn exited(&mut self, pid: i32, exit: Exit, at: Duration, out: &mut Vec<Action>) {
        match self.state {
            State::Running {
                pid: p, started, ..
            } if p == pid => {
                let ran = at.saturating_sub(started);
                out.push(log(
                    Level::Err,
                    format!(
                        "{} (pid {pid}) ended after {}: {exit}",
                        self.name,
                        secs(ran)
                    ),
                ));
                self.died(ran, exit.to_string(), at, out);
            }
            State::Stopping {
                power,
                phase: Phase::Program { pid: p },
                ..
            } if p == pid => {
                out.push(log(
                    Level::Info,
                    format!("shutdown: {} (pid {pid}) ended: {exit}", self.name),
                ));
                self.term_all(power, at, out);
            }
            _ => out.push(log(Level::Debug, format!("reaped pid {pid}: {exit}"))),
        }
    }

    /// The program is gone after running for `ran`: restart later or give up.
    fn died(&mut self, ran: Duration, last: String, at: Duration, out: &mut Vec<Action>) {
        if ran >= self.policy.stable_after {
            self.fast_deaths = 0;
            self.backoff = self.policy.backoff_first;
        } else {
            self.fast_deaths = self.fast_deaths.saturating_add(1);
            if self.fast_deaths >= self.policy.give_up_after {
                self.state = State::Done;
                out.push(Action::GiveUp {
                    error: GaveUp {
                        program: self.program.clone(),
                        deaths: self.fast_deaths,
                        within: self.policy.stable_after,
                        last,
                    },
                });
                return;
            }
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.policy.backoff_max);
        out.push(log(
            Level::Warning,
            format!(
                "restarting {} in {} ({} fast deaths in a row, giving up at {})",
                self.name,
                secs(delay),
                self.fast_deaths,
                self.policy.give_up_after
            ),
        ));
        self.state = State::Waiting { until: at + delay };
    }

    fn signal(&mut self, signal: Signal, at: Duration, out: &mut Vec<Action>) {
        let power = signal.power();
        if let State::Stopping { power: going, .. } = self.state {
            out.push(log(
                Level::Info,
                format!(
                    "{} ignored: already shutting down to {going}",
                    signal.name()
                ),
            ));
            return;
        }
        out.push(log(
            Level::Info,
            format!("{}: shutting down to {power}", signal.name()),
        ));
        match self.state {
            State::Running { pid, .. } => {
                out.push(Action::Kill {
                    pid,
                    signal: Kill::Term,
                });
                self.state = State::Stopping {
                    power,
                    phase: Phase::Program { pid },
                    deadline: at + self.policy.stop_timeout,
                };
            }
            _ => self.term_all(power, at, out),
        }
    }

    fn term_all(&mut self, power: Power, at: Duration, out: &mut Vec<Action>) {
        out.push(Action::KillAll { signal: Kill::Term });
        self.state = State::Stopping {
            power,
            phase: Phase::TermAll,
            deadline: at + self.policy.term_timeout,
        };
    }

    fn kill_all(&mut self, power: Power, at: Duration, out: &mut Vec<Action>) {
        out.push(Action::KillAll { signal: Kill::Kill });
        self.state = State::Stopping {
            power,
            phase: Phase::KillAll,
            deadline: at + self.policy.kill_timeout,
        };
    }

    fn finish(&mut self, power: Power, out: &mut Vec<Action>) {
        out.push(Action::Sync);
        for path in self.unmount.iter().rev() {
            out.push(Action::Unmount { path: path.clone() });
        }
        out.push(Action::Power { power });
        self.state = State::Done;
    }
}

fn log(level: Level, message: String) -> Action {
    Action::Log { level, message }
}

/// `250 ms`, `1.5 s`, `30 s`.
fn secs(d: Duration) -> String {
    crate::infra::timeline::duration(d)
}

/// What one `waitpid(-1, WNOHANG)` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    Child {
        pid: i32,
        exit: Exit,
    },
    /// Children are left, none has ended.
    NoneReady,
    /// No child is left (`ECHILD`).
    NoChildren,
}

/// The effects [`run`] needs. [`RealSystem`] makes the system calls.
pub trait System {
    /// Time since an arbitrary origin that never goes back.
    fn now(&mut self) -> Duration;
    fn spawn(&mut self, program: &Program) -> io::Result<i32>;
    fn reap(&mut self) -> io::Result<Reaped>;
    /// Sleeps until a watched signal arrives or `until` has come (`None`: no time limit),
    /// and returns the shutdown signals that arrived.
    fn wait(&mut self, until: Option<Duration>) -> io::Result<Vec<Signal>>;
    /// Asks the program's socket for its version.
    fn probe(&mut self) -> Result<String, String>;
    fn kill(&mut self, pid: i32, signal: Kill) -> io::Result<()>;
    fn kill_all(&mut self, signal: Kill) -> io::Result<()>;
    fn pet_watchdog(&mut self) -> io::Result<()>;
    fn sync(&mut self);
    fn unmount(&mut self, path: &Path) -> io::Result<()>;
    /// Powers off or reboots; returns only if that failed (or in a test double).
    fn power(&mut self, power: Power) -> io::Result<()>;
    fn log(&mut self, level: Level, message: &str);
}

/// Why supervision ended without a clean shutdown.
#[derive(Debug)]
pub enum SuperviseError {
    /// The program died too fast too often.
    GaveUp(GaveUp),
    /// Waiting for signals failed.
    Wait { source: io::Error },
    /// The kernel refused to power off or reboot.
    Power { power: Power, source: io::Error },
    /// Blocking the signals or opening the signalfd failed.
    Signals { source: io::Error },
}

impl fmt::Display for SuperviseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuperviseError::GaveUp(g) => g.fmt(f),
            SuperviseError::Wait { source } => {
                write!(f, "waiting for signals and children: {source}")
            }
            SuperviseError::Power { power, source } => write!(f, "{power}: {source}"),
            SuperviseError::Signals { source } => {
                write!(
                    f,
                    "setting up the signalfd for SIGTERM, SIGINT, SIGPWR and SIGCHLD: {source}"
                )
            }
        }
    }
}

impl std::error::Error for SuperviseError {}

/// Supervises `config.program` until a shutdown signal (returns the [`Power`] action taken,
/// which only a test double survives) or until the program keeps dying (the error goes to
/// [`crate::infra::failure::fail`]). `on_health` runs with the version string each time the
/// program first answers after a (re)start.
pub fn run<S: System>(
    sys: &mut S,
    config: &Config,
    on_health: &mut dyn FnMut(&str),
) -> Result<Power, SuperviseError> {
    let mut machine = Machine::new(config);
    let mut events = std::collections::VecDeque::new();
    events.push_back(Event::Tick { at: sys.now() });
    loop {
        while let Some(event) = events.pop_front() {
            for action in machine.handle(event) {
                if let Some(end) = perform(sys, config, action, &mut events, on_health) {
                    return end;
                }
            }
        }
        // Reap everything that has ended; handle those deaths before sleeping.
        let mut reaped_any = false;
        loop {
            match sys.reap() {
                Ok(Reaped::Child { pid, exit }) => {
                    reaped_any = true;
                    events.push_back(Event::Exited {
                        pid,
                        exit,
                        at: sys.now(),
                    });
                }
                Ok(Reaped::NoneReady) => break,
                Ok(Reaped::NoChildren) => {
                    events.push_back(Event::NoChildren { at: sys.now() });
                    break;
                }
                Err(e) => {
                    sys.log(Level::Err, &format!("waitpid: {e}"));
                    break;
                }
            }
        }
        if !events.is_empty() {
            while let Some(event) = events.pop_front() {
                for action in machine.handle(event) {
                    if let Some(end) = perform(sys, config, action, &mut events, on_health) {
                        return end;
                    }
                }
            }
            if reaped_any {
                continue;
            }
        }
        let signals = sys
            .wait(machine.next_wake())
            .map_err(|source| SuperviseError::Wait { source })?;
        let at = sys.now();
        events.extend(
            signals
                .into_iter()
                .map(|signal| Event::Signal { signal, at }),
        );
        events.push_back(Event::Tick { at });
    }
}

/// Performs one action; `Some` ends [`run`].
fn perform<S: System>(
    sys: &mut S,
    config: &Config,
    action: Action,
    events: &mut std::collections::VecDeque<Event>,
    on_health: &mut dyn FnMut(&str),
) -> Option<Result<Power, SuperviseError>> {
    match action {
        Action::Spawn => {
            let result = sys.spawn(&config.program);
            let at = sys.now();
            events.push_back(match result {
                Ok(pid) => Event::Spawned { pid, at },
                Err(e) => Event::SpawnFailed {
                    error: e.to_string(),
                    at,
                },
            });
        }
        Action::Probe => {
            let result = sys.probe();
            let at = sys.now();
            events.push_back(match result {
                Ok(version) => Event::Healthy { version, at },
                Err(error) => Event::Unhealthy { error, at },
            });
        }
        Action::HealthReached { version } => on_health(&version),
        Action::PetWatchdog => {
            if let Err(e) = sys.pet_watchdog() {
                sys.log(Level::Err, &format!("petting the watchdog: {e}"));
            }
        }
        Action::Kill { pid, signal } => {
            if let Err(e) = sys.kill(pid, signal) {
                sys.log(
                    Level::Warning,
                    &format!("sending {} to pid {pid}: {e}", signal.name()),
                );
            }
        }
        Action::KillAll { signal } => match sys.kill_all(signal) {
            Ok(()) => sys.log(
                Level::Info,
                &format!("shutdown: sent {} to every process", signal.name()),
            ),
            // No process to signal.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => sys.log(
                Level::Warning,
                &format!("sending {} to every process: {e}", signal.name()),
            ),
        },
        Action::Sync => sys.sync(),
        Action::Unmount { path } => match sys.unmount(&path) {
            Ok(()) => sys.log(
                Level::Info,
                &format!("shutdown: unmounted {}", path.display()),
            ),
            Err(e) => sys.log(
                Level::Warning,
                &format!("shutdown: unmounting {}: {e}; going on", path.display()),
            ),
        },
        Action::Power { power } => {
            sys.log(Level::Info, &format!("shutdown: {power}"));
            return Some(match sys.power(power) {
                Ok(()) => Ok(power),
                Err(source) => Err(SuperviseError::Power { power, source }),
            });
        }
        Action::GiveUp { error } => return Some(Err(SuperviseError::GaveUp(error))),
        Action::Log { level, message } => sys.log(level, &message),
    }
    None
}

/// Time one health probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// PID 1's containerd handoff in one call, after switch_root: makes ctrl-alt-del a SIGINT,
/// pets `watchdog` (armed before the handoff) every [`Watchdog::pet_interval`] once
/// containerd answered on [`health::CONTAINERD_SOCKET`], and [`run`]s the supervisor on
/// the real system. Returns only when the kernel refused to power off or reboot, or with
/// an error for [`crate::infra::failure::fail`].
pub fn supervise_as_pid1(
    mut config: Config,
    watchdog: Option<Watchdog>,
    on_health: &mut dyn FnMut(&str),
) -> Result<Power, SuperviseError> {
    if let Err(e) = signals::disable_ctrl_alt_del() {
        kmsg::warn(&format!(
            "turning ctrl-alt-del into SIGINT: {e}; it resets the machine at once"
        ));
    }
    if let Some(w) = &watchdog {
        config.policy.watchdog_pet = Some(w.pet_interval());
        kmsg::info(&format!(
            "watchdog {}: {} s, petted every {} once {} answers",
            w.path().display(),
            w.timeout(),
            secs(w.pet_interval()),
            config.program.name()
        ));
    }
    let mut sys = RealSystem::new(
        PathBuf::from(health::CONTAINERD_SOCKET),
        PROBE_TIMEOUT,
        watchdog,
    )
    .map_err(|source| SuperviseError::Signals { source })?;
    run(&mut sys, &config, on_health)
}

/// Which processes [`System::kill_all`] signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillScope {
    /// `kill(-1)`: every process but PID 1. Only right when this process is PID 1 (of the
    /// machine or of a PID namespace).
    Everything,
    /// This process's descendants, found in `/proc`: for a supervisor that is not PID 1 but a
    /// child subreaper (tests).
    Descendants,
}

/// The real system: signalfd, waitpid, kill, the health client and the watchdog.
#[derive(Debug)]
pub struct RealSystem {
    signals: SignalFd,
    socket: PathBuf,
    probe_timeout: Duration,
    watchdog: Option<Watchdog>,
    scope: KillScope,
}

impl RealSystem {
    /// Blocks and watches the shutdown signals and SIGCHLD. `socket` is the program's gRPC
    /// socket (the probe gives each step `probe_timeout`). As PID 1, every process is
    /// signalled at shutdown; otherwise only this process's descendants, and the process
    /// must be a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`) to reap orphans.
    pub fn new(
        socket: PathBuf,
        probe_timeout: Duration,
        watchdog: Option<Watchdog>,
    ) -> io::Result<Self> {
        let signals = SignalFd::new()?;
        let scope = if rustix::process::getpid().is_init() {
            KillScope::Everything
        } else {
            KillScope::Descendants
        };
        Ok(RealSystem {
            signals,
            socket,
            probe_timeout,
            watchdog,
            scope,
        })
    }

    pub fn kill_scope(&self) -> KillScope {
        self.scope
    }
}

fn to_signal(signal: Kill) -> RustixSignal {
    match signal {
        Kill::Term => RustixSignal::TERM,
        Kill::Kill => RustixSignal::KILL,
    }
}

fn pid(raw: i32) -> io::Result<Pid> {
    Pid::from_raw(raw).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))
}

impl System for RealSystem {
    fn now(&mut self) -> Duration {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }

    fn spawn(&mut self, program: &Program) -> io::Result<i32> {
        // std resets the signal mask and dispositions in the child, so the program does not
        // inherit PID 1's blocked signals.
        let child = std::process::Command::new(&program.path)
            .args(&program.args)
            .env_clear()
            .envs(program.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            // Its own process group: a terminal's signals for PID 1 are not its.
            .process_group(0)
            .spawn()?;
        // The child is reaped by waitpid(-1); its handle is not needed.
        i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))
    }

    fn reap(&mut self) -> io::Result<Reaped> {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                let exit = match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => Exit::Code(code),
                    (None, Some(signal)) => Exit::Signal(signal),
                    (None, None) => Exit::Code(-1),
                };
                Ok(Reaped::Child {
                    pid: pid.as_raw_nonzero().get(),
                    exit,
                })
            }
            Ok(None) => Ok(Reaped::NoneReady),
            Err(rustix::io::Errno::CHILD) => Ok(Reaped::NoChildren),
            Err(e) => Err(e.into()),
        }
    }

    fn wait(&mut self, until: Option<Duration>) -> io::Result<Vec<Signal>> {
        let timeout = until.map(|u| {
            let left = u.saturating_sub(self.now());
            rustix::time::Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        let mut fds = [rustix::event::PollFd::new(
            &self.signals,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self
            .signals
            .read_pending()?
            .into_iter()
            .filter_map(Signal::from_raw)
            .collect())
    }

    fn probe(&mut self) -> Result<String, String> {
        health::version(&self.socket, self.probe_timeout)
            .map(|v| v.version)
            .map_err(|e| e.to_string())
    }

    fn kill(&mut self, raw: i32, signal: Kill) -> io::Result<()> {
        rustix::process::kill_process(pid(raw)?, to_signal(signal)).map_err(Into::into)
    }

    fn kill_all(&mut self, signal: Kill) -> io::Result<()> {
        match self.scope {
            // kill(-pid) signals a process group; for pid 1 that is kill(-1): every
            // process but the caller.
            KillScope::Everything => {
                rustix::process::kill_process_group(Pid::INIT, to_signal(signal))
                    .map_err(Into::into)
            }
            KillScope::Descendants => {
                let me = rustix::process::getpid().as_raw_nonzero().get();
                let found = descendants(Path::new("/proc"), me)?;
                if found.is_empty() {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                for p in found {
                    // It may have ended since /proc was read.
                    let _ = rustix::process::kill_process(pid(p)?, to_signal(signal));
                }
                Ok(())
            }
        }
    }

    fn pet_watchdog(&mut self) -> io::Result<()> {
        match &self.watchdog {
            Some(w) => w.keepalive().map_err(|e| io::Error::other(e.to_string())),
            None => Ok(()),
        }
    }

    fn sync(&mut self) {
        rustix::fs::sync();
    }

    fn unmount(&mut self, path: &Path) -> io::Result<()> {
        rustix::mount::unmount(path, rustix::mount::UnmountFlags::empty()).map_err(Into::into)
    }

    fn power(&mut self, power: Power) -> io::Result<()> {
        let command = match power {
            Power::Off => rustix::system::RebootCommand::PowerOff,
            Power::Reboot => rustix::system::RebootCommand::Restart,
        };
        rustix::system::reboot(command).map_err(Into::into)
    }

    fn log(&mut self, level: Level, message: &str) {
        kmsg::log(level, message);
    }
}

/// The pids of `root`'s descendants, read from `<proc>/<pid>/stat`.
pub fn descendants(proc: &Path, root: i32) -> io::Result<Vec<i32>> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir(proc)? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may end while we look; skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(ppid) = parent_from_stat(&stat) {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while let Some(&p) = found.get(i) {
        for &(child, parent) in &parents {
            if parent == p && !found.contains(&child) {
                found.push(child);
            }
        }
        i += 1;
    }
    found.retain(|&p| p != root);
    Ok(found)
}

/// The parent pid in a `/proc/<pid>/stat` line: the 4th field, after the `(comm)` that may
/// hold spaces and parentheses (hence the last `)`).
pub fn parent_from_stat(stat: &str) -> Option<i32> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config(unmount: &[&str]) -> Config {
        Config {
            program: Program::containerd(),
            policy: Policy::default(),
            unmount: unmount.iter().map(PathBuf::from).collect(),
        }
    }

    /// The actions without log lines.
    fn effects(actions: Vec<Action>) -> Vec<Action> {
        actions
            .into_iter()
            .filter(|a| !matches!(a, Action::Log { .. }))
            .collect()
    }

    /// A process of the fake system.
    #[derive(Debug, Clone)]
    struct Proc {
        pid: i32,
        /// When it ends by itself, and how.
        ends: Option<(Duration, Exit)>,
        /// How long it takes to exit after SIGTERM (None: ignores it).
        term_after: Option<Duration>,
        reaped: bool,
    }

    /// A system with a virtual clock: processes end on schedule, signals arrive on
    /// schedule, and every effect is recorded as a line.
    struct Fake {
        now: Duration,
        procs: Vec<Proc>,
        next_pid: i32,
        /// How long each started program lives (`None`: until signalled), by start number.
        lifetimes: Vec<Option<Duration>>,
        /// The program answers once it has run this long.
        healthy_after: Duration,
        program_term_after: Option<Duration>,
        signals: Vec<(Duration, Signal)>,
        ops: Vec<String>,
        logs: Vec<(Level, String)>,
        spawn_fails: bool,
    }

    impl Fake {
        fn new(lifetimes: Vec<Option<Duration>>) -> Self {
            Fake {
                now: Duration::ZERO,
                procs: Vec::new(),
                next_pid: 100,
                lifetimes,
                healthy_after: ms(300),
                program_term_after: Some(ms(50)),
                signals: Vec::new(),
                ops: Vec::new(),
                logs: Vec::new(),
                spawn_fails: false,
            }
        }

        /// A process not started by the supervisor (an orphan re-parented to it).
        fn orphan(&mut self, pid: i32, ends: Option<Duration>, term_after: Option<Duration>) {
            self.procs.push(Proc {
                pid,
                ends: ends.map(|t| (t, Exit::Code(0))),
                term_after,
                reaped: false,
            });
        }

        fn op(&mut self, s: String) {
            let line = format!("{:>6} {s}", self.now.as_millis());
            self.ops.push(line);
        }

        fn alive(&self) -> impl Iterator<Item = &Proc> {
            self.procs
                .iter()
                .filter(move |p| p.ends.is_none_or(|(t, _)| t > self.now))
        }
    }

    impl System for Fake {
        fn now(&mut self) -> Duration {
            self.now
        }

        fn spawn(&mut self, _program: &Program) -> io::Result<i32> {
            if self.spawn_fails {
                self.op("spawn failed".into());
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            let n = self.procs.iter().filter(|p| p.pid >= 100).count();
            let pid = self.next_pid;
            self.next_pid += 1;
            let life = self.lifetimes.get(n).copied().flatten();
            self.procs.push(Proc {
                pid,
                ends: life.map(|l| (self.now + l, Exit::Code(1))),
                term_after: self.program_term_after,
                reaped: false,
            });
            self.op(format!("spawn {pid}"));
            Ok(pid)
        }

        fn reap(&mut self) -> io::Result<Reaped> {
            let now = self.now;
            if let Some(p) = self
                .procs
                .iter_mut()
                .filter(|p| !p.reaped && p.ends.is_some_and(|(t, _)| t <= now))
                .min_by_key(|p| p.ends.map(|(t, _)| t))
            {
                p.reaped = true;
                let exit = p.ends.map_or(Exit::Code(0), |(_, e)| e);
                return Ok(Reaped::Child { pid: p.pid, exit });
            }
            if self.procs.iter().any(|p| !p.reaped) {
                Ok(Reaped::NoneReady)
            } else {
                Ok(Reaped::NoChildren)
            }
        }

        fn wait(&mut self, until: Option<Duration>) -> io::Result<Vec<Signal>> {
            let next_end = self
                .procs
                .iter()
                .filter(|p| !p.reaped)
                .filter_map(|p| p.ends.map(|(t, _)| t))
                .min();
            let next_signal = self.signals.iter().map(|(t, _)| *t).min();
            let wake = [until, next_end, next_signal]
                .into_iter()
                .flatten()
                .min()
                .expect("the supervisor would sleep forever");
            assert!(wake >= self.now, "time went back");
            assert!(wake < Duration::from_secs(3600), "runaway simulation");
            self.now = wake;
            let (due, later): (Vec<_>, Vec<_>) = self.signals.iter().partition(|(t, _)| *t <= wake);
            self.signals = later;
            Ok(due.into_iter().map(|(_, s)| s).collect())
        }

        fn probe(&mut self) -> Result<String, String> {
            let now = self.now;
            let healthy = self.procs.iter().any(|p| {
                p.pid >= 100
                    && !p.reaped
                    && p.ends.is_none_or(|(t, _)| t > now)
                    && self
                        .ops
                        .iter()
                        .rev()
                        .find(|o| o.ends_with(&format!("spawn {}", p.pid)))
                        .and_then(|o| o.split_whitespace().next()?.parse::<u64>().ok())
                        .is_some_and(|t| now >= ms(t) + self.healthy_after)
            });
            if healthy {
                Ok("1.6.20".into())
            } else {
                Err("connecting: No such file or directory".into())
            }
        }

        fn kill(&mut self, pid: i32, signal: Kill) -> io::Result<()> {
            self.op(format!("kill {pid} {}", signal.name()));
            let now = self.now;
            if let Some(p) = self.procs.iter_mut().find(|p| p.pid == pid && !p.reaped) {
                let after = match signal {
                    Kill::Kill => Some(Duration::ZERO),
                    Kill::Term => p.term_after,
                };
                if let Some(a) = after {
                    if p.ends.is_none_or(|(t, _)| t > now + a) {
                        p.ends = Some((
                            now + a,
                            Exit::Signal(if signal == Kill::Kill { 9 } else { 15 }),
                        ));
                    }
                }
            }
            Ok(())
        }

        fn kill_all(&mut self, signal: Kill) -> io::Result<()> {
            self.op(format!("kill-all {}", signal.name()));
            let pids: Vec<i32> = self.alive().map(|p| p.pid).collect();
            if pids.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            for pid in pids {
                let n = self.ops.len();
                self.kill(pid, signal)?;
                // Only the kill-all line is recorded.
                self.ops.truncate(n);
            }
            Ok(())
        }

        fn pet_watchdog(&mut self) -> io::Result<()> {
            self.op("pet".into());
            Ok(())
        }

        fn sync(&mut self) {
            self.op("sync".into());
        }

        fn unmount(&mut self, path: &Path) -> io::Result<()> {
            self.op(format!("unmount {}", path.display()));
            Ok(())
        }

        fn power(&mut self, power: Power) -> io::Result<()> {
            self.op(format!("{power}"));
            Ok(())
        }

        fn log(&mut self, level: Level, message: &str) {
            self.logs.push((level, message.to_owned()));
        }
    }

    fn simulate(fake: &mut Fake, config: &Config) -> (Result<Power, SuperviseError>, Vec<String>) {
        let mut healthy = Vec::new();
        let result = run(fake, config, &mut |v| healthy.push(v.to_owned()));
        let mut ops = fake.ops.clone();
        ops.extend(healthy.iter().map(|v| format!("healthy {v}")));
        (result, ops)
    }

    /// Times (ms) of the spawns in the recorded lines.
    fn spawn_times(ops: &[String]) -> Vec<u64> {
        ops.iter()
            .filter(|o| o.contains(" spawn "))
            .map(|o| o.split_whitespace().next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn fast_deaths_back_off_and_give_up() {
        // Each run lasts 200 ms: restarts after 0.5, 1, 2 and 4 s, then the 5th death ends it.
        let mut fake = Fake::new(vec![Some(ms(200)); 10]);
        let (result, ops) = simulate(&mut fake, &config(&[]));
        assert_eq!(spawn_times(&ops), [0, 700, 1900, 4100, 8300]);
        let Err(SuperviseError::GaveUp(g)) = result else {
            panic!("{result:?}");
        };
        assert_eq!(g.deaths, 5);
        assert_eq!(
            g.to_string(),
            "/usr/bin/containerd died 5 times in a row, each within 10 s of its start (last: exit status 1); giving up"
        );
        assert_eq!(fake.now, ms(8500));
        // It never answered: no health, no watchdog.
        assert!(!ops
            .iter()
            .any(|o| o.contains("healthy") || o.contains("pet")));
    }

    #[test]
    fn back_off_caps_at_the_maximum() {
        let mut c = config(&[]);
        c.policy.give_up_after = 10;
        let mut fake = Fake::new(vec![Some(Duration::ZERO); 20]);
        let (result, ops) = simulate(&mut fake, &c);
        assert!(matches!(result, Err(SuperviseError::GaveUp(_))));
        let t = spawn_times(&ops);
        let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(
            gaps,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn slow_deaths_restart_forever_with_the_back_off_reset() {
        // Runs of 11 s (longer than stable_after) interleaved with fast ones: a long run
        // resets both the fast-death count and the back-off, so it never gives up.
        let mut lifetimes = Vec::new();
        for _ in 0..6 {
            lifetimes.extend([
                Some(ms(100)),
                Some(ms(100)),
                Some(ms(100)),
                Some(ms(11_000)),
            ]);
        }
        lifetimes.push(None);
        let mut fake = Fake::new(lifetimes);
        fake.signals.push((Duration::from_secs(200), Signal::Term));
        let (result, ops) = simulate(&mut fake, &config(&[]));
        assert_eq!(result.unwrap(), Power::Off);
        let t = spawn_times(&ops);
        assert_eq!(t.len(), 25);
        let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        // Three fast runs (0.5, 1 and 2 s back-off), then a slow one: the restart after it
        // waits 0.5 s again and the doubling starts over from there.
        assert_eq!(&gaps[..4], [600, 1100, 2100, 11_500]);
        for cycle in gaps[4..].chunks(4).take(5) {
            assert_eq!(cycle, [1100, 2100, 4100, 11_500]);
        }
        // Health is reported after every start that lived long enough to answer.
        let healthy = ops.iter().filter(|o| o.starts_with("healthy")).count();
        assert_eq!(healthy, 7);
    }

    #[test]
    fn spawn_failures_count_as_fast_deaths() {
        let mut fake = Fake::new(vec![]);
        fake.spawn_fails = true;
        let (result, ops) = simulate(&mut fake, &config(&[]));
        let Err(SuperviseError::GaveUp(g)) = result else {
            panic!("{result:?}");
        };
        assert_eq!(
            g.last,
            format!(
                "starting it failed: {}",
                io::Error::from_raw_os_error(libc::ENOENT)
            )
        );
        assert_eq!(
            ops.iter().filter(|o| o.ends_with("spawn failed")).count(),
            5
        );
        assert_eq!(fake.now, ms(500 + 1000 + 2000 + 4000));
    }

    #[test]
    fn health_is_reached_once_per_start_and_then_the_watchdog_is_petted() {
        let mut c = config(&[]);
        c.policy.watchdog_pet = Some(Duration::from_secs(10));
        let mut fake = Fake::new(vec![None]);
        fake.signals.push((Duration::from_secs(25), Signal::Term));
        let (result, ops) = simulate(&mut fake, &c);
        assert_eq!(result.unwrap(), Power::Off);
        let pets: Vec<&String> = ops.iter().filter(|o| o.ends_with(" pet")).collect();
        // First answer at 300 ms (probes every 100 ms), then every 10 s.
        assert_eq!(
            pets.iter()
                .map(|o| o.split_whitespace().next().unwrap())
                .collect::<Vec<_>>(),
            ["300", "10300", "20300"]
        );
        assert_eq!(ops.iter().filter(|o| o.starts_with("healthy")).count(), 1);
        assert!(fake.logs.iter().any(|(l, m)| *l == Level::Info
            && m == "containerd (pid 100) is healthy 300 ms after its start: version 1.6.20"));
        // Probe errors are logged once each, at debug level.
        let probe_logs = fake
            .logs
            .iter()
            .filter(|(_, m)| m.contains("not answering yet"))
            .count();
        assert_eq!(probe_logs, 1);
    }

    #[test]
    fn zombies_of_unknown_pids_are_reaped_and_ignored() {
        let c = config(&[]);
        let mut m = Machine::new(&c);
        assert_eq!(
            effects(m.handle(Event::Tick { at: ms(0) })),
            [Action::Spawn]
        );
        assert_eq!(
            effects(m.handle(Event::Spawned {
                pid: 100,
                at: ms(1)
            })),
            [Action::Probe]
        );
        let before = m.clone();
        let actions = m.handle(Event::Exited {
            pid: 4242,
            exit: Exit::Signal(9),
            at: ms(5),
        });
        assert_eq!(
            actions,
            [Action::Log {
                level: Level::Debug,
                message: "reaped pid 4242: killed by signal 9".into()
            }]
        );
        assert_eq!(m.running_pid(), before.running_pid());
        assert_eq!(m.next_wake(), before.next_wake());
        assert!(effects(m.handle(Event::NoChildren { at: ms(6) })).is_empty());

        // And in a run: orphans ending at any time are reaped, the program is untouched.
        let mut fake = Fake::new(vec![None]);
        for (i, t) in [50u64, 400, 401, 5000].iter().enumerate() {
            fake.orphan(10 + i as i32, Some(ms(*t)), None);
        }
        fake.signals.push((Duration::from_secs(6), Signal::Term));
        let (result, ops) = simulate(&mut fake, &c);
        assert_eq!(result.unwrap(), Power::Off);
        assert_eq!(spawn_times(&ops), [0]);
        assert!(fake.procs.iter().all(|p| p.reaped));
        let reaped: Vec<&str> = fake
            .logs
            .iter()
            .filter_map(|(_, m)| m.strip_prefix("reaped pid "))
            .collect();
        assert_eq!(
            reaped,
            [
                "10: exit status 0",
                "11: exit status 0",
                "12: exit status 0",
                "13: exit status 0"
            ]
        );
    }

    #[test]
    fn shutdown_steps_in_order() {
        struct Case {
            what: &'static str,
            signal: Signal,
            /// How long the program takes to exit after SIGTERM.
            program_term_after: Option<Duration>,
            /// An orphan's reaction to SIGTERM.
            orphan_term_after: Option<Option<Duration>>,
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                what: "SIGTERM: program exits at once, nothing else runs",
                signal: Signal::Term,
                program_term_after: Some(ms(50)),
                orphan_term_after: None,
                want: &[
                    "     0 spawn 100",
                    "  1000 kill 100 SIGTERM",
                    "  1050 kill-all SIGTERM",
                    "  1050 sync",
                    "  1050 unmount /local/opt",
                    "  1050 unmount /local/var",
                    "  1050 unmount /local",
                    "  1050 power off",
                ],
            },
            Case {
                what: "SIGINT reboots; a shim that takes 1 s after SIGTERM is waited for",
                signal: Signal::Int,
                program_term_after: Some(ms(50)),
                orphan_term_after: Some(Some(ms(1000))),
                want: &[
                    "     0 spawn 100",
                    "  1000 kill 100 SIGTERM",
                    "  1050 kill-all SIGTERM",
                    "  2050 sync",
                    "  2050 unmount /local/opt",
                    "  2050 unmount /local/var",
                    "  2050 unmount /local",
                    "  2050 reboot",
                ],
            },
            Case {
                what: "SIGPWR: program and a shim ignore SIGTERM: SIGKILL after the timeouts",
                signal: Signal::Pwr,
                program_term_after: None,
                orphan_term_after: Some(None),
                want: &[
                    "     0 spawn 100",
                    "  1000 kill 100 SIGTERM",
                    " 11000 kill-all SIGTERM",
                    " 16000 kill-all SIGKILL",
                    " 16000 sync",
                    " 16000 unmount /local/opt",
                    " 16000 unmount /local/var",
                    " 16000 unmount /local",
                    " 16000 power off",
                ],
            },
        ];
        for case in cases {
            let mut fake = Fake::new(vec![None]);
            fake.program_term_after = case.program_term_after;
            if let Some(term) = case.orphan_term_after {
                fake.orphan(7, None, term);
            }
            fake.signals.push((Duration::from_secs(1), case.signal));
            let (result, ops) =
                simulate(&mut fake, &config(&["/local", "/local/var", "/local/opt"]));
            assert_eq!(result.unwrap(), case.signal.power(), "{}", case.what);
            let ops: Vec<&str> = ops
                .iter()
                .map(String::as_str)
                .filter(|o| !o.starts_with("healthy"))
                .collect();
            assert_eq!(ops, case.want, "{}", case.what);
        }
    }

    #[test]
    fn a_stuck_process_after_sigkill_does_not_stop_the_shutdown() {
        let c = config(&["/local"]);
        let mut m = Machine::new(&c);
        m.handle(Event::Tick { at: ms(0) });
        m.handle(Event::Spawned {
            pid: 100,
            at: ms(0),
        });
        m.handle(Event::Signal {
            signal: Signal::Term,
            at: ms(10),
        });
        m.handle(Event::Exited {
            pid: 100,
            exit: Exit::Code(0),
            at: ms(20),
        });
        assert_eq!(m.next_wake(), Some(ms(20) + c.policy.term_timeout));
        let a = effects(m.handle(Event::Tick { at: ms(5020) }));
        assert_eq!(a, [Action::KillAll { signal: Kill::Kill }]);
        assert_eq!(m.next_wake(), Some(ms(5020) + c.policy.kill_timeout));
        // A process in uninterruptible sleep never goes; the shutdown goes on regardless.
        let a = effects(m.handle(Event::Tick { at: ms(7020) }));
        assert_eq!(
            a,
            [
                Action::Sync,
                Action::Unmount {
                    path: "/local".into()
                },
                Action::Power { power: Power::Off }
            ]
        );
        assert!(m.is_done());
        assert!(m.handle(Event::Tick { at: ms(9000) }).is_empty());
    }

    #[test]
    fn sigterm_during_back_off_never_restarts() {
        let c = config(&["/local"]);
        let mut m = Machine::new(&c);
        m.handle(Event::Tick { at: ms(0) });
        m.handle(Event::Spawned {
            pid: 100,
            at: ms(0),
        });
        m.handle(Event::Exited {
            pid: 100,
            exit: Exit::Code(2),
            at: ms(100),
        });
        assert_eq!(m.next_wake(), Some(ms(600)));
        let a = effects(m.handle(Event::Signal {
            signal: Signal::Term,
            at: ms(200),
        }));
        assert_eq!(a, [Action::KillAll { signal: Kill::Term }]);
        // The back-off deadline passes: no spawn.
        assert!(effects(m.handle(Event::Tick { at: ms(700) })).is_empty());
        let a = effects(m.handle(Event::NoChildren { at: ms(700) }));
        assert_eq!(
            a,
            [
                Action::Sync,
                Action::Unmount {
                    path: "/local".into()
                },
                Action::Power { power: Power::Off }
            ]
        );

        // Through the loop: the program dies at 100 ms, SIGTERM at 300 ms.
        let mut fake = Fake::new(vec![Some(ms(100)), None]);
        fake.signals.push((ms(300), Signal::Term));
        let (result, ops) = simulate(&mut fake, &c);
        assert_eq!(result.unwrap(), Power::Off);
        assert_eq!(
            ops,
            [
                "     0 spawn 100",
                "   300 kill-all SIGTERM",
                "   300 sync",
                "   300 unmount /local",
                "   300 power off"
            ]
        );
    }

    #[test]
    fn a_second_signal_does_not_change_the_shutdown() {
        let c = config(&[]);
        let mut m = Machine::new(&c);
        m.handle(Event::Tick { at: ms(0) });
        m.handle(Event::Spawned {
            pid: 100,
            at: ms(0),
        });
        assert_eq!(
            effects(m.handle(Event::Signal {
                signal: Signal::Int,
                at: ms(10)
            })),
            [Action::Kill {
                pid: 100,
                signal: Kill::Term
            }]
        );
        let a = m.handle(Event::Signal {
            signal: Signal::Term,
            at: ms(20),
        });
        assert_eq!(
            a,
            [Action::Log {
                level: Level::Info,
                message: "SIGTERM ignored: already shutting down to reboot".into()
            }]
        );
        m.handle(Event::Exited {
            pid: 100,
            exit: Exit::Code(0),
            at: ms(30),
        });
        let a = effects(m.handle(Event::NoChildren { at: ms(30) }));
        assert_eq!(
            a.last(),
            Some(&Action::Power {
                power: Power::Reboot
            })
        );
    }

    #[test]
    fn signal_numbers_and_powers() {
        let cases = [
            (libc::SIGTERM, Some(Power::Off)),
            (libc::SIGPWR, Some(Power::Off)),
            (libc::SIGINT, Some(Power::Reboot)),
            (libc::SIGCHLD, None),
            (libc::SIGHUP, None),
        ];
        for (raw, want) in cases {
            assert_eq!(Signal::from_raw(raw).map(Signal::power), want, "{raw}");
        }
    }

    #[test]
    fn parent_pid_from_proc_stat() {
        let cases = [
            ("1234 (sh) S 1 1234 1234 0 -1", Some(1)),
            ("77 (a) b (c) R 42 77 77", Some(42)),
            ("5 (no parent field", None),
            ("", None),
        ];
        for (stat, want) in cases {
            assert_eq!(parent_from_stat(stat), want, "{stat}");
        }
        // Our own descendants, read from the real /proc: a child we start is one.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let found = descendants(Path::new("/proc"), me).unwrap();
        assert!(found.contains(&(child.id() as i32)), "{found:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn durations_in_log_lines() {
        let cases = [
            (ms(500), "500 ms"),
            (ms(999), "999 ms"),
            (ms(30_000), "30 s"),
            (ms(1250), "1.2 s"),
            (ms(0), "0 ms"),
        ];
        for (d, want) in cases {
            assert_eq!(secs(d), want);
        }
    }
}
