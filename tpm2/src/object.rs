//! Public areas (`TPMT_PUBLIC`, TCG TPM 2.0 Library Part 2, section 12.2.4) of the two
//! objects this crate makes, and object names (Part 1, section 16 "Names").
//!
//! - The storage primary key: the template systemd 252 uses (`tpm2_make_primary` in
//!   src/shared/tpm2-util.c), ECC NIST P-256 with AES-128-CFB for its children, in the
//!   owner hierarchy with an empty authValue and no unique data. A primary key is a
//!   deterministic function of the hierarchy's seed and the template, so the same template
//!   yields the same key as systemd's and tpm2-tools'
//!   `tpm2_createprimary -C o -G ecc256:aes128cfb` with the same attributes: every
//!   sealed blob either tool makes loads under ours.
//! - The sealed data object: a `keyedHash` object with a NULL scheme holding the secret
//!   as its sensitive data, attributes `fixedTPM | fixedParent` (no `userWithAuth`: only
//!   the policy can authorise it, no password; no `sensitiveDataOrigin`: the caller
//!   supplies the data) and the PCR policy digest as its `authPolicy`.

use sha2::{Digest as _, Sha256};

use crate::error::Malformed;
use crate::policy::{Digest, ALG_SHA256};
use crate::wire::{Reader, Writer};

pub const ALG_ECC: u16 = 0x0023;
pub const ALG_KEYEDHASH: u16 = 0x0008;
pub const ALG_AES: u16 = 0x0006;
pub const ALG_CFB: u16 = 0x0043;
pub const ALG_NULL: u16 = 0x0010;
pub const ECC_NIST_P256: u16 = 0x0003;

/// `TPMA_OBJECT` bits (Part 2, section 8.3).
pub mod attr {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
}

/// The storage primary key's attributes: 0x00030072.
pub const PRIMARY_ATTRIBUTES: u32 = attr::RESTRICTED
    | attr::DECRYPT
    | attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::USER_WITH_AUTH;

/// The sealed object's attributes: 0x00000012.
pub const SEALED_ATTRIBUTES: u32 = attr::FIXED_TPM | attr::FIXED_PARENT;

/// The `TPMT_PUBLIC` template of the ECC storage primary key (systemd 252's).
pub fn primary_ecc_template() -> Vec<u8> {
    let mut w = Writer::new();
    w.u16(ALG_ECC)
        .u16(ALG_SHA256)
        .u32(PRIMARY_ATTRIBUTES)
        .u16(0) // authPolicy: empty
        .u16(ALG_AES) // symmetric: AES-128-CFB
        .u16(128)
        .u16(ALG_CFB)
        .u16(ALG_NULL) // scheme
        .u16(ECC_NIST_P256)
        .u16(ALG_NULL) // kdf
        .u16(0) // unique.x: empty
        .u16(0); // unique.y: empty
    w.into_bytes()
}

/// The `TPMT_PUBLIC` template of a sealed data object with `policy` as its authPolicy.
pub fn sealed_template(policy: &Digest) -> Vec<u8> {
    let mut w = Writer::new();
    w.u16(ALG_KEYEDHASH)
        .u16(ALG_SHA256)
        .u32(SEALED_ATTRIBUTES)
        .u16(32)
        .bytes(policy)
        .u16(ALG_NULL) // keyedHash scheme
        .u16(0); // unique: the TPM computes it
    w.into_bytes()
}

/// An object's name: nameAlg (sha256) followed by SHA-256 of its `TPMT_PUBLIC`.
pub fn name(public: &[u8]) -> Vec<u8> {
    let mut n = ALG_SHA256.to_be_bytes().to_vec();
    n.extend_from_slice(&Sha256::digest(public));
    n
}

/// What this crate checks in a sealed object's public area before loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPublic {
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
}

impl SealedPublic {
    /// Reads a keyedHash `TPMT_PUBLIC` (the whole buffer): type, nameAlg sha256,
    /// attributes, authPolicy, a NULL scheme and the unique digest.
    pub fn parse(public: &[u8]) -> Result<SealedPublic, Malformed> {
        let mut r = Reader::new(public);
        let bad = |r: &Reader<'_>, what, problem| Malformed {
            what,
            offset: r.offset(),
            problem,
        };
        if r.u16("TPMT_PUBLIC type")? != ALG_KEYEDHASH {
            return Err(bad(&r, "TPMT_PUBLIC type", "is not keyedHash"));
        }
        if r.u16("TPMT_PUBLIC nameAlg")? != ALG_SHA256 {
            return Err(bad(&r, "TPMT_PUBLIC nameAlg", "is not sha256"));
        }
        let attributes = r.u32("TPMT_PUBLIC objectAttributes")?;
        let auth_policy = r.tpm2b("TPMT_PUBLIC authPolicy")?.to_vec();
        if r.u16("TPMT_PUBLIC keyedHash scheme")? != ALG_NULL {
            return Err(bad(&r, "TPMT_PUBLIC keyedHash scheme", "is not NULL"));
        }
        r.tpm2b("TPMT_PUBLIC unique")?;
        r.finish("TPMT_PUBLIC")?;
        Ok(SealedPublic {
            attributes,
            auth_policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_byte_exact() {
        assert_eq!(
            verity::hex::encode(&primary_ecc_template()),
            "0023000b00030072000000060080004300100003001000000000"
        );
        let t = sealed_template(&[0xAA; 32]);
        assert_eq!(t.len(), 2 + 2 + 4 + 2 + 32 + 2 + 2);
        let p = SealedPublic::parse(&t).unwrap();
        assert_eq!(p.attributes, 0x12);
        assert_eq!(p.auth_policy, [0xAA; 32]);
        for n in 0..t.len() {
            assert!(SealedPublic::parse(&t[..n]).is_err());
        }
    }
}
