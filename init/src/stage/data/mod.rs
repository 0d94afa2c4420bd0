//! The DATA partition (DESIGN.md section 8): grown to fill its disk, opened with dm-crypt,
//! given a file system on first use, mounted at /local, with /var and /opt bound from it.
//!
//! Runs after switch_root, so the tools it needs (mkfs.ext4, mkfs.xfs, resize2fs,
//! xfs_growfs) are the verified root's own, at their usual paths.
//!
//! Key sources (`liftoff.data`):
//! - `keyfile` (the default): LUKS2 ([`luks`]) with two PBKDF2 keyslots, one opened by a
//!   random 512-bit secret in `data.key` on PRIVATE (ext4, mounted only while the key is
//!   read; the file is mode 0400), one by a recovery key handed over in memory
//!   ([`recovery`]). `cryptsetup open` opens it with either. A DATA made before LUKS2
//!   (plain dm-crypt, the key file holding the volume key itself) still opens as it was.
//! - `ephemeral`: a fresh random key every boot, so the file system is made every boot. The
//!   first 4 KiB of DATA hold [`EPHEMERAL_MAGIC`], so a later boot knows that what follows
//!   is scratch; the mapping starts after it.
//! - `none`: no encryption.
//!
//! Keys never reach a log; the buffers holding them are cleared after use.
//!
//! # Never a reformat of somebody's data
//!
//! A DATA may be formatted only when it is provably fresh ([`disposable`]): its first MiB
//! is all zeros (as the image leaves it, or after `prairiedog data erase`), it is an
//! ephemeral DATA (scratch by definition), or PRIVATE records that this host's own first
//! LUKS2 use of it was cut short ([`FIRST_USE_RECORD`]). Anything else (a plain file system,
//! a LUKS2 volume this mode does not open, a LUKS2 volume whose key is gone, unknown
//! bytes) is left untouched and the stage fails with a disk-state error, which the failure
//! policy turns into a degraded boot (DESIGN.md section 7).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use growpart::fs::FsKind;
use zeroize::Zeroizing;

use crate::infra::{kmsg, process};
use crate::stage::mounts::{self, Mount, MountFlags};
use prairiedog::cmdline::DataMode;

pub mod early;
pub mod luks;
pub mod recovery;
pub mod tpm;

/// Device-mapper name of the decrypted DATA partition.
pub const DM_NAME: &str = "data";
/// Where DATA is mounted.
pub const MOUNT_POINT: &str = "/local";
/// Folders of DATA bound over the root's.
pub const BINDS: [&str; 2] = ["var", "opt"];
/// On DATA, under [`MOUNT_POINT`]: the root hash of the root whose folders [`mirror_dirs`]
/// gave DATA last. A boot of the same root skips the walk (its folders are there, made by
/// that boot); a new root, or a file that is gone or says otherwise, mirrors again.
pub const MIRRORED: &str = ".liftoff-mirrored";
/// Where PRIVATE is mounted while the key is read or made.
pub const PRIVATE_MOUNT: &str = "/run/liftoff/private";
/// The key file's name on PRIVATE.
pub const KEY_FILE: &str = "data.key";
/// Bytes of a key: the aes-xts-plain64 key of ephemeral and pre-LUKS2 DATA (two 256-bit
/// AES keys), and the keyslot secret of a LUKS2 DATA.
pub const KEY_BYTES: usize = 64;
/// On PRIVATE while this host's first LUKS2 use of DATA is under way: a boot that finds
/// it, and no valid LUKS2 header on DATA, knows that nothing was ever stored there.
pub const FIRST_USE_RECORD: &str = "data.first-use";
/// The first bytes of an ephemeral DATA; the rest of its first 4 KiB are zeros.
pub const EPHEMERAL_MAGIC: &[u8] = b"LIFTOFF-EPHEMERAL-DATA\n\
    Scratch: a new key every boot, nothing here outlives it.\n";
/// Bytes in front of an ephemeral DATA's mapping (the magic's block).
const EPHEMERAL_HEAD: u64 = 4096;
/// Bytes of DATA that must be zero for it to count as never written.
const BLANK_HEAD: usize = 1 << 20;

