//! Hexadecimal text, the one decoder and encoder of the workspace.
//!
//! Root hashes, salts and UUIDs (veritysetup, the kernel command line, table lines), BLAKE3
//! digests in update manifests and dm-crypt keys in table lines are all written as hex.
//! Decoding accepts either case and needs an even number of digits; encoding writes lower
//! case, as veritysetup and the kernel do. Neither panics on any input.

/// A string that is not an even number of hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHex;

impl std::fmt::Display for NotHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not an even number of hexadecimal digits")
    }
}

impl std::error::Error for NotHex {}

/// Decodes hex digits (either case) into bytes. The empty string is zero bytes.
pub fn decode(s: &str) -> Result<Vec<u8>, NotHex> {
    if !s.len().is_multiple_of(2) {
        return Err(NotHex);
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Ok((nibble(*hi).ok_or(NotHex)? << 4) | nibble(*lo).ok_or(NotHex)?),
            _ => Err(NotHex),
        })
        .collect()
}

/// Decodes exactly `N` bytes (`2 * N` digits).
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], NotHex> {
    decode(s)?.try_into().map_err(|_| NotHex)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Encodes bytes as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    encode_into(&mut s, bytes);
    s
}

/// Appends the lower-case hex of `bytes` to `out`. With enough capacity reserved, `out` is
/// never reallocated, so a secret written into a zeroized buffer leaves no copy behind.
pub fn encode_into(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        for n in [b >> 4, b & 0xf] {
            // `n` is a nibble, so the lookup cannot miss.
            out.push(char::from(
                DIGITS.get(usize::from(n)).copied().unwrap_or(b'0'),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        assert_eq!(decode("00fFa1").unwrap(), vec![0, 0xff, 0xa1]);
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
        assert_eq!(encode(&[0, 0xff, 0xa1]), "00ffa1");
        for bad in ["0", "0g", "zz", "abc", "é0"] {
            assert_eq!(decode(bad), Err(NotHex), "{bad}");
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
    }

    #[test]
    fn fixed_length() {
        assert_eq!(decode_array::<2>("abCD"), Ok([0xab, 0xcd]));
        assert_eq!(decode_array::<2>("abcdef"), Err(NotHex));
        assert_eq!(decode_array::<2>("ab"), Err(NotHex));
    }

    #[test]
    fn appends_without_reallocating() {
        let mut s = String::with_capacity(4);
        let before = s.as_ptr();
        encode_into(&mut s, &[0x12, 0xef]);
        assert_eq!(s, "12ef");
        assert_eq!(s.as_ptr(), before);
    }
}
