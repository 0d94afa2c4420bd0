//! The failure policy (DESIGN.md section 7): what PID 1 does when a stage fails.
//!
//! PID 1 must never panic, return or exit: the kernel would panic with "Attempted to kill
//! init". A failed stage hands its [`BootError`] to [`fail`], which asks [`decide`] for the
//! [`Outcome`], logs one line that names the stage, what failed (device or path) and the
//! action, and carries the action out. The decision is made here only, by the kind of
//! error, never by its text.
//!
//! # Decisions
//!
//! A failure that depends on the slot reboots. One that does not (the disk's own state)
//! would fail the same way on every boot of either slot, so the boot goes on without what
//! failed ([`degrade_or_fail`]): the line says "action: boot degraded", the reason lands in
//! `/run/liftoff/degraded` for `prairiedog status`, the health line repeats it, and the
//! slot is not charged. Whether a reboot is charged to the running slot depends on when
//! it happens, not on the policy: before the slots stage, GRUB's `liftoff_pending` flag is
//! still set, so GRUB counts the boot as failed and falls back to the other slot; from the
//! slots stage on, the boot is already counted (a try spent, or one more unhealthy boot)
//! and grubenv names the slot the A/B rules pick next, which the line says.
//!
//! | stage error | depends on the slot (section 7) | outcome |
//! |---|---|---|
//! | `ApiMounts` (`MountError`) | yes: the slot's kernel | reboot |
//! | `Cmdline` (`CmdlineError`): unreadable, or under Secure Boot keys not the signed image's | yes: the slot's kernel and its signed image | reboot |
//! | `Modules` (`ModuleError`) | yes: the slot's initramfs | reboot |
//! | `Disk` (`NotFound`) | yes: the initramfs's drivers, or no disk at all | reboot |
//! | `Disk` (`Ambiguous`): cloned disks the firmware cannot tell apart | no | stop: rebooting finds the same disks, booting one could write the wrong disk |
//! | `Slots` (`SlotError`) | yes: the A/B state cannot be kept | reboot |
//! | `Verity` (`VerityError`) | yes: ROOT, HASH, the trusted root hash | reboot |
//! | `Root` (`RootError`) | yes: the slot's root | reboot |
//! | `SwitchRoot` (`SwitchRootError`) | yes: the slot's root | reboot |
//! | `Settings` (`SettingsError`): PRIVATE will not mount, or its bootconfig is unreadable or malformed | no: the disk's own state | degraded: the command line's settings only |
//! | `Data` (`DataError`), kernel or root parts: random bytes, dm-crypt, the /var and /opt binds | yes: the slot's kernel or root | reboot |
//! | `Data` (`DataError`), the disk's own state: PRIVATE or its key, growth, a DATA that is not provably fresh, its file system | no: rebooting cannot help | degraded: DATA left untouched and unmounted, /local in memory |
//! | `Caps` (`CapsError`) | yes: the root's bounding-set list | reboot |
//! | `Host` (`HostError`): a container-host mount, cgroup controller, lo, host name or sysctl | no: the kernel's features, the same on the next boot; a host without one still runs containerd | degraded: the step is left out |
//! | `Handoff` (`HandoffError`) | yes: the root's systemd or containerd | reboot |

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use crate::infra::kmsg;
use crate::stage::disk::DiskError;
use crate::stage::{BootError, Stage};

/// What a failure means for the A/B state, once the slot stage has counted this boot.
static NOTE: Mutex<String> = Mutex::new(String::new());

/// Records what a failure from now on means for the A/B state (said in the failure line).
pub fn set_note(note: &str) {
    if let Ok(mut n) = NOTE.lock() {
        note.clone_into(&mut n);
    }
}

/// The slot that runs, once known, for the failure record the next boot reads.
static SLOT: Mutex<Option<prairiedog::Slot>> = Mutex::new(None);

