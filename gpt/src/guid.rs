//! GUIDs as GPT stores them.
//!
//! On disk a GUID is 16 bytes in the "mixed-endian" layout of Microsoft's `GUID` struct: the
//! first three fields (32, 16 and 16 bits) are little-endian, the last 8 bytes are stored in
//! text order. `c12a7328-f81f-11d2-ba4b-00a0c93ec93b` is therefore stored as
//! `28 73 2a c1 1f f8 d2 11 ba 4b 00 a0 c9 3e c9 3b`. [`Guid`] keeps the on-disk bytes and
//! converts only for text.

use std::fmt;
use std::str::FromStr;

/// A GUID in its on-disk (mixed-endian) byte layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid([u8; 16]);

/// Text that is not a canonical `8-4-4-4-12` hexadecimal GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a GUID (want 8-4-4-4-12 hexadecimal digits): {0:?}")]
pub struct ParseGuidError(pub String);

impl Guid {
    /// The all-zero GUID, which marks an unused partition entry.
    pub const NIL: Guid = Guid([0; 16]);

    /// From the 16 bytes exactly as they are stored on disk.
    pub const fn from_disk_bytes(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }

    /// The 16 bytes as they are stored on disk.
    pub const fn to_disk_bytes(self) -> [u8; 16] {
        self.0
    }

    /// From the 128-bit number whose hexadecimal digits are the canonical text, so
    /// `Guid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b)` is the EFI system type.
    pub const fn from_u128(v: u128) -> Guid {
        let text = v.to_be_bytes();
        let mut d = text;
        // Swap the first three fields to little-endian.
        d[0] = text[3];
        d[1] = text[2];
        d[2] = text[1];
        d[3] = text[0];
        d[4] = text[5];
        d[5] = text[4];
        d[6] = text[7];
        d[7] = text[6];
        Guid(d)
    }

    /// The bytes in canonical text order (big-endian fields).
    fn text_bytes(self) -> [u8; 16] {
        let d = self.0;
        [
            d[3], d[2], d[1], d[0], d[5], d[4], d[7], d[6], d[8], d[9], d[10], d[11], d[12], d[13],
            d[14], d[15],
        ]
    }

    /// Whether this is the all-zero GUID.
    pub fn is_nil(self) -> bool {
        self == Guid::NIL
    }
}

impl fmt::Display for Guid {
    /// Canonical lowercase text, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.text_bytes().iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = ParseGuidError;

    /// Parses canonical text (either case); no braces, no `urn:uuid:` prefix.
    fn from_str(s: &str) -> Result<Guid, ParseGuidError> {
        let err = || ParseGuidError(s.to_owned());
        let bytes = s.as_bytes();
        if bytes.len() != 36 {
            return Err(err());
        }
        let mut v: u128 = 0;
        for (i, &c) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(err());
                }
                continue;
            }
            let digit = char::from(c).to_digit(16).ok_or_else(err)?;
            v = (v << 4) | u128::from(digit);
        }
        Ok(Guid::from_u128(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_endian_layout() {
        let g = Guid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b);
        assert_eq!(
            g.to_disk_bytes(),
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert_eq!(g.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    #[test]
    fn parse_round_trip_and_rejects() {
        let ok = [
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            "626F7474-6C65-6474-6861-726D61726B73",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ];
        for s in ok {
            let g: Guid = s.parse().unwrap();
            assert_eq!(g.to_string(), s.to_lowercase());
        }
        let bad = [
            "",
            "c12a7328f81f11d2ba4b00a0c93ec93b",
            "{c12a7328-f81f-11d2-ba4b-00a0c93ec93b}",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93bb",
            "c12a7328-f81f-11d2-ba4b_00a0c93ec93b",
            "g12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec9+b",
        ];
        for s in bad {
            assert!(s.parse::<Guid>().is_err(), "{s:?} parsed");
        }
    }
}
