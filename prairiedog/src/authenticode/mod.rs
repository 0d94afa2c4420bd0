//! Authenticode: the signature of a PE image (a UKI, shim, GRUB) as UEFI firmware and shim
//! check it, done here so that `prairiedog install` refuses a forged update before it
//! writes a byte instead of the firmware refusing it at boot (issue 13).
//!
//! # What is checked, and where the format is specified
//!
//! 1. The image's Authenticode digest, SHA-256 over the file without the parts a signature
//!    changes ([`image_digest`]; Microsoft "PE Format", section "Calculating the PE Image
//!    Hash" and "Windows Authenticode Portable Executable Signature Format"): the headers up
//!    to `SizeOfHeaders` without the optional header's `CheckSum` and without data
//!    directory 4 (the certificate table entry), each section's raw data in file order,
//!    then whatever follows the sections up to the attribute certificate table.
//! 2. The attribute certificate table (PE Format, "The Attribute Certificate Table"): a
//!    list of `WIN_CERTIFICATE`s, each `dwLength`, `wRevision` (0x0200),
//!    `wCertificateType` (0x0002, `WIN_CERT_TYPE_PKCS_SIGNED_DATA`), then the DER, 8-byte
//!    aligned. One entry verifying is enough (firmware and shim do the same).
//! 3. The entry's PKCS#7 `SignedData` (RFC 2315 section 9, RFC 5652 section 5): its content
//!    is an `SpcIndirectDataContent` (OID 1.3.6.1.4.1.311.2.1.4) whose `DigestInfo` must
//!    be SHA-256 and equal the digest of step 1.
//! 4. Exactly one `SignerInfo` (Authenticode allows no more), SHA-256, with signed
//!    attributes: `contentType` is `SpcIndirectDataContent` and `messageDigest` equals the
//!    SHA-256 of the content's contents octets (RFC 2315 section 9.3: without its tag and
//!    length). The RSA PKCS#1 v1.5 signature is over the DER of the attributes as a
//!    `SET OF` (RFC 5652 section 5.4: the `[0]` tag replaced by 0x31), checked with the
//!    certificate the signature names by issuer and serial number.
//! 5. That certificate is trusted when it is one of the trusted certificates (db entries
//!    or `--trust`), or when a trusted certificate issued it: its issuer is that
//!    certificate's subject and that certificate's key made its signature. A db entry may
//!    be a CA, as firmware allows. Chains through more certificates are not followed,
//!    and validity dates are not checked (firmware has no trusted time and ignores them).
//! 6. `dbx`: an image whose digest is listed (`EFI_CERT_SHA256_GUID`) is revoked, and so
//!    is a signer or issuing certificate listed as `EFI_CERT_X509_GUID`.
//!
//! [`detached`] checks the update manifest's detached signature with the same trust.
//!
//! Every parser here takes untrusted bytes (an update payload): lengths are checked, no
//! panics, and a refusal names the step that failed.

pub mod der;
pub mod detached;
pub mod trust;
pub mod x509;

use sha2::{Digest, Sha256};

use crate::pe::{PeError, PeInfo};
use der::{tag, DerError, Reader};
pub use detached::{verify_detached, DetachedError};
pub use trust::{Trust, TrustError};
use x509::{Certificate, KeyError};

/// `WIN_CERT_REVISION_2_0`.
const WIN_CERT_REVISION: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const WIN_CERT_TYPE_PKCS: u16 = 0x0002;
/// `signedData` (1.2.840.113549.1.7.2).
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// `SPC_INDIRECT_DATA_OBJID` (1.3.6.1.4.1.311.2.1.4).
const SPC_INDIRECT_DATA: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x04];
/// `id-sha256` (2.16.840.1.101.3.4.2.1).
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// `id-contentType` (1.2.840.113549.1.9.3).
const CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
/// `id-messageDigest` (1.2.840.113549.1.9.4).
const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];

/// An Authenticode SHA-256 digest.
pub type ImageDigest = [u8; 32];

