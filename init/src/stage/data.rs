//! The DATA partition (DESIGN.md section 8): grown to fill its disk, opened with dm-crypt,
//! given a file system on first use, mounted at /local, with /var and /opt bound from it.
//!
//! Runs after switch_root, so the tools it needs (mkfs.ext4, mkfs.xfs, resize2fs,
//! xfs_growfs) are the verified root's own, at their usual paths.
//!
//! Key sources (`liftoff.data`):
//! - `keyfile` (the default): a random 512-bit key created on the first boot in
//!   `data.key` on PRIVATE (ext4, mounted only while the key is read; the file is mode
//!   0400). Data persists across boots and is gone when the key file is destroyed.
//! - `ephemeral`: a fresh random key every boot, so the file system is made every boot.
//! - `none`: no encryption.
//!
//! The mapping is `aes-xts-plain64` with the key in the table, 512-byte sectors, no offset:
//! what `cryptsetup open --type plain --cipher aes-xts-plain64 --key-size 512 --key-file K`
//! builds. Keys never reach a log; the buffers holding them are cleared after use.
//!
//! A file system is made only where none can be there: on the first boot of a key (new
//! key file, or every boot for `ephemeral`), or on an unencrypted partition that is still
//! all zeros. A partition that holds something else is never reformatted: the stage fails.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use growpart::fs::FsKind;
use zeroize::Zeroizing;

use crate::infra::kmsg;
use crate::stage::mounts::{self, Mount, MountFlags};
use prairiedog::cmdline::DataMode;

/// Device-mapper name of the decrypted DATA partition.
pub const DM_NAME: &str = "data";
/// Where DATA is mounted.
pub const MOUNT_POINT: &str = "/local";
/// Folders of DATA bound over the root's.
pub const BINDS: [&str; 2] = ["var", "opt"];
/// Where PRIVATE is mounted while the key is read or made.
pub const PRIVATE_MOUNT: &str = "/run/liftoff/private";
/// The key file's name on PRIVATE.
pub const KEY_FILE: &str = "data.key";
/// Bytes of the aes-xts-plain64 key (two 256-bit AES keys).
pub const KEY_BYTES: usize = 64;

#[derive(Debug)]
pub enum DataError {
    NoDataPartition {
        disk: PathBuf,
    },
    NoPrivatePartition {
        disk: PathBuf,
    },
    Grow(growpart::Error),
    Random(io::Error),
    Key {
        path: PathBuf,
        source: io::Error,
    },
    KeyLength {
        path: PathBuf,
        len: usize,
    },
    Mount(mounts::MountError),
    Size {
        device: PathBuf,
        source: io::Error,
    },
    Crypt(dm::Error),
    NotEmpty {
        device: PathBuf,
    },
    /// PRIVATE has no key, and DATA is not as the image left it: making a key would
    /// format somebody's data.
    NoKey {
        device: PathBuf,
    },
    Mkfs {
        device: PathBuf,
        output: String,
    },
    GrowFs(growpart::Error),
    Bind {
        dir: String,
        source: io::Error,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::NoDataPartition { disk } => {
                write!(f, "{} has no DATA partition", disk.display())
            }
            DataError::NoPrivatePartition { disk } => write!(
                f,
                "{} has no PRIVATE partition for the DATA key (liftoff.data=keyfile)",
                disk.display()
            ),
            DataError::Grow(e) => write!(f, "growing DATA: {e}"),
            DataError::Random(e) => write!(f, "getting random bytes for the DATA key: {e}"),
            DataError::Key { path, source } => {
                write!(f, "DATA key {}: {source}", path.display())
            }
            DataError::KeyLength { path, len } => write!(
                f,
                "DATA key {} holds {len} bytes, not {KEY_BYTES}: refusing to guess",
                path.display()
            ),
            DataError::Mount(e) => write!(f, "{e}"),
            DataError::Size { device, source } => {
                write!(f, "getting the size of {}: {source}", device.display())
            }
            DataError::Crypt(e) => write!(f, "opening dm-crypt over DATA: {e}"),
            DataError::NotEmpty { device } => write!(
                f,
                "{} holds data but no ext4 or xfs file system: refusing to format it",
                device.display()
            ),
            DataError::NoKey { device } => write!(
                f,
                "{} holds data, but PRIVATE has no key for it (written in another \
                 liftoff.data mode, or the key was lost): refusing to make a new key and \
                 format it",
                device.display()
            ),
            DataError::Mkfs { device, output } => {
                write!(f, "making a file system on {}: {output}", device.display())
            }
            DataError::GrowFs(e) => write!(f, "growing the DATA file system: {e}"),
            DataError::Bind { dir, source } => {
                write!(f, "binding /local/{dir} over /{dir}: {source}")
            }
        }
    }
}

