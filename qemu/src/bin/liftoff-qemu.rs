//! `liftoff-qemu`: build a Liftoff container-host disk image or update payloads from a root
//! tree, and boot a disk under QEMU through the firmware and GRUB, with the console on the
//! terminal. Arguments are parsed here; the building is `liftoff_image::build`'s, the
//! booting `liftoff_qemu`'s.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use liftoff_image::build::{self, BootSpec, BuiltImage, BuiltPayloads, ImageSpec};
use liftoff_image::disk::{self, Slot};
use liftoff_image::kernel::Kernel;
use liftoff_image::root::RootFsType;
use liftoff_image::secureboot::keys::ExistingDb;
use liftoff_image::secureboot::varstore::{self, Format};
use liftoff_image::secureboot::KeySet;
use liftoff_image::{artifacts, system, tool};
use liftoff_qemu::firmware::Mode;
use liftoff_qemu::vm::{self, Bus, Disk, Vm};
use liftoff_qemu::{console, firmware, Arch};
use serde_json::json;
use sha2::{Digest, Sha256};

const USAGE: &str = "\
usage: liftoff-qemu image   --root DIR|TARBALL --out DISK [options]
       liftoff-qemu payload --root DIR|TARBALL --out-dir DIR [--slot A|B] [options]
       liftoff-qemu boot    [--arch A] [--disk DISK | --append ARGS] [--keys DIR]
                            [--no-secure-boot] [--timeout S] [--stay] [--bus B]
       liftoff-qemu keys    --out DIR [--name TEXT] [--db-key KEY --db-cert CERT]
       liftoff-qemu uefi-vars --out FILE [--arch A] [--keys DIR] [--aws]

`liftoff-qemu VERB --help` describes each verb.
Exit status: 0 done; 1 the build or the boot failed; 2 bad arguments.";

const IMAGE_USAGE: &str = "\
usage: liftoff-qemu image --root DIR|TARBALL --out DISK [options]

