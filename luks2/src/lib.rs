//! LUKS2 headers that cryptsetup reads and writes alike: read and check both header
//! copies, unlock a keyslot, format a new volume, add and remove keyslots and tokens, and
//! build the dm-crypt table cryptsetup would load. Pure Rust, no C, no panics on any
//! input: PID 1 links it.
//!
//! The format is the "LUKS2 On-Disk Format Specification" (Milan Broz, version 1.1.x),
//! cited by section in each module.
//!
//! # Layout of a volume this crate formats (cryptsetup 2.x defaults)
//!
//! ```text
//! 0        primary header copy    16 KiB: 4 KiB binary header + 12 KiB JSON  (header.rs)
//! 16 KiB   secondary header copy  the same, own magic and offset
//! 32 KiB   keyslots area          16 MiB - 32 KiB; one 256000-byte (248 KiB + padding
//!                                  to 252 KiB) area per keyslot      (crypto.rs)
//! 16 MiB   data segment           aes-xts-plain64, 512-bit volume key, to the end of
//!                                  the device (`dynamic`)              (table.rs)
//! ```
//!
//! # Lifecycle
//!
//! - **Open**: [`Luks2::read`] checks both copies (magic, version, size, offset,
//!   SHA-256 checksum, JSON, metadata references) and keeps the valid one with the
//!   higher seqid; [`Luks2::unlock`] tries a secret on each keyslot and returns the
//!   [`VolumeKey`]; [`Luks2::crypt_table`] gives the dm-crypt target.
//! - **Create**: [`Luks2::format`] with a [`VolumeKey::random`], then
//!   [`Luks2::add_keyslot`] per secret ([`KdfParams::PASSPHRASE`] for a passphrase a person chose,
//!   [`KdfParams::MACHINE_SECRET`] for a random secret: key file, TPM secret, recovery key), optionally
//!   [`Luks2::add_token`], then [`Luks2::write`].
//! - **Change**: read, unlock (to get the volume key a new keyslot needs), add or remove
//!   keyslots and tokens, write. Mutators only change memory; `write` documents its
//!   crash-safe order.
//!
//! docs/luks2.md explains the choices and how the tests compare with cryptsetup.

pub mod crypto;
pub mod error;
pub mod header;
pub mod idmap;
pub mod json;
pub mod kernel;
pub mod metadata;
pub mod table;
pub mod volume;

pub use crypto::VolumeKey;
pub use error::{Error, HeaderError, MetadataError};
pub use header::Copy;
pub use metadata::{Hash, Metadata};
pub use table::CryptTable;
pub use volume::{FormatOptions, KdfParams, Luks2, Storage};
