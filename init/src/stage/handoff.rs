//! The handoff stage: what runs after switch_root (`liftoff.handoff`). PID 1 either execs
//! the next stage (systemd's `/sbin/init` or a path), passing on the arguments and
//! environment the kernel gave it, or stays PID 1 as containerd's supervisor
//! ([`crate::supervise`]) and marks the slot successful when containerd first answers.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prairiedog::{transition, Slot};

use crate::infra::watchdog::Watchdog;
use crate::infra::{failure, kmsg, process, timeline};
use crate::stage::disk::BootDisk;
use crate::stage::slots;
use crate::supervise::{self, Health, SuperviseError};

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
    let source = process::exec(Path::new(target), std::env::args_os().skip(1));
    HandoffError::Exec {
        target: target.to_owned(),
        source,
    }
}

/// How long containerd's health must hold before the slot's crash-loop count is cleared,
/// without `liftoff.stable_after`.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(60);

/// How often containerd and the services are checked once healthy.
pub const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// Stays PID 1 and supervises containerd from the verified root. When containerd first
/// answers, `slot` is marked successful (its try is no longer needed); when that health has
/// held for `stable_after`, the slot's crash-loop count is cleared too, so a slot that
/// reaches health and then keeps failing is still demoted (DESIGN.md section 4). Returns
/// when the kernel refused to power off or reboot after a clean shutdown, or with the error
/// that ended supervision.
pub fn containerd(
    boot_disk: &BootDisk,
    slot: Slot,
    watchdog: Option<Watchdog>,
    unmount: Vec<PathBuf>,
    stable_after: Duration,
    host_args: &[(String, String)],
) -> Result<supervise::Power, HandoffError> {
    let (mut services, errors) = supervise::service::load(Path::new(supervise::SERVICES_DIR));
    for e in &errors {
        kmsg::error(e);
    }
    for (level, line) in supervise::service::add_host_args(&mut services, host_args) {
        kmsg::log(level, &line);
    }
    let mut list = format!("services from {}:", supervise::SERVICES_DIR);
    for s in &services {
        list.push(' ');
        list.push_str(&s.name);
        if s.required {
            list.push_str(" (required)");
        }
    }
    kmsg::info(&list);
    let config = supervise::Config {
        program: supervise::Program::containerd(),
        policy: supervise::Policy {
            health_holds: Some(stable_after),
            health_every: Some(HEALTH_EVERY),
            ..supervise::Policy::default()
        },
        unmount,
        services,
    };
    let node = boot_disk.node.clone();
    let sector_size = boot_disk.disk.sector_size;
    let record = |transition| slots::record(&node, sector_size, slot, transition);
    let mut marked = false;
    let mut on_health = |health: Health<'_>| match health {
        Health::Reached { version } => {
            if marked {
                return;
            }
            match record(transition::mark_healthy) {
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
        }
        Health::Held { after } => match record(transition::mark_successful_boot) {
            Ok(wrote) => kmsg::info(&format!(
                "health held for {} s: slot {}'s crash-loop count {}",
                after.as_secs(),
                slot.as_str(),
                if wrote {
                    "cleared"
                } else {
                    "was already clear"
                }
            )),
            Err(e) => kmsg::error(&format!(
                "health held for {} s, but clearing slot {}'s crash-loop count failed: {e}",
                after.as_secs(),
                slot.as_str()
            )),
        },
    };
    supervise::supervise_as_pid1(config, watchdog, &mut on_health).map_err(HandoffError::Supervise)
}
