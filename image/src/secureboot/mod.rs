//! Secure Boot for Liftoff disks (issue 13, docs/secure-boot.md): the chain
//!
//! ```text
//! firmware db (our certificate)
//!   -> shim (EFI/BOOT/BOOTX64.EFI), signed with the db key, its .vendor_cert ours  [`loader`]
//!   -> GRUB (EFI/BOOT/grubx64.efi), signed with the db key, SBAT grub,5            [`loader`]
//!   -> the slot's unified kernel image (BOOT-<slot>/liftoff.efi), signed, checked
//!      by shim_lock before GRUB chainloads it: kernel, initramfs, command line    [`uki`]
//!   -> dm-verity with the root hash from that signed command line (PID 1)
//! ```
//!
//! - [`keys`]: the operator's key set (PK, KEK, db: X.509 certificates and private keys in
//!   PEM files), made here or brought in, and the per-machine development set used when a
//!   build names none;
//! - [`uki`]: the unified kernel image of one slot, assembled from systemd-stub and signed;
//! - [`loader`]: shim with our certificate and GRUB with its SBAT section, both signed;
//! - [`varstore`]: UEFI variable stores with the key set enrolled and Secure Boot on, for
//!   OVMF/AAVMF and as EC2's `--uefi-data` blob.
//!
//! Every signature is made by `sbsign` with the db key; every section is added by
//! `objcopy` (`aarch64-linux-gnu-objcopy` for arm64 images). The same inputs and keys give the
//! same bytes (RSA PKCS#1 v1.5 signatures are deterministic and sbsign adds no time).

pub mod keys;
pub mod loader;
pub mod uki;
pub mod varstore;

use std::path::Path;
use std::process::Command;

use crate::tool::{io_err, run, ImageError};
use crate::Arch;

pub use keys::KeySet;
/// The PE reader the builder places sections with (prairiedog's, which checks payloads).
pub use prairiedog::pe;

/// The `objcopy` that writes PE images of `arch`.
pub(crate) fn objcopy(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "objcopy",
        Arch::Aarch64 => "aarch64-linux-gnu-objcopy",
    }
}

/// Signs the PE image `input` with the key set's db key into `output` (`sbsign`).
pub fn sign(keys: &KeySet, input: &Path, output: &Path) -> Result<(), ImageError> {
    run(Command::new("sbsign")
        .arg("--key")
        .arg(&keys.db.key)
        .arg("--cert")
        .arg(&keys.db.cert)
        .arg("--output")
        .arg(output)
        .arg(input))
}

/// Whether `image` carries a signature that verifies with `cert` (`sbverify`; the image
/// builder's own check of what it signed, and the tests' peer tool).
pub fn verifies(image: &Path, cert: &Path) -> Result<bool, ImageError> {
    let out = Command::new("sbverify")
        .arg("--cert")
        .arg(cert)
        .arg(image)
        .output()
        .map_err(io_err(
            "running sbverify (scripts/setup installs sbsigntool)",
        ))?;
    Ok(out.status.success())
}