impl std::error::Error for DataError {}

impl DataError {
    /// Whether the failure comes from the running slot (its kernel or its root) rather than
    /// from the disk's own state. Only then can booting the other slot help; a failure of
    /// the disk's state (PRIVATE and its key, growth, a DATA that is not provably fresh,
    /// its file system) fails every boot of either slot the same way, so the boot goes on
    /// degraded instead (DESIGN.md section 7).
    pub fn depends_on_slot(&self) -> bool {
        matches!(
            self,
            DataError::Random(_) | DataError::Crypt(_) | DataError::Bind { .. }
        )
    }
}

/// A key that is cleared from memory when dropped.
pub struct Key(Zeroizing<[u8; KEY_BYTES]>);

impl Key {
    pub fn random() -> Result<Key, DataError> {
        let mut key = Key(Zeroizing::new([0u8; KEY_BYTES]));
        let mut filled = 0;
        while filled < KEY_BYTES {
            let rest = key.0.get_mut(filled..).unwrap_or_default();
            let n = rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty())
                .map_err(|e| DataError::Random(e.into()))?;
            filled += n;
        }
        Ok(key)
    }

    /// The key as the hex string a crypt table holds.
    fn hex(&self) -> Zeroizing<String> {
        // Reserved in full first: the string is never reallocated, so no copy of the key
        // is left behind unzeroized.
        let mut s = Zeroizing::new(String::with_capacity(KEY_BYTES * 2));
        verity::hex::encode_into(&mut s, self.0.as_ref());
        s
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<hidden>)")
    }
}

/// The crypt target parameters for `device` (`cryptsetup open --type plain` compatible).
fn crypt_params(key_hex: &str, device: &Path) -> String {
    format!("aes-xts-plain64 {key_hex} 0 {} 0", device.display())
}

/// Reads the key from PRIVATE, or creates it there on the first boot. Returns the key and
/// whether it was just created.
///
/// PRIVATE is mounted read-only, and read-write only on the boot that makes the key: every
/// later boot only reads it, and a read-only mount writes nothing back (no superblock
/// update on mount and unmount, nothing to sync).
pub fn keyfile_key(private: &Path, data: &Path) -> Result<(Key, bool), DataError> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let mount = Mount::new(
        &private.display().to_string(),
        PRIVATE_MOUNT,
        "ext4",
        flags | MountFlags::RDONLY,
        "",
    );
    mounts::run(&mut mounts::System, Path::new("/"), &[mount]).map_err(DataError::Mount)?;
    let result = read_or_create_key(Path::new(PRIVATE_MOUNT), || {
        // A new key formats DATA: only a DATA as the image leaves it (all zero) may get
        // one. Anything else (a plain file system from liftoff.data=none, a lost key's
        // ciphertext) is somebody's data.
        if !is_blank(data)? {
            return Err(DataError::NoKey {
                device: data.to_path_buf(),
            });
        }
        rustix::mount::mount_remount(PRIVATE_MOUNT, flags, "").map_err(|e| DataError::Key {
            path: private.to_path_buf(),
            source: io::Error::other(format!(
                "remounting {PRIVATE_MOUNT} read-write to make the key: {e}"
            )),
        })
    });
    if matches!(result, Ok((_, true))) {
        rustix::fs::sync();
    }
    // The key stays out of reach of everything that runs later.
    let _ = rustix::mount::unmount(PRIVATE_MOUNT, rustix::mount::UnmountFlags::empty());
    result
}

