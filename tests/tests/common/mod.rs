//! The test system shared by the VM tests and the boot benchmark: Debian's root with
//! systemd and containerd, the probe, a test unit, and a grubenv as GRUB leaves it.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::Command;

use liftoff_image::disk::{BuiltDisk, DiskSpec};
use liftoff_image::root::RootFsType;
use liftoff_image::system::{self, BuiltSystem, RootFile, RootLink, SystemSpec};
use liftoff_image::{artifacts, Arch};
use liftoff_qemu::vm::{self, Bus, Disk, Vm, VmConfig};

/// The cached minimal kernel image for `arch` (`scripts/build-kernel`, which builds it first
/// if missing); its `.config` is `config` beside it.
pub fn minimal_kernel(arch: Arch) -> PathBuf {
    let script = liftoff_image::kernel::workspace_root().join("scripts/build-kernel");
    let out = Command::new(&script)
        .arg(arch.name())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "scripts/build-kernel {arch} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// An initramfs with PID 1 alone and no modules, for the minimal kernel
/// ([`system::pid1_initramfs`]).
pub fn pid1_initramfs(arch: Arch) -> Vec<u8> {
    system::pid1_initramfs(arch).unwrap_or_else(|e| panic!("{e}"))
}

pub const PROBE: &str = "/usr/local/bin/liftoff-probe";

/// The systemd unit that reports and powers off once multi-user.target is reached.
const TEST_UNIT: &str = "\
[Unit]
Description=Liftoff VM test report
After=multi-user.target

[Service]
Type=oneshot
ExecStartPre=-/usr/local/sbin/liftoff-crypt-compat
ExecStart=/usr/local/bin/liftoff-probe
ExecStartPost=/usr/bin/systemctl --no-block poweroff
StandardOutput=tty
TTYPath=/dev/console

[Install]
WantedBy=multi-user.target
";

/// cryptsetup, given the key file PID 1 made on PRIVATE, opens DATA's LUKS2 volume and
/// loads the very table PID 1 loaded (keys included, compared in /run and never printed),
/// and both mappings read the same plaintext (the first 4 MiB, past the page cache). The
/// recovery key in /run opens it too, typed on stdin as an operator would.
///
/// cryptsetup opens a LUKS2 device exclusively, and PID 1's mapping holds the partition,
/// so cryptsetup gets a dm-linear alias of it (device-mapper targets may share a device);
/// the tables are compared with the device field set aside. `--disable-keyring` puts the
/// key in the table rather than a keyring reference, as PID 1 does. `DM_DISABLE_UDEV`:
/// the root has no device-mapper udev rules.
const CRYPT_COMPAT: &str = "#!/bin/sh
set -e
exec 2>&1
export DM_DISABLE_UDEV=1
for d in /sys/block/dm-*; do
  [ \"$(cat \"$d/dm/name\")\" = data ] && data=/dev/${d##*/}
done
dmsetup create liftoff-alias --table \"0 $(blockdev --getsz /dev/vda9) linear /dev/vda9 0\"
if cryptsetup open --test-passphrase /dev/mapper/liftoff-alias < /run/liftoff/recovery-key; then
  echo LIFTOFF-RECOVERY-KEY-OK
fi
mkdir -p /run/liftoff-compat
mount -o ro,noload /dev/vda8 /run/liftoff-compat
cryptsetup open --readonly --disable-keyring --key-file /run/liftoff-compat/data.key \\
  /dev/mapper/liftoff-alias liftoff-compat
umount /run/liftoff-compat
dmsetup table --showkeys data | awk '{$7 = \"DEV\"; print}' > /run/liftoff-compat.t1
dmsetup table --showkeys liftoff-compat | awk '{$7 = \"DEV\"; print}' > /run/liftoff-compat.t2
if cmp -s /run/liftoff-compat.t1 /run/liftoff-compat.t2; then
  echo LIFTOFF-CRYPT-TABLE-SAME
else
  echo LIFTOFF-CRYPT-TABLE-DIFFERENT
fi
rm -f /run/liftoff-compat.t1 /run/liftoff-compat.t2
# Both read from the disk itself (O_DIRECT), not from PID 1's mapping's page cache.
sync
dd if=\"$data\" of=/run/liftoff-compat.ours iflag=direct bs=1M count=4 status=none
dd if=/dev/mapper/liftoff-compat of=/run/liftoff-compat.theirs iflag=direct bs=1M count=4 status=none
if cmp /run/liftoff-compat.ours /run/liftoff-compat.theirs; then
  echo LIFTOFF-CRYPT-COMPAT-OK
else
  echo LIFTOFF-CRYPT-COMPAT-DIFFERENT
fi
rm -f /run/liftoff-compat.ours /run/liftoff-compat.theirs
cryptsetup close liftoff-compat
dmsetup remove liftoff-alias
";

/// Deletes a VM test's disks when the test passes; see [`work_dir`].
pub struct Scratch {
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("LIFTOFF_KEEP_DISKS").is_some() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                continue;
            }
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// The emptied folder `target/vm-logs/<name>` for one VM test, and a guard that, when it
/// is dropped in a passing test, deletes everything in the folder but the console logs
/// (`*.log`). Each guest disk holds a few hundred megabytes; keeping the disks of every
/// passing test would take tens of gigabytes in one run. A failing test keeps them for a
/// post-mortem, and `LIFTOFF_KEEP_DISKS=1` keeps them always.
pub fn work_dir(name: &str) -> (PathBuf, Scratch) {
    let dir = vm::log_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    (dir.clone(), Scratch { dir })
}

/// A grubenv as GRUB leaves it just before booting slot A.
pub fn grubenv_pending_a() -> Vec<u8> {
    let mut env = b"# GRUB Environment Block\nliftoff_slot=A\nliftoff_pending=1\n".to_vec();
    env.resize(1024, b'#');
    env
}

pub fn system(arch: Arch) -> BuiltSystem {
    system::build(&system_spec(arch)).unwrap_or_else(|e| panic!("building the {arch} image: {e}"))
}

/// What [`system`] builds, for tests that change a file or two.
pub fn system_spec(arch: Arch) -> SystemSpec {
    let probe = artifacts::musl_binary(arch, "probe").unwrap_or_else(|e| panic!("{e}"));
    let growpart = artifacts::musl_binary(arch, "growpart").unwrap_or_else(|e| panic!("{e}"));
    SystemSpec {
        arch,
        fs: RootFsType::Erofs,
        kernel: system::SystemKernel::Debian,
        files: vec![
            RootFile {
                path: PROBE.into(),
                mode: 0o755,
                data: std::fs::read(&probe).unwrap(),
            },
            RootFile {
                path: "/etc/liftoff/bounding-set.drop".into(),
                mode: 0o644,
                data: b"# A container host never loads modules or pokes at /dev/mem.\ncap_sys_module\nCAP_SYS_RAWIO\n".to_vec(),
            },
            RootFile {
                path: "/usr/local/sbin/growpart".into(),
                mode: 0o755,
                data: std::fs::read(&growpart).unwrap(),
            },
            RootFile {
                path: "/usr/local/sbin/liftoff-crypt-compat".into(),
                mode: 0o755,
                data: CRYPT_COMPAT.as_bytes().to_vec(),
            },
            RootFile {
                path: "/etc/systemd/system/liftoff-test.service".into(),
                mode: 0o644,
                data: TEST_UNIT.as_bytes().to_vec(),
            },
        ],
        links: vec![RootLink {
            path: "/etc/systemd/system/multi-user.target.wants/liftoff-test.service".into(),
            target: "/etc/systemd/system/liftoff-test.service".into(),
        }],
        disk: DiskSpec {
            seed: "vm-root".into(),
            esp_files: vec![("grubenv".into(), grubenv_pending_a())],
            boot_mib: 8,
            data_mib: 32,
            ..DiskSpec::default()
        },
    }
}

/// Fails the test if the console shows a kernel panic, PID 1 exiting or PID 1 panicking.
pub fn no_kernel_panic(vm: &Vm) {
    for bad in ["Kernel panic", "Attempted to kill init", "liftoff: panic"] {
        assert!(
            !vm.lines().iter().any(|l| l.contains(bad)),
            "{bad:?} on the console; log {}",
            vm.log_path().display()
        );
    }
}

/// Fails unless `sgdisk -v` finds the disk's GPT clean (on a 4Kn image: on a loop device
/// with 4096-byte blocks, see [`sgdisk`]).
pub fn assert_sgdisk_clean(disk: &Path) {
    let out = sgdisk(disk, &["-v"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No problems found") && !text.contains("Creating new GPT"),
        "{}: {text}",
        disk.display()
    );
}

/// The logical sector size a GPT disk image was made for: 512 or 4096, wherever its
/// primary header ("EFI PART" at LBA 1) is.
pub fn image_sector_size(disk: &Path) -> u32 {
    let f = std::fs::File::open(disk).unwrap();
    [512u32, 4096]
        .into_iter()
        .find(|&ss| {
            let mut sig = [0u8; 8];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut sig, u64::from(ss)).is_ok()
                && &sig == b"EFI PART"
        })
        .unwrap_or_else(|| panic!("{}: no GPT header at LBA 1", disk.display()))
}

/// `sgdisk ARGS` on a disk image, read with the sector size it was made for: on the file
/// for 512-byte sectors; a 4Kn image on a loop device with 4096-byte blocks, since sgdisk
/// on a plain file assumes 512.
pub fn sgdisk(disk: &Path, args: &[&str]) -> std::process::Output {
    let run = |target: &Path| {
        Command::new("sgdisk")
            .args(args)
            .arg(target)
            .output()
            .expect("sgdisk (scripts/setup)")
    };
    match image_sector_size(disk) {
        512 => run(disk),
        ss => run(&Loop::attach(disk, ss).0),
    }
}

/// A loop device over a disk image with `sector`-byte logical blocks
/// (`losetup --sector-size N -f --show -P`), detached when dropped, whether the test
/// passed or not.
pub struct Loop(pub PathBuf);

impl Loop {
    pub fn attach(image: &Path, sector: u32) -> Loop {
        let out = Command::new("losetup")
            .args(["--sector-size", &sector.to_string(), "-f", "--show", "-P"])
            .arg(image)
            .output()
            .expect("losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }

    pub fn name(&self) -> String {
        self.0.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// What `cmd DEVICE` prints on stdout, and whether it succeeded.
    pub fn run(&self, cmd: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(cmd).args(args).arg(&self.0).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The partitions' device nodes. A kernel without a GPT parser (this host's has
    /// `CONFIG_EFI_PARTITION` off) finds none on `-P`; then `partx -a` (util-linux, reading
    /// the table with libblkid in the device's sectors) adds them with BLKPG.
    pub fn partitions(&self, count: u32) -> Vec<PathBuf> {
        let node = |n: u32| PathBuf::from(format!("{}p{n}", self.0.display()));
        let sysfs = |n: u32| {
            Path::new("/sys/block")
                .join(self.name())
                .join(format!("{}p{n}", self.name()))
        };
        if !sysfs(1).exists() {
            let (ok, _) = self.run("partx", &["-a"]);
            assert!(ok, "partx -a {}", self.0.display());
        }
        // devtmpfs makes the nodes after the kernel adds the partitions.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(1..=count).all(|n| node(n).exists()) {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: no partition nodes after 10 s",
                self.0.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (1..=count).map(node).collect()
    }

    /// First byte of partition `n` as the kernel has it (sysfs `start`, 512-byte units).
    pub fn partition_start(&self, n: u32) -> u64 {
        let start = Path::new("/sys/block")
            .join(self.name())
            .join(format!("{}p{n}", self.name()))
            .join("start");
        let text = std::fs::read_to_string(&start).unwrap();
        text.trim().parse::<u64>().unwrap() * 512
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// The benchmarks' one argument: how many measured boots (default 5).
pub fn boots_arg() -> usize {
    std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("BOOTS must be a number"))
        .unwrap_or(5)
}

/// `sgdisk -i N` attribute word of a partition.
pub fn attributes(disk: &Path, number: u32) -> u64 {
    let out = sgdisk(disk, &["-i", &number.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix("Attribute flags: "))
        .unwrap_or_else(|| panic!("no attribute flags in sgdisk -i {number}: {text}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

/// Sets a partition's attribute word with sgdisk (both GPT copies).
pub fn set_attributes(disk: &Path, number: u32, word: u64) {
    let out = sgdisk(disk, &[&format!("--attributes={number}:=:{word:016x}")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(attributes(disk, number), word);
}

/// A BOOT partition's attribute word (DESIGN.md section 4).
pub fn word(priority: u64, tries: u64, successful: bool, unhealthy: u64) -> u64 {
    priority << 48 | tries << 52 | u64::from(successful) << 56 | unhealthy << 57
}

/// The printk time in microseconds of a console line `[    2.457754] ...` (other console
/// output, such as a login prompt, may come before the stamp on the same line).
fn printk_us(line: &str) -> Option<u64> {
    let inner = line.get(line.find('[')? + 1..)?;
    let (t, _) = inner.split_once(']')?;
    let (s, frac) = t.trim().split_once('.')?;
    Some(s.parse::<u64>().ok()? * 1_000_000 + frac.parse::<u64>().ok()?)
}

/// The printk time of the first console line containing `needle`.
pub fn printk_of(lines: &[String], needle: &str) -> Option<u64> {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .and_then(|l| printk_us(l))
}

/// Boots `kernel` (with `initrd`, if any) on `disk` until the probe has reported and QEMU
/// has ended; returns the console lines. For the benchmarks.
pub fn boot_to_probe(
    arch: Arch,
    kernel: &Path,
    initrd: Option<&Path>,
    disk: &BuiltDisk,
    append: &str,
    log: &Path,
) -> Vec<String> {
    boot_to_probe_smp(arch, kernel, initrd, disk, append, log, 1)
}

/// [`boot_to_probe`] with `cpus` virtual CPUs.
pub fn boot_to_probe_smp(
    arch: Arch,
    kernel: &Path,
    initrd: Option<&Path>,
    disk: &BuiltDisk,
    append: &str,
    log: &Path,
    cpus: u32,
) -> Vec<String> {
    let timeout = std::time::Duration::from_secs(300);
    let mut config = VmConfig::new(arch, kernel, log);
    config.cpus = cpus;
    config.initrd = initrd.map(Path::to_path_buf);
    config.memory_mib = 1024;
    config.append = append.to_owned();
    config.disks.push(Disk {
        path: disk.path.clone(),
        read_only: false,
        serial: Some("liftoff-boot".into()),
        bus: Bus::VirtioBlk,
        block_size: None,
    });
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_text(liftoff_probe::MARKER, timeout)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_exit(timeout).unwrap_or_else(|e| panic!("{e}"));
    vm.lines().to_vec()
}

/// The median of some measurements.
pub fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// A host binary of this workspace (`liftoff-qemu`, `prairiedog`), built by cargo for the
/// host if needed (`cargo build -p PACKAGE --bin NAME`, a no-op when it is up to date):
/// binaries of another package are not built by `cargo test -p tests`.
pub fn host_binary(package: &str, name: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", name])
        .current_dir(liftoff_image::kernel::workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("running cargo build -p {package}: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = artifacts::target_dir().join("debug").join(name);
    assert!(
        path.is_file(),
        "{} missing after cargo build",
        path.display()
    );
    path
}

/// DATA (LUKS2) of a stopped machine's disk image, opened on the host with a recovery key,
/// read-only, with the peer tools: the image on a loop device ([`Loop`]), cryptsetup checks
/// the key against the DATA partition's node and hands out the volume key, and the payload,
/// decrypted as dm-crypt reads it, is kept as a file for `dumpe2fs` and `debugfs`. (This
/// host's kernel has no device-mapper, so `cryptsetup open` cannot map it; the key check,
/// the header and the file-system reads are cryptsetup's and e2fsprogs' all the same.)
/// Dropping it removes the key files and the plaintext and detaches the loop device,
/// whether the test passed or not.
pub struct OpenedData {
    /// The DATA partition's node, e.g. `/dev/loop3p9`: named in every failure.
    pub device: PathBuf,
    plain: PathBuf,
    files: Vec<PathBuf>,
    _loop: Loop,
}

impl OpenedData {
    /// Attaches `image`, finds partition `data` and opens it with `recovery` (the text of
    /// /run/liftoff/recovery-key, without its newline); files go to `work`.
    pub fn open(image: &Path, data: u32, recovery: &str, work: &Path) -> OpenedData {
        use aes::cipher::KeyInit;
        let dev = Loop::attach(image, image_sector_size(image));
        let device = dev.partitions(data)[data as usize - 1].clone();
        let key = work.join("data-recovery.key");
        let volume_key = work.join("data-volume.key");
        let plain = work.join("data-plain.ext4");
        let mut opened = OpenedData {
            device: device.clone(),
            plain: plain.clone(),
            files: vec![key.clone(), volume_key.clone(), plain],
            _loop: dev,
        };
        std::fs::write(&key, recovery).unwrap();
        let cryptsetup = |args: &[&str]| {
            let out = Command::new("cryptsetup")
                .args(args)
                .arg("--key-file")
                .arg(&key)
                .arg(&device)
                .output()
                .unwrap_or_else(|e| panic!("cryptsetup {args:?} {}: {e}", device.display()));
            assert!(
                out.status.success(),
                "cryptsetup {args:?} {}: {}",
                device.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        cryptsetup(&["open", "--test-passphrase", "--readonly"]);
        let vk_arg = format!("--volume-key-file={}", volume_key.display());
        let dump = cryptsetup(&["luksDump", "--dump-volume-key", "--batch-mode", &vk_arg]);
        let vk = std::fs::read(&volume_key).unwrap();
        assert_eq!(
            vk.len(),
            64,
            "{}: not a 512-bit volume key",
            device.display()
        );
        let header = cryptsetup(&["luksDump"]);
        let segment = header
            .find("Data segments:")
            .map(|at| &header[at..])
            .unwrap_or_else(|| panic!("cryptsetup luksDump {}: no segment", device.display()));
        assert!(
            segment.contains("cipher: aes-xts-plain64") && segment.contains("sector: 4096 [bytes]"),
            "cryptsetup luksDump {}: not aes-xts-plain64 with 4096-byte sectors: {segment}",
            device.display()
        );
        let offset: usize = segment
            .split("offset: ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "cryptsetup luksDump {}: no offset: {dump}",
                    device.display()
                )
            });
        let mut payload = std::fs::read(&device)
            .unwrap_or_else(|e| panic!("reading {}: {e}", device.display()))
            .split_off(offset);
        let xts = xts_mode::Xts128::new(
            aes::Aes256::new_from_slice(&vk[..32]).unwrap(),
            aes::Aes256::new_from_slice(&vk[32..]).unwrap(),
        );
        // plain64 counts 512-byte sectors from the segment's start, as dm-crypt does for
        // LUKS2 without iv_large_sectors.
        for (i, sector) in payload.chunks_exact_mut(4096).enumerate() {
            xts.decrypt_sector(sector, xts_mode::get_tweak_default(i as u128 * 8));
        }
        std::fs::write(&opened.plain, &payload).unwrap();
        opened.files.retain(|f| f != &key);
        std::fs::remove_file(&key).unwrap();
        opened
    }

    /// What `PROGRAM ARGS PLAINTEXT` prints on stdout; panics naming DATA's device, the
    /// command, its exit status and all it printed when it fails.
    fn tool(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .arg(&self.plain)
            .output()
            .unwrap_or_else(|e| panic!("{program} {args:?} on {}: {e}", self.device.display()));
        assert!(
            out.status.success(),
            "{program} {args:?} on DATA {} (decrypted): {}: {}{}",
            self.device.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The "Filesystem features:" line of `dumpe2fs -h`.
    pub fn features(&self) -> String {
        let out = self.tool("dumpe2fs", &["-h"]);
        out.lines()
            .find(|l| l.starts_with("Filesystem features:"))
            .unwrap_or_else(|| {
                panic!(
                    "dumpe2fs -h on DATA {}: no features line: {out}",
                    self.device.display()
                )
            })
            .to_owned()
    }

    /// `e2fsck -fn`'s full read-only check of DATA's file system; panics naming DATA's
    /// device and e2fsck's report when it finds anything to fix.
    pub fn fsck(&self) {
        self.tool("e2fsck", &["-fn"]);
    }

    /// The ext4 journal (inode 8), as `debugfs -R 'dump <8> FILE'` writes it.
    pub fn journal(&mut self) -> Vec<u8> {
        let file = self.plain.with_extension("journal");
        self.files.push(file.clone());
        self.tool("debugfs", &["-R", &format!("dump <8> {}", file.display())]);
        std::fs::read(&file).unwrap_or_else(|e| {
            panic!(
                "debugfs -R 'dump <8>' on DATA {} wrote no journal ({}): {e}",
                self.device.display(),
                file.display()
            )
        })
    }

    /// The file at `path` in DATA's file system (`debugfs -R 'cat PATH'`) and what
    /// debugfs said on stderr (a missing file is an empty one and a line there).
    pub fn cat(&self, path: &str) -> (Vec<u8>, String) {
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(&self.plain)
            .output()
            .unwrap_or_else(|e| {
                panic!("debugfs -R 'cat {path}' on {}: {e}", self.device.display())
            });
        assert!(
            out.status.success(),
            "debugfs -R 'cat {path}' on DATA {} (decrypted): {}",
            self.device.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for OpenedData {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Marks the recovery key of DATA (partition 9) as saved, as `prairiedog data
/// recovery-key-saved` does in a guest: the LUKS2 token of type
/// `prairiedog::host::UNSAVED_RECOVERY_TOKEN` goes, both header copies rewritten.
pub fn confirm_recovery_key(disk: &BuiltDisk) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let (start, len) = disk.extent(9);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk.path)
        .unwrap();
    let mut head = vec![0u8; len.min(16 << 20) as usize];
    f.seek(SeekFrom::Start(start)).unwrap();
    f.read_exact(&mut head).unwrap();
    let mut cursor = std::io::Cursor::new(head);
    let mut header = luks2::Luks2::read(&mut cursor).expect("DATA is LUKS2 after the first boot");
    let token = header
        .metadata
        .tokens
        .iter()
        .find(|(_, t)| t.kind == "liftoff-recovery-unsaved")
        .map(|(n, _)| *n)
        .expect("the first boot left its recovery key unconfirmed");
    header.remove_token(token).unwrap();
    header.write(&mut cursor).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    f.write_all(cursor.get_ref()).unwrap();
    f.sync_all().unwrap();
}
