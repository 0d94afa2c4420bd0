//! `liftoff.data=keyfile` as LUKS2: open DATA with the key file on PRIVATE, or make the
//! volume on first use. The header is the `luks2` crate's (cryptsetup's layout and
//! defaults); PID 1 makes and opens PBKDF2 keyslots only (docs/data.md says why).
//!
//! # First use, and a cut at any point of it
//!
//! In this order, each step durable before the next:
//!
//! 1. [`FIRST_USE_RECORD`] on PRIVATE: from here on, DATA is ours to redo.
//! 2. Keys in memory: the volume key, the keyslot secret, the recovery key; the header in
//!    memory, with a keyslot for each secret.
//! 3. The dm-crypt mapping of the data segment and a file system on it.
//! 4. The keyslot secret in [`KEY_FILE`] on PRIVATE; the recovery key in /run.
//! 5. The header: keyslot areas, the secondary copy, the primary copy.
//! 6. The record removed.
//!
//! A boot after a cut before 5 ends finds no valid header and the record, so it starts
//! again from 1 with new keys: nothing was ever stored on that DATA (it is mounted only
//! after 6). A cut after the secondary copy is written finds a valid header (the
//! secondary), which opens with the key file written in 4, and a file system made in 3. A
//! cut between 5 and 6 leaves a valid header and a stale record, which the next boot
//! removes. `tests::every_cut_point_redoes_or_opens` checks each of these.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use luks2::{FormatOptions, KdfParams, Luks2, VolumeKey};

use super::recovery::RecoveryKey;
use super::{
    create_mapping, device_size, disposable, mkfs, open_plain, read_key, remove_durably,
    write_durably, DataError, Encryption, Fresh, Key, Opened, PrivateMount, FIRST_USE_RECORD,
    KEY_FILE,
};
use crate::infra::kmsg;
use prairiedog::host::RECOVERY_KEY_FILE;

// The token that marks a recovery key nobody has confirmed saving: while it is there,
// every boot gives its keyslot a new recovery key and hands that over in /run, so a
// reboot before the operator saved it loses nothing.
use prairiedog::host::UNSAVED_RECOVERY_TOKEN as UNSAVED_RECOVERY;

fn unsaved_token(keyslot: u32) -> luks2::json::Object {
    use luks2::json::{Object, Value};
    let mut token = Object::new();
    token.insert("type", Value::str(UNSAVED_RECOVERY));
    token.insert(
        "keyslots",
        Value::Array(vec![Value::str(keyslot.to_string())]),
    );
    token
}

/// The unsaved recovery token's number and its keyslot, if the header has one.
fn unsaved_recovery(header: &Luks2) -> Option<(u32, u32)> {
    header
        .metadata
        .tokens
        .iter()
        .find(|(_, t)| t.kind == UNSAVED_RECOVERY)
        .and_then(|(n, t)| Some((*n, *t.keyslots.first()?)))
}

/// What DATA's first bytes hold.
#[derive(Debug)]
pub enum Found {
    Luks2(Box<Luks2>),
    /// The LUKS2 magic, but neither copy is valid (the error says why).
    Damaged(luks2::Error),
    /// No LUKS2 magic in either copy.
    NotLuks2,
}

/// Reads DATA's LUKS2 header, if it has one.
pub fn inspect(device: &Path) -> Result<Found, DataError> {
    let err = |source| DataError::Luks {
        device: device.to_path_buf(),
        source,
    };
    let mut f = File::open(device).map_err(|source| DataError::Size {
        device: device.to_path_buf(),
        source,
    })?;
    inspect_from(&mut f).map_err(err)
}

fn inspect_from<R: Read + Seek>(dev: &mut R) -> Result<Found, luks2::Error> {
    use luks2::HeaderError::{Magic, Truncated};
    match Luks2::read(dev) {
        Ok(l) => Ok(Found::Luks2(Box::new(l))),
        Err(luks2::Error::NoValidHeader {
            primary: Magic | Truncated { .. },
            secondary: Magic | Truncated { .. },
        }) => Ok(Found::NotLuks2),
        Err(e @ luks2::Error::NoValidHeader { .. }) => Ok(Found::Damaged(e)),
        Err(e) => Err(e),
    }
}