Turns a root tree (a directory, or a tarball tar can unpack: .tar, .tar.gz, .tar.xz, ...)
into the complete GPT disk of DESIGN.md section 3: the ESP with shim, stock GRUB and
grubenv, BOOT-A with liftoff.efi (the unified kernel image: kernel, Liftoff's initramfs and
slot A's command line with the root hash), ROOT-A and its dm-verity HASH-A, an empty slot
B, PRIVATE (ext4) and DATA. shim, GRUB and the UKI are signed with the db key of --keys.
Slot A has priority 1 and is marked successful. An x86_64 image with 512-byte sectors
also boots under legacy BIOS: GRUB for i386-pc in a BIOS boot partition (number 10) and
its boot sector in the protective MBR, and BOOT-A also holds bios/vmlinuz, bios/initramfs
and bios/cmdline.env (no Secure Boot under BIOS; a 4Kn or aarch64 image has none of
this). Mount points PID 1 needs (/local, /opt,
/run, /tmp, /etc, /var) are added when the tree lacks them. The same inputs and seed give
the same bytes. Unpacking a tarball keeps its owners, so run as root.

options:
  --arch x86_64|aarch64   architecture of the kernel and GRUB (default: this host's)
  --fs erofs|ext4         root file system (default erofs)
  --seed TEXT             seed of every GUID, UUID and the verity salt (default liftoff)
  --keys DIR              Secure Boot key set (`liftoff-qemu keys`); default: this
                          machine's development set, made on first use (not for production)
  --image-version V       IMAGE_VERSION= in the signed kernel image (dotted numbers, default
                          0); prairiedog install refuses an update older than the running slot
  --kernel PATH           kernel image (default: the cached Debian cloud kernel)
  --modules DIR           with --kernel: its lib/modules/<version> tree, for the modules
                          PID 1 loads; without it the initramfs holds PID 1 only
  --initramfs PATH        use this initramfs instead of Liftoff's
  --append ARGS           added to the kernel command line (e.g. liftoff.handoff=containerd)
  --boot-mib N            BOOT partitions (default 64)
  --private-mib N         PRIVATE (default 16)
  --data-mib N            DATA (default 64; PID 1 grows it to fill a larger disk)
  --sector-size 512|4096  logical sector size of the disk the image is for (default 512);
                          4096 makes a 4Kn image (GPT in 4096-byte LBAs, FAT with
                          4096-byte sectors) for devices with 4096-byte logical blocks
  --json                  print the result as one JSON object: paths, root hash, salt,
                          partition GUIDs and extents

Progress goes to stderr. Exit status: 0 done; 1 the build failed (the message names the
file or tool; nothing is left at --out); 2 bad arguments.";

const PAYLOAD_USAGE: &str = "\
usage: liftoff-qemu payload --root DIR|TARBALL --out-dir DIR [--slot A|B] [options]

Builds the update payloads of a root tree into DIR: boot.img (the BOOT partition's FAT image:
liftoff.efi, the signed unified kernel image naming --slot), root.img, hash.img (dm-verity
superblock and tree) and manifest (sizes and BLAKE3 of the three, and the verity root
hash), for

  prairiedog install --manifest DIR/manifest --boot DIR/boot.img --root DIR/root.img \\
    --hash DIR/hash.img

With the same root and seed, root.img and hash.img are what `liftoff-qemu image` puts in
ROOT-A and HASH-A. --slot is the slot the update goes to (default B: the inactive slot of a
new disk). --boot-partuuid GUID puts liftoff.boot_partuuid=GUID (the BOOT partition the
update goes to) on its command line. Options as for `image` (--arch, --fs, --seed, --keys,
--kernel, --modules, --initramfs, --append, --boot-mib, --sector-size, --json).

Exit status: 0 done; 1 the build failed (the payload files in DIR are left as they were);
2 bad arguments.";

const BOOT_USAGE: &str = "\
usage: liftoff-qemu boot [--arch x86_64|aarch64] [--disk DISK | --append ARGS] [--timeout SECONDS] [--stay]
                         [--bus virtio-blk|nvme|virtio-scsi|ahci]

Without --disk: builds the container-host disk from the Debian root tree of
scripts/build-rootfs (systemd, containerd, runc) with `liftoff-qemu image`'s builder and
liftoff.handoff=containerd plus --append (cached under target/vm-images), with the demo of
docs/container-host.md added to the root (the DHCP service, the CNI network, a busybox OCI
archive and a one-shot service that imports it with `ctr` and runs it in a container), and
boots a copy with a restricted user-network NIC (QEMU's DHCP only, nothing leaves the host).
With --disk: boots DISK itself (made by `liftoff-qemu image`; the boot writes to it, as a
real machine writes to its disk). QEMU (TCG) starts it through OVMF (x86_64) or AAVMF
(aarch64), shim and GRUB with Secure Boot enforced and the key set of --keys (default: the
development set) enrolled; --no-secure-boot boots the same disk with Secure Boot off. The
serial console streams here, and once containerd answers and the
slot is marked successful the boot timeline is printed. Without --disk the boot then waits
for the demo container's output line, prints it and powers the machine off (the ACPI power
button: a clean stop). --stay keeps the machine running instead
(stop it with Ctrl-C). --bus puts the disk on another controller (default virtio-blk;
ahci on x86_64 needs a kernel with an AHCI driver, which Debian's cloud kernel lacks). The
console log is kept in target/vm-logs/boot-<arch>/console.log.

Exit status: 0 the host reached health (and without --disk, the demo container ran);
1 it did not within the timeout; 2 usage or setup.";

const KEYS_USAGE: &str = "\
usage: liftoff-qemu keys --out DIR [--name TEXT] [--db-key KEY --db-cert CERT]

Makes a Secure Boot key set in DIR: PK, KEK and db, each an X.509 certificate (NAME.crt)
and its private key (NAME.key, mode 0600), RSA 2048, SHA-256, ten years. Builds need only
db.key and the three certificates; keep PK.key and KEK.key offline. --db-key and --db-cert
take an existing db key and certificate (an HSM-backed one exported as a certificate and a
key file) and make only PK and KEK. Existing files in DIR are never overwritten.
--name goes into each certificate's common name (default Liftoff).

Exit status: 0 done; 1 failed (a file exists, openssl failed, the key is not the
certificate's); 2 bad arguments.";

const VARS_USAGE: &str = "\
usage: liftoff-qemu uefi-vars --out FILE [--arch x86_64|aarch64] [--keys DIR] [--aws]

Writes a UEFI variable store with the key set enrolled (PK, KEK, db; no Microsoft keys)
and Secure Boot on: an OVMF/AAVMF flash image, or with --aws the blob for
`aws ec2 register-image --boot-mode uefi --uefi-data file://FILE`, so an AMI boots with
Secure Boot enforced and these keys. --keys defaults to the development set.

Exit status: 0 done; 1 failed; 2 bad arguments.";

/// What Debian's kernel logs when the firmware booted it with Secure Boot enforced.
const KERNEL_SECURE_BOOT: &str = "secureboot: Secure boot enabled";

/// The line PID 1 logs when containerd answers and slot A is marked successful ("marked
/// successful" on its first health, "was already marked successful" after).
const HEALTHY: &str = "answers: slot A ";

/// The demo script's line for a failed step (`system::DEMO_SCRIPT`).
const DEMO_FAILED: &str = "liftoff-demo: FAILED";

/// PID 1's lines for the demo's one-shot service: `... (pid N) finished after ...` when it
/// exited 0, the second when it failed.
const DEMO_FINISHED: &str = "liftoff: service 50-demo (pid ";
const DEMO_ENDED: &str = "liftoff: service 50-demo: restart=no, left stopped";

/// How long the host may take to power off after the power button.
const POWER_OFF: Duration = Duration::from_secs(120);

struct BuildArgs {
    arch: Arch,
    root: PathBuf,
    out: PathBuf,
    fs: RootFsType,
    seed: String,
    kernel: Option<PathBuf>,
    modules: Option<PathBuf>,
    initramfs: Option<PathBuf>,
    append: String,
    boot_mib: u64,
    private_mib: u64,
    data_mib: u64,
    sector_size: disk::SectorSize,
    slot: Slot,
    keys: Option<PathBuf>,
    boot_partuuid: Option<String>,
    version: String,
    json: bool,
}

struct BootArgs {
    arch: Arch,
    disk: Option<PathBuf>,
    append: String,
    keys: Option<PathBuf>,
    mode: Mode,
    timeout: Duration,
    stay: bool,
    bus: Bus,
}

struct KeysArgs {
    out: PathBuf,
    name: String,
    db: Option<ExistingDb>,
}

struct VarsArgs {
    arch: Arch,
    out: PathBuf,
    keys: Option<PathBuf>,
    format: Format,
}

enum Verb {
    Image(BuildArgs),
    Payload(BuildArgs),
    Boot(BootArgs),
    Keys(KeysArgs),
    Vars(VarsArgs),
}

/// A usage error, or a request for a usage text (empty message).
struct Usage {
    text: &'static str,
    error: String,
}

fn usage(text: &'static str, error: impl Into<String>) -> Usage {
    Usage {
        text,
        error: error.into(),
    }
}

fn number(name: &str, v: &str, text: &'static str) -> Result<u64, Usage> {
    v.parse()
        .map_err(|_| usage(text, format!("{name} {v:?} is not a whole number")))
}

fn parse_args(args: Vec<String>) -> Result<Verb, Usage> {
    let mut args = args.into_iter();
    let verb = args.next();
    let text = match verb.as_deref() {
        Some("image") => IMAGE_USAGE,
        Some("payload") => PAYLOAD_USAGE,
        Some("boot") => BOOT_USAGE,
        Some("keys") => KEYS_USAGE,
        Some("uefi-vars") => VARS_USAGE,
        Some("-h") | Some("--help") => return Err(usage(USAGE, "")),
        Some(other) => return Err(usage(USAGE, format!("unknown command {other:?}"))),
        None => return Err(usage(USAGE, "missing command")),
    };
    let rest: Vec<String> = args.collect();
    match verb.as_deref() {
        Some("boot") => return parse_boot(rest).map(Verb::Boot),
        Some("keys") => return parse_keys(rest).map(Verb::Keys),
        Some("uefi-vars") => return parse_vars(rest).map(Verb::Vars),
        _ => {}
    }
    let payload = verb.as_deref() == Some("payload");
    let out_flag = if payload { "--out-dir" } else { "--out" };
    let mut root = None;
    let mut out = None;
    let mut parsed = BuildArgs {
        arch: Arch::host().unwrap_or(Arch::X86_64),
        root: PathBuf::new(),
        out: PathBuf::new(),
        fs: RootFsType::Erofs,
        seed: "liftoff".into(),
        kernel: None,
        modules: None,
        initramfs: None,
        append: String::new(),
        boot_mib: 64,
        private_mib: 16,
        data_mib: 64,
        sector_size: disk::SectorSize::S512,
        slot: Slot::B,
        keys: None,
        boot_partuuid: None,
        version: build::DEFAULT_VERSION.into(),
        json: false,
    };
    let mut args = rest.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(usage(text, ""));
        }
        if arg == "--json" {
            parsed.json = true;
            continue;
        }
        let v = args
            .next()
            .ok_or_else(|| usage(text, format!("{arg} needs a value")))?;
        match arg.as_str() {
            "--arch" => parsed.arch = v.parse().map_err(|e: String| usage(text, e))?,
            "--root" => root = Some(PathBuf::from(v)),
            flag if flag == out_flag => out = Some(PathBuf::from(v)),
            "--fs" => {
                parsed.fs = match v.as_str() {
                    "erofs" => RootFsType::Erofs,
                    "ext4" => RootFsType::Ext4,
                    other => {
                        return Err(usage(
                            text,
                            format!("unknown --fs {other:?} (erofs or ext4)"),
                        ))
                    }
                }
            }
            "--seed" => parsed.seed = v,
            "--keys" => parsed.keys = Some(PathBuf::from(v)),
            "--image-version" => {
                if liftoff_image::secureboot::Version::parse(&v).is_none() {
                    return Err(usage(
                        text,
                        format!("--image-version {v:?} is not dotted numbers (like 1.4.2)"),
                    ));
                }
                parsed.version = v
            }
            "--boot-partuuid" if payload => parsed.boot_partuuid = Some(v),
            "--kernel" => parsed.kernel = Some(PathBuf::from(v)),
            "--modules" => parsed.modules = Some(PathBuf::from(v)),
            "--initramfs" => parsed.initramfs = Some(PathBuf::from(v)),
            "--append" => parsed.append = v,
            "--boot-mib" => parsed.boot_mib = number(&arg, &v, text)?,
            "--private-mib" => parsed.private_mib = number(&arg, &v, text)?,
            "--data-mib" => parsed.data_mib = number(&arg, &v, text)?,
            "--sector-size" => {
                parsed.sector_size = disk::sector_size(number(&arg, &v, text)?)
                    .map_err(|e| usage(text, format!("--sector-size: {e}")))?
            }
            "--slot" if payload => {
                parsed.slot = match v.as_str() {
                    "A" | "a" => Slot::A,
                    "B" | "b" => Slot::B,
                    other => return Err(usage(text, format!("unknown --slot {other:?} (A or B)"))),
                }
            }
            other => return Err(usage(text, format!("unknown option {other:?}"))),
        }
    }
    parsed.root = root.ok_or_else(|| usage(text, "--root is required"))?;
    parsed.out = out.ok_or_else(|| usage(text, format!("{out_flag} is required")))?;
    if parsed.modules.is_some() && parsed.kernel.is_none() {
        return Err(usage(text, "--modules needs --kernel"));
    }
    for (name, value) in [
        ("--boot-mib", parsed.boot_mib),
        ("--private-mib", parsed.private_mib),
        ("--data-mib", parsed.data_mib),
    ] {
        if value == 0 {
            return Err(usage(text, format!("{name} must be at least 1")));
        }
    }
    Ok(if payload {
        Verb::Payload(parsed)
    } else {
        Verb::Image(parsed)
    })
}

fn parse_boot(rest: Vec<String>) -> Result<BootArgs, Usage> {
    let text = BOOT_USAGE;
    let mut parsed = BootArgs {
        arch: Arch::host().unwrap_or(Arch::X86_64),
        disk: None,
        append: String::new(),
        keys: None,
        mode: Mode::SecureBoot,
        timeout: Duration::from_secs(600),
        stay: false,
        bus: Bus::VirtioBlk,
    };
    let mut args = rest.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| usage(text, format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--arch" => {
                parsed.arch = value("--arch")?
                    .parse()
                    .map_err(|e: String| usage(text, e))?
            }
            "--disk" => parsed.disk = Some(PathBuf::from(value("--disk")?)),
            "--append" => parsed.append = value("--append")?,
            "--timeout" => {
                let v = value("--timeout")?;
                parsed.timeout = Duration::from_secs(number("--timeout", &v, text)?);
            }
            "--keys" => parsed.keys = Some(PathBuf::from(value("--keys")?)),
            "--no-secure-boot" => parsed.mode = Mode::Off,
            "--stay" => parsed.stay = true,
            "--bus" => {
                parsed.bus = value("--bus")?
                    .parse()
                    .map_err(|e: String| usage(text, e))?
            }
            "-h" | "--help" => return Err(usage(text, "")),
            other => return Err(usage(text, format!("unknown option {other:?}"))),
        }
    }
    if parsed.disk.is_some() && !parsed.append.trim().is_empty() {
        return Err(usage(
            text,
            "--append cannot change a built --disk (its command line is in BOOT-A): \
             give it to `liftoff-qemu image`",
        ));
    }
    Ok(parsed)
}