/// Records the running slot (from the command line, then the slots stage).
pub fn set_slot(slot: Option<prairiedog::Slot>) {
    if let Ok(mut s) = SLOT.lock() {
        *s = slot;
    }
}

/// Why this boot runs degraded (the first reason), for the health line.
static DEGRADED: Mutex<Option<String>> = Mutex::new(None);

/// What the policy does about a failed stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Log, sync and restart the machine; the A/B rules decide what boots next.
    Reboot,
    /// Go on without what failed: rebooting either slot would fail the same way.
    Degraded,
    /// Stop where we are: rebooting fails the same way, and going on could do harm.
    Stop,
}

/// The failure policy: the outcome for a failed stage, by the kind of its error (the table
/// in the module docs). A new stage error does not compile until it has a row here.
pub fn decide(error: &BootError) -> Outcome {
    match error {
        BootError::ApiMounts(_) => Outcome::Reboot,
        BootError::Cmdline(_) => Outcome::Reboot,
        BootError::Modules(_) => Outcome::Reboot,
        BootError::Disk(DiskError::NotFound(_)) => Outcome::Reboot,
        BootError::Disk(DiskError::Ambiguous(_)) => Outcome::Stop,
        BootError::Slots(_) => Outcome::Reboot,
        BootError::Verity(_) => Outcome::Reboot,
        BootError::Root(_) => Outcome::Reboot,
        BootError::SwitchRoot(_) => Outcome::Reboot,
        BootError::Settings(_) => Outcome::Degraded,
        BootError::Data(e) if e.depends_on_slot() => Outcome::Reboot,
        BootError::Data(_) => Outcome::Degraded,
        BootError::Caps(_) => Outcome::Reboot,
        BootError::Host(_) => Outcome::Degraded,
        BootError::Handoff(_) => Outcome::Reboot,
    }
}

/// The one line a failure that reboots logs.
pub fn failure_line(stage: Stage, error: &dyn fmt::Display, note: &str) -> String {
    if note.is_empty() {
        format!("stage {stage} failed: {error}; action: reboot")
    } else {
        format!("stage {stage} failed: {error}; action: reboot ({note})")
    }
}

/// The one line a failure that degrades the boot logs; `without` says what the boot goes
/// on without.
pub fn degraded_line(stage: Stage, error: &dyn fmt::Display, without: &str) -> String {
    format!("stage {stage} failed: {error}; action: boot degraded ({without})")
}

/// Applies the failure policy to a failed stage: logs the failure line and carries out
/// [`decide`]'s outcome; before a reboot, the failure is kept for the next boot's history
/// ([`crate::stage::pstore::keep_pid1`]). Never returns: a stage whose failure can degrade the boot goes
/// through [`degrade_or_fail`] instead, because only its caller can go on without it.
pub fn fail(error: BootError) -> ! {
    if decide(&error) == Outcome::Stop {
        kmsg::error(&format!(
            "stage {} failed: {error}; action: stop (rebooting would fail the same way)",
            error.stage()
        ));
        rustix::fs::sync();
        halt()
    }
    let note = NOTE.lock().map(|n| n.clone()).unwrap_or_default();
    kmsg::error(&failure_line(error.stage(), &error, &note));
    let slot = SLOT.lock().ok().and_then(|s| *s);
    let text = error.to_string();
    crate::stage::pstore::keep_pid1(Path::new("/sys"), slot, error.stage().name(), &text);
    reboot()
}

