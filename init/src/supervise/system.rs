//! What the supervisor does to the system, behind one trait: [`System`] (spawn, reap,
//! wait for signals or a deadline, probe, kill, sync, unmount, power, log), and
//! [`RealSystem`], the system calls PID 1 makes (a signalfd, `waitpid(-1, WNOHANG)`,
//! `kill`, the health client, the watchdog). Tests drive the loop with a double.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal as RustixSignal, WaitOptions};

use super::button::{self, PowerButton};
use super::machine::{Exit, Kill, Power, Program, Signal};
use super::signals::SignalFd;
use crate::health;
use crate::infra::kmsg::{self, Level};
use crate::infra::process;
use crate::infra::watchdog::Watchdog;

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

/// The effects [`run`](super::run::run) needs. [`RealSystem`] makes the system calls.
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
    /// Connects to a service's unix socket (`grpc`: and asks it containerd's Version call).
    fn check(&mut self, socket: &Path, grpc: bool) -> Result<(), String>;
    fn kill(&mut self, pid: i32, signal: Kill) -> io::Result<()>;
    fn kill_all(&mut self, signal: Kill) -> io::Result<()>;
    fn pet_watchdog(&mut self) -> io::Result<()>;
    fn sync(&mut self);
    fn unmount(&mut self, path: &Path) -> io::Result<()>;
    /// Powers off or reboots; returns only if that failed (or in a test double).
    fn power(&mut self, power: Power) -> io::Result<()>;
    fn log(&mut self, level: Level, message: &str);
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
    buttons: Vec<PowerButton>,
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
        let buttons = button::open(Path::new("/sys"), Path::new("/dev"));
        let scope = if rustix::process::getpid().is_init() {
            KillScope::Everything
        } else {
            KillScope::Descendants
        };
        Ok(RealSystem {
            signals,
            buttons,
            socket,
            probe_timeout,
            watchdog,
            scope,
        })
    }

    pub fn kill_scope(&self) -> KillScope {
        self.scope
    }

    /// The input devices watched for the power key, by name (`event0`).
    pub fn power_buttons(&self) -> Vec<&str> {
        self.buttons.iter().map(|b| b.name.as_str()).collect()
    }
}

/// The mount points in `mountinfo` (`/proc/self/mountinfo`) mounted after the last mount
/// at `path`, newest first, leaving out the API file systems (/proc, /sys, /dev and what
/// is below them). At shutdown, once every process is gone, these are what can hold
/// `path` busy: mounts below it, and mounts elsewhere that use it, such as the overlays
/// of containers' root file systems under /run whose layers are on DATA.
pub fn mounted_after(mountinfo: &str, path: &Path) -> Vec<PathBuf> {
    let points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect();
    let Some(at) = points.iter().rposition(|p| p == path) else {
        return Vec::new();
    };
    let api = |p: &Path| ["/proc", "/sys", "/dev"].iter().any(|a| p.starts_with(a));
    points
        .into_iter()
        .skip(at + 1)
        .rev()
        .filter(|p| !api(p))
        .collect()
}

/// A mountinfo path with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = rest.get(at + 4..).unwrap_or_default();
            }
            None => {
                out.push('\\');
                rest = rest.get(at + 1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

fn to_signal(signal: Kill) -> RustixSignal {
    match signal {
        Kill::Term => RustixSignal::TERM,
        Kill::Kill => RustixSignal::KILL,
        Kill::Int => RustixSignal::INT,
        Kill::Hup => RustixSignal::HUP,
        Kill::Quit => RustixSignal::QUIT,
        Kill::Usr1 => RustixSignal::USR1,
        Kill::Usr2 => RustixSignal::USR2,
    }
}

fn pid(raw: i32) -> io::Result<Pid> {
    Pid::from_raw(raw).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))
}

impl System for RealSystem {
    fn now(&mut self) -> Duration {
        crate::infra::timeline::boottime()
    }

