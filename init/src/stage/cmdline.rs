//! The cmdline stage: `/proc/cmdline` read once and parsed with the workspace's one parser,
//! [`prairiedog::cmdline`], which types every `liftoff.` key (DESIGN.md section 6); and,
//! once the modules are loaded (efivarfs), [`check_signed`]: under Secure Boot every
//! `liftoff.` key must be the signed image's.
//!
//! A slot's unified kernel image carries its command line twice, both inside what the db
//! key signs: as the `.cmdline` section systemd-stub hands the kernel, and as
//! [`SIGNED_CMDLINE`] in a second archive of its `.initrd` (docs/secure-boot.md). Under
//! Secure Boot the stub ignores what a loader passes, so the two agree; a kernel that
//! reached PID 1 some other way (a loader that passes its own command line to this signed
//! kernel and initramfs) is caught here, before the disk is touched.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use prairiedog::cmdline::{Cmdline, Unsigned};

/// The signed command line in the initramfs of a unified kernel image, under the root.
pub const SIGNED_CMDLINE: &str = "etc/liftoff/cmdline";

/// The cmdline stage's failure.
#[derive(Debug)]
pub enum CmdlineError {
    /// The kernel's command line (or the signed one) cannot be read.
    Read { path: PathBuf, source: io::Error },
    /// Under Secure Boot, a `liftoff.` key differs from the signed image's.
    Unsigned(Unsigned),
    /// Secure Boot is on and the initramfs holds no signed command line.
    NoSigned { path: PathBuf },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::Read { path, source } => {
                write!(f, "reading {}: {source}", path.display())
            }
            CmdlineError::Unsigned(u) => {
                write!(f, "Secure Boot is on and {u}; refusing to boot this slot")
            }
            CmdlineError::NoSigned { path } => write!(
                f,
                "Secure Boot is on and the initramfs holds no signed command line ({} is \
                 missing): not a Liftoff unified kernel image; refusing to boot this slot",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CmdlineError {}

/// Reads and parses `<root>/proc/cmdline`. Unknown keys and malformed values are in the
/// result's `problems`, for the caller to log; they never fail the stage.
pub fn read(root: &Path) -> Result<Cmdline, CmdlineError> {
    let path = root.join("proc/cmdline");
    std::fs::read_to_string(&path)
        .map(|text| prairiedog::cmdline::parse(&text))
        .map_err(|source| CmdlineError::Read { path, source })
}

/// Whether the firmware booted with Secure Boot on, as far as PID 1 can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecureBoot {
    On,
    /// Off, or a firmware without Secure Boot, or not a UEFI boot.
    Off,
    /// A UEFI boot whose `SecureBoot` variable cannot be read: why.
    Unknown(String),
}

/// Where the running command line's `liftoff.` keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// All are the signed image's, and Secure Boot is on (or cannot be read, and the
    /// initramfs has a signed command line to hold them to).
    Signed,
    /// Secure Boot is off: the loader's command line stands; where it parts from the
    /// signed image's, if it does.
    Loader(Option<Unsigned>),
    /// Secure Boot is off or cannot be read, and the initramfs holds no signed command line
    /// (a kernel and initramfs booted without a unified kernel image).
    NoSignedLine,
}

