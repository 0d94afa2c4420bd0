//! HTTP/2 framing (RFC 9113) and gRPC's message prefix, as much as one unary call needs:
//! pure functions over bytes.
//!
//! A unary gRPC call is one HTTP/2 stream:
//!
//! - the client sends the connection preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, a SETTINGS
//!   frame, a HEADERS frame for stream 1 (`:method POST`, `:path /package.Service/Method`,
//!   `content-type: application/grpc`, `te: trailers`) and a DATA frame that ends the stream
//!   with the request: a 5-byte prefix (compressed flag 0, big-endian length) and the
//!   protobuf message;
//! - the server answers SETTINGS (which the client acknowledges), then on stream 1 HEADERS
//!   (`:status 200`), DATA (the prefixed response message) and HEADERS with the trailers
//!   (`grpc-status`, `grpc-message`) flagged END_STREAM. A failed call may be
//!   "trailers-only": one HEADERS frame with `grpc-status` and END_STREAM.
//!
//! Every frame has a 9-byte header: 24-bit length, type, flags, and a 31-bit stream id.
//! Header blocks are HPACK ([`super::hpack`]), messages protobuf ([`super::proto`]).

use std::fmt;

use super::hpack::HpackError;

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 section 6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    /// DATA, HEADERS: the last frame of the stream. SETTINGS, PING: an acknowledgement.
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS_ENABLE_PUSH (RFC 9113 section 6.5.2).
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
/// The largest frame payload a peer may send before we raise SETTINGS_MAX_FRAME_SIZE.
pub const MAX_FRAME_SIZE: usize = 16_384;
/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 9;

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> Self {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *bytes;
        FrameHeader {
            length: usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2),
            kind,
            flags,
            // The reserved top bit is ignored on receipt.
            stream: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
        }
    }
}

