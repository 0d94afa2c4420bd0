//! The image builder: a root tree (a directory or a tarball) into the complete Liftoff disk of
//! DESIGN.md section 3, or into the update payloads `prairiedog install` consumes.
//!
//! # The disk ([`build_image`])
//!
//! | # | label | content |
//! |---|---|---|
//! | 1 | `EFI-SYSTEM` | FAT: stock GRUB at the removable-media path ([`firmware::grub_efi`]), `grubenv` with `liftoff_slot=A`, `liftoff_pending=0` |
//! | 2 | `BOOT-A` | FAT: `vmlinuz`, `initramfs`, `grub.cfg` (slot A's command line with the root hash) |
//! | 3, 4 | `ROOT-A`, `HASH-A` | the root file system (erofs or ext4) and its dm-verity superblock and tree |
//! | 5-7 | `BOOT-B`, `ROOT-B`, `HASH-B` | blank, as large as slot A's |
//! | 8 | `PRIVATE` | empty ext4 |
//! | 9 | `DATA` | blank; PID 1 grows, encrypts and formats it |
//!
//! BOOT-A carries priority 1 and `successful` (DESIGN.md section 4); BOOT-B is all zero.
//!
//! # The payloads ([`build_payloads`], [`write_payloads`])
//!
//! A folder with `boot.img` (the BOOT partition's FAT image for the slot the update goes to),
//! `root.img`, `hash.img` and `manifest` (`boot|root|hash <bytes> <blake3>` and
//! `verity-root-hash <hex>`, made by `prairiedog`'s own [`Manifest::for_files`]), exactly the
//! arguments of `prairiedog install --manifest --boot --root --hash`.
//!
//! # Steps
//!
//! 1. Stage: the tree is copied (`cp -a`) or the tarball unpacked (`tar -xp` with xattrs and
//!    numeric owners, any compression tar recognises) into a work folder beside the output.
//!    Missing mount points PID 1 needs (`/local`, `/opt`, `/run`, `/tmp`, `/etc`, `/var`) are
//!    added, and every access and modification time is set to 0.
//! 2. Root file system: [`image::make_root_fs`] (`mkfs.erofs -T0`, or `mkfs.ext4 -d` with
//!    inode times fixed afterwards).
//! 3. Disk: [`image::build_disk`] (GPT by `sgdisk`, hash tree by the `verity` crate, PRIVATE),
//!    then [`firmware::install`] writes the ESP and BOOT-A. Payloads: [`image::make_hash`],
//!    [`firmware::make_fat_tree`], the manifest.
//! 4. The output is written under a temporary name and renamed when complete; the work folder
//!    is removed whether the build succeeds or fails, so a failed build leaves nothing behind.
//!
//! # Reproducibility
//!
//! Same inputs and seed, same bytes: every GUID, file system UUID, ext4 hash seed, FAT volume
//! ID and the verity salt and UUID derive from the seed ([`image::seeded_guid`]); every time
//! stamp is fixed (erofs `-T0`; ext4 `E2FSPROGS_FAKE_TIME` plus `debugfs` for the times
//! `mkfs.ext4 -d` copies from the stage; FAT files at [`image::FAT_EPOCH`], mtools run with
//! `SOURCE_DATE_EPOCH` and `TZ=UTC`, as FAT keeps local time); the work folder's path never
//! reaches an image.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use prairiedog::install::{InstallError, Manifest, Payload};

use crate::firmware::{self, FirmwareError, Install, Slot};
use crate::image::{self, BuiltDisk, DiskSpec, ImageError, RootFsType};
use crate::initramfs::Initramfs;
use crate::kernel::Kernel;
use crate::{artifacts, system, Arch};

/// Mount points PID 1 needs in the verified root (docs/init.md, "What the image provides").
pub const MOUNT_POINTS: [&str; 6] = ["etc", "local", "opt", "run", "tmp", "var"];

/// What a slot boots: the kernel image, the initramfs and what is added to the command line.
#[derive(Debug, Clone)]
pub struct BootSpec {
    pub kernel: PathBuf,
    pub initramfs: Vec<u8>,
    /// Added after Liftoff's keys on the slot's command line ([`firmware::slot_cmdline`]).
    pub append: String,
}

