//! What can go wrong, one variant per step, each naming what it was looking at.

use std::io;

use crate::header::Copy;
use crate::json::JsonError;

/// Why one binary header copy (with its JSON area) is not valid. LUKS2 spec section 2
/// ("LUKS2 binary header") and 3 ("JSON area").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("device too small for a header at byte {offset}")]
    Truncated { offset: u64 },
    #[error("no LUKS2 magic")]
    Magic,
    #[error("version {0}, not 2")]
    Version(u16),
    #[error(
        "header size {0} is not one of the sizes LUKS2 allows (16 KiB to 4 MiB, powers of two)"
    )]
    Size(u64),
    #[error("header says it lies at byte {found}, but it was read at byte {expected}")]
    Offset { found: u64, expected: u64 },
    #[error("checksum algorithm {0:?} is not supported (only sha256)")]
    ChecksumAlgorithm(String),
    #[error("checksum does not match the header and JSON area")]
    Checksum,
    #[error("JSON area is not NUL-terminated")]
    JsonUnterminated,
    #[error("JSON area is not UTF-8")]
    JsonNotUtf8,
    #[error("JSON area: {0}")]
    Json(JsonError),
    #[error("{0}")]
    Metadata(MetadataError),
    #[error("seqid {seqid} is older than the other copy's {current}")]
    Outdated { seqid: u64, current: u64 },
}

/// A JSON value that is not what the LUKS2 spec (section 3) says it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct MetadataError {
    /// Where in the JSON: `keyslots.0.kdf.salt`.
    pub path: String,
    pub problem: String,
}

impl MetadataError {
    pub(crate) fn new(path: impl Into<String>, problem: impl Into<String>) -> MetadataError {
        MetadataError {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Errors of the crate's operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what} at byte {offset}: {source}")]
    Read {
        what: &'static str,
        offset: u64,
        source: io::Error,
    },
    #[error("writing {what} at byte {offset}: {source}")]
    Write {
        what: &'static str,
        offset: u64,
        source: io::Error,
    },
    #[error("flushing {what} to the device: {source}")]
    Sync {
        what: &'static str,
        source: io::Error,
    },
    #[error("no valid LUKS2 header: primary: {primary}; secondary: {secondary}")]
    NoValidHeader {
        primary: HeaderError,
        secondary: HeaderError,
    },
    #[error("{copy} header: {error}")]
    Header { copy: Copy, error: HeaderError },
    #[error("{0}")]
    Metadata(MetadataError),
    #[error("{what} is not supported: {detail}")]
    Unsupported { what: &'static str, detail: String },
    #[error("keyslot {0} does not exist")]
    NoSuchKeyslot(u32),
    #[error("token {0} does not exist")]
    NoSuchToken(u32),
    #[error("keyslot {keyslot}: {problem}")]
    Keyslot { keyslot: u32, problem: String },
    #[error("the secret opens none of the keyslots {tried:?}")]
    WrongSecret { tried: Vec<u32> },
    #[error("all {max} keyslots are in use")]
    KeyslotsFull { max: u32 },
    #[error("no room for a {size}-byte keyslot area in the {area}-byte keyslots area")]
    NoRoom { size: u64, area: u64 },
    #[error("the JSON metadata takes {len} bytes, more than the {max}-byte JSON area")]
    JsonTooLarge { len: usize, max: u64 },
    #[error("volume key of {len} bytes does not match the {expected}-byte key of segment 0")]
    VolumeKeyLength { len: usize, expected: usize },
    #[error("the volume key does not match the digest")]
    VolumeKeyMismatch,
    #[error("device of {size} bytes: {problem}")]
    Geometry { size: u64, problem: String },
    #[error("getting random bytes: {0}")]
    Random(io::Error),
    #[error("key derivation ({kdf}): {detail}")]
    Kdf { kdf: &'static str, detail: String },
}
