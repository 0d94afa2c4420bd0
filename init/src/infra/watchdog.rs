//! The boot watchdog (`liftoff.watchdog=SECONDS`): a host that never reaches health reboots.
//!
//! Linux watchdog devices (`/dev/watchdog`, `/dev/watchdog0`; in a VM or on a machine without
//! one, the `softdog` module from the initramfs module list) start counting down when they
//! are opened. [`Watchdog::arm`] opens the device and sets the deadline with
//! `WDIOC_SETTIMEOUT`; the driver may round it, and the timeout it granted is kept. From
//! then on, if nobody writes to the device or calls `WDIOC_KEEPALIVE` within the timeout,
//! the machine resets, whatever PID 1 or the kernel are doing.
//!
//! After the handoff:
//!
//! - containerd mode: PID 1 stays, and its supervisor pets the watchdog
//!   ([`Watchdog::keepalive`]) every [`Watchdog::pet_interval`] once containerd has answered
//!   once, never before: a boot that does not reach health is reset by the watchdog.
//! - systemd mode: [`Watchdog::hand_over`] closes the device *without* the magic close
//!   character, so the driver keeps counting ("watchdog did not stop!" in the kernel log)
//!   and systemd, which opens it again for `RuntimeWatchdogSec=`, takes over. The image
//!   must set `RuntimeWatchdogSec=` (systemd leaves it off by default): otherwise the
//!   machine resets one timeout after the handoff. When the caller knows nobody will take
//!   over, [`Watchdog::disarm`] writes `V` before closing, which stops the timer unless the
//!   kernel was built with `CONFIG_WATCHDOG_NOWAYOUT`.
//!
//! The device is opened close-on-exec, so neither containerd nor systemd inherits it.

#![allow(unsafe_code)]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::ioctl::{ioctl, opcode, Getter, Opcode, Updater};

