//! Growing a dm-crypt mapping over the grown DATA partition.
//!
//! A `crypt` target's length is fixed in its table; after the partition grows, the mapping
//! is reloaded with the same parameters and the new length (`DM_TABLE_LOAD`, then resume,
//! which suspends, swaps the table and resumes in the kernel). The key is part of the
//! parameters; this crate never reads a table back from the kernel (so a key never leaves
//! it that way): the caller, which opened the mapping, passes the parameters it loaded.
//!
//! Table line (`cryptsetup open --type plain` compatible, DESIGN.md section 8):
//! `0 <length> crypt aes-xts-plain64 <key hex> <iv_offset> <device> <offset> [opts]`,
//! length and offsets in 512-byte sectors.

use crate::Error;

/// Loads a table into a mapping and makes it live. Implemented for [`dm::Control`]; tests
/// use a recording double.
pub trait TableReloader {
    /// Loads `targets` as `name`'s table and resumes it.
    fn reload(&self, name: &str, targets: &[dm::Target]) -> Result<(), dm::Error>;
}

impl TableReloader for dm::Control {
    fn reload(&self, name: &str, targets: &[dm::Target]) -> Result<(), dm::Error> {
        self.load(name, targets, false)?;
        self.resume(name).map(|_| ())
    }
}

/// The data offset (in 512-byte sectors) of a crypt parameter string: the fifth field.
fn data_offset(params: &str) -> Option<u64> {
    params.split_ascii_whitespace().nth(4)?.parse().ok()
}

/// The encryption sector size in 512-byte units from a `sector_size:N` optional
/// parameter (1 when absent): the mapping's length must be a multiple of it.
fn crypt_sector_units(params: &str) -> Option<u64> {
    let n = params
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("sector_size:"))
        .map_or(Some(512), |v| v.parse::<u64>().ok())?;
    (n >= 512 && n.is_power_of_two()).then_some(n / 512)
}

/// The crypt table covering a partition of `partition_bytes` bytes: same parameters,
/// length = partition sectors minus the data offset, rounded down to the encryption sector
/// size. Pure; the key stays in `params`.
pub fn crypt_target(name: &str, params: &str, partition_bytes: u64) -> Result<dm::Target, Error> {
    let bad = || Error::CryptParams {
        name: name.to_owned(),
    };
    let offset = data_offset(params).ok_or_else(bad)?;
    let unit = crypt_sector_units(params).ok_or_else(bad)?;
    let length = (partition_bytes / 512)
        .checked_sub(offset)
        .map(|l| l - l % unit)
        .filter(|&l| l > 0)
        .ok_or_else(bad)?;
    Ok(dm::Target {
        start: 0,
        length,
        target_type: "crypt".to_owned(),
        params: params.to_owned(),
    })
}

/// Reloads the crypt mapping `name` to cover the grown partition of `partition_bytes`
/// bytes. `params` are the parameters the mapping was opened with. Returns the new length
/// in 512-byte sectors.
pub fn grow_crypt<R: TableReloader + ?Sized>(
    dm: &R,
    name: &str,
    params: &str,
    partition_bytes: u64,
) -> Result<u64, Error> {
    let target = crypt_target(name, params, partition_bytes)?;
    let length = target.length;
    dm.reload(name, std::slice::from_ref(&target))
        .map_err(|source| Error::Crypt {
            name: name.to_owned(),
            source,
        })?;
    Ok(length)
}
