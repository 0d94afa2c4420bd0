//! Services declared in the verified root (`/etc/liftoff/services/NAME`, docs/services.md):
//! the parser of their files, and [`Units`], the part of the state machine that starts them
//! in order, checks their readiness for as long as they run, restarts them with back-off
//! and stops them in reverse order. Pure, like [`super::machine`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::machine::{secs, Action, GaveUp, Kill, Policy, Program, DEFAULT_PATH};
use crate::infra::kmsg::Level;

/// Where the root declares its services, one file per service, started in file-name order.
pub const SERVICES_DIR: &str = "/etc/liftoff/services";

/// How a service shows it is ready (and stays healthy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Ready once started.
    Started,
    /// A unix stream socket that accepts a connection.
    Socket(PathBuf),
    /// containerd's gRPC Version call answers on this socket.
    Grpc(PathBuf),
    /// This command exits with status 0.
    Command(Program),
}

/// One declared service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub program: Program,
    /// Started only once this service has been ready.
    pub after: Option<String>,
    /// Health of the host needs this one ready; giving up on it ends supervision.
    pub required: bool,
    /// Restarted when it ends (else left stopped).
    pub restart: bool,
    pub ready: Ready,
    pub stop: Kill,
    pub grace: Duration,
    /// `host_args=yes`: takes arguments from PRIVATE's bootconfig ([`add_host_args`]).
    pub host_args: bool,
}

/// A line of a service file that is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: PathBuf,
    /// 0: the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "service file {}:{}: {}; service skipped",
            self.file.display(),
            self.line,
            self.message
        )
    }
}

fn argv(value: &str) -> Result<Program, &'static str> {
    let mut words = value.split_ascii_whitespace();
    let path = words.next().ok_or("empty command")?;
    absolute(path)?;
    Ok(Program {
        path: path.into(),
        args: words.map(Into::into).collect(),
        env: vec![("PATH".into(), DEFAULT_PATH.into())],
    })
}

fn absolute(value: &str) -> Result<PathBuf, &'static str> {
    if value.starts_with('/') {
        Ok(value.into())
    } else {
        Err("not an absolute path")
    }
}

fn yes_no(value: &str) -> Result<bool, &'static str> {
    match value {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("yes or no"),
    }
}

/// Parses the file `file` (the service is named after it) holding `text`.
pub fn parse(file: &Path, text: &str) -> Result<Service, ParseError> {
    let err = |line, message: String| ParseError {
        file: file.to_owned(),
        line,
        message,
    };
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .ok_or_else(|| err(0, "a service name is letters, digits, - _ .".into()))?
        .to_owned();
    let mut program = None;
    let mut service = Service {
        name,
        program: Program::containerd(),
        after: None,
        required: false,
        restart: true,
        ready: Ready::Started,
        stop: Kill::Term,
        grace: Duration::from_secs(10),
        host_args: false,
    };
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let value = value.trim();
        let r = match key.trim() {
            _ if !line.contains('=') => Err("not key=value"),
            "command" => argv(value).map(|p| program = Some(p)),
            "after" if !value.is_empty() => {
                service.after = Some(value.to_owned());
                Ok(())
            }
            "required" => yes_no(value).map(|v| service.required = v),
            "restart" => yes_no(value).map(|v| service.restart = v),
            "host_args" => yes_no(value).map(|v| service.host_args = v),
            "ready" => match value.split_once(':') {
                _ if value == "started" => Ok(Ready::Started),
                Some(("socket", p)) => absolute(p).map(Ready::Socket),
                Some(("grpc", p)) => absolute(p).map(Ready::Grpc),
                Some(("command", c)) => argv(c).map(Ready::Command),
                _ => Err("started, socket:PATH, grpc:PATH or command:ARGV"),
            }
            .map(|r| service.ready = r),
            "stop_signal" => Kill::from_name(value)
                .ok_or("TERM, INT, HUP, QUIT, USR1, USR2 or KILL")
                .map(|s| service.stop = s),
            "stop_grace" => value
                .parse()
                .map(|s| service.grace = Duration::from_secs(s))
                .map_err(|_| "whole seconds"),
            _ => Err("unknown key"),
        };
        r.map_err(|m| err(n + 1, format!("{line}: {m}")))?;
    }
    service.program = program.ok_or_else(|| err(0, "no command= line".into()))?;
    Ok(service)
}

