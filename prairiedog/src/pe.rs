//! Just enough of the PE/COFF format (Microsoft "PE Format", sections "MS-DOS Stub",
//! "COFF File Header", "Optional Header" and "Section Table") to read a unified kernel image:
//! its sections by name (`.cmdline`, `.linux`, `.initrd`), where the image ends in memory
//! (the image builder places new sections there) and where its Authenticode signature
//! (the certificate table, data directory 4) sits in the file.
//!
//! Parsing takes untrusted bytes (an update payload) and never panics: every offset is
//! checked against the buffer.

use std::fmt;

/// Why bytes are not a PE image this module can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeError {
    /// Shorter than a header or a field it points to.
    Truncated { what: &'static str },
    /// No `MZ` or no `PE\0\0` signature.
    NotPe,
    /// An optional-header magic other than PE32 (0x10b) or PE32+ (0x20b).
    Magic(u16),
}

impl fmt::Display for PeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeError::Truncated { what } => write!(f, "PE image truncated in its {what}"),
            PeError::NotPe => f.write_str("not a PE image (no MZ/PE signature)"),
            PeError::Magic(m) => write!(f, "unknown PE optional header magic {m:#x}"),
        }
    }
}

impl std::error::Error for PeError {}

/// One entry of the section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name, NUL padding removed (`.linux`).
    pub name: String,
    pub virtual_address: u32,
    pub virtual_size: u32,
    pub raw_offset: u32,
    pub raw_size: u32,
}

/// The parts of a PE image's headers Liftoff reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeInfo {
    /// COFF machine: 0x8664 x86_64, 0xaa64 arm64.
    pub machine: u16,
    pub image_base: u64,
    pub section_alignment: u32,
    /// File offset of the COFF header's `TimeDateStamp` field.
    pub timestamp_offset: usize,
    /// File offset of the optional header's `CheckSum` field.
    pub checksum_offset: usize,
    /// File offset of data directory 4 (the certificate table: offset and size).
    pub cert_dir_offset: Option<usize>,
    /// The certificate table in the file: (offset, size); `None` when unsigned.
    pub cert_table: Option<(usize, usize)>,
    /// `SizeOfHeaders`.
    pub headers_size: usize,
    pub sections: Vec<Section>,
}

fn u16_at(b: &[u8], at: usize, what: &'static str) -> Result<u16, PeError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(PeError::Truncated { what })
}

fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, PeError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(PeError::Truncated { what })
}

fn u64_at(b: &[u8], at: usize, what: &'static str) -> Result<u64, PeError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(PeError::Truncated { what })
}

/// The NUL-terminated name at `offset` in the string table at `table`.
fn long_name(image: &[u8], table: usize, offset: usize) -> Result<String, PeError> {
    let what = "string table";
    let start = table
        .checked_add(offset)
        .ok_or(PeError::Truncated { what })?;
    let rest = image.get(start..).ok_or(PeError::Truncated { what })?;
    let len = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or(PeError::Truncated { what })?;
    Ok(String::from_utf8_lossy(rest.get(..len).unwrap_or_default()).into_owned())
}

impl PeInfo {
    /// Reads the headers and the section table of `image`.
    pub fn parse(image: &[u8]) -> Result<PeInfo, PeError> {
        if image.get(..2) != Some(b"MZ".as_slice()) {
            return Err(PeError::NotPe);
        }
        let pe = u32_at(image, 0x3c, "DOS header")? as usize;
        if image.get(pe..pe + 4) != Some(b"PE\0\0".as_slice()) {
            return Err(PeError::NotPe);
        }
        let coff = pe + 4;
        let machine = u16_at(image, coff, "COFF header")?;
        let sections = u16_at(image, coff + 2, "COFF header")? as usize;
        // Names longer than 8 bytes (".vendor_cert") are "/<offset>" into the COFF string
        // table, which follows the symbol table (18 bytes a symbol).
        let symbols = u32_at(image, coff + 8, "COFF header")? as usize;
        let symbol_count = u32_at(image, coff + 12, "COFF header")? as usize;
        let strings = symbols.saturating_add(symbol_count.saturating_mul(18));
        let opt_size = u16_at(image, coff + 16, "COFF header")? as usize;
        let opt = coff + 20;
        let magic = u16_at(image, opt, "optional header")?;
        let (image_base, dirs_count_at) = match magic {
            0x10b => (u64::from(u32_at(image, opt + 28, "optional header")?), 92),
            0x20b => (u64_at(image, opt + 24, "optional header")?, 108),
            m => return Err(PeError::Magic(m)),
        };
        let section_alignment = u32_at(image, opt + 32, "optional header")?;
        let headers_size = u32_at(image, opt + 60, "optional header")? as usize;
        let dirs = u32_at(image, opt + dirs_count_at, "optional header")?;
        let cert_dir_offset = (dirs > 4).then_some(opt + dirs_count_at + 4 + 4 * 8);
        let cert_table = match cert_dir_offset {
            Some(at) => {
                let offset = u32_at(image, at, "data directories")? as usize;
                let size = u32_at(image, at + 4, "data directories")? as usize;
                (size > 0).then_some((offset, size))
            }
            None => None,
        };
        let table = opt + opt_size;
        let mut list = Vec::with_capacity(sections.min(96));
        for i in 0..sections {
            let at = table + i * 40;
            let raw_name = image.get(at..at + 8).ok_or(PeError::Truncated {
                what: "section table",
            })?;
            let name_len = raw_name.iter().position(|b| *b == 0).unwrap_or(8);
            let short =
                String::from_utf8_lossy(raw_name.get(..name_len).unwrap_or_default()).into_owned();
            let name = match short.strip_prefix('/').map(str::parse::<usize>) {
                Some(Ok(offset)) if symbols != 0 => long_name(image, strings, offset)?,
                _ => short,
            };
            list.push(Section {
                name,
                virtual_size: u32_at(image, at + 8, "section table")?,
                virtual_address: u32_at(image, at + 12, "section table")?,
                raw_size: u32_at(image, at + 16, "section table")?,
                raw_offset: u32_at(image, at + 20, "section table")?,
            });
        }
        Ok(PeInfo {
            machine,
            image_base,
            section_alignment,
            timestamp_offset: coff + 4,
            checksum_offset: opt + 64,
            cert_dir_offset,
            cert_table,
            headers_size,
            sections: list,
        })
    }

