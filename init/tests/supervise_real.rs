//! The supervisor loop with real processes, signals and containerd, on this host.
//!
//! The loop is not PID 1 here, so the test process makes itself a child subreaper
//! (`prctl(PR_SET_CHILD_SUBREAPER)`): orphans of the supervised program are re-parented to
//! it as they would be to PID 1, and `kill_all` reaches only its descendants. Power off and
//! unmount are recorded, never done.
//!
//! No test harness (`harness = false` in Cargo.toml): the signals are blocked in the one
//! thread that reads them, and a harness thread would otherwise take the process-directed
//! ones (SIGCHLD, the program's `kill $PPID`).

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use liftoff_init::infra::kmsg::Level;
use liftoff_init::supervise::{
    self, Config, Kill, KillScope, Policy, Power, Program, RealSystem, Reaped, Signal,
    SuperviseError, System,
};

/// The real system, except that unmount and power are only written down; every other
/// effect is written down too, with the time since the start.
struct Recording {
    real: RealSystem,
    start: Instant,
    lines: Vec<String>,
    /// Time spent in the host's sync(2), which writes out whatever this host has dirty (the
    /// VM tests' disk images beside this test): not the supervisor's time.
    synced: Duration,
}

impl Recording {
    fn new(socket: PathBuf) -> Self {
        let real = RealSystem::new(socket, Duration::from_millis(500), None).unwrap();
        assert_eq!(real.kill_scope(), KillScope::Descendants);
        Recording {
            real,
            start: Instant::now(),
            lines: Vec::new(),
            synced: Duration::ZERO,
        }
    }

    fn note(&mut self, what: String) {
        let ms = self.start.elapsed().as_millis();
        eprintln!("{ms:>6} ms  {what}");
        self.lines.push(what);
    }

    /// The recorded lines that are not log lines.
    fn effects(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("log "))
            .collect()
    }
}

impl System for Recording {
    fn now(&mut self) -> Duration {
        self.real.now()
    }
    fn spawn(&mut self, program: &Program) -> io::Result<i32> {
        let r = self.real.spawn(program);
        self.note(format!("spawn {}", if r.is_ok() { "ok" } else { "failed" }));
        r
    }
    fn reap(&mut self) -> io::Result<Reaped> {
        self.real.reap()
    }
    fn wait(&mut self, until: Option<Duration>) -> io::Result<Vec<Signal>> {
        self.real.wait(until)
    }
    fn check(&mut self, socket: &std::path::Path, grpc: bool) -> Result<(), String> {
        self.real.check(socket, grpc)
    }

    fn probe(&mut self) -> Result<String, String> {
        self.real.probe()
    }
    fn kill(&mut self, pid: i32, signal: Kill) -> io::Result<()> {
        self.note(format!("kill program {signal:?}"));
        self.real.kill(pid, signal)
    }
    fn kill_all(&mut self, signal: Kill) -> io::Result<()> {
        let r = self.real.kill_all(signal);
        let found = match &r {
            Ok(()) => "some",
            Err(_) => "none",
        };
        self.note(format!("kill-all {signal:?} ({found})"));
        r
    }
    fn pet_watchdog(&mut self) -> io::Result<()> {
        self.note("pet".into());
        Ok(())
    }
    fn sync(&mut self) {
        self.note("sync".into());
        let t = Instant::now();
        self.real.sync();
        self.synced += t.elapsed();
    }
    fn unmount(&mut self, path: &Path) -> io::Result<()> {
        self.note(format!("unmount {}", path.display()));
        Ok(())
    }
    fn power(&mut self, power: Power) -> io::Result<()> {
        self.note(format!("{power}"));
        Ok(())
    }
    fn log(&mut self, level: Level, message: &str) {
        self.note(format!("log {level:?} {message}"));
    }
}

fn sh(script: &str) -> Program {
    Program {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: vec![("PATH".into(), supervise::DEFAULT_PATH.into())],
    }
}

