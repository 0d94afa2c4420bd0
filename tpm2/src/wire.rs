//! Command and response buffers (TCG TPM 2.0 Library, Part 1 "Architecture", section 18
//! "Command/Response Structure"; the types in Part 2 "Structures").
//!
//! Everything is big-endian. A command is
//!
//! ```text
//! tag u16 (TPM_ST_NO_SESSIONS 0x8001 | TPM_ST_SESSIONS 0x8002)  size u32  commandCode u32
//! handles (u32 each)
//! [authorizationSize u32, then per session: handle u32, TPM2B nonce, attributes u8, TPM2B hmac]
//! parameters
//! ```
//!
//! and a response is
//!
//! ```text
//! tag u16  size u32  responseCode u32   (a non-zero code ends the response here)
//! handles (u32 each)
//! [parameterSize u32 if tag is TPM_ST_SESSIONS]
//! parameters
//! [per session: TPM2B nonce, attributes u8, TPM2B hmac]
//! ```
//!
//! A `TPM2B_*` is a u16 size followed by that many bytes. [`Reader`] checks every length
//! against what is left, so no response, however malformed, can make it panic.

use std::fmt;

use crate::error::Malformed;
use crate::rc::ResponseCode;

pub const ST_NO_SESSIONS: u16 = 0x8001;
pub const ST_SESSIONS: u16 = 0x8002;
/// The size of the header every command and response starts with.
pub const HEADER_LEN: usize = 10;
/// The largest response this crate accepts; TPMs answer in at most 4 KiB
/// (`TPM_PT_MAX_RESPONSE_SIZE` is typically 4096).
pub const MAX_RESPONSE: usize = 4096;

/// The commands this crate sends (Part 2, table 12 "TPM_CC").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    CreatePrimary,
    Create,
    Load,
    Unseal,
    FlushContext,
    StartAuthSession,
    GetRandom,
    PcrRead,
    PcrExtend,
    PolicyPcr,
    PolicyGetDigest,
}

impl Command {
    pub fn code(self) -> u32 {
        match self {
            Command::CreatePrimary => 0x131,
            Command::Create => 0x153,
            Command::Load => 0x157,
            Command::Unseal => 0x15E,
            Command::FlushContext => 0x165,
            Command::StartAuthSession => 0x176,
            Command::GetRandom => 0x17B,
            Command::PcrRead => 0x17E,
            Command::PolicyPcr => 0x17F,
            Command::PcrExtend => 0x182,
            Command::PolicyGetDigest => 0x189,
        }
    }

    /// The specification's name: `TPM2_PolicyPCR`.
    pub fn name(self) -> &'static str {
        match self {
            Command::CreatePrimary => "TPM2_CreatePrimary",
            Command::Create => "TPM2_Create",
            Command::Load => "TPM2_Load",
            Command::Unseal => "TPM2_Unseal",
            Command::FlushContext => "TPM2_FlushContext",
            Command::StartAuthSession => "TPM2_StartAuthSession",
            Command::GetRandom => "TPM2_GetRandom",
            Command::PcrRead => "TPM2_PCR_Read",
            Command::PolicyPcr => "TPM2_PolicyPCR",
            Command::PcrExtend => "TPM2_PCR_Extend",
            Command::PolicyGetDigest => "TPM2_PolicyGetDigest",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A marshalling buffer. TPM2B sizes are checked by the caller's types (every buffer this
/// crate writes is bounded far below 64 KiB); [`Writer::tpm2b`] refuses larger ones.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

/// A buffer too large for a TPM2B (more than 65535 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized(pub usize);

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn u8(&mut self, v: u8) -> &mut Writer {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Writer {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Writer {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Writer {
        self.buf.extend_from_slice(b);
        self
    }

    /// A TPM2B: u16 size, then the bytes.
    pub fn tpm2b(&mut self, b: &[u8]) -> Result<&mut Writer, Oversized> {
        let len = u16::try_from(b.len()).map_err(|_| Oversized(b.len()))?;
        self.u16(len);
        self.buf.extend_from_slice(b);
        Ok(self)
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A bounds-checked reader over a response or a blob.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn malformed(&self, what: &'static str, problem: &'static str) -> Malformed {
        Malformed {
            what,
            offset: self.pos,
            problem,
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.malformed(what, "length overflows"))?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.malformed(what, "runs past the end"))?;
        self.pos = end;
        Ok(b)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        let b = self.take(1, what)?;
        b.first()
            .copied()
            .ok_or_else(|| self.malformed(what, "runs past the end"))
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        let b = self.take(2, what)?;
        let a: [u8; 2] = b
            .try_into()
            .map_err(|_| self.malformed(what, "runs past the end"))?;
        Ok(u16::from_be_bytes(a))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        let b = self.take(4, what)?;
        let a: [u8; 4] = b
            .try_into()
            .map_err(|_| self.malformed(what, "runs past the end"))?;
        Ok(u32::from_be_bytes(a))
    }

    /// A TPM2B's contents (without its size).
    pub fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    /// A TPM2B whose contents must be exactly `N` bytes (a sha256 digest).
    pub fn tpm2b_array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], Malformed> {
        let at = self.pos;
        let b = self.tpm2b(what)?;
        b.try_into().map_err(|_| Malformed {
            what,
            offset: at,
            problem: "has the wrong size",
        })
    }

    /// Where the reader is.
    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Checks that nothing is left.
    pub fn finish(&self, what: &'static str) -> Result<(), Malformed> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(what, "has bytes left over"))
        }
    }
}

/// `TPM_RS_PW`: the password session, here always with an empty password (the owner
/// hierarchy, the storage key and PCRs this crate uses have empty authValues).
pub const RS_PW: u32 = 0x4000_0009;

/// One authorization in a command's sessions area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `TPM_RS_PW` with an empty password.
    EmptyPassword,
    /// A policy session with no HMAC (none of its policies asks for the authValue);
    /// `continueSession` is clear, so the TPM flushes it after a successful command.
    Policy(u32),
}

/// Builds a command. Sessions are written only if `auths` is non-empty (the tag says
/// which). `params` are the marshalled parameters.
pub fn command(cc: Command, handles: &[u32], auths: &[Auth], params: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    let tag = if auths.is_empty() {
        ST_NO_SESSIONS
    } else {
        ST_SESSIONS
    };
    w.u16(tag).u32(0).u32(cc.code());
    for h in handles {
        w.u32(*h);
    }
    if !auths.is_empty() {
        // Each authorization: handle (4), empty nonce (2), attributes (1), empty hmac (2).
        let per = 4 + 2 + 1 + 2;
        w.u32(u32::try_from(per * auths.len()).unwrap_or(u32::MAX));
        for a in auths {
            let handle = match a {
                Auth::EmptyPassword => RS_PW,
                Auth::Policy(h) => *h,
            };
            w.u32(handle).u16(0).u8(0).u16(0);
        }
    }
    w.bytes(params);
    let mut out = w.into_bytes();
    let size = u32::try_from(out.len()).unwrap_or(u32::MAX).to_be_bytes();
    if let Some(s) = out.get_mut(2..6) {
        s.copy_from_slice(&size);
    }
    out
}

/// A successful response, split into its areas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    pub handles: Vec<u32>,
    pub params: &'a [u8],
}