/// Why an image's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a PE image.
    #[error("not a PE image: {0}")]
    Pe(#[from] PeError),
    /// No certificate table, or none of its entries is a PKCS#7 signature.
    #[error("no signature")]
    NoSignature,
    /// The headers, sections or certificate table do not fit the file.
    #[error("cannot compute the Authenticode digest: {0}")]
    Layout(&'static str),
    /// The certificate table or the PKCS#7 DER does not parse.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// A valid signature of a kind firmware may take but this check does not.
    #[error("the signature uses {0}, which this check does not support")]
    Unsupported(&'static str),
    /// The signed digest is not the image's.
    #[error("digest mismatch: the image was changed after signing")]
    DigestMismatch,
    /// The signed attributes' `messageDigest` is not the digest of the signed content.
    #[error("the signed attributes do not match the signed content (messageDigest differs)")]
    AttributesMismatch,
    /// The signer certificate is not in the signature.
    #[error("the signature names a signer certificate it does not carry")]
    SignerMissing,
    /// The signer certificate's key did not make the signature.
    #[error("the signature does not verify with its signer certificate {signer}")]
    BadSignature {
        /// The signer's subject.
        signer: String,
    },
    /// Signed correctly, by a certificate nothing trusted issued.
    #[error("signed by {signer}, which no trusted certificate issued (trusted: {trusted})")]
    Untrusted {
        /// The signer's subject.
        signer: String,
        /// The trusted certificates' subjects.
        trusted: String,
    },
    /// The image's digest is in dbx.
    #[error("the image's digest {digest} is revoked (listed in dbx)")]
    RevokedImage {
        /// Hex.
        digest: String,
    },
    /// The signer or its issuer is in dbx.
    #[error("signed through {cert}, which dbx revokes")]
    RevokedCertificate {
        /// The revoked certificate's subject.
        cert: String,
    },
}

impl From<DerError> for VerifyError {
    fn from(e: DerError) -> Self {
        VerifyError::Malformed(e.to_string())
    }
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The image's Authenticode digest.
    pub digest: ImageDigest,
    /// The signer certificate's subject.
    pub signer: String,
    /// The trusted certificate it chains to (the signer itself, or its issuer).
    pub anchor: String,
}

/// The Authenticode SHA-256 digest of `image` (step 1 of the module docs).
pub fn image_digest(image: &[u8], pe: &PeInfo) -> Result<ImageDigest, VerifyError> {
    let layout = VerifyError::Layout;
    let checksum = pe.checksum_offset;
    let dir = pe
        .cert_dir_offset
        .ok_or(layout("the optional header has no certificate table entry"))?;
    let headers = pe.headers_size;
    let mut h = Sha256::new();
    let part = |from: usize, to: usize| image.get(from..to);
    let head = [
        part(0, checksum),
        part(checksum + 4, dir),
        part(dir + 8, headers),
    ];
    for region in head {
        h.update(region.ok_or(layout("the headers are not in the order PE requires"))?);
    }
    let mut sections: Vec<(usize, usize)> = pe
        .sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| (s.raw_offset as usize, s.raw_size as usize))
        .collect();
    sections.sort_unstable();
    let mut hashed = headers;
    for (offset, size) in sections {
        let data = offset
            .checked_add(size)
            .and_then(|end| image.get(offset..end))
            .ok_or(layout("a section runs past the end of the file"))?;
        h.update(data);
        hashed = hashed
            .checked_add(size)
            .ok_or(layout("the sections are larger than the address space"))?;
    }
    let end = match pe.cert_table {
        Some((offset, size)) => {
            if offset.checked_add(size) != Some(image.len()) {
                return Err(layout(
                    "the certificate table is not at the end of the file",
                ));
            }
            offset
        }
        None => image.len(),
    };
    if end > hashed {
        h.update(image.get(hashed..end).ok_or(layout("trailing data"))?);
    }
    Ok(h.finalize().into())
}

/// One `WIN_CERTIFICATE`.
#[derive(Debug, Clone, Copy)]
struct WinCertificate<'a> {
    revision: u16,
    kind: u16,
    /// `bCertificate`.
    der: &'a [u8],
}

