//! The static binaries a guest runs, built by `scripts/build-guest` (or `scripts/test`)
//! into `target/<arch>-unknown-linux-musl/guest/` (stripped copies of the `pid1` profile's
//! build), and [`made_once`], how the builder caches what it makes.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::kernel::workspace_root;
use crate::tool::{io_err, ImageError};
use crate::Arch;

/// The cargo target folder: `$CARGO_TARGET_DIR`, else `target` at the workspace root.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

/// Path of the guest build of binary `name` for `arch`, or an error that says how to
/// build it.
pub fn musl_binary(arch: Arch, name: &str) -> Result<PathBuf, String> {
    let path = target_dir()
        .join(arch.musl_target())
        .join("guest")
        .join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run scripts/build-guest (stripped copies of cargo build \
             --profile pid1 --target {})",
            path.display(),
            arch.musl_target()
        ))
    }
}

/// The file or folder `dir/name`, made by `make` the first time and kept: `make` writes a
/// path beside it, renamed into place once complete, so a cut-short run leaves nothing
/// under `name`. Callers (test threads, test processes, builds) take the lock
/// `dir/.<name>.lock` in turn, so one makes it and the others find it made.
pub fn made_once(
    dir: &Path,
    name: &str,
    make: impl FnOnce(&Path) -> Result<(), ImageError>,
) -> Result<PathBuf, ImageError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let out = dir.join(name);
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock =
        File::create(&lock_path).map_err(io_err(format!("creating {}", lock_path.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(format!("locking {}", lock_path.display()))(e.into()))?;
    if out.exists() {
        return Ok(out);
    }
    let partial = dir.join(format!("{name}.partial"));
    remove(&partial)?;
    if let Err(e) = make(&partial) {
        let _ = remove(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &out).map_err(io_err(format!(
        "renaming {} to {}",
        partial.display(),
        out.display()
    )))?;
    Ok(out)
}

/// Removes what a cut-short run left at `path`, a file or a folder.
fn remove(path: &Path) -> Result<(), ImageError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(io_err(format!("removing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Threads asking at once for the same file all get it, made once (two test threads
    /// signing the same image once raced on one half-written file).
    #[test]
    fn made_once_by_one_of_many_threads() {
        let dir = crate::test_work("made-once");
        let makes = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let out = made_once(&dir, "file", |partial| {
                        makes.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        std::fs::write(partial, b"made").map_err(io_err("writing"))
                    })
                    .unwrap();
                    assert_eq!(std::fs::read(out).unwrap(), b"made");
                });
            }
        });
        assert_eq!(makes.load(Ordering::SeqCst), 1);
    }

    /// A failed make leaves nothing behind, what a cut-short run left is cleared, and the
    /// next call makes the file.
    #[test]
    fn made_once_leaves_nothing_after_a_failure() {
        let dir = crate::test_work("made-once-fail");
        let failed = made_once(&dir, "folder", |partial| {
            std::fs::create_dir(partial).map_err(io_err("creating"))?;
            Err(ImageError::Tool {
                command: "make".into(),
                output: "broken".into(),
            })
        });
        assert!(failed.unwrap_err().to_string().contains("broken"));
        assert!(!dir.join("folder").exists() && !dir.join("folder.partial").exists());
        std::fs::write(dir.join("folder.partial"), b"left over").unwrap();
        let out = made_once(&dir, "folder", |partial| {
            std::fs::create_dir(partial).map_err(io_err("creating"))
        })
        .unwrap();
        assert!(out.is_dir());
    }
}
