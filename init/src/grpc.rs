//! Just enough gRPC over HTTP/2 to ask containerd one question: pure functions over bytes.
//!
//! A unary gRPC call is one HTTP/2 stream (RFC 9113):
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
//! Header lists are compressed with HPACK (RFC 7541): what we send uses literal fields that
//! never enter the peer's table and no Huffman coding ([`encode_literal`]); what the server
//! sends can use the static table, its dynamic table and Huffman-coded strings, so
//! [`Decoder`] implements all of HPACK's decoding side.
//!
//! The protobuf messages are read field by field ([`proto_fields`]): containerd's version
//! response has field 1 `version` and field 2 `revision`, both strings.

use std::collections::VecDeque;
use std::fmt;

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

/// A protobuf field value: wire types varint (0), 64-bit (1), length-delimited (2), 32-bit (5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoValue {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
    Fixed32(u32),
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, ProtocolError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes
            .split_first()
            .ok_or_else(|| ProtocolError::Protobuf("varint cut short".to_owned()))?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ProtocolError::Protobuf(
        "varint longer than 10 bytes".to_owned(),
    ))
}

/// The (field number, value) pairs of a protobuf message, in order.
pub fn proto_fields(mut bytes: &[u8]) -> Result<Vec<(u64, ProtoValue)>, ProtocolError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let field = key >> 3;
        let value = match key & 7 {
            0 => ProtoValue::Varint(read_varint(&mut bytes)?),
            1 => {
                let (v, rest) = bytes
                    .split_first_chunk::<8>()
                    .ok_or_else(|| ProtocolError::Protobuf("64-bit field cut short".to_owned()))?;
                bytes = rest;
                ProtoValue::Fixed64(u64::from_le_bytes(*v))
            }
            2 => {
                let len = usize::try_from(read_varint(&mut bytes)?).unwrap_or(usize::MAX);
                let v = bytes.get(..len).ok_or_else(|| {
                    ProtocolError::Protobuf(format!(
                        "field {field}: {len} bytes, {} left",
                        bytes.len()
                    ))
                })?;
                bytes = bytes.get(len..).unwrap_or_default();
                ProtoValue::Bytes(v.to_vec())
            }
            5 => {
                let (v, rest) = bytes
                    .split_first_chunk::<4>()
                    .ok_or_else(|| ProtocolError::Protobuf("32-bit field cut short".to_owned()))?;
                bytes = rest;
                ProtoValue::Fixed32(u32::from_le_bytes(*v))
            }
            other => {
                return Err(ProtocolError::Protobuf(format!(
                    "field {field} has unknown wire type {other}"
                )))
            }
        };
        out.push((field, value));
    }
    Ok(out)
}

/// Appends an HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1); `first` holds
/// the bits above the prefix.
pub fn encode_integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        // value < 2^n <= 128 fits a byte.
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a header field as an HPACK "literal without indexing, new name" with plain
/// (not Huffman-coded) strings (RFC 7541 section 6.2.2).
pub fn encode_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    for s in [name, value] {
        encode_integer(out, 0x00, 7, s.len());
        out.extend_from_slice(s.as_bytes());
    }
}

/// A header block that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HpackError {
    Truncated,
    IntegerOverflow,
    /// An index beyond the static and dynamic tables.
    BadIndex(usize),
    /// A table size update above the limit we announced.
    TableSizeTooBig(usize),
    /// A table size update after the first field of a block.
    LateSizeUpdate,
    /// A Huffman string with the EOS symbol, a bad code or bad padding.
    Huffman,
    NotUtf8,
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HpackError::Truncated => f.write_str("cut short"),
            HpackError::IntegerOverflow => f.write_str("integer too large"),
            HpackError::BadIndex(i) => write!(f, "index {i} is in no table"),
            HpackError::TableSizeTooBig(s) => write!(f, "table size {s} is above the limit"),
            HpackError::LateSizeUpdate => f.write_str("table size update after a field"),
            HpackError::Huffman => f.write_str("bad Huffman string"),
            HpackError::NotUtf8 => f.write_str("a name or value is not UTF-8"),
        }
    }
}