/// The key file in `dir`: read it if it is there, else call `writable` (which makes `dir`
/// writable) and make one crash-safely (write a temporary file, fsync, rename, fsync the
/// folder).
pub fn read_or_create_key(
    dir: &Path,
    writable: impl FnOnce() -> Result<(), DataError>,
) -> Result<(Key, bool), DataError> {
    let path = dir.join(KEY_FILE);
    match File::open(&path) {
        Ok(mut f) => {
            let mut key = Key(Zeroizing::new([0u8; KEY_BYTES]));
            let mut extra = [0u8; 1];
            let n = read_full(&mut f, key.0.as_mut()).map_err(|source| DataError::Key {
                path: path.clone(),
                source,
            })?;
            let more = f.read(&mut extra).map_err(|source| DataError::Key {
                path: path.clone(),
                source,
            })?;
            if n != KEY_BYTES || more != 0 {
                return Err(DataError::KeyLength {
                    path,
                    len: n + more,
                });
            }
            Ok((key, false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            writable()?;
            let key = Key::random()?;
            let tmp = dir.join(format!("{KEY_FILE}.new"));
            let err = |source| DataError::Key {
                path: tmp.clone(),
                source,
            };
            let mut f = File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o400)
                .open(&tmp)
                .map_err(err)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o400))
                .map_err(err)?;
            f.write_all(key.0.as_ref()).map_err(err)?;
            f.sync_all().map_err(err)?;
            std::fs::rename(&tmp, &path).map_err(|source| DataError::Key {
                path: path.clone(),
                source,
            })?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| DataError::Key {
                    path: dir.to_path_buf(),
                    source,
                })?;
            Ok((key, true))
        }
        Err(source) => Err(DataError::Key { path, source }),
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = f.read(buf.get_mut(n..).unwrap_or_default())?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

fn device_size(device: &Path) -> Result<u64, DataError> {
    use std::io::{Seek, SeekFrom};
    File::open(device)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .map_err(|source| DataError::Size {
            device: device.to_path_buf(),
            source,
        })
}

/// Whether the first MiB of `device` is all zeros (nothing was ever written there).
fn is_blank(device: &Path) -> Result<bool, DataError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut f = File::open(device).map_err(|source| DataError::Size {
        device: device.to_path_buf(),
        source,
    })?;
    let n = read_full(&mut f, &mut buf).map_err(|source| DataError::Size {
        device: device.to_path_buf(),
        source,
    })?;
    Ok(buf.get(..n).unwrap_or_default().iter().all(|b| *b == 0))
}

fn detect(device: &Path) -> Result<Option<FsKind>, DataError> {
    let f = File::open(device).map_err(|source| DataError::Size {
        device: device.to_path_buf(),
        source,
    })?;
    growpart::fs::detect(&f).map_err(|source| DataError::Size {
        device: device.to_path_buf(),
        source,
    })
}

/// The first of `names` that exists in the root, as an absolute path.
fn tool(names: &[&str]) -> PathBuf {
    names
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(names.first().copied().unwrap_or("")))
}

