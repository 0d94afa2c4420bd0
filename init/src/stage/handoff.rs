//! The handoff stage: what runs after switch_root (`liftoff.handoff`). PID 1 either execs
//! the next stage (systemd's `/sbin/init` or a path), passing on the arguments and
//! environment the kernel gave it, or stays PID 1 as containerd's supervisor
//! ([`crate::supervise`]) and marks the slot successful when containerd first answers.

use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use prairiedog::Slot;

use crate::infra::watchdog::Watchdog;
use crate::infra::{failure, kmsg, timeline};
use crate::stage::disk::BootDisk;
use crate::stage::slots;
use crate::supervise::{self, SuperviseError};

/// The handoff stage's failures.
#[derive(Debug)]
pub enum HandoffError {
    /// exec() of the next stage failed.
    Exec { target: String, source: io::Error },
    /// containerd's supervisor ended without a clean shutdown.
    Supervise(SuperviseError),
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoffError::Exec { target, source } => write!(f, "executing {target}: {source}"),
            HandoffError::Supervise(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HandoffError {}

/// Replaces PID 1 with the next stage. The kernel passed the parameters meant for init as
/// our arguments and environment; the next stage gets them unchanged. Returns only the
/// error.
pub fn exec(target: &str) -> HandoffError {
    let source = std::process::Command::new(target)
        .args(std::env::args_os().skip(1))
        .exec();
    HandoffError::Exec {
        target: target.to_owned(),
        source,
    }
}

/// Stays PID 1 and supervises containerd from the verified root; marks `slot` successful
/// when containerd first answers. Returns when the kernel refused to power off or reboot
/// after a clean shutdown, or with the error that ended supervision.
pub fn containerd(
    boot_disk: &BootDisk,
    slot: Slot,
    watchdog: Option<Watchdog>,
    unmount: Vec<PathBuf>,
) -> Result<supervise::Power, HandoffError> {
    let config = supervise::Config {
        program: supervise::Program::containerd(),
        policy: supervise::Policy::default(),
        unmount,
    };
    let node = boot_disk.node.clone();
    let sector_size = boot_disk.disk.sector_size;
    let mut marked = false;
    let mut on_health = |version: &str| {
        if marked {
            return;
        }
        match slots::mark_successful(&node, sector_size, slot) {
            Ok(wrote) => {
                marked = true;
                timeline::mark("healthy");
                let degraded = failure::degraded()
                    .map(|reason| format!("; degraded: {reason}"))
                    .unwrap_or_default();
                kmsg::info(&format!(
                    "containerd {version} answers: slot {} {}{degraded}",
                    slot.as_str(),
                    if wrote {
                        "marked successful"
                    } else {
                        "was already marked successful"
                    }
                ));
            }
            Err(e) => kmsg::error(&format!(
                "containerd {version} answers, but marking slot {} successful failed: {e}",
                slot.as_str()
            )),
        }
    };
    supervise::supervise_as_pid1(config, watchdog, &mut on_health).map_err(HandoffError::Supervise)
}
