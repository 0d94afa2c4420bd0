//! An initramfs for Liftoff: PID 1 at `/init`, the device nodes the kernel needs before
//! devtmpfs, the kernel modules the image lists for PID 1 (`/etc/liftoff/modules`), and
//! whatever else a test puts in (a probe, a next stage).

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use crate::cpio::Archive;
use crate::kernel::{Kernel, KernelError};

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
}

impl std::fmt::Display for InitramfsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitramfsError::Io { path, source } => write!(f, "initramfs: {path}: {source}"),
            InitramfsError::Kernel(e) => write!(f, "initramfs: {e}"),
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
    /// `/etc/liftoff/modules` for PID 1.
    pub fn modules(&mut self, kernel: &Kernel, names: &[&str]) -> Result<(), InitramfsError> {
        let closure = kernel
            .module_closure(names)
            .map_err(InitramfsError::Kernel)?;
        let mut list = String::from("# Kernel modules PID 1 loads, with their dependencies.\n");
        for rel in closure {
            let dest = format!("lib/modules/{}/{rel}", kernel.version);
            self.host_file(&dest, 0o644, &kernel.modules_dir.join(&rel))?;
            list.push('/');
            list.push_str(&dest);
            list.push('\n');
        }
        self.file("etc/liftoff/modules", 0o644, list.as_bytes())
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
