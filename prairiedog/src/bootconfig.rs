//! The kernel's bootconfig format (Documentation/admin-guide/bootconfig.rst).
//!
//! # Format
//!
//! A bootconfig is appended to an initrd (Liftoff keeps it as a separate initrd on PRIVATE
//! that GRUB loads after the real one, so the initrd itself is never rewritten):
//!
//! ```text
//! [initrd][text][NUL padding][size: le32][checksum: le32]["#BOOTCONFIG\n"]
//! ```
//!
//! - Size rule: `size` is the length of the text plus the NUL padding; the padding (0-3 bytes)
//!   makes the whole file, initrd included, a multiple of 4 bytes long. The footer is 20 bytes,
//!   so `(initrd length + size) % 4 == 0`.
//! - Checksum rule: the sum of the `size` bytes as unsigned 8-bit values, wrapping in a u32
//!   (NUL padding adds nothing).
//! - The kernel looks for the magic at the very end and, because GRUB may pad an initrd to 4
//!   bytes, up to 3 bytes earlier; [`parse`] does the same. The kernel accepts at most 32 KiB
//!   of data.
//!
//! The text [`render`] produces is the flat form the kernel prints in /proc/bootconfig: one
//! `key.word = "value"` a line. [`parse_flat`] reads that form back.

/// The 12-byte magic at the end of a bootconfig.
pub const MAGIC: &[u8; 12] = b"#BOOTCONFIG\n";
/// Alignment of the file holding a bootconfig.
pub const ALIGN: u64 = 4;
/// Largest data the kernel accepts (XBC_DATA_MAX).
pub const MAX_SIZE: usize = 32 * 1024 - 1;
/// size + checksum + magic.
pub const FOOTER_LEN: usize = 8 + MAGIC.len();

/// A bootconfig that cannot be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootconfigError {
    /// The text (with padding) is larger than the kernel accepts.
    #[error("bootconfig of {0} bytes exceeds the kernel's limit of {MAX_SIZE}")]
    TooLarge(usize),
    /// The text holds a NUL byte, which would end it early for the kernel.
    #[error("bootconfig text contains a NUL byte at {0}")]
    Nul(usize),
    /// No `#BOOTCONFIG\n` at the end (nor up to 3 bytes before it).
    #[error("no bootconfig magic at the end")]
    NoMagic,
    /// The size field points before the start of the data.
    #[error("bootconfig size {size} is larger than the {available} bytes before the footer")]
    SizeOutOfRange {
        /// The size field.
        size: u32,
        /// Bytes available before the footer.
        available: usize,
    },
    /// The checksum field does not match the data.
    #[error("bootconfig checksum {stored:#010x} does not match the data ({computed:#010x})")]
    Checksum {
        /// The checksum field.
        stored: u32,
        /// The sum over the data.
        computed: u32,
    },
    /// A key that is not dot-separated words of `[A-Za-z0-9_-]`.
    #[error("invalid bootconfig key {0:?}")]
    InvalidKey(String),
    /// A value holding both quote characters or a newline cannot be written.
    #[error("bootconfig value for {key} cannot be quoted: {value:?}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// A line of the flat form that is not `key = value[, value...]`.
    #[error("bootconfig line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The checksum rule: the bytes summed as u32, wrapping.