/// Applies the failure policy to a failed stage that the boot can go on without. When the
/// policy says [`Outcome::Degraded`], logs the failure line naming `without` (what the
/// boot goes on without), records the reason under `root` for `prairiedog status`
/// ([`prairiedog::host::DEGRADED_FILE`]) and for the health line, and returns; otherwise
/// fails as [`fail`] does.
pub fn degrade_or_fail(error: BootError, root: &Path, without: &str) {
    if decide(&error) != Outcome::Degraded {
        fail(error)
    }
    kmsg::error(&degraded_line(error.stage(), &error, without));
    let reason = format!("{}: {error}", error.stage());
    let file = root.join(prairiedog::host::DEGRADED_FILE);
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&file, format!("{reason}\n")));
    if let Err(e) = written {
        kmsg::warn(&format!(
            "writing {}: {e}; prairiedog status will not show the degraded boot",
            file.display()
        ));
    }
    if let Ok(mut d) = DEGRADED.lock() {
        d.get_or_insert(reason);
    }
}

/// Why this boot runs degraded, if it does: the first reason [`degrade_or_fail`] recorded.
pub fn degraded() -> Option<String> {
    DEGRADED.lock().ok().and_then(|d| d.clone())
}

/// `stage_result.or_fail()`: the value, or the failure policy for the stage's error.
pub trait OrFail<T> {
    fn or_fail(self) -> T;
}

impl<T, E: Into<BootError>> OrFail<T> for Result<T, E> {
    fn or_fail(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => fail(e.into()),
        }
    }
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
            Stage::Host,
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
                "host",
                "handoff"
            ]
        );
    }

    #[test]
    fn slot_failures_reboot_and_the_disks_own_state_degrades() {
        use crate::stage::data::DataError;
        let io = || std::io::Error::from_raw_os_error(5);
        let reboot = [
            BootError::from(crate::stage::verity::VerityError::NoRootHash),
            BootError::from(crate::stage::slots::SlotError::NoSlot),
            BootError::from(DataError::Random(io())),
            BootError::from(DataError::Bind {
                dir: "var".into(),
                source: io(),
            }),
            BootError::from(crate::stage::handoff::HandoffError::Exec {
                target: "/sbin/init".into(),
                source: std::io::Error::from_raw_os_error(2),
            }),
        ];
        for e in &reboot {
            assert_eq!(decide(e), Outcome::Reboot, "{e}");
        }
        let degraded = [
            BootError::from(DataError::NoDataPartition {
                disk: "/dev/vda".into(),
            }),
            BootError::from(DataError::NoPrivatePartition {
                disk: "/dev/vda".into(),
                mode: "keyfile".into(),
            }),
            BootError::from(DataError::Tpm(tpm2::Error::Token("no blob".into()))),
            BootError::from(DataError::WrongTpmSecret {
                device: "/dev/vda9".into(),
            }),
            BootError::from(DataError::NotEmpty {
                device: "/dev/vda9".into(),
            }),
            BootError::from(DataError::NoKey {
                device: "/dev/vda9".into(),
            }),
            BootError::from(DataError::Key {
                path: "/dev/vda8".into(),
                source: io(),
            }),
            BootError::from(DataError::KeyLength {
                path: "/run/liftoff/private/data.key".into(),
                len: 3,
            }),
            BootError::from(DataError::Size {
                device: "/dev/vda9".into(),
                source: io(),
            }),
            BootError::from(crate::stage::host::HostError::Controllers {
                missing: vec!["io"],
            }),
            BootError::from(crate::stage::host::HostError::Sysctl {
                key: "net.ipv4.ip_forward".to_owned(),
                source: io(),
            }),
        ];
        for e in &degraded {
            assert_eq!(decide(e), Outcome::Degraded, "{e}");
        }
        let clones = BootError::from(DiskError::Ambiguous(crate::stage::disk::Ambiguous {
            disks: vec!["nvme0n1".into(), "vda".into()],
            why: "the kernel was not booted through UEFI".into(),
        }));
        assert_eq!(decide(&clones), Outcome::Stop);
        assert_eq!(
            degraded_line(Stage::Data, &degraded[4], "DATA left untouched"),
            "stage data failed: /dev/vda9 holds data but no ext4 or xfs file system: \
             refusing to format it; action: boot degraded (DATA left untouched)"
        );
    }
}