/// Reads every file in `dir` in name order. Returns the services and one error per file
/// refused (also a service whose `after=` names no earlier service, so order is a line).
/// A missing directory is no services.
pub fn load(dir: &Path) -> (Vec<Service>, Vec<String>) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    // Insertion sort: a handful of files, and no sort code instantiated for PID 1.
    for i in 1..names.len() {
        let mut j = i;
        while j > 0 && names.get(j - 1).map(|p| p.as_os_str()) > names.get(j).map(|p| p.as_os_str())
        {
            names.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut services: Vec<Service> = Vec::new();
    let mut errors = Vec::new();
    for file in names {
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| format!("service file {}: {e}; service skipped", file.display()))
            .and_then(|text| parse(&file, &text).map_err(|e| e.to_string()));
        match parsed {
            Ok(s) => match &s.after {
                Some(a) if !services.iter().any(|e| &e.name == a) => errors.push(
                    ParseError {
                        file,
                        line: 0,
                        message: format!("after={a}: no such service before it"),
                    }
                    .to_string(),
                ),
                _ => services.push(s),
            },
            Err(e) => errors.push(e),
        }
    }
    (services, errors)
}

/// Appends the words of PRIVATE's `liftoff.service.NAME.args` (`args`: NAME and the value,
/// checked by the settings stage) to the argv of each service NAME that declared
/// `host_args=yes`. Returns one line to log per entry: taken, or ignored and why.
pub fn add_host_args(services: &mut [Service], args: &[(String, String)]) -> Vec<(Level, String)> {
    let mut lines = Vec::new();
    for (name, value) in args {
        let (level, what) = match services.iter_mut().find(|s| &s.name == name) {
            Some(s) if s.host_args => {
                s.program
                    .args
                    .extend(value.split_ascii_whitespace().map(Into::into));
                (Level::Info, "appended to its command")
            }
            Some(_) => (
                Level::Warning,
                "its service file does not say host_args=yes, ignored",
            ),
            None => (Level::Warning, "no such service, ignored"),
        };
        lines.push((
            level,
            format!("bootconfig: liftoff.service.{name}.args={value:?}: {what}"),
        ));
    }
    lines
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for its `after=` service to be ready.
    Blocked,
    Waiting {
        until: Duration,
    },
    Spawning,
    Running {
        pid: i32,
        started: Duration,
        ready: bool,
        next_check: Duration,
        /// The pid of a running readiness command.
        check: Option<i32>,
    },
    /// Ended for good: no restart, gave up, or stopped at shutdown.
    Stopped,
}

#[derive(Debug, Clone)]
struct Unit {
    state: State,
    ever_ready: bool,
    fast_deaths: u32,
    backoff: Duration,
    last_error: Option<String>,
}

/// The declared services' state: pure, driven by [`super::Machine`].
#[derive(Debug, Clone)]
pub struct Units {
    services: Vec<Service>,
    units: Vec<Unit>,
    policy: Policy,
    stopping: bool,
}

impl Units {
    pub fn new(services: &[Service], policy: Policy) -> Self {
        Units {
            services: services.to_vec(),
            units: services
                .iter()
                .map(|s| Unit {
                    state: if s.after.is_some() {
                        State::Blocked
                    } else {
                        State::Waiting {
                            until: Duration::ZERO,
                        }
                    },
                    ever_ready: false,
                    fast_deaths: 0,
                    backoff: policy.backoff_first,
                    last_error: None,
                })
                .collect(),
            policy,
            stopping: false,
        }
    }

    /// Every required service is ready now.
    pub fn required_ready(&self) -> bool {
        self.services
            .iter()
            .zip(&self.units)
            .all(|(s, u)| !s.required || matches!(u.state, State::Running { ready: true, .. }))
    }

    pub fn next_wake(&self) -> Option<Duration> {
        self.units
            .iter()
            .filter_map(|u| match u.state {
                State::Waiting { until } => Some(until),
                State::Running { next_check, .. } => Some(next_check),
                _ => None,
            })
            .min()
    }

