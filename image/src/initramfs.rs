//! An initramfs for Liftoff: PID 1 at `/init`, the device nodes the kernel needs before
//! devtmpfs, the kernel modules the image lists for PID 1 (`/etc/liftoff/modules`), and
//! whatever else a test puts in (a probe, a next stage).
//!
//! # `/etc/liftoff/modules`, version 1
//!
//! Everything PID 1 needs to know about a module before loading it, taken from the module's
//! `.modinfo` here on the build host, so that PID 1 opens a module file only to hand it to
//! `finit_module(2)`. `#` starts a comment; the first other line is the header
//! [`LIST_HEADER`]; then one line per module, fields separated by one space:
//!
//! ```text
//! PHASE NAME PATH DEPENDS [ALIAS ...]
//! verity dm_verity /lib/modules/6.1.0-57-cloud-amd64/kernel/drivers/md/dm-verity.ko reed_solomon,dm_mod,dm_bufio
//! late virtio_net /lib/modules/6.1.0-57-cloud-amd64/kernel/drivers/net/virtio_net.ko virtio_ring,virtio,net_failover virtio:d00000001v*
//! ```
//!
//! - PHASE ([`Phase`]): `root` (before the disk is looked for: disk drivers, what the
//!   stages before verity read), `verity` (device-mapper, dm-verity, the root's file
//!   systems: loaded beside the disk wait, before verity), `data` (dm-crypt, its ciphers,
//!   the TPM: loaded beside the boot, before DATA opens), `late` (what serves only after
//!   the handoff);
//! - NAME: the kernel's name for it (`_`, not `-`);
//! - PATH: where the file is in the initramfs;
//! - DEPENDS: `.modinfo`'s `depends=`, comma-separated, `-` for none; every dependency
//!   listed is in the same or an earlier phase;
//! - ALIAS: its `alias=` entries (PID 1's hardware gate matches them against sysfs).
//!
//! No field may contain white space or a control character; the builder refuses a module
//! whose `.modinfo` would need it. PID 1's parser
//! (`liftoff_init::stage::modules::parse_list`) refuses anything else, naming the file and
//! the line.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use crate::cpio::Archive;
use crate::kernel::{Kernel, KernelError};
use crate::modinfo::{self, ElfError};

/// The first line of `/etc/liftoff/modules` that is not a comment.
pub const LIST_HEADER: &str = "liftoff-modules 1";

/// When PID 1 loads a module (see the module docs for the list format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Before the disk is looked for.
    Root,
    /// By PID 1 after it has chosen the slot, before verity (a module a `data` one needs
    /// loads with that one).
    Verity,
    /// In a child process of PID 1 beside the other phases (the hardware-gated ones once
    /// the `root` phase is in), then the child opens DATA; waited for before DATA.
    Data,
    /// After the handoff: in the supervisor (containerd), or in a process of its own that
    /// outlives the exec (systemd, a path).
    Late,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Root => "root",
            Phase::Verity => "verity",
            Phase::Data => "data",
            Phase::Late => "late",
        }
    }
}

/// One line of the module list for a module in `phase` at `path` (in the initramfs).
pub fn list_line(phase: Phase, info: &modinfo::ModInfo, path: &str) -> Result<String, String> {
    let depends = if info.depends.is_empty() {
        "-".to_owned()
    } else {
        info.depends.join(",")
    };
    let mut line = format!("{} {} {path} {depends}", phase.as_str(), info.name);
    for alias in &info.aliases {
        line.push(' ');
        line.push_str(alias);
    }
    let words = 4 + info.aliases.len();
    let empty = info.name.is_empty()
        || path.is_empty()
        || info.depends.iter().any(String::is_empty)
        || info.aliases.iter().any(String::is_empty);
    if empty || line.split(' ').count() != words || line.contains(char::is_control) {
        return Err(format!(
            "module {} ({path}): its name, dependencies or aliases do not fit the module \
             list (empty, or white space or a control character in {:?} / {:?} / {:?})",
            info.name, info.name, info.depends, info.aliases
        ));
    }
    Ok(line)
}

/// Builds an initramfs in memory.
#[derive(Debug)]
pub struct Initramfs {
    archive: Archive,
    dirs: BTreeSet<String>,
}

#[derive(Debug)]
pub enum InitramfsError {
    Io { path: String, source: io::Error },
    Kernel(KernelError),
    Module { path: String, reason: String },
}

impl std::fmt::Display for InitramfsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitramfsError::Io { path, source } => write!(f, "initramfs: {path}: {source}"),
            InitramfsError::Kernel(e) => write!(f, "initramfs: {e}"),
            InitramfsError::Module { path, reason } => {
                write!(f, "initramfs: module {path}: {reason}")
            }
        }
    }
}

