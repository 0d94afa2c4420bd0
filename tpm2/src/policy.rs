//! PCR selections and the PolicyPCR digest, computed in software exactly as the TPM
//! extends a policy session (TCG TPM 2.0 Library, Part 3 "Commands", section 23.7
//! "TPM2_PolicyPCR"):
//!
//! ```text
//! digestTPM    = H(PCR[i0] || PCR[i1] || ...)            the selected values, ascending index
//! policyDigest = H(policyDigest_old || TPM_CC_PolicyPCR || pcrSelection || digestTPM)
//! ```
//!
//! with `H` = SHA-256 (the session's hash), `policyDigest_old` = 32 zero bytes for a fresh
//! session, `TPM_CC_PolicyPCR` = 0x0000017F as 4 big-endian bytes and `pcrSelection` the
//! marshalled `TPML_PCR_SELECTION`. Only the sha256 bank is used.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Malformed};
use crate::wire::{Command, Reader, Writer};

/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000B;
/// A SHA-256 digest.
pub type Digest = [u8; 32];
/// PCRs 0 to 23: the PC client platform's 24 PCRs, three bytes of selection bitmap.
pub const PCR_COUNT: u32 = 24;

/// A set of sha256-bank PCRs, as a bitmask (bit `i` = PCR `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PcrSelection(u32);

impl PcrSelection {
    /// The PCRs `indexes`; each must be below 24.
    pub fn new(indexes: &[u32]) -> Result<PcrSelection, Error> {
        let mut mask = 0u32;
        for &i in indexes {
            if i >= PCR_COUNT {
                return Err(Error::PcrIndex { index: i });
            }
            mask |= 1 << i;
        }
        Ok(PcrSelection(mask))
    }

    /// The selection with bitmask `mask` (bits 24 and up must be clear).
    pub fn from_mask(mask: u32) -> Result<PcrSelection, Error> {
        if mask >> PCR_COUNT != 0 {
            return Err(Error::PcrIndex {
                index: 31 - mask.leading_zeros(),
            });
        }
        Ok(PcrSelection(mask))
    }

    pub fn mask(self) -> u32 {
        self.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The selected indexes, ascending.
    pub fn indexes(self) -> impl Iterator<Item = u32> {
        (0..PCR_COUNT).filter(move |i| self.0 & (1 << i) != 0)
    }

    /// `TPML_PCR_SELECTION` with one `TPMS_PCR_SELECTION`: count 1, hash sha256,
    /// sizeofSelect 3, the bitmap (PCR 0 is bit 0 of the first byte).
    pub fn marshal(self, w: &mut Writer) {
        let [b0, b1, b2, _] = self.0.to_le_bytes();
        w.u32(1).u16(ALG_SHA256).u8(3).u8(b0).u8(b1).u8(b2);
    }

    /// Reads a `TPML_PCR_SELECTION`: the sha256 bank's bitmap (other banks must select
    /// nothing; bits past PCR 23 are refused).
    pub fn unmarshal(r: &mut Reader<'_>) -> Result<PcrSelection, Malformed> {
        let count = r.u32("TPML_PCR_SELECTION count")?;
        if count > 16 {
            return Err(Malformed {
                what: "TPML_PCR_SELECTION count",
                offset: r.offset(),
                problem: "too many banks",
            });
        }
        let mut mask = 0u32;
        for _ in 0..count {
            let hash = r.u16("TPMS_PCR_SELECTION hash")?;
            let n = r.u8("TPMS_PCR_SELECTION sizeofSelect")?;
            let bitmap = r.take(usize::from(n), "TPMS_PCR_SELECTION pcrSelect")?;
            let mut m = 0u32;
            for (i, b) in bitmap.iter().enumerate() {
                if *b == 0 {
                    continue;
                }
                if i >= 3 {
                    return Err(Malformed {
                        what: "TPMS_PCR_SELECTION pcrSelect",
                        offset: r.offset(),
                        problem: "selects a PCR past 23",
                    });
                }
                m |= u32::from(*b) << (8 * i);
            }
            if hash == ALG_SHA256 {
                mask |= m;
            } else if m != 0 {
                return Err(Malformed {
                    what: "TPMS_PCR_SELECTION hash",
                    offset: r.offset(),
                    problem: "selects PCRs of a bank other than sha256",
                });
            }
        }
        Ok(PcrSelection(mask))
    }
}

/// Expected sha256-bank PCR values, by index: what a secret is sealed to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrValues(BTreeMap<u32, Digest>);

impl PcrValues {
    pub fn new() -> PcrValues {
        PcrValues::default()
    }

