//! Where trust in a signature comes from: the running machine's Secure Boot databases in
//! efivarfs (`db`: the certificates firmware trusts; `dbx`: revoked image digests and
//! certificates), or certificates named on the command line (`--trust`, PEM or DER).
//!
//! [`Trust::for_install`] is the policy of `prairiedog install`:
//!
//! | `--trust` | Secure Boot | checked against |
//! |---|---|---|
//! | given | any | those certificates, and dbx if efivarfs has one |
//! | none | on | db and dbx from efivarfs (a db without X.509 certificates is an error) |
//! | none | off or no UEFI | nothing: the caller says so in one line and installs |

use std::path::{Path, PathBuf};

use super::x509::Certificate;
use super::ImageDigest;
use crate::efi::{self, EfiError};

/// Trusted and revoked certificates and digests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// Trusted certificates (DER), each one parsed when added.
    certs: Vec<Vec<u8>>,
    /// Revoked Authenticode digests (dbx `EFI_CERT_SHA256_GUID`).
    pub revoked_digests: Vec<ImageDigest>,
    /// Revoked certificates (dbx `EFI_CERT_X509_GUID`, DER).
    revoked_certs: Vec<Vec<u8>>,
    /// Where the trusted certificates came from, for messages.
    pub source: String,
}

/// Why trust could not be established.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Reading a `--trust` file.
    #[error("reading trusted certificate {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A `--trust` file, or a db entry, that holds no certificate this reader can parse.
    #[error("{what} is not an X.509 certificate (PEM or DER): {why}")]
    NotCertificate {
        /// The file or the db entry.
        what: String,
        /// What failed.
        why: String,
    },
    /// Reading efivarfs.
    #[error(transparent)]
    Efi(#[from] EfiError),
    /// Secure Boot is on but db holds nothing to check against.
    #[error("Secure Boot is on, but db in {efivars} holds no X.509 certificate (pass --trust CERT)", efivars = efivars.display())]
    EmptyDb {
        /// The efivarfs folder.
        efivars: PathBuf,
    },
}

impl Trust {
    /// Adds a trusted certificate (DER); `what` names it in an error.
    pub fn add_certificate(&mut self, der: Vec<u8>, what: &str) -> Result<(), TrustError> {
        Certificate::parse(&der).map_err(|e| TrustError::NotCertificate {
            what: what.to_owned(),
            why: e.to_string(),
        })?;
        if !self.certs.contains(&der) {
            self.certs.push(der);
        }
        Ok(())
    }

