//! A whole Liftoff system for one architecture: the Debian root tree from
//! `scripts/build-rootfs` plus the files a caller adds, made into a verified disk image,
//! and the initramfs with PID 1 and the modules it loads. The kernel it boots
//! ([`SystemKernel`]) is Debian's cloud kernel with its modules, or a kernel with every
//! driver built in (the minimal kernel of `kernel-config/`) and no modules at all.
//!
//! Images are cached under a key that covers every input, and built under a file lock, so
//! parallel test processes build each one once and share it; each guest boots its own
//! sparse copy. The cache keeps only the disk of each image, and an image no build has asked
//! for within a day is removed when a new one is made.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::disk::{self, BuiltDisk, DiskSpec};
use crate::initramfs::{Initramfs, Phase};
use crate::kernel::{workspace_root, Kernel};
use crate::root::{self, RootFsType};
use crate::tool::{self, ImageError};
use crate::{artifacts, Arch};

/// A file added to the root tree.
#[derive(Debug, Clone)]
pub struct RootFile {
    /// Absolute path in the root.
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// The DHCP service PID 1 supervises in containerd mode (docs/services.md): dhcpcd from
/// Debian's `dhcpcd-base` (in the root since `scripts/build-rootfs` installs it), IPv4 on
/// `eth0` (without udev the kernel's own name), in the foreground, without a link-local
/// fallback. Ready once `eth0` has an IPv4 route (the lease's subnet route at least);
/// required, so the host is healthy only with network.
pub const DHCP_SERVICE: &str = "\
# The host's network: a DHCPv4 lease on eth0 (docs/services.md).
command=/usr/sbin/dhcpcd --nobackground --ipv4only --noipv4ll eth0
required=yes
# Ready once eth0 has an IPv4 route, which only an applied lease gives it here (no
# link-local fallback); a lease file from an earlier boot cannot pass this.
ready=command:/usr/bin/mawk $1==\"eth0\"{f=1}END{exit!f} /proc/net/route
stop_signal=TERM
stop_grace=5
";

/// [`DHCP_SERVICE`] as a file of the root, at `/etc/liftoff/services/10-dhcp`.
pub fn dhcp_service() -> RootFile {
    RootFile {
        path: "/etc/liftoff/services/10-dhcp".into(),
        mode: 0o644,
        data: DHCP_SERVICE.as_bytes().to_vec(),
    }
}

/// The CNI network of the container host: Debian's bridge plugin on `cni0` with
/// host-local addresses from 10.88.0.0/24 (containerd's own default range, a /24 of it);
/// the bridge is the gateway (10.88.0.1). No IP masquerading: it would need iptables,
/// which the root does not carry. `ctr run --cni` and the CRI plugin read it.
pub const CNI_CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "liftoff",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.88.0.0/24" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
"#;

/// [`CNI_CONFLIST`] as a file of the root, where CNI's default configuration folder is.
pub fn cni_conflist() -> RootFile {
    RootFile {
        path: "/etc/cni/net.d/10-liftoff.conflist".into(),
        mode: 0o644,
        data: CNI_CONFLIST.as_bytes().to_vec(),
    }
}

/// The image the demo imports, and where its OCI archive is in the root.
pub const DEMO_IMAGE: &str = "docker.io/liftoff/busybox:demo";
pub const DEMO_ARCHIVE: &str = "/usr/share/liftoff/busybox-oci.tar";

/// What the demo's container prints first on its line: the script has `$((6*7))` where
/// the line has 42, so only busybox's shell running in the container writes this.
pub const DEMO_MARKER: &str = "LIFTOFF-DEMO-CONTAINER-42";

/// The demo service (`/etc/liftoff/services/50-demo`): a one-shot that runs
/// [`DEMO_SCRIPT`] once per boot; optional, so a failed demo never costs health.
pub const DEMO_SERVICE: &str = "\
# The demo of scripts/boot (docs/container-host.md): import a local OCI image and run it
# once in a container on the CNI bridge; its output goes to the console.
command=/bin/sh /usr/local/bin/liftoff-demo
restart=no
";

/// The demo: waits for containerd to answer `ctr version` (at most 120 s), imports
/// [`DEMO_ARCHIVE`] and runs it once with its own network namespace on the CNI bridge.
/// Its lines start with `liftoff-demo:`; a failed step says `liftoff-demo: FAILED: ...`.
pub const DEMO_SCRIPT: &str = r#"#!/bin/sh
fail() { echo "liftoff-demo: FAILED: $*"; exit 1; }
n=0
until ctr version > /dev/null 2>&1; do
  [ "$n" -ge 600 ] && fail "containerd did not answer within 120 s"
  sleep 0.2
  n=$((n + 1))
done
# ctr --cni runs plugins from /opt/cni/bin (on DATA); Debian's are in /usr/lib/cni.
mkdir -p /opt/cni && ln -sfn /usr/lib/cni /opt/cni/bin || fail "linking /opt/cni/bin"
ctr image import @ARCHIVE@ > /dev/null || fail "ctr image import exited $?"
echo "liftoff-demo: imported @IMAGE@; running it in a container"
ctr run --rm --cni @IMAGE@ liftoff-demo /bin/sh -c   'echo "LIFTOFF-DEMO-CONTAINER-$((6*7)): hello from busybox in a container, $(readlink /proc/self/ns/net), eth0 $(ip -4 -o addr show dev eth0 | awk "{ print \$4 }")"' ||
  fail "ctr run exited $?"
echo "liftoff-demo: done"
"#;

/// What turns the root into the demo container host of `scripts/boot`: the DHCP service,
/// the CNI network, the busybox OCI archive ([`crate::oci`]), the demo service and script.
pub fn demo_files(arch: Arch) -> Result<Vec<RootFile>, ImageError> {
    let archive = crate::oci::busybox_archive(arch, DEMO_IMAGE).map_err(|e| ImageError::Io {
        what: format!("making the {arch} busybox OCI archive for the demo"),
        source: io::Error::other(e.to_string()),
    })?;
    let file = |path: &str, mode, data: Vec<u8>| RootFile {
        path: path.into(),
        mode,
        data,
    };
    Ok(vec![
        dhcp_service(),
        cni_conflist(),
        file(DEMO_ARCHIVE, 0o644, archive),
        file(
            "/etc/liftoff/services/50-demo",
            0o644,
            DEMO_SERVICE.as_bytes().to_vec(),
        ),
        file(
            "/usr/local/bin/liftoff-demo",
            0o755,
            DEMO_SCRIPT
                .replace("@ARCHIVE@", DEMO_ARCHIVE)
                .replace("@IMAGE@", DEMO_IMAGE)
                .into_bytes(),
        ),
    ])
}

/// Writes `files` into the staged root tree `stage`, with their folders.
pub fn add_files(stage: &Path, files: &[RootFile]) -> Result<(), ImageError> {
    for f in files {
        let dest = stage.join(f.path.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&dest, &f.data).map_err(io_err(format!("writing {}", dest.display())))?;
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(f.mode))
            .map_err(io_err(format!("chmod {}", dest.display())))?;
    }
    Ok(())
}