impl BootSpec {
    /// The cached Debian cloud kernel of `arch` ([`Kernel::debian`]) and Liftoff's initramfs
    /// for it ([`system::initramfs`]: PID 1 from `scripts/build-guest` and the modules it
    /// loads).
    pub fn debian(arch: Arch, append: &str) -> Result<BootSpec, BuildError> {
        let kernel = Kernel::debian(arch).map_err(|e| BuildError::Boot(e.to_string()))?;
        let initramfs = system::initramfs(arch, &kernel).map_err(BuildError::Boot)?;
        Ok(BootSpec {
            kernel: kernel.image,
            initramfs,
            append: append.to_owned(),
        })
    }

    /// `kernel` with Liftoff's initramfs: PID 1 and, when `modules` (the kernel's
    /// `lib/modules/<version>` tree) is given, the modules of [`system::SYSTEM_MODULES`] from
    /// it; without `modules`, PID 1 alone, for a kernel with everything built in (the
    /// minimal kernel of `kernel-config/`).
    pub fn kernel(
        arch: Arch,
        kernel: &Path,
        modules: Option<&Path>,
        append: &str,
    ) -> Result<BootSpec, BuildError> {
        if !kernel.is_file() {
            return Err(BuildError::Boot(format!(
                "the kernel {} is not a file",
                kernel.display()
            )));
        }
        let initramfs = match modules {
            Some(dir) => {
                let k = Kernel {
                    arch,
                    version: dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    image: kernel.to_path_buf(),
                    modules_dir: dir.to_path_buf(),
                };
                system::initramfs(arch, &k).map_err(BuildError::Boot)?
            }
            None => {
                let init = artifacts::musl_binary(arch, "init").map_err(BuildError::Boot)?;
                let mut initramfs =
                    Initramfs::new().map_err(|e| BuildError::Boot(e.to_string()))?;
                initramfs
                    .host_file("init", 0o755, &init)
                    .map_err(|e| BuildError::Boot(e.to_string()))?;
                initramfs
                    .finish()
                    .map_err(|e| BuildError::Boot(e.to_string()))?
            }
        };
        Ok(BootSpec {
            kernel: kernel.to_path_buf(),
            initramfs,
            append: append.to_owned(),
        })
    }
}

/// Everything [`build_image`] and [`build_payloads`] take.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub arch: Arch,
    /// The root: a directory, or a tarball (`.tar`, `.tar.gz`, ...).
    pub root: PathBuf,
    pub fs: RootFsType,
    /// Seed of every GUID, UUID and salt.
    pub seed: String,
    pub boot: BootSpec,
    pub esp_mib: u64,
    pub boot_mib: u64,
    pub private_mib: u64,
    pub data_mib: u64,
}

impl ImageSpec {
    /// The defaults of DESIGN.md section 3 (ESP and PRIVATE 16 MiB, BOOT 64 MiB), erofs, a
    /// 64 MiB DATA (PID 1 grows it to fill the disk), seed `liftoff`.
    pub fn new(arch: Arch, root: &Path, boot: BootSpec) -> ImageSpec {
        let disk = DiskSpec::default();
        ImageSpec {
            arch,
            root: root.to_path_buf(),
            fs: RootFsType::Erofs,
            seed: disk.seed,
            boot,
            esp_mib: disk.esp_mib,
            boot_mib: disk.boot_mib,
            private_mib: disk.private_mib,
            data_mib: disk.data_mib,
        }
    }
}