/// What a keyfile boot does with DATA.
#[derive(Debug)]
pub enum Plan {
    /// Open the LUKS2 volume with the key file.
    Unlock,
    /// Make the volume: DATA is fresh, or this host's own first use of it was cut short.
    FirstUse,
    /// Open DATA as plain dm-crypt with the key file (made before LUKS2).
    Plain,
    /// Leave DATA untouched.
    Refuse(DataError),
}

/// The decision, from what DATA holds, whether PRIVATE has a key and a first-use record,
/// and whether DATA is provably fresh.
pub fn plan(found: &Found, key: bool, record: bool, fresh: Option<Fresh>, device: &Path) -> Plan {
    let device = device.to_path_buf();
    match found {
        Found::Luks2(_) if key => Plan::Unlock,
        Found::Luks2(_) => Plan::Refuse(DataError::NoKey { device }),
        // A header torn while it was first written: ours only with the record.
        Found::Damaged(_) if record => Plan::FirstUse,
        Found::Damaged(e) => Plan::Refuse(DataError::Damaged {
            device,
            source: clone_error(e),
        }),
        Found::NotLuks2 if record || fresh.is_some() => Plan::FirstUse,
        Found::NotLuks2 if key => Plan::Plain,
        Found::NotLuks2 => Plan::Refuse(DataError::NoKey { device }),
    }
}

/// `luks2::Error` holds `io::Error`s and is not `Clone`; a damaged header's error is a
/// `NoValidHeader`, whose parts are.
pub fn clone_error(e: &luks2::Error) -> luks2::Error {
    match e {
        luks2::Error::NoValidHeader { primary, secondary } => luks2::Error::NoValidHeader {
            primary: primary.clone(),
            secondary: secondary.clone(),
        },
        other => luks2::Error::Unsupported {
            what: "header",
            detail: other.to_string(),
        },
    }
}

/// Opens DATA in keyfile mode (see [`plan`]); `found` is its header when already read.
pub fn open_keyfile(
    mut private_mount: PrivateMount,
    data: &Path,
    part_bytes: u64,
    found: Option<Found>,
) -> Result<Opened, DataError> {
    let dir = private_mount.dir().to_path_buf();
    let key = read_key(&dir)?;
    let record = dir.join(FIRST_USE_RECORD).exists();
    let found = match found {
        Some(found) => found,
        None => inspect(data)?,
    };
    let fresh = match found {
        Found::Luks2(_) => None,
        _ => disposable(data)?,
    };
    match plan(&found, key.is_some(), record, fresh, data) {
        Plan::Unlock => {
            let (Found::Luks2(header), Some(key)) = (found, key) else {
                return Err(DataError::NoKey {
                    device: data.to_path_buf(),
                });
            };
            let wrong = || DataError::WrongKey {
                device: data.to_path_buf(),
                key: dir.join(KEY_FILE),
            };
            let (volume_key, table) = unlock(&header, data, part_bytes, key.as_bytes(), &wrong)?;
            drop(key);
            kmsg::debug("data: volume key unlocked");
            map_and_tidy(
                *header,
                volume_key,
                table,
                data,
                record.then_some(&mut private_mount),
                Encryption::Luks2Keyfile,
            )
        }
        Plan::FirstUse => {
            let key = Key::random()?;
            let secret = MachineSecret {
                passphrase: key.as_bytes(),
                key_file: Some(key.as_bytes()),
                token: None,
            };
            first_use_on(
                &mut private_mount,
                data,
                part_bytes,
                &secret,
                Encryption::Luks2Keyfile,
            )
        }
        Plan::Plain => {
            let Some(key) = key else {
                return Err(DataError::NoKey {
                    device: data.to_path_buf(),
                });
            };
            Ok(Opened {
                device: open_plain(data, part_bytes, 0, key)?,
                encryption: Encryption::PlainKeyfile,
                fresh: false,
                formatted: false,
                keys_created: false,
            })
        }
        Plan::Refuse(e) => Err(e),
    }
}

