//! Dropping capabilities from the bounding set before the handoff (DESIGN.md section 1,
//! step 10).
//!
//! The image lists what its host must never regain in `/etc/liftoff/bounding-set.drop` of
//! the verified root: one capability per line (`cap_sys_module`, `CAP_SYS_RAWIO` or
//! `sys_rawio`), `#` comments. The bounding set is inherited by every process PID 1 starts
//! or becomes, so nothing after the handoff (systemd, containerd, containers) can get those
//! capabilities back, even through a set-uid program or file capabilities. A name PID 1
//! does not know fails the boot: the image asked for a protection that would otherwise be
//! silently missing.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rustix::thread::CapabilitySet;

/// The list, relative to the root.
pub const DROP_FILE: &str = "etc/liftoff/bounding-set.drop";

#[derive(Debug)]
pub enum CapsError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    Unknown {
        path: PathBuf,
        line: usize,
        name: String,
    },
    Drop {
        name: String,
        source: io::Error,
    },
}

impl fmt::Display for CapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapsError::Read { path, source } => write!(f, "reading {}: {source}", path.display()),
            CapsError::Unknown { path, line, name } => {
                write!(f, "{}:{line}: unknown capability {name:?}", path.display())
            }
            CapsError::Drop { name, source } => {
                write!(f, "dropping {name} from the bounding set: {source}")
            }
        }
    }
}

impl std::error::Error for CapsError {}

/// Parses the list into (canonical name, capability); `Err((line, name))` for an unknown
/// name.
pub fn parse(text: &str) -> Result<Vec<(String, CapabilitySet)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.split('#').next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        match CapabilitySet::from_name(bare) {
            Some(cap) if cap.bits().count_ones() == 1 => {
                out.push((format!("cap_{}", bare.to_ascii_lowercase()), cap));
            }
            _ => return Err((i + 1, name.to_owned())),
        }
    }
    Ok(out)
}

/// Drops every capability the root's list names; returns their names. No list: nothing
/// to drop.
pub fn drop_listed(root: &Path) -> Result<Vec<String>, CapsError> {
    let path = root.join(DROP_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CapsError::Read { path, source }),
    };
    let caps = parse(&text).map_err(|(line, name)| CapsError::Unknown {
        path: path.clone(),
        line,
        name,
    })?;
    let mut dropped = Vec::with_capacity(caps.len());
    for (name, cap) in caps {
        rustix::thread::remove_capability_from_bounding_set(cap).map_err(|e| CapsError::Drop {
            name: name.clone(),
            source: e.into(),
        })?;
        dropped.push(name);
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_every_spelling() {
        let caps = parse("# what the host never needs\ncap_sys_module\nCAP_SYS_RAWIO  # no /dev/mem\n\nsys_boot\n").unwrap();
        let names: Vec<&str> = caps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["cap_sys_module", "cap_sys_rawio", "cap_sys_boot"]);
        // Bit numbers from include/uapi/linux/capability.h.
        let bits: Vec<u32> = caps
            .iter()
            .map(|(_, c)| c.bits().trailing_zeros())
            .collect();
        assert_eq!(bits, [16, 17, 22]);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            parse("cap_sys_module\ncap_fly\n"),
            Err((2, "cap_fly".into()))
        );
        assert_eq!(parse("cap_\n"), Err((1, "cap_".into())));
    }

    #[test]
    fn no_list_drops_nothing() {
        assert_eq!(
            drop_listed(Path::new("/nonexistent")).unwrap(),
            Vec::<String>::new()
        );
    }
}
