//! What can go wrong, one variant per step, each naming the device and the command.

use std::io;

use crate::rc::ResponseCode;
use crate::wire::Command;

/// A response that does not parse: too short, a size that does not add up, bytes left
/// over. Never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}: {problem}")]
pub struct Malformed {
    /// What was being read: `TPM2B_PUBLIC`, `response header`.
    pub what: &'static str,
    pub offset: usize,
    pub problem: &'static str,
}

/// Errors of the crate's operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening TPM {device}: {source}")]
    Open { device: String, source: io::Error },
    #[error("sending {command} to TPM {device}: {source}")]
    Send {
        device: String,
        command: Command,
        source: io::Error,
    },
    #[error("receiving the response to {command} from TPM {device}: {source}")]
    Receive {
        device: String,
        command: Command,
        source: io::Error,
    },
    #[error("TPM {device} refused {command}: {rc}")]
    Tpm {
        device: String,
        command: Command,
        rc: ResponseCode,
    },
    #[error("TPM {device} answered {command} with a malformed response: {error}")]
    Response {
        device: String,
        command: Command,
        error: Malformed,
    },
    #[error("{what} of {len} bytes is too large for the TPM (at most {max})")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("PCR {index} is not a PCR this crate selects (0 to 23)")]
    PcrIndex { index: u32 },
    #[error("TPM {device} has no sha256 bank for PCR {index}")]
    PcrMissing { device: String, index: u32 },
    #[error("sealed blob: {0}")]
    Blob(Malformed),
    #[error("systemd-tpm2 token: {0}")]
    Token(String),
    #[error("getting random bytes: {0}")]
    Random(luks2::Error),
}

impl Error {
    /// The TPM's response code, if the TPM refused the command.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            Error::Tpm { rc, .. } => Some(*rc),
            _ => None,
        }
    }
}
