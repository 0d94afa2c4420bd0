//! `liftoff.data=tpm2`: LUKS2 whose machine keyslot opens with a secret sealed in the TPM
//! (the `tpm2` crate, docs/tpm2.md). Nothing that opens DATA is stored on the disk in the
//! clear: the sealed blob in the `systemd-tpm2` token is useless without this machine's
//! TPM, and the TPM releases the secret only while PCR 7 (Secure Boot state and keys)
//! holds the value it held at first use and PCR 15 is still zero.
//!
//! After unsealing (and after first use), PID 1 extends PCR 15, so nothing that runs later
//! on this boot can unseal the secret again.
//!
//! First use is [`luks::first_use`] with the sealed secret instead of a key file: the same
//! order, the same record on PRIVATE, the same cut-point behaviour.

use std::path::Path;

use tpm2::{Device, Tpm, Tpm2Token};
use zeroize::Zeroizing;

use super::luks::{self, Found, MachineSecret, Plan};
use super::{
    disposable, what_is_there, DataError, Encryption, Opened, PrivateMount, FIRST_USE_RECORD,
};

/// Bytes of the sealed secret (systemd-cryptenroll seals 32 as well).
const SECRET_BYTES: usize = 32;

/// Whether a TPM 2.0 is there to seal to: the kernel's resource manager device.
pub fn present() -> bool {
    Path::new(Device::RESOURCE_MANAGER).exists()
}

fn open_tpm() -> Result<Tpm<Device>, DataError> {
    Device::open(Path::new(Device::RESOURCE_MANAGER))
        .map(Tpm::new)
        .map_err(DataError::Tpm)
}

/// The `systemd-tpm2` token of `header`, if it has one.
pub fn token(header: &luks2::Luks2) -> Option<&luks2::metadata::Token> {
    header
        .metadata
        .tokens
        .values()
        .find(|t| t.kind == tpm2::token::TYPE)
}

/// Extends PCR 15 so the secret cannot be unsealed again until the next boot.
fn lock(tpm: &mut Tpm<Device>, uuid: &str) -> Result<(), DataError> {
    let event = format!("liftoff: DATA unlocked {uuid}");
    tpm2::extend_pcr(tpm, tpm2::LOCK_PCR, event.as_bytes()).map_err(DataError::Tpm)
}

/// The decision in tpm2 mode, from what DATA holds, whether PRIVATE has a first-use record
/// and whether DATA is provably fresh (`what` names what a foreign DATA holds).
/// [`Plan::Unlock`] means unseal the token's secret and open the volume with it.
pub fn plan(found: &Found, record: bool, fresh: bool, device: &Path, what: &'static str) -> Plan {
    let foreign = |found| {
        Plan::Refuse(DataError::Foreign {
            device: device.to_path_buf(),
            mode: "tpm2",
            found,
        })
    };
    match found {
        Found::Luks2(header) if token(header).is_some() => Plan::Unlock,
        Found::Luks2(_) => foreign("a LUKS2 volume without a TPM2 token"),
        Found::Damaged(_) | Found::NotLuks2 if record => Plan::FirstUse,
        Found::Damaged(e) => Plan::Refuse(DataError::Damaged {
            device: device.to_path_buf(),
            source: luks::clone_error(e),
        }),
        Found::NotLuks2 if fresh => Plan::FirstUse,
        Found::NotLuks2 => foreign(what),
    }
}

/// Opens DATA in tpm2 mode: unseal and unlock a LUKS2 volume with a `systemd-tpm2` token,
/// or make one on a provably fresh DATA. Anything else is refused, untouched.
pub fn open(
    mut private_mount: PrivateMount,
    data: &Path,
    part_bytes: u64,
    found: Option<Found>,
) -> Result<Opened, DataError> {
    let record = private_mount.dir().join(FIRST_USE_RECORD).exists();
    let found = match found {
        Some(found) => found,
        None => luks::inspect(data)?,
    };
    let (fresh, what) = match found {
        Found::NotLuks2 => (disposable(data)?.is_some(), what_is_there(data)?),
        _ => (false, ""),
    };
    match plan(&found, record, fresh, data, what) {
        Plan::Unlock => {
            let Found::Luks2(header) = found else {
                return Err(DataError::NoKey {
                    device: data.to_path_buf(),
                });
            };
            let sealed = token(&header)
                .map(Tpm2Token::from_token)
                .ok_or(DataError::NoKey {
                    device: data.to_path_buf(),
                })?
                .map_err(DataError::Tpm)?;
            let mut tpm = open_tpm()?;
            let unsealed = tpm2::unseal(&mut tpm, &sealed.sealed);
            // Locked whatever the outcome: a refused unseal must not be retried later on.
            lock(&mut tpm, &header.header.uuid)?;
            let secret = unsealed.map_err(DataError::Tpm)?;
            let passphrase = tpm2::token::passphrase(&secret);
            drop(secret);
            let wrong = || DataError::WrongTpmSecret {
                device: data.to_path_buf(),
            };
            let (volume_key, table) =
                luks::unlock(&header, data, part_bytes, passphrase.as_bytes(), &wrong)?;
            drop(passphrase);
            luks::map_and_tidy(
                *header,
                volume_key,
                table,
                data,
                record.then_some(&mut private_mount),
                Encryption::Luks2Tpm,
            )
        }
        Plan::FirstUse => first_use(&mut private_mount, data, part_bytes),
        Plan::Refuse(e) => Err(e),
        // Never planned in tpm2 mode: plain dm-crypt is keyfile mode's legacy.
        Plan::Plain => Err(DataError::NoKey {
            device: data.to_path_buf(),
        }),
    }
}

/// Seals a new secret to this boot's PCR 7 (and PCR 15 at zero) and makes the volume.
fn first_use(
    private_mount: &mut PrivateMount,
    data: &Path,
    part_bytes: u64,
) -> Result<Opened, DataError> {
    let mut tpm = open_tpm()?;
    let mut secret = Zeroizing::new(vec![0u8; SECRET_BYTES]);
    luks2::crypto::fill_random(&mut secret).map_err(|source| DataError::Luks {
        device: data.to_path_buf(),
        source,
    })?;
    let pcrs = tpm2::boot_pcr_values(&mut tpm).map_err(DataError::Tpm)?;
    let sealed = tpm2::seal(&mut tpm, &secret, &pcrs).map_err(DataError::Tpm)?;
    let passphrase = tpm2::token::passphrase(&secret);
    drop(secret);
    let make_token = |keyslot: u32| {
        Tpm2Token {
            keyslots: vec![keyslot],
            sealed: sealed.clone(),
        }
        .to_object()
        .map_err(DataError::Tpm)
    };
    let machine = MachineSecret {
        passphrase: passphrase.as_bytes(),
        key_file: None,
        token: Some(&make_token),
    };
    let opened = luks::first_use_on(
        private_mount,
        data,
        part_bytes,
        &machine,
        Encryption::Luks2Tpm,
    )?;
    drop(passphrase);
    let uuid = match luks::inspect(data)? {
        Found::Luks2(h) => h.header.uuid,
        _ => String::new(),
    };
    lock(&mut tpm, &uuid)?;
    Ok(opened)
}
