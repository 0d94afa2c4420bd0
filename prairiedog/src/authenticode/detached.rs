//! A detached signature over a file's exact bytes: the update manifest's `manifest.sig`
//! (issue 13, "Signed updates"), made with the same db key that signs the UKI, so the trust
//! that checks the UKI checks the manifest.
//!
//! # Format
//!
//! The raw RSASSA-PKCS1-v1_5 signature (RFC 8017 section 8.2) with EMSA-PKCS1-v1_5 encoding
//! and SHA-256 (section 9.2), as many bytes as the key's modulus, nothing around it: what
//!
//! ```text
//! openssl dgst -sha256 -sign db.key -out manifest.sig manifest
//! ```
//!
//! writes, and what
//!
//! ```text
//! openssl dgst -sha256 -verify <(openssl x509 -pubkey -noout -in db.crt) -signature manifest.sig manifest
//! ```
//!
//! checks.
//!
//! # Who may sign
//!
//! No certificate travels with the signature, so it is checked with each trusted
//! certificate's own RSA key ([`super::Trust`]: `--trust` files or db), and any one of them
//! verifying is enough. A certificate that a trusted CA issued cannot sign a manifest: the
//! signature names no signer to follow a chain from (Authenticode's does, see the parent
//! module's step 5). A trusted certificate that dbx lists does not count.

use super::x509::{self, Certificate, KeyError};
use super::Trust;

/// Why a detached signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetachedError {
    /// No trusted certificate's key made it over these bytes.
    #[error(
        "does not verify with any trusted certificate's key: the file was changed after \
         signing, or another key signed it (trusted: {trusted})"
    )]
    Untrusted {
        /// The trusted certificates, for the message.
        trusted: String,
    },
    /// Only a certificate that dbx revokes made it.
    #[error("made by the key of {cert}, which dbx revokes")]
    Revoked {
        /// The revoked certificate's subject.
        cert: String,
    },
}

/// Checks `signature` (see the module docs) over `message` with the keys of `trust`'s
/// certificates; returns the subject of the certificate whose key made it.
pub fn verify_detached(
    message: &[u8],
    signature: &[u8],
    trust: &Trust,
) -> Result<String, DetachedError> {
    let mut revoked = None;
    for cert in trust.certificates() {
        if !made_by(&cert, message, signature) {
            continue;
        }
        if trust.is_revoked(cert.raw) {
            revoked.get_or_insert_with(|| cert.subject_name());
            continue;
        }
        return Ok(cert.subject_name());
    }
    Err(match revoked {
        Some(cert) => DetachedError::Revoked { cert },
        None => DetachedError::Untrusted {
            trusted: trust.describe(),
        },
    })
}

/// Whether `cert`'s RSA key made `signature` over `message` (a certificate with another
/// kind of key made nothing here).
fn made_by(cert: &Certificate<'_>, message: &[u8], signature: &[u8]) -> bool {
    let check = || -> Result<(), KeyError> {
        x509::verify(
            &cert.public_key()?,
            x509::SHA256_WITH_RSA,
            message,
            signature,
        )
    };
    check().is_ok()
}