/// The `WIN_CERTIFICATE` entries of the certificate table.
fn certificate_entries(table: &[u8]) -> Result<Vec<WinCertificate<'_>>, VerifyError> {
    let bad = || {
        VerifyError::Malformed(
            "the WIN_CERTIFICATE lengths and padding do not fit the certificate table".into(),
        )
    };
    let mut rest = table;
    let mut entries = Vec::new();
    while rest.len() >= 8 {
        let field = |at: usize, len: usize| rest.get(at..at + len).ok_or_else(bad);
        let len = u32::from_le_bytes(field(0, 4)?.try_into().map_err(|_| bad())?) as usize;
        let revision = u16::from_le_bytes(field(4, 2)?.try_into().map_err(|_| bad())?);
        let kind = u16::from_le_bytes(field(6, 2)?.try_into().map_err(|_| bad())?);
        if len < 8 {
            return Err(bad());
        }
        entries.push(WinCertificate {
            revision,
            kind,
            der: rest.get(8..len).ok_or_else(bad)?,
        });
        // Entries are 8-byte aligned; the padding (zeros) after the last one may be cut.
        let next = (len.checked_add(7).ok_or_else(bad)? & !7).min(rest.len());
        let padding = rest.get(len..next).unwrap_or_default();
        if padding.iter().any(|b| *b != 0) {
            return Err(bad());
        }
        rest = rest.get(next..).unwrap_or_default();
    }
    if rest.iter().any(|b| *b != 0) {
        return Err(bad());
    }
    Ok(entries)
}

/// Verifies the Authenticode signature of `image` against `trust` (see the module docs).
/// With several signatures, the first that verifies is taken; otherwise the first
/// signature's refusal is returned.
pub fn verify(image: &[u8], trust: &Trust) -> Result<Verified, VerifyError> {
    let pe = PeInfo::parse(image)?;
    let (offset, size) = pe.cert_table.ok_or(VerifyError::NoSignature)?;
    let digest = image_digest(image, &pe)?;
    if trust.revoked_digests.contains(&digest) {
        return Err(VerifyError::RevokedImage {
            digest: verity::hex::encode(&digest),
        });
    }
    let table = offset
        .checked_add(size)
        .and_then(|end| image.get(offset..end))
        .ok_or(VerifyError::Layout(
            "the certificate table is outside the file",
        ))?;
    let mut first_error = None;
    for entry in certificate_entries(table)? {
        let result = if (entry.revision, entry.kind) == (WIN_CERT_REVISION, WIN_CERT_TYPE_PKCS) {
            verify_signed_data(entry.der, &digest, trust)
        } else {
            Err(VerifyError::Unsupported(
                "a WIN_CERTIFICATE other than revision 2.0 PKCS#7 signed data",
            ))
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(VerifyError::NoSignature))
}

/// The parts of a PKCS#7 `SignedData` with one signer that Authenticode uses.
#[derive(Debug, Clone)]
pub struct SignedData<'a> {
    /// The SHA-256 image digest inside `SpcIndirectDataContent`.
    pub image_digest: &'a [u8],
    /// The contents octets of `SpcIndirectDataContent` (what `messageDigest` covers).
    pub content: &'a [u8],
    /// The certificates the signature carries (DER).
    pub certificates: Vec<&'a [u8]>,
    /// The signer's issuer (encoded `Name`) and serial number (INTEGER contents).
    pub issuer: &'a [u8],
    pub serial: &'a [u8],
    /// The signed attributes, `[0]` tag included.
    pub signed_attributes: &'a [u8],
    /// `messageDigest` among them.
    pub message_digest: &'a [u8],
    /// The signature algorithm OID (contents) and the signature.
    pub signature_algorithm: &'a [u8],
    pub signature: &'a [u8],
}

