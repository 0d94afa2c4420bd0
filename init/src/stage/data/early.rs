//! PRIVATE read and DATA opened beside the boot: PID 1's module child, once the DATA
//! modules are in, reads PRIVATE and opens a keyfile DATA while PID 1 verifies and mounts
//! the root (docs/init.md, "DATA beside the root").
//!
//! The child only ever does the steady state: PRIVATE mounted read-only, its settings and
//! failure history read, and, when the mode is `keyfile` (from the command line, the
//! settings, or the header), the LUKS2 volume opened with the key file and mapped as
//! [`super::DM_NAME`], with nothing else to do (no first-use record, no recovery key to
//! renew, no TPM token deciding the mode; PID 1 has grown DATA before it asks). Anything
//! else, any error included, and it stops where it is and says what it has: PID 1 does
//! the rest as it would without the child, with its own errors for the failure policy. So
//! a wrong key costs the keyslot's work twice, and never a different outcome. A mapping
//! PID 1 does not take (the child ended without a report it can read, or PID 1's mode is
//! not the one the child opened DATA for: [`mode`]) is removed before PID 1 opens DATA.
//!
//! PRIVATE is mounted detached (fsopen/fsmount, no mount point) and read through the
//! child's working folder, and the child has its own mount namespace from its start
//! ([`crate::infra::process::beside`]): PID 1's switch_root, which moves /dev and
//! empties the initramfs, changes nothing the child uses. The key file and the volume
//! key stay in the child; what crosses the pipe is the settings, the history and the
//! mapped device's path.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use prairiedog::cmdline::{Config, DataMode};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use super::luks;
use crate::infra::kmsg;
use crate::stage::settings;

/// What PID 1 sends the child once it knows the disk and has grown DATA ([`super::grow`]):
/// DATA and PRIVATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub data: PathBuf,
    pub private: PathBuf,
}

impl Request {
    /// The two paths, NUL-separated (a path has no NUL).
    pub fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::new();
        for (i, path) in [&self.data, &self.private].iter().enumerate() {
            if i > 0 {
                out.push(0);
            }
            out.extend_from_slice(path.as_os_str().as_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Request> {
        use std::os::unix::ffi::OsStrExt;
        let mut parts = bytes
            .split(|&b| b == 0)
            .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)));
        let request = Request {
            data: parts.next()?,
            private: parts.next()?,
        };
        parts.next().is_none().then_some(request)
    }
}

/// PRIVATE's files as the child read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateFiles {
    /// The bootconfig ([`settings::FILE`]); `None` when there is none.
    pub settings: Option<Vec<u8>>,
    /// The failure history ([`prairiedog::pstore::PRIVATE_FILE`]); empty when none.
    pub history: Vec<u8>,
}

/// What the child did: nothing (an empty report), PRIVATE read, and DATA opened too.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Early {
    pub private: Option<PrivateFiles>,
    /// DATA's mapped device, opened with the key file.
    pub opened: Option<PathBuf>,
}

/// A field's length when the field is absent.
const ABSENT: u32 = u32::MAX;

fn put(out: &mut Vec<u8>, field: Option<&[u8]>) {
    let len = field.map_or(ABSENT, |f| u32::try_from(f.len()).unwrap_or(ABSENT));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(field.unwrap_or_default());
}

fn take(bytes: &mut &[u8]) -> Option<Option<Vec<u8>>> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len);
    if len == ABSENT {
        *bytes = rest;
        return Some(None);
    }
    let (field, rest) = rest.split_at_checked(len as usize)?;
    *bytes = rest;
    Some(Some(field.to_vec()))
}

impl Early {
    /// Empty when the child read nothing.
    pub fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::new();
        if let Some(files) = &self.private {
            put(&mut out, files.settings.as_deref());
            put(&mut out, Some(&files.history));
            put(
                &mut out,
                self.opened.as_ref().map(|p| p.as_os_str().as_bytes()),
            );
        }
        out
    }

    /// A report that is not one [`Early::encode`] makes reads as nothing done. Only a
    /// child that ended well is read (a child killed mid-write is an error of its own).
    pub fn decode(mut bytes: &[u8]) -> Early {
        use std::os::unix::ffi::OsStringExt;
        let mut read = || {
            let settings = take(&mut bytes)?;
            let history = take(&mut bytes)??;
            let opened = take(&mut bytes)?;
            bytes.is_empty().then_some(Early {
                private: Some(PrivateFiles { settings, history }),
                opened: opened.map(|p| PathBuf::from(std::ffi::OsString::from_vec(p))),
            })
        };
        read().unwrap_or_default()
    }
}

