//! Kernel module loading without modprobe.
//!
//! The image lists the modules it needs in `/etc/liftoff/modules`, with what each one's
//! `.modinfo` says (name, `depends=`, `alias=`), taken on the build host
//! (`liftoff_image::initramfs` documents the format, version 1), so PID 1 opens a module
//! file only to hand it to `finit_module(2)`. Each module is loaded after the listed
//! modules it depends on; a dependency that is not listed is taken to be built into the
//! kernel (or loaded in an earlier phase); if it is not, the kernel refuses the module and
//! the error names both.
//!
//! Phases ([`Phase`]): the image puts each module in the earliest phase that needs it.
//! `root` modules load before the disk is looked for (disk drivers, and what the stages
//! before verity read: efivarfs, efi-pstore; softdog only with `liftoff.watchdog`, else
//! it waits for the `late` phase); `data` modules (dm-crypt, its ciphers, the SHA-256
//! acceleration dm-verity takes when its table loads, the TPM) load in a child process of
//! PID 1 from the start, with the `verity` ones they need ([`take_dependencies`]:
//! dm-mod), and PID 1 waits for the child before DATA opens; `verity` modules (dm-verity,
//! the root's file systems) load in PID 1 once it has chosen the slot and the child's
//! first modules are in; `late` modules serve only after the handoff (network cards, the
//! power button). Files of the later phases are opened before ([`Opened`]), since the
//! initramfs is freed under them after switch_root (and the child keeps the initramfs as
//! its root), and the hardware the child's modules are gated on is read then too. A child
//! process, not a thread: a thread brings musl's thread support and its `printf` (for
//! `pthread_setname_np`) into PID 1, 33 KiB it does not have.
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
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Where the image lists its modules, relative to the root.
pub const LIST: &str = "etc/liftoff/modules";

/// The list's first line that is not a comment: its format and version.
pub const HEADER: &str = "liftoff-modules 1";

/// Module name -> its index in a list, for dependency lookups: a sorted `Vec` (a few dozen
/// modules) rather than a `BTreeMap`, which costs PID 1 about 2.5 KiB.
#[derive(Debug)]
struct Names<'a>(Vec<(&'a str, usize)>);

impl<'a> Names<'a> {
    fn new(names: impl Iterator<Item = &'a str>) -> Names<'a> {
        let mut v: Vec<(&str, usize)> = names.enumerate().map(|(i, n)| (n, i)).collect();
        v.sort_unstable();
        Names(v)
    }

    fn get(&self, name: &str) -> Option<usize> {
        let i = self.0.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
        self.0.get(i).map(|(_, index)| *index)
    }
}

/// When PID 1 loads a module (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Root,
    Verity,
    Data,
    Late,
}

/// One module of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub phase: Phase,
    /// The kernel's name for it (`_`, not `-`).
    pub name: String,
    pub path: PathBuf,
    pub depends: Vec<String>,
    /// `alias=` entries: the devices (and other names) the module is loaded for.
    pub aliases: Vec<String>,
}

/// Why a line of the list is refused: its number (from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    pub line: usize,
    pub reason: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses the module list (format: `liftoff_image::initramfs`): `#` comment lines and