impl<'a> SignedData<'a> {
    /// Parses a `ContentInfo` holding Authenticode `SignedData` (steps 3-4 of the module
    /// docs, without the cryptography).
    pub fn parse(bytes: &'a [u8]) -> Result<SignedData<'a>, VerifyError> {
        let what = "PKCS#7 ContentInfo";
        let mut outer = Reader::new(bytes);
        let content_info = outer.expect(tag::SEQUENCE, what)?;
        // sbsign pads the DER to the WIN_CERTIFICATE's 8-byte alignment with zeros.
        if !outer_padding_ok(&outer) {
            return Err(VerifyError::Malformed(
                "data after the PKCS#7 signature".into(),
            ));
        }
        let mut ci = content_info.reader();
        if ci.expect(tag::OID, what)?.content != SIGNED_DATA {
            return Err(VerifyError::Unsupported(
                "PKCS#7 content other than signedData",
            ));
        }
        let explicit = ci.expect(tag::CONTEXT_0, what)?;
        ci.finish(what)?;
        let what = "PKCS#7 SignedData";
        let signed_data = explicit.reader().expect(tag::SEQUENCE, what)?;
        let mut sd = signed_data.reader();
        // Authenticode: version 1, and the one digest algorithm the signer uses.
        if sd.expect(tag::INTEGER, what)?.content != [1] {
            return Err(VerifyError::Unsupported(
                "a SignedData version other than 1",
            ));
        }
        let mut digest_algorithms = sd.expect(tag::SET, what)?.reader();
        if der::algorithm(&mut digest_algorithms, what)? != SHA256 {
            return Err(VerifyError::Unsupported(
                "a digest algorithm other than SHA-256",
            ));
        }
        digest_algorithms.finish(what)?;
        let encap = sd.expect(tag::SEQUENCE, what)?;
        let mut certificates = Vec::new();
        if let Some(certs) = sd.optional(tag::CONTEXT_0, what)? {
            let mut r = certs.reader();
            while !r.is_empty() {
                certificates.push(r.any(what)?.raw);
            }
        }
        let _crls = sd.optional(tag::CONTEXT_1, what)?;
        let signer_infos = sd.expect(tag::SET, what)?;
        sd.finish(what)?;

        let what = "SpcIndirectDataContent";
        let mut e = encap.reader();
        if e.expect(tag::OID, what)?.content != SPC_INDIRECT_DATA {
            return Err(VerifyError::Unsupported(
                "signed content other than SpcIndirectDataContent",
            ));
        }
        let spc = e
            .expect(tag::CONTEXT_0, what)?
            .reader()
            .expect(tag::SEQUENCE, what)?;
        e.finish(what)?;
        let mut s = spc.reader();
        let _data = s.expect(tag::SEQUENCE, what)?;
        let mut digest_info = s.expect(tag::SEQUENCE, what)?.reader();
        s.finish(what)?;
        if der::algorithm(&mut digest_info, what)? != SHA256 {
            return Err(VerifyError::Unsupported(
                "an image digest other than SHA-256",
            ));
        }
        let image_digest = digest_info.expect(tag::OCTET_STRING, what)?.content;
        digest_info.finish(what)?;

        let what = "SignerInfo";
        let mut signers = signer_infos.reader();
        let signer = signers.expect(tag::SEQUENCE, what)?;
        if !signers.is_empty() {
            return Err(VerifyError::Malformed(
                "more than one SignerInfo (Authenticode allows one)".into(),
            ));
        }
        let mut si = signer.reader();
        if si.expect(tag::INTEGER, what)?.content != [1] {
            return Err(VerifyError::Unsupported(
                "a SignerInfo version other than 1",
            ));
        }
        let mut issuer_serial = si.expect(tag::SEQUENCE, what)?.reader();
        let issuer = issuer_serial.expect(tag::SEQUENCE, what)?.raw;
        let serial = issuer_serial.expect(tag::INTEGER, what)?.content;
        issuer_serial.finish(what)?;
        if der::algorithm(&mut si, what)? != SHA256 {
            return Err(VerifyError::Unsupported(
                "a signer digest other than SHA-256",
            ));
        }
        let attributes = si
            .optional(tag::CONTEXT_0, what)?
            .ok_or(VerifyError::Unsupported(
                "a signature without signed attributes",
            ))?;
        let signature_algorithm = match der::algorithm(&mut si, what)? {
            // rsaEncryption with the digest algorithm above, or named together.
            x509::RSA_ENCRYPTION | x509::SHA256_WITH_RSA => x509::SHA256_WITH_RSA,
            _ => return Err(VerifyError::Unsupported("a signature that is not RSA")),
        };
        let signature = si.expect(tag::OCTET_STRING, what)?.content;
        let _unsigned = si.optional(tag::CONTEXT_1, what)?;
        si.finish(what)?;

        let what = "signed attributes";
        let mut content_type = None;
        let mut message_digest = None;
        let mut attrs = attributes.reader();
        while !attrs.is_empty() {
            let mut attr = attrs.expect(tag::SEQUENCE, what)?.reader();
            let oid = attr.expect(tag::OID, what)?.content;
            let mut values = attr.expect(tag::SET, what)?.reader();
            attr.finish(what)?;
            let target = match oid {
                CONTENT_TYPE => &mut content_type,
                MESSAGE_DIGEST => &mut message_digest,
                _ => continue,
            };
            let value = values.any(what)?;
            values.finish(what)?;
            if target.replace(value).is_some() {
                return Err(VerifyError::Malformed(
                    "a signed attribute given twice".into(),
                ));
            }
        }
        match content_type {
            Some(t) if t.tag == tag::OID && t.content == SPC_INDIRECT_DATA => {}
            _ => {
                return Err(VerifyError::Malformed(
                    "the signed contentType attribute is not SpcIndirectDataContent".into(),
                ))
            }
        }
        let message_digest = match message_digest {
            Some(d) if d.tag == tag::OCTET_STRING => d.content,
            _ => {
                return Err(VerifyError::Malformed(
                    "no messageDigest signed attribute".into(),
                ))
            }
        };
        Ok(SignedData {
            image_digest,
            content: spc.content,
            certificates,
            issuer,
            serial,
            signed_attributes: attributes.raw,
            message_digest,
            signature_algorithm,
            signature,
        })
    }

    /// The bytes the signature is over: the signed attributes as a `SET OF`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = self.signed_attributes.to_vec();
        if let Some(first) = bytes.first_mut() {
            *first = tag::SET;
        }
        bytes
    }
}

