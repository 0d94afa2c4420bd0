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
//! `objcopy` (`aarch64-linux-gnu-objcopy` for arm64 images), whose time stamp in the COFF
//! header is set back to 0. sbsign puts the signing time into each signature, so [`sign`]
//! keeps every signature it made under `<target>/secureboot/signed/`, keyed by the unsigned
//! image and the db certificate: on one machine (one cache) the same inputs and keys give the
//! same bytes; a fresh cache signs again with another time.

pub mod keys;
pub mod loader;
pub mod uki;
pub mod varstore;

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::tool::{io_err, run, ImageError};
use crate::{artifacts, Arch};

pub use keys::KeySet;
/// The PE reader the builder places sections with (prairiedog's, which checks payloads).
pub use prairiedog::pe;
/// Image versions (`IMAGE_VERSION=` in a UKI's `.osrel`) as `prairiedog install` compares them.
pub use prairiedog::uki::Version;

/// The `objcopy` that writes PE images of `arch`.
pub(crate) fn objcopy(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "objcopy",
        Arch::Aarch64 => "aarch64-linux-gnu-objcopy",
    }
}

/// Signs the PE image `input` with the key set's db key into `output` (`sbsign`), or copies
/// the signed image made earlier for the same input and certificate (see the module docs).
pub fn sign(keys: &KeySet, input: &Path, output: &Path) -> Result<(), ImageError> {
    let mut key = Sha256::new();
    key.update(std::fs::read(input).map_err(io_err(format!("reading {}", input.display())))?);
    key.update(
        std::fs::read(&keys.db.cert)
            .map_err(io_err(format!("reading {}", keys.db.cert.display())))?,
    );
    let name = verity::hex::encode(&key.finalize());
    let dir = artifacts::target_dir().join("secureboot").join("signed");
    let cached = artifacts::made_once(&dir, &format!("{name}.efi"), |partial| {
        run(Command::new("sbsign")
            .arg("--key")
            .arg(&keys.db.key)
            .arg("--cert")
            .arg(&keys.db.cert)
            .arg("--output")
            .arg(partial)
            .arg(input))
    })?;
    std::fs::copy(&cached, output).map_err(io_err(format!(
        "copying {} to {}",
        cached.display(),
        output.display()
    )))?;
    Ok(())
}

/// Signs the bytes of `file` (an update manifest) with the key set's db key into `sig`: a
/// detached RSA PKCS#1 v1.5 SHA-256 signature, the raw bytes `openssl dgst -sha256 -sign`
/// writes, which `prairiedog install` checks with the db certificate
/// (`prairiedog::authenticode::detached`). The private key is used by openssl only, as by
/// sbsign, so a key an operator keeps behind an openssl provider works here too. PKCS#1
/// v1.5 signatures are deterministic: the same manifest and key give the same bytes.
pub fn sign_detached(keys: &KeySet, file: &Path, sig: &Path) -> Result<(), ImageError> {
    run(Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&keys.db.key)
        .arg("-out")
        .arg(sig)
        .arg(file))
}

/// Whether `sig` is a detached signature of `file` by `cert`'s key, as `openssl dgst
/// -sha256 -verify` (the peer tool of `prairiedog install`'s check) sees it.
pub fn verifies_detached(file: &Path, sig: &Path, cert: &Path) -> Result<bool, ImageError> {
    let key = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(cert)
        .output()
        .map_err(io_err("running openssl x509 -pubkey"))?;
    if !key.status.success() {
        return Err(ImageError::Tool {
            command: format!("openssl x509 -pubkey -in {}", cert.display()),
            output: String::from_utf8_lossy(&key.stderr).into_owned(),
        });
    }
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify", "/dev/stdin", "-signature"])
        .arg(sig)
        .arg(file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(io_err("running openssl dgst -verify"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(&key.stdout)
            .map_err(io_err("writing the public key to openssl dgst -verify"))?;
    }
    let status = child
        .wait()
        .map_err(io_err("waiting for openssl dgst -verify"))?;
    Ok(status.success())
}

/// Sets the COFF header's time stamp and the optional header's checksum (which covers the
/// time stamp) of the PE image at `path` to 0: objcopy writes the current time there,
/// which would make every build different. Authenticode leaves the checksum out of the
/// signed digest, and sbsign writes a new one.
pub(crate) fn clear_timestamp(path: &Path) -> Result<(), ImageError> {
    let mut bytes = std::fs::read(path).map_err(io_err(format!("reading {}", path.display())))?;
    let bad = |what: String| ImageError::Tool {
        command: format!("reading the PE header of {}", path.display()),
        output: what,
    };
    let info = pe::PeInfo::parse(&bytes).map_err(|e| bad(e.to_string()))?;
    for at in [info.timestamp_offset, info.checksum_offset] {
        let field = bytes
            .get_mut(at..at + 4)
            .ok_or_else(|| bad("truncated".into()))?;
        field.fill(0);
    }
    std::fs::write(path, &bytes).map_err(io_err(format!("writing {}", path.display())))
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
