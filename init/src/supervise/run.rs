//! The supervisor's loop: feeds the [`Machine`] events from a [`System`] and performs the
//! actions it asks for, until a clean shutdown or until the program keeps dying.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::machine::{secs, Action, Config, Event, GaveUp, Machine, Power};
use super::service::Ready;
use super::system::{RealSystem, Reaped, System};
use crate::health;
use crate::infra::kmsg::{self, Level};
use crate::infra::watchdog::Watchdog;

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

/// What [`run`] tells its caller about the program's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health<'a> {
    /// The program answered for the first time since it was (re)started.
    Reached { version: &'a str },
    /// Health has held for this long since it was reached (once per run).
    Held { after: Duration },
}

/// Supervises `config.program` until a shutdown signal (returns the [`Power`] action taken,
/// which only a test double survives) or until the program keeps dying (the error goes to
/// [`crate::infra::failure::fail`]). `on_health` runs each time the program first answers
/// after a (re)start, and once when that health has held for [`Policy::health_holds`](super::machine::Policy::health_holds).
pub fn run<S: System>(
    sys: &mut S,
    config: &Config,
    on_health: &mut dyn FnMut(Health<'_>),
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
    on_health: &mut dyn FnMut(Health<'_>),
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
        Action::SpawnService { index } => {
            let result = match config.services.get(index) {
                Some(s) => sys.spawn(&s.program).map_err(|e| e.to_string()),
                None => Err("no such service".to_owned()),
            };
            let at = sys.now();
            events.push_back(Event::ServiceSpawned { index, result, at });
        }
        Action::CheckService { index } => {
            let ready = config.services.get(index).map(|s| &s.ready);
            let result = match ready {
                Some(Ready::Socket(path)) => sys.check(path, false),
                Some(Ready::Grpc(path)) => sys.check(path, true),
                Some(Ready::Command(program)) => match sys.spawn(program) {
                    Ok(pid) => {
                        events.push_back(Event::ServiceCheckStarted { index, pid });
                        return None;
                    }
                    Err(e) => Err(format!("starting {}: {e}", program.path.display())),
                },
                Some(Ready::Started) | None => Ok(()),
            };
            let at = sys.now();
            events.push_back(Event::ServiceChecked { index, result, at });
        }
        Action::Probe => {
            let result = sys.probe();
            let at = sys.now();
            events.push_back(match result {
                Ok(version) => Event::Healthy { version, at },
                Err(error) => Event::Unhealthy { error, at },
            });
        }
        Action::HealthReached { version } => on_health(Health::Reached { version: &version }),
        Action::HealthHeld { after } => on_health(Health::Held { after }),
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
    on_health: &mut dyn FnMut(Health<'_>),
) -> Result<Power, SuperviseError> {
    if let Err(e) = super::signals::disable_ctrl_alt_del() {
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
    let buttons = sys.power_buttons();
    if buttons.is_empty() {
        kmsg::info("no power button among the input devices: shutdown on SIGTERM or SIGPWR");
    } else {
        kmsg::info(&format!(
            "power button: /dev/input/{}",
            crate::infra::join(&buttons, ", /dev/input/")
        ));
    }
    run(&mut sys, &config, on_health)
}
