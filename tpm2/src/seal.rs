//! Sealing a secret to PCR values and unsealing it: the operations PID 1 calls.
//!
//! **Seal** ([`seal`]): create the storage primary key (systemd 252's ECC template),
//! compute the PolicyPCR digest of the expected PCR values in software
//! ([`PcrValues::policy_digest`]), TPM2_Create a sealed data object with that digest as
//! its authPolicy, flush the primary. The result, [`Sealed`], is public data: the private
//! half is encrypted and integrity-protected by the TPM's storage seed, so it is useless
//! on any other TPM, or after the owner hierarchy was cleared.
//!
//! **Unseal** ([`unseal`]): create the same primary, TPM2_Load the object, start a policy
//! session, TPM2_PolicyPCR over the sealed selection (the TPM hashes what the PCRs hold
//! now), TPM2_Unseal. The TPM refuses with `TPM_RC_POLICY_FAIL` unless the PCRs hold
//! exactly the sealed values. Everything loaded is flushed on every path.
//!
//! **Lock** ([`extend_pcr`]): extending a PCR of the sealed selection makes every later
//! unseal in this boot fail; PID 1 does this right after unsealing (docs/tpm2.md).

use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::commands::{Handle, Tpm, SE_POLICY, SE_TRIAL};
use crate::error::{Error, Malformed};
use crate::object::{self, SealedPublic};
use crate::policy::{Digest, PcrSelection, PcrValues};
use crate::rc::ResponseCode;
use crate::transport::Transport;
use crate::wire::{Reader, Writer};

/// The PCR sealed to: PCR 7, "Secure Boot policy" (the firmware's Secure Boot state and
/// its PK, KEK, db and dbx), which an A/B update of Liftoff does not change.
pub const SECURE_BOOT_PCR: u32 = 7;
/// The PCR PID 1 extends after unsealing, sealed to its boot value (all zero): PCR 15,
/// which systemd calls "system-identity" and extends for the same purpose
/// (`tpm2-measure-pcr=`); no firmware or boot loader measures into it.
pub const LOCK_PCR: u32 = 15;
/// How often an unseal is retried when a PCR changed during the policy session.
const PCR_CHANGED_RETRIES: u32 = 3;

/// A sealed secret: the object's two halves, the PCRs its policy covers, and the policy
/// digest (its authPolicy). Everything here is public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `TPM2B_PRIVATE`'s contents.
    pub private: Vec<u8>,
    /// `TPMT_PUBLIC` (the `TPM2B_PUBLIC`'s contents).
    pub public: Vec<u8>,
    pub pcrs: PcrSelection,
    pub policy_hash: Digest,
}

impl Sealed {
    /// The blob as systemd stores it in `tpm2-blob`: the marshalled `TPM2B_PRIVATE`
    /// followed by the marshalled `TPM2B_PUBLIC`.
    pub fn blob(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.tpm2b(&self.private).map_err(|e| Error::TooLarge {
            what: "TPM2B_PRIVATE",
            len: e.0,
            max: usize::from(u16::MAX),
        })?;
        w.tpm2b(&self.public).map_err(|e| Error::TooLarge {
            what: "TPM2B_PUBLIC",
            len: e.0,
            max: usize::from(u16::MAX),
        })?;
        Ok(w.into_bytes())
    }

    /// Splits a `tpm2-blob` into its halves; nothing may follow them.
    pub fn from_blob(
        blob: &[u8],
        pcrs: PcrSelection,
        policy_hash: Digest,
    ) -> Result<Sealed, Malformed> {
        let mut r = Reader::new(blob);
        let private = r.tpm2b("TPM2B_PRIVATE")?.to_vec();
        let public = r.tpm2b("TPM2B_PUBLIC")?.to_vec();
        r.finish("blob")?;
        Ok(Sealed {
            private,
            public,
            pcrs,
            policy_hash,
        })
    }
}

/// The values PID 1 seals to: PCR 7 as it is now and PCR 15 as it is at boot (zero).
/// Read before PID 1 extends PCR 15 on this boot, PCR 7 is what the firmware measured.
pub fn boot_pcr_values<T: Transport>(tpm: &mut Tpm<T>) -> Result<PcrValues, Error> {
    let mut v = tpm.pcr_read(PcrSelection::new(&[SECURE_BOOT_PCR])?)?;
    v.set(LOCK_PCR, [0; 32])?;
    Ok(v)
}

