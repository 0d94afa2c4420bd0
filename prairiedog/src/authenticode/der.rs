//! A reader for the DER subset that Authenticode signatures and X.509 certificates use
//! (ITU-T X.690 section 8.1 and 10.1): one-byte tags (tag numbers below 31), definite
//! lengths in the short form or the long form of one to four bytes. Every element keeps
//! its whole encoding (`raw`) beside its contents, because signatures are checked over the
//! bytes as they were signed, never over a re-encoding.

use std::fmt;

/// Universal and context tags this module's callers name.
pub mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const IA5_STRING: u8 = 0x16;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[0]` constructed (EXPLICIT, or IMPLICIT over a constructed type).
    pub const CONTEXT_0: u8 = 0xa0;
    /// `[1]` constructed.
    pub const CONTEXT_1: u8 = 0xa1;
}

/// Bytes that are not the DER element expected; `what` names the element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerError {
    pub what: &'static str,
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed DER in the {}", self.what)
    }
}

impl std::error::Error for DerError {}

/// One element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    /// The contents octets.
    pub content: &'a [u8],
    /// Tag, length and contents.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A reader over the contents (of a SEQUENCE, SET or explicit tag).
    pub fn reader(&self) -> Reader<'a> {
        Reader { rest: self.content }
    }
}

/// Reads consecutive elements from a buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// Whether every element has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// The tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element, whatever its tag.
    pub fn any(&mut self, what: &'static str) -> Result<Tlv<'a>, DerError> {
        let err = DerError { what };
        let (&tag, after_tag) = self.rest.split_first().ok_or(err)?;
        if tag & 0x1f == 0x1f {
            return Err(err);
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(err)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(err);
            }
            let (bytes, rest) = after_len.split_at_checked(count).ok_or(err)?;
            after_len = rest;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            // DER: the long form only for lengths that need it, without leading zeros.
            if len < 0x80 || bytes.first() == Some(&0) {
                return Err(err);
            }
            len
        };
        let (content, rest) = after_len.split_at_checked(len).ok_or(err)?;
        let header = self.rest.len() - after_len.len();
        let raw = self.rest.get(..header + len).ok_or(err)?;
        self.rest = rest;
        Ok(Tlv { tag, content, raw })
    }

    /// The next element, which must have tag `tag`.
    /// Nothing is read when the tag differs.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        if self.peek_tag() != Some(tag) {
            return Err(DerError { what });
        }
        self.any(what)
    }

    /// The next element if it has tag `tag`, else nothing is read.
    pub fn optional(&mut self, tag: u8, what: &'static str) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.any(what).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails unless every element has been read.
    pub fn finish(&self, what: &'static str) -> Result<(), DerError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DerError { what })
        }
    }
}

/// An `AlgorithmIdentifier` (`SEQUENCE { OID, parameters OPTIONAL }`): the OID's contents.
pub fn algorithm<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], DerError> {
    let seq = r.expect(tag::SEQUENCE, what)?;
    let mut inner = seq.reader();
    let oid = inner.expect(tag::OID, what)?;
    // Parameters: absent or NULL for every algorithm accepted here.
    if let Some(null) = inner.optional(tag::NULL, what)? {
        if !null.content.is_empty() {
            return Err(DerError { what });
        }
    }
    inner.finish(what)?;
    Ok(oid.content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend_from_slice(&[7; 0x80]);
        let bytes = [&[0x30, 0x03, 0x02, 0x01, 0x05][..], &long].concat();
        let mut r = Reader::new(&bytes);
        let seq = r.expect(tag::SEQUENCE, "t").unwrap();
        assert_eq!(seq.raw, &bytes[..5]);
        let int = seq.reader().expect(tag::INTEGER, "t").unwrap();
        assert_eq!(int.content, [5]);
        let oct = r.expect(tag::OCTET_STRING, "t").unwrap();
        assert_eq!(oct.content.len(), 0x80);
        assert_eq!(oct.raw.len(), 0x83);
        assert!(r.is_empty());
    }

    #[test]
    fn refuses_what_der_forbids() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x00],                // longer than the buffer
            &[0x30, 0x80, 0x00, 0x00],          // indefinite length (BER)
            &[0x30, 0x81, 0x05, 1, 2, 3, 4, 5], // long form for a short length
            &[0x30, 0x82, 0x00, 0x80],          // leading zero length byte
            &[0x30, 0x85, 1, 0, 0, 0, 0],       // five length bytes
            &[0x1f, 0x01, 0x00],                // high tag number form
        ] {
            assert!(Reader::new(bad).any("t").is_err(), "{bad:x?}");
        }
        let mut r = Reader::new(&[0x02, 0x01, 0x00]);
        assert!(r.expect(tag::SEQUENCE, "t").is_err());
        assert_eq!(r.optional(tag::SEQUENCE, "t").unwrap(), None);
        assert!(r.finish("t").is_err());
    }
}
