//! Liftoff's own tools in every root the builders make: `prairiedog` (A/B state, updates,
//! DATA's recovery key) at [`PRAIRIEDOG`], and in a root that boots into systemd its
//! `mark-successful-boot.service`, enabled. PID 1 marks a slot successful itself only when
//! it supervises containerd; a boot handed to systemd is marked by that unit once
//! `boot-complete.target` is reached, or its try is spent and the next reboot falls back
//! (docs/prairiedog.md, "systemd").

use std::path::Path;

use crate::tool::ImageError;
use crate::{artifacts, Arch};

/// Where prairiedog goes in the root (the unit's `ExecStart=`).
pub const PRAIRIEDOG: &str = "usr/bin/prairiedog";

/// The unit's place among the distribution's units, and the targets that pull it in.
pub const UNIT: &str = "usr/lib/systemd/system/mark-successful-boot.service";
const UNIT_TEXT: &str = include_str!("../../prairiedog/systemd/mark-successful-boot.service");
const WANTED_BY: [&str; 2] = ["multi-user.target", "boot-complete.target"];

/// Whether the root tree at `stage` boots into systemd (`/sbin/init` or the binary itself,
/// with or without the merged /usr).
pub fn has_systemd(stage: &Path) -> bool {
    ["usr/lib/systemd/systemd", "lib/systemd/systemd"]
        .iter()
        .any(|p| stage.join(p).is_file())
}

/// The bytes [`add`] puts into a root for `arch` (for the image cache's key).
pub fn fingerprint(arch: Arch) -> Result<Vec<u8>, ImageError> {
    let mut bytes = std::fs::read(prairiedog(arch)?).map_err(io(Path::new(PRAIRIEDOG)))?;
    bytes.extend_from_slice(UNIT_TEXT.as_bytes());
    Ok(bytes)
}

fn prairiedog(arch: Arch) -> Result<std::path::PathBuf, ImageError> {
    artifacts::musl_binary(arch, "prairiedog").map_err(|e| ImageError::Io {
        what: "adding Liftoff's tools".into(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, e),
    })
}

/// Adds the tools to the root tree at `stage` for `arch` (the stripped static build of
/// `scripts/build-guest`). A prairiedog already in the tree is replaced: the one that
/// matches this PID 1 and this disk layout is the one to run.
pub fn add(stage: &Path, arch: Arch) -> Result<(), ImageError> {
    let binary = prairiedog(arch)?;
    let systemd = has_systemd(stage);
    let mut files = vec![(
        PRAIRIEDOG,
        0o755,
        std::fs::read(&binary).map_err(io(&binary))?,
    )];
    if systemd {
        files.push((UNIT, 0o644, UNIT_TEXT.as_bytes().to_vec()));
    }
    for (path, mode, data) in files {
        let dest = stage.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let _ = std::fs::remove_file(&dest);
        std::fs::write(&dest, data).map_err(io(&dest))?;
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(io(&dest))?;
    }
    if systemd {
        for target in WANTED_BY {
            let link = stage
                .join("usr/lib/systemd/system")
                .join(format!("{target}.wants"))
                .join("mark-successful-boot.service");
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("../mark-successful-boot.service", &link)
                .map_err(io(&link))?;
        }
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        what: format!("adding Liftoff's tools: {}", path.display()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_goes_only_into_systemd_roots() {
        let dir = crate::test_work("tools");
        let plain = dir.join("plain");
        std::fs::create_dir_all(plain.join("usr/bin")).unwrap();
        add(&plain, Arch::X86_64).unwrap();
        assert!(plain.join(PRAIRIEDOG).is_file());
        assert!(!plain.join(UNIT).exists());

        let sd = dir.join("systemd");
        std::fs::create_dir_all(sd.join("usr/lib/systemd")).unwrap();
        std::fs::write(sd.join("usr/lib/systemd/systemd"), b"").unwrap();
        std::os::unix::fs::symlink("usr/lib", sd.join("lib")).unwrap();
        std::fs::create_dir_all(sd.join("usr/bin")).unwrap();
        std::fs::write(sd.join(PRAIRIEDOG), b"an older one").unwrap();
        assert!(has_systemd(&sd));
        add(&sd, Arch::X86_64).unwrap();
        add(&sd, Arch::X86_64).unwrap();
        assert_ne!(std::fs::read(sd.join(PRAIRIEDOG)).unwrap(), b"an older one");
        assert_eq!(std::fs::read_to_string(sd.join(UNIT)).unwrap(), UNIT_TEXT);
        for target in WANTED_BY {
            let link = sd.join(format!(
                "usr/lib/systemd/system/{target}.wants/mark-successful-boot.service"
            ));
            assert_eq!(
                std::fs::read_link(&link).unwrap().to_str(),
                Some("../mark-successful-boot.service")
            );
            assert_eq!(std::fs::read_to_string(&link).unwrap(), UNIT_TEXT);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
