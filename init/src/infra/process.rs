//! Starting programs: fork(2) and execve(2), with nothing of `std::process`.
//!
//! PID 1 starts four kinds of programs: containerd under the supervisor ([`spawn`]), the
//! file system tools of the DATA stage, whose output it keeps for the failure line
//! ([`output`]), and the next stage, which replaces it ([`exec`]). `std::process::Command`
//! does all of that, but with an environment map, several stdio modes and a pipe reader it
//! costs PID 1 about 8 KiB of its size budget; the few calls below are what is needed.
//!
//! Everything the child needs (C strings, the argument and environment vectors, /dev/null)
//! is made before the fork, so the child only makes system calls until exec: PID 1 has one
//! thread, but the same rule keeps this right in a test harness with many. In the child,
//! the signal mask is emptied (the supervisor blocks the signals it reads from a signalfd)
//! and SIGPIPE is set back to its default (Rust's runtime ignores it, and ignored signals
//! survive exec). An exec that fails is reported through a close-on-exec pipe, as std
//! does: the caller gets "No such file or directory", not a child that exits with 127.

#![allow(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// How a program that [`output`] ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl Status {
    /// Exited with code 0.
    pub fn success(self) -> bool {
        self == Status::Code(0)
    }

    fn from_wait(status: i32) -> Status {
        if libc::WIFEXITED(status) {
            Status::Code(libc::WEXITSTATUS(status))
        } else {
            Status::Signal(libc::WTERMSIG(status))
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Code(code) => write!(f, "exit status {code}"),
            Status::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// A program, its arguments and its environment as the C strings execve(2) takes.
struct Argv {
    path: CString,
    /// Keeps the strings `args` and `env` point into alive.
    _strings: Vec<CString>,
    args: Vec<*const libc::c_char>,
    env: Vec<*const libc::c_char>,
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in a program's path, argument or environment",
        )
    })
}