/// `WDIOC_KEEPALIVE`: `_IOR('W', 5, int)` in include/uapi/linux/watchdog.h.
pub const WDIOC_KEEPALIVE: Opcode = opcode::read::<libc::c_int>(b'W', 5);
/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)`.
pub const WDIOC_SETTIMEOUT: Opcode = opcode::read_write::<libc::c_int>(b'W', 6);

/// The device nodes tried, in order, under `/dev`.
pub const DEVICES: [&str; 2] = ["watchdog", "watchdog0"];

/// How many times per timeout the supervisor pets the watchdog.
pub const PETS_PER_TIMEOUT: u32 = 3;

#[derive(Debug)]
pub enum WatchdogError {
    /// None of the device nodes exists.
    NoDevice {
        tried: Vec<PathBuf>,
    },
    Open {
        path: PathBuf,
        source: io::Error,
    },
    /// The driver refused the timeout (and the clamped retry, if any). The device was then
    /// closed with the magic close so that no timer runs that nobody pets; `disarm` is
    /// that close's result.
    SetTimeout {
        path: PathBuf,
        seconds: u32,
        source: io::Error,
        disarm: Result<(), io::Error>,
    },
    Keepalive {
        path: PathBuf,
        source: io::Error,
    },
    Disarm {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for WatchdogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchdogError::NoDevice { tried } => {
                let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "no watchdog device ({} missing; is softdog in the module list?)",
                    list.join(" and ")
                )
            }
            WatchdogError::Open { path, source } => {
                write!(f, "opening watchdog {}: {source}", path.display())
            }
            WatchdogError::SetTimeout {
                path,
                seconds,
                source,
                disarm,
            } => {
                write!(
                    f,
                    "setting the timeout of watchdog {} to {seconds} s: {source}; ",
                    path.display()
                )?;
                match disarm {
                    Ok(()) => write!(f, "stopped it with the magic close"),
                    Err(e) => write!(
                        f,
                        "the magic close failed too ({e}): it runs with the driver's own timeout"
                    ),
                }
            }
            WatchdogError::Keepalive { path, source } => {
                write!(f, "petting watchdog {}: {source}", path.display())
            }
            WatchdogError::Disarm { path, source } => {
                write!(f, "disarming watchdog {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for WatchdogError {}

impl WatchdogError {
    /// Whether a watchdog timer may still be running after this error (nobody pets it: the
    /// machine resets after the driver's default timeout).
    pub fn left_running(&self) -> bool {
        matches!(
            self,
            WatchdogError::SetTimeout { disarm: Err(_), .. }
                | WatchdogError::Keepalive { .. }
                | WatchdogError::Disarm { .. }
        )
    }
}

/// An armed watchdog. Dropping it closes the device without disarming it.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    path: PathBuf,
    timeout: u32,
}

/// The timeout to retry with when the driver refused `requested`: its `max_timeout`, when
/// that is known and shorter (softdog refuses more than 65535 s, hardware watchdogs often
/// much less). A shorter deadline than asked is better than a timer nobody configured.
pub fn clamped_timeout(requested: u32, max_timeout: Option<u32>) -> Option<u32> {
    max_timeout.filter(|&max| max > 0 && max < requested)
}

/// The driver's `max_timeout` from sysfs (`CONFIG_WATCHDOG_SYSFS`). `/dev/watchdog` is the
/// legacy node of the first watchdog, `watchdog0`, which is the one both names open.
fn max_timeout(sys: &Path) -> Option<u32> {
    std::fs::read_to_string(sys.join("class/watchdog/watchdog0/max_timeout"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `WDIOC_SETTIMEOUT`: asks for `seconds`; the driver's granted timeout on success.
fn set_timeout(file: &File, seconds: u32) -> io::Result<u32> {
    let mut timeout = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
    // SAFETY: WDIOC_SETTIMEOUT reads and writes one int, which `timeout` is, and `file` is
    // an open descriptor for the call.
    unsafe {
        ioctl(
            file,
            Updater::<WDIOC_SETTIMEOUT, libc::c_int>::new(&mut timeout),
        )
    }?;
    // The driver writes back the timeout it set (it may round to its granularity).
    Ok(u32::try_from(timeout).unwrap_or(seconds))
}

impl Watchdog {
    /// Opens the first watchdog device under `dev` and sets its timeout to `seconds`. The
    /// timer runs from the open on. A driver that refuses `seconds` gets its `max_timeout`
    /// (read under `sys`) instead, when that is shorter; a driver that refuses both is
    /// stopped with the magic close before the error returns, so that no timer runs that
    /// nobody pets.
    pub fn arm(dev: &Path, sys: &Path, seconds: u32) -> Result<Self, WatchdogError> {
        let paths: Vec<PathBuf> = DEVICES.iter().map(|d| dev.join(d)).collect();
        let Some(path) = paths.iter().find(|p| p.exists()).cloned() else {
            return Err(WatchdogError::NoDevice { tried: paths });
        };
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| WatchdogError::Open {
                path: path.clone(),
                source,
            })?;
        let set = set_timeout(&file, seconds).or_else(|refused| {
            match clamped_timeout(seconds, max_timeout(sys)) {
                Some(max) => set_timeout(&file, max).map_err(|_| refused),
                None => Err(refused),
            }
        });
        match set {
            Ok(timeout) => Ok(Watchdog {
                file,
                path,
                timeout,
            }),
            Err(source) => {
                let disarm = file.write_all(b"V");
                Err(WatchdogError::SetTimeout {
                    path,
                    seconds,
                    source,
                    disarm,
                })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The timeout in seconds the driver granted.
    pub fn timeout(&self) -> u32 {
        self.timeout
    }

    /// How often to pet: a third of the timeout, at least 100 ms.
    pub fn pet_interval(&self) -> Duration {
        pet_interval(self.timeout)
    }

    /// Restarts the countdown.
    pub fn keepalive(&self) -> Result<(), WatchdogError> {
        // SAFETY: WDIOC_KEEPALIVE is `_IOR(int)`: drivers ignore the argument, and the
        // Getter gives the kernel an int-sized buffer to write into should one not.
        unsafe { ioctl(&self.file, Getter::<WDIOC_KEEPALIVE, libc::c_int>::new()) }
            .map(drop)
            .map_err(|e| WatchdogError::Keepalive {
                path: self.path.clone(),
                source: e.into(),
            })
    }

    /// Closes the device without the magic close: the timer keeps running for the next
    /// owner (systemd's `RuntimeWatchdogSec=`).
    pub fn hand_over(self) {
        drop(self.file);
    }

    /// Writes the magic close character and closes: the timer stops (unless the kernel has
    /// `CONFIG_WATCHDOG_NOWAYOUT`).
    pub fn disarm(mut self) -> Result<(), WatchdogError> {
        self.file
            .write_all(b"V")
            .map_err(|source| WatchdogError::Disarm {
                path: self.path.clone(),
                source,
            })
    }
}

/// A third of `timeout_secs`, at least 100 ms.
pub fn pet_interval(timeout_secs: u32) -> Duration {
    (Duration::from_secs(u64::from(timeout_secs)) / PETS_PER_TIMEOUT)
        .max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("liftoff-wd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The opcodes as the kernel's header computes them, compiled by the host's C compiler.
    #[test]
    fn ioctl_numbers_match_linux_watchdog_h() {
        let dir = tempdir("cc");
        let src = dir.join("wd.c");
        std::fs::write(
            &src,
            "#include <stdio.h>\n#include <linux/watchdog.h>\nint main(void) {\n\
             printf(\"%lu %lu\\n\", (unsigned long)WDIOC_KEEPALIVE,\n\
             (unsigned long)WDIOC_SETTIMEOUT);\n\
             return 0;\n}\n",
        )
        .unwrap();
        let exe = dir.join("wd");
        let cc = std::process::Command::new("cc")
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .status()
            .expect("running cc (the C compiler Rust links with; linux-libc-dev has the header)");
        assert!(cc.success());
        let out = std::process::Command::new(&exe).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let want: Vec<u64> = text
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let ours = [WDIOC_KEEPALIVE, WDIOC_SETTIMEOUT].map(u64::from);
        assert_eq!(want, ours);
        // And the values themselves on the generic ioctl encoding (x86_64, aarch64).
        assert_eq!(ours, [0x8004_5705, 0xc004_5706]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_device_names_what_was_tried() {
        let dir = tempdir("none");
        let e = Watchdog::arm(&dir, &dir, 30).unwrap_err();
        assert!(matches!(e, WatchdogError::NoDevice { .. }));
        assert_eq!(
            e.to_string(),
            format!(
                "no watchdog device ({d}/watchdog and {d}/watchdog0 missing; is softdog in the module list?)",
                d = dir.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_node_that_is_no_watchdog_fails_setting_the_timeout() {
        let dir = tempdir("file");
        std::fs::write(dir.join("watchdog0"), b"").unwrap();
        // A sysfs max_timeout shorter than asked: retried with it, refused again.
        let class = dir.join("class/watchdog/watchdog0");
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join("max_timeout"), "20\n").unwrap();
        let e = Watchdog::arm(&dir, &dir, 30).unwrap_err();
        match &e {
            WatchdogError::SetTimeout {
                path,
                seconds,
                source,
                disarm,
            } => {
                assert_eq!(path, &dir.join("watchdog0"));
                assert_eq!(*seconds, 30);
                assert_eq!(source.raw_os_error(), Some(libc::ENOTTY));
                assert!(disarm.is_ok());
            }
            other => panic!("{other:?}"),
        }
        // The refused device is not left counting down: it got the magic close.
        assert_eq!(std::fs::read(dir.join("watchdog0")).unwrap(), b"V");
        assert!(!e.left_running());
        assert!(
            e.to_string().ends_with("stopped it with the magic close"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn disarm_writes_the_magic_close_and_hand_over_does_not() {
        let dir = tempdir("close");
        for (disarm, want) in [(true, "V"), (false, "")] {
            let path = dir.join("dog");
            std::fs::write(&path, b"").unwrap();
            let dog = Watchdog {
                file: OpenOptions::new().write(true).open(&path).unwrap(),
                path: path.clone(),
                timeout: 30,
            };
            if disarm {
                dog.disarm().unwrap();
            } else {
                dog.hand_over();
            }
            assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_timeout_is_retried_with_the_drivers_maximum_only_when_shorter() {
        // (asked, sysfs max_timeout, retry)
        let cases = [
            (100_000, Some(65_535), Some(65_535)),
            (300, Some(60), Some(60)),
            (30, Some(60), None),
            (30, Some(30), None),
            (30, Some(0), None),
            (30, None, None),
        ];
        for (asked, max, want) in cases {
            assert_eq!(clamped_timeout(asked, max), want, "{asked} {max:?}");
        }
    }

    #[test]
    fn pet_interval_is_a_third_of_the_timeout() {
        let cases = [
            (30, 10_000_000_000),
            (1, 333_333_333),
            (0, 100_000_000),
            (60, 20_000_000_000),
        ];
        for (timeout, ns) in cases {
            assert_eq!(pet_interval(timeout), Duration::from_nanos(ns), "{timeout}");
        }
    }
}