    /// The trusted certificates.
    pub fn certificates(&self) -> Vec<Certificate<'_>> {
        self.certs
            .iter()
            .filter_map(|c| Certificate::parse(c).ok())
            .collect()
    }

    /// Whether dbx lists this certificate (DER).
    pub fn is_revoked(&self, der: &[u8]) -> bool {
        self.revoked_certs.iter().any(|c| c == der)
    }

    /// The trusted certificates' subjects and where they came from, for messages.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .certificates()
            .iter()
            .map(Certificate::subject_name)
            .collect();
        format!("{} from {}", names.join(", "), self.source)
    }

    /// The certificates in PEM or DER files.
    pub fn from_files(paths: &[PathBuf]) -> Result<Trust, TrustError> {
        let mut trust = Trust::default();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|source| TrustError::Read {
                path: path.clone(),
                source,
            })?;
            let what = path.display().to_string();
            let ders = if bytes.starts_with(b"-----BEGIN") || is_text(&bytes) {
                pem_certificates(&bytes).map_err(|why| TrustError::NotCertificate {
                    what: what.clone(),
                    why: why.to_owned(),
                })?
            } else {
                vec![bytes]
            };
            for der in ders {
                trust.add_certificate(der, &what)?;
            }
        }
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        trust.source = format!("--trust {}", names.join(", "));
        Ok(trust)
    }

    /// The X.509 entries of db in the efivarfs at `efivars` (`Ok(None)` without a db).
    pub fn from_db(efivars: &Path) -> Result<Option<Trust>, TrustError> {
        let Some(entries) = efi::signature_database(efivars, "db")? else {
            return Ok(None);
        };
        let mut trust = Trust {
            source: format!("db in {}", efivars.display()),
            ..Trust::default()
        };
        for entry in entries.into_iter().filter(|e| e.kind == efi::CERT_X509) {
            // A db entry this reader cannot parse (another key type) cannot vouch for an
            // image here; the others still can.
            let _ = trust.add_certificate(entry.data, "db entry");
        }
        Ok(Some(trust))
    }

    /// Adds dbx from the efivarfs at `efivars`, if it has one.
    pub fn add_dbx(&mut self, efivars: &Path) -> Result<(), TrustError> {
        for entry in efi::signature_database(efivars, "dbx")?.unwrap_or_default() {
            if entry.kind == efi::CERT_SHA256 {
                if let Ok(digest) = ImageDigest::try_from(entry.data.as_slice()) {
                    self.revoked_digests.push(digest);
                }
            } else if entry.kind == efi::CERT_X509 {
                self.revoked_certs.push(entry.data);
            }
        }
        Ok(())
    }

    /// The install policy (see the module docs): `None` when nothing is to be checked.
    pub fn for_install(efivars: &Path, files: &[PathBuf]) -> Result<Option<Trust>, TrustError> {
        let mut trust = if !files.is_empty() {
            Trust::from_files(files)?
        } else if efi::secure_boot(efivars)? == Some(true) {
            match Trust::from_db(efivars)? {
                Some(t) if !t.certs.is_empty() => t,
                _ => {
                    return Err(TrustError::EmptyDb {
                        efivars: efivars.to_owned(),
                    })
                }
            }
        } else {
            return Ok(None);
        };
        trust.add_dbx(efivars)?;
        Ok(Some(trust))
    }
}

/// Whether `bytes` look like text (PEM with a comment before the armour).
fn is_text(bytes: &[u8]) -> bool {
    bytes
        .windows(27)
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
}

/// The DER of every `CERTIFICATE` block of a PEM file (RFC 7468).
pub fn pem_certificates(text: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let text = std::str::from_utf8(text).map_err(|_| "PEM that is not text")?;
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match (&mut body, line) {
            (None, "-----BEGIN CERTIFICATE-----") => body = Some(String::new()),
            (Some(b), "-----END CERTIFICATE-----") => {
                out.push(verity::base64::decode(b).ok_or("PEM with bad base64")?);
                body = None;
            }
            (Some(b), l) => b.push_str(l),
            (None, _) => {}
        }
    }
    if body.is_some() {
        return Err("a PEM certificate without its END line");
    }
    if out.is_empty() {
        return Err("no PEM CERTIFICATE block");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks() {
        let pem = b"comment\n-----BEGIN CERTIFICATE-----\nZm9v\nYmFy\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nZg==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_certificates(pem).unwrap(),
            vec![b"foobar".to_vec(), b"f".to_vec()]
        );
        assert!(pem_certificates(b"-----BEGIN CERTIFICATE-----\nZm9v\n").is_err());
        assert!(pem_certificates(b"-----BEGIN PRIVATE KEY-----\n").is_err());
    }

    #[test]
    fn policy_without_secure_boot_or_trust_checks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Trust::for_install(dir.path(), &[]).unwrap(), None);
        let mut sb = 6u32.to_le_bytes().to_vec();
        sb.push(1);
        std::fs::write(dir.path().join(format!("SecureBoot-{}", efi::GLOBAL)), sb).unwrap();
        let err = Trust::for_install(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, TrustError::EmptyDb { .. }), "{err}");
        let file = dir.path().join("not-a-cert.pem");
        std::fs::write(&file, "hello").unwrap();
        let err = Trust::for_install(dir.path(), &[file]).unwrap_err();
        assert!(
            err.to_string().contains("is not an X.509 certificate"),
            "{err}"
        );
    }
}
