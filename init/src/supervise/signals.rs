//! The signals PID 1 acts on, read from a signalfd.
//!
//! The kernel gives PID 1 no default signal actions: a signal it has no handler for is
//! dropped. So the supervisor blocks the signals it cares about and reads them from a
//! signalfd, which it polls together with its timers: SIGTERM and SIGPWR (power off),
//! SIGINT (ctrl-alt-del once [`disable_ctrl_alt_del`] has run: reboot) and SIGCHLD (a child
//! changed state; the supervisor then reaps). Blocked signals stay pending until read, so a
//! child that dies between a reap and the next poll still wakes the loop.
//!
//! The mask is per thread: the thread that creates the [`SignalFd`] must be the one that
//! reads it, and a process with other threads can lose process-directed signals to them.
//! PID 1 has one thread.

#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

/// Makes ctrl-alt-del send SIGINT to PID 1 instead of resetting the machine at once (the
/// kernel's default), so that it becomes a clean reboot. Needs CAP_SYS_BOOT.
pub fn disable_ctrl_alt_del() -> io::Result<()> {
    rustix::system::reboot(rustix::system::RebootCommand::CadOff).map_err(Into::into)
}

/// The signals the supervisor reads.
pub const WATCHED: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGPWR, libc::SIGCHLD];

/// A non-blocking signalfd for [`WATCHED`], which are blocked in the calling thread while it
/// lives; dropping it restores the thread's previous mask.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
    previous: libc::sigset_t,
}

fn watched_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; sigaddset only writes into that
    // initialised set and cannot fail for the valid signal numbers of WATCHED.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for signal in WATCHED {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        set.assume_init()
    }
}

impl SignalFd {
    /// Blocks [`WATCHED`] in this thread and opens a signalfd for them.
    pub fn new() -> io::Result<Self> {
        let set = watched_set();
        let mut previous = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: both pointers point at sigset_t values that live for the call; the kernel
        // fills `previous` on success, which is checked before it is read.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, previous.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: checked above: pthread_sigmask succeeded and wrote the old mask.
        let previous = unsafe { previous.assume_init() };
        // SAFETY: `set` is an initialised sigset_t; -1 asks for a new descriptor.
        let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if raw < 0 {
            let error = io::Error::last_os_error();
            restore(&previous);
            return Err(error);
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(SignalFd { fd, previous })
    }

    /// Reads every pending signal, in arrival order (several of one kind may merge into one).
    pub fn read_pending(&self) -> io::Result<Vec<i32>> {
        let mut signals = Vec::new();
        loop {
            let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: the buffer is `size` bytes of writable memory owned by this frame.
            let n = unsafe { libc::read(raw(&self.fd), info.as_mut_ptr().cast(), size) };
            if n < 0 {
                let error = io::Error::last_os_error();
                return match error.kind() {
                    io::ErrorKind::WouldBlock => Ok(signals),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(error),
                };
            }
            if usize::try_from(n).ok() != Some(size) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("signalfd gave {n} bytes, expected {size}"),
                ));
            }
            // SAFETY: the kernel wrote a whole signalfd_siginfo (checked just above).
            let info = unsafe { info.assume_init() };
            signals.push(i32::try_from(info.ssi_signo).unwrap_or(0));
        }
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SignalFd {
    fn drop(&mut self) {
        restore(&self.previous);
    }
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

fn restore(previous: &libc::sigset_t) {
    // SAFETY: `previous` is the initialised mask pthread_sigmask returned; setting a mask
    // cannot fail with valid arguments, so the result carries nothing to act on.
    let _ = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, previous, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_signal_is_read_not_delivered() {
        let fd = SignalFd::new().unwrap();
        assert!(fd.read_pending().unwrap().is_empty());
        // Thread-directed, so the test harness's other threads cannot take it.
        // SAFETY: sending a signal to our own thread; it is blocked, so nothing runs.
        let rc = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGPWR) };
        assert_eq!(rc, 0);
        // SAFETY: as above.
        let rc = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGINT) };
        assert_eq!(rc, 0);
        let mut got = fd.read_pending().unwrap();
        got.sort_unstable();
        assert_eq!(got, [libc::SIGINT, libc::SIGPWR]);
        assert!(fd.read_pending().unwrap().is_empty());
    }
}
