//! Kernel module loading without modprobe.
//!
//! The image lists the modules it needs in `/etc/liftoff/modules` (one path per line, `#`
//! comments), in any order. PID 1 reads each module's `.modinfo` ELF section for its name
//! and `depends=` list, orders the modules so that every dependency loads first, and loads
//! them with `finit_module(2)`. A dependency that is not listed is taken to be built into
//! the kernel; if it is not, the kernel refuses the module and the error names both.
//!
//! Drivers are loaded only for hardware that is there ([`gate`]): a module with an alias on
//! a hardware bus (PCI, virtio, Xen, ACPI, device tree, platform, SCSI) is skipped unless a
//! device in sysfs matches it, so an image can list the drivers of every machine it may boot
//! on (NVMe, virtio, SCSI, ENA, Xen) and each machine pays only for its own. Modules that
//! only others depend on (`scsi_mod`, `virtio_ring`) load with the first module that needs
//! them. The list is gone through in passes, each looking at each bus in sysfs at most once,
//! until a pass loads nothing: a driver may bring up a bus that others drive (virtio_pci the
//! virtio devices, virtio_scsi the SCSI disks).
//!
//! Each module gets the parameters the kernel command line gives it
//! (`nvme_core.io_timeout=4294967295`), as modprobe passes them from `/proc/cmdline`: the
//! kernel applies `module.param=` itself only to built-in code.
//!
//! Outcomes per module: loaded; already there (`EEXIST`: built in or loaded before); no
//! such hardware (skipped by the alias check, or `ENODEV` from the module: a driver with
//! nothing to drive); anything else is a failure of the modules stage.

pub mod gate;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where the image lists its modules, relative to the root.
pub const LIST: &str = "etc/liftoff/modules";

/// Module name -> its index in a list, for dependency lookups: a sorted `Vec` (a few dozen
/// modules) rather than a `BTreeMap`, which costs PID 1 about 2.5 KiB. A name listed twice
/// finds its last entry, as a map built from the list would.
#[derive(Debug)]
struct Names<'a>(Vec<(&'a str, usize)>);

impl<'a> Names<'a> {
    fn new(names: impl Iterator<Item = &'a str>) -> Names<'a> {
        let mut v: Vec<(&str, usize)> = names.enumerate().map(|(i, n)| (n, i)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
        v.dedup_by(|later, first| later.0 == first.0);
        Names(v)
    }

    fn get(&self, name: &str) -> Option<&usize> {
        let i = self.0.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
        self.0.get(i).map(|(_, index)| index)
    }
}

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
        by_name: &Names<'_>,
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
    let by_name = Names::new(mods.iter().map(|m| m.name.as_str()));
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
    /// The module refused: `ENODEV`.
    NoDevice,
    /// Not loaded: no device matches its aliases.
    Skipped,
}

/// The effects of the modules stage: loading one module file, and looking at the hardware.
pub trait Loader {
    /// Loads the module at `path` with `params` (`name=value ...`, may be empty).
    fn load(&mut self, path: &Path, params: &str) -> io::Result<()>;
    /// The modaliases of the devices on a sysfs bus now, `None` without such a bus
    /// ([`gate::read_bus`] on the root).
    fn bus(&mut self, bus: &str) -> Option<Vec<String>>;
}

/// `finit_module(2)` on the file; the hardware in the root's sysfs.
#[derive(Debug)]
pub struct Kernel<'a> {
    pub root: &'a Path,
}

impl Loader for Kernel<'_> {
    fn load(&mut self, path: &Path, params: &str) -> io::Result<()> {
        let file = std::fs::File::open(path)?;
        let params = std::ffi::CString::new(params)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        rustix::system::finit_module(&file, &params, 0).map_err(io::Error::from)
    }

    fn bus(&mut self, bus: &str) -> Option<Vec<String>> {
        gate::read_bus(self.root, bus)
    }
}

