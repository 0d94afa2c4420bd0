//! The `systemd-tpm2` LUKS2 token of systemd 252 (`tpm2_make_luks2_json` and
//! `tpm2_parse_luks2_json` in src/shared/tpm2-util.c, enrolled by systemd-cryptenroll and
//! read by systemd-cryptsetup and libcryptsetup's systemd-tpm2 token plugin):
//!
//! ```json
//! {"type":"systemd-tpm2","keyslots":["1"],
//!  "tpm2-blob":"<base64: TPM2B_PRIVATE then TPM2B_PUBLIC, marshalled>",
//!  "tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc",
//!  "tpm2-policy-hash":"<hex: the object's authPolicy>","tpm2-pin":false}
//! ```
//!
//! Optional on read, as in systemd: `tpm2-pcr-bank` (default sha256), `tpm2-primary-alg`
//! (default ecc), `tpm2-pin` (default false). This crate refuses what it cannot unseal: a
//! sha1 bank, an RSA primary, a PIN, or a signed PCR policy (`tpm2_pubkey`,
//! `tpm2_pubkey_pcrs`).
//!
//! The keyslot's passphrase is not the unsealed secret itself but its base64 text
//! ([`passphrase`]): systemd-cryptenroll encodes it so (for compatibility with homed, and
//! so it could be typed), and the token plugin does the same before unlocking.

use luks2::json::{Object, Value};
use luks2::metadata::Token;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::policy::{PcrSelection, PCR_COUNT};
use crate::seal::Sealed;

/// The token's `type`.
pub const TYPE: &str = "systemd-tpm2";

/// A parsed `systemd-tpm2` token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tpm2Token {
    /// The keyslots the unsealed secret opens (systemd writes one).
    pub keyslots: Vec<u32>,
    pub sealed: Sealed,
}

fn bad(problem: impl Into<String>) -> Error {
    Error::Token(problem.into())
}

impl Tpm2Token {
    /// The token's JSON object, with systemd 252's members in its order.
    pub fn to_object(&self) -> Result<Object, Error> {
        let mut o = Object::new();
        o.insert("type", Value::str(TYPE));
        o.insert(
            "keyslots",
            Value::Array(
                self.keyslots
                    .iter()
                    .map(|k| Value::str(k.to_string()))
                    .collect(),
            ),
        );
        o.insert(
            "tpm2-blob",
            Value::str(verity::base64::encode(&self.sealed.blob()?)),
        );
        o.insert(
            "tpm2-pcrs",
            Value::Array(
                self.sealed
                    .pcrs
                    .indexes()
                    .map(|i| Value::int(u64::from(i)))
                    .collect(),
            ),
        );
        o.insert("tpm2-pcr-bank", Value::str("sha256"));
        o.insert("tpm2-primary-alg", Value::str("ecc"));
        o.insert(
            "tpm2-policy-hash",
            Value::str(verity::hex::encode(&self.sealed.policy_hash)),
        );
        o.insert("tpm2-pin", Value::Bool(false));
        Ok(o)
    }

    /// Reads a token of the LUKS2 header.
    pub fn from_token(token: &Token) -> Result<Tpm2Token, Error> {
        if token.kind != TYPE {
            return Err(bad(format!("type {:?} is not {TYPE:?}", token.kind)));
        }
        Tpm2Token::from_object(&token.object, token.keyslots.clone())
    }

    fn from_object(o: &Object, keyslots: Vec<u32>) -> Result<Tpm2Token, Error> {
        let pcrs = o
            .get("tpm2-pcrs")
            .ok_or_else(|| bad("tpm2-pcrs is missing"))?
            .as_array()
            .ok_or_else(|| bad("tpm2-pcrs is not an array"))?;
        let mut mask = 0u32;
        for p in pcrs {
            let i = p
                .as_u64()
                .filter(|i| *i < u64::from(PCR_COUNT))
                .ok_or_else(|| bad(format!("tpm2-pcrs: {} is not a PCR 0-23", p.to_text())))?;
            mask |= 1 << i;
        }
        let pcrs = PcrSelection::from_mask(mask)?;
        if let Some(bank) = o.get("tpm2-pcr-bank") {
            match bank.as_str() {
                Some("sha256") => {}
                _ => {
                    return Err(bad(format!(
                        "tpm2-pcr-bank {} is not supported (sha256)",
                        bank.to_text()
                    )))
                }
            }
        }
        if let Some(alg) = o.get("tpm2-primary-alg") {
            match alg.as_str() {
                Some("ecc") => {}
                _ => {
                    return Err(bad(format!(
                        "tpm2-primary-alg {} is not supported (ecc)",
                        alg.to_text()
                    )))
                }
            }
        }
        match o.get("tpm2-pin") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => return Err(bad("tpm2-pin: a PIN is not supported")),
            Some(v) => return Err(bad(format!("tpm2-pin {} is not a boolean", v.to_text()))),
        }
        if o.get("tpm2_pubkey").is_some() || o.get("tpm2_pubkey_pcrs").is_some() {
            return Err(bad("signed PCR policies (tpm2_pubkey) are not supported"));
        }
        let blob = o
            .get("tpm2-blob")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("tpm2-blob is missing or not a string"))?;
        let blob = verity::base64::decode(blob).ok_or_else(|| bad("tpm2-blob is not base64"))?;
        let hash = o
            .get("tpm2-policy-hash")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("tpm2-policy-hash is missing or not a string"))?;
        let policy_hash = verity::hex::decode_array::<32>(hash)
            .map_err(|_| bad("tpm2-policy-hash is not 32 bytes of hex"))?;
        let sealed = Sealed::from_blob(&blob, pcrs, policy_hash).map_err(Error::Blob)?;
        Ok(Tpm2Token { keyslots, sealed })
    }
}

