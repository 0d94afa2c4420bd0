//! The recovery key of a LUKS2 DATA: 256 random bits written as systemd-cryptenroll writes
//! its recovery keys (64 "modhex" characters in 8 groups of 8, joined by dashes), so one
//! kind of key is typed the same way on every host. The text itself is the passphrase of
//! the recovery keyslot: `cryptsetup open` takes it as typed.
//!
//! Modhex uses the 16 letters `cbdefghijklnrtuv`, which sit on the same keys in every
//! common Latin keyboard layout, so a key read from paper types back correctly.
//!
//! The key is handed over once, in memory: [`RecoveryKey::save`] writes it to
//! [`FILE`] (tmpfs, mode 0400, root only) and the log says where; it never reaches the
//! log, the console, argv or a disk. docs/data.md says how an operator keeps it.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use zeroize::Zeroizing;

const MODHEX: &[u8; 16] = b"cbdefghijklnrtuv";
/// Random bytes in a key.
const BYTES: usize = 32;
/// Characters of the text: two per byte, a dash between groups of 8.
pub const TEXT_LEN: usize = BYTES * 2 + BYTES / 4 - 1;

/// A recovery key's text, cleared from memory when dropped.
pub struct RecoveryKey(Zeroizing<String>);

impl RecoveryKey {
    /// A new key from the kernel's random pool.
    pub fn random() -> io::Result<RecoveryKey> {
        let mut raw = Zeroizing::new([0u8; BYTES]);
        let mut filled = 0;
        while filled < BYTES {
            let rest = raw.get_mut(filled..).unwrap_or_default();
            filled += rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty())?;
        }
        Ok(RecoveryKey::from_bytes(&raw))
    }

    fn from_bytes(raw: &[u8; BYTES]) -> RecoveryKey {
        // Reserved in full first: never reallocated, so no unzeroized copy is left behind.
        let mut text = Zeroizing::new(String::with_capacity(TEXT_LEN));
        for (i, b) in raw.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                text.push('-');
            }
            for nibble in [b >> 4, b & 0x0f] {
                let c = MODHEX.get(usize::from(nibble)).copied().unwrap_or(b'c');
                text.push(char::from(c));
            }
        }
        RecoveryKey(text)
    }

    /// The passphrase of the recovery keyslot.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Writes the key with a final newline to `path`, readable by its owner only,
    /// replacing what was there.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(path)?;
        f.write_all(self.as_bytes())?;
        f.write_all(b"\n")
    }
}

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn text_is_modhex_in_groups_of_eight() {
        let mut raw = [0u8; BYTES];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i * 8 + 1) as u8;
        }
        let k = RecoveryKey::from_bytes(&raw);
        let text = std::str::from_utf8(k.as_bytes()).unwrap();
        assert_eq!(text.len(), TEXT_LEN);
        // 0x01 0x09 0x11 0x19: nibbles 0 1 0 9 1 1 1 9, as modhex c b c k b b b k.
        assert!(text.starts_with("cbckbbbk-"), "{text}");
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(groups.len(), 8);
        assert!(groups.iter().all(|g| g.len() == 8));
        assert!(text.bytes().all(|c| c == b'-' || MODHEX.contains(&c)));
        assert_eq!(format!("{k:?}"), "RecoveryKey(<hidden>)");
    }

    #[test]
    fn random_keys_differ_and_save_is_owner_only() {
        let a = RecoveryKey::random().unwrap();
        let b = RecoveryKey::random().unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/recovery-key");
        a.save(&path).unwrap();
        b.save(&path).unwrap();
        let saved = std::fs::read(&path).unwrap();
        assert_eq!(&saved[..TEXT_LEN], b.as_bytes());
        assert_eq!(saved[TEXT_LEN], b'\n');
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
    }
}