/// Only zero bytes (at most 7) may follow the `ContentInfo` in a `WIN_CERTIFICATE`.
fn outer_padding_ok(rest: &Reader<'_>) -> bool {
    let rest = rest.remaining();
    rest.len() < 8 && rest.iter().all(|b| *b == 0)
}

fn key_error(e: KeyError, signer: &Certificate<'_>) -> VerifyError {
    match e {
        KeyError::Unsupported(what) => VerifyError::Unsupported(what),
        KeyError::BadKey => VerifyError::Malformed(format!(
            "the certificate of {} holds no usable RSA key",
            signer.subject_name()
        )),
        KeyError::Mismatch => VerifyError::BadSignature {
            signer: signer.subject_name(),
        },
    }
}

/// Steps 3-6 of the module docs for one `WIN_CERTIFICATE`'s DER.
fn verify_signed_data(
    der: &[u8],
    digest: &ImageDigest,
    trust: &Trust,
) -> Result<Verified, VerifyError> {
    let sd = SignedData::parse(der)?;
    if sd.image_digest != digest.as_slice() {
        return Err(VerifyError::DigestMismatch);
    }
    if Sha256::digest(sd.content).as_slice() != sd.message_digest {
        return Err(VerifyError::AttributesMismatch);
    }
    let signer = sd
        .certificates
        .iter()
        .filter_map(|raw| Certificate::parse(raw).ok())
        .find(|c| c.issuer == sd.issuer && c.serial == sd.serial)
        .ok_or(VerifyError::SignerMissing)?;
    let key = signer.public_key().map_err(|e| key_error(e, &signer))?;
    x509::verify(
        &key,
        sd.signature_algorithm,
        &sd.signed_bytes(),
        sd.signature,
    )
    .map_err(|e| key_error(e, &signer))?;
    if trust.is_revoked(signer.raw) {
        return Err(VerifyError::RevokedCertificate {
            cert: signer.subject_name(),
        });
    }
    let trusted = trust.certificates();
    if trusted.iter().any(|t| t.raw == signer.raw) {
        return Ok(Verified {
            digest: *digest,
            signer: signer.subject_name(),
            anchor: signer.subject_name(),
        });
    }
    let mut revoked_issuer = None;
    for issuer in trusted.iter().filter(|t| t.subject == signer.issuer) {
        if signer.signed_by(issuer).is_ok() {
            if trust.is_revoked(issuer.raw) {
                revoked_issuer.get_or_insert(issuer.subject_name());
                continue;
            }
            return Ok(Verified {
                digest: *digest,
                signer: signer.subject_name(),
                anchor: issuer.subject_name(),
            });
        }
    }
    if let Some(cert) = revoked_issuer {
        return Err(VerifyError::RevokedCertificate { cert });
    }
    Err(VerifyError::Untrusted {
        signer: signer.subject_name(),
        trusted: trust.describe(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small PE image signed by `sbsign` and the certificate it was signed with (see
    /// `fuzz/seeds/README.md` for the commands).
    const SIGNED: &[u8] = include_bytes!("../../fuzz/seeds/authenticode/pe-signed");
    const CERT: &[u8] = include_bytes!("../../fuzz/seeds/authenticode/cert");

    fn trust() -> Trust {
        let mut t = Trust::default();
        t.add_certificate(CERT.to_vec(), "seed").unwrap();
        t
    }

    #[test]
    fn golden_vector_verifies() {
        let v = verify(SIGNED, &trust()).unwrap();
        assert_eq!(v.signer, "CN=Fuzz seed db");
        assert_eq!(v.anchor, v.signer);
        let err = verify(SIGNED, &Trust::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("signed by CN=Fuzz seed db, which no trusted certificate issued"),
            "{err}"
        );
    }

    /// Any one byte changed anywhere in the file is refused, except in the `CheckSum`
    /// field, which Authenticode leaves out (and no panic on the way).
    #[test]
    fn every_flipped_byte_is_refused() {
        let trust = trust();
        let pe = PeInfo::parse(SIGNED).unwrap();
        let checksum = pe.checksum_offset..pe.checksum_offset + 4;
        for at in 0..SIGNED.len() {
            let mut image = SIGNED.to_vec();
            image[at] ^= 0x20;
            let result = verify(&image, &trust);
            assert_eq!(
                result.is_ok(),
                checksum.contains(&at),
                "byte {at:#x}: {result:?}"
            );
        }
    }

    /// Every truncation is refused without a panic; the cut image has no signature or a
    /// damaged one.
    #[test]
    fn truncations_are_refused() {
        let trust = trust();
        for len in 0..SIGNED.len() {
            assert!(verify(&SIGNED[..len], &trust).is_err(), "{len}");
        }
    }

    /// The signed content's digest must be the image's, and the signer's messageDigest
    /// the content's: each mismatch has its own error.
    #[test]
    fn digest_and_message_digest_mismatches_are_named() {
        let trust = trust();
        let pe = PeInfo::parse(SIGNED).unwrap();
        let data = pe.section(".cmdline").unwrap().raw_offset as usize;
        let mut image = SIGNED.to_vec();
        image[data] ^= 1;
        assert_eq!(verify(&image, &trust), Err(VerifyError::DigestMismatch));
        // The digest inside SpcIndirectDataContent changed: messageDigest no longer
        // matches the content.
        let digest = image_digest(SIGNED, &pe).unwrap();
        let at = SIGNED.windows(32).position(|w| w == digest).unwrap();
        let mut image = SIGNED.to_vec();
        image[at] ^= 1;
        let mut fixed = image.clone();
        assert_eq!(verify(&image, &trust), Err(VerifyError::DigestMismatch));
        // ... and with the image changed to match that digest, only messageDigest differs.
        fixed[at] ^= 1;
        assert!(verify(&fixed, &trust).is_ok());
        let (offset, _) = pe.cert_table.unwrap();
        let sd =
            SignedData::parse(&SIGNED[offset + 8..offset + 8 + der_len(SIGNED, offset)]).unwrap();
        assert_eq!(sd.image_digest, digest);
        assert_eq!(sd.message_digest, Sha256::digest(sd.content).as_slice());
    }

    /// The DER length of the first WIN_CERTIFICATE at `offset`.
    fn der_len(image: &[u8], offset: usize) -> usize {
        u32::from_le_bytes(image[offset..offset + 4].try_into().unwrap()) as usize - 8
    }
}
