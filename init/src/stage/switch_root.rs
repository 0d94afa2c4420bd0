//! Leaving the initramfs for the verified root.
//!
//! The initramfs is the kernel's rootfs, which can never be unmounted, so its memory is
//! given back by deleting its files. The sequence (util-linux `switch_root`'s, with the
//! deletion moved after the handoff mark):
//!
//! 1. move the API mounts (`/dev`, `/proc`, `/sys`, `/run`) under the new root, so that
//!    nothing the next stage needs stays behind;
//! 2. `chdir` into the new root, keeping a descriptor of the initramfs's root;
//! 3. move the new root's mount onto `/` and `chroot` into it;
//! 4. after the handoff mark, [`free_initramfs`]: delete every file of the initramfs
//!    through that descriptor, never crossing into another file system, except the API
//!    mounts' folders: PID 1's module child, in a mount namespace of its own, may still
//!    have the API file systems mounted on them, and a folder deleted there would take its
//!    mount away from the child (from Linux 3.18 on, deleting a mount point of another
//!    namespace detaches that mount). It takes 10-15 ms under TCG that the boot no longer
//!    waits for; the memory comes back a moment later.
//!
//! After that, `exec` starts the next stage as PID 1.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::mount::mount_move;

/// The mounts that follow PID 1 into the new root.
pub const MOVED: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

#[derive(Debug)]
pub enum SwitchRootError {
    MissingMountPoint {
        path: PathBuf,
    },
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    Chdir {
        path: PathBuf,
        source: io::Error,
    },
    Chroot {
        source: io::Error,
    },
}

impl fmt::Display for SwitchRootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchRootError::MissingMountPoint { path } => write!(
                f,
                "the new root has no {} to move the API mount onto",
                path.display()
            ),
            SwitchRootError::Move { from, to, source } => write!(
                f,
                "moving mount {} to {}: {source}",
                from.display(),
                to.display()
            ),
            SwitchRootError::Chdir { path, source } => {
                write!(f, "changing directory to {}: {source}", path.display())
            }
            SwitchRootError::Chroot { source } => write!(f, "chroot into the new root: {source}"),
        }
    }
}

impl std::error::Error for SwitchRootError {}

/// Switches to `new_root` (an absolute path that is a mount point). On success the process
/// runs in the new root, and the initramfs's root is the descriptor returned, for
/// [`free_initramfs`] (`None` if it could not be opened: its files then stay, which only
/// costs memory).
pub fn switch_root(new_root: &Path) -> Result<Option<OwnedFd>, SwitchRootError> {
    for api in MOVED {
        let from = PathBuf::from(api);
        let to = new_root.join(api.trim_start_matches('/'));
        if !to.is_dir() {
            return Err(SwitchRootError::MissingMountPoint { path: to });
        }
        mount_move(&from, &to).map_err(|e| SwitchRootError::Move {
            from: from.clone(),
            to: to.clone(),
            source: e.into(),
        })?;
    }
    std::env::set_current_dir(new_root).map_err(|source| SwitchRootError::Chdir {
        path: new_root.to_path_buf(),
        source,
    })?;
    let initramfs = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok();
    mount_move(".", "/").map_err(|e| SwitchRootError::Move {
        from: new_root.to_path_buf(),
        to: PathBuf::from("/"),
        source: e.into(),
    })?;
    rustix::process::chroot(".").map_err(|e| SwitchRootError::Chroot { source: e.into() })?;
    std::env::set_current_dir("/").map_err(|source| SwitchRootError::Chdir {
        path: PathBuf::from("/"),
        source,
    })?;
    Ok(initramfs)
}

/// Deletes the initramfs's files through `initramfs` ([`switch_root`]'s descriptor), except
/// the API mounts' folders, and goes back to `/`. Best effort: what cannot be deleted only
/// costs memory.
pub fn free_initramfs(initramfs: OwnedFd) {
    if rustix::process::fchdir(&initramfs).is_ok() {
        let keep = MOVED.map(|m| m.trim_start_matches('/'));
        let freed = remove_same_fs(Path::new("."), &keep).unwrap_or(0);
        crate::infra::kmsg::debug(&format!("initramfs: {freed} files and folders freed"));
    }
    let _ = rustix::process::chdir("/");
}

/// Deletes everything below `dir` that is on the same file system as `dir`, leaving `dir`
/// itself, any mount point below it, and the paths in `keep` (relative to `dir`, with what
/// is under them). Returns how many entries were removed.
pub fn remove_same_fs(dir: &Path, keep: &[&str]) -> io::Result<u64> {
    let dev = std::fs::symlink_metadata(dir)?.dev();
    let keep: Vec<PathBuf> = keep.iter().map(|k| dir.join(k)).collect();
    remove_children(dir, dev, &keep)
}

fn remove_children(dir: &Path, dev: u64, keep: &[PathBuf]) -> io::Result<u64> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if keep.contains(&path) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            // Another file system mounted here: the new root, or a moved API mount.
            continue;
        }
        if meta.is_dir() {
            removed += remove_children(&path, dev, keep).unwrap_or(0);
            if std::fs::remove_dir(&path).is_ok() {
                removed += 1;
            }
        } else if std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_everything_on_the_same_fs() {
        let dir = std::env::temp_dir().join(format!("liftoff-switchroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b/c")).unwrap();
        std::fs::write(dir.join("a/b/c/file"), b"x").unwrap();
        std::fs::write(dir.join("init"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        std::fs::create_dir_all(dir.join("dev/sub")).unwrap();
        let kept = dir.join("dev");
        let removed = remove_same_fs(&dir, &["dev"]).unwrap();
        assert_eq!(removed, 6);
        assert!(dir.is_dir());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, std::slice::from_ref(&kept));
        assert!(kept.join("sub").is_dir());
        std::fs::remove_dir_all(&kept).unwrap();
        // The symlink's target was not followed.
        assert!(Path::new("/etc/passwd").exists());
        std::fs::remove_dir(&dir).unwrap();
    }

    /// The initramfs is freed through the descriptor, wherever the process is, and only
    /// the API mounts' folders stay; the process ends up in `/`. In a child process: the
    /// working folder is the whole process's.
    #[test]
    fn frees_the_initramfs_through_its_descriptor() {
        let dir = std::env::temp_dir().join(format!("liftoff-initramfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["dev/pts", "proc", "sys", "run", "lib/modules", "sysroot"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("init"), b"x").unwrap();
        std::fs::write(dir.join("lib/modules/a.ko"), b"x").unwrap();
        let fd = rustix::fs::open(&dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut fd = Some(fd);
        let mut free = |_: &mut crate::infra::process::Handshake| {
            free_initramfs(fd.take().ok_or("twice")?);
            let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
            Ok(cwd.into_os_string().into_encoded_bytes())
        };
        let cwd = crate::infra::process::beside(&mut free)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(cwd, b"/");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["dev", "proc", "run", "sys"]);
        assert!(
            dir.join("dev/pts").is_dir(),
            "what is under a kept folder stays"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