/// Why a response is not a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// The TPM's error or warning code.
    Code(ResponseCode),
    Malformed(Malformed),
}

impl From<Malformed> for ResponseError {
    fn from(m: Malformed) -> ResponseError {
        ResponseError::Malformed(m)
    }
}

/// Parses a response to a command that returns `n_handles` handles and was sent with
/// sessions or without (`with_sessions`). Checks the header's size against the buffer,
/// the tag, the parameter size and each session's response; never panics.
pub fn parse_response(
    bytes: &[u8],
    n_handles: usize,
    with_sessions: bool,
) -> Result<Response<'_>, ResponseError> {
    let mut r = Reader::new(bytes);
    let tag = r.u16("response tag")?;
    let size = r.u32("response size")?;
    if usize::try_from(size).ok() != Some(bytes.len()) {
        return Err(Malformed {
            what: "response size",
            offset: 2,
            problem: "does not match the bytes received",
        }
        .into());
    }
    let rc = r.u32("response code")?;
    if rc != 0 {
        // An error response is the header alone, with TPM_ST_NO_SESSIONS.
        r.finish("error response")?;
        return Err(ResponseError::Code(ResponseCode(rc)));
    }
    let want = if with_sessions {
        ST_SESSIONS
    } else {
        ST_NO_SESSIONS
    };
    if tag != want {
        return Err(Malformed {
            what: "response tag",
            offset: 0,
            problem: "does not match the command's",
        }
        .into());
    }
    let mut handles = Vec::with_capacity(n_handles.min(3));
    for _ in 0..n_handles {
        handles.push(r.u32("response handle")?);
    }
    let params = if with_sessions {
        let n = r.u32("parameterSize")?;
        let n = usize::try_from(n).map_err(|_| Malformed {
            what: "parameterSize",
            offset: r.offset(),
            problem: "too large",
        })?;
        let params = r.take(n, "response parameters")?;
        // One response session per command session; none carries anything we check
        // (no HMAC sessions), but each must be well-formed and nothing may follow.
        while !r.is_empty() {
            r.tpm2b("session nonce")?;
            r.u8("session attributes")?;
            r.tpm2b("session hmac")?;
        }
        params
    } else {
        let rest = bytes.len().saturating_sub(r.offset());
        r.take(rest, "response parameters")?
    };
    Ok(Response { handles, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_has_its_size_tag_and_sessions() {
        let c = command(
            Command::Unseal,
            &[0x8000_0001],
            &[Auth::Policy(0x0300_0000)],
            &[],
        );
        assert_eq!(
            c,
            [
                0x80, 0x02, 0, 0, 0, 27, 0, 0, 0x01, 0x5E, 0x80, 0, 0, 1, 0, 0, 0, 9, 3, 0, 0, 0,
                0, 0, 0, 0, 0
            ]
        );
        let c = command(Command::GetRandom, &[], &[], &[0, 16]);
        assert_eq!(c, [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 16]);
    }

    #[test]
    fn responses_are_split_and_checked() {
        // CreatePrimary-like: a handle, parameterSize, params, one password session.
        let ok = [
            0x80, 0x02, 0, 0, 0, 25, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 2, 0xAB, 0xCD, 0, 0, 1, 0,
            0,
        ];
        let r = parse_response(&ok, 1, true).unwrap();
        assert_eq!(r.handles, [0x8000_0000]);
        assert_eq!(r.params, [0xAB, 0xCD]);
        // Every truncation is malformed, never a panic.
        for n in 0..ok.len() {
            assert!(parse_response(&ok[..n], 1, true).is_err(), "{n}");
        }
        // The size field must match.
        let mut bad = ok;
        bad[5] = 24;
        assert!(matches!(
            parse_response(&bad, 1, true),
            Err(ResponseError::Malformed(_))
        ));
        // An error code is decoded.
        let err = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x9D];
        assert_eq!(
            parse_response(&err, 1, true),
            Err(ResponseError::Code(ResponseCode(0x99D)))
        );
        // A parameterSize past the end.
        let mut bad = ok;
        bad[17] = 200;
        assert!(parse_response(&bad, 1, true).is_err());
    }
}