/// The module child's keyfile open ([`super::early`]): DATA's LUKS2 volume opened with the
/// key file in `dir` and mapped, when nothing else is to be done on this boot: no
/// first-use record, no unsaved recovery key, and no TPM2 token (when `header_decides`
/// the mode, a token makes it `tpm2`). In every other case, and on any error, why not
/// (the error's details are PID 1's to log: it then does it all, as without the child).
pub fn open_steady(dir: &Path, data: &Path, header_decides: bool) -> Result<PathBuf, &'static str> {
    if dir.join(FIRST_USE_RECORD).exists() {
        return Err("a first use is recorded");
    }
    let key = read_key(dir).ok().flatten().ok_or("no key file read")?;
    let Ok(Found::Luks2(header)) = inspect(data) else {
        return Err("no LUKS2 header read");
    };
    if header_decides && super::tpm::token(&header).is_some() {
        return Err("a TPM2 token");
    }
    if unsaved_recovery(&header).is_some() {
        return Err("a recovery key not yet saved");
    }
    let part_bytes = device_size(data).map_err(|_| "no size read")?;
    let wrong = || DataError::WrongKey {
        device: data.to_path_buf(),
        key: dir.join(KEY_FILE),
    };
    let (volume_key, table) = unlock(&header, data, part_bytes, key.as_bytes(), &wrong)
        .map_err(|_| "the key file opened no keyslot")?;
    drop((volume_key, key));
    create_mapping(table).map_err(|_| "the mapping failed")
}

/// Maps DATA with `table`, then the chores of an opened volume: a new recovery key while
/// the old one is unsaved, and the removal of a stale first-use record (`private`, when
/// there is one to remove). DATA, opened, with its `encryption`.
pub fn map_and_tidy(
    mut header: Luks2,
    volume_key: VolumeKey,
    table: dm::Target,
    data: &Path,
    private: Option<&mut PrivateMount>,
    encryption: Encryption,
) -> Result<Opened, DataError> {
    let device = create_mapping(table)?;
    if let Some((token, keyslot)) = unsaved_recovery(&header) {
        // DATA is open either way: a failure here costs only the new key.
        let recovery_file = Path::new(RECOVERY_KEY_FILE);
        match renew_recovery(
            &mut header,
            &volume_key,
            token,
            keyslot,
            data,
            recovery_file,
        ) {
            Ok(()) => kmsg::warn(&format!(
                "data: nobody confirmed saving the recovery key of {}: a new one is in \
                 {} until the next boot (save it, then run `prairiedog data \
                 recovery-key-saved {}`)",
                data.display(),
                recovery_file.display(),
                data.display()
            )),
            Err(e) => kmsg::warn(&format!(
                "data: making a new recovery key for {}: {e}; the old one still opens it",
                data.display()
            )),
        }
    }
    drop(volume_key);
    if let Some(private) = private {
        private.writable()?;
        remove_durably(private.dir(), FIRST_USE_RECORD)?;
    }
    Ok(Opened {
        device,
        encryption,
        fresh: false,
        formatted: false,
        keys_created: false,
    })
}

/// The volume key and the crypt target of the data segment, from the keyslot `secret`
/// opens; `wrong` names the secret when it opens none.
pub fn unlock(
    header: &Luks2,
    data: &Path,
    part_bytes: u64,
    secret: &[u8],
    wrong: &dyn Fn() -> DataError,
) -> Result<(VolumeKey, dm::Target), DataError> {
    let luks_err = |source| DataError::Luks {
        device: data.to_path_buf(),
        source,
    };
    let mut dev = File::open(data).map_err(|source| DataError::Size {
        device: data.to_path_buf(),
        source,
    })?;
    let (_, volume_key) = match header.unlock(&mut dev, secret) {
        Ok(found) => found,
        Err(luks2::Error::WrongSecret { .. }) => return Err(wrong()),
        Err(e) => return Err(luks_err(e)),
    };
    let table = header
        .crypt_table(&volume_key, &data.display().to_string(), part_bytes)
        .map_err(luks_err)?;
    Ok((volume_key, table.target()))
}

