//! UEFI variable stores with a key set enrolled (PK, KEK and db, each one X.509 entry owned
//! by [`KeySet::owner_guid`]) and Secure Boot on, written by `virt-fw-vars`
//! (`python3-virt-firmware`):
//!
//! - [`write_vars`] with [`Format::Edk2`]: a flash image for OVMF (x86_64, from
//!   `OVMF_VARS_4M.fd`, for `OVMF_CODE_4M.secboot.fd`) or AAVMF (aarch64);
//! - [`Format::Aws`]: the blob EC2's `register-image --uefi-data` takes, so an AMI boots
//!   with Secure Boot enforced and the operator's keys instead of the defaults.
//!
//! Debian's blank `AAVMF_VARS.fd` is not formatted (the firmware formats it on first boot),
//! so the aarch64 store starts from `AAVMF_VARS.snakeoil.fd` with its PK, KEK, db and boot
//! entries deleted: only our keys remain. No Microsoft keys are enrolled.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::KeySet;
use crate::artifacts;
use crate::tool::{io_err, run, ImageError};
use crate::Arch;

/// Which store to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A raw edk2 flash image for QEMU's pflash.
    Edk2,
    /// EC2's `--uefi-data` blob.
    Aws,
}

/// The store the enrolled copy starts from, and the variables deleted from it first.
fn template(arch: Arch) -> (&'static str, &'static [&'static str]) {
    match arch {
        Arch::X86_64 => ("/usr/share/OVMF/OVMF_VARS_4M.fd", &[]),
        Arch::Aarch64 => (
            "/usr/share/AAVMF/AAVMF_VARS.snakeoil.fd",
            &["PK", "KEK", "db", "Boot0000", "Boot0001", "Boot0002"],
        ),
    }
}

/// Writes the variable store of `arch` with `keys` enrolled and Secure Boot on to `out`.
pub fn write_vars(arch: Arch, keys: &KeySet, format: Format, out: &Path) -> Result<(), ImageError> {
    let owner = keys.owner_guid()?;
    let mut cmd = Command::new("virt-fw-vars");
    if format == Format::Edk2 {
        let (input, delete) = template(arch);
        cmd.arg("--input").arg(input);
        for var in delete {
            cmd.arg("--delete").arg(var);
        }
    }
    cmd.arg("--set-pk")
        .arg(&owner)
        .arg(&keys.pk.cert)
        .arg("--add-kek")
        .arg(&owner)
        .arg(&keys.kek.cert)
        .arg("--add-db")
        .arg(&owner)
        .arg(&keys.db.cert)
        .arg("--secure-boot");
    match format {
        Format::Edk2 => cmd.arg("--output").arg(out),
        Format::Aws => cmd.arg("--output-aws").arg(out),
    };
    run(&mut cmd)
}

/// The edk2 store of `arch` for `keys`, made once and cached under
/// `<target>/secureboot/vars-<arch>-<key>.fd` (the key covers the three certificates), for
/// the VM tests and `liftoff-qemu boot`; copy it before a guest writes to it.
pub fn cached_vars(arch: Arch, keys: &KeySet) -> Result<PathBuf, ImageError> {
    let mut key = Sha256::new();
    key.update(format!("v1 {arch}\n"));
    for cert in [&keys.pk.cert, &keys.kek.cert, &keys.db.cert] {
        key.update(std::fs::read(cert).map_err(io_err(format!("reading {}", cert.display())))?);
    }
    let key = verity::hex::encode(key.finalize().get(..8).unwrap_or_default());
    let dir = artifacts::target_dir().join("secureboot");
    artifacts::made_once(&dir, &format!("vars-{arch}-{key}.fd"), |partial| {
        write_vars(arch, keys, Format::Edk2, partial)
    })
}