/// `--flag value` pairs of a verb, each flag once.
fn flag_values(
    text: &'static str,
    rest: Vec<String>,
    switches: &[&str],
) -> Result<Vec<(String, Option<String>)>, Usage> {
    let mut out = Vec::new();
    let mut args = rest.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(usage(text, ""));
        }
        if switches.contains(&arg.as_str()) {
            out.push((arg, None));
            continue;
        }
        let v = args
            .next()
            .ok_or_else(|| usage(text, format!("{arg} needs a value")))?;
        out.push((arg, Some(v)));
    }
    Ok(out)
}

fn parse_keys(rest: Vec<String>) -> Result<KeysArgs, Usage> {
    let text = KEYS_USAGE;
    let (mut out, mut name, mut key, mut cert) = (None, "Liftoff".to_owned(), None, None);
    for (flag, v) in flag_values(text, rest, &[])? {
        let v = v.unwrap_or_default();
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(v)),
            "--name" => name = v,
            "--db-key" => key = Some(PathBuf::from(v)),
            "--db-cert" => cert = Some(PathBuf::from(v)),
            other => return Err(usage(text, format!("unknown option {other:?}"))),
        }
    }
    let db = match (key, cert) {
        (Some(key), Some(cert)) => Some(ExistingDb { key, cert }),
        (None, None) => None,
        _ => return Err(usage(text, "--db-key and --db-cert go together")),
    };
    Ok(KeysArgs {
        out: out.ok_or_else(|| usage(text, "--out is required"))?,
        name,
        db,
    })
}