    /// Sets PCR `index` to `value`.
    pub fn set(&mut self, index: u32, value: Digest) -> Result<&mut PcrValues, Error> {
        if index >= PCR_COUNT {
            return Err(Error::PcrIndex { index });
        }
        self.0.insert(index, value);
        Ok(self)
    }

    pub fn get(&self, index: u32) -> Option<&Digest> {
        self.0.get(&index)
    }

    pub fn selection(&self) -> PcrSelection {
        PcrSelection(self.0.keys().fold(0, |m, i| m | (1 << i)))
    }

    /// The policy digest of a fresh session after TPM2_PolicyPCR over these values: the
    /// `authPolicy` an object sealed to them carries.
    pub fn policy_digest(&self) -> Digest {
        policy_pcr(&[0; 32], self.selection(), &self.pcr_digest())
    }

    /// `digestTPM`: SHA-256 over the values in ascending index order.
    pub fn pcr_digest(&self) -> Digest {
        let mut h = Sha256::new();
        for v in self.0.values() {
            h.update(v);
        }
        h.finalize().into()
    }
}

/// One TPM2_PolicyPCR step on `old`.
pub fn policy_pcr(old: &Digest, selection: PcrSelection, pcr_digest: &Digest) -> Digest {
    let mut sel = Writer::new();
    selection.marshal(&mut sel);
    let mut h = Sha256::new();
    h.update(old);
    h.update(Command::PolicyPcr.code().to_be_bytes());
    h.update(sel.into_bytes());
    h.update(pcr_digest);
    h.finalize().into()
}

/// The value PCR `old` takes after TPM2_PCR_Extend with `digest`: H(old || digest).
pub fn extended(old: &Digest, digest: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update(old);
    h.update(digest);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pcr7_policy_of_a_zero_pcr_is_the_one_systemd_enrolled() {
        // systemd-cryptenroll 252 --tpm2-pcrs=7 on a swtpm whose PCR 7 was all zero
        // wrote this tpm2-policy-hash (computed by the TPM in a policy session).
        let mut v = PcrValues::new();
        v.set(7, [0; 32]).unwrap();
        assert_eq!(
            verity::hex::encode(&v.policy_digest()),
            "8b5682d81b29435d08d79278150611dc7e5923b2fefcce684a09577b40130a8b"
        );
    }

    #[test]
    fn selections_marshal_and_read_back() {
        let s = PcrSelection::new(&[0, 7, 15, 23]).unwrap();
        let mut w = Writer::new();
        s.marshal(&mut w);
        let b = w.into_bytes();
        assert_eq!(b, [0, 0, 0, 1, 0, 0x0B, 3, 0x81, 0x80, 0x80]);
        assert_eq!(PcrSelection::unmarshal(&mut Reader::new(&b)).unwrap(), s);
        assert_eq!(s.indexes().collect::<Vec<_>>(), [0, 7, 15, 23]);
        assert!(PcrSelection::new(&[24]).is_err());
        assert!(PcrSelection::from_mask(1 << 24).is_err());
        // A sha1 bank selecting nothing is fine; selecting something is refused.
        let sha1_empty = [0, 0, 0, 2, 0, 4, 3, 0, 0, 0, 0, 0x0B, 3, 0x80, 0, 0];
        assert_eq!(
            PcrSelection::unmarshal(&mut Reader::new(&sha1_empty))
                .unwrap()
                .mask(),
            0x80
        );
        let sha1 = [0, 0, 0, 1, 0, 4, 3, 0x80, 0, 0];
        assert!(PcrSelection::unmarshal(&mut Reader::new(&sha1)).is_err());
    }
}