/// Holds `<root>/proc/cmdline` to the signed command line `<root>/`[`SIGNED_CMDLINE`]:
/// under Secure Boot, a missing signed line or any `liftoff.` key that differs fails the
/// stage. When Secure Boot cannot be read the check is made if there is a signed line.
pub fn check_signed(root: &Path, secure_boot: &SecureBoot) -> Result<Provenance, CmdlineError> {
    let read = |path: PathBuf| match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CmdlineError::Read { path, source }),
    };
    let signed_path = root.join(SIGNED_CMDLINE);
    let signed = read(signed_path.clone())?;
    let proc_path = root.join("proc/cmdline");
    let running = read(proc_path.clone())?.ok_or_else(|| CmdlineError::Read {
        path: proc_path,
        source: io::ErrorKind::NotFound.into(),
    })?;
    let difference = signed
        .as_deref()
        .map(|signed| prairiedog::cmdline::unsigned_difference(signed, &running));
    match (secure_boot, difference) {
        (SecureBoot::On, None) => Err(CmdlineError::NoSigned { path: signed_path }),
        (SecureBoot::On | SecureBoot::Unknown(_), Some(Some(u))) => Err(CmdlineError::Unsigned(u)),
        (SecureBoot::On | SecureBoot::Unknown(_), Some(None)) => Ok(Provenance::Signed),
        (SecureBoot::Off, Some(d)) => Ok(Provenance::Loader(d)),
        (SecureBoot::Off | SecureBoot::Unknown(_), None) => Ok(Provenance::NoSignedLine),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_command_line_under_a_root() {
        let dir = std::env::temp_dir().join(format!("liftoff-cmdline-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        std::fs::write(dir.join("proc/cmdline"), "ro liftoff.slot=B liftoff.x\n").unwrap();
        let c = read(&dir).unwrap();
        assert_eq!(c.config.slot, Some(prairiedog::Slot::B));
        assert_eq!(c.problems.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            read(&dir).unwrap_err().to_string(),
            format!(
                "reading {}/proc/cmdline: No such file or directory (os error 2)",
                dir.display()
            )
        );
    }

    /// Every Secure Boot state against a signed line that agrees, one that differs, and
    /// none: only a boot with Secure Boot off (or no way to check) goes on with keys that
    /// are not the signed image's.
    #[test]
    fn holds_the_command_line_to_the_signed_one() {
        let dir = std::env::temp_dir().join(format!("liftoff-signed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        std::fs::create_dir_all(dir.join("etc/liftoff")).unwrap();
        let signed = "console=ttyS0 liftoff.slot=A liftoff.roothash=00ff\n";
        let set = |running: &str, signed: Option<&str>| {
            std::fs::write(dir.join("proc/cmdline"), running).unwrap();
            match signed {
                Some(s) => std::fs::write(dir.join(SIGNED_CMDLINE), s).unwrap(),
                None => {
                    let _ = std::fs::remove_file(dir.join(SIGNED_CMDLINE));
                }
            }
        };
        let unknown = SecureBoot::Unknown("efivarfs: no such device".into());
        let tampered = "liftoff.slot=A liftoff.roothash=00ff liftoff.handoff=/bin/sh\n";
        let added = Unsigned::Added("liftoff.handoff=/bin/sh".into());

        set("liftoff.slot=A liftoff.roothash=00ff quiet\n", Some(signed));
        for sb in [SecureBoot::On, unknown.clone()] {
            assert_eq!(check_signed(&dir, &sb).unwrap(), Provenance::Signed);
        }
        assert_eq!(
            check_signed(&dir, &SecureBoot::Off).unwrap(),
            Provenance::Loader(None)
        );

        set(tampered, Some(signed));
        for sb in [SecureBoot::On, unknown.clone()] {
            let e = check_signed(&dir, &sb).unwrap_err();
            assert_eq!(
                e.to_string(),
                "Secure Boot is on and liftoff.handoff=/bin/sh did not come from the signed \
                 image; refusing to boot this slot"
            );
        }
        assert_eq!(
            check_signed(&dir, &SecureBoot::Off).unwrap(),
            Provenance::Loader(Some(added))
        );

        set(tampered, None);
        let e = check_signed(&dir, &SecureBoot::On).unwrap_err();
        assert!(matches!(e, CmdlineError::NoSigned { .. }), "{e}");
        assert!(
            e.to_string().contains("etc/liftoff/cmdline is missing"),
            "{e}"
        );
        for sb in [SecureBoot::Off, unknown] {
            assert_eq!(check_signed(&dir, &sb).unwrap(), Provenance::NoSignedLine);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