/// A symbolic link added to the root tree.
#[derive(Debug, Clone)]
pub struct RootLink {
    pub path: String,
    pub target: String,
}

#[derive(Debug, Clone)]
pub struct SystemSpec {
    pub arch: Arch,
    pub fs: RootFsType,
    pub files: Vec<RootFile>,
    pub links: Vec<RootLink>,
    pub disk: DiskSpec,
    /// The kernel the system boots, which decides the modules the root carries.
    pub kernel: SystemKernel,
}

/// The kernel a system boots, and so the kernel modules its initramfs and root carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SystemKernel {
    /// Debian's cloud kernel cached by `scripts/setup` ([`Kernel::debian`]): the initramfs
    /// carries the modules PID 1 loads ([`module_names`]), the root those a container host
    /// loads after boot ([`install_root_modules`]).
    #[default]
    Debian,
    /// This kernel image, with every driver Liftoff needs built in (as the kernel
    /// `scripts/build-kernel` builds from `kernel-config/`): the initramfs is PID 1 alone
    /// ([`pid1_initramfs`]: no `/etc/liftoff/modules`, so PID 1 loads none) and the root
    /// has no `/lib/modules`.
    BuiltIn(PathBuf),
}

impl SystemKernel {
    /// The kernel image file.
    pub fn image(&self, arch: Arch) -> Result<PathBuf, ImageError> {
        match self {
            SystemKernel::Debian => Ok(debian_kernel(arch)?.image),
            SystemKernel::BuiltIn(path) if path.is_file() => Ok(path.clone()),
            SystemKernel::BuiltIn(path) => Err(ImageError::Io {
                what: format!("reading the {arch} kernel {}", path.display()),
                source: io::Error::from(io::ErrorKind::NotFound),
            }),
        }
    }

    /// The kernel whose modules the initramfs and the root get; `None` for a kernel with
    /// everything built in.
    pub fn modules(&self, arch: Arch) -> Result<Option<Kernel>, ImageError> {
        match self {
            SystemKernel::Debian => debian_kernel(arch).map(Some),
            SystemKernel::BuiltIn(_) => Ok(None),
        }
    }