/// One frame: header and payload. `payload` must be shorter than 2^24 bytes.
pub fn encode_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .min(0x00ff_ffff);
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS payload from (identifier, value) pairs.
pub fn encode_settings(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(settings.len() * 6);
    for (id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    out
}

/// Something in the peer's bytes that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A padded frame whose pad length exceeds its payload.
    BadPadding {
        kind: u8,
    },
    /// A HEADERS payload too short for its priority fields.
    ShortPriority,
    /// A fixed-size frame with the wrong size.
    FrameSize {
        kind: u8,
        length: usize,
    },
    Hpack(HpackError),
    /// A gRPC message prefix or length that does not fit the body.
    BadMessage(String),
    /// A protobuf field that cannot be read.
    Protobuf(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::BadPadding { kind } => {
                write!(f, "frame of type {kind} has more padding than payload")
            }
            ProtocolError::ShortPriority => f.write_str("HEADERS frame too short for its priority"),
            ProtocolError::FrameSize { kind, length } => {
                write!(f, "frame of type {kind} has a bad length {length}")
            }
            ProtocolError::Hpack(e) => write!(f, "header block: {e}"),
            ProtocolError::BadMessage(m) => write!(f, "gRPC message: {m}"),
            ProtocolError::Protobuf(m) => write!(f, "protobuf: {m}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The content of a DATA or HEADERS payload without padding and priority fields.
pub fn frame_content(header: &FrameHeader, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut body = payload;
    let mut pad = 0usize;
    if header.flags & flag::PADDED != 0 && matches!(header.kind, kind::DATA | kind::HEADERS) {
        let (&p, rest) = body
            .split_first()
            .ok_or(ProtocolError::BadPadding { kind: header.kind })?;
        pad = usize::from(p);
        body = rest;
    }
    if header.kind == kind::HEADERS && header.flags & flag::PRIORITY != 0 {
        body = body.get(5..).ok_or(ProtocolError::ShortPriority)?;
    }
    let end = body
        .len()
        .checked_sub(pad)
        .ok_or(ProtocolError::BadPadding { kind: header.kind })?;
    Ok(body.get(..end).unwrap_or_default().to_vec())
}

/// A request message with its 5-byte gRPC prefix (not compressed).
pub fn grpc_message(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    out
}

/// The messages of a response body: each a 5-byte prefix and the message.
pub fn grpc_messages(mut body: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (prefix, rest) = body
            .split_first_chunk::<5>()
            .ok_or_else(|| ProtocolError::BadMessage(format!("{} bytes left over", body.len())))?;
        let [compressed, l0, l1, l2, l3] = *prefix;
        if compressed != 0 {
            return Err(ProtocolError::BadMessage(
                "compressed, which was not asked for".to_owned(),
            ));
        }
        let len = usize::try_from(u32::from_be_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
        let message = rest.get(..len).ok_or_else(|| {
            ProtocolError::BadMessage(format!("{len}-byte message, {} bytes left", rest.len()))
        })?;
        out.push(message.to_vec());
        body = rest.get(len..).unwrap_or_default();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_and_parse() {
        let frame = encode_frame(kind::HEADERS, flag::END_HEADERS, 1, b"abc");
        assert_eq!(frame, b"\x00\x00\x03\x01\x04\x00\x00\x00\x01abc");
        let header = FrameHeader::parse(frame[..9].try_into().unwrap());
        assert_eq!(
            header,
            FrameHeader {
                length: 3,
                kind: kind::HEADERS,
                flags: flag::END_HEADERS,
                stream: 1
            }
        );
        // The reserved bit is dropped.
        let h = FrameHeader::parse(&[0x01, 0x00, 0x00, 0, 0, 0x80, 0, 0, 3]);
        assert_eq!((h.length, h.stream), (65536, 3));
        assert_eq!(
            encode_frame(
                kind::SETTINGS,
                0,
                0,
                &encode_settings(&[(SETTINGS_ENABLE_PUSH, 0)])
            ),
            b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00"
        );
    }

    #[test]
    fn padding_and_priority_are_removed() {
        type Case<'a> = (u8, u8, &'a [u8], Result<&'a [u8], ProtocolError>);
        let cases: &[Case] = &[
            (kind::DATA, 0, b"hello", Ok(b"hello")),
            (kind::DATA, flag::PADDED, b"\x02hi\0\0", Ok(b"hi")),
            (
                kind::HEADERS,
                flag::PRIORITY,
                b"\0\0\0\x03\x10block",
                Ok(b"block"),
            ),
            (
                kind::HEADERS,
                flag::PRIORITY | flag::PADDED,
                b"\x01\0\0\0\x03\x10ab\0",
                Ok(b"ab"),
            ),
            (
                kind::DATA,
                flag::PADDED,
                b"\x05hi",
                Err(ProtocolError::BadPadding { kind: kind::DATA }),
            ),
            (
                kind::DATA,
                flag::PADDED,
                b"",
                Err(ProtocolError::BadPadding { kind: kind::DATA }),
            ),
            (
                kind::HEADERS,
                flag::PRIORITY,
                b"\0\0",
                Err(ProtocolError::ShortPriority),
            ),
        ];
        for (k, f, payload, want) in cases {
            let h = FrameHeader {
                length: payload.len(),
                kind: *k,
                flags: *f,
                stream: 1,
            };
            assert_eq!(
                frame_content(&h, payload),
                want.clone().map(<[u8]>::to_vec),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn grpc_prefix_and_messages() {
        assert_eq!(grpc_message(b""), [0, 0, 0, 0, 0]);
        assert_eq!(grpc_message(b"ab"), [0, 0, 0, 0, 2, b'a', b'b']);
        let two = [grpc_message(b"x"), grpc_message(b"")].concat();
        assert_eq!(grpc_messages(&two).unwrap(), [b"x".to_vec(), Vec::new()]);
        assert!(grpc_messages(&[0, 0, 0, 0, 3, 1]).is_err());
        assert!(grpc_messages(&[0, 0]).is_err());
        assert!(grpc_messages(&[1, 0, 0, 0, 0]).is_err());
    }
}