fn parse_vars(rest: Vec<String>) -> Result<VarsArgs, Usage> {
    let text = VARS_USAGE;
    let mut parsed = VarsArgs {
        arch: Arch::host().unwrap_or(Arch::X86_64),
        out: PathBuf::new(),
        keys: None,
        format: Format::Edk2,
    };
    let mut out = None;
    for (flag, v) in flag_values(text, rest, &["--aws"])? {
        let v = v.unwrap_or_default();
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(v)),
            "--arch" => parsed.arch = v.parse().map_err(|e: String| usage(text, e))?,
            "--keys" => parsed.keys = Some(PathBuf::from(v)),
            "--aws" => parsed.format = Format::Aws,
            other => return Err(usage(text, format!("unknown option {other:?}"))),
        }
    }
    parsed.out = out.ok_or_else(|| usage(text, "--out is required"))?;
    Ok(parsed)
}

/// The key set `--keys` names, or the development set; says which on stderr.
fn key_set(dir: Option<&Path>) -> Result<KeySet, String> {
    let (keys, message) = KeySet::given_or_development(dir).map_err(|e| e.to_string())?;
    eprintln!("liftoff-qemu: {message}");
    Ok(keys)
}

fn run_keys(args: &KeysArgs) -> Result<(), String> {
    let set = KeySet::create(&args.out, &args.name, args.db.as_ref())
        .map_err(|e| format!("making the key set in {}: {e}", args.out.display()))?;
    emit(&format!(
        "Secure Boot key set in {}: PK, KEK and db (.crt certificates, .key private keys); \
         builds need db.key and the certificates, keep PK.key and KEK.key offline\n",
        set.dir.display()
    ));
    Ok(())
}

