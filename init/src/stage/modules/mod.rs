//! Kernel module loading without modprobe.
//!
//! The image lists the modules it needs in `/etc/liftoff/modules` (one path per line, `#`
//! comments), in any order. PID 1 reads each module's `.modinfo` ELF section for its name
//! and `depends=` list, orders the modules so that every dependency loads first, and loads
//! them with `finit_module(2)`. A dependency that is not listed is taken to be built into
//! the kernel; if it is not, the kernel refuses the module and the error names both.
//!
//! Outcomes per module: loaded; already there (`EEXIST`: built in or loaded before); no
//! such hardware (`ENODEV`, a driver with nothing to drive: a warning); anything else is a
//! failure of the modules stage.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where the image lists its modules, relative to the root.
pub const LIST: &str = "etc/liftoff/modules";

/// What `.modinfo` says about one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModInfo {
    /// Module name with `-` written as `_`, as the kernel names it.
    pub name: String,
    pub depends: Vec<String>,
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
            ElfError::NotElf => write!(f, "not an ELF file"),
            ElfError::NotElf64LittleEndian => {
                write!(f, "not a 64-bit little-endian ELF file")
            }
            ElfError::Truncated(what) => write!(f, "truncated ELF file ({what} out of bounds)"),
            ElfError::NoModinfo => write!(f, "no .modinfo section (not a kernel module?)"),
        }
    }
}

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

/// Reads name and dependencies from a module image. `file_stem` names the module when its
/// `.modinfo` has no `name=` (older kernels).
pub fn modinfo(elf: &[u8], file_stem: &str) -> Result<ModInfo, ElfError> {
    let section = modinfo_section(elf)?;
    let mut name = None;
    let mut depends = Vec::new();
    for entry in section.split(|b| *b == 0) {
        let Ok(entry) = std::str::from_utf8(entry) else {
            continue;
        };
        if let Some(n) = entry.strip_prefix("name=") {
            name = Some(normalize(n));
        } else if let Some(d) = entry.strip_prefix("depends=") {
            depends.extend(d.split(',').filter(|s| !s.is_empty()).map(normalize));
        }
    }
    Ok(ModInfo {
        name: name.unwrap_or_else(|| normalize(file_stem)),
        depends,
    })
}

/// The kernel's module names use `_` where file names may use `-`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Orders modules so each comes after the listed modules it depends on; otherwise keeps
/// list order. Returns indices into `mods`, or the name of a module in a dependency cycle.
pub fn load_order(mods: &[ModInfo]) -> Result<Vec<usize>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit(
        i: usize,
        mods: &[ModInfo],
        by_name: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        order: &mut Vec<usize>,
    ) -> Result<(), String> {
        let Some(info) = mods.get(i) else {
            return Ok(());
        };
        match marks.get(i) {
            Some(Mark::Done) | None => return Ok(()),
            Some(Mark::Visiting) => return Err(info.name.clone()),
            Some(Mark::New) => {}
        }
        if let Some(mark) = marks.get_mut(i) {
            *mark = Mark::Visiting;
        }
        for dep in &info.depends {
            if let Some(&d) = by_name.get(dep.as_str()) {
                visit(d, mods, by_name, marks, order)?;
            }
        }
        if let Some(mark) = marks.get_mut(i) {
            *mark = Mark::Done;
        }
        order.push(i);
        Ok(())
    }
    let by_name: BTreeMap<&str, usize> = mods
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; mods.len()];
    let mut order = Vec::with_capacity(mods.len());
    for i in 0..mods.len() {
        visit(i, mods, &by_name, &mut marks, &mut order)?;
    }
    Ok(order)
}