/// The keyslot passphrase of an unsealed secret: its base64 text, as systemd uses it.
pub fn passphrase(secret: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(verity::base64::encode(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use luks2::json;

    /// What systemd-cryptenroll 252 (Debian 252.39) wrote on a swtpm with PCR 7 zero.
    const SYSTEMD: &str = r#"{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AJ4AIOopnqyG99Q9jB0ivtAejXOi8OtiGhEAxQe+hHRtsIBTABClEXqkwvfULsSiuy5ZELXaGlR/WKQ0V+p8XQk+QTsC5lUQeuX+jY6ZoCoratS9/uZGW9kqBCOvT1Ii+fMI4uL4Ge5VYEBZTaaJ0gn10uFiO+NGY0DmNsW7OE3gfh4T8MV2l9dZkWU858yzwM8xG1B2K2jnkOd+H7/0vABOAAgACwAAABIAIItWgtgbKUNdCNeSeBUGEdx+WSOy/vzOaEoJV3tAEwqLABAAIOEupjNbHjI24/A/1k1wErpgEsHyT5BsTLzW1tEKNm9N","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"8b5682d81b29435d08d79278150611dc7e5923b2fefcce684a09577b40130a8b","tpm2-pin":false}"#;

    fn token(text: &str) -> Token {
        let v = json::parse(text).unwrap();
        let o = v.as_object().unwrap().clone();
        Token {
            kind: o.get("type").unwrap().as_str().unwrap().to_owned(),
            keyslots: vec![1],
            object: o,
        }
    }

    #[test]
    fn systemds_token_reads_and_writes_back_byte_for_byte() {
        let t = Tpm2Token::from_token(&token(SYSTEMD)).unwrap();
        assert_eq!(t.keyslots, [1]);
        assert_eq!(t.sealed.pcrs.mask(), 1 << 7);
        assert_eq!(t.sealed.private.len(), 0x9e);
        let public = crate::object::SealedPublic::parse(&t.sealed.public).unwrap();
        assert_eq!(public.attributes, crate::object::SEALED_ATTRIBUTES);
        assert_eq!(public.auth_policy, t.sealed.policy_hash);
        assert_eq!(Value::Object(t.to_object().unwrap()).to_text(), SYSTEMD);
    }

    #[test]
    fn what_cannot_be_unsealed_is_refused() {
        let cases = [
            (r#""tpm2-pcr-bank":"sha256""#, r#""tpm2-pcr-bank":"sha1""#),
            (r#""tpm2-primary-alg":"ecc""#, r#""tpm2-primary-alg":"rsa""#),
            (r#""tpm2-pin":false"#, r#""tpm2-pin":true"#),
            (
                r#""tpm2-pin":false"#,
                r#""tpm2-pin":false,"tpm2_pubkey":"AA==""#,
            ),
            (r#""tpm2-pcrs":[7]"#, r#""tpm2-pcrs":[24]"#),
            (r#""tpm2-pcrs":[7]"#, r#""tpm2-pcrs":7"#),
            (r#""tpm2-policy-hash":"8b"#, r#""tpm2-policy-hash":"8"#),
            (r#""tpm2-blob":"AJ4A"#, r#""tpm2-blob":"AP8A"#),
        ];
        for (from, to) in cases {
            let text = SYSTEMD.replace(from, to);
            assert_ne!(text, SYSTEMD);
            assert!(
                matches!(
                    Tpm2Token::from_token(&token(&text)),
                    Err(Error::Token(_) | Error::Blob(_))
                ),
                "{to}"
            );
        }
        // The optional members may be missing.
        let minimal = SYSTEMD
            .replace(r#","tpm2-pcr-bank":"sha256""#, "")
            .replace(r#","tpm2-primary-alg":"ecc""#, "")
            .replace(r#","tpm2-pin":false"#, "");
        assert!(Tpm2Token::from_token(&token(&minimal)).is_ok());
    }

    #[test]
    fn the_passphrase_is_the_base64_of_the_secret() {
        assert_eq!(
            passphrase(&[0xFF; 32]).as_str(),
            "//////////////////////////////////////////8="
        );
    }
}