/// A step of a build that failed; each names the file or tool.
#[derive(Debug)]
pub enum BuildError {
    /// The root path does not exist or cannot be read.
    NoRoot {
        path: PathBuf,
        source: io::Error,
    },
    /// The root path is neither a directory nor a regular file.
    NotATree {
        path: PathBuf,
    },
    /// `tar` could not unpack the root (not a tarball, truncated, unknown compression).
    Unpack {
        tarball: PathBuf,
        output: String,
    },
    /// Copying the root directory into the stage.
    Copy {
        tree: PathBuf,
        output: String,
    },
    /// Creating, changing or removing a file of the build.
    Io {
        what: String,
        source: io::Error,
    },
    /// The kernel or the initramfs.
    Boot(String),
    /// A path `debugfs` cannot name in an ext4 root (a `"` or a line break in it).
    Ext4Path {
        path: PathBuf,
    },
    Image(ImageError),
    Firmware(FirmwareError),
    /// Digesting the payload files for the manifest.
    Manifest(InstallError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoRoot { path, source } => {
                write!(f, "reading the root {}: {source}", path.display())
            }
            BuildError::NotATree { path } => write!(
                f,
                "the root {} is neither a directory nor a tarball",
                path.display()
            ),
            BuildError::Unpack { tarball, output } => write!(
                f,
                "unpacking {} with tar (is it a tarball?): {}",
                tarball.display(),
                output.trim()
            ),
            BuildError::Copy { tree, output } => {
                write!(f, "copying {}: {}", tree.display(), output.trim())
            }
            BuildError::Io { what, source } => write!(f, "{what}: {source}"),
            BuildError::Boot(e) => write!(f, "the kernel and initramfs: {e}"),
            BuildError::Ext4Path { path } => write!(
                f,
                "{} holds a double quote or a line break, which debugfs cannot name \
                 (use --fs erofs)",
                path.display()
            ),
            BuildError::Image(e) => e.fmt(f),
            BuildError::Firmware(e) => e.fmt(f),
            BuildError::Manifest(e) => write!(f, "making the manifest: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<ImageError> for BuildError {
    fn from(e: ImageError) -> Self {
        BuildError::Image(e)
    }
}

impl From<FirmwareError> for BuildError {
    fn from(e: FirmwareError) -> Self {
        BuildError::Firmware(e)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// A built disk.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The disk: its path, root hash, salt, partition GUIDs and extents.
    pub disk: BuiltDisk,
    /// The disk's own GUID.
    pub disk_guid: String,
    /// Length of the root file system image at the start of ROOT-A.
    pub root_bytes: u64,
    /// Length of the verity superblock and tree at the start of HASH-A.
    pub hash_bytes: u64,
    /// BOOT-A's kernel command line, without the `liftoff.boot_partuuid=` GRUB puts first.
    pub cmdline: String,
}

/// One payload file.
#[derive(Debug, Clone)]
pub struct PayloadFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// BLAKE3, hex, as in the manifest.
    pub blake3: String,
}

/// Built update payloads.
#[derive(Debug, Clone)]
pub struct BuiltPayloads {
    pub slot: Slot,
    pub root_hash: String,
    pub salt: String,
    pub boot: PayloadFile,
    pub root: PayloadFile,
    pub hash: PayloadFile,
    pub manifest: PathBuf,
    /// The BOOT image's kernel command line.
    pub cmdline: String,
}

/// A work folder beside the output, removed when dropped (success or failure).
struct WorkDir(PathBuf);

impl WorkDir {
    /// `.<out's name>.<purpose>-<pid>` in the folder of `out`: on the same file system, so
    /// the finished files are renamed into place.
    fn beside(out: &Path, purpose: &str) -> Result<WorkDir, BuildError> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = parent.join(format!(".{name}.{purpose}-{}", std::process::id()));
        if dir.exists() {
            remove_tree(&dir)?;
        }
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Best effort: a leftover work folder costs disk space, not correctness.
        let _ = remove_tree(&self.0);
    }
}

/// Removes a folder, making read-only folders of an unpacked root writable first.
fn remove_tree(dir: &Path) -> Result<(), BuildError> {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return Ok(());
    }
    image::run(Command::new("chmod").arg("-R").arg("u+w").arg(dir))?;
    std::fs::remove_dir_all(dir).map_err(io_err(format!("removing {}", dir.display())))
}

/// Where the root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    Dir(PathBuf),
    Tarball(PathBuf),
}