/// Seals `secret` (at most 128 bytes, the TPM's `MAX_SYM_DATA`) to `pcrs`. The secret
/// crosses the bus to the TPM in clear.
pub fn seal<T: Transport>(
    tpm: &mut Tpm<T>,
    secret: &[u8],
    pcrs: &PcrValues,
) -> Result<Sealed, Error> {
    let policy_hash = pcrs.policy_digest();
    let primary = tpm.create_storage_primary()?;
    let created = tpm.create(
        primary.handle,
        &object::sealed_template(&policy_hash),
        secret,
    );
    let flushed = tpm.flush_context(primary.handle.0);
    let created = created?;
    flushed?;
    Ok(Sealed {
        private: created.private,
        public: created.public,
        pcrs: pcrs.selection(),
        policy_hash,
    })
}

/// Unseals `sealed` if the PCRs hold the values it was sealed to; otherwise the TPM's
/// refusal (`TPM_RC_POLICY_FAIL`, see [`crate::commands::is_policy_fail`]).
pub fn unseal<T: Transport>(
    tpm: &mut Tpm<T>,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let public = SealedPublic::parse(&sealed.public).map_err(Error::Blob)?;
    if public.auth_policy != sealed.policy_hash {
        return Err(Error::Blob(Malformed {
            what: "TPMT_PUBLIC authPolicy",
            offset: 0,
            problem: "differs from the token's policy hash",
        }));
    }
    let primary = tpm.create_storage_primary()?;
    let loaded = tpm.load(primary.handle, &sealed.private, &sealed.public);
    let flushed = tpm.flush_context(primary.handle.0);
    let object = loaded?;
    if let Err(e) = flushed {
        let _ = tpm.flush_context(object.0);
        return Err(e);
    }
    let result = unseal_loaded(tpm, object, sealed.pcrs);
    let flushed = tpm.flush_context(object.0);
    let secret = result?;
    flushed?;
    Ok(secret)
}

fn unseal_loaded<T: Transport>(
    tpm: &mut Tpm<T>,
    object: Handle,
    pcrs: PcrSelection,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut tries = 0;
    loop {
        let session = policy_session(tpm, SE_POLICY, pcrs)?;
        match tpm.unseal(object, session) {
            Ok(secret) => return Ok(secret),
            Err(e) => {
                // A failed command leaves the session loaded.
                let _ = tpm.flush_context(session.0);
                let changed = e
                    .response_code()
                    .is_some_and(|rc| rc.base() == ResponseCode::PCR_CHANGED);
                tries += 1;
                if !changed || tries >= PCR_CHANGED_RETRIES {
                    return Err(e);
                }
            }
        }
    }
}

/// A policy (or trial) session with TPM2_PolicyPCR over `pcrs` applied.
fn policy_session<T: Transport>(
    tpm: &mut Tpm<T>,
    session_type: u8,
    pcrs: PcrSelection,
) -> Result<Handle, Error> {
    let mut nonce = Zeroizing::new([0u8; 32]);
    luks2::crypto::fill_random(nonce.as_mut_slice()).map_err(Error::Random)?;
    let session = tpm.start_policy_session(session_type, nonce.as_slice())?;
    if let Err(e) = tpm.policy_pcr(session, pcrs) {
        let _ = tpm.flush_context(session.0);
        return Err(e);
    }
    Ok(session)
}

/// The policy digest the TPM computes for PolicyPCR over `pcrs` as they are now, in a
/// trial session (what `tpm2_createpolicy --policy-pcr` prints).
pub fn trial_policy_digest<T: Transport>(
    tpm: &mut Tpm<T>,
    pcrs: PcrSelection,
) -> Result<Vec<u8>, Error> {
    let session = policy_session(tpm, SE_TRIAL, pcrs)?;
    let digest = tpm.policy_get_digest(session);
    let flushed = tpm.flush_context(session.0);
    let digest = digest?;
    flushed?;
    Ok(digest)
}

/// Extends PCR `index` (sha256 bank) with SHA-256 of `data`.
pub fn extend_pcr<T: Transport>(tpm: &mut Tpm<T>, index: u32, data: &[u8]) -> Result<(), Error> {
    tpm.pcr_extend(index, &Sha256::digest(data).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_split_and_join() {
        let s = Sealed {
            private: vec![1, 2, 3],
            public: vec![4, 5],
            pcrs: PcrSelection::new(&[7]).unwrap(),
            policy_hash: [9; 32],
        };
        let b = s.blob().unwrap();
        assert_eq!(b, [0, 3, 1, 2, 3, 0, 2, 4, 5]);
        assert_eq!(Sealed::from_blob(&b, s.pcrs, s.policy_hash).unwrap(), s);
        for n in 0..b.len() {
            assert!(Sealed::from_blob(&b[..n], s.pcrs, s.policy_hash).is_err());
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Sealed::from_blob(&long, s.pcrs, s.policy_hash).is_err());
    }
}