impl std::error::Error for InitramfsError {}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> InitramfsError + '_ {
    move |source| InitramfsError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Initramfs {
    /// The base layout: `/dev/console` (the kernel opens it for PID 1's standard streams
    /// before any file system is mounted) and the API mount points.
    pub fn new() -> Result<Self, InitramfsError> {
        let mut me = Initramfs {
            archive: Archive::new(),
            dirs: BTreeSet::new(),
        };
        for dir in ["dev", "proc", "sys", "run", "etc/liftoff"] {
            me.ensure_dir(dir)?;
        }
        me.archive
            .char_dev("dev/console", 0o600, 5, 1)
            .map_err(io_err("dev/console"))?;
        Ok(me)
    }

    fn ensure_dir(&mut self, dir: &str) -> Result<(), InitramfsError> {
        let mut sofar = String::new();
        for part in dir.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            if !sofar.is_empty() {
                sofar.push('/');
            }
            sofar.push_str(part);
            if self.dirs.insert(sofar.clone()) {
                self.archive.dir(&sofar, 0o755).map_err(io_err(dir))?;
            }
        }
        Ok(())
    }

    /// Adds a file, creating its parent folders.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), InitramfsError> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.ensure_dir(parent)?;
        }
        self.archive.file(path, mode, data).map_err(io_err(path))
    }

    /// Adds a file read from the host.
    pub fn host_file(&mut self, path: &str, mode: u32, host: &Path) -> Result<(), InitramfsError> {
        let data = std::fs::read(host).map_err(|source| InitramfsError::Io {
            path: host.display().to_string(),
            source,
        })?;
        self.file(path, mode, &data)
    }

    /// Adds the named modules of `kernel` with their dependencies and lists them in
    /// `/etc/liftoff/modules` for PID 1, all in the [`Phase::Root`] phase.
    pub fn modules(&mut self, kernel: &Kernel, names: &[&str]) -> Result<(), InitramfsError> {
        self.modules_in_phases(kernel, &[(Phase::Root, names)])
            .map(drop)
    }

    /// Adds the named modules of `kernel` with their dependencies and lists them in
    /// `/etc/liftoff/modules` for PID 1 (format in the module docs). A module several
    /// phases need is loaded in the earliest of them; within a phase dependencies come
    /// first. Returns the list.
    pub fn modules_in_phases(
        &mut self,
        kernel: &Kernel,
        plan: &[(Phase, &[&str])],
    ) -> Result<String, InitramfsError> {
        let mut plan = plan.to_vec();
        plan.sort_by_key(|(phase, _)| *phase);
        let mut seen = BTreeSet::new();
        let mut list = format!(
            "# Kernel modules PID 1 loads, from their .modinfo (liftoff_image::initramfs).\n\
             {LIST_HEADER}\n"
        );
        for (phase, names) in plan {
            let closure = kernel
                .module_closure(names)
                .map_err(InitramfsError::Kernel)?;
            for rel in closure {
                if !seen.insert(rel.clone()) {
                    continue;
                }
                let host = kernel.modules_dir.join(&rel);
                let bytes = std::fs::read(&host).map_err(|source| InitramfsError::Io {
                    path: host.display().to_string(),
                    source,
                })?;
                let module_err = |reason: String| InitramfsError::Module {
                    path: host.display().to_string(),
                    reason,
                };
                let mut info = modinfo::modinfo(&bytes, &crate::kernel::module_name(&rel))
                    .map_err(|e: ElfError| module_err(e.to_string()))?;
                for (name, alias) in crate::system::GATE_ALIASES {
                    if info.name == *name && !info.aliases.iter().any(|a| a == alias) {
                        info.aliases.push((*alias).to_owned());
                    }
                }
                let dest = format!("lib/modules/{}/{rel}", kernel.version);
                list.push_str(&list_line(phase, &info, &format!("/{dest}")).map_err(module_err)?);
                list.push('\n');
                self.file(&dest, 0o644, &bytes)?;
            }
        }
        self.file("etc/liftoff/modules", 0o644, list.as_bytes())?;
        Ok(list)
    }

    pub fn finish(self) -> Result<Vec<u8>, InitramfsError> {
        self.archive.finish().map_err(io_err("TRAILER!!!"))
    }
}