/// Replaces recovery keyslot `keyslot` (named by unsaved token `token`) with one for a new
/// recovery key, writes the header (the luks2 crate's crash-safe order: a cut leaves the
/// old header or the new one), then hands the new key over in `recovery_file`.
fn renew_recovery(
    header: &mut Luks2,
    volume_key: &VolumeKey,
    token: u32,
    keyslot: u32,
    data: &Path,
    recovery_file: &Path,
) -> Result<(), DataError> {
    let luks_err = |source| DataError::Luks {
        device: data.to_path_buf(),
        source,
    };
    let recovery = RecoveryKey::random().map_err(DataError::Random)?;
    let added = header
        .add_keyslot(volume_key, recovery.as_bytes(), KdfParams::MACHINE_SECRET)
        .map_err(luks_err)?;
    header.remove_keyslot(keyslot).map_err(luks_err)?;
    header.remove_token(token).map_err(luks_err)?;
    header.add_token(unsaved_token(added)).map_err(luks_err)?;
    header.write(&mut open_rw(data)?).map_err(luks_err)?;
    recovery.save(recovery_file).map_err(DataError::Recovery)
}

/// The encryption sector size for a data segment of `part_bytes - 16 MiB`: 4096 when it is
/// whole 4096-byte sectors (the partition layout aligns to 1 MiB, so always in practice),
/// else 512.
fn sector_size(part_bytes: u64) -> u32 {
    if part_bytes
        .saturating_sub(luks2::volume::DATA_OFFSET)
        .is_multiple_of(4096)
    {
        4096
    } else {
        512
    }
}

/// DATA opened for reading and writing.
fn open_rw(data: &Path) -> Result<File, DataError> {
    File::options()
        .read(true)
        .write(true)
        .open(data)
        .map_err(|source| DataError::Size {
            device: data.to_path_buf(),
            source,
        })
}

/// [`first_use`] on the real DATA and PRIVATE (made writable): the mapping is
/// [`DM_NAME`](super::DM_NAME) and the file system ext4.
pub fn first_use_on(
    private_mount: &mut PrivateMount,
    data: &Path,
    part_bytes: u64,
    secret: &MachineSecret<'_>,
    encryption: Encryption,
) -> Result<Opened, DataError> {
    private_mount.writable()?;
    let dir = private_mount.dir().to_path_buf();
    let device = first_use(
        &dir,
        data,
        &mut open_rw(data)?,
        part_bytes,
        secret,
        Path::new(RECOVERY_KEY_FILE),
        |target| {
            let device = create_mapping(target)?;
            mkfs(&device, true)?;
            Ok(device)
        },
        |_| Ok(()),
    )?;
    Ok(Opened {
        device,
        encryption,
        fresh: false,
        formatted: true,
        keys_created: true,
    })
}

/// What opens DATA's machine keyslot, as [`first_use`] stores it.
pub struct MachineSecret<'a> {
    /// The keyslot's passphrase.
    pub passphrase: &'a [u8],
    /// Bytes for [`KEY_FILE`] on PRIVATE (keyfile mode).
    pub key_file: Option<&'a [u8]>,
    /// Makes the token that names the keyslot (tpm2 mode: the sealed blob).
    pub token: Option<&'a dyn Fn(u32) -> Result<luks2::json::Object, DataError>>,
}

impl std::fmt::Debug for MachineSecret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MachineSecret(<hidden>)")
    }
}

/// A durable step of [`first_use`], for the cut-point tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Record,
    FileSystem,
    KeyFile,
    Header,
    RecordRemoved,
}