/// The static table (RFC 7541 Appendix A); index 1 is the first entry.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Code lengths in bits of the HPACK Huffman code for symbols 0..=255 and EOS (256), from
/// RFC 7541 Appendix B. The code is canonical: sorting the symbols by (length, symbol) and
/// counting up, shifting left when the length grows, gives every code in the table, so the
/// lengths are all a decoder needs.
const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 32 ' '
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 48 '0'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 64 '@'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 80 'P'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 96 '`'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 112 'p'
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240
    30, // EOS
];

const EOS: u16 = 256;
const MAX_CODE_LEN: usize = 30;

/// The canonical code's decoding tables: for each length, the first code, how many codes
/// there are, and where its symbols start in the sorted symbol list.
struct Canonical {
    first: [u32; MAX_CODE_LEN + 1],
    count: [u16; MAX_CODE_LEN + 1],
    offset: [u16; MAX_CODE_LEN + 1],
    symbols: [u16; 257],
}

fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; MAX_CODE_LEN + 1],
        count: [0; MAX_CODE_LEN + 1],
        offset: [0; MAX_CODE_LEN + 1],
        symbols: [0; 257],
    };
    for &len in &HUFFMAN_LENGTHS {
        if let Some(n) = c.count.get_mut(usize::from(len)) {
            *n += 1;
        }
    }
    let mut code = 0u32;
    let mut offset = 0u16;
    for len in 1..=MAX_CODE_LEN {
        let prev = c.count.get(len - 1).copied().unwrap_or(0);
        code = (code + u32::from(prev)) << 1;
        if let (Some(f), Some(o)) = (c.first.get_mut(len), c.offset.get_mut(len)) {
            *f = code;
            *o = offset;
        }
        offset += c.count.get(len).copied().unwrap_or(0);
    }
    // Symbols sorted by (length, symbol): a counting sort over the lengths.
    let mut next = c.offset;
    for (symbol, &len) in (0u16..).zip(HUFFMAN_LENGTHS.iter()) {
        if let Some(slot) = next.get_mut(usize::from(len)) {
            if let Some(s) = c.symbols.get_mut(usize::from(*slot)) {
                *s = symbol;
            }
            *slot += 1;
        }
    }
    c
}

/// Decodes a Huffman-coded string (RFC 7541 section 5.2).
pub fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, HpackError> {
    let table = canonical();
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5);
    let mut code = 0u32;
    let mut len = 0usize;
    // Whether the bits since the last symbol are all ones (the only valid padding).
    let mut all_ones = true;
    for &byte in bytes {
        for bit in (0..8).rev() {
            let b = u32::from(byte >> bit & 1);
            code = code << 1 | b;
            len += 1;
            all_ones &= b == 1;
            if len > MAX_CODE_LEN {
                return Err(HpackError::Huffman);
            }
            let (first, count, offset) = match (
                table.first.get(len),
                table.count.get(len),
                table.offset.get(len),
            ) {
                (Some(&f), Some(&c), Some(&o)) => (f, c, o),
                _ => return Err(HpackError::Huffman),
            };
            if code >= first && code - first < u32::from(count) {
                let index = usize::from(offset) + (code - first) as usize;
                let symbol = table
                    .symbols
                    .get(index)
                    .copied()
                    .ok_or(HpackError::Huffman)?;
                if symbol == EOS {
                    return Err(HpackError::Huffman);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
                all_ones = true;
            }
        }
    }
    // Padding: fewer than 8 bits, all ones (a prefix of EOS).
    if len >= 8 || !all_ones {
        return Err(HpackError::Huffman);
    }
    Ok(out)
}

/// Huffman-codes a string (the inverse of [`huffman_decode`], for tests and tools).
pub fn huffman_encode(bytes: &[u8]) -> Vec<u8> {
    let table = canonical();
    // Each symbol's code from the canonical tables.
    let mut codes = [0u32; 257];
    for len in 1..=MAX_CODE_LEN {
        let (Some(&first), Some(&count), Some(&offset)) = (
            table.first.get(len),
            table.count.get(len),
            table.offset.get(len),
        ) else {
            continue;
        };
        for i in 0..count {
            let Some(&symbol) = table.symbols.get(usize::from(offset + i)) else {
                continue;
            };
            if let Some(c) = codes.get_mut(usize::from(symbol)) {
                *c = first + u32::from(i);
            }
        }
    }
    let mut out = Vec::new();
    let mut acc = 0u64;
    let mut bits = 0u32;
    for &b in bytes {
        let code = codes.get(usize::from(b)).copied().unwrap_or(0);
        let len = u32::from(HUFFMAN_LENGTHS.get(usize::from(b)).copied().unwrap_or(0));
        acc = acc << len | u64::from(code);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
    }
    out
}