#[derive(Debug)]
pub enum DataError {
    NoDataPartition {
        disk: PathBuf,
    },
    NoPrivatePartition {
        disk: PathBuf,
        mode: String,
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
    /// DATA holds something that `liftoff.data=<mode>` does not open.
    Foreign {
        device: PathBuf,
        mode: &'static str,
        found: &'static str,
    },
    /// Reading, unlocking or writing DATA's LUKS2 header.
    Luks {
        device: PathBuf,
        source: luks2::Error,
    },
    /// DATA starts with the LUKS2 magic, but neither header copy is valid.
    Damaged {
        device: PathBuf,
        source: luks2::Error,
    },
    /// The key file opens none of DATA's keyslots.
    WrongKey {
        device: PathBuf,
        key: PathBuf,
    },
    /// Handing the recovery key over in /run.
    Recovery(io::Error),
    /// The TPM: absent, refusing to unseal, or failing.
    Tpm(tpm2::Error),
    /// The TPM unsealed a secret that opens none of DATA's keyslots.
    WrongTpmSecret {
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
            DataError::NoPrivatePartition { disk, mode } => write!(
                f,
                "{} has no PRIVATE partition for the DATA key (liftoff.data={mode})",
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
                write!(f, "reading {}: {source}", device.display())
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
            DataError::Foreign {
                device,
                mode,
                found,
            } => write!(
                f,
                "{} holds {found}, which liftoff.data={mode} does not open: refusing to \
                 format it (boot with the mode that made it, or erase it with \
                 `prairiedog data erase`)",
                device.display()
            ),
            DataError::Luks { device, source } => {
                write!(f, "LUKS2 on {}: {source}", device.display())
            }
            DataError::Damaged { device, source } => write!(
                f,
                "{} starts like LUKS2, but no header copy is valid ({source}): refusing \
                 to format it (the recovery key and `cryptsetup repair` may save it)",
                device.display()
            ),
            DataError::WrongKey { device, key } => write!(
                f,
                "{} opens none of the LUKS2 keyslots of {}: refusing to format it",
                key.display(),
                device.display()
            ),
            DataError::Recovery(e) => write!(
                f,
                "writing the DATA recovery key to {}: {e}",
                prairiedog::host::RECOVERY_KEY_FILE
            ),
            DataError::Tpm(e) if tpm2::is_policy_fail(e) => write!(
                f,
                "{e}: the TPM refuses to unseal the DATA key because PCR 7 is not what it \
                 was when the key was sealed (Secure Boot turned off, other keys enrolled) \
                 or the TPM was cleared; DATA is left as it is, and its recovery key \
                 opens it (docs/data.md)"
            ),
            DataError::Tpm(e) => write!(f, "TPM2 key for DATA: {e}"),
            DataError::WrongTpmSecret { device } => write!(
                f,
                "the secret the TPM unsealed opens none of the LUKS2 keyslots of {}: \
                 refusing to format it",
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
    /// its header, its file system) fails every boot of either slot the same way, so the
    /// boot goes on degraded instead (DESIGN.md section 7).
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

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
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

/// The crypt target parameters of a plain (headerless) mapping of `device` from byte
/// `offset`: `cryptsetup open --type plain --cipher aes-xts-plain64 --key-size 512
/// --offset <offset / 512> --skip 0` compatible.
fn plain_params(key_hex: &str, device: &Path, offset: u64) -> String {
    format!(
        "aes-xts-plain64 {key_hex} 0 {} {}",
        device.display(),
        offset / 512
    )
}

/// Maps `device` from `offset` to the end (`bytes` in all) with a plain crypt table and
/// `key`; returns the mapped device's node.
fn open_plain(device: &Path, bytes: u64, offset: u64, key: Key) -> Result<PathBuf, DataError> {
    let hex = key.hex();
    drop(key);
    let target = dm::Target {
        start: 0,
        length: bytes.saturating_sub(offset) / 512,
        target_type: "crypt".to_owned(),
        params: plain_params(&hex, device, offset),
    };
    drop(hex);
    create_mapping(target)
}

/// Creates [`DM_NAME`] from `target`, whose parameters hold a key: cleared here.
fn create_mapping(mut target: dm::Target) -> Result<PathBuf, DataError> {
    use zeroize::Zeroize;
    let made = dm::Control::open().and_then(|control| {
        control.create_device(DM_NAME, "", std::slice::from_ref(&target), false)
    });
    target.params.zeroize();
    Ok(made.map_err(DataError::Crypt)?.devnode(Path::new("/dev")))
}

/// PRIVATE mounted at [`PRIVATE_MOUNT`] for as long as this lives: read-only, and
/// read-write only on a boot that makes a key ([`PrivateMount::writable`]). Every other
/// boot only reads it, and a read-only mount writes nothing back (no superblock update on
/// mount and unmount, nothing to sync). Unmounted on drop, so the key stays out of reach
/// of everything that runs later.
#[derive(Debug)]
pub struct PrivateMount {
    device: PathBuf,
    writable: bool,
}

const PRIVATE_FLAGS: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

impl PrivateMount {
    pub fn read_only(private: &Path) -> Result<PrivateMount, DataError> {
        let mount = Mount::new(
            &private.display().to_string(),
            PRIVATE_MOUNT,
            "ext4",
            PRIVATE_FLAGS | MountFlags::RDONLY,
            "",
        );
        mounts::run(&mut mounts::System, Path::new("/"), &[mount]).map_err(DataError::Mount)?;
        Ok(PrivateMount {
            device: private.to_path_buf(),
            writable: false,
        })
    }

    pub fn dir(&self) -> &Path {
        Path::new(PRIVATE_MOUNT)
    }

    /// Remounts PRIVATE read-write (once).
    pub fn writable(&mut self) -> Result<(), DataError> {
        if self.writable {
            return Ok(());
        }
        rustix::mount::mount_remount(PRIVATE_MOUNT, PRIVATE_FLAGS, "").map_err(|e| {
            DataError::Key {
                path: self.device.clone(),
                source: io::Error::other(format!(
                    "remounting {PRIVATE_MOUNT} read-write to make the key: {e}"
                )),
            }
        })?;
        self.writable = true;
        Ok(())
    }
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        if self.writable {
            rustix::fs::sync();
        }
        let _ = rustix::mount::unmount(PRIVATE_MOUNT, rustix::mount::UnmountFlags::empty());
    }
}

/// The key file in `dir`, if there is one.
pub fn read_key(dir: &Path) -> Result<Option<Key>, DataError> {
    let path = dir.join(KEY_FILE);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DataError::Key { path, source }),
    };
    let mut key = Key(Zeroizing::new([0u8; KEY_BYTES]));
    let mut extra = [0u8; 1];
    let err = |source| DataError::Key {
        path: path.clone(),
        source,
    };
    let n = read_full(&mut f, key.0.as_mut()).map_err(err)?;
    let more = f.read(&mut extra).map_err(err)?;
    if n != KEY_BYTES || more != 0 {
        return Err(DataError::KeyLength {
            path,
            len: n + more,
        });
    }
    Ok(Some(key))
}

/// Writes `bytes` to `dir/name` crash-safely: a temporary file with `mode`, fsync,
/// rename over `name`, fsync of the folder. A cut leaves the old file or the new one.
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), DataError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.new"));
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Key { path, source }
    };
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err(&tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err(&tmp))?;
    f.write_all(bytes).map_err(err(&tmp))?;
    f.sync_all().map_err(err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(err(&path))?;
    sync_dir(dir)
}

