//! The boot stages of DESIGN.md section 1, one file each, in boot order:
//!
//! | file | stage | does |
//! |---|---|---|
//! | [`mounts`] | api-mounts | /proc, /sys, /dev, /run; also the mount-plan runner later stages use |
//! | [`cmdline`] | cmdline | /proc/cmdline through `prairiedog::cmdline`, the workspace's one parser |
//! | [`modules`] | modules | the image's kernel modules in dependency order |
//! | [`disk`] | disk | the boot disk from sysfs and GPT, without udev |
//! | [`slots`] | slots | the A/B decision on the GPT attribute bits and grubenv |
//! | [`pstore`] | slots | the previous boot's panic record, charged to its slot by [`slots`] |
//! | [`verity`] | verity | dm-verity over ROOT-x and HASH-x, checked against the command line |
//! | [`root`] | root | the verified root read-only at /sysroot, overlays on /run |
//! | [`switch_root`] | switch-root | API mounts moved, initramfs freed, chroot |
//! | [`settings`] | settings | per-host settings from the bootconfig on PRIVATE |
//! | [`data`] | data | DATA grown, encrypted, mounted at /local |
//! | [`caps`] | caps | the image's capability bounding set |
//! | [`host`] | host | containerd mode: cgroup2, devpts, /dev/shm, /dev/mqueue, lo, host name, sysctls |
//! | [`handoff`] | handoff | exec the next stage, or supervise containerd |
//!
//! Each stage takes paths (`/sys`, `/dev`, a root) so tests can point it at a fixture tree,
//! and returns its own error enum; [`BootError`] holds any one of them, with its [`Stage`],
//! on its way to the failure policy ([`crate::infra::failure`]). New stages get a file here
//! too: DATA's LUKS2 and TPM2 unlock beside [`data`] (or a `data/` folder once it grows),
//! network and services between [`caps`] and [`handoff`]; each adds a [`Stage`], a
//! [`BootError`] variant, and a row in the failure policy's table.

use std::fmt;

pub mod caps;
pub mod cmdline;
pub mod data;
pub mod disk;
pub mod handoff;
pub mod host;
pub mod modules;
pub mod mounts;
pub mod pstore;
pub mod root;
pub mod settings;
pub mod slots;
pub mod switch_root;
pub mod verity;

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
    Settings,
    Data,
    Caps,
    Host,
    Handoff,
}

impl Stage {
    /// The stage's name on the timeline and in failure lines.
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
            Stage::Settings => "settings",
            Stage::Data => "data",
            Stage::Caps => "caps",
            Stage::Host => "host",
            Stage::Handoff => "handoff",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed stage: the variant is the stage, its value the stage's own error. It stays
/// typed until the failure policy ([`crate::infra::failure::decide`]) looks at it.
#[derive(Debug)]
pub enum BootError {
    ApiMounts(mounts::MountError),
    Cmdline(cmdline::CmdlineError),
    Modules(modules::ModuleError),
    Disk(disk::DiskError),
    Slots(slots::SlotError),
    Verity(verity::VerityError),
    Root(root::RootError),
    SwitchRoot(switch_root::SwitchRootError),
    Settings(settings::SettingsError),
    Data(data::DataError),
    Caps(caps::CapsError),
    Host(host::HostError),
    Handoff(handoff::HandoffError),
}

impl BootError {
    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        match self {
            BootError::ApiMounts(_) => Stage::ApiMounts,
            BootError::Cmdline(_) => Stage::Cmdline,
            BootError::Modules(_) => Stage::Modules,
            BootError::Disk(_) => Stage::Disk,
            BootError::Slots(_) => Stage::Slots,
            BootError::Verity(_) => Stage::Verity,
            BootError::Root(_) => Stage::Root,
            BootError::SwitchRoot(_) => Stage::SwitchRoot,
            BootError::Settings(_) => Stage::Settings,
            BootError::Data(_) => Stage::Data,
            BootError::Caps(_) => Stage::Caps,
            BootError::Host(_) => Stage::Host,
            BootError::Handoff(_) => Stage::Handoff,
        }
    }
}

/// The stage's own error, as the failure line shows it after `stage NAME failed: `.
impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::ApiMounts(e) => e.fmt(f),
            BootError::Cmdline(e) => e.fmt(f),
            BootError::Modules(e) => e.fmt(f),
            BootError::Disk(e) => e.fmt(f),
            BootError::Slots(e) => e.fmt(f),
            BootError::Verity(e) => e.fmt(f),
            BootError::Root(e) => e.fmt(f),
            BootError::SwitchRoot(e) => e.fmt(f),
            BootError::Settings(e) => e.fmt(f),
            BootError::Data(e) => e.fmt(f),
            BootError::Caps(e) => e.fmt(f),
            BootError::Host(e) => e.fmt(f),
            BootError::Handoff(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BootError {}

/// Every stage error but the mount runner's, which several stages share (the api-mounts
/// stage wraps it explicitly), converts into its stage's [`BootError`].
macro_rules! stage_error {
    ($($error:ty => $variant:ident),* $(,)?) => {
        $(impl From<$error> for BootError {
            fn from(e: $error) -> Self {
                BootError::$variant(e)
            }
        })*
    };
}

stage_error! {
    cmdline::CmdlineError => Cmdline,
    modules::ModuleError => Modules,
    disk::DiskError => Disk,
    slots::SlotError => Slots,
    verity::VerityError => Verity,
    root::RootError => Root,
    switch_root::SwitchRootError => SwitchRoot,
    settings::SettingsError => Settings,
    data::DataError => Data,
    caps::CapsError => Caps,
    host::HostError => Host,
    handoff::HandoffError => Handoff,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_errors_name_their_stage_and_show_the_stage_error() {
        let e = BootError::from(verity::VerityError::NoRootHash);
        assert_eq!(e.stage(), Stage::Verity);
        assert_eq!(
            e.to_string(),
            "no liftoff.roothash on the command line: refusing to use an unverified root"
        );
        let e = BootError::from(handoff::HandoffError::Exec {
            target: "/no/such/stage".into(),
            source: std::io::Error::from_raw_os_error(2),
        });
        assert_eq!(e.stage(), Stage::Handoff);
        assert_eq!(
            e.to_string(),
            "executing /no/such/stage: No such file or directory (os error 2)"
        );
    }
}
