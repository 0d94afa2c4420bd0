//! Mount plans: a mount sequence is a list of [`Mount`] steps, run in order by [`run`]
//! through the [`Mounter`] trait, so tests can check the plan and inject failures without
//! root.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use rustix::mount::MountFlags;

/// One mount step. Paths are absolute in the booted system and are joined to a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub flags: MountFlags,
    /// File-system options (`mode=0755`, overlay's `lowerdir=...`).
    pub data: String,
}

impl Mount {
    pub fn new(source: &str, target: &str, fstype: &str, flags: MountFlags, data: &str) -> Self {
        Mount {
            source: source.to_owned(),
            target: target.to_owned(),
            fstype: fstype.to_owned(),
            flags,
            data: data.to_owned(),
        }
    }
}

/// The kernel API file systems PID 1 needs before anything else.
pub fn api_filesystems() -> Vec<Mount> {
    let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    vec![
        Mount::new("proc", "/proc", "proc", nosuid_nodev_noexec, ""),
        Mount::new("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, ""),
        Mount::new(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            "mode=0755",
        ),
        Mount::new(
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=0755",
        ),
    ]
}

/// The effects a mount plan needs.
pub trait Mounter {
    fn create_dir_all(&mut self, path: &Path) -> io::Result<()>;
    fn mount(&mut self, step: &Mount, target: &Path) -> io::Result<()>;
}

/// The real system calls.
#[derive(Debug, Default)]
pub struct System;

impl Mounter for System {
    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn mount(&mut self, step: &Mount, target: &Path) -> io::Result<()> {
        let data = CString::new(step.data.as_str())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount options"))?;
        rustix::mount::mount(
            step.source.as_str(),
            target,
            step.fstype.as_str(),
            step.flags,
            data.as_c_str(),
        )
        .map_err(io::Error::from)
    }
}

/// A step of a plan that failed.
#[derive(Debug)]
pub enum MountError {
    CreateMountPoint {
        target: PathBuf,
        source: io::Error,
    },
    Mount {
        fstype: String,
        target: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::CreateMountPoint { target, source } => {
                write!(f, "creating mount point {}: {source}", target.display())
            }
            MountError::Mount {
                fstype,
                target,
                source,
            } => write!(f, "mounting {fstype} on {}: {source}", target.display()),
        }
    }
}

impl std::error::Error for MountError {}

/// Runs `plan` under `root`. A target that is already a mount point of the same kind
/// (EBUSY: the kernel mounted devtmpfs itself) counts as done.
pub fn run(mounter: &mut impl Mounter, root: &Path, plan: &[Mount]) -> Result<(), MountError> {
    for step in plan {
        let target = root.join(step.target.trim_start_matches('/'));
        mounter
            .create_dir_all(&target)
            .map_err(|source| MountError::CreateMountPoint {
                target: target.clone(),
                source,
            })?;
        match mounter.mount(step, &target) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {}
            Err(source) => {
                return Err(MountError::Mount {
                    fstype: step.fstype.clone(),
                    target,
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Records every call; fails the mount whose target ends with `fail_target`.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub calls: Vec<String>,
        pub fail_target: Option<(&'static str, i32)>,
    }

    impl Mounter for Recorder {
        fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
            self.calls.push(format!("mkdir {}", path.display()));
            Ok(())
        }
        fn mount(&mut self, step: &Mount, target: &Path) -> io::Result<()> {
            self.calls.push(format!(
                "mount {} {} {}",
                step.fstype,
                target.display(),
                step.data
            ));
            match self.fail_target {
                Some((t, errno)) if target.ends_with(t) => Err(io::Error::from_raw_os_error(errno)),
                _ => Ok(()),
            }
        }
    }

    #[test]
    fn api_plan_in_order() {
        let mut r = Recorder::default();
        run(&mut r, Path::new("/"), &api_filesystems()).unwrap();
        assert_eq!(
            r.calls,
            [
                "mkdir /proc",
                "mount proc /proc ",
                "mkdir /sys",
                "mount sysfs /sys ",
                "mkdir /dev",
                "mount devtmpfs /dev mode=0755",
                "mkdir /run",
                "mount tmpfs /run mode=0755",
            ]
        );
    }

    #[test]
    fn root_is_a_prefix() {
        let mut r = Recorder::default();
        run(&mut r, Path::new("/sysroot"), &api_filesystems()[..1]).unwrap();
        assert_eq!(
            r.calls,
            ["mkdir /sysroot/proc", "mount proc /sysroot/proc "]
        );
    }

    #[test]
    fn failure_names_the_step_and_stops() {
        let mut r = Recorder {
            fail_target: Some(("sys", rustix::io::Errno::NODEV.raw_os_error())),
            ..Recorder::default()
        };
        let err = run(&mut r, Path::new("/"), &api_filesystems()).unwrap_err();
        assert!(
            err.to_string().starts_with("mounting sysfs on /sys: "),
            "{err}"
        );
        assert_eq!(r.calls.len(), 4, "nothing after the failed step runs");
    }

    #[test]
    fn busy_means_already_mounted() {
        let mut r = Recorder {
            fail_target: Some(("dev", rustix::io::Errno::BUSY.raw_os_error())),
            ..Recorder::default()
        };
        run(&mut r, Path::new("/"), &api_filesystems()).unwrap();
        assert_eq!(r.calls.len(), 8);
    }
}