/// The parameters the kernel command line gives module `name`: each `name.key=value`
/// (module names compare with `-` and `_` alike), as `key=value` words for
/// `finit_module`, values with a space quoted.
pub fn cmdline_params(others: &[prairiedog::cmdline::Param], name: &str) -> String {
    let name = normalize(name);
    let mut out = Vec::new();
    for param in others {
        let Some((module, key)) = param.key.split_once('.') else {
            continue;
        };
        if normalize(module) != name || key.is_empty() {
            continue;
        }
        out.push(match &param.value {
            None => key.to_owned(),
            Some(v) if v.contains(' ') => format!("{key}=\"{v}\""),
            Some(v) => format!("{key}={v}"),
        });
    }
    out.join(" ")
}

/// Loads the modules in `<root>/etc/liftoff/modules` in dependency order, drivers only for
/// hardware that is there (see the module docs), each with its parameters from `cmdline`
/// (the command line's other parameters). A missing list means the kernel needs no
/// modules. Returns each module's name and outcome: those loaded in load order, then the
/// skipped ones in list order (a module only others depend on is not named when skipped).
pub fn load_listed(
    loader: &mut impl Loader,
    root: &Path,
    cmdline: &[prairiedog::cmdline::Param],
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
    // Checks for cycles; the order itself comes from each wanted module's dependencies.
    load_order(&infos).map_err(|module| ModuleError::Cycle { module })?;
    let by_name = Names::new(infos.iter().map(|m| m.name.as_str()));
    let is_dependency: Vec<bool> = infos
        .iter()
        .map(|m| infos.iter().any(|other| other.depends.contains(&m.name)))
        .collect();
    let mut state = LoadState {
        loader,
        paths: &paths,
        infos: &infos,
        by_name: &by_name,
        cmdline,
        loaded: vec![false; infos.len()],
        done: Vec::with_capacity(infos.len()),
    };
    let mut decided: Vec<bool> = is_dependency.clone();
    let mut seen = gate::Seen::default();
    loop {
        // Each pass looks at each bus at most once; what a load in this pass brings up is
        // seen by the next.
        seen.clear();
        let mut progress = false;
        for (i, info) in infos.iter().enumerate() {
            if decided.get(i).copied().unwrap_or(true) {
                continue;
            }
            let wanted = seen.wants(&info.aliases, &mut |bus| state.loader.bus(bus));
            if wanted == Some(false) {
                continue;
            }
            state.load_with_dependencies(i)?;
            if let Some(d) = decided.get_mut(i) {
                *d = true;
            }
            progress = true;
        }
        if !progress {
            break;
        }
    }
    let mut done = state.done;
    for (i, info) in infos.iter().enumerate() {
        if !decided.get(i).copied().unwrap_or(true) {
            done.push((info.name.clone(), Outcome::Skipped));
        }
    }
    Ok(done)
}

/// What [`load_listed`] has loaded so far.
struct LoadState<'a, L> {
    loader: &'a mut L,
    paths: &'a [PathBuf],
    infos: &'a [ModInfo],
    by_name: &'a Names<'a>,
    cmdline: &'a [prairiedog::cmdline::Param],
    loaded: Vec<bool>,
    done: Vec<(String, Outcome)>,
}

