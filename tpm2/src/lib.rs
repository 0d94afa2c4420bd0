//! A small TPM 2.0 client for PID 1: seal a secret to PCR values, unseal it, extend a PCR
//! so it cannot be unsealed again this boot, and the `systemd-tpm2` LUKS2 token that holds
//! the sealed blob. Pure Rust, no C, no TSS; no panics on any response.
//!
//! The protocol is the TCG "TPM 2.0 Library" specification (Part 1 Architecture, Part 2
//! Structures, Part 3 Commands), cited by section in each module.
//!
//! # Layers
//!
//! - [`wire`]: command and response buffers, a bounds-checked [`wire::Reader`];
//!   [`rc`]: response codes by their specification names (`TPM_RC_POLICY_FAIL`).
//! - [`transport`]: `/dev/tpmrm0` ([`transport::Device`]); swtpm's socket for the host
//!   tests (feature `swtpm`).
//! - [`commands`]: one method per TPM command ([`Tpm`]).
//! - [`policy`], [`object`]: PCR selections, the PolicyPCR digest computed in software,
//!   the templates of the storage primary key (systemd 252's) and of the sealed object.
//! - [`mod@seal`]: [`seal()`], [`unseal()`], [`extend_pcr`]: what PID 1 calls.
//! - [`token`]: the `systemd-tpm2` token JSON, to and from luks2's [`luks2::metadata::Token`].
//!
//! # Lifecycle in PID 1 (docs/tpm2.md)
//!
//! 1. First use: [`boot_pcr_values`] (PCR 7 now, PCR 15 zero), a random secret, [`seal()`],
//!    a keyslot whose passphrase is [`token::passphrase`] of the secret, the token.
//! 2. Every boot: [`token::Tpm2Token::from_token`], [`unseal()`], unlock the keyslot with
//!    the passphrase, then [`extend_pcr`] of [`LOCK_PCR`] so nothing later in this boot
//!    can unseal it again.
//!
//! No session is salted or encrypting: the secret crosses the bus in clear (docs/tpm2.md,
//! "What is not done").

pub mod commands;
pub mod error;
pub mod object;
pub mod policy;
pub mod rc;
pub mod seal;
pub mod token;
pub mod transport;
pub mod wire;

pub use commands::{is_policy_fail, Tpm};
pub use error::{Error, Malformed};
pub use policy::{PcrSelection, PcrValues};
pub use rc::ResponseCode;
pub use seal::{
    boot_pcr_values, extend_pcr, seal, trial_policy_digest, unseal, Sealed, LOCK_PCR,
    SECURE_BOOT_PCR,
};
pub use token::Tpm2Token;
pub use transport::{Device, Transport};