/// blank lines, then [`HEADER`], then `PHASE NAME PATH DEPENDS [ALIAS ...]` per module,
/// one space between fields, no control characters (`\r` included). Anything else is
/// refused with its line: a list written for another format must not be half understood.
/// Also refused: a name listed twice, and a dependency listed in a later phase than the
/// module needing it.
pub fn parse_list(text: &str) -> Result<Vec<Entry>, ListError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut header = false;
    // Lines end at `\n` only: a `\r` is a character of the line, refused below, so what
    // is accepted reads the same whatever line endings a tool would see.
    for (n, line) in text.split('\n').enumerate() {
        let err = |reason: String| ListError {
            line: n + 1,
            reason,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(c) = line.chars().find(|c| c.is_control()) {
            return Err(err(format!("a control character {c:?}")));
        }
        if !header {
            if line != HEADER {
                return Err(err(format!(
                    "expected {HEADER:?} (a list from another image builder?)"
                )));
            }
            header = true;
            continue;
        }
        let mut words = line.split(' ');
        let mut field = |what: &str| match words.next() {
            Some(w) if !w.is_empty() => Ok(w),
            _ => Err(err(format!("no {what} (or two spaces)"))),
        };
        let phase = match field("phase")? {
            "root" => Phase::Root,
            "verity" => Phase::Verity,
            "data" => Phase::Data,
            "late" => Phase::Late,
            other => return Err(err(format!("unknown phase {other:?}"))),
        };
        let name = field("name")?;
        let path = field("path")?;
        let depends = field("dependencies")?;
        if !valid_name(name) {
            return Err(err(format!("bad module name {name:?}")));
        }
        if !path.starts_with('/') {
            return Err(err(format!("path {path:?} is not absolute")));
        }
        let depends: Vec<String> = if depends == "-" {
            Vec::new()
        } else {
            depends.split(',').map(str::to_owned).collect()
        };
        if let Some(bad) = depends.iter().find(|d| !valid_name(d)) {
            return Err(err(format!("bad dependency {bad:?}")));
        }
        let mut aliases = Vec::new();
        for alias in words {
            if alias.is_empty() {
                return Err(err("an empty alias (two spaces)".to_owned()));
            }
            aliases.push(alias.to_owned());
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(err(format!("module {name} listed twice")));
        }
        entries.push(Entry {
            phase,
            name: name.to_owned(),
            path: PathBuf::from(path),
            depends,
            aliases,
        });
    }
    if !header && !entries.is_empty() {
        return Err(ListError {
            line: 0,
            reason: format!("no {HEADER:?} line"),
        });
    }
    for e in &entries {
        for d in &e.depends {
            if let Some(dep) = entries.iter().find(|x| x.name == *d) {
                if dep.phase > e.phase {
                    return Err(ListError {
                        line: 0,
                        reason: format!("{} needs {d}, which is listed in a later phase", e.name),
                    });
                }
            }
        }
    }
    Ok(entries)
}

/// Reads and parses `<root>/etc/liftoff/modules`, paths taken below `root`. A missing list
/// means the kernel needs no modules.
pub fn read_list(root: &Path) -> Result<Vec<Entry>, ModuleError> {
    let path = root.join(LIST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ModuleError::ReadList { path, source }),
    };
    let mut entries = parse_list(&text).map_err(|source| ModuleError::List { path, source })?;
    for e in &mut entries {
        e.path = root.join(e.path.strip_prefix("/").unwrap_or(&e.path));
    }
    Ok(entries)
}

/// Whether the `beside` modules (a later phase) can load in another process while the
/// `now` ones load: none of them needs one of `now` (its load would fail if that one was
/// not loading yet), and none is a driver gated on hardware (the `now` drivers may bring
/// up its device). Each module's dependencies are listed with it, so the direct ones are
/// enough.
pub fn can_load_beside(beside: &[Entry], now: &[Entry]) -> bool {
    beside.iter().all(|e| {
        !e.depends.iter().any(|d| now.iter().any(|n| n.name == *d))
            && !e.aliases.iter().any(|a| gate::alias_bus(a).is_some())
    })
}

/// `entries` (a later phase) split into those that can load beside `now`
/// ([`can_load_beside`]) and the rest, each part in its order: a module that needs one of
/// the rest is one of the rest.
pub fn split_beside(entries: Vec<Entry>, now: &[Entry]) -> (Vec<Entry>, Vec<Entry>) {
    let (mut early, mut rest): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|e| can_load_beside(std::slice::from_ref(e), now));
    // Until no early module needs a later one (dependencies may be listed after the
    // module that needs them).
    while let Some(i) = early
        .iter()
        .position(|e| e.depends.iter().any(|d| rest.iter().any(|r| r.name == *d)))
    {
        rest.push(early.remove(i));
    }
    (early, rest)
}