    /// Liftoff's initramfs for this kernel: [`initramfs`] for Debian's,
    /// [`pid1_initramfs`] for one with everything built in.
    pub fn initramfs(&self, arch: Arch) -> Result<Vec<u8>, String> {
        match self.modules(arch).map_err(|e| e.to_string())? {
            Some(kernel) => initramfs(arch, &kernel),
            None => pid1_initramfs(arch),
        }
    }
}

fn debian_kernel(arch: Arch) -> Result<Kernel, ImageError> {
    Kernel::debian(arch).map_err(|e| ImageError::Io {
        what: format!("finding the {arch} Debian kernel"),
        source: io::Error::other(e.to_string()),
    })
}

/// The modules PID 1 loads on Debian's cloud kernel: the disk controllers of QEMU, EC2 and
/// other clouds (virtio-blk, virtio-scsi with the SCSI disk driver, NVMe, Xen blkfront),
/// device-mapper for verity and crypt, the XTS mode dm-crypt's aes-xts-plain64 needs (the
/// kernel cannot load it on demand without modprobe), the kernel crypto API's socket
/// interface (`algif_skcipher`: PID 1 encrypts LUKS2 keyslot areas with the kernel's
/// ecb(aes)), erofs for the root, overlay for /etc,
/// softdog for `liftoff.watchdog` on machines without a hardware watchdog, efivarfs for the
/// firmware variables that name the boot disk (clones, Secure Boot's unified images), the
/// network cards of QEMU and EC2 (virtio_net, ENA), efi-pstore (crash logs kept in EFI
/// variables), the TPM interfaces (CRB: EC2's NitroTPM; TIS: swtpm, most servers), and
/// the ACPI power button with the input event interface PID 1 reads it through (what a
/// hypervisor's "stop" presses; `liftoff_init::supervise::button`).
///
/// PID 1 loads a driver only when its hardware is there (`liftoff_init::stage::modules`),
/// so a machine pays only for its own. Names the kernel has built in (NVMe and the TPM
/// drivers on amd64) are left out of the initramfs. When PID 1 loads each one is
/// [`module_plan`]'s: the disk drivers first, [`VERITY_MODULES`] after the slot choice,
/// [`DATA_MODULES`] beside the boot, [`LATE_MODULES`] after the handoff.
pub const SYSTEM_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "nvme",
    "xen-blkfront",
    "dm-mod",
    "dm-verity",
    "dm-crypt",
    "ecb",
    "xts",
    "algif_skcipher",
    "erofs",
    "overlay",
    "softdog",
    "efivarfs",
    "virtio_net",
    "ena",
    "efi-pstore",
    "tpm_crb",
    "tpm_tis",
    "button",
    "evdev",
];

/// Loaded by PID 1 once it has chosen the slot, before verity: device-mapper and dm-verity,
/// and the root's file systems (erofs, and overlay for the writable /etc). Device-mapper,
/// which dm-crypt needs, loads with [`DATA_MODULES`] in PID 1's child.
pub const VERITY_MODULES: &[&str] = &["dm-mod", "dm-verity", "erofs", "overlay"];

/// Loaded in a child process of PID 1 from the start of the modules stage (the TPM drivers
/// once the disk drivers are in), and waited for before DATA opens: dm-crypt, the ciphers
/// it and PID 1's LUKS2 code use (with the architecture's AES acceleration, whose
/// self-tests take tens of milliseconds under emulation), the kernel crypto API's socket
/// interface and the TPM drivers (sealed keys). Also the architecture's SHA-256
/// acceleration, which dm-verity needs when its table loads (it picks its hash then: loaded
/// later, verity would hash with the generic code for the machine's life): PID 1 waits for
/// the child's first modules before it loads [`VERITY_MODULES`]. It loads here, beside the
/// disk and the slot choice, because the child's modules are in before PID 1 needs them
/// and PID 1's path is the longer one (docs/performance.md, "PID 1 idle behind a failed
/// efivarfs").
pub const DATA_MODULES: &[&str] = &[
    "dm-crypt",
    "ecb",
    "xts",
    "algif_skcipher",
    "tpm_crb",
    "tpm_tis",
    "aesni_intel",
    "aes_ce_blk",
    "sha256_ssse3",
    "sha2_ce",
];

/// Aliases a module gets in the module list beyond those of its `.modinfo`, so that PID 1
/// loads it only where it can work: efivarfs registers only when the firmware has runtime
/// variable services, exactly when the kernel also registers the `efivars` platform device
/// (`efisubsys_init`; efi-pstore is matched to the same device). Loaded without them (a
/// BIOS boot, a QEMU `-kernel` boot) it fails with ENODEV, and a failed module load waits
/// for two RCU grace periods: 50-70 ms of PID 1's path under TCG (docs/performance.md).
pub const GATE_ALIASES: &[(&str, &str)] = &[("efivarfs", "platform:efivars")];

