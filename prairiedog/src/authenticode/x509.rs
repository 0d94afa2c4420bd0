//! The parts of an X.509 certificate (RFC 5280 section 4.1) that checking a signature
//! needs: the signed `tbsCertificate` bytes, the issuer's signature over them, the serial
//! number, issuer and subject names (compared as encoded, RFC 5280 section 7.1 allows
//! that for names a CA copies), and the RSA public key. Nothing is re-encoded.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::der::{self, tag, DerError, Reader};

/// `rsaEncryption` (1.2.840.113549.1.1.1).
pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// `sha256WithRSAEncryption` (1.2.840.113549.1.1.11).
pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// `sha384WithRSAEncryption` (1.2.840.113549.1.1.12).
pub const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
/// `sha512WithRSAEncryption` (1.2.840.113549.1.1.13).
pub const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
/// `id-at-commonName` (2.5.4.3).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// A certificate, borrowed from its DER bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Certificate<'a> {
    /// The whole certificate.
    pub raw: &'a [u8],
    /// `tbsCertificate`, tag and length included: what the issuer signed.
    pub tbs: &'a [u8],
    /// The contents of `serialNumber`.
    pub serial: &'a [u8],
    /// `issuer` (a `Name`), tag and length included.
    pub issuer: &'a [u8],
    /// `subject`, tag and length included.
    pub subject: &'a [u8],
    /// `subjectPublicKeyInfo`'s algorithm OID and key bits.
    key_algorithm: &'a [u8],
    key: &'a [u8],
    /// `signatureAlgorithm`'s OID and `signatureValue`'s bits.
    signature_algorithm: &'a [u8],
    signature: &'a [u8],
}

/// Why a public-key operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// A key or signature algorithm other than RSA with SHA-256/384/512.
    Unsupported(&'static str),
    /// The key bits are not an RSA public key (or one larger than 4096 bits).
    BadKey,
    /// The signature does not verify.
    Mismatch,
}

/// The contents of a BIT STRING without unused bits.
fn bits<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], DerError> {
    match r.expect(tag::BIT_STRING, what)?.content.split_first() {
        Some((0, bits)) => Ok(bits),
        _ => Err(DerError { what }),
    }
}

impl<'a> Certificate<'a> {
    /// Reads the certificate at the start of `bytes` (and nothing after it).
    pub fn parse(bytes: &'a [u8]) -> Result<Certificate<'a>, DerError> {
        let what = "certificate";
        let mut outer = Reader::new(bytes);
        let cert = outer.expect(tag::SEQUENCE, what)?;
        outer.finish(what)?;
        let mut c = cert.reader();
        let tbs = c.expect(tag::SEQUENCE, what)?;
        let signature_algorithm = der::algorithm(&mut c, what)?;
        let signature = bits(&mut c, what)?;
        c.finish(what)?;
        let mut t = tbs.reader();
        let _version = t.optional(tag::CONTEXT_0, what)?;
        let serial = t.expect(tag::INTEGER, what)?.content;
        let _inner_algorithm = t.expect(tag::SEQUENCE, what)?;
        let issuer = t.expect(tag::SEQUENCE, what)?.raw;
        let _validity = t.expect(tag::SEQUENCE, what)?;
        let subject = t.expect(tag::SEQUENCE, what)?.raw;
        let spki = t.expect(tag::SEQUENCE, what)?;
        let mut s = spki.reader();
        let key_algorithm = der::algorithm(&mut s, what)?;
        let key = bits(&mut s, what)?;
        Ok(Certificate {
            raw: cert.raw,
            tbs: tbs.raw,
            serial,
            issuer,
            subject,
            key_algorithm,
            key,
            signature_algorithm,
            signature,
        })
    }

    /// The subject's common name, for messages (`CN=...`); the first one if several,
    /// `(no common name)` if none.
    pub fn subject_name(&self) -> String {
        name_cn(self.subject)
    }

    /// The issuer's common name, as [`Certificate::subject_name`].
    pub fn issuer_name(&self) -> String {
        name_cn(self.issuer)
    }

    /// The subject's RSA public key.
    pub fn public_key(&self) -> Result<RsaPublicKey, KeyError> {
        if self.key_algorithm != RSA_ENCRYPTION {
            return Err(KeyError::Unsupported("a public key that is not RSA"));
        }
        RsaPublicKey::from_pkcs1_der(self.key).map_err(|_| KeyError::BadKey)
    }

    /// Checks that `issuer`'s key made this certificate's signature.
    pub fn signed_by(&self, issuer: &Certificate<'_>) -> Result<(), KeyError> {
        verify(
            &issuer.public_key()?,
            self.signature_algorithm,
            self.tbs,
            self.signature,
        )
    }
}

/// Checks an RSA PKCS#1 v1.5 `signature` over `message` with `key`, the digest named by
/// `algorithm` (one of the `sha*WithRSAEncryption` OIDs).
pub fn verify(
    key: &RsaPublicKey,
    algorithm: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), KeyError> {
    let result = match algorithm {
        SHA256_WITH_RSA => key.verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(message),
            signature,
        ),
        SHA384_WITH_RSA => key.verify(
            Pkcs1v15Sign::new::<Sha384>(),
            &Sha384::digest(message),
            signature,
        ),
        SHA512_WITH_RSA => key.verify(
            Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(message),
            signature,
        ),
        _ => {
            return Err(KeyError::Unsupported(
                "a signature algorithm other than RSA with SHA-256, SHA-384 or SHA-512",
            ))
        }
    };
    result.map_err(|_| KeyError::Mismatch)
}

/// `CN=<value>` of the first common name in the encoded `Name`.
fn name_cn(name: &[u8]) -> String {
    let found = (|| -> Result<Option<String>, DerError> {
        let what = "name";
        let seq = Reader::new(name).expect(tag::SEQUENCE, what)?;
        let mut rdns = seq.reader();
        while !rdns.is_empty() {
            let mut set = rdns.expect(tag::SET, what)?.reader();
            while !set.is_empty() {
                let mut atv = set.expect(tag::SEQUENCE, what)?.reader();
                let oid = atv.expect(tag::OID, what)?;
                let value = atv.any(what)?;
                if oid.content == COMMON_NAME {
                    return Ok(Some(String::from_utf8_lossy(value.content).into_owned()));
                }
            }
        }
        Ok(None)
    })();
    match found {
        Ok(Some(cn)) => format!("CN={cn}"),
        _ => "(no common name)".to_owned(),
    }
}