fn mkfs(device: &Path) -> Result<(), DataError> {
    let mkfs = tool(&["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]);
    let out = Command::new(&mkfs)
        .args(["-q", "-L", "DATA"])
        .arg(device)
        .output()
        .map_err(|e| DataError::Mkfs {
            device: device.to_path_buf(),
            output: format!("running {}: {e}", mkfs.display()),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DataError::Mkfs {
            device: device.to_path_buf(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// What the DATA stage did, for the log.
#[derive(Debug)]
pub struct Outcome {
    pub grown: bool,
    pub encrypted: bool,
    pub key_created: bool,
    pub formatted: bool,
    pub device: PathBuf,
    pub bytes: u64,
    /// Mount points to unmount at shutdown, innermost first.
    pub mounts: Vec<String>,
}

/// Runs the DATA stage: `disk` is the boot disk, `data` and `private` its DATA and
/// PRIVATE partition nodes.
pub fn setup(
    disk: &Path,
    data: &Path,
    private: Option<&Path>,
    mode: DataMode,
) -> Result<Outcome, DataError> {
    let mut disk_file = File::options()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(|source| DataError::Size {
            device: disk.to_path_buf(),
            source,
        })?;
    let report = growpart::grow_data(&mut disk_file, disk).map_err(DataError::Grow)?;
    drop(disk_file);
    let grown = report.written;
    let part_bytes = device_size(data)?;

    let (device, encrypted, fresh) = match mode {
        DataMode::None => (data.to_path_buf(), false, is_blank(data)?),
        DataMode::Ephemeral | DataMode::Keyfile => {
            let (key, fresh) = match mode {
                DataMode::Keyfile => {
                    let private = private.ok_or_else(|| DataError::NoPrivatePartition {
                        disk: disk.to_path_buf(),
                    })?;
                    keyfile_key(private, data)?
                }
                _ => (Key::random()?, true),
            };
            let hex = key.hex();
            drop(key);
            let target = dm::Target {
                start: 0,
                length: part_bytes / 512,
                target_type: "crypt".to_owned(),
                params: crypt_params(&hex, data),
            };
            drop(hex);
            let control = dm::Control::open().map_err(DataError::Crypt)?;
            let info = control
                .create_device(DM_NAME, "", &[target], false)
                .map_err(DataError::Crypt)?;
            (info.devnode(Path::new("/dev")), true, fresh)
        }
    };

    let formatted = match detect(&device)? {
        Some(_) => false,
        None if fresh => {
            mkfs(&device)?;
            true
        }
        None => return Err(DataError::NotEmpty { device }),
    };
    let fs = detect(&device)?;
    let fstype = match fs {
        Some(FsKind::Xfs) => "xfs",
        _ => "ext4",
    };
    mounts::run(
        &mut mounts::System,
        Path::new("/"),
        &[Mount::new(
            &device.display().to_string(),
            MOUNT_POINT,
            fstype,
            MountFlags::NOSUID | MountFlags::NODEV,
            "",
        )],
    )
    .map_err(DataError::Mount)?;
    if grown && !formatted {
        growpart::fs::grow_filesystem(&device, Path::new(MOUNT_POINT), Path::new("/"))
            .map_err(DataError::GrowFs)?;
    }
    let mounted = bind_from_mount_point()?;
    Ok(Outcome {
        grown,
        encrypted,
        key_created: fresh && mode == DataMode::Keyfile,
        formatted,
        bytes: part_bytes,
        device,
        mounts: mounted,
    })
}

/// Binds [`BINDS`] from under [`MOUNT_POINT`] over the root's folders. Returns the mounts
/// in the order to unmount them: the binds, then the mount point.
fn bind_from_mount_point() -> Result<Vec<String>, DataError> {
    let mut mounted = vec![MOUNT_POINT.to_owned()];
    for dir in BINDS {
        let source = Path::new(MOUNT_POINT).join(dir);
        let target = format!("/{dir}");
        std::fs::create_dir_all(&source)
            .and_then(|()| std::fs::create_dir_all(&target))
            .map_err(|source| DataError::Bind {
                dir: dir.to_owned(),
                source,
            })?;
        rustix::mount::mount_bind(&source, &target).map_err(|e| DataError::Bind {
            dir: dir.to_owned(),
            source: e.into(),
        })?;
        mounted.push(target);
    }
    mounted.reverse();
    Ok(mounted)
}

/// The degraded boot's stand-in for DATA (DESIGN.md section 7): DATA is left as it is, its
/// dm-crypt mapping (if this boot made one) is removed, and [`MOUNT_POINT`] is a tmpfs that
/// /var and /opt are bound from, as they would be from DATA. Nothing written there
/// outlives the boot. Returns the mounts in the order to unmount them.
pub fn in_memory() -> Result<Vec<String>, DataError> {
    if let Ok(control) = dm::Control::open() {
        // Absent unless the failure came after the mapping was made: nothing to undo then.
        let _ = control.remove(DM_NAME);
    }
    mounts::run(
        &mut mounts::System,
        Path::new("/"),
        &[Mount::new(
            "tmpfs",
            MOUNT_POINT,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=0755",
        )],
    )
    .map_err(DataError::Mount)?;
    bind_from_mount_point()
}

/// One log line for the outcome (no key material).
pub fn describe(o: &Outcome, mode: DataMode) -> String {
    format!(
        "data: {} ({} MiB{}{}) mounted at {}{}{}; /var and /opt bound from it",
        o.device.display(),
        o.bytes >> 20,
        if o.grown {
            ", grown to fill the disk"
        } else {
            ""
        },
        match (o.encrypted, mode) {
            (false, _) => ", not encrypted",
            (true, DataMode::Ephemeral) => ", dm-crypt with a key for this boot only",
            (true, _) => ", dm-crypt with the key on PRIVATE",
        },
        MOUNT_POINT,
        if o.key_created { "; key created" } else { "" },
        if o.formatted {
            "; new ext4 file system"
        } else {
            ""
        },
    )
}

/// Logs the outcome.
pub fn log(o: &Outcome, mode: DataMode) {
    kmsg::info(&describe(o, mode));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypt_table_matches_cryptsetup_plain() {
        let key = Key(Zeroizing::new([0xab; KEY_BYTES]));
        let hex = key.hex();
        assert_eq!(hex.len(), 128);
        assert_eq!(
            crypt_params(&hex, Path::new("/dev/vda9")),
            format!("aes-xts-plain64 {} 0 /dev/vda9 0", "ab".repeat(64))
        );
        assert_eq!(format!("{key:?}"), "Key(<hidden>)");
    }

    #[test]
    fn key_file_is_made_once_then_read() {
        let dir = std::env::temp_dir().join(format!("liftoff-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Made writable only to make the key; a refusal leaves nothing behind.
        let refused = read_or_create_key(&dir, || {
            Err(DataError::Key {
                path: dir.clone(),
                source: io::Error::other("read-only"),
            })
        });
        assert!(refused.unwrap_err().to_string().contains("read-only"));
        assert!(!dir.join(KEY_FILE).exists());
        let calls = std::cell::Cell::new(0);
        let writable = || {
            calls.set(calls.get() + 1);
            Ok(())
        };
        let (first, created) = read_or_create_key(&dir, writable).unwrap();
        assert!(created);
        assert_eq!(calls.get(), 1);
        let meta = std::fs::metadata(dir.join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o400);
        assert_eq!(meta.len(), KEY_BYTES as u64);
        let (second, created) = read_or_create_key(&dir, writable).unwrap();
        assert!(!created);
        assert_eq!(calls.get(), 1, "reading the key needs no writable PRIVATE");
        assert_eq!(*first.0, *second.0);
        assert_ne!(*first.0, [0u8; KEY_BYTES]);
        assert!(!dir.join(format!("{KEY_FILE}.new")).exists());

        std::fs::remove_file(dir.join(KEY_FILE)).unwrap();
        std::fs::write(dir.join(KEY_FILE), b"short").unwrap();
        let err = read_or_create_key(&dir, || Ok(())).unwrap_err().to_string();
        assert!(err.contains("holds 5 bytes, not 64"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn description_says_no_key() {
        let o = Outcome {
            grown: true,
            encrypted: true,
            key_created: true,
            formatted: true,
            device: "/dev/dm-1".into(),
            bytes: 64 << 20,
            mounts: vec![],
        };
        assert_eq!(
            describe(&o, DataMode::Keyfile),
            "data: /dev/dm-1 (64 MiB, grown to fill the disk, dm-crypt with the key on PRIVATE) \
             mounted at /local; key created; new ext4 file system; /var and /opt bound from it"
        );
    }
}