/// One decoded header field.
pub type Field = (String, String);

/// The decoding side of HPACK: the dynamic table lives as long as the connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// Newest first.
    table: VecDeque<Field>,
    size: usize,
    max_size: usize,
    /// The limit we announced (SETTINGS_HEADER_TABLE_SIZE, default 4096).
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(4096)
    }
}

fn entry_size(field: &Field) -> usize {
    field.0.len() + field.1.len() + 32
}

fn integer(bytes: &mut &[u8], n: u32) -> Result<usize, HpackError> {
    let (&first, rest) = bytes.split_first().ok_or(HpackError::Truncated)?;
    *bytes = rest;
    let max = (1usize << n) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let (&b, rest) = bytes.split_first().ok_or(HpackError::Truncated)?;
        *bytes = rest;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
        value = value
            .checked_add(usize::from(b & 0x7f) << shift)
            .ok_or(HpackError::IntegerOverflow)?;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

fn string(bytes: &mut &[u8]) -> Result<String, HpackError> {
    let huffman = bytes.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(bytes, 7)?;
    let raw = bytes.get(..len).ok_or(HpackError::Truncated)?;
    *bytes = bytes.get(len..).unwrap_or_default();
    let decoded = if huffman {
        huffman_decode(raw)?
    } else {
        raw.to_vec()
    };
    String::from_utf8(decoded).map_err(|_| HpackError::NotUtf8)
}

impl Decoder {
    pub fn new(limit: usize) -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
        }
    }

    fn get(&self, index: usize) -> Result<Field, HpackError> {
        if index == 0 {
            return Err(HpackError::BadIndex(0));
        }
        if let Some((n, v)) = STATIC_TABLE.get(index - 1) {
            return Ok(((*n).to_owned(), (*v).to_owned()));
        }
        self.table
            .get(index - 1 - STATIC_TABLE.len())
            .cloned()
            .ok_or(HpackError::BadIndex(index))
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.table.pop_back() {
                Some(old) => self.size -= entry_size(&old),
                None => break,
            }
        }
    }

    fn insert(&mut self, field: Field) {
        let size = entry_size(&field);
        self.evict_to(self.max_size.saturating_sub(size));
        // An entry larger than the table empties it and is not added.
        if size <= self.max_size {
            self.size += size;
            self.table.push_front(field);
        }
    }

    /// The dynamic table, newest first.
    pub fn table(&self) -> impl Iterator<Item = &Field> {
        self.table.iter()
    }

    /// Decodes one complete header block.
    pub fn decode(&mut self, mut block: &[u8]) -> Result<Vec<Field>, HpackError> {
        let mut fields = Vec::new();
        while let Some(&b) = block.first() {
            if b & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                fields.push(self.get(index)?);
            } else if b & 0xe0 == 0x20 {
                if !fields.is_empty() {
                    return Err(HpackError::LateSizeUpdate);
                }
                let size = integer(&mut block, 5)?;
                if size > self.limit {
                    return Err(HpackError::TableSizeTooBig(size));
                }
                self.max_size = size;
                self.evict_to(size);
            } else {
                // 01: incremental indexing (6-bit index); 0000 and 0001: without indexing
                // and never indexed (4-bit index). Index 0: the name follows as a string.
                let indexing = b & 0xc0 == 0x40;
                let index = integer(&mut block, if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    string(&mut block)?
                } else {
                    self.get(index)?.0
                };
                let value = string(&mut block)?;
                let field = (name, value);
                if indexing {
                    self.insert(field.clone());
                }
                fields.push(field);
            }
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes from hex written in groups, as RFC 7541 prints them.
    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        verity::hex::decode(&s).unwrap()
    }

    fn fields(list: &[(&str, &str)]) -> Vec<Field> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn integers_round_trip_across_prefix_sizes() {
        // RFC 7541 C.1: 10 in a 5-bit prefix, 1337 in a 5-bit prefix, 42 in an 8-bit one.
        let cases: &[(u32, usize, &[u8])] = &[
            (5, 10, &[0x0a]),
            (5, 1337, &[0x1f, 0x9a, 0x0a]),
            (8, 42, &[0x2a]),
            (7, 126, &[0x7e]),
            (7, 127, &[0x7f, 0x00]),
            (4, 15, &[0x0f, 0x00]),
            (6, 1 << 20, &[0x3f, 0xc1, 0xff, 0x3f]),
        ];
        for &(n, value, want) in cases {
            let mut out = Vec::new();
            encode_integer(&mut out, 0, n, value);
            assert_eq!(out, want, "{value} in {n} bits");
            let mut slice = out.as_slice();
            assert_eq!(integer(&mut slice, n).unwrap(), value);
            assert!(slice.is_empty());
        }
        let mut endless: &[u8] = &[0x7f, 0xff, 0xff];
        assert_eq!(integer(&mut endless, 7), Err(HpackError::Truncated));
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(integer(&mut huge, 7), Err(HpackError::IntegerOverflow));
    }

    #[test]
    fn huffman_code_is_canonical_with_rfc_codes() {
        // Codes from RFC 7541 Appendix B (code as hex, length).
        let cases: &[(u8, u32, u8)] = &[
            (0, 0x1ff8, 13),
            (b' ', 0x14, 6),
            (b'0', 0x0, 5),
            (b'a', 0x3, 5),
            (b'A', 0x21, 6),
            (b'Z', 0xfd, 8),
            (b'z', 0x7b, 7),
            (b'~', 0x1ffd, 13),
            (255, 0x3ffffee, 26),
        ];
        let t = canonical();
        for &(symbol, code, len) in cases {
            let l = usize::from(len);
            assert_eq!(HUFFMAN_LENGTHS[usize::from(symbol)], len, "{symbol}");
            let pos = (0..t.count[l])
                .find(|&i| t.symbols[usize::from(t.offset[l] + i)] == u16::from(symbol))
                .unwrap();
            assert_eq!(t.first[l] + u32::from(pos), code, "symbol {symbol}");
        }
        // EOS: 30 ones.
        assert_eq!(t.first[30] + u32::from(t.count[30]) - 1, 0x3fff_ffff);
        assert_eq!(t.symbols[256], EOS);
    }

    #[test]
    fn huffman_strings_from_rfc_7541_appendix_c() {
        let cases: &[(&str, &str)] = &[
            ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
            ("no-cache", "a8eb 1064 9cbf"),
            ("custom-key", "25a8 49e9 5ba9 7d7f"),
            ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
            ("302", "6402"),
            ("private", "aec3 771a 4b"),
            (
                "Mon, 21 Oct 2013 20:13:21 GMT",
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
            ),
            (
                "https://www.example.com",
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
            ),
            ("", ""),
        ];
        for (text, code) in cases {
            assert_eq!(
                huffman_decode(&hex(code)).unwrap(),
                text.as_bytes(),
                "{text}"
            );
            assert_eq!(huffman_encode(text.as_bytes()), hex(code), "{text}");
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&all)).unwrap(), all);
    }

    #[test]
    fn huffman_rejects_bad_padding_and_eos() {
        let cases: &[(&str, &[u8])] = &[
            ("padding of zeros", &[0x03]),
            ("8 bits of padding", &[0x1f, 0xff]),
            ("EOS", &[0xff, 0xff, 0xff, 0xff]),
        ];
        for (what, bytes) in cases {
            assert_eq!(huffman_decode(bytes), Err(HpackError::Huffman), "{what}");
        }
    }

    #[test]
    fn rfc_7541_c4_requests_with_huffman() {
        let mut d = Decoder::default();
        let blocks = [
            (
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                vec![
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com"),
                ],
            ),
            (
                "8286 84be 5886 a8eb 1064 9cbf",
                vec![
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com"),
                    ("cache-control", "no-cache"),
                ],
            ),
            (
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                vec![
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value"),
                ],
            ),
        ];
        for (block, want) in blocks {
            assert_eq!(d.decode(&hex(block)).unwrap(), fields(&want));
        }
        let table: Vec<_> = d.table().cloned().collect();
        assert_eq!(
            table,
            fields(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(d.size, 164);
    }

    #[test]
    fn rfc_7541_c6_responses_evict_from_a_256_byte_table() {
        let mut d = Decoder::new(256);
        d.max_size = 256;
        let first = "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3";
        assert_eq!(
            d.decode(&hex(first)).unwrap(),
            fields(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        assert_eq!(d.size, 222);
        let second = "4883 640e ffc1 c0bf";
        assert_eq!(
            d.decode(&hex(second)).unwrap(),
            fields(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        assert_eq!(d.size, 222);
        assert_eq!(d.table().next().unwrap(), &(":status".into(), "307".into()));
        assert_eq!(d.table().count(), 4);
    }

    #[test]
    fn hpack_errors() {
        let cases: &[(&str, &[u8], HpackError)] = &[
            ("index 0", &[0x80], HpackError::BadIndex(0)),
            ("index past both tables", &[0xbe], HpackError::BadIndex(62)),
            (
                "size update above limit",
                &[0x3f, 0xe2, 0x1f],
                HpackError::TableSizeTooBig(4097),
            ),
            (
                "late size update",
                &[0x82, 0x20],
                HpackError::LateSizeUpdate,
            ),
            (
                "string cut short",
                &[0x00, 0x05, b'a'],
                HpackError::Truncated,
            ),
            ("not UTF-8", &[0x00, 0x01, 0xff, 0x00], HpackError::NotUtf8),
        ];
        for (what, block, want) in cases {
            assert_eq!(
                Decoder::default().decode(block),
                Err(want.clone()),
                "{what}"
            );
        }
    }

    #[test]
    fn literal_encoding_decodes_back_and_indexes_nothing() {
        let list = [
            (":method", "POST"),
            (":path", "/containerd.services.version.v1.Version/Version"),
            ("x-long", &"v".repeat(300) as &str),
        ];
        let mut block = Vec::new();
        for (n, v) in list {
            encode_literal(&mut block, n, v);
        }
        assert_eq!(&block[..14], b"\x00\x07:method\x04POST");
        let mut d = Decoder::default();
        assert_eq!(d.decode(&block).unwrap(), fields(&list));
        assert_eq!(d.table().count(), 0);
    }

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

    #[test]
    fn protobuf_fields() {
        // version = "1.6.20", revision = "abc", then fields of every other wire type.
        let mut msg = vec![0x0a, 6];
        msg.extend_from_slice(b"1.6.20");
        msg.extend_from_slice(&[0x12, 3, b'a', b'b', b'c']);
        msg.extend_from_slice(&[0x18, 0xac, 0x02]); // 3: varint 300
        msg.extend_from_slice(&[0x21, 1, 0, 0, 0, 0, 0, 0, 0]); // 4: fixed64 1
        msg.extend_from_slice(&[0x2d, 2, 0, 0, 0]); // 5: fixed32 2
        assert_eq!(
            proto_fields(&msg).unwrap(),
            [
                (1, ProtoValue::Bytes(b"1.6.20".to_vec())),
                (2, ProtoValue::Bytes(b"abc".to_vec())),
                (3, ProtoValue::Varint(300)),
                (4, ProtoValue::Fixed64(1)),
                (5, ProtoValue::Fixed32(2)),
            ]
        );
        let bad: &[&[u8]] = &[
            &[0x0a, 5, b'a'],
            &[0x0b],
            &[0x18, 0x80],
            &[0x21, 0],
            &[0x2d],
        ];
        for b in bad {
            assert!(proto_fields(b).is_err(), "{b:?}");
        }
    }

    /// Arbitrary bytes never panic any decoder (debug build: overflow checks on). A small
    /// xorshift generator keeps the run reproducible; the mutations of valid blocks reach
    /// deeper than noise alone.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [
            hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
            hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005"),
            vec![
                0x3f, 0xe1, 0x1f, 0x0a, 0x06, b'1', b'.', b'6', 0x12, 0x01, b'x',
            ],
        ];
        for round in 0..20_000 {
            let mut bytes: Vec<u8> = match seeds.get(round % 4) {
                Some(seed) => seed.clone(),
                None => (0..next() % 40).map(|_| next() as u8).collect(),
            };
            for _ in 0..(next() % 4) {
                if !bytes.is_empty() {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
            }
            let _ = Decoder::new(256).decode(&bytes);
            let _ = huffman_decode(&bytes);
            let _ = proto_fields(&bytes);
            let _ = grpc_messages(&bytes);
            if bytes.len() >= FRAME_HEADER_LEN {
                let h = FrameHeader::parse(bytes[..FRAME_HEADER_LEN].try_into().unwrap());
                let _ = frame_content(&h, &bytes[FRAME_HEADER_LEN..]);
            }
        }
    }
}