/// Parses the module list: one path per line, blank lines and `#` comments ignored.
pub fn parse_list(text: &str) -> Vec<PathBuf> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// A failure of the modules stage.
#[derive(Debug)]
pub enum ModuleError {
    ReadList {
        path: PathBuf,
        source: io::Error,
    },
    Read {
        path: PathBuf,
        source: io::Error,
    },
    Parse {
        path: PathBuf,
        source: ElfError,
    },
    Cycle {
        module: String,
    },
    Load {
        path: PathBuf,
        name: String,
        depends: Vec<String>,
        source: io::Error,
    },
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::ReadList { path, source } => {
                write!(f, "reading module list {}: {source}", path.display())
            }
            ModuleError::Read { path, source } => {
                write!(f, "reading module {}: {source}", path.display())
            }
            ModuleError::Parse { path, source } => {
                write!(f, "reading module {}: {source}", path.display())
            }
            ModuleError::Cycle { module } => {
                write!(f, "module {module} is part of a dependency cycle")
            }
            ModuleError::Load {
                path,
                name,
                depends,
                source,
            } => {
                write!(f, "loading module {name} ({}): {source}", path.display())?;
                if !depends.is_empty() {
                    write!(f, " (it depends on {})", depends.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ModuleError {}

/// What happened to one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Loaded,
    AlreadyPresent,
    NoDevice,
}

/// The effect of loading one module file.
pub trait Loader {
    fn load(&mut self, path: &Path) -> io::Result<()>;
}

/// `finit_module(2)` on the file.
#[derive(Debug, Default)]
pub struct Kernel;

impl Loader for Kernel {
    fn load(&mut self, path: &Path) -> io::Result<()> {
        let file = std::fs::File::open(path)?;
        rustix::system::finit_module(&file, c"", 0).map_err(io::Error::from)
    }
}

/// Loads every module in `<root>/etc/liftoff/modules` in dependency order. A missing list
/// means the kernel needs no modules. Returns each module's name and outcome in load order.
pub fn load_listed(
    loader: &mut impl Loader,
    root: &Path,
) -> Result<Vec<(String, Outcome)>, ModuleError> {
    let list_path = root.join(LIST);
    let text = match std::fs::read_to_string(&list_path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ModuleError::ReadList {
                path: list_path,
                source,
            })
        }
    };
    let mut paths = Vec::new();
    let mut infos = Vec::new();
    for listed in parse_list(&text) {
        let path = root.join(listed.strip_prefix("/").unwrap_or(&listed));
        let bytes = std::fs::read(&path).map_err(|source| ModuleError::Read {
            path: path.clone(),
            source,
        })?;
        let stem = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.split('.').next().unwrap_or(n))
            .unwrap_or("");
        let info = modinfo(&bytes, stem).map_err(|source| ModuleError::Parse {
            path: path.clone(),
            source,
        })?;
        paths.push(path);
        infos.push(info);
    }
    let order = load_order(&infos).map_err(|module| ModuleError::Cycle { module })?;
    let mut done = Vec::with_capacity(order.len());
    for i in order {
        let (Some(path), Some(info)) = (paths.get(i), infos.get(i)) else {
            continue;
        };
        let outcome = match loader.load(path) {
            Ok(()) => Outcome::Loaded,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                Outcome::AlreadyPresent
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) => {
                Outcome::NoDevice
            }
            Err(source) => {
                return Err(ModuleError::Load {
                    path: path.clone(),
                    name: info.name.clone(),
                    depends: info.depends.clone(),
                    source,
                })
            }
        };
        done.push((info.name.clone(), outcome));
    }
    Ok(done)
}

/// Switches the kernel's module auto-loading off while PID 1 sets the machine up and gives
/// the next stage the helper it found.
///
/// When a lookup misses (a crypto algorithm by name, a file system type), the kernel starts
/// the helper in `/proc/sys/kernel/modprobe` and waits for it. Before the switch to the
/// root there is none, and the lookup fails at once; after it, the root's `/sbin/modprobe`
/// runs and searches for a module that PID 1 would have loaded itself: dm-crypt's cipher
/// lookups cost 200-350 ms that way on a TCG boot (measured with the yardstick). PID 1
/// loads what it needs from its list, so nothing is lost: an empty helper path makes
/// every such request fail at once (the kernel's `-ENOENT` for "auto-loading disabled").
#[derive(Debug)]
pub struct AutoloadGuard {
    path: PathBuf,
    previous: Option<String>,
}

impl AutoloadGuard {
    /// Empties `<root>/proc/sys/kernel/modprobe`. A kernel without modules has no such
    /// file and nothing to switch off.
    pub fn disable(root: &Path) -> Self {
        let path = root.join("proc/sys/kernel/modprobe");
        let previous = match std::fs::read_to_string(&path) {
            Ok(p) if !p.trim().is_empty() => Some(p.trim_end_matches('\n').to_owned()),
            _ => None,
        };
        if previous.is_some() && std::fs::write(&path, "\n").is_err() {
            return AutoloadGuard {
                path,
                previous: None,
            };
        }
        AutoloadGuard { path, previous }
    }

    /// The helper path found at [`AutoloadGuard::disable`], if it switched one off.
    pub fn previous(&self) -> Option<&str> {
        self.previous.as_deref()
    }