/// The child's part, run with the `request` PID 1 sent and the command line's `config`;
/// returns the report ([`Early::encode`]). Its working folder is PRIVATE while it reads it.
pub fn run(request: &[u8], config: &Config) -> Vec<u8> {
    let Some(request) = Request::decode(request) else {
        return Vec::new();
    };
    let Ok(private) = mount_private(&request.private) else {
        return Vec::new();
    };
    let here = Path::new(".");
    let early = rustix::process::fchdir(&private)
        .ok()
        .and_then(|()| settings::read_file(here).ok())
        .map(|settings| {
            let history = std::fs::read(prairiedog::pstore::PRIVATE_FILE).unwrap_or_default();
            let opened = open_keyfile(config, settings.as_deref(), &request, here);
            Early {
                private: Some(PrivateFiles { settings, history }),
                opened,
            }
        });
    // PRIVATE stays mounted until this process ends, after PID 1 has the report: its
    // unmount (8-13 ms under TCG) is not on PID 1's path. PID 1 mounting it meanwhile
    // shares the read-only superblock.
    std::mem::forget(private);
    early.map(|e| e.encode()).unwrap_or_default()
}

/// PRIVATE (`node`) mounted read-only as PID 1 mounts it, but attached nowhere: the mount
/// lives as long as the descriptor (and a working folder in it).
fn mount_private(node: &Path) -> rustix::io::Result<OwnedFd> {
    use rustix::mount::{fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen};
    let fs = fsopen("ext4", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_set_string(&fs, "source", node)?;
    fsconfig_set_flag(&fs, "ro")?;
    fsconfig_create(&fs)?;
    fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
}

/// The DATA mode the child opens DATA for: the command line's (`cmdline`), unless the
/// settings file's bytes set one it lacks; settings that do not parse leave it the command
/// line's, as in PID 1. PID 1 takes the child's DATA only when its own mode, found after
/// it read its settings, is this one.
pub fn mode(cmdline: Option<DataMode>, settings_file: Option<&[u8]>) -> Option<DataMode> {
    let mut mode = Config {
        data: cmdline,
        ..Config::default()
    };
    let entries = settings::parse(settings_file, Path::new(settings::FILE)).unwrap_or_default();
    settings::merge(&mut mode, &entries);
    mode.data
}

/// DATA opened with the key file in `dir` when the mode this boot will use is `keyfile`
/// and the steady state holds (see the module's text); `None` otherwise.
fn open_keyfile(
    config: &Config,
    settings_file: Option<&[u8]>,
    request: &Request,
    dir: &Path,
) -> Option<PathBuf> {
    let mode = mode(config.data, settings_file);
    let opened = match mode {
        None | Some(DataMode::Keyfile) => luks::open_steady(dir, &request.data, mode.is_none()),
        Some(_) => Err("its mode is not keyfile"),
    };
    let (what, why) = match &opened {
        Ok(_) => ("opened beside the boot", ""),
        Err(why) => ("left to PID 1: ", *why),
    };
    kmsg::debug(&format!("data: {} {what}{why}", request.data.display()));
    opened.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_is_the_command_lines_unless_the_settings_set_one_it_lacks() {
        let file = |text: &str| prairiedog::bootconfig::build(text.as_bytes(), 0).unwrap();
        let keyfile = file("liftoff.data = \"keyfile\"\n");
        assert_eq!(mode(None, None), None);
        assert_eq!(mode(None, Some(&file(""))), None);
        assert_eq!(mode(None, Some(&keyfile)), Some(DataMode::Keyfile));
        assert_eq!(
            mode(Some(DataMode::Tpm2), Some(&keyfile)),
            Some(DataMode::Tpm2)
        );
        assert_eq!(mode(Some(DataMode::Keyfile), None), Some(DataMode::Keyfile));
        // Settings that do not read count for nothing, as in PID 1: here the same text
        // without the bootconfig trailer, and with a byte of it changed.
        assert_eq!(mode(None, Some(b"liftoff.data = \"keyfile\"\n")), None);
        let mut bad = keyfile.clone();
        bad[0] ^= 1;
        assert_eq!(mode(None, Some(&bad)), None);
    }

    #[test]
    fn requests_and_reports_go_through_their_bytes() {
        let request = Request {
            data: "/dev/vda7".into(),
            private: "/dev/vda6".into(),
        };
        assert_eq!(Request::decode(&request.encode()), Some(request));
        assert_eq!(Request::decode(b"/dev/vda7"), None);
        assert_eq!(Request::decode(b"/dev/vda7\0/dev/vda6\0x"), None);

        assert_eq!(Early::default().encode(), Vec::<u8>::new());
        assert_eq!(Early::decode(&[]), Early::default());
        for early in [
            Early {
                private: Some(PrivateFiles {
                    settings: None,
                    history: Vec::new(),
                }),
                opened: None,
            },
            Early {
                private: Some(PrivateFiles {
                    settings: Some(b"liftoff.data = \"keyfile\"\n".to_vec()),
                    history: b"1 slot-a verity\n".to_vec(),
                }),
                opened: Some("/dev/dm-1".into()),
            },
            Early {
                private: Some(PrivateFiles {
                    settings: Some(Vec::new()),
                    history: Vec::new(),
                }),
                opened: None,
            },
        ] {
            let bytes = early.encode();
            assert_eq!(Early::decode(&bytes), early);
            // Cut anywhere, or with a byte more, it is no report: nothing done.
            for cut in 0..bytes.len() {
                assert_eq!(Early::decode(&bytes[..cut]), Early::default(), "{cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Early::decode(&longer), Early::default());
        }
    }
}