impl Argv {
    /// `argv[0]` is the path; `env` is `KEY=value` strings.
    fn new<A, E>(path: &Path, args: A, env: E) -> io::Result<Argv>
    where
        A: IntoIterator,
        A::Item: AsRef<OsStr>,
        E: IntoIterator<Item = Vec<u8>>,
    {
        let path = c_string(path.as_os_str().as_bytes())?;
        let mut strings = vec![path.clone()];
        for arg in args {
            strings.push(c_string(arg.as_ref().as_bytes())?);
        }
        let argc = strings.len();
        for entry in env {
            strings.push(c_string(&entry)?);
        }
        // The pointers point into the CStrings' heap buffers, which do not move when the
        // vector of CStrings does.
        let pointers = |list: &[CString]| {
            list.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let (args, env) = strings.split_at(argc);
        let (args, env) = (pointers(args), pointers(env));
        Ok(Argv {
            path,
            _strings: strings,
            args,
            env,
        })
    }

    /// PID 1's own environment (what the kernel passed it), as `KEY=value` strings.
    fn inherited() -> impl Iterator<Item = Vec<u8>> {
        std::env::vars_os().map(|(key, value)| {
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            entry
        })
    }

    /// execve(2); returns only its error.
    fn exec(&self) -> io::Error {
        // SAFETY: path, args and env are NUL-terminated C strings and NULL-terminated
        // pointer arrays that live as long as `self`.
        unsafe { libc::execve(self.path.as_ptr(), self.args.as_ptr(), self.env.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// Empties the signal mask and sets SIGPIPE back to its default: what a program expects to
/// start with. Only system calls: it runs in a forked child too.
fn reset_signals() {
    let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigprocmask and signal take valid arguments.
    unsafe {
        libc::sigemptyset(empty.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A pipe whose two ends are closed on exec: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What the child sets up before exec, besides the signals.
struct Child {
    stdin: RawFd,
    /// Where stdout and stderr go; PID 1's own (the console) when `None`.
    output: Option<RawFd>,
    /// A process group of its own.
    own_group: bool,
}

/// Makes `fd` the descriptor `target` and keeps it open across exec. Only system calls.
fn move_to(fd: RawFd, target: RawFd) {
    // SAFETY: fcntl and dup2 on descriptors this process holds.
    unsafe {
        if fd == target {
            libc::fcntl(fd, libc::F_SETFD, 0);
        } else {
            libc::dup2(fd, target);
        }
    }
}

/// fork(2); in the child, sets up `child` and execs `argv`. Returns the child's pid once
/// exec succeeded, or exec's error (the child is then reaped).
fn fork_exec(argv: &Argv, child: &Child) -> io::Result<i32> {
    // Close-on-exec both ends: EOF on the read end means exec succeeded; four bytes are
    // exec's errno.
    let (report_read, report_write) = pipe()?;
    // SAFETY: PID 1 has one thread; the child below makes only system calls on values
    // prepared before the fork, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        reset_signals();
        move_to(child.stdin, 0);
        if let Some(fd) = child.output {
            move_to(fd, 1);
            move_to(fd, 2);
        }
        if child.own_group {
            // SAFETY: setpgid on this process.
            unsafe { libc::setpgid(0, 0) };
        }
        let errno = argv.exec().raw_os_error().unwrap_or(libc::ENOEXEC);
        let bytes = errno.to_ne_bytes();
        // SAFETY: write and _exit with valid arguments.
        unsafe {
            libc::write(report_write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    }
    // The parent closes its write end, so the read below ends at the child's exec.
    drop(report_write);
    let mut errno = [0u8; 4];
    let mut got = 0;
    let mut report = File::from(report_read);
    while got < errno.len() {
        match report.read(errno.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The child runs either way; its exit will tell.
            Err(_) => break,
        }
    }
    if got == errno.len() {
        let _ = wait(pid);
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok(pid)
}

/// waitpid(2) for one child, retried on EINTR.
fn wait(pid: i32) -> io::Result<Status> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for the kernel to fill.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(Status::from_wait(status));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn dev_null() -> io::Result<File> {
    File::open("/dev/null")
}

/// Starts `path` with `args` and exactly the environment `env`, stdin on /dev/null, in a
/// process group of its own (a terminal's signals for PID 1 are not its), with the console
/// as stdout and stderr. Returns its pid; the caller reaps it.
pub fn spawn<A: AsRef<OsStr>>(
    path: &Path,
    args: &[A],
    env: &[(OsString, OsString)],
) -> io::Result<i32> {
    let env = env.iter().map(|(key, value)| {
        let mut entry = key.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        entry
    });
    let argv = Argv::new(path, args, env)?;
    let stdin = dev_null()?;
    let child = Child {
        stdin: stdin.as_raw_fd(),
        output: None,
        own_group: true,
    };
    fork_exec(&argv, &child)
}

/// Runs `path` with `args` and PID 1's environment, stdin on /dev/null, and waits for it.
/// Returns how it ended and what it wrote to stdout and stderr (together, in order).
pub fn output<A: AsRef<OsStr>>(path: &Path, args: &[A]) -> io::Result<(Status, Vec<u8>)> {
    let argv = Argv::new(path, args, Argv::inherited())?;
    let stdin = dev_null()?;
    let (out_read, out_write) = pipe()?;
    let child = Child {
        stdin: stdin.as_raw_fd(),
        output: Some(out_write.as_raw_fd()),
        own_group: false,
    };
    let started = fork_exec(&argv, &child);
    // Closed here before reading, so EOF comes when the child (and what it started) is done.
    drop(out_write);
    let pid = started?;
    let mut text = Vec::new();
    let read = File::from(out_read).read_to_end(&mut text);
    let status = wait(pid)?;
    read?;
    Ok((status, text))
}

/// A child process doing some of PID 1's work beside it ([`beside`]).
#[derive(Debug)]
pub struct Beside {
    pid: i32,
    report: File,
    /// A byte each time the child reaches a milestone; EOF once it ended.
    milestone: File,
    /// Where [`Beside::go`] tells the child to go on, then [`Beside::send`] sends it
    /// messages; closed by [`Beside::join`].
    go: Option<File>,
    went: bool,
}

/// The child's side of a [`beside`] child: tell the parent that the work has reached a
/// milestone ([`Beside::milestone`] waits for each), wait for the parent's go
/// ([`Beside::go`]), receive what the parent sends ([`Beside::send`]). The default one
/// does none of it (the work run in the parent, when there is no child): it receives
/// nothing.
#[derive(Debug, Default)]
pub struct Handshake {
    milestone: Option<File>,
    go: Option<File>,
    went: bool,
    own_mounts: bool,
}

impl Handshake {
    /// Whether the work runs in a child with a mount namespace of its own, made when it
    /// started ([`beside`]).
    pub fn own_mounts(&self) -> bool {
        self.own_mounts
    }

    /// Tells the parent that the work reached its next milestone.
    pub fn reach_milestone(&mut self) {
        if let Some(pipe) = self.milestone.as_mut() {
            // A parent gone or not waiting: nothing to tell.
            let _ = std::io::Write::write_all(pipe, b"m");
        }
    }

    /// Waits until the parent says go, or has dropped its [`Beside`] (which says the
    /// same); later calls return at once.
    pub fn wait_for_go(&mut self) {
        if let (Some(pipe), false) = (self.go.as_mut(), self.went) {
            let mut byte = [0u8; 1];
            let _ = pipe.read(&mut byte);
        }
        self.went = true;
    }

    /// The parent's next message ([`Beside::send`]), after its go; `None` once the parent
    /// joined without sending one (or there is no parent).
    pub fn receive(&mut self) -> Option<Vec<u8>> {
        self.wait_for_go();
        let pipe = self.go.as_mut()?;
        let mut len = [0u8; 4];
        pipe.read_exact(&mut len).ok()?;
        let mut message = vec![0u8; u32::from_le_bytes(len) as usize];
        pipe.read_exact(&mut message).ok()?;
        Some(message)
    }
}

/// Runs `work` in a child process and returns at once; [`Beside::milestone`] waits until
/// the work has reached its next milestone, [`Beside::go`] lets it past its wait for the
/// go, [`Beside::send`] gives it a message ([`Handshake`]), [`Beside::join`] waits for all
/// of it and gives its result: the bytes the work returned, or its error's text. The
/// caller must be single-threaded (PID 1 is). The child writes either into a close-on-exec
/// pipe after a byte that says which (0 or 1, also its exit code), closes it and exits:
/// what the work still held (PRIVATE's mount) is released after the parent has the
/// report.
///
/// The child starts with a mount namespace of its own ([`Handshake::own_mounts`]): what it
/// mounts stays its own, and the parent's mount moves (switch_root's) do not move the
/// child's /dev, /proc or /sys.
pub fn beside(
    work: &mut dyn FnMut(&mut Handshake) -> Result<Vec<u8>, String>,
) -> io::Result<Beside> {
    let (report_read, report_write) = pipe()?;
    let (milestone_read, milestone_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    // SAFETY: PID 1 has one thread; the child runs `work` on its own copy of the memory
    // and exits without returning.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        reset_signals();
        drop((report_read, milestone_read, go_write));
        // SAFETY: unshare(CLONE_NEWNS) changes only this process's view of the mounts.
        let own_mounts = unsafe { libc::unshare(libc::CLONE_NEWNS) } == 0;
        let mut handshake = Handshake {
            milestone: Some(File::from(milestone_write)),
            go: Some(File::from(go_read)),
            went: false,
            own_mounts,
        };
        let (code, bytes) = match work(&mut handshake) {
            Ok(bytes) => (0, bytes),
            Err(text) => (1, text.into_bytes()),
        };
        let mut report = vec![code];
        report.extend(bytes);
        let _ = std::io::Write::write_all(&mut File::from(report_write), &report);
        end(i32::from(code))
    }
    drop((report_write, milestone_write, go_read));
    Ok(Beside {
        pid,
        report: File::from(report_read),
        milestone: File::from(milestone_read),
        go: Some(File::from(go_write)),
        went: false,
    })
}

impl Beside {
    /// Lets the child past [`Handshake::wait_for_go`]; later calls do nothing.
    pub fn go(&mut self) {
        if let (Some(pipe), false) = (self.go.as_mut(), self.went) {
            // A child that ended has nothing to wait for: a failed write says nothing
            // (SIGPIPE is ignored by PID 1; the error is dropped).
            let _ = std::io::Write::write_all(pipe, b"g");
        }
        self.went = true;
    }

    /// Says go, then sends `message` for the child's [`Handshake::receive`]; a child that
    /// ended does not get it.
    pub fn send(&mut self, message: &[u8]) {
        self.go();
        if let Some(pipe) = self.go.as_mut() {
            let len = u32::try_from(message.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes();
            let _ = std::io::Write::write_all(pipe, &len)
                .and_then(|()| std::io::Write::write_all(pipe, message));
        }
    }

    /// The child's process ID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the child has reached its next milestone. A child that ended first is
    /// joined: its error's text, or that it ended without reaching it.
    pub fn milestone(mut self) -> Result<Beside, String> {
        self.go();
        let mut byte = [0u8; 1];
        // The write end closes when the child exits: 0 bytes then.
        if matches!(self.milestone.read(&mut byte), Ok(1)) {
            return Ok(self);
        }
        let pid = self.pid;
        match self.join() {
            Ok(_) => Err(format!("pid {pid} ended before its milestone")),
            Err(e) => Err(e),
        }
    }

    /// Waits for the child's report: the bytes its work returned, or its error's text; a
    /// child that ended without one is waited for, and the error says how it ended. One
    /// that reported is not waited for: it may still be releasing what its work held; the
    /// caller [`reap`]s it later.
    pub fn join(mut self) -> Result<Vec<u8>, String> {
        self.go();
        // No more messages: a child waiting for one gets EOF.
        self.go = None;
        // The milestone's read end stays open until the report is read: a child reaching
        // a milestone after this was called writes one byte into the pipe's buffer, not
        // into a closed pipe (SIGPIPE).
        let mut bytes = Vec::new();
        // The write end closes once the child has written its report, or when it exits.
        if let Err(e) = self.report.read_to_end(&mut bytes) {
            return Err(format!("reading from pid {}: {e}", self.pid));
        }
        match bytes.split_first() {
            Some((0, result)) => Ok(result.to_vec()),
            Some((1, text)) => Err(String::from_utf8_lossy(text).into_owned()),
            _ => {
                let status =
                    wait(self.pid).map_err(|e| format!("waiting for pid {}: {e}", self.pid))?;
                Err(format!("pid {} ended with {status}", self.pid))
            }
        }
    }
}

/// Waits for child `pid` to end, whatever it ended with: a [`Beside`] child whose report
/// [`Beside::join`] took.
pub fn reap(pid: i32) {
    let _ = wait(pid);
}

/// Ends this process at once with `code`: for PID 1's forked children, whose buffers and
/// exit handlers are copies of PID 1's, not their own.
pub fn end(code: i32) -> ! {
    // SAFETY: _exit ends the process without running anything of the parent's.
    unsafe { libc::_exit(code) }
}

/// Runs `work` in a child process that then exits, and returns its pid at once. The
/// caller must be single-threaded (the child gets a copy of this thread only). Nobody
/// waits for the child here: after an exec of the next stage, that one reaps it.
pub fn detach(work: &mut dyn FnMut()) -> io::Result<i32> {
    // SAFETY: the caller has one thread (the boot's module thread is joined); the child
    // runs `work` on its own copy of the memory and exits without returning.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        reset_signals();
        work();
        end(0)
    }
    Ok(pid)
}

/// Replaces PID 1 with `path`, given `args` and PID 1's environment. Returns only the error.
pub fn exec<A: AsRef<OsStr>>(path: &Path, args: impl IntoIterator<Item = A>) -> io::Error {
    match Argv::new(path, args, Argv::inherited()) {
        Ok(argv) => {
            reset_signals();
            argv.exec()
        }
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child's result comes back through join: nothing, its error's text, or how it
    /// ended; the work runs in another process, not here.
    #[test]
    fn beside_runs_the_work_in_a_child_and_join_reports_it() {
        let me = std::process::id();
        let mut ok = |_: &mut Handshake| {
            if std::process::id() == me {
                Err("ran in the parent".to_owned())
            } else {
                Ok(b"result".to_vec())
            }
        };
        assert_eq!(beside(&mut ok).unwrap().join(), Ok(b"result".to_vec()));
        let mut failing = |_: &mut Handshake| Err("loading module x: No such file".to_owned());
        assert_eq!(
            beside(&mut failing).unwrap().join(),
            Err("loading module x: No such file".to_owned())
        );
        let mut killed = |_: &mut Handshake| {
            // SAFETY: the child signals itself.
            unsafe { libc::raise(libc::SIGKILL) };
            Ok(Vec::new())
        };
        let err = beside(&mut killed).unwrap().join().unwrap_err();
        assert!(err.ends_with("ended with killed by signal 9"), "{err}");
        let mut ran = false;
        let pid = detach(&mut || ran = true).unwrap();
        assert!(!ran, "detach runs the work in the child only");
        assert_eq!(wait(pid).unwrap(), Status::Code(0));
    }

    /// The parent waits for the milestone while the child goes on, lets the child past
    /// its wait for the go, and learns of a child that failed or ended before reaching
    /// the milestone.
    #[test]
    fn milestone_and_go_order_the_work() {
        let (order_read, order_write) = pipe().unwrap();
        let mut order_write = Some(File::from(order_write));
        let mut three_parts = |h: &mut Handshake| {
            let mut out = order_write.take().ok_or("no pipe")?;
            let mut say = |what: &[u8]| std::io::Write::write_all(&mut out, what);
            say(b"1").map_err(|e| e.to_string())?;
            h.wait_for_go();
            say(b"2").map_err(|e| e.to_string())?;
            h.reach_milestone();
            h.wait_for_go();
            say(b"3").map_err(|e| e.to_string())?;
            Ok(Vec::new())
        };
        let mut child = beside(&mut three_parts).unwrap();
        drop(order_write);
        let mut order = File::from(order_read);
        let mut byte = [0u8; 1];
        order.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"1");
        // Without the go the child writes nothing more: nothing to read for a while.
        let mut fd = libc::pollfd {
            fd: order.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes one live pollfd.
        let ready = unsafe { libc::poll(&mut fd, 1, 200) };
        assert_eq!(ready, 0, "the child went on without the go");
        child.go();
        let child = child.milestone().unwrap();
        let mut rest = String::new();
        assert_eq!(child.join(), Ok(Vec::new()));
        order.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "23");

        let mut failing = |_: &mut Handshake| Err("loading module dm_verity: Bad".to_owned());
        let err = beside(&mut failing).unwrap().milestone().unwrap_err();
        assert_eq!(err, "loading module dm_verity: Bad");
        let mut silent = |_: &mut Handshake| Ok(Vec::new());
        let err = beside(&mut silent).unwrap().milestone().unwrap_err();
        assert!(err.ends_with("ended before its milestone"), "{err}");
        let mut late = |h: &mut Handshake| {
            h.reach_milestone();
            Err("loading module dm_crypt: Bad".to_owned())
        };
        let child = beside(&mut late).unwrap().milestone().unwrap();
        assert_eq!(child.join(), Err("loading module dm_crypt: Bad".to_owned()));
    }

    /// Two milestones, one after the other, and a message each way: the child gets what
    /// the parent sent after its go, and `None` when the parent joins without sending.
    #[test]
    fn milestones_and_messages() {
        let mut echo = |h: &mut Handshake| {
            h.reach_milestone();
            h.reach_milestone();
            let Some(mut message) = h.receive() else {
                return Err("no message".to_owned());
            };
            message.extend_from_slice(b" back");
            Ok(message)
        };
        let mut child = beside(&mut echo).unwrap();
        child.send(b"there");
        let child = child.milestone().unwrap().milestone().unwrap();
        assert_eq!(child.join(), Ok(b"there back".to_vec()));
        let big = vec![7u8; 100_000];
        let mut child = beside(&mut echo).unwrap();
        child.send(&big);
        let mut expected = big.clone();
        expected.extend_from_slice(b" back");
        assert_eq!(child.join(), Ok(expected));
        let child = beside(&mut echo).unwrap();
        assert_eq!(child.join(), Err("no message".to_owned()));
        let mut once = |h: &mut Handshake| {
            h.reach_milestone();
            Ok(Vec::new())
        };
        let err = beside(&mut once)
            .unwrap()
            .milestone()
            .unwrap()
            .milestone()
            .unwrap_err();
        assert!(err.ends_with("ended before its milestone"), "{err}");
    }

    #[test]
    fn output_has_both_streams_and_the_status() {
        let (status, text) = output(
            Path::new("/bin/sh"),
            &["-c", "echo out; echo err >&2; exit 3"],
        )
        .unwrap();
        assert_eq!(status, Status::Code(3));
        assert!(!status.success());
        assert_eq!(String::from_utf8_lossy(&text), "out\nerr\n");
        assert_eq!(status.to_string(), "exit status 3");
    }

    #[test]
    fn output_reports_a_signal() {
        let (status, _) = output(Path::new("/bin/sh"), &["-c", "kill -9 $$"]).unwrap();
        assert_eq!(status, Status::Signal(9));
        assert_eq!(status.to_string(), "killed by signal 9");
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_child() {
        let e = output(Path::new("/nonexistent/tool"), &["x"]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let e = spawn(Path::new("/nonexistent/tool"), &["x"], &[]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn a_nul_byte_is_refused_before_forking() {
        let e = output(Path::new("/bin/true"), &["a\0b"]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    /// The spawned program gets exactly the environment given, /dev/null as stdin, a
    /// process group of its own and an empty signal mask.
    #[test]
    fn spawn_sets_up_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "exec >{}; echo \"env=$(env | grep -v '^PWD=' | grep -v '^SHLVL=' | grep -v '^_=')\"; \
             read x && echo read || echo eof; \
             [ \"$(cut -d' ' -f5 /proc/$$/stat)\" = \"$$\" ] && echo group; \
             grep '^SigBlk' /proc/self/status",
            out.display()
        );
        // A signal blocked here, as the supervisor blocks the ones it reads: the child
        // must not inherit that.
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: the sets are initialised by sigemptyset and filled by the kernel.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigaddset(set.as_mut_ptr(), libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), old.as_mut_ptr());
        }
        let pid = spawn(
            Path::new("/bin/sh"),
            &["-c", &script],
            &[("ONLY".into(), "this".into())],
        );
        // SAFETY: `old` was filled by the pthread_sigmask call above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut()) };
        let pid = pid.unwrap();
        assert_eq!(wait(pid).unwrap(), Status::Code(0));
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("env=ONLY=this\n"), "{text}");
        assert!(text.contains("eof\n"), "{text}");
        assert!(text.contains("group\n"), "{text}");
        assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
    }
}
