//! The Secure Boot key set an operator owns (UEFI 2.10 section 32.3, "Firmware/OS Key
//! Exchange"): the platform key (PK), the key exchange key (KEK) and the signature database
//! key (db), each an X.509 certificate and its private key in PEM files:
//!
//! | file | what |
//! |---|---|
//! | `PK.crt`, `PK.key` | owns the platform: enrolling PK ends setup mode |
//! | `KEK.crt`, `KEK.key` | may update db and dbx from a running system |
//! | `db.crt`, `db.key` | signs shim, GRUB, every unified kernel image and every payload manifest; the one key a build uses |
//!
//! Only `db.key` is needed to build images; PK and KEK private keys belong in a vault (or an
//! HSM) and are never read by a build. [`KeySet::create`] makes a set (RSA 2048, SHA-256,
//! self-signed, `openssl req -x509`), or takes an existing db key and certificate and makes
//! only PK and KEK around it. [`KeySet::development`] is the per-machine set used when a build
//! names none: made once under the machine cache and reused, never meant for production.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::artifacts;
use crate::kernel::cache_dir;
use crate::seed::seeded_guid;
use crate::tool::{io_err, run, ImageError};

/// A certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A key set in a folder (see the module docs for the files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    pub dir: PathBuf,
    pub pk: KeyPair,
    pub kek: KeyPair,
    pub db: KeyPair,
}

/// An existing db key and certificate to build a set around.
#[derive(Debug, Clone)]
pub struct ExistingDb {
    pub key: PathBuf,
    pub cert: PathBuf,
}

const NAMES: [&str; 3] = ["PK", "KEK", "db"];