/// Removes `dir/name` (if there) durably.
pub fn remove_durably(dir: &Path, name: &str) -> Result<(), DataError> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataError::Key { path, source }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), DataError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| DataError::Key {
            path: dir.to_path_buf(),
            source,
        })
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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
    File::open(device)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .map_err(|source| DataError::Size {
            device: device.to_path_buf(),
            source,
        })
}

/// Why a DATA may be formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Its first MiB is all zeros: never written (or erased).
    Blank,
    /// An ephemeral DATA: scratch by definition.
    Ephemeral,
}

/// Whether DATA's head proves that nothing on it is anybody's data.
pub fn disposable(device: &Path) -> Result<Option<Fresh>, DataError> {
    let mut head = vec![0u8; BLANK_HEAD];
    let mut f = File::open(device).map_err(|source| DataError::Size {
        device: device.to_path_buf(),
        source,
    })?;
    let n = read_full(&mut f, &mut head).map_err(|source| DataError::Size {
        device: device.to_path_buf(),
        source,
    })?;
    Ok(classify_head(head.get(..n).unwrap_or_default()))
}

fn classify_head(head: &[u8]) -> Option<Fresh> {
    if head.iter().all(|b| *b == 0) {
        return Some(Fresh::Blank);
    }
    let magic_block = head.get(..EPHEMERAL_HEAD as usize)?;
    let (magic, rest) = magic_block.split_at(EPHEMERAL_MAGIC.len());
    (magic == EPHEMERAL_MAGIC && rest.iter().all(|b| *b == 0)).then_some(Fresh::Ephemeral)
}

/// Writes `head` (zero-padded to [`EPHEMERAL_HEAD`] bytes) at the start of `device`, synced.
fn write_head(device: &Path, head: &[u8]) -> Result<(), DataError> {
    let mut block = vec![0u8; EPHEMERAL_HEAD as usize];
    if let Some(dst) = block.get_mut(..head.len()) {
        dst.copy_from_slice(head);
    }
    File::options()
        .write(true)
        .open(device)
        .and_then(|mut f| {
            f.write_all(&block)?;
            f.sync_all()
        })
        .map_err(|source| DataError::Size {
            device: device.to_path_buf(),
            source,
        })
}

/// What DATA's head holds, in words, for a refusal.
fn what_is_there(device: &Path) -> Result<&'static str, DataError> {
    Ok(match luks::inspect(device)? {
        luks::Found::Luks2(_) => "a LUKS2 volume",
        luks::Found::Damaged(_) => "a damaged LUKS2 header",
        luks::Found::NotLuks2 => match detect(device)? {
            Some(_) => "a plain file system",
            None => "data this host cannot read",
        },
    })
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