/// What serves only after the handoff: the network cards (the next stage brings the
/// network up) and the power button with the input event interface (read by the
/// containerd supervisor). In containerd mode PID 1 loads them after the handoff mark,
/// before the supervisor opens the button; for an exec handoff a child process of PID 1
/// loads them while the next stage starts (it outlives the exec and the new PID 1 reaps
/// it).
pub const LATE_MODULES: &[&str] = &["virtio_net", "ena", "button", "evdev"];

/// Drivers taken when the kernel has them: SATA (AHCI through libata and the SCSI disk
/// driver). Debian's cloud kernels have no AHCI driver at all; a kernel for bare metal
/// does.
pub const OPTIONAL_MODULES: &[&str] = &["ahci"];

/// The architecture's AES and SHA-256 acceleration, for dm-crypt and dm-verity. On a CPU
/// without the instructions the module refuses to load (ENODEV) and PID 1 goes on.
pub fn arch_modules(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &["aesni_intel", "sha256_ssse3"],
        Arch::Aarch64 => &["aes_ce_blk", "sha2_ce"],
    }
}

/// Every module name the initramfs for `kernel` gets: [`SYSTEM_MODULES`], the
/// architecture's, and those of [`OPTIONAL_MODULES`] the kernel has.
pub fn module_names(arch: Arch, kernel: &Kernel) -> Result<Vec<&'static str>, ImageError> {
    let mut names: Vec<&'static str> = SYSTEM_MODULES
        .iter()
        .chain(arch_modules(arch))
        .copied()
        .collect();
    for name in OPTIONAL_MODULES {
        if kernel.has_module(name).map_err(|e| ImageError::Io {
            what: format!(
                "looking for module {name} in {}",
                kernel.modules_dir.display()
            ),
            source: io::Error::other(e.to_string()),
        })? {
            names.push(name);
        }
    }
    Ok(names)
}

/// [`module_names`] by the phase PID 1 loads them in ([`Phase`]): [`VERITY_MODULES`],
/// [`DATA_MODULES`], [`LATE_MODULES`], everything else (the disk drivers, efivarfs,
/// efi-pstore, softdog) before the disk is looked for. The initramfs builder puts each
/// dependency in the earliest phase that needs it.
pub fn module_plan(
    arch: Arch,
    kernel: &Kernel,
) -> Result<Vec<(Phase, Vec<&'static str>)>, ImageError> {
    let mut plan = vec![
        (Phase::Root, Vec::new()),
        (Phase::Verity, Vec::new()),
        (Phase::Data, Vec::new()),
        (Phase::Late, Vec::new()),
    ];
    for name in module_names(arch, kernel)? {
        let phase = if VERITY_MODULES.contains(&name) {
            1
        } else if DATA_MODULES.contains(&name) {
            2
        } else if LATE_MODULES.contains(&name) {
            3
        } else {
            0
        };
        if let Some((_, names)) = plan.get_mut(phase) {
            names.push(name);
        }
    }
    Ok(plan)
}

/// Folders of the module tree a container host loads from after boot, each taken whole:
/// overlayfs (containerd's snapshotter), netfilter for IPv4, IPv6 and bridges (iptables and
/// nftables rules of CNI's bridge, portmap and firewall plugins, kube-proxy's iptables and
/// IPVS modes, conntrack), the bridge with `br_netfilter`, and the traffic-control
/// schedulers and classifiers (CNI's bandwidth plugin).
pub const CONTAINER_MODULE_DIRS: &[&str] = &[
    "kernel/fs/overlayfs",
    "kernel/net/netfilter",
    "kernel/net/ipv4/netfilter",
    "kernel/net/ipv6/netfilter",
    "kernel/net/bridge",
    "kernel/net/sched",
];

/// Single modules a container host loads after boot: the interfaces CNI plugins make
/// (veth pairs, macvlan, ipvlan, VLANs, VXLAN and IP-in-IP overlays, WireGuard, dummy),
/// `ifb` (ingress shaping of the bandwidth plugin), `tun` (user-mode networking, VPNs)
/// and FUSE (fuse-overlayfs, lazy-pulling snapshotters).
pub const CONTAINER_MODULES: &[&str] = &[
    "veth",
    "macvlan",
    "ipvlan",
    "8021q",
    "vxlan",
    "ipip",
    "wireguard",
    "dummy",
    "ifb",
    "tun",
    "fuse",
];

