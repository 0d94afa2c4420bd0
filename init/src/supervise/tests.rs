//! The supervisor driven through its loop by a fake system (processes with scripted
//! lifetimes, signals at set times, a clock that jumps to the next deadline), and the
//! machine alone where a test needs one event at a time.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::machine::*;
use super::run::*;
use super::system::*;
use crate::infra::kmsg::Level;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(unmount: &[&str]) -> Config {
    Config {
        program: Program::containerd(),
        policy: Policy::default(),
        unmount: unmount.iter().map(PathBuf::from).collect(),
        services: Vec::new(),
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
    /// Socket checks pass from the first time until the second.
    check_window: (Duration, Duration),
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
            check_window: (Duration::ZERO, Duration::MAX),
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

    fn check(&mut self, socket: &Path, _grpc: bool) -> Result<(), String> {
        self.op(format!("check {}", socket.display()));
        if self.now >= self.check_window.0 && self.now < self.check_window.1 {
            Ok(())
        } else {
            Err("connecting: Connection refused".into())
        }
    }

    fn kill(&mut self, pid: i32, signal: Kill) -> io::Result<()> {
        self.op(format!("kill {pid} {}", signal.name()));
        let now = self.now;
        if let Some(p) = self.procs.iter_mut().find(|p| p.pid == pid && !p.reaped) {
            let after = match signal {
                Kill::Kill => Some(Duration::ZERO),
                _ => p.term_after,
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
    let result = run(fake, config, &mut |h| {
        healthy.push(match h {
            Health::Reached { version } => format!("healthy {version}"),
            Health::Held { after } => format!("held {}", after.as_millis()),
        })
    });
    let mut ops = fake.ops.clone();
    ops.extend(healthy);
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
        let (result, ops) = simulate(&mut fake, &config(&["/local", "/local/var", "/local/opt"]));
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

/// Health that holds for `health_holds` is reported once; a death before that starts the
/// wait over from the next answer; a shutdown cancels it.
#[test]
fn health_that_holds_is_reported_once() {
    let mut c = config(&[]);
    c.policy.health_holds = Some(Duration::from_secs(5));
    let mut m = Machine::new(&c);
    m.handle(Event::Tick { at: ms(0) });
    m.handle(Event::Spawned {
        pid: 100,
        at: ms(0),
    });
    let healthy = |m: &mut Machine, at| {
        effects(m.handle(Event::Healthy {
            version: "2".into(),
            at,
        }))
    };
    assert_eq!(
        healthy(&mut m, ms(300)),
        [Action::HealthReached {
            version: "2".into()
        }]
    );
    assert_eq!(m.next_wake(), Some(ms(5300)));
    // It dies at 2 s: the wait is over; the restart answers at 3.8 s.
    m.handle(Event::Exited {
        pid: 100,
        exit: Exit::Code(1),
        at: ms(2000),
    });
    assert_eq!(m.next_wake(), Some(ms(2500)), "only the restart is due");
    assert_eq!(
        effects(m.handle(Event::Tick { at: ms(2500) })),
        [Action::Spawn]
    );
    m.handle(Event::Spawned {
        pid: 101,
        at: ms(2500),
    });
    assert_eq!(
        effects(m.handle(Event::Tick { at: ms(5300) })),
        [Action::Probe]
    );
    healthy(&mut m, ms(3800));
    assert_eq!(m.next_wake(), Some(ms(8800)));
    assert_eq!(effects(m.handle(Event::Tick { at: ms(8799) })), []);
    assert_eq!(
        effects(m.handle(Event::Tick { at: ms(8800) })),
        [Action::HealthHeld {
            after: Duration::from_secs(5)
        }]
    );
    // Once: a later death and answer do not report it again.
    m.handle(Event::Exited {
        pid: 101,
        exit: Exit::Code(1),
        at: ms(20_000),
    });
    m.handle(Event::Tick { at: ms(20_500) });
    m.handle(Event::Spawned {
        pid: 102,
        at: ms(20_500),
    });
    healthy(&mut m, ms(20_800));
    assert_eq!(m.next_wake(), None);

    // A shutdown before it holds cancels it.
    let mut m = Machine::new(&c);
    m.handle(Event::Tick { at: ms(0) });
    m.handle(Event::Spawned {
        pid: 100,
        at: ms(0),
    });
    healthy(&mut m, ms(300));
    m.handle(Event::Signal {
        signal: Signal::Term,
        at: ms(1000),
    });
    assert_eq!(m.next_wake(), Some(ms(1000) + c.policy.stop_timeout));
}

// Declared services (`service.rs`).

use super::service::{self, ParseError, Ready, Service};

fn service(name: &str, text: &str) -> Service {
    service::parse(Path::new(name), text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_service_file_is_parsed() {
    let s = service(
        "/etc/liftoff/services/10-dhcp",
        "# DHCP\n\ncommand = /usr/sbin/dhcpcd -B  -4 eth0\nrequired=yes\nrestart=yes\n\
         ready=command:/usr/bin/awk {exit!0} /proc/net/route\nstop_signal=INT\nstop_grace=3\n",
    );
    assert_eq!(s.name, "10-dhcp");
    assert_eq!(s.program.path, PathBuf::from("/usr/sbin/dhcpcd"));
    assert_eq!(s.program.args, ["-B", "-4", "eth0"]);
    assert!(s.required && s.restart);
    let Ready::Command(check) = &s.ready else {
        panic!("{:?}", s.ready)
    };
    assert_eq!(check.args, ["{exit!0}", "/proc/net/route"]);
    assert_eq!(s.stop, Kill::Int);
    assert_eq!(s.grace, Duration::from_secs(3));
    let d = service("d", "command=/bin/d\nafter=c\nready=socket:/run/d.sock");
    assert_eq!(d.after.as_deref(), Some("c"));
    assert_eq!(d.ready, Ready::Socket("/run/d.sock".into()));
    assert!(!d.required && d.restart && d.stop == Kill::Term && !d.host_args);
    assert_eq!(d.grace, Duration::from_secs(10));
    assert!(service("h", "command=/bin/h\nhost_args=yes").host_args);
    let g = service(
        "g",
        "command=/bin/g\nready=grpc:/run/g.sock\nstop_signal=SIGUSR2",
    );
    assert_eq!(g.ready, Ready::Grpc("/run/g.sock".into()));
    assert_eq!(g.stop, Kill::Usr2);
}

#[test]
fn every_bad_line_is_refused_with_its_file_and_line() {
    for (text, line, says) in [
        ("command=/bin/x\nnonsense", 2, "nonsense: not key=value"),
        ("command=bin/x", 1, "absolute path"),
        ("command=", 1, "command=: empty command"),
        (
            "command=/bin/x\nrequired=maybe",
            2,
            "required=maybe: yes or no",
        ),
        ("command=/bin/x\n\nrestart=1", 3, "yes or no"),
        ("command=/bin/x\nready=tcp:80", 2, "socket:PATH"),
        ("command=/bin/x\nready=socket:run/x", 2, "absolute path"),
        ("command=/bin/x\nready=command:x", 2, "absolute path"),
        ("command=/bin/x\nstop_signal=STOP", 2, "TERM, INT"),
        ("command=/bin/x\nstop_grace=1.5", 2, "whole seconds"),
        ("command=/bin/x\nhost_args=1", 2, "host_args=1: yes or no"),
        ("command=/bin/x\nuser=root", 2, "user=root: unknown key"),
        ("# only a comment", 0, "no command= line"),
    ] {
        let e = service::parse(Path::new("/etc/liftoff/services/x"), text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.message.contains(says), "{text:?}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("service file /etc/liftoff/services/x:{line}: ")),
            "{e}"
        );
        assert!(e.to_string().ends_with("; service skipped"), "{e}");
    }
    let e: ParseError = service::parse(Path::new("/s/bad name"), "command=/bin/x").unwrap_err();
    assert_eq!(e.line, 0);
}

#[test]
fn a_directory_loads_in_name_order_and_skips_bad_files() {
    let dir = std::env::temp_dir().join(format!("liftoff-services-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("20-b", "command=/bin/b\nafter=10-a"),
        ("10-a", "command=/bin/a"),
        ("30-c", "command=/bin/c\nafter=40-d"),
        ("40-d", "command=/bin/d\nbogus"),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let (services, errors) = service::load(&dir);
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["10-a", "20-b"]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("30-c:0: after=40-d: no such service before it"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("40-d:2: bogus: not key=value"),
        "{errors:?}"
    );
    assert_eq!(service::load(&dir.join("none")), (Vec::new(), Vec::new()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// PRIVATE's arguments reach only a service whose verified file opted in; every other
/// entry is one line naming its key.
#[test]
fn host_arguments_reach_only_services_that_take_them() {
    let mut services = vec![
        service("10-dhcp", "command=/usr/sbin/dhcpcd eth0"),
        service("20-agent", "command=/bin/agent --fixed\nhost_args=yes"),
    ];
    let args: Vec<(String, String)> = [
        ("20-agent", " --region  eu-1 -v "),
        ("10-dhcp", "--script /local/evil"),
        ("30-gone", "-x"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    let lines = service::add_host_args(&mut services, &args);
    assert_eq!(services[0].program.args, ["eth0"]);
    assert_eq!(
        services[1].program.args,
        ["--fixed", "--region", "eu-1", "-v"]
    );
    let want: Vec<(Level, String)> = [
        (
            Level::Info,
            "bootconfig: liftoff.service.20-agent.args=\" --region  eu-1 -v \": appended to its command",
        ),
        (
            Level::Warning,
            "bootconfig: liftoff.service.10-dhcp.args=\"--script /local/evil\": its service file \
             does not say host_args=yes, ignored",
        ),
        (
            Level::Warning,
            "bootconfig: liftoff.service.30-gone.args=\"-x\": no such service, ignored",
        ),
    ]
    .iter()
    .map(|(l, m)| (*l, (*m).to_owned()))
    .collect();
    assert_eq!(lines, want);
}

fn with_services(services: Vec<Service>) -> Config {
    Config {
        services,
        ..config(&[])
    }
}

/// Feeds `event` and returns the effects.
fn feed(m: &mut Machine, event: Event) -> Vec<Action> {
    effects(m.handle(event))
}

#[test]
fn services_start_in_order_after_readiness() {
    let mut fake = Fake::new(vec![None, None, None]);
    fake.check_window = (ms(1000), Duration::MAX);
    fake.signals = vec![(ms(3000), Signal::Term)];
    let config = with_services(vec![
        service(
            "a",
            "command=/bin/a\nready=socket:/run/a.sock\nrequired=yes",
        ),
        service("b", "command=/bin/b\nafter=a"),
    ]);
    let (result, ops) = simulate(&mut fake, &config);
    assert_eq!(result.unwrap(), Power::Off);
    let spawns: Vec<&String> = ops.iter().filter(|o| o.contains("spawn")).collect();
    // a and containerd at once; b only once a's socket accepts (1 s).
    assert_eq!(spawns.len(), 3, "{ops:#?}");
    assert!(spawns[0].ends_with("spawn 100") && spawns[0].trim().starts_with("0 "));
    assert!(spawns[1].ends_with("spawn 101") && spawns[1].trim().starts_with("0 "));
    assert_eq!(spawns[2].trim(), "1000 spawn 102", "{ops:#?}");
    // Health waits for the required service: containerd answered at 300 ms.
    let health = fake
        .logs
        .iter()
        .position(|(_, l)| l.contains("service a (pid 100) is ready 1 s"))
        .unwrap();
    assert!(fake
        .logs
        .iter()
        .any(|(_, l)| l.contains("containerd (pid 101) is healthy")));
    assert!(health > 0);
}

#[test]
fn health_waits_for_required_services_and_is_checked_for_as_long_as_they_run() {
    let policy = Policy {
        watchdog_pet: Some(ms(1000)),
        health_every: Some(ms(1000)),
        ..Policy::default()
    };
    let config = Config {
        policy,
        ..with_services(vec![service(
            "net",
            "command=/bin/net\nready=socket:/run/net\nrequired=yes",
        )])
    };
    let mut m = Machine::new(&config);
    let start = feed(&mut m, Event::Tick { at: ms(0) });
    assert_eq!(start, [Action::SpawnService { index: 0 }, Action::Spawn]);
    feed(
        &mut m,
        Event::ServiceSpawned {
            index: 0,
            result: Ok(200),
            at: ms(0),
        },
    );
    feed(
        &mut m,
        Event::Spawned {
            pid: 300,
            at: ms(0),
        },
    );
    let healthy = Event::Healthy {
        version: "1.6".into(),
        at: ms(100),
    };
    assert_eq!(
        feed(&mut m, healthy),
        [],
        "containerd answers, the service is not ready"
    );
    assert_eq!(
        feed(&mut m, Event::Tick { at: ms(100) }),
        [Action::CheckService { index: 0 }]
    );
    let ready = |at| Event::ServiceChecked {
        index: 0,
        result: Ok(()),
        at,
    };
    let failed = |at| Event::ServiceChecked {
        index: 0,
        result: Err("refused".into()),
        at,
    };
    assert_eq!(feed(&mut m, failed(ms(100))), []);
    feed(&mut m, Event::Tick { at: ms(200) });
    assert_eq!(
        feed(&mut m, ready(ms(200))),
        [
            Action::HealthReached {
                version: "1.6".into()
            },
            Action::PetWatchdog
        ]
    );
    // Checked again every second, and the watchdog petted while both hold.
    assert_eq!(m.next_wake(), Some(ms(1100)));
    assert_eq!(feed(&mut m, Event::Tick { at: ms(1100) }), [Action::Probe]);
    feed(
        &mut m,
        Event::Healthy {
            version: "1.6".into(),
            at: ms(1100),
        },
    );
    assert_eq!(
        feed(&mut m, Event::Tick { at: ms(1200) }),
        [Action::PetWatchdog, Action::CheckService { index: 0 }]
    );
    // The service stops answering: no more petting until it answers again.
    feed(&mut m, failed(ms(1200)));
    assert!(!m
        .handle(Event::Tick { at: ms(2200) })
        .contains(&Action::PetWatchdog));
    feed(&mut m, failed(ms(2200)));
    let t = feed(&mut m, Event::Tick { at: ms(3200) });
    assert!(!t.contains(&Action::PetWatchdog), "{t:?}");
    // containerd stops answering too: same.
    feed(&mut m, ready(ms(3200)));
    feed(
        &mut m,
        Event::Unhealthy {
            error: "gone".into(),
            at: ms(3200),
        },
    );
    let t = feed(&mut m, Event::Tick { at: ms(4200) });
    assert!(!t.contains(&Action::PetWatchdog), "{t:?}");
    feed(
        &mut m,
        Event::Healthy {
            version: "1.6".into(),
            at: ms(4200),
        },
    );
    let t = feed(&mut m, Event::Tick { at: ms(5200) });
    assert!(t.contains(&Action::PetWatchdog), "{t:?}");
}

#[test]
fn a_readiness_command_passes_on_exit_status_zero() {
    let config = with_services(vec![service(
        "net",
        "command=/bin/net\nready=command:/bin/check",
    )]);
    let mut m = Machine::new(&config);
    feed(&mut m, Event::Tick { at: ms(0) });
    feed(
        &mut m,
        Event::ServiceSpawned {
            index: 0,
            result: Ok(200),
            at: ms(0),
        },
    );
    assert_eq!(
        feed(&mut m, Event::Tick { at: ms(0) }),
        [Action::CheckService { index: 0 }]
    );
    feed(&mut m, Event::ServiceCheckStarted { index: 0, pid: 201 });
    let out = m.handle(Event::Exited {
        pid: 201,
        exit: Exit::Code(1),
        at: ms(50),
    });
    assert!(!out
        .iter()
        .any(|a| matches!(a, Action::Log { message, .. } if message.contains("is ready"))));
    // A check that hangs past its interval is killed and counts as failed.
    feed(&mut m, Event::Tick { at: ms(150) });
    feed(&mut m, Event::ServiceCheckStarted { index: 0, pid: 202 });
    assert_eq!(
        feed(&mut m, Event::Tick { at: ms(250) }),
        [
            Action::Kill {
                pid: 202,
                signal: Kill::Kill
            },
            Action::CheckService { index: 0 }
        ]
    );
    feed(&mut m, Event::ServiceCheckStarted { index: 0, pid: 203 });
    let out = m.handle(Event::Exited {
        pid: 203,
        exit: Exit::Code(0),
        at: ms(260),
    });
    assert!(
        out.iter().any(|a| matches!(a, Action::Log { message, .. } if message == "service net (pid 200) is ready 260 ms after its start")),
        "{out:?}"
    );
}

#[test]
fn services_restart_with_back_off_and_only_required_ones_end_supervision() {
    for required in [false, true] {
        let text = format!(
            "command=/bin/x\nrequired={}",
            if required { "yes" } else { "no" }
        );
        let config = with_services(vec![service("x", &text)]);
        let mut m = Machine::new(&config);
        feed(&mut m, Event::Tick { at: ms(0) });
        let mut at = ms(0);
        let mut starts = Vec::new();
        let mut last = Vec::new();
        for pid in 200..205 {
            starts.push(at.as_millis());
            feed(
                &mut m,
                Event::ServiceSpawned {
                    index: 0,
                    result: Ok(pid),
                    at,
                },
            );
            at += ms(100);
            last = feed(
                &mut m,
                Event::Exited {
                    pid,
                    exit: Exit::Code(1),
                    at,
                },
            );
            if let Some(next) = m.next_wake() {
                if next > at {
                    at = next;
                }
            }
            let _ = feed(&mut m, Event::Tick { at });
        }
        // Back-off 0.5, 1, 2, 4 s after each 100 ms run; the fifth fast death gives up.
        assert_eq!(starts, [0, 600, 1700, 3800, 7900]);
        let gave_up = last.iter().any(|a| matches!(a, Action::GiveUp { .. }));
        assert_eq!(gave_up, required, "{last:?}");
    }
    // restart=no: left stopped. A one-shot that exits 0 finished (one info line); any
    // other end is an error and a warning that it stays stopped.
    for (exit, said) in [
        (
            Exit::Code(0),
            vec![(
                Level::Info,
                "service x (pid 200) finished after 1.5 s: exit status 0",
            )],
        ),
        (
            Exit::Code(1),
            vec![
                (
                    Level::Err,
                    "service x (pid 200) ended after 1.5 s: exit status 1",
                ),
                (Level::Warning, "service x: restart=no, left stopped"),
            ],
        ),
    ] {
        let config = with_services(vec![service("x", "command=/bin/x\nrestart=no")]);
        let mut m = Machine::new(&config);
        feed(&mut m, Event::Tick { at: ms(0) });
        feed(
            &mut m,
            Event::ServiceSpawned {
                index: 0,
                result: Ok(200),
                at: ms(0),
            },
        );
        let logs: Vec<(Level, String)> = m
            .handle(Event::Exited {
                pid: 200,
                exit,
                at: ms(1500),
            })
            .into_iter()
            .filter_map(|a| match a {
                Action::Log { level, message } => Some((level, message)),
                _ => None,
            })
            .collect();
        let want: Vec<(Level, String)> = said.iter().map(|(l, m)| (*l, (*m).to_owned())).collect();
        assert_eq!(logs, want);
        assert_eq!(feed(&mut m, Event::Tick { at: ms(60_000) }), []);
    }
}

#[test]
fn shutdown_stops_services_in_reverse_order_with_their_signal_then_sigkill() {
    let config = with_services(vec![
        service("a", "command=/bin/a"),
        service(
            "b",
            "command=/bin/b\nafter=a\nstop_signal=INT\nstop_grace=3",
        ),
    ]);
    let mut m = Machine::new(&config);
    feed(&mut m, Event::Tick { at: ms(0) });
    feed(
        &mut m,
        Event::ServiceSpawned {
            index: 0,
            result: Ok(200),
            at: ms(0),
        },
    );
    feed(
        &mut m,
        Event::Spawned {
            pid: 300,
            at: ms(0),
        },
    );
    assert_eq!(
        feed(&mut m, Event::Tick { at: ms(0) }),
        [Action::SpawnService { index: 1 }]
    );
    feed(
        &mut m,
        Event::ServiceSpawned {
            index: 1,
            result: Ok(201),
            at: ms(0),
        },
    );
    let t = ms(1000);
    assert_eq!(
        feed(
            &mut m,
            Event::Signal {
                signal: Signal::Term,
                at: t
            }
        ),
        [Action::Kill {
            pid: 300,
            signal: Kill::Term
        }]
    );
    assert_eq!(
        feed(
            &mut m,
            Event::Exited {
                pid: 300,
                exit: Exit::Code(0),
                at: t
            }
        ),
        [Action::Kill {
            pid: 201,
            signal: Kill::Int
        }]
    );
    // b ignores SIGINT: SIGKILL after its 3 s grace, then a gets its SIGTERM.
    assert_eq!(m.next_wake(), Some(ms(4000)));
    assert_eq!(feed(&mut m, Event::Tick { at: ms(3999) }), []);
    assert_eq!(
        feed(&mut m, Event::Tick { at: ms(4000) }),
        [
            Action::Kill {
                pid: 201,
                signal: Kill::Kill
            },
            Action::Kill {
                pid: 200,
                signal: Kill::Term
            }
        ]
    );
    assert_eq!(
        feed(
            &mut m,
            Event::Exited {
                pid: 200,
                exit: Exit::Code(0),
                at: ms(4100)
            }
        ),
        [Action::KillAll { signal: Kill::Term }]
    );
    // A service that died during the shutdown is not restarted.
    assert_eq!(
        feed(&mut m, Event::Tick { at: ms(60_000) }).last(),
        Some(&Action::KillAll { signal: Kill::Kill })
    );
}

#[test]
fn an_answer_from_a_containerd_that_died_since_does_not_count() {
    let config = with_services(vec![service(
        "net",
        "command=/bin/net\nready=socket:/run/net\nrequired=yes",
    )]);
    let mut m = Machine::new(&config);
    feed(&mut m, Event::Tick { at: ms(0) });
    feed(
        &mut m,
        Event::ServiceSpawned {
            index: 0,
            result: Ok(200),
            at: ms(0),
        },
    );
    feed(
        &mut m,
        Event::Spawned {
            pid: 300,
            at: ms(0),
        },
    );
    feed(
        &mut m,
        Event::Healthy {
            version: "1.6".into(),
            at: ms(100),
        },
    );
    feed(
        &mut m,
        Event::Exited {
            pid: 300,
            exit: Exit::Code(1),
            at: ms(150),
        },
    );
    let ready = Event::ServiceChecked {
        index: 0,
        result: Ok(()),
        at: ms(200),
    };
    assert_eq!(feed(&mut m, ready), []);
}