impl KeySet {
    /// The set in `dir` (not checked; see [`KeySet::open`]).
    fn at(dir: &Path) -> KeySet {
        let pair = |name: &str| KeyPair {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        KeySet {
            dir: dir.to_path_buf(),
            pk: pair("PK"),
            kek: pair("KEK"),
            db: pair("db"),
        }
    }

    /// The set in `dir`. Builds need the three certificates and the db key; the PK and KEK
    /// keys may live elsewhere (a vault).
    pub fn open(dir: &Path) -> Result<KeySet, ImageError> {
        let set = KeySet::at(dir);
        for path in [&set.pk.cert, &set.kek.cert, &set.db.cert, &set.db.key] {
            if !path.is_file() {
                return Err(ImageError::Io {
                    what: format!(
                        "opening the Secure Boot key set in {}: {} is missing \
                         (make one with `liftoff-qemu keys --out DIR`)",
                        dir.display(),
                        path.display()
                    ),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
        }
        Ok(set)
    }

    /// Makes a new set in `dir` (created; existing key files are refused, never
    /// overwritten). `name` goes into each certificate's common name. With `db`, that key
    /// and certificate are copied in and only PK and KEK are made.
    pub fn create(dir: &Path, name: &str, db: Option<&ExistingDb>) -> Result<KeySet, ImageError> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let set = KeySet::at(dir);
        for pair in [&set.pk, &set.kek, &set.db] {
            for path in [&pair.cert, &pair.key] {
                if path.exists() {
                    return Err(ImageError::Io {
                        what: format!("making a key set: {} exists", path.display()),
                        source: std::io::ErrorKind::AlreadyExists.into(),
                    });
                }
            }
        }
        if let Some(db) = db {
            check_pair(db)?;
        }
        for (label, pair) in NAMES.iter().zip([&set.pk, &set.kek, &set.db]) {
            if let (Some(db), "db") = (db, *label) {
                copy_private(&db.key, &pair.key)?;
                std::fs::copy(&db.cert, &pair.cert)
                    .map_err(io_err(format!("copying {}", db.cert.display())))?;
                continue;
            }
            // The key is written by openssl under a umask that keeps it private.
            run(Command::new("sh")
                .arg("-c")
                .arg(
                    "umask 077 && exec openssl req -new -x509 -newkey rsa:2048 -sha256 \
                     -days 3650 -nodes -subj \"$1\" -keyout \"$2\" -out \"$3\"",
                )
                .arg("sh")
                .arg(format!("/CN={name} Secure Boot {label}/"))
                .arg(&pair.key)
                .arg(&pair.cert))?;
        }
        Ok(set)
    }

    /// The development set of this machine, under `<cache>/secureboot/dev-keys`: made on
    /// first use (and then `true` is returned with it), reused afterwards. Parallel builds
    /// wait on a lock, so one set is made.
    pub fn development() -> Result<(KeySet, bool), ImageError> {
        let parent = cache_dir().join("secureboot");
        let mut made = false;
        let dir = artifacts::made_once(&parent, "dev-keys", |partial| {
            made = true;
            KeySet::create(partial, "Liftoff development (this machine only)", None).map(drop)
        })?;
        Ok((KeySet::open(&dir)?, made))
    }

    /// The set in `dir` when given, else the development set; the message says which, for
    /// a build's progress output.
    pub fn given_or_development(dir: Option<&Path>) -> Result<(KeySet, String), ImageError> {
        match dir {
            Some(dir) => {
                let set = KeySet::open(dir)?;
                let msg = format!("Secure Boot keys: {}", dir.display());
                Ok((set, msg))
            }
            None => {
                let (set, made) = KeySet::development()?;
                let how = if made { "made" } else { "using" };
                let msg = format!(
                    "Secure Boot keys: none given (--keys); {how} this machine's development \
                     set in {} (not for production)",
                    set.dir.display()
                );
                Ok((set, msg))
            }
        }
    }

    /// The db certificate in DER form (what shim's `.vendor_cert` carries).
    pub fn db_cert_der(&self) -> Result<Vec<u8>, ImageError> {
        cert_der(&self.db.cert)
    }

    /// The owner GUID of the set's signature-list entries: derived from the db certificate,
    /// so a set always enrols under the same owner.
    pub fn owner_guid(&self) -> Result<String, ImageError> {
        let der = self.db_cert_der()?;
        let digest = verity::hex::encode(&Sha256::digest(&der));
        Ok(seeded_guid(&digest, "secureboot-owner"))
    }
}

/// A PEM certificate as DER bytes (`openssl x509 -outform DER`).
pub fn cert_der(pem: &Path) -> Result<Vec<u8>, ImageError> {
    let out = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .map_err(io_err("running openssl (scripts/setup)"))?;
    if !out.status.success() {
        return Err(ImageError::Tool {
            command: format!("openssl x509 -outform DER -in {}", pem.display()),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out.stdout)
}

/// Refuses a db key that does not belong to its certificate (compares their public keys).
fn check_pair(db: &ExistingDb) -> Result<(), ImageError> {
    let public = |args: &[&str], path: &Path| -> Result<Vec<u8>, ImageError> {
        let out = Command::new("openssl")
            .args(args)
            .arg(path)
            .output()
            .map_err(io_err("running openssl (scripts/setup)"))?;
        if !out.status.success() {
            return Err(ImageError::Tool {
                command: format!("openssl {} {}", args.join(" "), path.display()),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(out.stdout)
    };
    let from_cert = public(&["x509", "-noout", "-pubkey", "-in"], &db.cert)?;
    let from_key = public(&["pkey", "-pubout", "-in"], &db.key)?;
    if from_cert != from_key {
        return Err(ImageError::Tool {
            command: format!("comparing {} with {}", db.key.display(), db.cert.display()),
            output: "the db key does not belong to the db certificate".into(),
        });
    }
    Ok(())
}

/// Copies a private key, readable by its owner only.
fn copy_private(from: &Path, to: &Path) -> Result<(), ImageError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = std::fs::read(from).map_err(io_err(format!("reading {}", from.display())))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(io_err(format!("creating {}", to.display())))?;
    f.write_all(&bytes)
        .map_err(io_err(format!("writing {}", to.display())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A path for a new key set, not yet made.
    fn work(name: &str) -> PathBuf {
        crate::test_work(name).join("keys")
    }

    /// A new set: three self-signed certificates that `openssl verify` accepts, private keys
    /// readable by the owner only, and a second `create` over it refused.
    #[test]
    fn creates_a_key_set() {
        let dir = work("new");
        let set = KeySet::create(&dir, "Test", None).unwrap();
        assert_eq!(KeySet::open(&dir).unwrap(), set);
        for pair in [&set.pk, &set.kek, &set.db] {
            let ok = Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(&pair.cert)
                .arg(&pair.cert)
                .output()
                .unwrap();
            assert!(ok.status.success(), "{ok:?}");
            let mode = std::fs::metadata(&pair.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{}", pair.key.display());
        }
        let subject = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&set.db.cert)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&subject.stdout).contains("Test Secure Boot db"));
        assert_eq!(set.owner_guid().unwrap(), set.owner_guid().unwrap());
        assert!(KeySet::create(&dir, "Test", None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An existing db key and certificate are taken as they are; a key that is not the
    /// certificate's is refused and leaves no set behind.
    #[test]
    fn takes_an_existing_db_key() {
        let first = work("first");
        let set = KeySet::create(&first, "First", None).unwrap();
        let dir = work("existing");
        let db = ExistingDb {
            key: set.db.key.clone(),
            cert: set.db.cert.clone(),
        };
        let made = KeySet::create(&dir, "Second", Some(&db)).unwrap();
        assert_eq!(
            std::fs::read(&made.db.cert).unwrap(),
            std::fs::read(&set.db.cert).unwrap()
        );
        assert_eq!(
            std::fs::read(&made.db.key).unwrap(),
            std::fs::read(&set.db.key).unwrap()
        );
        assert_ne!(
            std::fs::read(&made.pk.cert).unwrap(),
            std::fs::read(&set.pk.cert).unwrap()
        );
        let wrong = ExistingDb {
            key: set.kek.key.clone(),
            cert: set.db.cert.clone(),
        };
        let bad = work("wrong");
        let err = KeySet::create(&bad, "Bad", Some(&wrong)).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert!(!bad.join("PK.key").exists());
        for d in [first, dir, bad] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