/// The kernel modules the verified root carries, as paths of `kernel`'s module tree,
/// dependencies included: [`CONTAINER_MODULE_DIRS`], [`CONTAINER_MODULES`] and those PID 1
/// loads from the initramfs ([`module_names`]), so that `modprobe` in the root knows every
/// module that is loaded.
pub fn root_module_paths(arch: Arch, kernel: &Kernel) -> Result<Vec<String>, ImageError> {
    let err = |e: crate::kernel::KernelError| ImageError::Io {
        what: format!(
            "choosing the root's modules from {}",
            kernel.modules_dir.display()
        ),
        source: io::Error::other(e.to_string()),
    };
    let under = kernel.modules_under(CONTAINER_MODULE_DIRS).map_err(err)?;
    let mut names: Vec<String> = under
        .iter()
        .map(|p| crate::kernel::module_name(p))
        .collect();
    names.extend(CONTAINER_MODULES.iter().map(|n| (*n).to_owned()));
    names.extend(module_names(arch, kernel)?.iter().map(|n| (*n).to_owned()));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    kernel.module_closure(&names).map_err(err)
}

/// The index files of the module tree that depmod reads, not writes: the built-in
/// modules (so `modprobe` of one succeeds) and the order of the kernel's build.
const MODULE_INDEX_INPUTS: [&str; 3] = [
    "modules.order",
    "modules.builtin",
    "modules.builtin.modinfo",
];

/// Installs [`root_module_paths`] into the staged root `stage` at
/// `lib/modules/<version>` and runs `depmod -b stage <version>` (kmod), so that
/// `modprobe` in the booted root (containerd's, CNI's, the kernel's module requests)
/// finds them and their dependencies.
pub fn install_root_modules(stage: &Path, arch: Arch, kernel: &Kernel) -> Result<(), ImageError> {
    let dest = stage.join("lib/modules").join(&kernel.version);
    for rel in root_module_paths(arch, kernel)?
        .iter()
        .map(String::as_str)
        .chain(MODULE_INDEX_INPUTS)
    {
        let to = dest.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        let from = kernel.modules_dir.join(rel);
        std::fs::copy(&from, &to).map_err(io_err(format!(
            "copying {} to {}",
            from.display(),
            to.display()
        )))?;
    }
    tool::run(
        Command::new("depmod")
            .arg("-b")
            .arg(stage)
            .arg(&kernel.version),
    )
}