    fn spawn(&mut self, program: &Program) -> io::Result<i32> {
        // The child starts with an empty signal mask, so the program does not inherit PID
        // 1's blocked signals; it is reaped by waitpid(-1).
        process::spawn(&program.path, &program.args, &program.env)
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
        let mut fds: Vec<rustix::event::PollFd<'_>> = std::iter::once(self.signals.as_fd())
            .chain(self.buttons.iter().map(AsFd::as_fd))
            .map(|fd| rustix::event::PollFd::from_borrowed_fd(fd, rustix::event::PollFlags::IN))
            .collect();
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let pressed = fds
            .iter()
            .skip(1)
            .zip(&self.buttons)
            .any(|(fd, b)| !fd.revents().is_empty() && b.pressed());
        drop(fds);
        let mut signals: Vec<Signal> = self
            .signals
            .read_pending()?
            .into_iter()
            .filter_map(Signal::from_raw)
            .collect();
        if pressed {
            signals.push(Signal::PowerButton);
        }
        Ok(signals)
    }

    fn probe(&mut self) -> Result<String, String> {
        health::version(&self.socket, self.probe_timeout)
            .map(|v| v.version)
            .map_err(|e| e.to_string())
    }

    fn check(&mut self, socket: &Path, grpc: bool) -> Result<(), String> {
        if grpc {
            return health::version(socket, self.probe_timeout)
                .map(drop)
                .map_err(|e| e.to_string());
        }
        std::os::unix::net::UnixStream::connect(socket)
            .map(drop)
            .map_err(|e| format!("connecting to {}: {e}", socket.display()))
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

    /// Unmounts `path` after what was mounted after it and still holds it (see
    /// [`mounted_after`]); if `path` stays busy, remounts it read-only, so its file system
    /// is clean on disk all the same.
    fn unmount(&mut self, path: &Path) -> io::Result<()> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for later in mounted_after(&mountinfo, path) {
            let _ = rustix::mount::unmount(&later, rustix::mount::UnmountFlags::empty());
        }
        match rustix::mount::unmount(path, rustix::mount::UnmountFlags::empty()) {
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::mount_remount(path, rustix::mount::MountFlags::RDONLY, "").map_err(
                    |e| io::Error::other(format!("busy, and remounting it read-only: {e}")),
                )?;
                Err(io::Error::other("busy; remounted read-only instead"))
            }
            other => other.map_err(Into::into),
        }
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

    /// A containerd host at shutdown, as mountinfo lists it (fields trimmed after the mount
    /// point): DATA at /local, /var and /opt bound from it, then the host stage's API
    /// mounts, a submount under /var, and a container's overlay root under /run whose
    /// layers are on DATA.
    #[test]
    fn what_was_mounted_after_a_path() {
        let mountinfo = "22 1 253:0 / / ro - erofs /dev/dm-0 ro
23 22 0:5 / /dev rw - devtmpfs devtmpfs rw
24 22 0:21 / /proc rw - proc proc rw
25 22 0:22 / /sys rw - sysfs sysfs rw
26 22 0:23 / /run rw - tmpfs tmpfs rw
30 22 253:1 / /local rw - ext4 /dev/dm-1 rw
31 22 253:1 /var /var rw - ext4 /dev/dm-1 rw
32 22 253:1 /opt /opt rw - ext4 /dev/dm-1 rw
33 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
34 23 0:28 / /dev/pts rw - devpts devpts rw
35 31 0:29 / /var/lib/with\\040space rw - tmpfs tmpfs rw
36 26 0:30 / /run/containerd/t1/rootfs rw - overlay overlay rw,upperdir=/var/lib/x
";
        let after = |p: &str| mounted_after(mountinfo, Path::new(p));
        assert_eq!(
            after("/opt"),
            [
                PathBuf::from("/run/containerd/t1/rootfs"),
                PathBuf::from("/var/lib/with space"),
            ]
        );
        assert_eq!(
            after("/local"),
            [
                "/run/containerd/t1/rootfs",
                "/var/lib/with space",
                "/opt",
                "/var"
            ]
            .map(PathBuf::from)
        );
        assert!(after("/run/containerd/t1/rootfs").is_empty());
        assert!(after("/not/mounted").is_empty());
        assert!(mounted_after("", Path::new("/local")).is_empty());
        assert_eq!(unescape("a\\134b\\011c\\x"), "a\\b\tc\\x");
    }
}