fn run_vars(args: &VarsArgs) -> Result<(), String> {
    let keys = key_set(args.keys.as_deref())?;
    varstore::write_vars(args.arch, &keys, args.format, &args.out)
        .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    emit(&format!(
        "{} variable store with PK, KEK and db enrolled and Secure Boot on: {}\n",
        match args.format {
            Format::Edk2 => "edk2",
            Format::Aws => "EC2 --uefi-data",
        },
        args.out.display()
    ));
    Ok(())
}

/// The kernel and initramfs the options name.
fn boot_spec(args: &BuildArgs) -> Result<BootSpec, String> {
    let mut spec = boot_files_spec(args)?;
    spec.version = args.version.clone();
    Ok(spec)
}

fn boot_files_spec(args: &BuildArgs) -> Result<BootSpec, String> {
    if let Some(path) = &args.initramfs {
        // The root gets the Debian kernel's modules; a kernel of one's own with one's own
        // initramfs brings its modules in the root tree.
        let (kernel, modules) = match &args.kernel {
            Some(kernel) => (kernel.clone(), None),
            None => {
                let k = Kernel::debian(args.arch).map_err(|e| e.to_string())?;
                (k.image.clone(), Some(k))
            }
        };
        if !kernel.is_file() {
            return Err(format!("the kernel {} is not a file", kernel.display()));
        }
        return Ok(BootSpec {
            kernel,
            initramfs: std::fs::read(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
            append: args.append.clone(),
            version: args.version.clone(),
            modules,
        });
    }
    match &args.kernel {
        None => BootSpec::debian(args.arch, &args.append),
        Some(kernel) => BootSpec::kernel(args.arch, kernel, args.modules.as_deref(), &args.append),
    }
    .map_err(|e| e.to_string())
}

fn image_spec(args: &BuildArgs) -> Result<ImageSpec, String> {
    let keys = key_set(args.keys.as_deref())?;
    let mut spec = ImageSpec::new(args.arch, &args.root, boot_spec(args)?, keys);
    spec.boot_partuuid = args.boot_partuuid.clone();
    spec.fs = args.fs;
    spec.seed = args.seed.clone();
    spec.boot_mib = args.boot_mib;
    spec.private_mib = args.private_mib;
    spec.data_mib = args.data_mib;
    spec.sector_size = args.sector_size;
    Ok(spec)
}

/// Writes the result to stdout. A reader that went away (`| head`) is not an error of the
/// build, so a failed write is ignored.
fn emit(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
}

/// Prints one progress line per step on stderr, with the time since the start.
fn progress(start: Instant) -> impl FnMut(&str) {
    move |step: &str| {
        eprintln!(
            "liftoff-qemu: [{:6.1} s] {step}",
            start.elapsed().as_secs_f64()
        )
    }
}

fn image_json(args: &BuildArgs, built: &BuiltImage) -> serde_json::Value {
    let disk = &built.disk;
    let partitions: Vec<serde_json::Value> = disk
        .partitions()
        .iter()
        .map(|(number, label, type_guid)| {
            let (first, bytes) = disk.extent(*number);
            json!({
                "number": number,
                "label": label,
                "type_guid": type_guid,
                "guid": disk.partuuid(*number),
                "first_byte": first,
                "bytes": bytes,
            })
        })
        .collect();
    json!({
        "disk": disk.path,
        "arch": args.arch.name(),
        "fs": if args.fs == RootFsType::Erofs { "erofs" } else { "ext4" },
        "seed": args.seed,
        "bytes": std::fs::metadata(&disk.path).map(|m| m.len()).unwrap_or(0),
        "sector_size": disk.sector_size.bytes(),
        "disk_guid": built.disk_guid,
        "root_hash": disk.root_hash,
        "salt": disk.salt,
        "root_bytes": built.root_bytes,
        "hash_bytes": built.hash_bytes,
        "cmdline": built.cmdline,
        "partitions": partitions,
    })
}

fn payload_json(args: &BuildArgs, built: &BuiltPayloads) -> serde_json::Value {
    let file =
        |f: &build::PayloadFile| json!({"path": f.path, "bytes": f.bytes, "blake3": f.blake3});
    json!({
        "out_dir": args.out,
        "arch": args.arch.name(),
        "fs": if args.fs == RootFsType::Erofs { "erofs" } else { "ext4" },
        "seed": args.seed,
        "slot": built.slot.name(),
        "root_hash": built.root_hash,
        "salt": built.salt,
        "cmdline": built.cmdline,
        "manifest": built.manifest,
        "manifest_sig": built.manifest_sig,
        "boot": file(&built.boot),
        "root": file(&built.root),
        "hash": file(&built.hash),
    })
}

fn run_image(args: &BuildArgs) -> Result<(), String> {
    let start = Instant::now();
    let spec = image_spec(args)?;
    let built = build::build_image(&spec, &args.out, &mut progress(start))
        .map_err(|e| format!("building {}: {e}", args.out.display()))?;
    eprintln!(
        "liftoff-qemu: [{:6.1} s] done",
        start.elapsed().as_secs_f64()
    );
    let mut text = String::new();
    if args.json {
        text = format!("{}\n", image_json(args, &built));
    } else {
        text.push_str(&format!("disk       {}\n", built.disk.path.display()));
        text.push_str(&format!("root hash  {}\n", built.disk.root_hash));
        text.push_str(&format!("salt       {}\n", built.disk.salt));
        text.push_str(&format!("cmdline    {}\n", built.cmdline));
        for (number, label, _) in built.disk.partitions() {
            let (first, bytes) = built.disk.extent(number);
            text.push_str(&format!(
                "{number} {label:<10} {} {:>6} MiB at {:>6} MiB\n",
                built.disk.partuuid(number),
                bytes >> 20,
                first >> 20
            ));
        }
    }
    emit(&text);
    Ok(())
}

fn run_payload(args: &BuildArgs) -> Result<(), String> {
    let start = Instant::now();
    let spec = image_spec(args)?;
    let built = build::build_payloads(&spec, args.slot, &args.out, &mut progress(start))
        .map_err(|e| format!("building the payloads in {}: {e}", args.out.display()))?;
    eprintln!(
        "liftoff-qemu: [{:6.1} s] done",
        start.elapsed().as_secs_f64()
    );
    let mut text = String::new();
    if args.json {
        text = format!("{}\n", payload_json(args, &built));
    } else {
        text.push_str(&format!("slot       {}\n", built.slot.name()));
        text.push_str(&format!("root hash  {}\n", built.root_hash));
        text.push_str(&format!("manifest   {}\n", built.manifest.display()));
        text.push_str(&format!("signature  {}\n", built.manifest_sig.display()));
        for f in [&built.boot, &built.root, &built.hash] {
            text.push_str(&format!(
                "{} {} bytes blake3 {}\n",
                f.path.display(),
                f.bytes,
                f.blake3
            ));
        }
    }
    emit(&text);
    Ok(())
}

/// The disk `boot` starts without `--disk`: the Debian root tree through the image
/// builder, cached under a key over its inputs.
fn default_disk(arch: Arch, append: &str, keys: &KeySet, work: &Path) -> Result<PathBuf, String> {
    let append = format!("liftoff.handoff=containerd {append}")
        .trim()
        .to_owned();
    let boot = BootSpec::debian(arch, &append).map_err(|e| e.to_string())?;
    let tree = system::root_tree(arch).map_err(|e| e.to_string())?;
    let files = system::demo_files(arch).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "boot v2 {arch} {} {} {append}\n",
        tree.display(),
        boot.kernel.display()
    ));
    hasher.update(&boot.initramfs);
    for f in &files {
        hasher.update(format!("{} {:o} {}\n", f.path, f.mode, f.data.len()));
        hasher.update(&f.data);
    }
    hasher.update(keys.db_cert_der().map_err(|e| e.to_string())?);
    let key = verity::hex::encode(hasher.finalize().get(..8).unwrap_or_default());
    let cache = artifacts::target_dir().join("vm-images");
    std::fs::create_dir_all(&cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    let cached = cache.join(format!("boot-{arch}-{key}.img"));
    if !cached.is_file() {
        eprintln!("liftoff-qemu: building the {arch} disk image (the first time takes a while)");
        let mut spec = ImageSpec::new(arch, &tree, boot, keys.clone());
        spec.seed = "liftoff-qemu".into();
        spec.data_mib = 256;
        spec.files = files;
        let start = Instant::now();
        build::build_image(&spec, &cached, &mut progress(start))
            .map_err(|e| format!("building {}: {e}", cached.display()))?;
        // Every rebuild of PID 1 makes a new key: keep only the newest image per arch.
        let prefix = format!("boot-{arch}-");
        for entry in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".img") && path != cached {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let disk = work.join("disk.img");
    let _ = std::fs::remove_file(&disk);
    tool::run(
        std::process::Command::new("cp")
            .arg("--sparse=always")
            .arg(&cached)
            .arg(&disk),
    )
    .map_err(|e| e.to_string())?;
    Ok(disk)
}

fn run_boot(args: &BootArgs) -> Result<bool, String> {
    let arch = args.arch;
    let work = vm::log_dir().join(format!("boot-{arch}"));
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let keys = key_set(args.keys.as_deref())?;
    let disk = match &args.disk {
        Some(disk) => {
            if !disk.is_file() {
                return Err(format!("the disk {} is not a file", disk.display()));
            }
            disk.clone()
        }
        None => default_disk(arch, &args.append, &keys, &work)?,
    };
    let vars = work.join("vars.fd");
    firmware::fresh_vars(arch, args.mode, &keys, &vars).map_err(|e| e.to_string())?;
    let mut config = firmware::vm_config(arch, args.mode, &vars, &work.join("console.log"));
    config
        .disks
        .push(Disk::new(&disk, "liftoff-boot").on(args.bus));
    eprintln!(
        "liftoff-qemu: booting {} through the firmware, shim and GRUB under TCG (console log {})",
        disk.display(),
        config.log.display()
    );
    match args.mode {
        Mode::SecureBoot => eprintln!(
            "liftoff-qemu: the firmware enforces Secure Boot with the key set above enrolled"
        ),
        Mode::Off => eprintln!("liftoff-qemu: Secure Boot off (--no-secure-boot)"),
    }
    // The demo is in the default disk only; a --disk boot ends at health.
    let demo = args.disk.is_none();
    config.nic = demo;
    config.qmp = Some(work.join("qmp.sock"));
    let mut vm = Vm::start(&config).map_err(|e| e.to_string())?;
    let mut healthy = false;
    let mut container = None;
    let mut finished = false;
    while vm.elapsed() < args.timeout || (healthy && args.stay) {
        let Some(line) = vm.next_line(Duration::from_millis(500)) else {
            if vm.has_exited() {
                break;
            }
            continue;
        };
        println!("{line}");
        if line.contains(KERNEL_SECURE_BOOT) {
            println!("Secure Boot: on (the kernel reports it; lockdown is on)");
        }
        if !healthy && line.contains(HEALTHY) {
            healthy = true;
            if !vm.lines().iter().any(|l| l.contains(KERNEL_SECURE_BOOT)) {
                println!("Secure Boot: off");
            }
            let marks = console::timeline(vm.lines());
            println!("\nboot timeline ({arch}, from the kernel's start):");
            print!("{}", console::format_timeline(&marks));
            println!(
                "the container host is up: containerd answers and slot A is marked \
                 successful ({:.1} s after QEMU started)",
                vm.elapsed().as_secs_f64()
            );
        }
        if demo && (line.contains(DEMO_FAILED) || line.contains(DEMO_ENDED)) {
            eprintln!(
                "liftoff-qemu: the demo failed: {}; see {}",
                line.trim(),
                vm.log_path().display()
            );
            return Ok(false);
        }
        if container.is_none() {
            if let Some((_, out)) = line.split_once(system::DEMO_MARKER) {
                container = Some(format!("{}{out}", system::DEMO_MARKER));
            }
        }
        finished |= line.contains(DEMO_FINISHED) && line.contains(") finished after ");
        if healthy && !args.stay && (!demo || (container.is_some() && finished)) {
            break;
        }
    }
    if !healthy {
        eprintln!(
            "liftoff-qemu: the host did not reach health within {:?}; see {}",
            args.timeout,
            vm.log_path().display()
        );
        return Ok(false);
    }
    if !demo {
        return Ok(true);
    }
    let missing = match (&container, finished) {
        (None, _) => Some(format!("container printed no {} line", system::DEMO_MARKER)),
        (Some(_), false) => Some("service did not finish".to_owned()),
        (Some(_), true) => None,
    };
    let (Some(container), None) = (container, missing.as_ref()) else {
        eprintln!(
            "liftoff-qemu: the host is healthy but within {:?} the demo {}; see {}",
            args.timeout,
            missing.unwrap_or_default(),
            vm.log_path().display()
        );
        return Ok(false);
    };
    println!(
        "\na container ran on the host ({:.1} s after QEMU started) and printed:\n  {}",
        vm.elapsed().as_secs_f64(),
        container.trim()
    );
    // The ACPI power button: PID 1 stops the services and containerd, unmounts DATA and
    // powers off.
    println!("pressing the power button (ACPI) to stop the host");
    vm.qmp(r#"{"execute": "system_powerdown"}"#)
        .map_err(|e| format!("QMP system_powerdown: {e}"))?;
    let stop = vm.elapsed();
    while vm.elapsed() < stop + POWER_OFF {
        match vm.next_line(Duration::from_millis(500)) {
            Some(line) => println!("{line}"),
            None if vm.has_exited() => {
                println!("the host powered off");
                return Ok(true);
            }
            None => {}
        }
    }
    eprintln!(
        "liftoff-qemu: the host did not power off within {POWER_OFF:?} of the power button; see {}",
        vm.log_path().display()
    );
    Ok(false)
}

fn main() -> ExitCode {
    let verb = match parse_args(std::env::args().skip(1).collect()) {
        Ok(v) => v,
        Err(u) if u.error.is_empty() => {
            emit(&format!("{}\n", u.text));
            return ExitCode::SUCCESS;
        }
        Err(u) => {
            eprintln!("liftoff-qemu: {}\n\n{}", u.error, u.text);
            return ExitCode::from(2);
        }
    };
    let result = match &verb {
        Verb::Image(args) => run_image(args),
        Verb::Payload(args) => run_payload(args),
        Verb::Keys(args) => run_keys(args),
        Verb::Vars(args) => run_vars(args),
        Verb::Boot(args) => {
            return match run_boot(args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("liftoff-qemu: {e}");
                    ExitCode::from(2)
                }
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("liftoff-qemu: {e}");
            ExitCode::from(1)
        }
    }
}