/// The Debian root tree for `arch`, built by `scripts/build-rootfs` if missing.
pub fn root_tree(arch: Arch) -> Result<PathBuf, ImageError> {
    let script = workspace_root().join("scripts/build-rootfs");
    let out = Command::new(&script)
        .arg(arch.name())
        .output()
        .map_err(|source| ImageError::Io {
            what: format!("running {}", script.display()),
            source,
        })?;
    if !out.status.success() {
        return Err(ImageError::Tool {
            command: format!("{} {arch}", script.display()),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

/// A built system image.
#[derive(Debug, Clone)]
pub struct BuiltSystem {
    pub disk: BuiltDisk,
    /// Length of the root file system image in ROOT-A (the verity data area).
    pub root_bytes: u64,
}

impl BuiltSystem {
    /// Copies the root file system image out of ROOT-A into `dest`: the cache keeps only
    /// the disk, so each image costs its disk's blocks and no more.
    pub fn extract_root(&self, dest: &Path) -> Result<(), ImageError> {
        let (offset, _) = self.disk.extent(disk::ROOT_A);
        disk::extract(&self.disk.path, offset, self.root_bytes, dest)
    }
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> ImageError {
    move |source| ImageError::Io { what, source }
}

/// Builds (or reuses) the disk for `spec` under `<target>/vm-images`.
pub fn build(spec: &SystemSpec) -> Result<BuiltSystem, ImageError> {
    let tree = root_tree(spec.arch)?;
    let kernel = spec.kernel.modules(spec.arch)?;
    let mut key = Sha256::new();
    key.update(format!(
        "v4 {} {:?} {:?} {} {} {:?} {:?}",
        spec.arch,
        spec.fs,
        spec.disk,
        tree.display(),
        // The root does not depend on which built-in kernel boots it: it has no modules.
        kernel.as_ref().map_or("no modules", |k| k.version.as_str()),
        CONTAINER_MODULE_DIRS,
        CONTAINER_MODULES
    ));
    for f in &spec.files {
        key.update(format!("{} {:o} {}", f.path, f.mode, f.data.len()));
        key.update(&f.data);
    }
    for l in &spec.links {
        key.update(format!("{} -> {}", l.path, l.target));
    }
    // What crate::tools adds: a new prairiedog or unit makes a new image.
    key.update(crate::tools::fingerprint(spec.arch)?);
    let key = verity::hex::encode(key.finalize().get(..8).unwrap_or_default());
    let dir = artifacts::target_dir()
        .join("vm-images")
        .join(format!("{}-{key}", spec.arch));
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let lock_path = dir.join(".lock");
    let lock =
        File::create(&lock_path).map_err(io_err(format!("creating {}", lock_path.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(format!("locking {}", lock_path.display()))(e.into()))?;

    let disk_path = dir.join("disk.img");
    let meta_path = dir.join("disk.meta");
    if let Some(system) = read_meta(&meta_path, &disk_path) {
        // Marks the image as used, for [`prune`].
        let _ = File::options()
            .append(true)
            .open(&meta_path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(system);
    }
    let stage = dir.join("stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(io_err(format!("removing {}", stage.display())))?;
    }
    tool::run(Command::new("cp").arg("-a").arg(&tree).arg(&stage))?;
    if let Some(kernel) = &kernel {
        install_root_modules(&stage, spec.arch, kernel)?;
    }
    // Mount points PID 1 needs in the read-only root: /local for DATA (DESIGN.md
    // section 8); the API file systems, /tmp and /opt are in every Debian tree.
    for dir in ["local", "opt"] {
        let path = stage.join(dir);
        std::fs::create_dir_all(&path).map_err(io_err(format!("creating {}", path.display())))?;
    }
    crate::tools::add(&stage, spec.arch)?;
    add_files(&stage, &spec.files)?;
    for l in &spec.links {
        let dest = stage.join(l.path.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        let _ = std::fs::remove_file(&dest);
        std::os::unix::fs::symlink(&l.target, &dest)
            .map_err(io_err(format!("linking {}", dest.display())))?;
    }
    let work = dir.join("work");
    let root_image = work.join("root.img");
    std::fs::create_dir_all(&work).map_err(io_err(format!("creating {}", work.display())))?;
    root::make_root_fs(&stage, &root_image, spec.fs, &spec.disk.seed)?;
    let _ = std::fs::remove_dir_all(&stage);
    let disk = disk::build_disk(&root_image, &disk_path, &spec.disk, &work)?;
    let root_bytes = std::fs::metadata(&root_image)
        .map_err(io_err(format!("reading {}", root_image.display())))?
        .len();
    // The root, hash tree and FAT images are all inside the disk now.
    let _ = std::fs::remove_dir_all(&work);
    let system = BuiltSystem { disk, root_bytes };
    write_meta(&meta_path, &system)?;
    prune(&dir);
    Ok(system)
}

/// How long an image nobody asked for stays in the cache.
const UNUSED_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes the images beside `keep` that no build has asked for within [`UNUSED_FOR`]:
/// every change to PID 1 or the probe makes new keys, and each image is a few hundred
/// megabytes. An image in use by a running test was asked for minutes ago.
fn prune(keep: &Path) {
    let Some(cache) = keep.parent() else { return };
    for entry in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        let dir = entry.path();
        if dir == keep || !dir.is_dir() {
            continue;
        }
        // A folder without disk.meta is a build that failed; its own time counts.
        let unused = std::fs::metadata(dir.join("disk.meta"))
            .or_else(|_| std::fs::metadata(&dir))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > UNUSED_FOR);
        if unused {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn write_meta(path: &Path, system: &BuiltSystem) -> Result<(), ImageError> {
    let disk = &system.disk;
    let mut text = format!(
        "root_hash={}\nsalt={}\nroot_bytes={}\nsector_size={}\n",
        disk.root_hash,
        disk.salt,
        system.root_bytes,
        disk.sector_size.bytes()
    );
    for (i, (uuid, (off, len))) in disk.partuuids.iter().zip(&disk.extents).enumerate() {
        text.push_str(&format!("part{}={uuid},{off},{len}\n", i + 1));
    }
    std::fs::write(path, text).map_err(io_err(format!("writing {}", path.display())))
}

fn read_meta(path: &Path, disk_path: &Path) -> Option<BuiltSystem> {
    let text = std::fs::read_to_string(path).ok()?;
    if !disk_path.is_file() {
        return None;
    }
    let mut disk = BuiltDisk {
        path: disk_path.to_path_buf(),
        root_hash: String::new(),
        salt: String::new(),
        partuuids: Vec::new(),
        extents: Vec::new(),
        sector_size: disk::SectorSize::S512,
    };
    let mut root_bytes = None;
    for line in text.lines() {
        let (k, v) = line.split_once('=')?;
        match k {
            "root_hash" => disk.root_hash = v.to_owned(),
            "salt" => disk.salt = v.to_owned(),
            "root_bytes" => root_bytes = Some(v.parse().ok()?),
            "sector_size" => disk.sector_size = disk::sector_size(v.parse().ok()?).ok()?,
            _ => {
                let mut parts = v.split(',');
                disk.partuuids.push(parts.next()?.to_owned());
                disk.extents
                    .push((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?));
            }
        }
    }
    Some(BuiltSystem {
        disk,
        root_bytes: root_bytes?,
    })
}

/// Copies the cached disk for one guest (sparse, so it costs little).
pub fn guest_disk(system: &BuiltSystem, dest: &Path) -> Result<BuiltDisk, ImageError> {
    let _ = std::fs::remove_file(dest);
    tool::run(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&system.disk.path)
            .arg(dest),
    )?;
    Ok(BuiltDisk {
        path: dest.to_path_buf(),
        ..system.disk.clone()
    })
}

/// The initramfs for a kernel with everything built in: Liftoff's PID 1 as /init and no
/// modules (no `/etc/liftoff/modules`: PID 1 loads none and logs `loaded 0 modules`).
pub fn pid1_initramfs(arch: Arch) -> Result<Vec<u8>, String> {
    let init = artifacts::musl_binary(arch, "init")?;
    let mut initramfs = Initramfs::new().map_err(|e| e.to_string())?;
    initramfs
        .host_file("init", 0o755, &init)
        .map_err(|e| e.to_string())?;
    initramfs.finish().map_err(|e| e.to_string())
}

/// The initramfs for Debian's kernel `kernel`: Liftoff's PID 1 as /init and
/// [`SYSTEM_MODULES`] in [`module_plan`]'s phases.
pub fn initramfs(arch: Arch, kernel: &Kernel) -> Result<Vec<u8>, String> {
    let init = artifacts::musl_binary(arch, "init")?;
    let mut initramfs = Initramfs::new().map_err(|e| e.to_string())?;
    initramfs
        .host_file("init", 0o755, &init)
        .map_err(|e| e.to_string())?;
    let plan = module_plan(arch, kernel).map_err(|e| e.to_string())?;
    let plan: Vec<(Phase, &[&str])> = plan.iter().map(|(p, n)| (*p, n.as_slice())).collect();
    initramfs
        .modules_in_phases(kernel, &plan)
        .map_err(|e| e.to_string())?;
    initramfs.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in the cpio archive `bytes`, as GNU cpio lists them.
    fn cpio_names(bytes: &[u8], work: &Path) -> Vec<String> {
        let archive = work.join("initramfs.cpio");
        std::fs::write(&archive, bytes).unwrap();
        let out = Command::new("cpio")
            .args(["-t", "-F"])
            .arg(&archive)
            .output()
            .expect("cpio (from scripts/setup) must be installed");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A kernel with everything built in boots an initramfs with PID 1 alone: no module
    /// list (so PID 1 loads none) and no module tree, where Debian's kernel gets both. A
    /// kernel file that is not there is named in the error.
    #[test]
    fn a_built_in_kernel_gets_no_modules() {
        for arch in Arch::ALL {
            let work = crate::test_work(&format!("built-in-kernel-{arch}"));
            let image = work.join("bzImage");
            std::fs::write(&image, b"a kernel").unwrap();
            let built_in = SystemKernel::BuiltIn(image.clone());
            assert_eq!(built_in.image(arch).unwrap(), image);
            assert!(built_in.modules(arch).unwrap().is_none());
            let names = cpio_names(&built_in.initramfs(arch).unwrap(), &work);
            assert!(names.iter().any(|n| n == "init"), "{arch}: {names:?}");
            assert!(
                !names
                    .iter()
                    .any(|n| n.starts_with("lib/modules") || n == MODULE_LIST),
                "{arch}: {names:?}"
            );
            let debian = cpio_names(&SystemKernel::Debian.initramfs(arch).unwrap(), &work);
            assert!(debian.iter().any(|n| n == MODULE_LIST), "{arch}");
            assert!(debian.iter().any(|n| n.contains("/dm-verity.ko")), "{arch}");

            let missing = work.join("no-such-kernel");
            let err = SystemKernel::BuiltIn(missing.clone())
                .image(arch)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&missing.display().to_string()), "{err}");
            std::fs::remove_dir_all(&work).unwrap();
        }
    }

    /// Where PID 1 reads its module list (`liftoff_init::stage::modules::LIST`).
    const MODULE_LIST: &str = "etc/liftoff/modules";

    #[test]
    fn phased_modules_are_system_modules() {
        for name in DATA_MODULES.iter().chain(LATE_MODULES) {
            let arch_module = Arch::ALL.iter().any(|a| arch_modules(*a).contains(name));
            assert!(
                SYSTEM_MODULES.contains(name) || arch_module,
                "{name} is in a phase but not in the initramfs"
            );
        }
        for name in [
            "dm-mod",
            "dm-verity",
            "erofs",
            "overlay",
            "efi-pstore",
            "efivarfs",
        ] {
            assert!(!DATA_MODULES.contains(&name) && !LATE_MODULES.contains(&name));
        }
    }

    /// The root's module tree for both Debian kernels: depmod's modules.dep names every
    /// module installed and only those, each dependency is there, and kmod's own tools
    /// (`modprobe --show-depends`, `modinfo`) resolve the container modules inside it.
    #[test]
    fn root_modules_are_installed_and_depmoded() {
        for arch in Arch::ALL {
            let kernel = Kernel::debian(arch).expect("scripts/setup caches both kernels");
            let stage = crate::test_work(&format!("root-modules-{arch}"));
            install_root_modules(&stage, arch, &kernel).unwrap();
            let tree = stage.join("lib/modules").join(&kernel.version);
            let dep = std::fs::read_to_string(tree.join("modules.dep")).unwrap();
            let deps = crate::kernel::parse_modules_dep(&dep);
            let installed = root_module_paths(arch, &kernel).unwrap();
            let listed: Vec<&String> = deps.keys().collect();
            let mut want: Vec<&String> = installed.iter().collect();
            want.sort();
            assert_eq!(
                listed, want,
                "{arch}: modules.dep lists exactly what was installed"
            );
            for (module, needs) in &deps {
                assert!(tree.join(module).is_file(), "{arch}: {module}");
                for d in needs {
                    assert!(
                        deps.contains_key(d),
                        "{arch}: {module} needs {d}, not installed"
                    );
                }
            }
            for f in [
                "modules.dep.bin",
                "modules.alias.bin",
                "modules.builtin.bin",
                "modules.symbols.bin",
            ] {
                assert!(tree.join(f).is_file(), "{arch}: depmod made {f}");
            }
            let names: Vec<String> = installed
                .iter()
                .map(|p| crate::kernel::module_name(p))
                .collect();
            for m in [
                "overlay",
                "veth",
                "bridge",
                "br_netfilter",
                "nf_tables",
                "nf_nat",
                "xt_MASQUERADE",
                "iptable_nat",
                "vxlan",
                "sch_tbf",
                "dm_verity",
                "erofs",
            ] {
                assert!(names.iter().any(|n| n == m), "{arch}: {m} in the root");
            }
            // kmod resolves a module and its dependencies in the tree, as modprobe in
            // the guest does (a dry run: nothing is loaded).
            let out = Command::new("modprobe")
                .arg("-d")
                .arg(&stage)
                .args(["-S", &kernel.version, "--show-depends", "br_netfilter"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{arch}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.contains("/bridge.ko")
                    && text.contains("/llc.ko")
                    && text.contains("/br_netfilter.ko"),
                "{arch}: {text}"
            );
            let out = Command::new("modinfo")
                .arg("-b")
                .arg(&stage)
                .args(["-k", &kernel.version, "-n", "veth"])
                .output()
                .unwrap();
            let path = String::from_utf8_lossy(&out.stdout);
            assert!(
                path.trim().starts_with(&tree.display().to_string())
                    && path.trim().ends_with("/veth.ko"),
                "{arch}: {path}"
            );
            std::fs::remove_dir_all(&stage).unwrap();
        }
    }

    #[test]
    fn prune_removes_only_images_unused_for_a_day() {
        let cache = std::env::temp_dir().join(format!("liftoff-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 24 * 3600);
        let image = |name: &str, meta: bool, at: Option<std::time::SystemTime>| {
            let dir = cache.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("disk.img"), b"disk").unwrap();
            if meta {
                std::fs::write(dir.join("disk.meta"), b"root_bytes=1\n").unwrap();
            }
            if let Some(t) = at {
                let f = if meta {
                    dir.join("disk.meta")
                } else {
                    dir.clone()
                };
                File::open(&f).unwrap().set_modified(t).unwrap();
            }
            dir
        };
        let keep = image("x86_64-keep", true, Some(old));
        let stale = image("x86_64-stale", true, Some(old));
        let recent = image("aarch64-recent", true, None);
        let failed_old = image("x86_64-failed", false, Some(old));
        let failed_new = image("x86_64-building", false, None);
        prune(&keep);
        assert!(keep.exists(), "the image just built stays");
        assert!(!stale.exists(), "unused for three days");
        assert!(recent.exists(), "used today");
        assert!(!failed_old.exists(), "a failed build from three days ago");
        assert!(failed_new.exists(), "a build in progress");
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