    pub fn tick(&mut self, at: Duration, out: &mut Vec<Action>) {
        for (index, u) in self.units.iter_mut().enumerate() {
            match &mut u.state {
                State::Waiting { until } if at >= *until && !self.stopping => {
                    u.state = State::Spawning;
                    out.push(Action::SpawnService { index });
                }
                State::Running {
                    next_check, check, ..
                } if at >= *next_check => {
                    if let Some(pid) = check.take() {
                        // The last check did not finish within its interval: a failure.
                        out.push(Action::Kill {
                            pid,
                            signal: Kill::Kill,
                        });
                    }
                    *next_check = at + self.policy.probe_every;
                    out.push(Action::CheckService { index });
                }
                _ => {}
            }
        }
    }

    fn name(&self, index: usize) -> &str {
        self.services.get(index).map_or("?", |s| s.name.as_str())
    }

    pub fn spawned(
        &mut self,
        index: usize,
        result: Result<i32, String>,
        at: Duration,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let name = self.name(index).to_owned();
        let Some(u) = self.units.get_mut(index) else {
            return out;
        };
        if u.state != State::Spawning {
            return out;
        }
        match result {
            Ok(pid) => {
                out.push(log(
                    Level::Info,
                    format!("service {name}: started (pid {pid})"),
                ));
                if self.stopping {
                    out.push(Action::Kill {
                        pid,
                        signal: Kill::Kill,
                    });
                    u.state = State::Stopped;
                    return out;
                }
                u.state = State::Running {
                    pid,
                    started: at,
                    ready: false,
                    next_check: at,
                    check: None,
                };
                self.checked(index, None, at, &mut out);
            }
            Err(e) => {
                out.push(log(Level::Err, format!("service {name}: starting it: {e}")));
                self.died(index, Duration::ZERO, e, at, &mut out);
            }
        }
        out
    }

    /// A readiness command started (`Ok(pid)`), or a check ended (`Err` for a failure).
    pub fn check_started(&mut self, index: usize, pid: i32) {
        if let Some(Unit {
            state: State::Running { check, .. },
            ..
        }) = self.units.get_mut(index)
        {
            *check = Some(pid);
        }
    }

    /// A readiness check's result: `None` is a pass for [`Ready::Started`]'s implicit check
    /// at the start; `Some(Ok)` a pass, `Some(Err)` a failure.
    pub fn checked(
        &mut self,
        index: usize,
        result: Option<Result<(), String>>,
        at: Duration,
        out: &mut Vec<Action>,
    ) {
        let started_ready = self
            .services
            .get(index)
            .is_some_and(|s| s.ready == Ready::Started);
        let result = match result {
            Some(r) => r,
            None if started_ready => Ok(()),
            None => return,
        };
        let name = self.name(index).to_owned();
        let every = self.policy.health_every.unwrap_or(self.policy.probe_every);
        let probe = self.policy.probe_every;
        let Some(u) = self.units.get_mut(index) else {
            return;
        };
        let State::Running {
            pid,
            started,
            ready,
            next_check,
            check,
        } = &mut u.state
        else {
            return;
        };
        *check = None;
        match result {
            Ok(()) => {
                if !*ready {
                    out.push(log(
                        Level::Info,
                        format!(
                            "service {name} (pid {pid}) is ready {} after its start",
                            secs(at.saturating_sub(*started))
                        ),
                    ));
                }
                *ready = true;
                u.ever_ready = true;
                u.last_error = None;
                *next_check = if started_ready {
                    Duration::MAX
                } else {
                    at + every
                };
                // Start what waited for it.
                for (s, w) in self.services.iter().zip(self.units.iter_mut()) {
                    if w.state == State::Blocked && s.after.as_deref() == Some(name.as_str()) {
                        w.state = State::Waiting { until: at };
                    }
                }
            }
            Err(e) => {
                if *ready {
                    out.push(log(
                        Level::Err,
                        format!("service {name} (pid {pid}) is no longer healthy: {e}"),
                    ));
                } else if u.last_error.as_deref() != Some(e.as_str()) {
                    out.push(log(
                        Level::Debug,
                        format!("service {name} not ready yet: {e}"),
                    ));
                }
                *ready = false;
                *next_check = at + probe;
                u.last_error = Some(e);
            }
        }
    }