fn policy() -> Policy {
    Policy {
        backoff_first: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        stable_after: Duration::from_secs(1),
        give_up_after: 4,
        probe_every: Duration::from_millis(50),
        stop_timeout: Duration::from_secs(3),
        term_timeout: Duration::from_millis(300),
        kill_timeout: Duration::from_secs(2),
        watchdog_pet: None,
        health_holds: None,
        health_every: None,
    }
}

fn no_socket() -> PathBuf {
    PathBuf::from("/nonexistent/liftoff-test.sock")
}

/// `sh -c 'sleep 0.2; exit 1'` dies fast four times: back-off 0.1, 0.2, 0.4 s, then give up.
/// Each run leaves an orphan behind, which is reaped.
fn fast_deaths_give_up() {
    let mut sys = Recording::new(no_socket());
    let config = Config {
        program: sh("sleep 0.3 & sleep 0.2; exit 1"),
        policy: policy(),
        unmount: Vec::new(),
        services: Vec::new(),
    };
    let t = Instant::now();
    let result = supervise::run(&mut sys, &config, &mut |_| panic!("no health expected"));
    let took = t.elapsed();
    let Err(SuperviseError::GaveUp(g)) = result else {
        panic!("expected to give up, got {result:?}");
    };
    assert_eq!(g.deaths, 4);
    assert_eq!(g.last, "exit status 1");
    assert_eq!(sys.effects(), ["spawn ok"; 4]);
    // 4 runs of 0.2 s and 0.7 s of back-off. The lines below check each delay; the upper
    // bound only shows nothing else was waited for, and leaves room for a host the VM
    // tests load beside this test.
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(4000),
        "{took:?}"
    );
    let restarts: Vec<&String> = sys
        .lines
        .iter()
        .filter(|l| l.contains("restarting sh in"))
        .collect();
    assert_eq!(restarts.len(), 3, "{restarts:?}");
    assert!(restarts[0].contains("in 100 ms"));
    assert!(restarts[2].contains("in 400 ms"));
    // The orphaned sleeps end 0.1 s after each run and are reaped (the last one may still
    // run when the loop gives up).
    let reaped = sys
        .lines
        .iter()
        .filter(|l| l.contains("reaped pid"))
        .count();
    assert!(reaped >= 3, "{reaped} orphans reaped");
    eprintln!("fast deaths: gave up after {} ms", took.as_millis());
}

/// The program sends SIGINT to its parent (ctrl-alt-del on a real machine): SIGTERM to the
/// program, SIGTERM to everyone, an orphan that ignores SIGTERM gets SIGKILL after the
/// term timeout, then sync, unmount in reverse order, reboot.
fn sigint_shuts_down_in_order() {
    let mut sys = Recording::new(no_socket());
    let config = Config {
        program: sh("(trap '' TERM; exec sleep 30) & sleep 0.3; kill -INT $PPID; exec sleep 30"),
        policy: policy(),
        unmount: vec!["/local".into(), "/local/var".into()],
        services: Vec::new(),
    };
    let t = Instant::now();
    let power = supervise::run(&mut sys, &config, &mut |_| {}).unwrap();
    let took = t.elapsed() - sys.synced;
    assert_eq!(power, Power::Reboot);
    assert_eq!(
        sys.effects(),
        [
            "spawn ok",
            "kill program Term",
            "kill-all Term (some)",
            "kill-all Kill (some)",
            "sync",
            "unmount /local/var",
            "unmount /local",
            "reboot",
        ]
    );
    // 0.3 s until the signal, 0.3 s of term timeout (the host's sync left out). The upper
    // bound shows the shutdown waited for neither `sleep 30`, with room for a loaded host.
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(5000),
        "{took:?}"
    );
    eprintln!("SIGINT: rebooted (recorded) after {} ms", took.as_millis());
}