    /// Writes the helper path back, so that the next stage (containerd's runtimes, systemd)
    /// can load modules on demand again.
    pub fn restore(self) -> io::Result<()> {
        match &self.previous {
            Some(previous) => std::fs::write(&self.path, format!("{previous}\n")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoload_guard_empties_and_restores_the_helper() {
        let dir = std::env::temp_dir().join(format!("liftoff-autoload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sysctl = dir.join("proc/sys/kernel");
        std::fs::create_dir_all(&sysctl).unwrap();
        let file = sysctl.join("modprobe");
        std::fs::write(&file, "/sbin/modprobe\n").unwrap();
        let guard = AutoloadGuard::disable(&dir);
        assert_eq!(guard.previous(), Some("/sbin/modprobe"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "\n");
        guard.restore().unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "/sbin/modprobe\n");

        // Already off (an empty helper): stays off.
        std::fs::write(&file, "\n").unwrap();
        let guard = AutoloadGuard::disable(&dir);
        assert_eq!(guard.previous(), None);
        guard.restore().unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "\n");

        // No modules in the kernel: no file, nothing to do.
        std::fs::remove_file(&file).unwrap();
        let guard = AutoloadGuard::disable(&dir);
        assert_eq!(guard.previous(), None);
        guard.restore().unwrap();
        assert!(!file.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
                b"license=GPL\0depends=dm-mod,dm-bufio,reed_solomon\0name=dm_verity\0",
            ),
        ]);
        assert_eq!(
            modinfo(&image, "dm-verity").unwrap(),
            ModInfo {
                name: "dm_verity".into(),
                depends: vec!["dm_mod".into(), "dm_bufio".into(), "reed_solomon".into()],
            }
        );
        let image = elf(&[(".modinfo", b"depends=\0")]);
        assert_eq!(
            modinfo(&image, "virtio-blk").unwrap(),
            ModInfo {
                name: "virtio_blk".into(),
                depends: vec![],
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

    fn m(name: &str, deps: &[&str]) -> ModInfo {
        ModInfo {
            name: name.into(),
            depends: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn orders_dependencies_first() {
        let mods = [
            m("dm_verity", &["dm_mod", "dm_bufio", "reed_solomon"]),
            m("virtio_blk", &["virtio", "virtio_ring"]),
            m("dm_bufio", &[]),
            m("dm_mod", &[]),
            m("virtio", &["virtio_ring"]),
            m("virtio_ring", &[]),
            m("reed_solomon", &[]),
            m("dm_crypt", &["dm_mod", "not_listed"]),
        ];
        let order: Vec<&str> = load_order(&mods)
            .unwrap()
            .into_iter()
            .map(|i| mods[i].name.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "dm_mod",
                "dm_bufio",
                "reed_solomon",
                "dm_verity",
                "virtio_ring",
                "virtio",
                "virtio_blk",
                "dm_crypt"
            ]
        );
    }

    #[test]
    fn cycles_are_errors() {
        let mods = [m("a", &["b"]), m("b", &["c"]), m("c", &["a"])];
        assert!(load_order(&mods).is_err());
        assert!(load_order(&[m("a", &["a"])]).is_err());
    }

    #[test]
    fn list_format() {
        assert_eq!(
            parse_list("# modules\n/lib/a.ko\n\n  /lib/b.ko  # why\n"),
            vec![PathBuf::from("/lib/a.ko"), PathBuf::from("/lib/b.ko")]
        );
    }

    struct FakeLoader {
        loaded: Vec<String>,
        errno: BTreeMap<String, i32>,
    }

    impl Loader for FakeLoader {
        fn load(&mut self, path: &Path) -> io::Result<()> {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            self.loaded.push(name.clone());
            match self.errno.get(&name) {
                Some(e) => Err(io::Error::from_raw_os_error(*e)),
                None => Ok(()),
            }
        }
    }

    #[test]
    fn loads_from_a_root_in_order_and_classifies_errors() {
        let root = std::env::temp_dir().join(format!("liftoff-mods-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/liftoff")).unwrap();
        std::fs::create_dir_all(root.join("lib/modules")).unwrap();
        let write = |n: &str, info: &[u8]| {
            std::fs::write(root.join("lib/modules").join(n), elf(&[(".modinfo", info)])).unwrap()
        };
        write("b.ko", b"name=b\0depends=a\0");
        write("a.ko", b"name=a\0depends=\0");
        write("wdt.ko", b"name=wdt\0");
        std::fs::write(
            root.join(LIST),
            "/lib/modules/b.ko\n/lib/modules/a.ko\n/lib/modules/wdt.ko\n",
        )
        .unwrap();
        let mut loader = FakeLoader {
            loaded: vec![],
            errno: [
                ("a.ko".to_string(), rustix::io::Errno::EXIST.raw_os_error()),
                (
                    "wdt.ko".to_string(),
                    rustix::io::Errno::NODEV.raw_os_error(),
                ),
            ]
            .into(),
        };
        let done = load_listed(&mut loader, &root).unwrap();
        assert_eq!(loader.loaded, ["a.ko", "b.ko", "wdt.ko"]);
        assert_eq!(
            done,
            [
                ("a".to_string(), Outcome::AlreadyPresent),
                ("b".to_string(), Outcome::Loaded),
                ("wdt".to_string(), Outcome::NoDevice)
            ]
        );

        loader
            .errno
            .insert("b.ko".into(), rustix::io::Errno::NOENT.raw_os_error());
        let err = load_listed(&mut loader, &root).unwrap_err().to_string();
        assert!(
            err.starts_with("loading module b (") && err.ends_with("(it depends on a)"),
            "{err}"
        );

        std::fs::write(root.join(LIST), "/lib/modules/missing.ko\n").unwrap();
        let err = load_listed(&mut loader, &root).unwrap_err().to_string();
        assert!(err.contains("missing.ko"), "{err}");

        std::fs::remove_file(root.join(LIST)).unwrap();
        assert_eq!(load_listed(&mut loader, &root).unwrap(), vec![]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