    /// A child was reaped; `false`: not one of the services' pids.
    pub fn exited(
        &mut self,
        pid: i32,
        exit: super::Exit,
        at: Duration,
        out: &mut Vec<Action>,
    ) -> bool {
        let found = self.units.iter().position(|u| match u.state {
            State::Running { pid: p, check, .. } => p == pid || check == Some(pid),
            _ => false,
        });
        let Some(index) = found else {
            return false;
        };
        let Some(State::Running {
            pid: main, started, ..
        }) = self.units.get(index).map(|u| u.state)
        else {
            return false;
        };
        if main != pid {
            let result = match exit {
                super::Exit::Code(0) => Ok(()),
                other => Err(format!("the readiness command ended with {other}")),
            };
            self.checked(index, Some(result), at, out);
            return true;
        }
        let ran = at.saturating_sub(started);
        let name = self.name(index).to_owned();
        if self.stopping {
            out.push(log(
                Level::Info,
                format!("shutdown: service {name} (pid {pid}) ended: {exit}"),
            ));
            if let Some(u) = self.units.get_mut(index) {
                u.state = State::Stopped;
            }
            return true;
        }
        // A one-shot (restart=no) that exits 0 has done its job: no error, no restart.
        let done =
            exit == super::Exit::Code(0) && self.services.get(index).is_some_and(|s| !s.restart);
        out.push(log(
            if done { Level::Info } else { Level::Err },
            format!(
                "service {name} (pid {pid}) {} after {}: {exit}",
                if done { "finished" } else { "ended" },
                secs(ran)
            ),
        ));
        match self.units.get_mut(index) {
            Some(u) if done => u.state = State::Stopped,
            _ => self.died(index, ran, exit.to_string(), at, out),
        }
        true
    }

    fn died(
        &mut self,
        index: usize,
        ran: Duration,
        last: String,
        at: Duration,
        out: &mut Vec<Action>,
    ) {
        let policy = self.policy;
        let Some(s) = self.services.get(index) else {
            return;
        };
        let Some(u) = self.units.get_mut(index) else {
            return;
        };
        if !s.restart {
            out.push(log(
                Level::Warning,
                format!("service {}: restart=no, left stopped", s.name),
            ));
            u.state = State::Stopped;
            return;
        }
        if ran >= policy.stable_after {
            u.fast_deaths = 0;
            u.backoff = policy.backoff_first;
        } else {
            u.fast_deaths = u.fast_deaths.saturating_add(1);
            if u.fast_deaths >= policy.give_up_after {
                u.state = State::Stopped;
                let error = GaveUp {
                    program: s.program.path.clone(),
                    deaths: u.fast_deaths,
                    within: policy.stable_after,
                    last,
                };
                if s.required {
                    out.push(Action::GiveUp { error });
                } else {
                    out.push(log(
                        Level::Err,
                        format!(
                            "service {} (optional): {error}; the host goes on without it",
                            s.name
                        ),
                    ));
                }
                return;
            }
        }
        let delay = u.backoff;
        u.backoff = (u.backoff * 2).min(policy.backoff_max);
        out.push(log(
            Level::Warning,
            format!(
                "restarting service {} in {} ({} fast deaths in a row, giving up at {})",
                s.name,
                secs(delay),
                u.fast_deaths,
                policy.give_up_after
            ),
        ));
        u.state = State::Waiting { until: at + delay };
    }

    /// Starts the shutdown: nothing starts or restarts from now on.
    pub fn stop_all(&mut self) {
        self.stopping = true;
        for u in &mut self.units {
            if !matches!(u.state, State::Running { .. }) {
                u.state = State::Stopped;
            }
        }
    }

    /// The last service in order that still runs: its pid, stop signal and grace.
    pub fn last_running(&self) -> Option<(i32, &Service)> {
        self.units
            .iter()
            .zip(&self.services)
            .rev()
            .find_map(|(u, s)| match u.state {
                State::Running { pid, .. } => Some((pid, s)),
                _ => None,
            })
    }

    /// Forgets a service that was sent SIGKILL at shutdown (it is reaped with the rest).
    pub fn forget(&mut self, pid: i32) {
        for u in &mut self.units {
            if matches!(u.state, State::Running { pid: p, .. } if p == pid) {
                u.state = State::Stopped;
            }
        }
    }
}

fn log(level: Level, message: String) -> Action {
    Action::Log { level, message }
}