impl RootSource {
    /// A directory is a tree; a regular file is taken for a tarball (tar says if it is not).
    pub fn of(path: &Path) -> Result<RootSource, BuildError> {
        let meta = std::fs::metadata(path).map_err(|source| BuildError::NoRoot {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            Ok(RootSource::Dir(path.to_path_buf()))
        } else if meta.is_file() {
            Ok(RootSource::Tarball(path.to_path_buf()))
        } else {
            Err(BuildError::NotATree {
                path: path.to_path_buf(),
            })
        }
    }
}

/// Step 1: the root tree in `stage` (which must not exist), with the mount points PID 1
/// needs and every time stamp at 0.
pub fn stage_root(source: &RootSource, stage: &Path) -> Result<(), BuildError> {
    match source {
        RootSource::Dir(tree) => {
            std::fs::create_dir_all(stage)
                .map_err(io_err(format!("creating {}", stage.display())))?;
            // `TREE/.`: the tree's content and its own owner and mode, also when TREE is a
            // symbolic link to the tree.
            let out = Command::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg(tree.join("."))
                .arg(stage)
                .output()
                .map_err(io_err("running cp"))?;
            if !out.status.success() {
                return Err(BuildError::Copy {
                    tree: tree.clone(),
                    output: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
        RootSource::Tarball(tarball) => {
            std::fs::create_dir_all(stage)
                .map_err(io_err(format!("creating {}", stage.display())))?;
            let out = Command::new("tar")
                .arg("-x")
                .arg("-p")
                .arg("--numeric-owner")
                .arg("--same-owner")
                .arg("--xattrs")
                .arg("--xattrs-include=*")
                .arg("-f")
                .arg(tarball)
                .arg("-C")
                .arg(stage)
                .output()
                .map_err(io_err("running tar"))?;
            if !out.status.success() {
                return Err(BuildError::Unpack {
                    tarball: tarball.clone(),
                    output: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
    }
    for dir in MOUNT_POINTS {
        let path = stage.join(dir);
        if path.symlink_metadata().is_err() {
            std::fs::create_dir(&path).map_err(io_err(format!("creating {}", path.display())))?;
            let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(io_err(format!("chmod {}", path.display())))?;
        }
    }
    zero_times(stage)
}

/// Sets the access and modification time of everything under `dir` (itself included,
/// symbolic links themselves) to 0.
fn zero_times(dir: &Path) -> Result<(), BuildError> {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    let zero = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    };
    let mut stack = vec![dir.to_path_buf()];
    let mut dirs = Vec::new();
    while let Some(path) = stack.pop() {
        let meta = path
            .symlink_metadata()
            .map_err(io_err(format!("reading {}", path.display())))?;
        if meta.is_dir() {
            for entry in
                std::fs::read_dir(&path).map_err(io_err(format!("reading {}", path.display())))?
            {
                let entry = entry.map_err(io_err(format!("reading {}", path.display())))?;
                stack.push(entry.path());
            }
            dirs.push(path);
        } else {
            utimensat(CWD, &path, &zero, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
                io_err(format!("setting the times of {}", path.display()))(e.into())
            })?;
        }
    }
    // Folders last: nothing changes them after this.
    for path in dirs.iter().rev() {
        utimensat(CWD, path, &zero, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(format!("setting the times of {}", path.display()))(e.into()))?;
    }
    Ok(())
}

/// `mkfs.ext4 -d` copies each file's access and change times from the stage (the change
/// time cannot be set there); `debugfs` sets both to 0 in the image, by path.
fn fix_ext4_times(stage: &Path, image_path: &Path, work: &Path) -> Result<(), BuildError> {
    let mut script = String::new();
    let mut stack = vec![stage.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(path) = stack.pop() {
        if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            for entry in
                std::fs::read_dir(&path).map_err(io_err(format!("reading {}", path.display())))?
            {
                let entry = entry.map_err(io_err(format!("reading {}", path.display())))?;
                stack.push(entry.path());
            }
        }
        paths.push(path);
    }
    paths.sort();
    for path in paths {
        let rel = path.strip_prefix(stage).unwrap_or(&path);
        let name = format!("/{}", rel.display());
        if name.contains(['"', '\n', '\r']) {
            return Err(BuildError::Ext4Path { path });
        }
        for field in ["atime", "ctime"] {
            script.push_str(&format!("sif \"{name}\" {field} 0\n"));
        }
    }
    let script_path = work.join("debugfs.cmds");
    std::fs::write(&script_path, script)
        .map_err(io_err(format!("writing {}", script_path.display())))?;
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(image_path)
        .env("E2FSPROGS_FAKE_TIME", "1")
        .output()
        .map_err(io_err("running debugfs (e2fsprogs)"))?;
    // debugfs goes on after a failed command and still exits 0; its errors are the stderr
    // lines other than the version banner.
    let errors: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(BuildError::Image(ImageError::Tool {
            command: format!("debugfs -w -f {}", script_path.display()),
            output: errors.join("\n"),
        }));
    }
    Ok(())
}

/// Steps 1 and 2: the root file system image of `spec.root` at `out`.
pub fn make_root_image(
    spec: &ImageSpec,
    out: &Path,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    let source = RootSource::of(&spec.root)?;
    let stage = work.join("tree");
    progress(&match &source {
        RootSource::Dir(p) => format!("copying {}", p.display()),
        RootSource::Tarball(p) => format!("unpacking {}", p.display()),
    });
    stage_root(&source, &stage)?;
    progress(&format!(
        "making the {} root file system",
        match spec.fs {
            RootFsType::Erofs => "erofs",
            RootFsType::Ext4 => "ext4",
        }
    ));
    image::make_root_fs(&stage, out, spec.fs, &spec.seed)?;
    if spec.fs == RootFsType::Ext4 {
        fix_ext4_times(&stage, out, work)?;
    }
    remove_tree(&stage)
}

/// Writes the whole disk of DESIGN.md section 3 for `spec` to `out` (see the module docs).
/// `progress` gets one line per slow step.
pub fn build_image(
    spec: &ImageSpec,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuiltImage, BuildError> {
    let work = WorkDir::beside(out, "work")?;
    let root = work.0.join("root.img");
    make_root_image(spec, &root, &work.0, progress)?;
    let partial = work.0.join("disk.img");
    progress("building the verity tree and the partition table");
    let disk = image::build_disk(
        &root,
        &partial,
        &DiskSpec {
            seed: spec.seed.clone(),
            esp_mib: spec.esp_mib,
            boot_mib: spec.boot_mib,
            private_mib: spec.private_mib,
            data_mib: spec.data_mib,
            esp_files: Vec::new(),
            boot_a_files: Vec::new(),
        },
        &work.0.join("disk"),
    )?;
    progress("installing GRUB, grubenv and the kernel into the ESP and BOOT-A");
    let install = Install {
        arch: spec.arch,
        grubenv: Some(firmware::grubenv(Some(Slot::A), Some(false), &work.0)?),
        kernel: spec.boot.kernel.clone(),
        initramfs: spec.boot.initramfs.clone(),
        slots: vec![Slot::A],
        extra_cmdline: spec.boot.append.clone(),
    };
    firmware::install(&disk, &install, &work.0.join("fat"))?;
    let root_bytes = file_len(&root)?;
    let hash_bytes = file_len(&work.0.join("disk/hash.img"))?;
    std::fs::rename(&partial, out).map_err(io_err(format!(
        "renaming {} to {}",
        partial.display(),
        out.display()
    )))?;
    let cmdline = firmware::slot_cmdline(spec.arch, Slot::A, &disk, &spec.boot.append);
    Ok(BuiltImage {
        disk: BuiltDisk {
            path: out.to_path_buf(),
            ..disk
        },
        disk_guid: image::seeded_guid(&spec.seed, "disk"),
        root_bytes,
        hash_bytes,
        cmdline,
    })
}

/// Writes the update payloads of `spec` for `slot` into `out_dir` (created if missing; only
/// the four payload files in it are replaced).
pub fn build_payloads(
    spec: &ImageSpec,
    slot: Slot,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuiltPayloads, BuildError> {
    let work = WorkDir::beside(out_dir, "root")?;
    let root = work.0.join("root.img");
    make_root_image(spec, &root, &work.0, progress)?;
    write_payloads(
        &PayloadSpec {
            arch: spec.arch,
            seed: &spec.seed,
            boot: &spec.boot,
            boot_mib: spec.boot_mib,
            slot,
        },
        &root,
        out_dir,
        progress,
    )
}

/// What [`write_payloads`] needs besides the root image.
#[derive(Debug, Clone)]
pub struct PayloadSpec<'a> {
    pub arch: Arch,
    /// The seed the root image was made with: the same seed gives the same salt, so the
    /// same root hash as a disk of the same version.
    pub seed: &'a str,
    pub boot: &'a BootSpec,
    /// Size of the BOOT image (the BOOT partitions of the disks it goes to).
    pub boot_mib: u64,
    /// The slot the update is installed into: it names the slot on the command line.
    pub slot: Slot,
}

/// Writes the payloads for an existing root file system image `root` (copied, not moved)
/// into `out_dir`: its verity tree, the BOOT image and the manifest.
pub fn write_payloads(
    spec: &PayloadSpec<'_>,
    root: &Path,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuiltPayloads, BuildError> {
    let work = WorkDir::beside(out_dir, "payload")?;
    let staged = |name: &str| work.0.join(name);
    let root_copy = staged("root.img");
    image::run(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(root)
            .arg(&root_copy),
    )?;
    progress("building the verity tree");
    let (root_hash, salt) = image::make_hash(&root_copy, &staged("hash.img"), spec.seed)?;
    let slot_disk = BuiltDisk {
        path: PathBuf::new(),
        root_hash: root_hash.clone(),
        salt: salt.clone(),
        partuuids: Vec::new(),
        extents: Vec::new(),
    };
    let cmdline = firmware::slot_cmdline(spec.arch, spec.slot, &slot_disk, &spec.boot.append);
    progress(&format!(
        "making the BOOT image for slot {}",
        spec.slot.name()
    ));
    let files = firmware::boot_files(&spec.boot.kernel, &spec.boot.initramfs, &cmdline)?;
    // Label and seed as firmware::install gives a BOOT partition: a payload for slot A holds
    // exactly what a disk's BOOT-A holds.
    let label = format!("BOOT-{}", spec.slot.name());
    let fat_work = staged("fat");
    std::fs::create_dir_all(&fat_work)
        .map_err(io_err(format!("creating {}", fat_work.display())))?;
    firmware::make_fat_tree(
        &staged("boot.img"),
        spec.boot_mib,
        &label,
        &label,
        &files,
        &fat_work,
    )?;
    progress("digesting the payloads (BLAKE3) for the manifest");
    let payload = Payload {
        boot: staged("boot.img"),
        root: staged("root.img"),
        hash: staged("hash.img"),
    };
    let manifest = Manifest::for_files(&payload, &root_hash).map_err(BuildError::Manifest)?;
    std::fs::write(staged("manifest"), manifest.render())
        .map_err(io_err(format!("writing {}", staged("manifest").display())))?;
    std::fs::create_dir_all(out_dir).map_err(io_err(format!("creating {}", out_dir.display())))?;
    for name in ["boot.img", "root.img", "hash.img", "manifest"] {
        let dest = out_dir.join(name);
        std::fs::rename(staged(name), &dest)
            .map_err(io_err(format!("renaming to {}", dest.display())))?;
    }
    let file = |name: &str, digest: prairiedog::install::ImageDigest| PayloadFile {
        path: out_dir.join(name),
        bytes: digest.size,
        blake3: verity::hex::encode(&digest.blake3),
    };
    Ok(BuiltPayloads {
        slot: spec.slot,
        root_hash,
        salt,
        boot: file("boot.img", manifest.boot),
        root: file("root.img", manifest.root),
        hash: file("hash.img", manifest.hash),
        manifest: out_dir.join("manifest"),
        cmdline,
    })
}

fn file_len(path: &Path) -> Result<u64, BuildError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_err(format!("reading the size of {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("liftoff-build-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn root_sources() {
        let dir = work("sources");
        let file = dir.join("root.tar");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(RootSource::of(&dir).unwrap(), RootSource::Dir(dir.clone()));
        assert_eq!(
            RootSource::of(&file).unwrap(),
            RootSource::Tarball(file.clone())
        );
        assert!(matches!(
            RootSource::of(&dir.join("missing")),
            Err(BuildError::NoRoot { .. })
        ));
        assert!(matches!(
            RootSource::of(Path::new("/dev/null")),
            Err(BuildError::NotATree { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The stage gets the mount points it lacks, keeps what it has, and every time is 0.
    #[test]
    fn stage_adds_mount_points_and_zeroes_times() {
        let dir = work("stage");
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), "liftoff\n").unwrap();
        std::os::unix::fs::symlink("/run", tree.join("var")).unwrap();
        std::fs::set_permissions(&tree, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
        // Through a symbolic link to the tree: the tree is copied, not the link.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&tree, &link).unwrap();
        let stage = dir.join("stage");
        stage_root(&RootSource::Dir(link), &stage).unwrap();
        assert!(stage.symlink_metadata().unwrap().is_dir());
        for name in MOUNT_POINTS {
            assert!(stage.join(name).symlink_metadata().is_ok(), "{name}");
        }
        assert!(stage
            .join("var")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink());
        let mode = |p: &str| {
            std::os::unix::fs::PermissionsExt::mode(
                &stage.join(p).metadata().unwrap().permissions(),
            ) & 0o7777
        };
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode(""), 0o750, "the tree's own mode");
        assert_eq!(mode("local"), 0o755);
        for p in ["", "etc", "etc/hostname", "var", "tmp"] {
            let meta = stage.join(p).symlink_metadata().unwrap();
            assert_eq!(
                meta.modified().unwrap(),
                std::time::UNIX_EPOCH,
                "{p:?} mtime"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
