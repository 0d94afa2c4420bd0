//! The supervisor's state machine: events in (a child exited with a status at a time, a
//! signal, a clock tick, a probe result), [`Action`]s out (spawn, probe, kill, sync,
//! unmount, power, log). Pure: no system calls and no clock, so restart, back-off, give-up
//! and the shutdown order are tested without root and without waiting.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::service::{Service, Units};
use crate::infra::kmsg::Level;

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
    /// Health that holds this long (the program answered and has not died since) is
    /// reported once with [`Action::HealthHeld`] (none: never).
    pub health_holds: Option<Duration>,
    /// Once healthy, the program and the services are checked again this often, for as
    /// long as they run (none: the program only until it first answers).
    pub health_every: Option<Duration>,
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
            health_holds: None,
            health_every: None,
        }
    }
}

/// Everything [`run`](super::run::run) needs besides the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub program: Program,
    pub policy: Policy,
    /// Mount points to unmount at shutdown, in the order they were mounted; unmounted in
    /// reverse.
    pub unmount: Vec<PathBuf>,
    /// The services declared in the root, in start order ([`super::service`]).
    pub services: Vec<Service>,
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
    /// The power button was pressed ([`super::button`]): power off.
    PowerButton,
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
            Signal::PowerButton => "the power button",
        }
    }

    /// What the signal asks for.
    pub fn power(self) -> Power {
        match self {
            Signal::Term | Signal::Pwr | Signal::PowerButton => Power::Off,
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
    Int,
    Hup,
    Quit,
    Usr1,
    Usr2,
}

impl Kill {
    const ALL: [Kill; 7] = [
        Kill::Term,
        Kill::Kill,
        Kill::Int,
        Kill::Hup,
        Kill::Quit,
        Kill::Usr1,
        Kill::Usr2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kill::Term => "SIGTERM",
            Kill::Kill => "SIGKILL",
            Kill::Int => "SIGINT",
            Kill::Hup => "SIGHUP",
            Kill::Quit => "SIGQUIT",
            Kill::Usr1 => "SIGUSR1",
            Kill::Usr2 => "SIGUSR2",
        }
    }

    /// `TERM` (or `SIGTERM`) to [`Kill::Term`].
    pub fn from_name(name: &str) -> Option<Self> {
        let short = name.strip_prefix("SIG").unwrap_or(name);
        Self::ALL
            .into_iter()
            .find(|k| k.name().strip_prefix("SIG") == Some(short))
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
    /// [`Action::SpawnService`] started the service (its pid) or failed.
    ServiceSpawned {
        index: usize,
        result: Result<i32, String>,
        at: Duration,
    },
    /// [`Action::CheckService`] started the service's readiness command; its exit status
    /// is the result.
    ServiceCheckStarted {
        index: usize,
        pid: i32,
    },
    /// [`Action::CheckService`]'s result (a socket, a gRPC answer, or a command that
    /// could not be started).
    ServiceChecked {
        index: usize,
        result: Result<(), String>,
        at: Duration,
    },
}

/// What the machine asks for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the program; answer with [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn,
    /// Start service `index` of [`Config::services`]; answer with [`Event::ServiceSpawned`].
    SpawnService {
        index: usize,
    },
    /// Check service `index`'s readiness; answer with [`Event::ServiceChecked`] or
    /// [`Event::ServiceCheckStarted`].
    CheckService {
        index: usize,
    },
    /// Ask the program's socket; answer with [`Event::Healthy`] or [`Event::Unhealthy`].
    Probe,
    /// The program answered for the first time since it was (re)started: mark the slot
    /// successful.
    HealthReached {
        version: String,
    },
    /// Health has held for [`Policy::health_holds`] since it was reached: clear the
    /// slot's crash-loop count. Asked for once.
    HealthHeld {
        after: Duration,
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
    /// A service's stop signal sent; waiting for it, up to its grace.
    Services { pid: i32 },
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
    /// When health will have held for [`Policy::health_holds`]: set when the program
    /// answers, cleared when it dies or the shutdown starts.
    holds_at: Option<Duration>,
    /// [`Action::HealthHeld`] was asked for.
    held: bool,
    /// The last probe error logged, to log each different one once.
    last_probe_error: Option<String>,
    /// The declared services.
    units: Units,
    /// The program's version from its first answer since its start, until every required
    /// service is ready too and [`Action::HealthReached`] is asked for.
    answered: Option<String>,
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
            holds_at: None,
            held: false,
            last_probe_error: None,
            units: Units::new(&config.services, config.policy),
            answered: None,
        }
    }

    /// Health holds now: every required service is ready, and the program answers (or,
    /// without [`Policy::health_every`], has answered once).
    fn healthy_now(&self) -> bool {
        self.units.required_ready()
            && (self.policy.health_every.is_none()
                || matches!(self.state, State::Running { healthy: true, .. }))
    }

    /// Asks for [`Action::HealthReached`] once the program answered and every required
    /// service is ready.
    fn reach(&mut self, at: Duration, out: &mut Vec<Action>) {
        if !self.units.required_ready() {
            return;
        }
        let Some(version) = self.answered.take() else {
            return;
        };
        out.push(Action::HealthReached { version });
        if !self.held {
            self.holds_at = self.policy.health_holds.map(|d| at + d);
        }
        if !self.ever_healthy {
            self.ever_healthy = true;
            if self.policy.watchdog_pet.is_some() {
                out.push(Action::PetWatchdog);
                self.next_pet = self.policy.watchdog_pet.map(|p| at + p);
            }
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
                healthy,
                next_probe,
                ..
            } if !healthy || self.policy.health_every.is_some() => Some(next_probe),
            State::Stopping { deadline, .. } => Some(deadline),
            State::Running { .. } | State::Spawning | State::Done => None,
        };
        if self.state == State::Done {
            return own;
        }
        let units = match self.state {
            State::Stopping { .. } => None,
            _ => self.units.next_wake(),
        };
        [own, self.next_pet, self.holds_at, units]
            .into_iter()
            .flatten()
            .min()
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
                let every = self.policy.health_every;
                if let State::Running {
                    pid,
                    started,
                    healthy,
                    next_probe,
                } = &mut self.state
                {
                    if let Some(e) = every {
                        *next_probe = at + e;
                    }
                    if !*healthy {
                        *healthy = true;
                        out.push(log(
                            Level::Info,
                            format!(
                                "{} (pid {pid}) is healthy {} after its start: version {version}",
                                self.name,
                                secs(at.saturating_sub(*started))
                            ),
                        ));
                        self.answered = Some(version);
                        self.last_probe_error = None;
                        self.reach(at, &mut out);
                    }
                }
            }
            Event::ServiceSpawned { index, result, at } => {
                out = self.units.spawned(index, result, at);
                self.reach(at, &mut out);
            }
            Event::ServiceCheckStarted { index, pid } => self.units.check_started(index, pid),
            Event::ServiceChecked { index, result, at } => {
                self.units.checked(index, Some(result), at, &mut out);
                self.reach(at, &mut out);
            }
            Event::Unhealthy { error, at: _ } => {
                if let State::Running {
                    pid,
                    healthy: healthy @ true,
                    ..
                } = &mut self.state
                {
                    *healthy = false;
                    out.push(log(
                        Level::Err,
                        format!("{} (pid {pid}) no longer answers: {error}", self.name),
                    ));
                } else if matches!(self.state, State::Running { healthy: false, .. })
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
        if let (Some(when), Some(after)) = (self.holds_at, self.policy.health_holds) {
            if at >= when {
                out.push(log(
                    Level::Info,
                    format!("{} has stayed healthy for {}", self.name, secs(after)),
                ));
                out.push(Action::HealthHeld { after });
                self.holds_at = None;
                self.held = true;
            }
        }
        if let (Some(next), Some(every)) = (self.next_pet, self.policy.watchdog_pet) {
            if at >= next {
                if self.healthy_now() {
                    out.push(Action::PetWatchdog);
                }
                self.next_pet = Some(at + every);
            }
        }
        if !matches!(self.state, State::Stopping { .. }) {
            self.units.tick(at, out);
        }
        let every = self.policy.health_every;
        match &mut self.state {
            State::Waiting { until } if at >= *until => {
                self.state = State::Spawning;
                out.push(Action::Spawn);
            }
            State::Running {
                healthy,
                next_probe,
                ..
            } if at >= *next_probe && (!*healthy || every.is_some()) => {
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
                        self.stop_next(power, at, out);
                    }
                    Phase::Services { pid } => {
                        out.push(log(
                            Level::Warning,
                            format!("shutdown: pid {pid} still runs after its grace; SIGKILL"),
                        ));
                        out.push(Action::Kill {
                            pid,
                            signal: Kill::Kill,
                        });
                        self.units.forget(pid);
                        self.stop_next(power, at, out);
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
        if self.units.exited(pid, exit, at, out) {
            if let State::Stopping {
                power,
                phase: Phase::Services { pid: p },
                ..
            } = self.state
            {
                if p == pid {
                    self.stop_next(power, at, out);
                }
            }
            self.reach(at, out);
            return;
        }
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
                self.stop_next(power, at, out);
            }
            _ => out.push(log(Level::Debug, format!("reaped pid {pid}: {exit}"))),
        }
    }

    /// The program is gone after running for `ran`: restart later or give up.
    fn died(&mut self, ran: Duration, last: String, at: Duration, out: &mut Vec<Action>) {
        // Health did not hold: it has to be reached again and hold from then on.
        self.holds_at = None;
        self.answered = None;
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
        self.holds_at = None;
        self.units.stop_all();
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
            _ => self.stop_next(power, at, out),
        }
    }

    /// Stops the last service in order that still runs (its stop signal, up to its
    /// grace); with none left, every other process.
    fn stop_next(&mut self, power: Power, at: Duration, out: &mut Vec<Action>) {
        let Some((pid, service)) = self.units.last_running() else {
            return self.term_all(power, at, out);
        };
        out.push(log(
            Level::Info,
            format!(
                "shutdown: {} to service {} (pid {pid}), up to {}",
                service.stop.name(),
                service.name,
                secs(service.grace)
            ),
        ));
        out.push(Action::Kill {
            pid,
            signal: service.stop,
        });
        self.state = State::Stopping {
            power,
            phase: Phase::Services { pid },
            deadline: at + service.grace,
        };
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
pub(super) fn secs(d: Duration) -> String {
    crate::infra::timeline::duration(d)
}