/// Moves the entries of `from` that those of `list` need, directly or through each other,
/// into `list` ahead of them; returns the rest of `from`, in its order. (The loader loads
/// each module after the listed ones it depends on, whatever their order.)
pub fn take_dependencies(list: &mut Vec<Entry>, mut from: Vec<Entry>) -> Vec<Entry> {
    let mut taken = Vec::new();
    while let Some(i) = from.iter().position(|f| {
        list.iter()
            .chain(&taken)
            .any(|e: &Entry| e.depends.contains(&f.name))
    }) {
        taken.push(from.remove(i));
    }
    taken.append(list);
    *list = taken;
    from
}

/// Where a kernel's watchdog drivers are in its module tree.
const WATCHDOG_DIR: &str = "kernel/drivers/watchdog";

/// Moves the watchdog drivers of the `root` phase (softdog, and hardware ones: files under
/// the module tree's `drivers/watchdog/`) that no other `root` module needs to the `late`
/// phase: before the handoff only `liftoff.watchdog` opens a watchdog, and without it
/// nothing before the root needs one. The next stage still finds the driver loaded
/// (systemd's `RuntimeWatchdogSec=`).
pub fn defer_watchdogs(root: &mut Vec<Entry>, late: &mut Vec<Entry>) {
    let watchdog = |e: &Entry| e.path.parent().is_some_and(|p| p.ends_with(WATCHDOG_DIR));
    // Last to first, so that the watchdog core (`watchdog`, listed before the drivers
    // that need it) is looked at once they have gone.
    let mut i = root.len();
    while i > 0 {
        i -= 1;
        let needed = root
            .get(i)
            .is_some_and(|e| root.iter().any(|o| o.depends.contains(&e.name)));
        if root.get(i).is_some_and(|e| watchdog(e) && !needed) {
            let mut e = root.remove(i);
            e.phase = Phase::Late;
            late.push(e);
        }
    }
}

