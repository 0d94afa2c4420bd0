//! [`BuildError`], one variant per step of a build that can fail, and the work folder every
//! build makes beside its output and always removes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use prairiedog::install::InstallError;

use crate::boot::BootError;
use crate::tool::{self, ImageError};

/// A step of a build that failed; each names the file or tool.
#[derive(Debug)]
pub enum BuildError {
    /// The root path does not exist or cannot be read.
    NoRoot {
        path: PathBuf,
        source: io::Error,
    },
    /// The root path is neither a directory nor a regular file.
    NotATree {
        path: PathBuf,
    },
    /// `tar` could not unpack the root (not a tarball, truncated, unknown compression).
    Unpack {
        tarball: PathBuf,
        output: String,
    },
    /// Copying the root directory into the stage.
    Copy {
        tree: PathBuf,
        output: String,
    },
    /// Creating, changing or removing a file of the build.
    Io {
        what: String,
        source: io::Error,
    },
    /// The kernel or the initramfs.
    Boot(String),
    /// A path `debugfs` cannot name in an ext4 root (a `"` or a line break in it).
    Ext4Path {
        path: PathBuf,
    },
    Image(ImageError),
    /// Writing the ESP and the BOOT partitions.
    BootFiles(BootError),
    /// Digesting the payload files for the manifest.
    Manifest(InstallError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoRoot { path, source } => {
                write!(f, "reading the root {}: {source}", path.display())
            }
            BuildError::NotATree { path } => write!(
                f,
                "the root {} is neither a directory nor a tarball",
                path.display()
            ),
            BuildError::Unpack { tarball, output } => write!(
                f,
                "unpacking {} with tar (is it a tarball?): {}",
                tarball.display(),
                output.trim()
            ),
            BuildError::Copy { tree, output } => {
                write!(f, "copying {}: {}", tree.display(), output.trim())
            }
            BuildError::Io { what, source } => write!(f, "{what}: {source}"),
            BuildError::Boot(e) => write!(f, "the kernel and initramfs: {e}"),
            BuildError::Ext4Path { path } => write!(
                f,
                "{} holds a double quote or a line break, which debugfs cannot name \
                 (use --fs erofs)",
                path.display()
            ),
            BuildError::Image(e) => e.fmt(f),
            BuildError::BootFiles(e) => e.fmt(f),
            BuildError::Manifest(e) => write!(f, "making the manifest: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<ImageError> for BuildError {
    fn from(e: ImageError) -> Self {
        BuildError::Image(e)
    }
}

impl From<BootError> for BuildError {
    fn from(e: BootError) -> Self {
        BuildError::BootFiles(e)
    }
}

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// A work folder beside the output, removed when dropped (success or failure).
pub(super) struct WorkDir(pub(super) PathBuf);

impl WorkDir {
    /// `.<out's name>.<purpose>-<pid>` in the folder of `out`: on the same file system, so
    /// the finished files are renamed into place.
    pub(super) fn beside(out: &Path, purpose: &str) -> Result<WorkDir, BuildError> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = parent.join(format!(".{name}.{purpose}-{}", std::process::id()));
        if dir.exists() {
            remove_tree(&dir)?;
        }
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Best effort: a leftover work folder costs disk space, not correctness.
        let _ = remove_tree(&self.0);
    }
}

/// Removes a folder, making read-only folders of an unpacked root writable first.
pub(super) fn remove_tree(dir: &Path) -> Result<(), BuildError> {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return Ok(());
    }
    tool::run(Command::new("chmod").arg("-R").arg("u+w").arg(dir))?;
    std::fs::remove_dir_all(dir).map_err(io_err(format!("removing {}", dir.display())))
}