/// Makes DATA's ext4 on `device`. `new_key`: `device` is a dm-crypt mapping under a key
/// made this boot (LUKS2 first use, ephemeral), where a block not yet written reads as
/// noise, so mke2fs leaves the journal as it is (`lazy_journal_init`) instead of writing
/// all of it through dm-crypt (4 MiB on a 32 MiB DATA, 128 MiB on 20 GiB, 1 GiB from
/// 128 GiB up): after a crash, jbd2 replays only blocks that carry its magic number, the
/// expected transaction ID and a checksum, which noise does not. Over old plaintext (`none`)
/// the journal is zeroed, as mke2fs does by default: an earlier file system's journal
/// blocks could carry all three.
fn mkfs(device: &Path, new_key: bool) -> Result<(), DataError> {
    let journal = if new_key {
        "-Elazy_journal_init=1"
    } else {
        "-Elazy_journal_init=0"
    };
    let cmd = growpart::fs::ToolCommand {
        program: tool(&["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]),
        args: vec![
            "-q".into(),
            journal.into(),
            "-L".into(),
            "DATA".into(),
            device.into(),
        ],
    };
    run_tool(&cmd, Path::new("/")).map_err(|e| DataError::Mkfs {
        device: device.to_path_buf(),
        output: e.to_string(),
    })
}

/// Runs a file system tool the way growpart would (PID 1 runs after switch_root, so the
/// root is `/` and nothing is chrooted); its output becomes the error's text.
fn run_tool(cmd: &growpart::fs::ToolCommand, _root: &Path) -> Result<(), growpart::Error> {
    let (status, output) =
        process::output(&cmd.program, &cmd.args).map_err(|source| growpart::Error::Tool {
            program: cmd.program.clone(),
            source,
        })?;
    if status.success() {
        return Ok(());
    }
    Err(growpart::Error::ToolFailed {
        program: cmd.program.clone(),
        status: status.to_string(),
        output: String::from_utf8_lossy(&output).trim().to_owned(),
    })
}

/// How DATA is encrypted on this boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    None,
    Ephemeral,
    /// LUKS2, opened with the key file on PRIVATE.
    Luks2Keyfile,
    /// Plain dm-crypt with the key file as the volume key (DATA made before LUKS2).
    PlainKeyfile,
    /// LUKS2, opened with a secret the TPM unsealed.
    Luks2Tpm,
}

/// DATA opened (or not encrypted): the device to mount and what may be done to it.
#[derive(Debug)]
pub struct Opened {
    pub device: PathBuf,
    pub encryption: Encryption,
    /// A file system may be made on `device` when it has none: nothing there is data.
    pub fresh: bool,
    /// This boot already made the file system (LUKS2 first use makes it before the header).
    pub formatted: bool,
    /// This boot made DATA's keys (and a recovery key).
    pub keys_created: bool,
}

/// `none`: DATA itself. Fresh only when disposable; an ephemeral head is cleared first, so
/// a cut before the file system is whole leaves a blank DATA rather than an unknown one.
fn open_unencrypted(data: &Path) -> Result<Opened, DataError> {
    let fresh = match disposable(data)? {
        Some(Fresh::Ephemeral) if detect(data)?.is_none() => {
            write_head(data, &[])?;
            true
        }
        Some(_) => true,
        None => {
            if let luks::Found::Luks2(_) | luks::Found::Damaged(_) = luks::inspect(data)? {
                return Err(DataError::Foreign {
                    device: data.to_path_buf(),
                    mode: "none",
                    found: "a LUKS2 volume",
                });
            }
            false
        }
    };
    Ok(Opened {
        device: data.to_path_buf(),
        encryption: Encryption::None,
        fresh,
        formatted: false,
        keys_created: false,
    })
}

/// `ephemeral`: a new key over everything after the magic block. Only a disposable DATA
/// is taken (a blank one gets the magic first).
fn open_ephemeral(data: &Path, bytes: u64) -> Result<Opened, DataError> {
    match disposable(data)? {
        Some(Fresh::Ephemeral) => {}
        Some(Fresh::Blank) => write_head(data, EPHEMERAL_MAGIC)?,
        None => {
            return Err(DataError::Foreign {
                device: data.to_path_buf(),
                mode: "ephemeral",
                found: what_is_there(data)?,
            })
        }
    }
    let device = open_plain(data, bytes, EPHEMERAL_HEAD, Key::random()?)?;
    Ok(Opened {
        device,
        encryption: Encryption::Ephemeral,
        fresh: true,
        formatted: false,
        keys_created: false,
    })
}

/// What the DATA stage did, for the log.
#[derive(Debug)]
pub struct Outcome {
    pub grown: bool,
    pub encryption: Encryption,
    pub keys_created: bool,
    pub formatted: bool,
    pub device: PathBuf,
    pub bytes: u64,
    /// Mount points to unmount at shutdown, innermost first.
    pub mounts: Vec<String>,
}

/// The mode when `liftoff.data` names none: what opens the LUKS2 volume already there
/// (`tpm2` with a TPM2 token, else `keyfile`), and for a DATA still to be made `tpm2` when
/// the machine has a TPM 2.0, else `keyfile`. A DATA that is neither (a plain file
/// system, unknown bytes, a DATA made before LUKS2) is `keyfile`'s to open or refuse.
pub fn default_mode(data: &Path) -> Result<DataMode, DataError> {
    mode_for(&luks::inspect(data)?, data)
}

/// [`default_mode`] for the header `found` on `data`.
fn mode_for(found: &luks::Found, data: &Path) -> Result<DataMode, DataError> {
    Ok(match found {
        luks::Found::Luks2(header) if tpm::token(header).is_some() => DataMode::Tpm2,
        luks::Found::Luks2(_) | luks::Found::Damaged(_) => DataMode::Keyfile,
        luks::Found::NotLuks2 if tpm::present() && disposable(data)?.is_some() => DataMode::Tpm2,
        luks::Found::NotLuks2 => DataMode::Keyfile,
    })
}

/// Runs the DATA stage: `disk` is the boot disk, `data` and `private` its DATA and
/// PRIVATE partition nodes, `mode` the command line's (see [`default_mode`] for none),
/// `root` the verified root's hash (DATA's folders are mirrored from it once per root).
/// `mounted` is PRIVATE already mounted read-only by the settings stage, if it was: the
/// modes that read PRIVATE use that mount (or mount it now), and it is unmounted when this
/// returns, in every mode. `grown` is what [`grow`] did, `early` DATA as the module child
/// opened it ([`early`]): then only the file system is left to mount.
// Not inlined into the boot sequence, its one caller: 4 KiB less code (x86_64).
#[inline(never)]
pub fn setup(
    disk: &Path,
    data: &Path,
    private: Option<&Path>,
    mounted: Option<PrivateMount>,
    mode: Option<DataMode>,
    root: Option<&str>,
    (grown, early): (Result<bool, DataError>, Option<PathBuf>),
) -> Result<Outcome, DataError> {
    let grown = grown?;
    let opened = match early {
        Some(device) => {
            // The child read the key on its own mount.
            drop(mounted);
            Opened {
                device,
                encryption: Encryption::Luks2Keyfile,
                fresh: false,
                formatted: false,
                keys_created: false,
            }
        }
        None => open(disk, data, private, mounted, mode)?,
    };
    let part_bytes = device_size(data)?;
    let device = opened.device;
    let mut fs = detect(&device)?;
    let formatted = opened.formatted
        || match fs {
            Some(_) => false,
            None if opened.fresh => {
                mkfs(&device, opened.encryption == Encryption::Ephemeral)?;
                fs = detect(&device)?;
                true
            }
            None => return Err(DataError::NotEmpty { device }),
        };
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
    kmsg::debug("data: mounted");
    if grown && !formatted {
        growpart::fs::grow_filesystem_with(
            &device,
            Path::new(MOUNT_POINT),
            Path::new("/"),
            run_tool,
        )
        .map_err(DataError::GrowFs)?;
    }
    let mounted = bind_from_mount_point(root)?;
    Ok(Outcome {
        grown,
        encryption: opened.encryption,
        keys_created: opened.keys_created,
        formatted,
        bytes: part_bytes,
        device,
        mounts: mounted,
    })
}

/// [`setup`]'s part up to DATA opened: the mode found (from `mode` or the header), the
/// mode's key source read, DATA opened.
fn open(
    disk: &Path,
    data: &Path,
    private: Option<&Path>,
    mounted: Option<PrivateMount>,
    mode: Option<DataMode>,
) -> Result<Opened, DataError> {
    let part_bytes = device_size(data)?;

    // Without a mode on the command line the header tells it; read once, it serves the
    // mode's own look at DATA too (a LUKS2 header read and checked costs about as much as
    // a PRIVATE mount under emulation).
    let (mode, found) = match mode {
        Some(mode) => (mode, None),
        None => {
            let found = luks::inspect(data)?;
            kmsg::debug("data: header read");
            (mode_for(&found, data)?, Some(found))
        }
    };
    let private_of = |mode: &str| match (mounted, private) {
        (Some(mount), _) => Ok(mount),
        (None, Some(node)) => PrivateMount::read_only(node),
        (None, None) => Err(DataError::NoPrivatePartition {
            disk: disk.to_path_buf(),
            mode: mode.to_owned(),
        }),
    };
    let opened = match mode {
        DataMode::None => open_unencrypted(data)?,
        DataMode::Ephemeral => open_ephemeral(data, part_bytes)?,
        DataMode::Keyfile => luks::open_keyfile(private_of("keyfile")?, data, part_bytes, found)?,
        DataMode::Tpm2 => tpm::open(private_of("tpm2")?, data, part_bytes, found)?,
    };
    kmsg::debug("data: opened");
    Ok(opened)
}

/// DATA grown to the end of the boot disk `disk` when the disk grew (the kernel told);
/// whether it was. The first step of the DATA stage, taken before the verity stage so
/// that DATA has its final size when the module child opens it ([`early`]).
pub fn grow(disk: &Path) -> Result<bool, DataError> {
    let mut disk_file = File::options()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(|source| DataError::Size {
            device: disk.to_path_buf(),
            source,
        })?;
    let report = growpart::grow_data(&mut disk_file, disk).map_err(DataError::Grow)?;
    Ok(report.written)
}

/// Binds [`BINDS`] from under [`MOUNT_POINT`] over the root's folders, after
/// [`mirror_dirs`] gave DATA the root's folders, unless [`MIRRORED`] says it did for this
/// `root` (the root hash) already. Returns the mounts in the order to unmount them: the
/// binds, then the mount point.
fn bind_from_mount_point(root: Option<&str>) -> Result<Vec<String>, DataError> {
    let stamp = Path::new(MOUNT_POINT).join(MIRRORED);
    let mirrored = root.is_some_and(|root| {
        std::fs::read_to_string(&stamp).is_ok_and(|text| text.trim_end() == root)
    });
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
        if !mirrored {
            mirror_dirs(Path::new(&target), &source);
        }
        rustix::mount::mount_bind(&source, &target).map_err(|e| DataError::Bind {
            dir: dir.to_owned(),
            source: e.into(),
        })?;
        mounted.push(target);
    }
    if let (false, Some(root)) = (mirrored, root) {
        // Best effort, as the mirror itself: without it the next boot mirrors again (and
        // a DATA that takes no writes fails the next stage loudly enough).
        let _ = std::fs::write(&stamp, format!("{root}\n"));
    }
    kmsg::debug(if mirrored {
        "data: folders of this root mirrored before"
    } else {
        "data: folders of the root mirrored"
    });
    mounted.reverse();
    Ok(mounted)
}