/// The kernel's module names use `_` where file names may use `-`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// A failure of the modules stage.
#[derive(Debug)]
pub enum ModuleError {
    ReadList {
        path: PathBuf,
        source: io::Error,
    },
    List {
        path: PathBuf,
        source: ListError,
    },
    Open {
        path: PathBuf,
        source: io::Error,
    },
    Load {
        path: PathBuf,
        name: String,
        depends: Vec<String>,
        source: io::Error,
    },
    /// The process that loaded a phase beside the boot failed (its error, or how it
    /// ended).
    Beside {
        phase: &'static str,
        detail: String,
    },
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::ReadList { path, source } => {
                write!(f, "reading module list {}: {source}", path.display())
            }
            ModuleError::List { path, source } if source.line == 0 => {
                write!(f, "module list {}: {}", path.display(), source.reason)
            }
            ModuleError::List { path, source } => write!(
                f,
                "module list {} line {}: {}",
                path.display(),
                source.line,
                source.reason
            ),
            ModuleError::Open { path, source } => {
                write!(f, "opening module {}: {source}", path.display())
            }
            ModuleError::Load {
                path,
                name,
                depends,
                source,
            } => {
                write!(f, "loading module {name} ({}): {source}", path.display())?;
                if !depends.is_empty() {
                    write!(f, " (it depends on {})", crate::infra::join(depends, ", "))?;
                }
                Ok(())
            }
            ModuleError::Beside { phase, detail } => {
                write!(f, "loading the {phase} modules beside the boot: {detail}")
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

fn finit(file: &File, params: &str) -> io::Result<()> {
    let params =
        std::ffi::CString::new(params).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    rustix::system::finit_module(file, &params, 0).map_err(io::Error::from)
}

/// The files of some modules, opened now, and the hardware buses their aliases are on, as
/// they are now: what loading them later needs, when the initramfs may be gone (after
/// switch_root) and sysfs may be moving (during it). `finit_module(2)` on the open files.
/// With `live`, the buses are read when a load asks instead, in the root `live` names:
/// for modules loaded by PID 1 itself (the `root` phase, and the `late` one after
/// switch_root).
#[derive(Debug)]
pub struct Opened {
    files: Vec<(PathBuf, File)>,
    buses: Vec<(&'static str, Option<Vec<String>>)>,
    live: Option<PathBuf>,
}

impl Opened {
    /// Opens the files of `entries` and reads the buses they are gated on now.
    pub fn new(root: &Path, entries: &[Entry]) -> Result<Opened, ModuleError> {
        let mut me = Opened::files(entries)?;
        for alias in entries.iter().flat_map(|e| &e.aliases) {
            if let Some(bus) = gate::alias_bus(alias).map(gate::sysfs_bus) {
                if !me.buses.iter().any(|(b, _)| *b == bus) {
                    me.buses.push((bus, gate::read_bus(root, bus)));
                }
            }
        }
        Ok(me)
    }

    /// Opens the files of `entries`; the hardware is read in `live` when they load.
    pub fn live(live: &Path, entries: &[Entry]) -> Result<Opened, ModuleError> {
        Ok(Opened {
            live: Some(live.to_path_buf()),
            ..Opened::files(entries)?
        })
    }

    fn files(entries: &[Entry]) -> Result<Opened, ModuleError> {
        let mut files = Vec::with_capacity(entries.len());
        for e in entries {
            let file = File::open(&e.path).map_err(|source| ModuleError::Open {
                path: e.path.clone(),
                source,
            })?;
            files.push((e.path.clone(), file));
        }
        Ok(Opened {
            files,
            buses: Vec::new(),
            live: None,
        })
    }
}

impl Loader for Opened {
    fn load(&mut self, path: &Path, params: &str) -> io::Result<()> {
        match self.files.iter().find(|(p, _)| p == path) {
            Some((_, file)) => finit(file, params),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn bus(&mut self, bus: &str) -> Option<Vec<String>> {
        if let Some(root) = &self.live {
            return gate::read_bus(root, bus);
        }
        self.buses
            .iter()
            .find(|(b, _)| *b == bus)
            .and_then(|(_, devices)| devices.clone())
    }
}

/// What one phase loaded: each module's name and outcome ([`load_listed`]).
pub type Loaded = Result<Vec<(String, Outcome)>, ModuleError>;

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
    crate::infra::join(&out, " ")
}

/// Loads `entries` (a phase of the list, [`read_list`]) after their dependencies, drivers
/// only for hardware that is there (see the module docs), each with its parameters from
/// `cmdline` (the command line's other parameters). Returns each module's name and
/// outcome: those loaded in load order, then the skipped ones in list order (a module
/// only others depend on is not named when skipped).
pub fn load_listed(
    loader: &mut dyn Loader,
    entries: &[Entry],
    cmdline: &[prairiedog::cmdline::Param],
) -> Loaded {
    let by_name = Names::new(entries.iter().map(|m| m.name.as_str()));
    let is_dependency: Vec<bool> = entries
        .iter()
        .map(|m| entries.iter().any(|other| other.depends.contains(&m.name)))
        .collect();
    let mut state = LoadState {
        loader,
        entries,
        by_name: &by_name,
        cmdline,
        loaded: vec![false; entries.len()],
        done: Vec::with_capacity(entries.len()),
    };
    let mut decided: Vec<bool> = is_dependency.clone();
    let mut seen = gate::Seen::default();
    loop {
        // Each pass looks at each bus at most once; what a load in this pass brings up is
        // seen by the next.
        seen.clear();
        let mut progress = false;
        for (i, info) in entries.iter().enumerate() {
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
    for (i, info) in entries.iter().enumerate() {
        if !decided.get(i).copied().unwrap_or(true) {
            done.push((info.name.clone(), Outcome::Skipped));
        }
    }
    Ok(done)
}

/// What [`load_listed`] has loaded so far.
struct LoadState<'a> {
    loader: &'a mut dyn Loader,
    entries: &'a [Entry],
    by_name: &'a Names<'a>,
    cmdline: &'a [prairiedog::cmdline::Param],
    loaded: Vec<bool>,
    done: Vec<(String, Outcome)>,
}

impl LoadState<'_> {
    /// Loads module `i` after the listed modules it depends on, each once: a module is
    /// marked before its dependencies are visited, so even a cycle ends.
    fn load_with_dependencies(&mut self, i: usize) -> Result<(), ModuleError> {
        if self.loaded.get(i).copied().unwrap_or(true) {
            return Ok(());
        }
        if let Some(l) = self.loaded.get_mut(i) {
            *l = true;
        }
        let Some(info) = self.entries.get(i) else {
            return Ok(());
        };
        for dep in &info.depends {
            if let Some(d) = self.by_name.get(dep.as_str()) {
                self.load_with_dependencies(d)?;
            }
        }
        let params = cmdline_params(self.cmdline, &info.name);
        let outcome = match self.loader.load(&info.path, &params) {
            Ok(()) => Outcome::Loaded,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                Outcome::AlreadyPresent
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) => {
                Outcome::NoDevice
            }
            Err(source) => {
                return Err(ModuleError::Load {
                    path: info.path.clone(),
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
    fn names_find_their_index() {
        let names = Names::new(["b", "a", "c"].into_iter());
        assert_eq!(names.get("a"), Some(1));
        assert_eq!(names.get("b"), Some(0));
        assert_eq!(names.get("c"), Some(2));
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

    fn entry(phase: Phase, name: &str, depends: &[&str], aliases: &[&str]) -> Entry {
        Entry {
            phase,
            name: name.into(),
            path: PathBuf::from(format!("/lib/modules/{name}.ko")),
            depends: depends.iter().map(|d| d.to_string()).collect(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The list as the image builder writes it (liftoff_image::initramfs::list_line).
    fn list(entries: &[Entry]) -> String {
        let mut text = format!("# made by a test\n{HEADER}\n");
        for e in entries {
            let phase = match e.phase {
                Phase::Root => "root",
                Phase::Verity => "verity",
                Phase::Data => "data",
                Phase::Late => "late",
            };
            let deps = if e.depends.is_empty() {
                "-".to_owned()
            } else {
                e.depends.join(",")
            };
            text.push_str(&format!("{phase} {} {} {deps}", e.name, e.path.display()));
            for a in &e.aliases {
                text.push(' ');
                text.push_str(a);
            }
            text.push('\n');
        }
        text
    }

    /// The `verity` modules load beside the `root` ones unless one needs a `root` module or
    /// is a driver gated on hardware.
    #[test]
    fn what_can_load_beside() {
        let now = [
            entry(
                Phase::Root,
                "virtio_blk",
                &["virtio_ring"],
                &["virtio:d00000002v*"],
            ),
            entry(Phase::Root, "virtio_ring", &[], &[]),
        ];
        let verity = [
            entry(Phase::Verity, "dm_mod", &[], &["devname:mapper/control"]),
            entry(Phase::Verity, "dm_verity", &["dm_mod"], &[]),
            entry(Phase::Verity, "erofs", &[], &["fs-erofs"]),
        ];
        assert!(can_load_beside(&verity, &now));
        assert!(can_load_beside(&[], &now));
        let needs = [entry(Phase::Verity, "virtio_mem", &["virtio_ring"], &[])];
        assert!(!can_load_beside(&needs, &now));
        let driver = [entry(
            Phase::Verity,
            "nvme",
            &[],
            &["pci:v*d*sv*sd*bc01sc08i02*"],
        )];
        assert!(!can_load_beside(&driver, &now));
    }

    /// The DATA phase splits: the crypto loads beside the `root` phase, a hardware-gated
    /// TPM driver and what needs a `root` module or a later module wait, in their order.
    #[test]
    fn data_splits_into_beside_and_later() {
        let now = [entry(Phase::Root, "virtio_ring", &[], &[])];
        let names = |list: &[Entry]| list.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        let data = vec![
            // Needs the gated driver, listed before it.
            entry(Phase::Data, "tpm_user", &["tpm_tis"], &[]),
            entry(Phase::Data, "dm_crypt", &[], &[]),
            entry(Phase::Data, "tpm", &[], &[]),
            entry(Phase::Data, "tpm_tis", &["tpm"], &["acpi*:MSFT0101:*"]),
            entry(Phase::Data, "virtio_rng", &["virtio_ring"], &[]),
            entry(Phase::Data, "xts", &[], &[]),
            // Needs one that needs the gated driver.
            entry(Phase::Data, "tpm_more", &["tpm_user"], &[]),
        ];
        let (early, rest) = split_beside(data, &now);
        assert_eq!(names(&early), ["dm_crypt", "tpm", "xts"]);
        assert_eq!(
            names(&rest),
            ["tpm_tis", "virtio_rng", "tpm_user", "tpm_more"]
        );
        assert!(can_load_beside(&early, &now));
        let (early, rest) = split_beside(Vec::new(), &now);
        assert!(early.is_empty() && rest.is_empty());
    }

    /// The child's DATA modules take the `verity` ones they need, through each other, and
    /// leave PID 1 the rest in their order.
    #[test]
    fn data_takes_the_verity_modules_it_needs() {
        let names = |list: &[Entry]| list.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        let verity = vec![
            entry(Phase::Verity, "dm_bufio", &[], &[]),
            entry(Phase::Verity, "dm_verity", &["dm_mod", "dm_bufio"], &[]),
            entry(Phase::Verity, "erofs", &[], &["fs-erofs"]),
            // Listed after the module needing it, and needed only through dm_mod.
            entry(Phase::Verity, "dm_base", &[], &[]),
            entry(Phase::Verity, "dm_mod", &["dm_base"], &[]),
        ];
        let mut data = vec![
            entry(Phase::Data, "dm_crypt", &["dm_mod"], &[]),
            entry(Phase::Data, "xts", &[], &[]),
        ];
        let rest = take_dependencies(&mut data, verity.clone());
        assert_eq!(names(&data), ["dm_mod", "dm_base", "dm_crypt", "xts"]);
        assert_eq!(names(&rest), ["dm_bufio", "dm_verity", "erofs"]);
        let mut none = vec![entry(Phase::Data, "xts", &[], &[])];
        assert_eq!(
            take_dependencies(&mut none, verity.clone()).len(),
            verity.len()
        );
        assert_eq!(names(&none), ["xts"]);
    }

    /// Without `liftoff.watchdog` the watchdog drivers wait for the `late` phase, unless a
    /// `root` module needs one; everything else stays.
    #[test]
    fn watchdog_drivers_wait_for_the_late_phase() {
        let at = |phase, name: &str, dir: &str, depends: &[&str]| Entry {
            path: PathBuf::from(format!("/lib/modules/6.1.0/kernel/{dir}/{name}.ko")),
            ..entry(phase, name, depends, &[])
        };
        let mut root = vec![
            at(Phase::Root, "virtio_blk", "drivers/block", &[]),
            // The watchdog core, listed before the drivers needing it (Debian's softdog).
            at(Phase::Root, "watchdog", "drivers/watchdog", &[]),
            at(Phase::Root, "softdog", "drivers/watchdog", &["watchdog"]),
            at(Phase::Root, "i6300esb", "drivers/watchdog", &["watchdog"]),
            at(Phase::Root, "wdat_wdt", "drivers/watchdog", &[]),
            at(Phase::Root, "needs_wdat", "drivers/misc", &["wdat_wdt"]),
            // A name alone does not make a watchdog driver.
            at(Phase::Root, "softdog_helper", "drivers/misc", &[]),
        ];
        let mut late = vec![at(Phase::Late, "evdev", "drivers/input", &[])];
        defer_watchdogs(&mut root, &mut late);
        let names = |v: &[Entry]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&root),
            ["virtio_blk", "wdat_wdt", "needs_wdat", "softdog_helper"]
        );
        assert_eq!(names(&late), ["evdev", "i6300esb", "softdog", "watchdog"]);
        assert!(late.iter().all(|e| e.phase == Phase::Late));
    }

    #[test]
    fn parses_the_list() {
        let entries = vec![
            entry(Phase::Verity, "dm_mod", &[], &["devname:mapper/control"]),
            entry(
                Phase::Verity,
                "dm_verity",
                &["dm_mod", "dm_bufio", "reed_solomon"],
                &[],
            ),
            entry(Phase::Data, "dm_crypt", &["dm_mod"], &[]),
            entry(
                Phase::Late,
                "virtio_net",
                &["net_failover"],
                &["virtio:d00000001v*", "pci:v*d*"],
            ),
        ];
        assert_eq!(parse_list(&list(&entries)).unwrap(), entries);
        assert_eq!(parse_list("").unwrap(), vec![]);
        assert_eq!(parse_list("# nothing\n\n").unwrap(), vec![]);
        assert_eq!(parse_list(&format!("{HEADER}\n")).unwrap(), vec![]);
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let h = HEADER;
        let cases: &[(&str, usize, &str)] = &[
            // The format before version 1: paths only.
            ("/lib/modules/a.ko\n", 1, "expected"),
            ("liftoff-modules 2\nroot a /a.ko -\n", 1, "expected"),
            ("root a /a.ko -\n", 1, "expected"),
            ("# c\nliftoff-modules 1 \n", 2, "expected"),
            (&format!("{h}\nboot a /a.ko -\n"), 2, "unknown phase"),
            (&format!("{h}\nroot a /a.ko\n"), 2, "no dependencies"),
            (&format!("{h}\nroot a\n"), 2, "no path"),
            (&format!("{h}\nroot\n"), 2, "no name"),
            (&format!("{h}\nroot  a /a.ko -\n"), 2, "no name"),
            (&format!("{h}\nroot a-b /a.ko -\n"), 2, "bad module name"),
            (&format!("{h}\nroot a a.ko -\n"), 2, "not absolute"),
            (&format!("{h}\nroot a /a.ko b,\n"), 2, "bad dependency"),
            (&format!("{h}\nroot a /a.ko - x  y\n"), 2, "empty alias"),
            (&format!("{h}\nroot a /a.ko - x \n"), 2, "empty alias"),
            (
                &format!("{h}\nroot a /a.ko - x\r\n"),
                2,
                "control character",
            ),
            (&format!("{h}\r\nroot a /a.ko -\n"), 1, "control character"),
            (&format!("{h}\nroot a /a\0.ko -\n"), 2, "control character"),
            (
                &format!("{h}\nroot a /a.ko - x\ty\n"),
                2,
                "control character",
            ),
            (
                &format!("{h}\n\nroot a /a.ko -\ndata a /b.ko -\n"),
                4,
                "twice",
            ),
            (
                &format!("{h}\nroot a /a.ko b\ndata b /b.ko -\n"),
                0,
                "later phase",
            ),
            (
                &format!("{h}\nroot a /a.ko b\nverity b /b.ko -\n"),
                0,
                "later phase",
            ),
        ];
        for (text, line, reason) in cases {
            let err = parse_list(text).unwrap_err();
            assert_eq!(err.line, *line, "{text:?}: {err:?}");
            assert!(err.reason.contains(reason), "{text:?}: {err:?}");
        }
        // The error names the file and the line.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/liftoff")).unwrap();
        std::fs::write(dir.path().join(LIST), "/lib/modules/a.ko\n").unwrap();
        let err = read_list(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "module list {} line 1: expected",
                dir.path().join(LIST).display()
            )),
            "{err}"
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
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/liftoff")).unwrap();
        let entries = [
            entry(Phase::Root, "b", &["a"], &[]),
            entry(Phase::Root, "a", &[], &[]),
            entry(Phase::Root, "wdt", &[], &[]),
        ];
        std::fs::write(root.join(LIST), list(&entries)).unwrap();
        let listed = read_list(root).unwrap();
        assert_eq!(
            listed[0].path,
            root.join("lib/modules/b.ko"),
            "below the root"
        );
        let mut loader = FakeLoader::new(root);
        loader.errno = [
            ("a.ko".to_string(), rustix::io::Errno::EXIST.raw_os_error()),
            (
                "wdt.ko".to_string(),
                rustix::io::Errno::NODEV.raw_os_error(),
            ),
        ]
        .into();
        let cmdline = prairiedog::cmdline::parse("b.opt=1 wdt.x a.y=\"p q\" c.z=2").others;
        let done = load_listed(&mut loader, &listed, &cmdline).unwrap();
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
        let err = load_listed(&mut loader, &listed, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("loading module b (") && err.ends_with("(it depends on a)"),
            "{err}"
        );

        // A phase's dependency in an earlier phase is not loaded again.
        let mut loader = FakeLoader::new(root);
        let data = [entry(Phase::Data, "dm_crypt", &["dm_mod"], &[])];
        load_listed(&mut loader, &data, &[]).unwrap();
        assert_eq!(loader.loaded, ["dm_crypt.ko"]);

        std::fs::remove_file(root.join(LIST)).unwrap();
        assert_eq!(read_list(root).unwrap(), vec![]);
    }

    /// Files of a later phase are opened at once (a missing one is named), and the buses
    /// their aliases are on are read then, not when they load.
    #[test]
    fn opened_takes_files_and_hardware_now() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("lib/modules")).unwrap();
        let acpi = root.join("sys/bus/acpi/devices/MSFT0101:00");
        std::fs::create_dir_all(&acpi).unwrap();
        std::fs::write(acpi.join("modalias"), "acpi:MSFT0101:\n").unwrap();
        let mut entries = vec![
            entry(Phase::Data, "tpm_tis", &[], &["acpi*:MSFT0101:*"]),
            entry(Phase::Data, "xts", &[], &["crypto-xts"]),
        ];
        for e in &mut entries {
            e.path = root.join(e.path.strip_prefix("/").unwrap());
            std::fs::write(&e.path, b"module").unwrap();
        }
        let mut opened = Opened::new(root, &entries).unwrap();
        std::fs::remove_dir_all(root.join("sys")).unwrap();
        std::fs::remove_dir_all(root.join("lib")).unwrap();
        assert_eq!(opened.bus("acpi"), Some(vec!["acpi:MSFT0101:".to_string()]));
        assert_eq!(opened.bus("pci"), None, "not read: no alias on it");
        assert_eq!(opened.files.len(), 2);
        // Live: the hardware when asked.
        std::fs::create_dir_all(root.join("lib/modules")).unwrap();
        for e in &entries {
            std::fs::write(&e.path, b"module").unwrap();
        }
        let mut live = Opened::live(root, &entries).unwrap();
        assert_eq!(live.bus("acpi"), None);
        std::fs::create_dir_all(&acpi).unwrap();
        assert_eq!(live.bus("acpi"), Some(vec![]));
        std::fs::remove_dir_all(root.join("lib")).unwrap();
        let unknown = opened.load(Path::new("/lib/modules/x.ko"), "").unwrap_err();
        assert_eq!(unknown.kind(), io::ErrorKind::NotFound);

        let err = Opened::new(root, &entries).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("opening module {}", entries[0].path.display())),
            "{err}"
        );
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
            let mods = [
                // sd_mod first: it must still come after the SCSI host driver.
                entry(
                    Phase::Root,
                    "sd_mod",
                    &["scsi_mod"],
                    &["scsi:t-0x00*", "block-major-8-*"],
                ),
                entry(Phase::Root, "scsi_mod", &[], &[]),
                entry(
                    Phase::Root,
                    "virtio_scsi",
                    &["scsi_mod", "virtio"],
                    &["virtio:d00000008v*"],
                ),
                entry(
                    Phase::Root,
                    "virtio_blk",
                    &["virtio"],
                    &["virtio:d00000002v*"],
                ),
                entry(Phase::Root, "virtio", &[], &[]),
                entry(
                    Phase::Root,
                    "virtio_pci",
                    &["virtio"],
                    &["pci:v00001AF4d*sv*sd*bc*sc*i*"],
                ),
                entry(
                    Phase::Root,
                    "ena",
                    &[],
                    &["pci:v00001D0Fd0000EC20sv*sd*bc*sc*i*"],
                ),
                entry(Phase::Root, "xen_blkfront", &[], &["xenblk", "xen:vbd"]),
                entry(Phase::Root, "dm_mod", &[], &["devname:mapper/control"]),
                entry(Phase::Root, "erofs", &[], &["fs-erofs"]),
            ];
            std::fs::write(root.join(LIST), list(&mods)).unwrap();
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
        let done = load_listed(&mut loader, &read_list(&root).unwrap(), &[]).unwrap();
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
        let done = load_listed(&mut loader, &read_list(&root).unwrap(), &[]).unwrap();
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
