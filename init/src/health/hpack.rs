//! HPACK, HTTP/2's header compression (RFC 7541). What we send uses literal fields that
//! never enter the peer's table and no Huffman coding ([`encode_literal`]); what the server
//! sends can use the static table, its dynamic table and Huffman-coded strings, so
//! [`Decoder`] implements all of HPACK's decoding side.

use std::collections::VecDeque;
use std::fmt;

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
    use crate::health::test_support::{fields, hex};

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
}