/// Makes the LUKS2 volume on `dev` (the DATA partition `data` of `part_bytes`), in the
/// order of the module documentation. `format` maps a crypt target and makes the file
/// system (returning the mapped device); `after` is told each durable step and may stop
/// there (a power cut, in tests). `dir` is PRIVATE, writable.
#[allow(clippy::too_many_arguments)] // each is one thing first use needs; a struct would only rename them
pub fn first_use<S: luks2::Storage>(
    dir: &Path,
    data: &Path,
    dev: &mut S,
    part_bytes: u64,
    secret: &MachineSecret<'_>,
    recovery_file: &Path,
    format: impl FnOnce(dm::Target) -> Result<PathBuf, DataError>,
    mut after: impl FnMut(Step) -> Result<(), DataError>,
) -> Result<PathBuf, DataError> {
    let luks_err = |source| DataError::Luks {
        device: data.to_path_buf(),
        source,
    };
    write_durably(
        dir,
        FIRST_USE_RECORD,
        b"the first LUKS2 use of DATA is under way\n",
        0o600,
    )?;
    after(Step::Record)?;

    let volume_key = VolumeKey::random(luks2::volume::VOLUME_KEY_BYTES).map_err(luks_err)?;
    let recovery = RecoveryKey::random().map_err(DataError::Random)?;
    let opts = FormatOptions {
        sector_size: sector_size(part_bytes),
        label: "DATA".to_owned(),
        uuid: None,
    };
    let mut header = Luks2::format(part_bytes, &volume_key, &opts).map_err(luks_err)?;
    let machine_slot = header
        .add_keyslot(&volume_key, secret.passphrase, KdfParams::MACHINE_SECRET)
        .map_err(luks_err)?;
    if let Some(token) = secret.token {
        header.add_token(token(machine_slot)?).map_err(luks_err)?;
    }
    let recovery_slot = header
        .add_keyslot(&volume_key, recovery.as_bytes(), KdfParams::MACHINE_SECRET)
        .map_err(luks_err)?;
    header
        .add_token(unsaved_token(recovery_slot))
        .map_err(luks_err)?;
    let table = header
        .crypt_table(&volume_key, &data.display().to_string(), part_bytes)
        .map_err(luks_err)?;
    drop(volume_key);
    let device = format(table.target())?;
    drop(table);
    after(Step::FileSystem)?;

    if let Some(key) = secret.key_file {
        write_durably(dir, KEY_FILE, key, 0o400)?;
    }
    recovery.save(recovery_file).map_err(DataError::Recovery)?;
    drop(recovery);
    after(Step::KeyFile)?;

    if let Err(e) = header.write(dev) {
        // This header never opens: its recovery key is no use to anyone.
        let _ = std::fs::remove_file(recovery_file);
        return Err(luks_err(e));
    }
    after(Step::Header)?;
    remove_durably(dir, FIRST_USE_RECORD)?;
    after(Step::RecordRemoved)?;
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Cursor, SeekFrom, Write};

    const PART: u64 = 20 << 20;

    /// A DATA in memory whose writes stop after `budget` calls (a power cut: later writes
    /// are lost, and the writer is told so).
    struct Disk {
        bytes: Cursor<Vec<u8>>,
        budget: usize,
    }

    impl Read for Disk {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.bytes.read(buf)
        }
    }
    impl Seek for Disk {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.bytes.seek(pos)
        }
    }
    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::other("power cut"));
            }
            self.budget -= 1;
            self.bytes.write_all(buf)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl luks2::Storage for Disk {
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Where the stand-in "mkfs" writes through the stand-in mapping.
    const FS_MARK: &[u8] = b"a file system made through the mapping";

    struct Run {
        private: tempfile::TempDir,
        disk: Disk,
    }

    impl Run {
        fn new() -> Run {
            Run {
                private: tempfile::tempdir().unwrap(),
                disk: Disk {
                    bytes: Cursor::new(vec![0u8; PART as usize]),
                    budget: usize::MAX,
                },
            }
        }

        fn recovery_file(&self) -> PathBuf {
            self.private.path().join("run-recovery-key")
        }

        /// First use, cut after durable step `cut_after` or after `writes` header writes.
        fn first_use(&mut self, cut_after: Option<Step>, writes: usize) -> Result<(), String> {
            self.disk.budget = writes;
            let mut fs_written = false;
            let recovery = self.recovery_file();
            let key = Key::random().unwrap();
            let secret = MachineSecret {
                passphrase: key.as_bytes(),
                key_file: Some(key.as_bytes()),
                token: None,
            };
            let r = first_use(
                self.private.path(),
                Path::new("/dev/vda9"),
                &mut self.disk,
                PART,
                &secret,
                &recovery,
                |target| {
                    assert_eq!(target.target_type, "crypt");
                    assert!(
                        target.params.ends_with(" sector_size:4096"),
                        "{}",
                        target.params
                    );
                    fs_written = true;
                    Ok(PathBuf::from("/dev/dm-1"))
                },
                |step| match cut_after {
                    Some(cut) if cut == step => Err(DataError::Recovery(io::Error::other("cut"))),
                    _ => Ok(()),
                },
            );
            if fs_written {
                // What mkfs wrote reached the data segment (it is durable before the header).
                let at = luks2::volume::DATA_OFFSET as usize;
                self.disk.bytes.get_mut()[at..at + FS_MARK.len()].copy_from_slice(FS_MARK);
            }
            r.map(|_| ()).map_err(|e| e.to_string())
        }

        /// What the next boot plans, and for `Unlock` whether the key file opens DATA.
        fn next_boot(&mut self) -> Plan {
            let key = read_key(self.private.path()).unwrap();
            let record = self.private.path().join(FIRST_USE_RECORD).exists();
            let found = inspect_from(&mut self.disk).unwrap();
            let fresh =
                super::super::classify_head(&self.disk.bytes.get_ref()[..super::super::BLANK_HEAD]);
            let plan = plan(&found, key.is_some(), record, fresh, Path::new("/dev/vda9"));
            if let (Plan::Unlock, Found::Luks2(h), Some(key)) = (&plan, &found, &key) {
                let (_, vk) = h.unlock(&mut self.disk, key.as_bytes()).unwrap();
                assert!(h.verify_volume_key(&vk).unwrap());
                let at = luks2::volume::DATA_OFFSET as usize;
                assert_eq!(
                    &self.disk.bytes.get_ref()[at..at + FS_MARK.len()],
                    FS_MARK,
                    "a valid header without a file system"
                );
            }
            plan
        }
    }

    /// The module child's open says why it leaves DATA to PID 1 (its debug line): a
    /// recorded first use, no key file, no LUKS2 header, a recovery key not yet saved.
    #[test]
    fn the_childs_open_says_why_it_leaves_data_to_pid1() {
        let mut run = Run::new();
        run.first_use(None, usize::MAX).unwrap();
        let dir = run.private.path();
        let data = dir.join("data.img");
        std::fs::write(&data, run.disk.bytes.get_ref()).unwrap();
        let why = |data: &Path| open_steady(dir, data, true).unwrap_err();
        let _ = std::fs::remove_file(dir.join(KEY_FILE));
        assert_eq!(why(&data), "no key file read");
        std::fs::write(dir.join(KEY_FILE), [7u8; crate::stage::data::KEY_BYTES]).unwrap();
        assert_eq!(why(&data), "a recovery key not yet saved");
        let zeros = dir.join("zeros.img");
        std::fs::write(&zeros, vec![0u8; 64 * 1024]).unwrap();
        assert_eq!(why(&zeros), "no LUKS2 header read");
        std::fs::write(dir.join(FIRST_USE_RECORD), b"").unwrap();
        assert_eq!(why(&data), "a first use is recorded");
    }

    #[test]
    fn first_use_makes_a_volume_the_key_file_and_the_recovery_key_open() {
        let mut run = Run::new();
        run.first_use(None, usize::MAX).unwrap();
        assert!(!run.private.path().join(FIRST_USE_RECORD).exists());
        let found = inspect_from(&mut run.disk).unwrap();
        let Found::Luks2(h) = found else {
            panic!("no header: {found:?}")
        };
        assert_eq!(h.metadata.keyslots.len(), 2);
        let key = read_key(run.private.path()).unwrap().unwrap();
        let (slot, by_key) = h.unlock(&mut run.disk, key.as_bytes()).unwrap();
        assert_eq!(slot, 0);
        let text = std::fs::read_to_string(run.recovery_file()).unwrap();
        let recovery = text.strip_suffix('\n').unwrap();
        assert_eq!(recovery.len(), super::super::recovery::TEXT_LEN);
        let (slot, by_recovery) = h.unlock(&mut run.disk, recovery.as_bytes()).unwrap();
        assert_eq!(slot, 1);
        assert_eq!(by_key.as_bytes(), by_recovery.as_bytes());
        // The next boot opens it.
        assert!(matches!(run.next_boot(), Plan::Unlock));
        // No key bytes anywhere on DATA in the clear.
        let image = run.disk.bytes.get_ref();
        for needle in [key.as_bytes(), recovery.as_bytes(), by_key.as_bytes()] {
            assert!(!image.windows(needle.len()).any(|w| w == needle));
        }
    }

    #[test]
    fn every_cut_point_redoes_or_opens() {
        let steps = [
            Step::Record,
            Step::FileSystem,
            Step::KeyFile,
            Step::Header,
            Step::RecordRemoved,
        ];
        for cut in steps {
            let mut run = Run::new();
            assert!(run.first_use(Some(cut), usize::MAX).is_err());
            let plan = run.next_boot();
            match cut {
                Step::Record | Step::FileSystem | Step::KeyFile => {
                    assert!(
                        matches!(plan, Plan::FirstUse),
                        "cut after {cut:?}: {plan:?}"
                    )
                }
                Step::Header | Step::RecordRemoved => {
                    assert!(matches!(plan, Plan::Unlock), "cut after {cut:?}: {plan:?}")
                }
            }
            // Whatever the cut left, the next boot finishes the job, and the one after opens.
            if matches!(plan, Plan::FirstUse) {
                run.first_use(None, usize::MAX).unwrap();
            }
            assert!(matches!(run.next_boot(), Plan::Unlock), "after cut {cut:?}");
        }
        // Cuts inside the header write: after the keyslot areas, after the secondary copy,
        // in the middle of the primary.
        for writes in 0..8 {
            let mut run = Run::new();
            match run.first_use(None, writes) {
                Ok(()) => {
                    assert!(matches!(run.next_boot(), Plan::Unlock));
                    continue;
                }
                Err(e) => assert!(e.contains("power cut"), "{e}"),
            }
            let plan = run.next_boot();
            assert!(
                matches!(plan, Plan::FirstUse | Plan::Unlock),
                "{writes} header writes: {plan:?}"
            );
            if matches!(plan, Plan::FirstUse) {
                assert!(
                    !run.recovery_file().exists(),
                    "a recovery key left for a header that never opens"
                );
                run.first_use(None, usize::MAX).unwrap();
            }
            assert!(matches!(run.next_boot(), Plan::Unlock), "{writes} writes");
        }
    }

    #[test]
    fn what_is_not_provably_fresh_is_refused() {
        let dev = Path::new("/dev/vda9");
        let refusal = |p: Plan| match p {
            Plan::Refuse(e) => e.to_string(),
            other => panic!("{other:?}"),
        };
        // A plain file system (liftoff.data=none before) and no key.
        let e = refusal(plan(&Found::NotLuks2, false, false, None, dev));
        assert!(e.contains("PRIVATE has no key for it"), "{e}");
        // A LUKS2 volume whose key file is gone.
        let header = {
            let vk = VolumeKey::random(64).unwrap();
            Luks2::format(PART, &vk, &FormatOptions::default()).unwrap()
        };
        let e = refusal(plan(
            &Found::Luks2(Box::new(header)),
            false,
            true,
            None,
            dev,
        ));
        assert!(e.contains("PRIVATE has no key for it"), "{e}");
        // A damaged header that no first use of ours left behind.
        let damaged = luks2::Error::NoValidHeader {
            primary: luks2::HeaderError::Checksum,
            secondary: luks2::HeaderError::Checksum,
        };
        let e = refusal(plan(&Found::Damaged(damaged), true, false, None, dev));
        assert!(
            e.contains("starts like LUKS2, but no header copy is valid"),
            "{e}"
        );
        // Fresh heads and our own records are taken; a key without LUKS2 is plain dm-crypt.
        assert!(matches!(
            plan(&Found::NotLuks2, true, false, Some(Fresh::Blank), dev),
            Plan::FirstUse
        ));
        assert!(matches!(
            plan(&Found::NotLuks2, false, false, Some(Fresh::Ephemeral), dev),
            Plan::FirstUse
        ));
        assert!(matches!(
            plan(&Found::NotLuks2, true, false, None, dev),
            Plan::Plain
        ));
    }

    #[test]
    fn a_wrong_key_file_is_named() {
        let mut run = Run::new();
        run.first_use(None, usize::MAX).unwrap();
        let Found::Luks2(h) = inspect_from(&mut run.disk).unwrap() else {
            panic!()
        };
        let image = run.private.path().join("data.img");
        std::fs::write(&image, run.disk.bytes.get_ref()).unwrap();
        let other = Key::random().unwrap();
        let wrong = || DataError::WrongKey {
            device: image.clone(),
            key: "/run/liftoff/private/data.key".into(),
        };
        let e = unlock(&h, &image, PART, other.as_bytes(), &wrong)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "/run/liftoff/private/data.key opens none of the LUKS2 keyslots of {}: \
                 refusing to format it",
                image.display()
            )
        );
        let key = read_key(run.private.path()).unwrap().unwrap();
        let (_, target) = unlock(&h, &image, PART, key.as_bytes(), &|| unreachable!()).unwrap();
        assert!(target.params.starts_with("aes-xts-plain64 "));
        assert_eq!(target.length, (PART - luks2::volume::DATA_OFFSET) / 512);
    }

    /// An unsaved recovery key is replaced on the next boot: the old one stops opening
    /// DATA, the new one and the key file open it, and the token follows the keyslot.
    #[test]
    fn an_unsaved_recovery_key_is_renewed() {
        let mut run = Run::new();
        run.first_use(None, usize::MAX).unwrap();
        let old = std::fs::read_to_string(run.recovery_file()).unwrap();
        let image = run.private.path().join("data.img");
        std::fs::write(&image, run.disk.bytes.get_ref()).unwrap();
        let mut f = File::open(&image).unwrap();
        let Found::Luks2(mut h) = inspect_from(&mut f).unwrap() else {
            panic!()
        };
        assert_eq!(unsaved_recovery(&h), Some((0, 1)));
        let key = read_key(run.private.path()).unwrap().unwrap();
        let (vk, _) = unlock(&h, &image, PART, key.as_bytes(), &|| unreachable!()).unwrap();
        let fresh = run.private.path().join("new-recovery-key");
        renew_recovery(&mut h, &vk, 0, 1, &image, &fresh).unwrap();

        let mut f = File::open(&image).unwrap();
        let Found::Luks2(h) = inspect_from(&mut f).unwrap() else {
            panic!()
        };
        let new = std::fs::read_to_string(&fresh).unwrap();
        assert_ne!(old, new);
        assert_eq!(h.metadata.keyslots.len(), 2);
        let (slot, by_new) = h.unlock(&mut f, new.trim_end().as_bytes()).unwrap();
        assert_eq!(unsaved_recovery(&h), Some((0, slot)));
        assert_eq!(by_new.as_bytes(), vk.as_bytes());
        assert!(matches!(
            h.unlock(&mut f, old.trim_end().as_bytes()),
            Err(luks2::Error::WrongSecret { .. })
        ));
        assert_eq!(h.unlock(&mut f, key.as_bytes()).unwrap().0, 0);
        // The new key went to keyslot 2, and keyslot 1's area is zeroed: the old key's
        // material is gone, not just unlisted.
        assert_eq!(slot, 2);
        let bytes = std::fs::read(&image).unwrap();
        let area = 32768 + 258048;
        assert!(bytes[area..area + 258048].iter().all(|b| *b == 0));
    }

    #[test]
    fn sector_size_follows_the_data_size() {
        assert_eq!(sector_size(PART), 4096);
        assert_eq!(sector_size(PART + 512), 512);
    }
}
