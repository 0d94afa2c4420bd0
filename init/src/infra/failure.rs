//! The failure policy (DESIGN.md section 7), one function every stage uses.
//!
//! PID 1 must never panic, return or exit: the kernel would panic with "Attempted to kill
//! init". A failed stage logs one line that names the stage, what failed (device or path)
//! and the action, then reboots. The A/B rules then decide what boots next.

use std::fmt;
use std::sync::Mutex;

use crate::infra::kmsg;

/// The stages of the boot, in order (DESIGN.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    ApiMounts,
    Cmdline,
    Modules,
    Disk,
    Slots,
    Verity,
    Root,
    SwitchRoot,
    Data,
    Caps,
    Handoff,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::ApiMounts => "api-mounts",
            Stage::Cmdline => "cmdline",
            Stage::Modules => "modules",
            Stage::Disk => "disk",
            Stage::Slots => "slots",
            Stage::Verity => "verity",
            Stage::Root => "root",
            Stage::SwitchRoot => "switch-root",
            Stage::Data => "data",
            Stage::Caps => "caps",
            Stage::Handoff => "handoff",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a failure means for the A/B state, once the slot stage has counted this boot.
static NOTE: Mutex<String> = Mutex::new(String::new());

/// Records what a failure from now on means for the A/B state (said in the failure line).
pub fn set_note(note: &str) {
    if let Ok(mut n) = NOTE.lock() {
        note.clone_into(&mut n);
    }
}

/// The one line a failure logs.
pub fn failure_line(stage: Stage, error: &dyn fmt::Display, note: &str) -> String {
    if note.is_empty() {
        format!("stage {stage} failed: {error}; action: reboot")
    } else {
        format!("stage {stage} failed: {error}; action: reboot ({note})")
    }
}

/// Logs the failure of `stage` and reboots. Never returns.
pub fn fail(stage: Stage, error: &dyn fmt::Display) -> ! {
    let note = NOTE.lock().map(|n| n.clone()).unwrap_or_default();
    kmsg::error(&failure_line(stage, error, &note));
    reboot()
}

/// Flushes file systems and restarts the machine. If the kernel refuses (not PID 1, no
/// CAP_SYS_BOOT), says so and waits forever rather than exit.
pub fn reboot() -> ! {
    rustix::fs::sync();
    if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::Restart) {
        kmsg::error(&format!("reboot failed: {e}; halting here"));
    }
    halt()
}

/// Waits forever without using the CPU.
pub fn halt() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_names_stage_error_and_action() {
        assert_eq!(
            failure_line(
                Stage::Modules,
                &"loading module dm_mod (/lib/x.ko): bad",
                ""
            ),
            "stage modules failed: loading module dm_mod (/lib/x.ko): bad; action: reboot"
        );
        assert_eq!(
            failure_line(Stage::Verity, &"bad hash", "counted against slot B; next boot: slot A"),
            "stage verity failed: bad hash; action: reboot (counted against slot B; next boot: slot A)"
        );
        let names: Vec<_> = [
            Stage::ApiMounts,
            Stage::Cmdline,
            Stage::Modules,
            Stage::Disk,
            Stage::Slots,
            Stage::Verity,
            Stage::Root,
            Stage::SwitchRoot,
            Stage::Data,
            Stage::Caps,
            Stage::Handoff,
        ]
        .iter()
        .map(|s| s.name())
        .collect();
        assert_eq!(
            names,
            [
                "api-mounts",
                "cmdline",
                "modules",
                "disk",
                "slots",
                "verity",
                "root",
                "switch-root",
                "data",
                "caps",
                "handoff"
            ]
        );
    }
}
