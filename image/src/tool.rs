//! The host tools the builder drives (`mkfs.*`, mtools, `grub-editenv`, ...) and
//! [`ImageError`], the error of every step below the whole-build level: a tool that failed
//! with its output, or a file with the path it was read from or written to.

use std::fmt;
use std::io;
use std::process::Command;

#[derive(Debug)]
pub enum ImageError {
    Io {
        what: String,
        source: io::Error,
    },
    Tool {
        command: String,
        output: String,
    },
    Verity(verity::Error),
    /// Laying out or writing the partition table (the error names the disk).
    Gpt(gpt::Error),
    /// Writing GRUB for legacy BIOS into a disk ([`crate::bios::install`]).
    BiosBoot {
        disk: std::path::PathBuf,
        problem: String,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Io { what, source } => write!(f, "{what}: {source}"),
            ImageError::Tool { command, output } => write!(f, "{command} failed: {output}"),
            ImageError::Verity(e) => write!(f, "building the verity tree: {e}"),
            ImageError::Gpt(e) => write!(f, "writing the partition table: {e}"),
            ImageError::BiosBoot { disk, problem } => {
                write!(
                    f,
                    "installing GRUB for BIOS on {}: {problem}",
                    disk.display()
                )
            }
        }
    }
}

impl std::error::Error for ImageError {}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// Runs a host tool; its output becomes the error if it fails.
pub fn run(cmd: &mut Command) -> Result<(), ImageError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| ImageError::Io {
        what: format!("running {command} (run scripts/setup)"),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ImageError::Tool {
            command,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}