/// containerd itself under the supervisor: started, probed until its socket answers,
/// health reported with the version, and stopped cleanly by SIGTERM.
fn containerd_supervised() {
    let bin = Path::new("/usr/bin/containerd");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup (it installs the containerd package)",
        bin.display()
    );
    let dir = std::env::temp_dir().join(format!("liftoff-supervised-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.internal.v1.opt\"]\n",
    )
    .unwrap();
    let socket = dir.join("sock");
    let arg = |s: &str| OsString::from(s);
    let program = Program {
        path: bin.to_owned(),
        args: vec![
            arg("--config"),
            dir.join("config.toml").into(),
            arg("--root"),
            dir.join("root").into(),
            arg("--state"),
            dir.join("state").into(),
            arg("--address"),
            socket.clone().into(),
            arg("--log-level"),
            arg("error"),
        ],
        env: vec![("PATH".into(), supervise::DEFAULT_PATH.into())],
    };
    let mut sys = Recording::new(socket);
    let config = Config {
        program,
        policy: policy(),
        unmount: Vec::new(),
        services: Vec::new(),
    };
    let t = Instant::now();
    let mut healthy = Vec::new();
    let power = supervise::run(&mut sys, &config, &mut |health| {
        let supervise::Health::Reached { version } = health else {
            panic!("no held health expected: {health:?}");
        };
        healthy.push((version.to_owned(), t.elapsed()));
        // What a shutdown request looks like to PID 1.
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
            .unwrap();
    })
    .unwrap();
    let took = t.elapsed();
    assert_eq!(power, Power::Off);
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(healthy.len(), 1);
    assert_eq!(
        Some(healthy[0].0.as_str()),
        printed.split_whitespace().nth(2)
    );
    assert_eq!(
        sys.effects(),
        [
            "spawn ok",
            "kill program Term",
            "kill-all Term (none)",
            "sync",
            "power off"
        ]
    );
    eprintln!(
        "containerd: healthy after {} ms, stopped after {} ms",
        healthy[0].1.as_millis(),
        took.as_millis()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs inside a new PID namespace, where this process is PID 1: the real `kill(-1)`
/// scope, reaching every process of the namespace and nothing outside it.
fn pid1_scenario() {
    assert!(rustix::process::getpid().is_init());
    let real = RealSystem::new(no_socket(), Duration::from_millis(500), None).unwrap();
    assert_eq!(real.kill_scope(), KillScope::Everything);
    let mut sys = Recording {
        real,
        start: Instant::now(),
        lines: Vec::new(),
        synced: Duration::ZERO,
    };
    let config = Config {
        program: sh("(trap '' TERM; exec sleep 30) & sleep 0.3; kill -TERM 1; exec sleep 30"),
        policy: policy(),
        unmount: vec!["/local".into()],
        services: Vec::new(),
    };
    let power = supervise::run(&mut sys, &config, &mut |_| {}).unwrap();
    assert_eq!(power, Power::Off);
    assert_eq!(
        sys.effects(),
        [
            "spawn ok",
            "kill program Term",
            "kill-all Term (some)",
            "kill-all Kill (some)",
            "sync",
            "unmount /local",
            "power off",
        ]
    );
    // Nothing is left in the namespace but PID 1.
    let left = supervise::descendants(Path::new("/proc"), 1).unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Re-runs this binary as PID 1 of a new PID namespace (`unshare --pid --fork
/// --mount-proc`, util-linux) for [`pid1_scenario`].
fn as_pid1_in_a_pid_namespace() {
    let out = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .env(PID1_ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "PID 1 scenario failed: {}",
        out.status
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pid1 scenario: ok\n");
}

const PID1_ENV: &str = "LIFTOFF_SUPERVISE_AS_PID1";

fn main() {
    if std::env::var_os(PID1_ENV).is_some() {
        pid1_scenario();
        println!("pid1 scenario: ok");
        return;
    }
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me)).unwrap();
    let tests: [(&str, fn()); 4] = [
        ("fast_deaths_give_up", fast_deaths_give_up),
        ("sigint_shuts_down_in_order", sigint_shuts_down_in_order),
        ("containerd_supervised", containerd_supervised),
        ("as_pid1_in_a_pid_namespace", as_pid1_in_a_pid_namespace),
    ];
    for (name, test) in tests {
        eprintln!("test {name} ...");
        test();
        eprintln!("test {name} ... ok");
    }
    println!("supervise_real: {} passed, 0 failed", tests.len());
}