    /// The first address past the last section in memory, relative to the image base.
    pub fn end_of_image(&self) -> u64 {
        self.sections
            .iter()
            .map(|s| u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.raw_size)))
            .max()
            .unwrap_or(0)
    }

    /// The section called `name`, if any.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The bytes of section `name` in `image` as loaded (the raw data cut to the virtual
    /// size, which drops the file alignment's padding).
    pub fn section_data<'a>(&self, image: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let s = self.section(name)?;
        let len = s.raw_size.min(s.virtual_size) as usize;
        let start = s.raw_offset as usize;
        image.get(start..start.checked_add(len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PE32+ image with one section, as a linker lays it out.
    fn tiny() -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        b[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        b[0x86..0x88].copy_from_slice(&1u16.to_le_bytes());
        b[0x94..0x96].copy_from_slice(&240u16.to_le_bytes());
        let opt = 0x98;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        b[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let sec = opt + 240;
        b[sec..sec + 8].copy_from_slice(b".cmdline");
        b[sec + 8..sec + 12].copy_from_slice(&5u32.to_le_bytes());
        b[sec + 12..sec + 16].copy_from_slice(&0x1000u32.to_le_bytes());
        b[sec + 16..sec + 20].copy_from_slice(&0x200u32.to_le_bytes());
        b[sec + 20..sec + 24].copy_from_slice(&0x200u32.to_le_bytes());
        b[0x200..0x205].copy_from_slice(b"a b=c");
        b
    }

    #[test]
    fn reads_sections() {
        let image = tiny();
        let pe = PeInfo::parse(&image).unwrap();
        assert_eq!(pe.machine, 0x8664);
        assert_eq!(pe.section_alignment, 0x1000);
        assert_eq!(pe.cert_table, None);
        assert_eq!(
            pe.section_data(&image, ".cmdline"),
            Some(b"a b=c".as_slice())
        );
        assert_eq!(pe.section_data(&image, ".linux"), None);
        assert_eq!(pe.end_of_image(), 0x1200);
    }

    /// A name longer than eight bytes lives in the string table after the symbols.
    #[test]
    fn long_section_names() {
        let mut image = tiny();
        // One symbol at 0x300, so the string table starts at 0x312; the name at offset 4.
        image[0x8c..0x90].copy_from_slice(&0x300u32.to_le_bytes());
        image[0x90..0x94].copy_from_slice(&1u32.to_le_bytes());
        image[0x316..0x323].copy_from_slice(b".vendor_cert\0");
        let sec = 0x98 + 240;
        image[sec..sec + 8].copy_from_slice(b"/4\0\0\0\0\0\0");
        let pe = PeInfo::parse(&image).unwrap();
        assert_eq!(pe.sections[0].name, ".vendor_cert");
        assert_eq!(
            pe.section_data(&image, ".vendor_cert"),
            Some(b"a b=c".as_slice())
        );
        image[0x316..0x400].fill(b'x');
        assert!(PeInfo::parse(&image).is_err(), "a name without its NUL");
    }

    /// Every truncation of a valid image is an error, never a panic.
    #[test]
    fn truncated_and_foreign_bytes() {
        let image = tiny();
        // The last field read is the section's raw offset, ending at 0x1a0.
        for len in 0..0x1a0 {
            assert!(PeInfo::parse(&image[..len]).is_err(), "{len}");
        }
        assert_eq!(PeInfo::parse(b"\x7fELF...."), Err(PeError::NotPe));
        let mut bad = image.clone();
        bad[0x98] = 0x07;
        assert!(matches!(PeInfo::parse(&bad), Err(PeError::Magic(_))));
    }
}