/// The modules Debian's cloud kernel needs for Liftoff under QEMU (DESIGN.md section 10):
/// virtio disks, dm-verity and dm-crypt.
pub const DEBIAN_QEMU_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "dm-mod",
    "dm-verity",
    "dm-crypt",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modinfo::ModInfo;

    fn info(name: &str, depends: &[&str], aliases: &[&str]) -> ModInfo {
        ModInfo {
            name: name.into(),
            depends: depends.iter().map(|s| s.to_string()).collect(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn list_lines() {
        assert_eq!(
            list_line(Phase::Root, &info("dm_mod", &[], &[]), "/lib/m/dm-mod.ko").unwrap(),
            "root dm_mod /lib/m/dm-mod.ko -"
        );
        assert_eq!(
            list_line(
                Phase::Late,
                &info(
                    "virtio_net",
                    &["net_failover", "virtio"],
                    &["virtio:d00000001v*"]
                ),
                "/lib/m/virtio_net.ko"
            )
            .unwrap(),
            "late virtio_net /lib/m/virtio_net.ko net_failover,virtio virtio:d00000001v*"
        );
        for bad in [
            info("a b", &[], &[]),
            info("", &[], &[]),
            info("a", &["b c"], &[]),
            info("a", &[""], &[]),
            info("a", &[], &["of:N*T*Cx y"]),
            info("a", &[], &["x\ty"]),
            info("a", &[], &["x\r"]),
            info("a", &[], &["x\u{1b}y"]),
            info("a", &[], &[""]),
        ] {
            let err = list_line(Phase::Data, &bad, "/lib/m/a.ko").unwrap_err();
            assert!(err.contains("/lib/m/a.ko"), "{err}");
        }
    }

    /// Debian's kernels: every module of the system's plan is listed once, in the earliest
    /// phase that needs it, after its dependencies, and never after a module needing it.
    #[test]
    fn debian_module_lists() {
        use crate::system;
        for arch in crate::Arch::ALL {
            let kernel = Kernel::debian(arch).expect("scripts/setup caches both kernels");
            let plan = system::module_plan(arch, &kernel).unwrap();
            let plan: Vec<(Phase, &[&str])> =
                plan.iter().map(|(p, n)| (*p, n.as_slice())).collect();
            let mut initramfs = Initramfs::new().unwrap();
            let list = initramfs.modules_in_phases(&kernel, &plan).unwrap();
            let mut lines = list.lines().filter(|l| !l.starts_with('#'));
            assert_eq!(lines.next(), Some(LIST_HEADER));
            let mut phases: Vec<(String, String, Vec<String>)> = Vec::new();
            for line in lines {
                let words: Vec<&str> = line.split(' ').collect();
                assert!(words.len() >= 4, "{line}");
                let deps = if words[3] == "-" {
                    vec![]
                } else {
                    words[3].split(',').map(str::to_owned).collect()
                };
                phases.push((words[0].to_owned(), words[1].to_owned(), deps));
            }
            let rank = |p: &str| {
                ["root", "verity", "data", "late"]
                    .iter()
                    .position(|x| *x == p)
                    .unwrap()
            };
            for (i, (phase, name, deps)) in phases.iter().enumerate() {
                for d in deps {
                    if let Some(j) = phases.iter().position(|(_, n, _)| n == d) {
                        assert!(j < i, "{arch}: {name} listed before its dependency {d}");
                        assert!(rank(&phases[j].0) <= rank(phase), "{arch}: {name} {d}");
                    }
                }
            }
            let phase_of = |n: &str| {
                phases
                    .iter()
                    .find(|(_, name, _)| name == n)
                    .map(|(p, _, _)| p.as_str())
            };
            assert_eq!(phase_of("virtio_blk"), Some("root"));
            assert_eq!(
                phase_of("efi_pstore"),
                Some("root"),
                "the slots stage reads it"
            );
            assert_eq!(phase_of("dm_verity"), Some("verity"));
            assert_eq!(phase_of("erofs"), Some("verity"));
            assert_eq!(phase_of("dm_mod"), Some("verity"), "dm_crypt's dependency");
            assert_eq!(phase_of("dm_crypt"), Some("data"));
            let sha256 = if arch == crate::Arch::X86_64 {
                "sha256_ssse3"
            } else {
                "sha2_ce"
            };
            assert_eq!(
                phase_of(sha256),
                Some("data"),
                "in before the verity modules"
            );
            assert_eq!(phase_of("evdev"), Some("late"));
            // efivarfs only where the firmware has variables (system::GATE_ALIASES).
            let efivarfs = list.lines().find(|l| l.starts_with("root efivarfs "));
            assert!(
                efivarfs.is_some_and(|l| l.split(' ').skip(4).any(|a| a == "platform:efivars")),
                "{arch}: {efivarfs:?}"
            );
            let names: BTreeSet<&str> = phases.iter().map(|(_, n, _)| n.as_str()).collect();
            assert_eq!(names.len(), phases.len(), "{arch}: a module listed twice");
        }
    }
}