/// Creates under `to` each folder under `from` that `to` lacks, with its owner and mode,
/// and no files: DATA's /var starts empty, and programs from the root expect the
/// folders their packages made (`/var/tmp`, `/var/lib/dhcpcd` for dhcpcd's lease). Run
/// before the bind, while `from` is still the verified root's; every boot, so folders a
/// new root brings appear too. Never enters a symbolic link. Best effort: a folder that
/// cannot be made is left out.
pub fn mirror_dirs(from: &Path, to: &Path) {
    use rustix::fs::{FileType, Gid, Mode, Uid};
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for entry in entries.flatten() {
        // The entry itself: a symbolic link is not a folder here. The type comes with the
        // directory entry (d_type; std stats only when the file system gives none): a
        // stat of each of the root's thousands of files under /var (dpkg's lists), read
        // through dm-verity, took about 190 ms of every boot under TCG.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dest = to.join(entry.file_name());
        // One C string for the four calls below.
        let Ok(c) = std::ffi::CString::new(dest.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        if rustix::fs::mkdir(c.as_c_str(), Mode::empty()).is_ok() {
            // Owner and mode only for a folder made now (on the first boot, or one a new
            // root brings): every other boot finds them all there.
            if let Ok(meta) = entry.metadata() {
                // chown first: it may clear the set-group-ID bit that the mode then sets.
                let _ = rustix::fs::chown(
                    c.as_c_str(),
                    Some(Uid::from_raw(meta.uid())),
                    Some(Gid::from_raw(meta.gid())),
                );
                let _ = rustix::fs::chmod(c.as_c_str(), Mode::from_raw_mode(meta.mode()));
            }
        }
        if rustix::fs::lstat(c.as_c_str())
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        {
            mirror_dirs(&entry.path(), &dest);
        }
    }
}

/// Removes the [`DM_NAME`] mapping the module child made, when PID 1 does not take it
/// (see [`early`]; `why` says why): PID 1 then opens DATA itself and needs the name.
/// Nothing has the device open (the child has ended); without such a mapping there is
/// nothing to do and nothing is logged.
pub fn remove_untaken(why: &str) {
    if dm::Control::open()
        .and_then(|control| control.remove(DM_NAME))
        .is_ok()
    {
        kmsg::warn(&format!(
            "removed the DATA mapping {DM_NAME} the module child made {why}; PID 1 opens DATA itself"
        ));
    }
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
    bind_from_mount_point(None)
}

/// One log line for the outcome (no key material).
pub fn describe(o: &Outcome) -> String {
    format!(
        "data: {} ({} MiB{}{}) mounted at {}{}{}; /var and /opt bound from it",
        o.device.display(),
        o.bytes >> 20,
        if o.grown {
            ", grown to fill the disk"
        } else {
            ""
        },
        match o.encryption {
            Encryption::None => ", not encrypted",
            Encryption::Ephemeral => ", dm-crypt with a key for this boot only",
            Encryption::Luks2Keyfile => ", LUKS2 opened with the key on PRIVATE",
            Encryption::PlainKeyfile =>
                ", plain dm-crypt with the key on PRIVATE (made before LUKS2)",
            Encryption::Luks2Tpm => ", LUKS2 opened with the key sealed in the TPM",
        },
        MOUNT_POINT,
        if o.keys_created {
            "; LUKS2 header and keys created; recovery key in /run/liftoff/recovery-key \
             until the next boot (save it, then delete the file)"
        } else {
            ""
        },
        if o.formatted {
            "; new ext4 file system"
        } else {
            ""
        },
    )
}

/// Logs the outcome.
pub fn log(o: &Outcome) {
    kmsg::info(&describe(o));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_table_matches_cryptsetup_plain() {
        let key = Key(Zeroizing::new([0xab; KEY_BYTES]));
        let hex = key.hex();
        assert_eq!(hex.len(), 128);
        assert_eq!(
            plain_params(&hex, Path::new("/dev/vda9"), 0),
            format!("aes-xts-plain64 {} 0 /dev/vda9 0", "ab".repeat(64))
        );
        assert_eq!(
            plain_params(&hex, Path::new("/dev/vda9"), EPHEMERAL_HEAD),
            format!("aes-xts-plain64 {} 0 /dev/vda9 8", "ab".repeat(64))
        );
        assert_eq!(format!("{key:?}"), "Key(<hidden>)");
    }

    #[test]
    fn key_file_is_written_durably_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_key(dir.path()).unwrap().is_none());
        let key = Key::random().unwrap();
        write_durably(dir.path(), KEY_FILE, key.as_bytes(), 0o400).unwrap();
        let meta = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o400);
        let back = read_key(dir.path()).unwrap().unwrap();
        assert_eq!(back.as_bytes(), key.as_bytes());
        assert_ne!(back.as_bytes(), [0u8; KEY_BYTES]);
        assert!(!dir.path().join(format!("{KEY_FILE}.new")).exists());
        // Replaced whole, also over a read-only file.
        let other = Key::random().unwrap();
        write_durably(dir.path(), KEY_FILE, other.as_bytes(), 0o400).unwrap();
        assert_eq!(
            read_key(dir.path()).unwrap().unwrap().as_bytes(),
            other.as_bytes()
        );

        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let err = read_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("holds 5 bytes, not 64"), "{err}");
        remove_durably(dir.path(), KEY_FILE).unwrap();
        remove_durably(dir.path(), KEY_FILE).unwrap();
        assert!(read_key(dir.path()).unwrap().is_none());
    }

    #[test]
    fn only_a_blank_or_ephemeral_head_is_fresh() {
        let mut head = vec![0u8; BLANK_HEAD];
        assert_eq!(classify_head(&head), Some(Fresh::Blank));
        head[..EPHEMERAL_MAGIC.len()].copy_from_slice(EPHEMERAL_MAGIC);
        assert_eq!(classify_head(&head), Some(Fresh::Ephemeral));
        // Anything else in the magic's block, or past it, is somebody's.
        head[100] = 1;
        assert_eq!(classify_head(&head), None);
        head[100] = 0;
        head[EPHEMERAL_HEAD as usize] = 1;
        assert_eq!(classify_head(&head), Some(Fresh::Ephemeral));
        let mut one_byte = vec![0u8; BLANK_HEAD];
        one_byte[BLANK_HEAD - 1] = 1;
        assert_eq!(classify_head(&one_byte), None);
        assert_eq!(classify_head(b"LIFTOFF-EPH"), None);
        assert_eq!(classify_head(&[]), Some(Fresh::Blank));
    }

    #[test]
    fn a_file_that_is_not_disposable_is_never_reformatted() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::write(&data, vec![0u8; 4 << 20]).unwrap();
        assert_eq!(disposable(&data).unwrap(), Some(Fresh::Blank));
        write_head(&data, EPHEMERAL_MAGIC).unwrap();
        assert_eq!(disposable(&data).unwrap(), Some(Fresh::Ephemeral));
        // `none` on an ephemeral DATA clears the magic before the file system is made.
        let opened = open_unencrypted(&data).unwrap();
        assert!(opened.fresh);
        assert_eq!(disposable(&data).unwrap(), Some(Fresh::Blank));
        // A LUKS2 header is refused by `none` and `ephemeral`, and left as it was.
        let key = luks2::VolumeKey::random(64).unwrap();
        let mut l =
            luks2::Luks2::format(4 << 20 | 16 << 20, &key, &luks2::FormatOptions::default())
                .unwrap();
        let mut big = File::options().write(true).open(&data).unwrap();
        big.set_len(20 << 20).unwrap();
        l.write(&mut big).unwrap();
        drop(big);
        let before = std::fs::read(&data).unwrap();
        let err = open_unencrypted(&data).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "holds a LUKS2 volume, which liftoff.data=none does not open: refusing to \
                 format it (boot with the mode that made it, or erase it with \
                 `prairiedog data erase`)"
            ),
            "{err}"
        );
        let err = open_ephemeral(&data, 20 << 20).unwrap_err().to_string();
        assert!(
            err.contains("holds a LUKS2 volume, which liftoff.data=ephemeral"),
            "{err}"
        );
        assert_eq!(std::fs::read(&data).unwrap(), before);
    }

    /// What a boot in `mode` would do with DATA at `data` (with a key file on PRIVATE or
    /// not): "format", "open", "plain" or "refuse: <the line>". Stops short of device-mapper
    /// and the TPM, which the VM tests cover.
    fn decision(mode: DataMode, data: &Path, key: bool) -> String {
        let refuse = |e: DataError| format!("refuse: {e}");
        let found = luks::inspect(data).unwrap();
        let fresh = match found {
            luks::Found::Luks2(_) => None,
            _ => disposable(data).unwrap(),
        };
        let planned = |plan| match plan {
            luks::Plan::Unlock => "open".to_owned(),
            luks::Plan::FirstUse => "format".to_owned(),
            luks::Plan::Plain => "plain".to_owned(),
            luks::Plan::Refuse(e) => refuse(e),
        };
        match mode {
            DataMode::None => match open_unencrypted(data) {
                Ok(o) if o.fresh => "format".to_owned(),
                Ok(_) if detect(data).unwrap().is_some() => "open".to_owned(),
                Ok(_) => refuse(DataError::NotEmpty {
                    device: data.to_path_buf(),
                }),
                Err(e) => refuse(e),
            },
            DataMode::Ephemeral if fresh.is_some() => "format".to_owned(),
            DataMode::Ephemeral => refuse(open_ephemeral(data, 20 << 20).unwrap_err()),
            DataMode::Keyfile => planned(luks::plan(&found, key, false, fresh, data)),
            DataMode::Tpm2 => {
                let what = what_is_there(data).unwrap();
                planned(tpm::plan(&found, false, fresh.is_some(), data, what))
            }
        }
    }

    /// Every pair of (what an earlier mode left on DATA, the mode of this boot): DATA is
    /// taken only when it is provably fresh or opens in this mode; every other pair is a
    /// refusal with one line that names DATA, and leaves its bytes as they were.
    #[test]
    fn every_mode_switch_opens_formats_fresh_data_or_refuses_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let size = 20usize << 20;
        let luks2_volume = |token: bool| {
            let key = luks2::VolumeKey::random(64).unwrap();
            let mut l =
                luks2::Luks2::format(size as u64, &key, &luks2::FormatOptions::default()).unwrap();
            if token {
                let object =
                    luks2::json::parse(r#"{"type":"systemd-tpm2","keyslots":[]}"#).unwrap();
                let luks2::json::Value::Object(object) = object else {
                    panic!()
                };
                l.add_token(object).unwrap();
            }
            let mut bytes = std::io::Cursor::new(vec![0u8; size]);
            l.write(&mut bytes).unwrap();
            bytes.into_inner()
        };
        let ext4 = {
            let path = dir.path().join("ext4");
            std::fs::write(&path, vec![0u8; size]).unwrap();
            let out = std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            std::fs::read(&path).unwrap()
        };
        let mut ephemeral = vec![0u8; size];
        ephemeral[..EPHEMERAL_MAGIC.len()].copy_from_slice(EPHEMERAL_MAGIC);
        // (what DATA holds, whether PRIVATE has a key file, its bytes)
        let sources: [(&str, bool, Vec<u8>); 7] = [
            ("blank", false, vec![0u8; size]),
            ("ephemeral", false, ephemeral),
            ("none: ext4", false, ext4),
            ("unknown bytes", false, vec![0x5a; size]),
            ("keyfile: LUKS2", true, luks2_volume(false)),
            ("tpm2: LUKS2 + token", false, luks2_volume(true)),
            ("plain dm-crypt (before LUKS2)", true, vec![0x5a; size]),
        ];
        let modes = [
            DataMode::None,
            DataMode::Ephemeral,
            DataMode::Keyfile,
            DataMode::Tpm2,
        ];
        const NO_KEY: &str = "refuse: PRIVATE has no key";
        const NOT_EMPTY: &str = "refuse: holds data but no ext4 or xfs";
        let expected: [[&str; 4]; 7] = [
            ["format", "format", "format", "format"],
            ["format", "format", "format", "format"],
            [
                "open",
                "refuse: a plain file system, which liftoff.data=ephemeral",
                NO_KEY,
                "refuse: a plain file system, which liftoff.data=tpm2",
            ],
            [
                NOT_EMPTY,
                "refuse: data this host cannot read, which liftoff.data=ephemeral",
                NO_KEY,
                "refuse: data this host cannot read, which liftoff.data=tpm2",
            ],
            [
                "refuse: a LUKS2 volume, which liftoff.data=none",
                "refuse: a LUKS2 volume, which liftoff.data=ephemeral",
                "open",
                "refuse: a LUKS2 volume without a TPM2 token, which liftoff.data=tpm2",
            ],
            [
                "refuse: a LUKS2 volume, which liftoff.data=none",
                "refuse: a LUKS2 volume, which liftoff.data=ephemeral",
                NO_KEY,
                "open",
            ],
            [
                NOT_EMPTY,
                "refuse: data this host cannot read, which liftoff.data=ephemeral",
                "plain",
                "refuse: data this host cannot read, which liftoff.data=tpm2",
            ],
        ];
        for ((name, key, bytes), row) in sources.iter().zip(expected) {
            for (mode, want) in modes.iter().zip(row) {
                let data = dir.path().join("data");
                std::fs::write(&data, bytes).unwrap();
                let got = decision(*mode, &data, *key);
                let (verb, line) = got.split_once(": ").unwrap_or((&got, ""));
                let (want_verb, want_line) = want.split_once(": ").unwrap_or((want, ""));
                assert_eq!(verb, want_verb, "{name} under {mode:?}: {got}");
                if verb == "refuse" {
                    assert!(
                        line.starts_with(&data.display().to_string())
                            && line.contains(want_line)
                            && line.contains("refusing to"),
                        "{name} under {mode:?}: {got}"
                    );
                    assert!(
                        &std::fs::read(&data).unwrap() == bytes,
                        "{name} under {mode:?}: DATA changed"
                    );
                }
            }
        }
    }

    #[test]
    fn description_says_no_key() {
        let o = Outcome {
            grown: true,
            encryption: Encryption::Luks2Keyfile,
            keys_created: true,
            formatted: true,
            device: "/dev/dm-1".into(),
            bytes: 64 << 20,
            mounts: vec![],
        };
        assert_eq!(
            describe(&o),
            "data: /dev/dm-1 (64 MiB, grown to fill the disk, LUKS2 opened with the key on \
             PRIVATE) mounted at /local; LUKS2 header and keys created; recovery key in \
             /run/liftoff/recovery-key until the next boot (save it, then delete the file); \
             new ext4 file system; /var and /opt bound from it"
        );
    }

    /// The root's /var folders appear on DATA with their modes, without files, without
    /// following a symbolic link, and what DATA has already is kept.
    #[test]
    fn mirror_dirs_copies_folders_only() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("liftoff-mirror-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (root, data) = (base.join("root"), base.join("data"));
        std::fs::create_dir_all(root.join("lib/dhcpcd")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::fs::write(root.join("lib/dpkg-status"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        std::fs::create_dir_all(data.join("lib")).unwrap();
        std::fs::write(data.join("lib/kept"), b"y").unwrap();
        mirror_dirs(&root, &data);
        assert!(data.join("lib/dhcpcd").is_dir());
        let mode = std::fs::metadata(data.join("tmp"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o1777);
        assert!(!data.join("lib/dpkg-status").exists());
        assert!(data.join("link").symlink_metadata().is_err());
        assert_eq!(std::fs::read(data.join("lib/kept")).unwrap(), b"y");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