pub fn checksum(data: &[u8]) -> u32 {
    data.iter()
        .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

/// Builds the bytes to append to an initrd of `appended_at` bytes (0 for a bootconfig-only
/// initrd): text, NUL padding, size, checksum, magic.
pub fn build(text: &[u8], appended_at: u64) -> Result<Vec<u8>, BootconfigError> {
    if let Some(i) = text.iter().position(|&b| b == 0) {
        return Err(BootconfigError::Nul(i));
    }
    let end = appended_at.wrapping_add(text.len() as u64);
    let pad = ((ALIGN - end % ALIGN) % ALIGN) as usize;
    let size = text.len() + pad;
    let size32 = u32::try_from(size)
        .ok()
        .filter(|_| size <= MAX_SIZE)
        .ok_or(BootconfigError::TooLarge(size))?;
    let mut out = Vec::with_capacity(size + FOOTER_LEN);
    out.extend_from_slice(text);
    out.resize(size, 0);
    out.extend_from_slice(&size32.to_le_bytes());
    out.extend_from_slice(&checksum(text).to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(out)
}

/// A bootconfig found at the end of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Where the bootconfig data starts: the length of the initrd before it.
    pub offset: usize,
    /// The text, without the NUL padding.
    pub text: &'a [u8],
    /// The size field (text plus padding).
    pub size: u32,
    /// The checksum field (verified).
    pub checksum: u32,
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Finds and checks the bootconfig at the end of `blob` (an initrd with a bootconfig appended),
/// like the kernel: magic at the end or up to 3 bytes before it, size in range, checksum.
pub fn parse(blob: &[u8]) -> Result<Parsed<'_>, BootconfigError> {
    let magic_at = (0..ALIGN as usize)
        .filter_map(|back| blob.len().checked_sub(MAGIC.len() + back))
        .find(|&at| blob.get(at..at + MAGIC.len()) == Some(MAGIC.as_slice()))
        .ok_or(BootconfigError::NoMagic)?;
    let header = magic_at.checked_sub(8).ok_or(BootconfigError::NoMagic)?;
    let (size, stored) = match (le32(blob, header), le32(blob, header + 4)) {
        (Some(size), Some(stored)) => (size, stored),
        _ => return Err(BootconfigError::NoMagic),
    };
    let offset = usize::try_from(size)
        .ok()
        .and_then(|s| header.checked_sub(s))
        .ok_or(BootconfigError::SizeOutOfRange {
            size,
            available: header,
        })?;
    let data = blob.get(offset..header).unwrap_or_default();
    let computed = checksum(data);
    if computed != stored {
        return Err(BootconfigError::Checksum { stored, computed });
    }
    let text_len = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    Ok(Parsed {
        offset,
        text: data.get(..text_len).unwrap_or_default(),
        size,
        checksum: stored,
    })
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Renders `key = "value"` lines (a value holding `"` is quoted with `'`).
pub fn render(entries: &[(String, String)]) -> Result<String, BootconfigError> {
    let mut text = String::new();
    for (key, value) in entries {
        if !valid_key(key) {
            return Err(BootconfigError::InvalidKey(key.clone()));
        }
        let quote = if !value.contains('"') {
            '"'
        } else if !value.contains('\'') {
            '\''
        } else {
            return Err(BootconfigError::InvalidValue {
                key: key.clone(),
                value: value.clone(),
            });
        };
        if value.contains(['\n', '\0']) {
            return Err(BootconfigError::InvalidValue {
                key: key.clone(),
                value: value.clone(),
            });
        }
        text.push_str(&format!("{key} = {quote}{value}{quote}\n"));
    }
    Ok(text)
}

/// Parses the flat form (`key = "v1", "v2"` lines, as /proc/bootconfig prints and [`render`]
/// writes; `#` comments and blank lines skipped). Array values are joined with a space, as
/// the kernel does when it passes `kernel.` keys on the command line.
pub fn parse_flat(text: &str) -> Result<Vec<(String, String)>, BootconfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (key, rest) = trimmed.split_once('=').ok_or(BootconfigError::Syntax {
            line,
            reason: "no '='",
        })?;
        let key = key.trim();
        if !valid_key(key) {
            return Err(BootconfigError::InvalidKey(key.to_owned()));
        }
        // The values joined with spaces (not `join`: its copying code is about 1 KiB of
        // PID 1 per element type).
        let mut values = String::new();
        let mut count = 0;
        let mut rest = rest.trim().trim_end_matches(';').trim_end();
        while !rest.is_empty() {
            let (value, after) = match rest.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = rest.get(1..).unwrap_or_default();
                    let close = body.find(q).ok_or(BootconfigError::Syntax {
                        line,
                        reason: "unterminated quote",
                    })?;
                    (
                        body.get(..close).unwrap_or_default(),
                        body.get(close + 1..).unwrap_or_default(),
                    )
                }
                _ => match rest.find(',') {
                    Some(comma) => (
                        rest.get(..comma).unwrap_or_default().trim_end(),
                        rest.get(comma..).unwrap_or_default(),
                    ),
                    None => (rest, ""),
                },
            };
            if count > 0 {
                values.push(' ');
            }
            values.push_str(value);
            count += 1;
            let after = after.trim_start();
            rest = match after.strip_prefix(',') {
                Some(next) => next.trim_start(),
                None if after.is_empty() => "",
                None => {
                    return Err(BootconfigError::Syntax {
                        line,
                        reason: "expected ',' between values",
                    })
                }
            };
        }
        out.push((key.to_owned(), values));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked vectors. Text `a = "1"\n` is 8 bytes: 0x61+0x20+0x3d+0x20+0x22+0x31+0x22+0x0a
    /// = 97+32+61+32+34+49+34+10 = 349 = 0x15d; already 4-aligned, so no padding, size 8.
    #[test]
    fn golden_vectors() {
        // (text, appended_at, expected bytes)
        let table: &[(&[u8], u64, &[u8])] = &[
            (
                b"a = \"1\"\n",
                0,
                b"a = \"1\"\n\x08\0\0\0\x5d\x01\0\0#BOOTCONFIG\n",
            ),
            // "k=v\n" + 0 bytes before: 4 bytes, no padding; sum 107+61+118+10 = 296 = 0x128.
            (b"k=v\n", 0, b"k=v\n\x04\0\0\0\x28\x01\0\0#BOOTCONFIG\n"),
            // Appended after a 3-byte initrd: 3 + 4 = 7, one NUL pads to 8; size 5.
            (b"k=v\n", 3, b"k=v\n\0\x05\0\0\0\x28\x01\0\0#BOOTCONFIG\n"),
            // "x" alone: 3 NULs; sum 0x78.
            (b"x", 0, b"x\0\0\0\x04\0\0\0\x78\0\0\0#BOOTCONFIG\n"),
            // Empty text: size 0, checksum 0.
            (b"", 0, b"\0\0\0\0\0\0\0\0#BOOTCONFIG\n"),
        ];
        for (text, at, want) in table {
            let got = build(text, *at).unwrap();
            assert_eq!(&got, want, "{text:?} at {at}");
            let mut file = vec![0xaa; *at as usize];
            file.extend_from_slice(&got);
            assert_eq!(file.len() % 4, 0, "{text:?}: file aligned to 4");
            let p = parse(&file).unwrap();
            assert_eq!((p.offset, p.text), (*at as usize, *text));
        }
    }

    #[test]
    fn checksum_wraps() {
        let data = vec![0xffu8; 32767];
        assert_eq!(checksum(&data), 32767 * 255);
        assert_eq!(checksum(&[]), 0);
    }

    #[test]
    fn parse_tolerates_grub_alignment_and_rejects_damage() {
        let mut blob = b"initrd".to_vec();
        blob.extend(build(b"kernel.quiet = \"\"\n", 6).unwrap());
        for extra in 0..4 {
            let mut padded = blob.clone();
            padded.resize(blob.len() + extra, 0);
            assert_eq!(
                parse(&padded).unwrap().offset,
                6,
                "{extra} bytes of GRUB padding"
            );
        }
        let mut wrong_sum = blob.clone();
        wrong_sum[8] ^= 1;
        assert!(matches!(
            parse(&wrong_sum),
            Err(BootconfigError::Checksum { .. })
        ));
        let mut huge = blob.clone();
        let at = huge.len() - FOOTER_LEN;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&huge),
            Err(BootconfigError::SizeOutOfRange { .. })
        ));
        assert_eq!(parse(b"#BOOTCONFIG\n"), Err(BootconfigError::NoMagic));
        assert_eq!(parse(b""), Err(BootconfigError::NoMagic));
        assert_eq!(build(b"a\0b", 0), Err(BootconfigError::Nul(1)));
        assert!(matches!(
            build(&[b'x'; MAX_SIZE + 1], 0),
            Err(BootconfigError::TooLarge(_))
        ));
    }

    #[test]
    fn render_and_parse_flat_round_trip() {
        let entries = vec![
            ("kernel.console".to_owned(), "ttyS0,115200".to_owned()),
            ("init.liftoff.handoff".to_owned(), "containerd".to_owned()),
            ("kernel.say".to_owned(), "it's \"quoted\"".replace('\'', "")),
            ("kernel.empty".to_owned(), String::new()),
        ];
        let text = render(&entries).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("kernel.console = \"ttyS0,115200\"")
        );
        assert_eq!(parse_flat(&text).unwrap(), entries);
        assert_eq!(
            parse_flat("# c\n\nkernel.a = \"x\", 'y' ,z;\n").unwrap(),
            vec![("kernel.a".to_owned(), "x y z".to_owned())]
        );
        assert!(render(&[("bad key".into(), "v".into())]).is_err());
        assert!(render(&[("k".into(), "both ' and \"".into())]).is_err());
        assert!(matches!(
            parse_flat("novalue\n"),
            Err(BootconfigError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse_flat("k = \"open\n"),
            Err(BootconfigError::Syntax { .. })
        ));
        assert!(matches!(
            parse_flat("k = \"a\" \"b\"\n"),
            Err(BootconfigError::Syntax { .. })
        ));
    }
}
