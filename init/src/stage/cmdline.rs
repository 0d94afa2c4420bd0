//! The cmdline stage: `/proc/cmdline` read once and parsed with the workspace's one parser,
//! [`prairiedog::cmdline`], which types every `liftoff.` key (DESIGN.md section 6).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use prairiedog::cmdline::Cmdline;

/// The cmdline stage's failure: the kernel's command line cannot be read.
#[derive(Debug)]
pub enum CmdlineError {
    Read { path: PathBuf, source: io::Error },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::Read { path, source } => {
                write!(f, "reading {}: {source}", path.display())
            }
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
}
