//! What a kernel module says about itself: the `.modinfo` section of its ELF file (`name=`,
//! `depends=`, `alias=` entries, NUL-separated), read on the build host so that PID 1 never
//! reads a module file before `finit_module(2)` ([`crate::initramfs`] writes what it needs
//! into `/etc/liftoff/modules`).

use std::fmt;

/// What `.modinfo` says about one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModInfo {
    /// Module name with `-` written as `_`, as the kernel names it.
    pub name: String,
    pub depends: Vec<String>,
    /// `alias=` entries: the devices (and other names) the module is loaded for.
    pub aliases: Vec<String>,
}

/// Why a module file could not be read as a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    NotElf64LittleEndian,
    Truncated(&'static str),
    NoModinfo,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => write!(f, "not an ELF file (a compressed module?)"),
            ElfError::NotElf64LittleEndian => {
                write!(f, "not a 64-bit little-endian ELF file")
            }
            ElfError::Truncated(what) => write!(f, "truncated ELF file ({what} out of bounds)"),
            ElfError::NoModinfo => write!(f, "no .modinfo section (not a kernel module?)"),
        }
    }
}

impl std::error::Error for ElfError {}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Returns the bytes of the `.modinfo` section of a 64-bit little-endian ELF module.
pub fn modinfo_section(elf: &[u8]) -> Result<&[u8], ElfError> {
    if elf.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian.
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(ElfError::NotElf64LittleEndian);
    }
    let header = ElfError::Truncated("ELF header");
    let shoff =
        usize::try_from(le_u64(elf, 0x28).ok_or(header.clone())?).map_err(|_| header.clone())?;
    let shentsize = usize::from(le_u16(elf, 0x3a).ok_or(header.clone())?);
    let shnum = usize::from(le_u16(elf, 0x3c).ok_or(header.clone())?);
    let shstrndx = usize::from(le_u16(elf, 0x3e).ok_or(header)?);
    if shentsize < 0x40 {
        return Err(ElfError::Truncated("section header size"));
    }
    let table_end = shnum
        .checked_mul(shentsize)
        .and_then(|n| n.checked_add(shoff));
    if table_end.is_none_or(|end| end > elf.len()) {
        return Err(ElfError::Truncated("section header table"));
    }
    let section = |i: usize| -> Result<(u32, &[u8]), ElfError> {
        let bad = ElfError::Truncated("section header");
        let at = i
            .checked_mul(shentsize)
            .and_then(|o| o.checked_add(shoff))
            .ok_or(bad.clone())?;
        let name = le_u32(elf, at).ok_or(bad.clone())?;
        let offset = le_u64(elf, at + 0x18).ok_or(bad.clone())?;
        let size = le_u64(elf, at + 0x20).ok_or(bad)?;
        let data = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(o, s)| elf.get(o..o.checked_add(s)?))
            .ok_or(ElfError::Truncated("section data"))?;
        Ok((name, data))
    };
    let (_, names) = section(shstrndx)?;
    for i in 0..shnum {
        let (name_off, data) = section(i)?;
        let name = usize::try_from(name_off)
            .ok()
            .and_then(|o| names.get(o..))
            .and_then(|n| n.split(|b| *b == 0).next());
        if name == Some(b".modinfo".as_slice()) {
            return Ok(data);
        }
    }
    Err(ElfError::NoModinfo)
}

/// Reads name, dependencies and aliases from a module image. `file_stem` names the module
/// when its `.modinfo` has no `name=` (older kernels).
pub fn modinfo(elf: &[u8], file_stem: &str) -> Result<ModInfo, ElfError> {
    let section = modinfo_section(elf)?;
    let mut name = None;
    let mut depends = Vec::new();
    let mut aliases = Vec::new();
    for entry in section.split(|b| *b == 0) {
        let Ok(entry) = std::str::from_utf8(entry) else {
            continue;
        };
        if let Some(n) = entry.strip_prefix("name=") {
            name = Some(normalize(n));
        } else if let Some(d) = entry.strip_prefix("depends=") {
            depends.extend(d.split(',').filter(|s| !s.is_empty()).map(normalize));
        } else if let Some(a) = entry.strip_prefix("alias=") {
            aliases.push(a.to_owned());
        }
    }
    Ok(ModInfo {
        name: name.unwrap_or_else(|| normalize(file_stem)),
        depends,
        aliases,
    })
}

/// The kernel's module names use `_` where file names may use `-`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 LE image with the given sections (name, data).
    pub(crate) fn elf(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut names = vec![0u8];
        let mut name_offs = Vec::new();
        for (n, _) in sections {
            name_offs.push(names.len() as u32);
            names.extend_from_slice(n.as_bytes());
            names.push(0);
        }
        let shstrtab_name = names.len() as u32;
        names.extend_from_slice(b".shstrtab\0");
        let mut out = vec![0u8; 0x40];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        let mut offs = Vec::new();
        for (_, data) in sections {
            offs.push(out.len() as u64);
            out.extend_from_slice(data);
        }
        let names_off = out.len() as u64;
        out.extend_from_slice(&names);
        let shoff = out.len() as u64;
        let shnum = sections.len() + 2;
        // Null section, then ours, then .shstrtab.
        out.extend_from_slice(&[0u8; 0x40]);
        let mut sh = |name: u32, off: u64, size: u64| {
            let mut h = [0u8; 0x40];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&h);
        };
        for (i, (_, data)) in sections.iter().enumerate() {
            sh(name_offs[i], offs[i], data.len() as u64);
        }
        sh(shstrtab_name, names_off, names.len() as u64);
        out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&(shnum as u16).to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&((shnum - 1) as u16).to_le_bytes());
        out
    }

    #[test]
    fn reads_modinfo() {
        let image = elf(&[
            (".text", b"\x90\x90"),
            (
                ".modinfo",
                b"license=GPL\0alias=devname:x\0depends=dm-mod,dm-bufio,reed_solomon\0name=dm_verity\0alias=pci:v*\0",
            ),
        ]);
        assert_eq!(
            modinfo(&image, "dm-verity").unwrap(),
            ModInfo {
                name: "dm_verity".into(),
                depends: vec!["dm_mod".into(), "dm_bufio".into(), "reed_solomon".into()],
                aliases: vec!["devname:x".into(), "pci:v*".into()],
            }
        );
        let image = elf(&[(".modinfo", b"depends=\0")]);
        assert_eq!(
            modinfo(&image, "virtio-blk").unwrap(),
            ModInfo {
                name: "virtio_blk".into(),
                depends: vec![],
                aliases: vec![],
            }
        );
    }

    #[test]
    fn rejects_bad_files() {
        assert_eq!(modinfo(b"hello", "x"), Err(ElfError::NotElf));
        assert_eq!(
            modinfo(b"\x7fELF\x01\x01", "x"),
            Err(ElfError::NotElf64LittleEndian)
        );
        assert_eq!(
            modinfo(b"\x7fELF\x02\x01", "x"),
            Err(ElfError::Truncated("ELF header"))
        );
        assert_eq!(
            modinfo(&elf(&[(".text", b"x")]), "x"),
            Err(ElfError::NoModinfo)
        );
        let mut image = elf(&[(".modinfo", b"name=x\0")]);
        image.truncate(image.len() - 10);
        assert!(matches!(modinfo(&image, "x"), Err(ElfError::Truncated(_))));
        // Every truncation of a valid image is an error, never a panic.
        let image = elf(&[(".modinfo", b"name=x\0depends=y\0")]);
        for n in 0..image.len() {
            assert!(modinfo(&image[..n], "x").is_err());
        }
    }
}