impl<L: Loader> LoadState<'_, L> {
    /// Loads module `i` after the listed modules it depends on (each once). The list has
    /// no cycles ([`load_order`] said so), so the recursion ends.
    fn load_with_dependencies(&mut self, i: usize) -> Result<(), ModuleError> {
        if self.loaded.get(i).copied().unwrap_or(true) {
            return Ok(());
        }
        if let Some(l) = self.loaded.get_mut(i) {
            *l = true;
        }
        let (Some(path), Some(info)) = (self.paths.get(i), self.infos.get(i)) else {
            return Ok(());
        };
        for dep in &info.depends {
            if let Some(&d) = self.by_name.get(dep.as_str()) {
                self.load_with_dependencies(d)?;
            }
        }
        let params = cmdline_params(self.cmdline, &info.name);
        let outcome = match self.loader.load(path, &params) {
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
        self.done.push((info.name.clone(), outcome));
        Ok(())
    }
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
    use std::collections::BTreeMap;

    #[test]
    fn names_find_the_last_entry_of_a_name() {
        let names = Names::new(["b", "a", "c", "a"].into_iter());
        assert_eq!(names.get("a"), Some(&3));
        assert_eq!(names.get("b"), Some(&0));
        assert_eq!(names.get("c"), Some(&2));
        assert_eq!(names.get("d"), None);
        assert_eq!(Names::new(std::iter::empty()).get("a"), None);
    }

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

    fn m(name: &str, deps: &[&str]) -> ModInfo {
        ModInfo {
            name: name.into(),
            depends: deps.iter().map(|d| d.to_string()).collect(),
            aliases: Vec::new(),
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

    /// Records loads; a loaded module may bring up devices (files it writes under the
    /// fixture root's sysfs), as a bus driver does.
    struct FakeLoader {
        root: PathBuf,
        loaded: Vec<String>,
        params: Vec<String>,
        errno: BTreeMap<String, i32>,
        /// Module file -> (sysfs path under the root, modalias) it makes appear.
        brings_up: BTreeMap<String, (String, String)>,
        scans: usize,
    }

    impl FakeLoader {
        fn new(root: &Path) -> Self {
            FakeLoader {
                root: root.to_path_buf(),
                loaded: vec![],
                params: vec![],
                errno: BTreeMap::new(),
                brings_up: BTreeMap::new(),
                scans: 0,
            }
        }
    }

    impl Loader for FakeLoader {
        fn load(&mut self, path: &Path, params: &str) -> io::Result<()> {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            self.loaded.push(name.clone());
            if !params.is_empty() {
                self.params.push(format!("{name}: {params}"));
            }
            if let Some((dir, alias)) = self.brings_up.get(&name) {
                let dir = self.root.join(dir);
                std::fs::create_dir_all(&dir).unwrap();
                if !alias.is_empty() {
                    std::fs::write(dir.join("modalias"), format!("{alias}\n")).unwrap();
                }
            }
            match self.errno.get(&name) {
                Some(e) => Err(io::Error::from_raw_os_error(*e)),
                None => Ok(()),
            }
        }

        fn bus(&mut self, bus: &str) -> Option<Vec<String>> {
            self.scans += 1;
            gate::read_bus(&self.root, bus)
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
        let mut loader = FakeLoader::new(&root);
        loader.errno = [
            ("a.ko".to_string(), rustix::io::Errno::EXIST.raw_os_error()),
            (
                "wdt.ko".to_string(),
                rustix::io::Errno::NODEV.raw_os_error(),
            ),
        ]
        .into();
        let cmdline = prairiedog::cmdline::parse("b.opt=1 wdt.x a.y=\"p q\" c.z=2").others;
        let done = load_listed(&mut loader, &root, &cmdline).unwrap();
        assert_eq!(loader.loaded, ["a.ko", "b.ko", "wdt.ko"]);
        assert_eq!(
            loader.params,
            ["a.ko: y=\"p q\"", "b.ko: opt=1", "wdt.ko: x"]
        );
        assert_eq!(loader.scans, 0, "no driver listed, no look at sysfs");
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
        let err = load_listed(&mut loader, &root, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("loading module b (") && err.ends_with("(it depends on a)"),
            "{err}"
        );

        std::fs::write(root.join(LIST), "/lib/modules/missing.ko\n").unwrap();
        let err = load_listed(&mut loader, &root, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.ko"), "{err}");

        std::fs::remove_file(root.join(LIST)).unwrap();
        assert_eq!(load_listed(&mut loader, &root, &[]).unwrap(), vec![]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The Debian list on a machine with NVMe only, then with virtio-scsi: drivers load only
    /// for hardware that is there, after the driver that brings their bus up, and libraries
    /// only with a module that needs them.
    #[test]
    fn drivers_load_only_for_their_hardware() {
        let root = std::env::temp_dir().join(format!("liftoff-gated-{}", std::process::id()));
        let setup = |pci: &[&str]| {
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("etc/liftoff")).unwrap();
            std::fs::create_dir_all(root.join("lib/modules")).unwrap();
            for (i, alias) in pci.iter().enumerate() {
                let dir = root.join(format!("sys/bus/pci/devices/0000:00:0{i}.0"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("modalias"), alias).unwrap();
            }
            std::fs::create_dir_all(root.join("sys/bus/virtio/devices")).unwrap();
            let mods: &[(&str, &[u8])] = &[
                // sd_mod first: it must still come after the SCSI host driver.
                (
                    "sd_mod",
                    b"name=sd_mod\0depends=scsi_mod\0alias=scsi:t-0x00*\0alias=block-major-8-*\0",
                ),
                ("scsi_mod", b"name=scsi_mod\0"),
                (
                    "virtio_scsi",
                    b"name=virtio_scsi\0depends=scsi_mod,virtio\0alias=virtio:d00000008v*\0",
                ),
                (
                    "virtio_blk",
                    b"name=virtio_blk\0depends=virtio\0alias=virtio:d00000002v*\0",
                ),
                ("virtio", b"name=virtio\0"),
                (
                    "virtio_pci",
                    b"name=virtio_pci\0depends=virtio\0alias=pci:v00001AF4d*sv*sd*bc*sc*i*\0",
                ),
                (
                    "ena",
                    b"name=ena\0alias=pci:v00001D0Fd0000EC20sv*sd*bc*sc*i*\0",
                ),
                (
                    "xen_blkfront",
                    b"name=xen_blkfront\0alias=xenblk\0alias=xen:vbd\0",
                ),
                ("dm_mod", b"name=dm_mod\0alias=devname:mapper/control\0"),
                ("erofs", b"name=erofs\0alias=fs-erofs\0"),
            ];
            let mut list = String::new();
            for (name, info) in mods {
                let file = format!("lib/modules/{name}.ko");
                std::fs::write(root.join(&file), elf(&[(".modinfo", info)])).unwrap();
                list.push_str(&format!("/{file}\n"));
            }
            std::fs::write(root.join(LIST), list).unwrap();
        };
        let names = |done: &[(String, Outcome)], want: Outcome| -> Vec<String> {
            done.iter()
                .filter(|(_, o)| *o == want)
                .map(|(n, _)| n.clone())
                .collect()
        };

        // NVMe only (built in): no virtio, SCSI, ENA or Xen driver, no library for them.
        setup(&["pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"]);
        let mut loader = FakeLoader::new(&root);
        let done = load_listed(&mut loader, &root, &[]).unwrap();
        assert_eq!(loader.loaded, ["dm_mod.ko", "erofs.ko"]);
        assert_eq!(
            names(&done, Outcome::Skipped),
            [
                "sd_mod",
                "virtio_scsi",
                "virtio_blk",
                "virtio_pci",
                "ena",
                "xen_blkfront"
            ]
        );

        // virtio-scsi: virtio_pci brings up the virtio device, virtio_scsi the SCSI bus
        // (its disks are still being scanned), then sd_mod; virtio_blk has no device.
        setup(&["pci:v00001AF4d00001048sv00001AF4sd00001100bc01sc00i00"]);
        let mut loader = FakeLoader::new(&root);
        loader.brings_up = [
            (
                "virtio_pci.ko".to_string(),
                (
                    "sys/bus/virtio/devices/virtio0".to_string(),
                    "virtio:d00000008v00001AF4".to_string(),
                ),
            ),
            (
                "virtio_scsi.ko".to_string(),
                ("sys/bus/scsi/devices/host0".to_string(), String::new()),
            ),
        ]
        .into();
        let done = load_listed(&mut loader, &root, &[]).unwrap();
        assert_eq!(
            loader.loaded,
            [
                "virtio.ko",
                "virtio_pci.ko",
                "dm_mod.ko",
                "erofs.ko",
                "scsi_mod.ko",
                "virtio_scsi.ko",
                "sd_mod.ko"
            ]
        );
        assert_eq!(
            names(&done, Outcome::Skipped),
            ["virtio_blk", "ena", "xen_blkfront"]
        );
        // Four passes (virtio_pci, virtio_scsi, sd_mod, nothing new), a few buses each.
        assert!(
            loader.scans <= 16,
            "sysfs buses read {} times",
            loader.scans
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
