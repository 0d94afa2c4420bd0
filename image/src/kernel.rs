//! Debian's cloud kernels, as unpacked by `scripts/setup` into the cache:
//! `<cache>/kernels/<debian-arch>/VERSION` names the version, `root/boot/vmlinuz-<version>`
//! is the image and `root/lib/modules/<version>` the module tree with its `modules.dep`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::Arch;

/// The machine's cache of kernels and root trees: `$LIFTOFF_CACHE`, else
/// `/var/cache/liftoff` (kept outside any clone, so CI's fresh clones share it).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("LIFTOFF_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from("/var/cache/liftoff"),
    }
}

/// The workspace root (this crate's parent folder).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

#[derive(Debug)]
pub enum KernelError {
    NotCached { arch: Arch, path: PathBuf },
    Read { path: PathBuf, source: io::Error },
    UnknownModule { name: String, dep_file: PathBuf },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::NotCached { arch, path } => write!(
                f,
                "no cached Debian kernel for {arch} at {}: run scripts/setup",
                path.display()
            ),
            KernelError::Read { path, source } => write!(f, "reading {}: {source}", path.display()),
            KernelError::UnknownModule { name, dep_file } => write!(
                f,
                "module {name} is not in {} (built in, misspelt, or a different kernel?)",
                dep_file.display()
            ),
        }
    }
}

impl std::error::Error for KernelError {}

/// One cached kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub arch: Arch,
    pub version: String,
    pub image: PathBuf,
    /// `lib/modules/<version>` in the unpacked package.
    pub modules_dir: PathBuf,
}

impl Kernel {
    /// The Debian cloud kernel for `arch` in the cache.
    pub fn debian(arch: Arch) -> Result<Kernel, KernelError> {
        let dir = cache_dir().join("kernels").join(arch.debian());
        let version_file = dir.join("VERSION");
        let version = std::fs::read_to_string(&version_file)
            .map_err(|_| KernelError::NotCached {
                arch,
                path: dir.clone(),
            })?
            .trim()
            .to_owned();
        let kernel = Kernel {
            arch,
            image: dir.join("root/boot").join(format!("vmlinuz-{version}")),
            modules_dir: dir.join("root/lib/modules").join(&version),
            version,
        };
        if !kernel.image.is_file() || !kernel.modules_dir.join("modules.dep").is_file() {
            return Err(KernelError::NotCached { arch, path: dir });
        }
        Ok(kernel)
    }

    /// The named modules and everything they depend on, as paths relative to the module
    /// tree (`kernel/drivers/md/dm-mod.ko`), dependencies first. A name the kernel has built
    /// in (`modules.builtin`: NVMe on Debian's cloud kernels) needs no file and is left out.
    pub fn module_closure(&self, names: &[&str]) -> Result<Vec<String>, KernelError> {
        let (dep_file, deps) = self.modules_dep()?;
        let by_name: BTreeMap<String, &String> =
            deps.keys().map(|path| (module_name(path), path)).collect();
        let built_in = self.built_in()?;
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            let name = name.replace('-', "_");
            if built_in.contains(&name) {
                continue;
            }
            let path = by_name
                .get(&name)
                .ok_or_else(|| KernelError::UnknownModule {
                    name: name.clone(),
                    dep_file: dep_file.clone(),
                })?;
            // modules.dep lists the full closure of each module, deepest last.
            let closure = deps.get(*path).map(Vec::as_slice).unwrap_or(&[]);
            for p in closure.iter().rev().chain(std::iter::once(*path)) {
                if seen.insert(p.clone()) {
                    out.push(p.clone());
                }
            }
        }
        Ok(out)
    }

    /// Every module file under the folders `dirs` of the module tree (`kernel/net/bridge`),
    /// as paths relative to the tree, from `modules.dep`.
    pub fn modules_under(&self, dirs: &[&str]) -> Result<Vec<String>, KernelError> {
        Ok(self
            .modules_dep()?
            .1
            .into_keys()
            .filter(|path| {
                dirs.iter().any(|d| {
                    path.strip_prefix(d)
                        .is_some_and(|rest| rest.starts_with('/'))
                })
            })
            .collect())
    }

    /// Whether the kernel has module `name`, built in or as a file.
    pub fn has_module(&self, name: &str) -> Result<bool, KernelError> {
        let name = name.replace('-', "_");
        if self.built_in()?.contains(&name) {
            return Ok(true);
        }
        Ok(self
            .modules_dep()?
            .1
            .keys()
            .any(|path| module_name(path) == name))
    }

    /// The tree's `modules.dep`, where it was read and what it says.
    fn modules_dep(&self) -> Result<(PathBuf, BTreeMap<String, Vec<String>>), KernelError> {
        let dep_file = self.modules_dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep_file).map_err(|source| KernelError::Read {
            path: dep_file.clone(),
            source,
        })?;
        Ok((dep_file, parse_modules_dep(&text)))
    }

    /// The names in `modules.builtin` (none when the file is missing).
    fn built_in(&self) -> Result<BTreeSet<String>, KernelError> {
        let path = self.modules_dir.join("modules.builtin");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(module_name).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(source) => Err(KernelError::Read { path, source }),
        }
    }
}

/// `modules.dep`: `path: dep dep ...` per line.
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            Some((
                module.trim().to_owned(),
                deps.split_whitespace().map(str::to_owned).collect(),
            ))
        })
        .collect()
}

/// `kernel/drivers/md/dm-mod.ko` -> `dm_mod`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split('.').next().unwrap_or(file).replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_from_modules_dep() {
        let text = "kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko kernel/lib/rs.ko\n\
                    kernel/drivers/md/dm-mod.ko:\n\
                    kernel/drivers/md/dm-bufio.ko:\n\
                    kernel/lib/rs.ko:\n\
                    kernel/drivers/md/dm-crypt.ko: kernel/drivers/md/dm-mod.ko\n";
        let deps = parse_modules_dep(text);
        assert_eq!(deps.len(), 5);
        assert_eq!(module_name("kernel/drivers/md/dm-mod.ko"), "dm_mod");
        assert_eq!(module_name("x/virtio_blk.ko.xz"), "virtio_blk");
    }

    #[test]
    fn debian_kernels_resolve() {
        for arch in Arch::ALL {
            let k = Kernel::debian(arch).expect("scripts/setup caches both kernels");
            let mods = k.module_closure(&["dm-verity", "virtio_blk"]).unwrap();
            let names: Vec<String> = mods.iter().map(|p| module_name(p)).collect();
            let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
            assert!(pos("dm_mod") < pos("dm_verity"), "{names:?}");
            assert!(pos("virtio") < pos("virtio_blk"), "{names:?}");
            assert!(names.contains(&"reed_solomon".to_string()));
            assert!(matches!(
                k.module_closure(&["no_such_module"]),
                Err(KernelError::UnknownModule { .. })
            ));
            // Built in on Debian's cloud kernels: no file, nothing to load.
            assert_eq!(
                k.module_closure(&["nvme", "tpm_crb"]).unwrap(),
                Vec::<String>::new()
            );
            assert!(k.has_module("nvme").unwrap() && k.has_module("xen-blkfront").unwrap());
            // Neither built in nor a module there.
            assert!(!k.has_module("ahci").unwrap());
        }
    }
}
