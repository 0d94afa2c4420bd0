//! VM tests of the whole boot chain through real firmware (issues 8 and 13): OVMF (x86_64)
//! or AAVMF (aarch64) with Secure Boot enforced and the development keys enrolled boots
//! signed shim, shim starts signed stock Debian GRUB from the ESP, GRUB applies the grubenv
//! contract of DESIGN.md section 5 (`grub/grub.cfg`) and chainloads a slot's signed unified
//! kernel image from its BOOT partition, and Liftoff's PID 1 mounts that slot's verified root
//! and hands off to the probe, which reports and powers off. The tamper matrix of issue 13
//! (docs/secure-boot.md) changes signed files after the build and shows they are refused;
//! one test boots the same disk without Secure Boot.
//!
//! The disk is the verified Debian root image of `liftoff_image::system`, with GRUB, grubenv
//! and the BOOT partitions written into each guest's copy by `liftoff_image::boot::install`.
//!
//! The slots' UKIs carry the minimal kernel of `kernel-config/` (`scripts/build-kernel`,
//! everything built in) and an initramfs with PID 1 alone: the A/B, rollback and tamper
//! scenarios are about the firmware, GRUB and PID 1, and a boot of the minimal kernel costs
//! about half the CPU time of one of Debian's (docs/performance.md). Debian's cloud kernel,
//! with its modules in the initramfs and in the root and its lockdown under Secure Boot,
//! boots where it is the point ([`Setup::debian_kernel`]): `boots_slot_a` on both arches
//! (NVMe, TPM-sealed DATA, measured boot, Secure Boot turned off), `boots_slot_b` (PID 1
//! loads `virtio_scsi` and `sd_mod`), `rolls_back_when_the_update_hangs` (softdog, loaded
//! as a module, reboots without a panic) and the legacy BIOS tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use liftoff_image::boot::{self, Install, SlotBoot};
use liftoff_image::build::DEFAULT_VERSION;
use liftoff_image::disk::{self, BuiltDisk, DiskSpec, SectorSize, Slot};
use liftoff_image::kernel;
use liftoff_image::root::RootFsType;
use liftoff_image::secureboot::pe::PeInfo;
use liftoff_image::secureboot::uki::UKI_FILE;
use liftoff_image::secureboot::{self, KeySet};
use liftoff_image::system::{self, BuiltSystem, RootFile, SystemKernel, SystemSpec};
use liftoff_image::{artifacts, esp, Arch};
use liftoff_probe::Report;
use liftoff_qemu::firmware::{self, Mode};
use liftoff_qemu::vm::{Bus, Disk, Vm, VmConfig};

/// A firmware boot to the probe takes 20-30 s under TCG; the deadline leaves room for a
/// loaded machine.
use crate::common;
use common::{attributes, no_kernel_panic, set_attributes, word};

const TIMEOUT: Duration = Duration::from_secs(240);
const PROBE: &str = "/usr/local/bin/liftoff-probe";

fn system(arch: Arch, sector_size: SectorSize, kernel: &SystemKernel) -> BuiltSystem {
    let probe = artifacts::musl_binary(arch, "probe").unwrap_or_else(|e| panic!("{e}"));
    let spec = SystemSpec {
        arch,
        fs: RootFsType::Erofs,
        files: vec![RootFile {
            path: PROBE.into(),
            mode: 0o755,
            data: std::fs::read(&probe).unwrap(),
        }],
        links: Vec::new(),
        kernel: kernel.clone(),
        disk: DiskSpec {
            seed: "vm-firmware".into(),
            // Debian's arm64 kernel is a 27 MB uncompressed Image (DESIGN.md section 10);
            // the minimal kernel's is 9 MB.
            boot_mib: 64,
            data_mib: 32,
            sector_size,
            // The same x86_64 disk boots under legacy BIOS (`vm_x86_64_bios_*`).
            bios_boot: liftoff_image::bios::supported(arch, sector_size),
            ..DiskSpec::default()
        },
    };
    system::build(&spec).unwrap_or_else(|e| panic!("building the {arch} image: {e}"))
}

/// grubenv on the ESP.
enum Env {
    Missing,
    /// `liftoff_slot` and `liftoff_pending`, written by `grub-editenv`.
    Keys(Slot, bool),
    /// These bytes as the file.
    Raw(Vec<u8>),
}

/// A change to a slot's signed unified kernel image after it was built.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// One byte flipped in the middle of this section (`.linux`, `.initrd`).
    Byte(&'static str),
    /// One hex digit of the root hash in `.cmdline` changed.
    RootHash,
    /// Built and signed with another key set, whose certificate is not in db.
    ForeignKey,
    /// The signature removed (`sbattach --remove`).
    Unsigned,
    /// `liftoff.handoff=` in `.cmdline` pointed at this program (padded with spaces to the
    /// same length) and the image signed again with the db key: the kernel gets a command
    /// line that is not the one the initramfs carries, as when a loader passes its own.
    Handoff(&'static str),
}

/// What the ESP holds besides shim.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Loader {
    /// Liftoff's GRUB, signed.
    Signed,
    /// Liftoff's GRUB without a signature.
    UnsignedGrub,
    /// A signed GRUB whose configuration passes these arguments to the kernel image.
    PassingArgs(String),
}

/// How a test sets up the disk before the firmware starts.
struct Setup {
    grubenv: Env,
    /// Slots whose BOOT partition gets a kernel.
    slots: Vec<Slot>,
    /// Slot B gets a copy of slot A's root and hash tree.
    root_b: bool,
    /// GPT attribute words of BOOT-A and BOOT-B (`None`: as built: A priority 1
    /// successful, B zero).
    words: Option<(u64, u64)>,
    /// Slot A's kernel gets no initramfs, so it panics before PID 1 (and `panic=-1`
    /// reboots it).
    kill_a: bool,
    /// Slot A's kernel gets no initramfs and waits for a root device that never comes
    /// (`root=` a missing disk, `rootwait`): it hangs before PID 1, as a kernel whose disk
    /// driver never finds the disk does.
    hang_a: bool,
    /// Debian's cloud kernel with its modules (in the initramfs for PID 1, in the root for
    /// the container host) instead of the minimal kernel of `kernel-config/` (everything
    /// built in, no modules anywhere: `SystemKernel::BuiltIn`). The minimal kernel is the
    /// default because a boot of it costs about half the CPU time under TCG (a 6-9 MB
    /// kernel and a 0.2 MB initramfs for shim, the firmware, the TPM and the stub to read
    /// and hash instead of a 19-31 MB UKI; docs/performance.md); the tests that check
    /// what only Debian's kernel shows (its modules, lockdown under Secure Boot, legacy
    /// BIOS, softdog as a module) ask for Debian's.
    debian_kernel: bool,
    /// Added to every slot's command line after `liftoff.handoff=`.
    extra: &'static str,
    /// Another Liftoff disk is attached before the boot disk: new GUIDs, grubenv
    /// `B`/`1`, no GRUB (so the firmware boots the second disk).
    other_disk_first: bool,
    /// A byte-identical copy of the boot disk is attached on NVMe (later in the firmware's
    /// boot order, first in the kernel's name order).
    clone_on_nvme: bool,
    /// Replaces what slot A's command line gets after its slot keys (a later key wins, so
    /// this can break A's root hash).
    a_extra: Option<String>,
    /// Flips a byte in the last data block of ROOT-A (after the tree was made).
    corrupt_root_a: bool,
    /// Like `a_extra`, for slot B.
    b_extra: Option<String>,
    /// Secure Boot enforced with the development keys (the default), or off.
    firmware: Mode,
    /// Changes slot A's or slot B's UKI after signing.
    tamper_a: Option<Tamper>,
    tamper_b: Option<Tamper>,
    loader: Loader,
    /// The controller the boot disk is on (issue 16's matrix).
    bus: Bus,
    /// The disk is this many MiB bigger than the image, so that PID 1 grows DATA.
    grow_mib: u64,
    /// The image's and the disk's logical sector size (4096: a 4Kn disk).
    sector_size: SectorSize,
    /// Legacy BIOS (SeaBIOS) instead of UEFI firmware: `firmware` is unused.
    bios: bool,
}

/// As `install` leaves a disk: grubenv on slot A, not pending; only slot A has a kernel;
/// nothing broken.
impl Default for Setup {
    fn default() -> Self {
        Setup {
            grubenv: Env::Keys(Slot::A, false),
            slots: vec![Slot::A],
            root_b: false,
            words: None,
            kill_a: false,
            hang_a: false,
            debian_kernel: false,
            extra: "",
            other_disk_first: false,
            clone_on_nvme: false,
            a_extra: None,
            corrupt_root_a: false,
            b_extra: None,
            firmware: Mode::SecureBoot,
            tamper_a: None,
            tamper_b: None,
            loader: Loader::Signed,
            bus: Bus::VirtioBlk,
            grow_mib: 0,
            sector_size: SectorSize::S512,
            bios: false,
        }
    }
}

struct Boot {
    vm: Vm,
    config: VmConfig,
    disk: BuiltDisk,
    /// The disk of [`Setup::other_disk_first`].
    other: Option<BuiltDisk>,
    work: PathBuf,
    /// Started by SeaBIOS ([`Setup::bios`]).
    bios: bool,
    _scratch: common::Scratch,
}

/// How long the firmware may take to reach its boot manager under TCG on a loaded machine
/// (it takes 2-10 s).
const FIRMWARE_STALL: Duration = Duration::from_secs(120);

/// Starts the machine of `config` and waits until its firmware's boot manager loads a boot
/// option (`BdsDxe: loading`), before anything from the disk runs. In one suite run of
/// many, AAVMF under TCG stalled right before that line, in a test that passes when run
/// again; such a stall is no finding about Liftoff, so the machine is started once more
/// (the stalled console log is kept as `<log>.stalled`). Any later stall fails the test.
fn start_vm(config: &VmConfig) -> Vm {
    let mut vm = Vm::start(config).unwrap_or_else(|e| panic!("{e}"));
    match vm.wait_for_text("BdsDxe: loading", FIRMWARE_STALL) {
        Ok(_) => return vm,
        Err(e @ liftoff_qemu::vm::VmError::Timeout { .. }) => {
            println!("firmware stalled before its boot manager, starting it again: {e}");
        }
        Err(e) => panic!("{e}"),
    }
    drop(vm);
    let mut stalled = config.log.clone().into_os_string();
    stalled.push(".stalled");
    std::fs::rename(&config.log, &stalled).unwrap();
    let mut vm = Vm::start(config).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_text("BdsDxe: loading", FIRMWARE_STALL)
        .unwrap_or_else(|e| panic!("{e}"));
    vm
}

impl Boot {
    /// Starts the same guest (disk and firmware variables) again, as after a reboot.
    fn restart(&mut self, name: &str) {
        self.config.log = self.work.join(format!("{name}.log"));
        self.vm = if self.bios {
            Vm::start(&self.config).unwrap_or_else(|e| panic!("{e}"))
        } else {
            start_vm(&self.config)
        };
    }
}

fn boot(arch: Arch, test: &str, setup: Setup) -> Boot {
    let choice = if setup.debian_kernel {
        SystemKernel::Debian
    } else {
        SystemKernel::BuiltIn(common::minimal_kernel(arch))
    };
    let kernel = choice.image(arch).unwrap_or_else(|e| panic!("{e}"));
    let initramfs = choice.initramfs(arch).unwrap_or_else(|e| panic!("{e}"));
    let sys = system(arch, setup.sector_size, &choice);
    let (work, scratch) = common::work_dir(&format!("firmware-{test}-{arch}"));
    let disk = system::guest_disk(&sys, &work.join("disk.img")).unwrap();
    let grubenv = match setup.grubenv {
        Env::Missing => None,
        Env::Keys(slot, pending) => Some(esp::grubenv(Some(slot), Some(pending), &work).unwrap()),
        Env::Raw(bytes) => Some(bytes),
    };
    let (keys, _) = KeySet::development().unwrap_or_else(|e| panic!("{e}"));
    let install = Install {
        arch,
        keys: keys.clone(),
        grubenv,
        kernel: kernel.clone(),
        initramfs,
        slots: setup.slots,
        extra_cmdline: format!("liftoff.handoff={PROBE} {}", setup.extra)
            .trim_end()
            .to_owned(),
        version: DEFAULT_VERSION.into(),
    };
    boot::install(&disk, &install, &work.join("fat")).unwrap_or_else(|e| panic!("{e}"));
    if setup.kill_a || setup.hang_a {
        let hang = if setup.hang_a {
            " root=/dev/liftoff-missing rootwait"
        } else {
            ""
        };
        let cmdline = format!("{}{hang}", install.cmdline(&disk, Slot::A));
        let bios_cmdline = install
            .bios_cmdline(&disk, Slot::A)
            .map(|c| format!("{c}{hang}"));
        let slot_boot = SlotBoot {
            arch,
            slot: Slot::A,
            kernel: &kernel,
            initramfs: None,
            cmdline: &cmdline,
            bios_cmdline: bios_cmdline.as_deref(),
            version: &install.version,
        };
        let files = boot::boot_files(&keys, &slot_boot, &work).unwrap_or_else(|e| panic!("{e}"));
        boot::write_fat_partition(&disk, disk::BOOT_A, "BOOT-A", &files, &work)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    if setup.root_b {
        boot::copy_slot_a_to_b(&disk).unwrap_or_else(|e| panic!("{e}"));
    }
    for (slot, extra) in [(Slot::A, &setup.a_extra), (Slot::B, &setup.b_extra)] {
        let Some(extra) = extra else { continue };
        let uuid = disk.partuuid(slot.boot_partition());
        let extra = &boot::slot_extra(&kernel, extra);
        let cmdline = boot::slot_cmdline(arch, slot, &disk, Some(uuid), extra);
        let bios_cmdline = disk
            .bios_boot()
            .then(|| boot::bios_cmdline(arch, slot, &disk, extra));
        let slot_boot = SlotBoot {
            arch,
            slot,
            kernel: &kernel,
            initramfs: Some(&install.initramfs),
            cmdline: &cmdline,
            bios_cmdline: bios_cmdline.as_deref(),
            version: &install.version,
        };
        let files = boot::boot_files(&keys, &slot_boot, &work).unwrap_or_else(|e| panic!("{e}"));
        let label = format!("BOOT-{}", slot.name());
        boot::write_fat_partition(&disk, slot.boot_partition(), &label, &files, &work)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (slot, tamper) in [(Slot::A, setup.tamper_a), (Slot::B, setup.tamper_b)] {
        let Some(tamper) = tamper else { continue };
        let uki = tampered_uki(&keys, &install, &disk, slot, tamper, &work);
        let label = format!("BOOT-{}", slot.name());
        boot::write_fat_partition(
            &disk,
            slot.boot_partition(),
            &label,
            &[(UKI_FILE.into(), uki)],
            &work,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    if setup.loader != Loader::Signed {
        let mut files = esp::esp_files(arch, &keys, install.grubenv.clone(), &work)
            .unwrap_or_else(|e| panic!("{e}"));
        let grub = match &setup.loader {
            Loader::PassingArgs(args) => grub_passing(arch, &keys, args, &work),
            _ => std::fs::read(esp::grub_efi(arch).unwrap()).unwrap(),
        };
        files[1].1 = grub;
        boot::write_fat_partition(&disk, disk::ESP, "EFI-SYSTEM", &files, &work)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    if setup.corrupt_root_a {
        let root_bytes = sys.root_bytes;
        let (offset, _) = disk.extent(disk::ROOT_A);
        let at = offset + root_bytes - 4096 + 100;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&disk.path)
            .unwrap();
        let mut byte = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut byte, at).unwrap();
        byte[0] ^= 0xff;
        std::os::unix::fs::FileExt::write_all_at(&f, &byte, at).unwrap();
    }
    if let Some((a, b)) = setup.words {
        set_attributes(&disk.path, disk::BOOT_A, a);
        set_attributes(&disk.path, disk::BOOT_B, b);
    }
    let vars = work.join("vars.fd");
    let log = work.join("console.log");
    let mut config = if setup.bios {
        assert_eq!(arch, Arch::X86_64, "legacy BIOS is x86_64 only");
        firmware::bios_vm_config(&work.join("tpm"), &log).unwrap_or_else(|e| panic!("{e}"))
    } else {
        firmware::fresh_vars(arch, setup.firmware, &keys, &vars).unwrap_or_else(|e| panic!("{e}"));
        firmware::vm_config(arch, setup.firmware, &vars, &log)
    };
    let other = setup.other_disk_first.then(|| {
        let other = BuiltDisk {
            path: work.join("other.img"),
            ..disk.clone()
        };
        let cp = Command::new("cp")
            .arg("--sparse=always")
            .arg(&disk.path)
            .arg(&other.path)
            .status()
            .unwrap();
        assert!(cp.success());
        // New disk and partition GUIDs: another machine's disk, not a clone.
        let out = Command::new("sgdisk")
            .arg("--randomize-guids")
            .arg(&other.path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let env = esp::grubenv(Some(Slot::B), Some(true), &work).unwrap();
        boot::write_fat_partition(
            &other,
            disk::ESP,
            "EFI-SYSTEM",
            &[("grubenv".into(), env)],
            &work,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        config.disks.push(Disk {
            path: other.path.clone(),
            read_only: false,
            serial: Some("other".into()),
            bus: Bus::VirtioBlk,
            block_size: None,
        });
        other
    });
    if setup.grow_mib > 0 {
        // The disk is bigger than the image: the boot grows DATA to fill it.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk.path)
            .unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len + (setup.grow_mib << 20)).unwrap();
    }
    let mut boot_disk = Disk::new(&disk.path, "liftoff-boot").on(setup.bus);
    if setup.sector_size != SectorSize::S512 {
        boot_disk = boot_disk.with_block_size(setup.sector_size.bytes() as u32);
    }
    config.disks.push(boot_disk);
    if setup.clone_on_nvme {
        let clone = work.join("clone.img");
        std::fs::copy(&disk.path, &clone).unwrap();
        config.disks.push(Disk::new(&clone, "clone").on(Bus::Nvme));
    }
    // SeaBIOS prints nothing on the serial port; GRUB's lines are the first.
    let vm = if setup.bios {
        Vm::start(&config).unwrap_or_else(|e| panic!("{e}"))
    } else {
        start_vm(&config)
    };
    Boot {
        vm,
        config,
        disk,
        other,
        work,
        bios: setup.bios,
        _scratch: scratch,
    }
}

/// Slot `slot`'s UKI as `install` makes it, then changed by `tamper`.
fn tampered_uki(
    keys: &KeySet,
    install: &Install,
    disk: &BuiltDisk,
    slot: Slot,
    tamper: Tamper,
    work: &std::path::Path,
) -> Vec<u8> {
    let foreign;
    let signer = if let Tamper::ForeignKey = tamper {
        let dir = work.join("foreign-keys");
        let _ = std::fs::remove_dir_all(&dir);
        foreign = KeySet::create(&dir, "Not enrolled", None).unwrap();
        &foreign
    } else {
        keys
    };
    let cmdline = install.cmdline(disk, slot);
    let slot_boot = SlotBoot {
        arch: install.arch,
        slot,
        kernel: &install.kernel,
        initramfs: Some(&install.initramfs),
        cmdline: &cmdline,
        // Only the UKI is tampered with and read back.
        bios_cmdline: None,
        version: &install.version,
    };
    let mut files = boot::boot_files(signer, &slot_boot, work).unwrap_or_else(|e| panic!("{e}"));
    let mut uki = files.remove(0).1;
    let pe = PeInfo::parse(&uki).unwrap();
    match tamper {
        Tamper::Byte(section) => {
            let s = pe.section(section).unwrap();
            let at = (s.raw_offset + s.raw_size.min(s.virtual_size) / 2) as usize;
            uki[at] ^= 0x01;
        }
        Tamper::RootHash => {
            let s = pe.section(".cmdline").unwrap();
            let text = pe.section_data(&uki, ".cmdline").unwrap();
            let key = b"liftoff.roothash=";
            let pos = text.windows(key.len()).position(|w| w == key).unwrap();
            let at = s.raw_offset as usize + pos + key.len();
            uki[at] = if uki[at] == b'0' { b'1' } else { b'0' };
        }
        Tamper::ForeignKey => {}
        Tamper::Unsigned => {
            uki = unsign(&uki, work);
        }
        Tamper::Handoff(target) => {
            let s = pe.section(".cmdline").unwrap();
            let text = pe.section_data(&uki, ".cmdline").unwrap();
            let key = b"liftoff.handoff=";
            let from = text.windows(key.len()).position(|w| w == key).unwrap() + key.len();
            let len = text[from..]
                .iter()
                .position(|&c| c == b' ')
                .unwrap_or(text.len() - from);
            assert!(
                target.len() <= len,
                "{target} is longer than the handoff it replaces"
            );
            let at = s.raw_offset as usize + from;
            let mut new = target.as_bytes().to_vec();
            new.resize(len, b' ');
            uki[at..at + len].copy_from_slice(&new);
            let unsigned = work.join("handoff.efi");
            std::fs::write(&unsigned, unsign(&uki, work)).unwrap();
            let signed = work.join("handoff.signed.efi");
            secureboot::sign(keys, &unsigned, &signed).unwrap_or_else(|e| panic!("{e}"));
            uki = std::fs::read(&signed).unwrap();
        }
    }
    uki
}

/// `uki` with its signature removed (`sbattach --remove`).
fn unsign(uki: &[u8], work: &std::path::Path) -> Vec<u8> {
    let path = work.join("unsigned.efi");
    std::fs::write(&path, uki).unwrap();
    let out = Command::new("sbattach")
        .arg("--remove")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(PeInfo::parse(&bytes).unwrap().cert_table, None);
    bytes
}

/// Liftoff's GRUB built from a configuration that passes `args` to each slot's kernel
/// image, signed with `keys`: a loader that tries to add to the signed command line.
fn grub_passing(arch: Arch, keys: &KeySet, args: &str, work: &std::path::Path) -> Vec<u8> {
    let cfg = std::fs::read_to_string(kernel::workspace_root().join("grub/grub.cfg")).unwrap();
    let call = "chainloader \"$dev/liftoff.efi\"";
    assert!(cfg.contains(call));
    let passing = work.join("grub-passing.cfg");
    std::fs::write(&passing, cfg.replace(call, &format!("{call} {args}"))).unwrap();
    let unsigned = work.join("grub-passing.efi");
    let out = Command::new(kernel::workspace_root().join("grub/build-efi"))
        .arg(arch.name())
        .arg(&unsigned)
        .env("GRUB_CFG", &passing)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let signed = work.join("grub-passing.signed.efi");
    secureboot::sign(keys, &unsigned, &signed).unwrap_or_else(|e| panic!("{e}"));
    std::fs::read(&signed).unwrap()
}

/// Waits for the probe and for QEMU to end; prints when GRUB, the kernel and the probe
/// were reached.
fn report(b: &mut Boot) -> Report {
    b.vm.wait_for_text("liftoff-grub: booting slot", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let grub = b.vm.elapsed();
    b.vm.wait_for_text("Linux version", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let kernel = b.vm.elapsed();
    b.vm.wait_for_text(liftoff_probe::MARKER, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let probe = b.vm.elapsed();
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "QEMU start -> GRUB boots a slot {:.1} s -> kernel {:.1} s -> probe {:.1} s",
        grub.as_secs_f64(),
        kernel.as_secs_f64(),
        probe.as_secs_f64()
    );
    no_kernel_panic(&b.vm);
    Report::from_console(b.vm.lines())
        .expect("probe line")
        .expect("probe JSON")
}

/// The command-line value of `key` the guest's kernel got.
fn cmdline_value<'a>(r: &'a Report, key: &str) -> Option<&'a str> {
    r.cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Asserts that the guest runs slot `slot`'s kernel on slot `slot`'s verified root.
fn assert_runs_slot(b: &Boot, r: &Report, slot: Slot) {
    assert_eq!(r.pid, 1, "the probe is PID 1 after switch_root");
    assert_eq!(cmdline_value(r, "liftoff.slot"), Some(slot.name()));
    assert_eq!(
        cmdline_value(r, "liftoff.boot_partuuid"),
        Some(b.disk.partuuid(slot.boot_partition())),
        "the slot's signed command line names its BOOT partition"
    );
    assert_eq!(cmdline_value(r, "liftoff.handoff"), Some(PROBE));
    let root = r.mount("/").expect("/ mounted");
    assert_eq!(root.fstype, "erofs");
    let dev = r.block_by_dev(&r.root_dev).expect("root device");
    assert_eq!(dev.dm_name.as_deref(), Some("root"));
    // The boot disk is the first disk on its bus.
    let bus = b
        .config
        .disks
        .iter()
        .find(|d| d.path == b.disk.path)
        .unwrap()
        .bus;
    let (root, hash) = match slot {
        Slot::A => (disk::ROOT_A, disk::HASH_A),
        Slot::B => (disk::ROOT_B, disk::HASH_B),
    };
    let want = [bus.first_partition(root), bus.first_partition(hash)];
    assert_eq!(dev.slaves, want, "root and hash of slot {}", slot.name());
    let verity: Vec<_> = r.dm.iter().filter(|t| t.device == "root").collect();
    assert_eq!(verity.len(), 1);
    assert_eq!(verity[0].target_type, "verity");
    assert_eq!(verity[0].status, "V");
}

fn grubenv(b: &Boot) -> String {
    esp::read_grubenv(&b.disk, &b.work).unwrap_or_else(|e| panic!("{e}"))
}

fn console_has(b: &Boot, text: &str) -> bool {
    b.vm.lines().iter().any(|l| l.contains(text))
}

/// Asserts that each of `lines` is on the console, naming the first missing one and the log.
fn assert_console_has(b: &Boot, lines: &[&str]) {
    for line in lines {
        assert!(
            console_has(b, line),
            "{line:?} missing; log {}",
            b.vm.log_path().display()
        );
    }
}

/// The console the kernel chose: ttyS0 named on x86_64; on aarch64 no `console=` at all,
/// and the kernel took the firmware's ACPI SPCR table (the PL011 under AAVMF), whose lines
/// (the kernel's, PID 1's, the probe's) are what this test reads.
fn assert_console(b: &Boot, arch: Arch) {
    let cmdline =
        b.vm.lines()
            .iter()
            .find(|l| l.contains("Kernel command line:"))
            .cloned()
            .unwrap_or_default();
    match arch {
        Arch::X86_64 => assert!(cmdline.contains("console=ttyS0"), "{cmdline}"),
        Arch::Aarch64 => {
            assert!(!cmdline.contains("console="), "{cmdline}");
            assert!(
                console_has(b, "ACPI: SPCR: console: pl011,mmio"),
                "the console comes from SPCR; log {}",
                b.vm.log_path().display()
            );
        }
    }
    assert!(
        cmdline.contains("nvme_core.io_timeout=4294967295"),
        "{cmdline}"
    );
    assert!(console_has(b, "liftoff: timeline stage=handoff"));
}

/// How much bigger than the image the disks of the controller matrix are.
const GROW_MIB: u64 = 64;

/// The boot grew DATA to the end of the (bigger) disk, opened it with dm-crypt on the
/// disk's own DATA partition and mounted it; the GPT is clean afterwards, with DATA ending
/// where the disk's usable space ends.
fn assert_data_grew(b: &Boot, r: &Report) {
    let bus = b
        .config
        .disks
        .iter()
        .find(|d| d.path == b.disk.path)
        .unwrap()
        .bus;
    let line = r
        .liftoff_log
        .iter()
        .find(|l| l.starts_with("data: "))
        .unwrap_or_else(|| panic!("no data line: {:?}", r.liftoff_log));
    assert!(line.contains("grown to fill the disk"), "{line}");
    let local = r.mount("/local").expect("/local mounted");
    assert_eq!(local.fstype, "ext4");
    let crypt = r
        .block
        .iter()
        .find(|d| Some(d.name.as_str()) == local.source.strip_prefix("/dev/"))
        .unwrap_or_else(|| panic!("{} not in /sys/block", local.source));
    assert_eq!(crypt.dm_name.as_deref(), Some("data"));
    assert_eq!(crypt.slaves, [bus.first_partition(disk::DATA)]);
    // 32 MiB in the image (about 28 MiB of ext4), GROW_MIB more on the disk.
    assert!(
        r.local_bytes > (32 + GROW_MIB / 2) << 20,
        "/local has {} bytes",
        r.local_bytes
    );
    common::assert_sgdisk_clean(&b.disk.path);
    let sgdisk = |args: &[&str]| {
        String::from_utf8_lossy(&common::sgdisk(&b.disk.path, args).stdout).into_owned()
    };
    let number = |text: &str, after: &str| -> u64 {
        let at = text
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} in {text}"))
            + after.len();
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    let last = number(&sgdisk(&["-i", &disk::DATA.to_string()]), "Last sector: ");
    let end = number(&sgdisk(&["-p"]), "last usable sector is ");
    // DATA reaches the end of the grown disk (within its 1 MiB alignment).
    assert!(
        end - last < 2048,
        "DATA ends at {last}, the disk's usable end is {end}"
    );
}

/// grubenv says A, nothing pending: GRUB boots A and arms the flag, PID 1 clears it. The
/// disk is on NVMe (EC2 Nitro's EBS, Graviton) and bigger than the image. DATA's key is
/// sealed in the machine's TPM. Then the same machine boots with Secure Boot turned off
/// (also the suite's boot without Secure Boot): see [`secure_boot_turned_off`].
fn boots_slot_a(arch: Arch) {
    let mut b = boot(
        arch,
        "slot_a",
        Setup {
            grubenv: Env::Keys(Slot::A, false),
            slots: vec![Slot::A],
            bus: Bus::Nvme,
            grow_mib: GROW_MIB,
            debian_kernel: true,
            ..Setup::default()
        },
    );
    let r = report(&mut b);
    assert_data_grew(&b, &r);
    assert_console(&b, arch);
    assert!(console_has(
        &b,
        "liftoff-grub: booting slot A from (hd0,gpt2)"
    ));
    assert!(!console_has(&b, "falling back"));
    assert_runs_slot(&b, &r, Slot::A);
    assert!(
        r.liftoff_log.iter().any(|l| l.contains("grubenv updated")),
        "PID 1 cleared GRUB's pending flag: {:?}",
        r.liftoff_log
    );
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=0\n");
    // Slot A stays successful and this boot is counted until it reaches health.
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(1, 0, true, 1));
    // Debian's kernel: PID 1 waited for its module child's first modules (dm-mod) before
    // loading the `verity` ones itself, and for all of them before DATA.
    let at = |start: &str| {
        r.liftoff_log
            .iter()
            .position(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?}: {:?}", r.liftoff_log))
    };
    assert!(at("loaded ") < at("timeline stage=modules"));
    let verity = r
        .liftoff_log
        .iter()
        .position(|l| l.contains(" modules for verity in "))
        .unwrap_or_else(|| panic!("PID 1 loaded no verity modules: {:?}", r.liftoff_log));
    assert!(at("timeline stage=slots") < at("first DATA modules: waited "));
    assert!(at("first DATA modules: waited ") < verity);
    assert!(verity < at("timeline stage=verity"));
    assert!(at("timeline stage=root") < at("DATA modules: waited "));
    assert!(at("DATA modules: waited ") < at("timeline stage=data"));
    assert_firmware_measured(&r);
    // The machine has a TPM, so DATA's key was sealed there (the default for a new DATA),
    // and once PID 1 had unsealed it, the booted system cannot unseal it again.
    assert!(
        r.liftoff_log.iter().any(|l| l.contains(
            "LUKS2 opened with the key sealed in the TPM) mounted at /local; LUKS2 header and \
             keys created"
        )),
        "{:?}",
        r.liftoff_log
    );
    let attempt = r.tpm_unseal.clone().unwrap_or_default();
    assert!(
        attempt.starts_with("refused: ") && attempt.contains("TPM_RC_POLICY_FAIL"),
        "{attempt}"
    );
    // The recovery key went to /run only: on the console it is in the probe's line, which
    // gives it away on purpose, and nowhere else.
    let recovery = r
        .recovery_key
        .clone()
        .expect("a recovery key in /run/liftoff");
    assert_recovery_key_format(&recovery);
    let carrying: Vec<&String> =
        b.vm.lines()
            .iter()
            .filter(|l| l.contains(&recovery))
            .collect();
    assert!(
        carrying.len() == 1 && carrying[0].contains(liftoff_probe::MARKER),
        "the recovery key is on the console outside the probe's line: {carrying:?}"
    );
    secure_boot_turned_off(&mut b, arch, &r, &recovery);
}

/// A recovery key in systemd's format: 8 groups of 8 modhex characters.
fn assert_recovery_key_format(key: &str) {
    let groups: Vec<&str> = key.split('-').collect();
    assert!(
        groups.len() == 8
            && groups
                .iter()
                .all(|g| g.len() == 8 && g.chars().all(|c| "cbdefghijklnrtuv".contains(c))),
        "{key}"
    );
}

/// The same machine (disk and TPM) boots again with Secure Boot turned off (the firmware
/// without Secure Boot and a blank variable store): PCR 7 changes, so the TPM refuses to
/// unseal DATA's key. The boot goes on degraded with DATA untouched, and on the host the
/// recovery key from the first boot opens DATA with cryptsetup.
fn secure_boot_turned_off(b: &mut Boot, arch: Arch, first: &Report, recovery: &str) {
    // DATA grew to the end of the disk: compare up to the backup GPT (33 sectors), which
    // the boot's A/B write may change.
    let (offset, _) = b.disk.extent(disk::DATA);
    let len = std::fs::metadata(&b.disk.path).unwrap().len() - offset - 33 * 512;
    let before = work_file(b, "data-before.part");
    disk::extract(&b.disk.path, offset, len, &before).unwrap();
    let vars = b.work.join("vars.fd");
    let (keys, _) = KeySet::development().unwrap_or_else(|e| panic!("{e}"));
    firmware::fresh_vars(arch, Mode::Off, &keys, &vars).unwrap_or_else(|e| panic!("{e}"));
    let disks = b.config.disks.clone();
    b.config = firmware::vm_config(arch, Mode::Off, &vars, &b.config.log);
    b.config.disks = disks;
    b.restart("console-no-secure-boot");
    let r = report(b);
    assert!(console_has(b, "Secure boot disabled") || !console_has(b, "Secure boot enabled"));
    assert!(!console_has(b, "Kernel is locked down"));
    assert_runs_slot(b, &r, Slot::A);
    assert_firmware_measured(&r);
    assert_ne!(r.tpm_pcr7, first.tpm_pcr7, "PCR 7 did not change");
    let degraded = r.degraded.clone().unwrap_or_default();
    assert!(
        degraded.contains("TPM_RC_POLICY_FAIL")
            && degraded.contains("PCR 7 is not what it was when the key was sealed"),
        "{degraded:?}"
    );
    assert_eq!(r.mount("/local").map(|m| m.fstype.as_str()), Some("tmpfs"));
    assert_eq!(r.recovery_key, None, "a degraded boot made a recovery key");
    let after = work_file(b, "data-after.part");
    disk::extract(&b.disk.path, offset, len, &after).unwrap();
    assert!(
        std::fs::read(&before).unwrap() == std::fs::read(&after).unwrap(),
        "DATA changed during the degraded boot"
    );
    std::fs::remove_file(&before).unwrap();
    let volume_key = open_with_recovery_key(b, &after, recovery);
    std::fs::remove_file(&after).unwrap();
    assert_no_key_in_the_clear(b, &volume_key);
}

/// Neither half of DATA's volume key (the two AES keys) is anywhere on the disk in the
/// clear or, in hex, in either boot's console log; PRIVATE has no key file (tpm2 mode keeps
/// none).
fn assert_no_key_in_the_clear(b: &Boot, volume_key: &[u8]) {
    let disk_bytes = std::fs::read(&b.disk.path).unwrap();
    let consoles: Vec<String> = ["console.log", "console-no-secure-boot.log"]
        .iter()
        .map(|l| {
            std::fs::read_to_string(b.work.join(l))
                .unwrap()
                .to_lowercase()
        })
        .collect();
    for half in volume_key.chunks(32) {
        assert!(
            memchr::memmem::find(&disk_bytes, half).is_none(),
            "a volume key half is on the disk in the clear"
        );
        let hex: String = half.iter().map(|x| format!("{x:02x}")).collect();
        for console in &consoles {
            assert!(!console.contains(&hex), "a volume key half on the console");
        }
    }
    let (offset, len) = b.disk.extent(disk::PRIVATE);
    let private = work_file(b, "private.part");
    disk::extract(&b.disk.path, offset, len, &private).unwrap();
    let ls = Command::new("debugfs")
        .args(["-R", "ls -l /"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(ls.status.success(), "{ls:?}");
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert!(
        listing.contains("lost+found") && !listing.contains("data.key"),
        "{listing}"
    );
    std::fs::remove_file(&private).unwrap();
}

/// `work/<name>` of boot `b`.
fn work_file(b: &Boot, name: &str) -> PathBuf {
    b.work.join(name)
}

/// On the host (no device-mapper here), cryptsetup checks the recovery key against the
/// copy of DATA at `data` and hands out the volume key it unlocks; the payload decrypted
/// with that key (aes-xts-plain64, 4096-byte sectors, the IV counting 512-byte sectors as
/// dm-crypt does for LUKS2) is an ext4 that `e2fsck -fn` finds clean. Returns the volume
/// key.
fn open_with_recovery_key(b: &Boot, data: &std::path::Path, recovery: &str) -> Vec<u8> {
    use aes::cipher::KeyInit;
    let key = work_file(b, "recovery.key");
    std::fs::write(&key, recovery).unwrap();
    let cryptsetup = |args: &[&str]| {
        let out = Command::new("cryptsetup")
            .args(args)
            .arg("--key-file")
            .arg(&key)
            .arg(data)
            .output()
            .unwrap();
        assert!(out.status.success(), "cryptsetup {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cryptsetup(&["open", "--test-passphrase"]);
    let volume_key = work_file(b, "volume.key");
    let vk_arg = format!("--volume-key-file={}", volume_key.display());
    cryptsetup(&["luksDump", "--dump-volume-key", "--batch-mode", &vk_arg]);
    let vk = std::fs::read(&volume_key).unwrap();
    assert_eq!(vk.len(), 64, "a 512-bit volume key");
    let dump = Command::new("cryptsetup")
        .arg("luksDump")
        .arg(data)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    let segment = &dump[dump.find("Data segments:").unwrap()..];
    assert!(segment.contains("cipher: aes-xts-plain64"), "{dump}");
    assert!(segment.contains("sector: 4096 [bytes]"), "{dump}");
    let offset: usize = segment
        .split("offset: ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no segment offset in {dump}"));
    let mut payload = std::fs::read(data).unwrap().split_off(offset);
    let xts = xts_mode::Xts128::new(
        aes::Aes256::new_from_slice(&vk[..32]).unwrap(),
        aes::Aes256::new_from_slice(&vk[32..]).unwrap(),
    );
    for (i, sector) in payload.chunks_exact_mut(4096).enumerate() {
        xts.decrypt_sector(sector, xts_mode::get_tweak_default(i as u128 * 8));
    }
    let plain = work_file(b, "data-plain.ext4");
    std::fs::write(&plain, &payload).unwrap();
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn on DATA's plaintext: {fsck:?}"
    );
    for f in [&plain, &volume_key, &key] {
        std::fs::remove_file(f).unwrap();
    }
    vk
}

/// The machine's TPM (swtpm) reached the booted system, and the firmware extended PCR 7
/// (Secure Boot state and keys).
fn assert_firmware_measured(r: &Report) {
    let pcr7 = r.tpm_pcr7.as_deref().expect("a TPM with PCR 7 in sysfs");
    assert_eq!(pcr7.len(), 64, "{pcr7}");
    assert_ne!(pcr7, "0".repeat(64), "PCR 7 never extended");
}

#[test]
fn vm_x86_64_firmware_boots_slot_a() {
    boots_slot_a(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_boots_slot_a() {
    boots_slot_a(Arch::Aarch64);
}

/// An update to slot A with one try left whose kernel died before PID 1 (grubenv still
/// pending): GRUB boots slot B without touching liftoff_slot, PID 1 sees the fallback,
/// spends A's last try and stays on B, and points grubenv at B. The disk is 4Kn
/// (4096-byte logical and physical blocks, a `--sector-size 4096` image) and bigger than
/// the image: firmware and GRUB read its GPT and FATs, PID 1 writes its GPT and grubenv,
/// sets up verity and grows DATA in 4096-byte sectors.
fn falls_back_to_slot_b(arch: Arch) {
    let mut b = boot(
        arch,
        "fallback_b",
        Setup {
            grubenv: Env::Keys(Slot::A, true),
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(2, 1, false, 0), word(1, 0, true, 0))),
            grow_mib: GROW_MIB,
            sector_size: SectorSize::S4096,
            ..Setup::default()
        },
    );
    let r = report(&mut b);
    assert_eq!(common::image_sector_size(&b.disk.path), 4096);
    // The guest's disk, and the verity and crypt devices on it, have 4096-byte blocks.
    for name in ["vda", "root", "data"] {
        let dev = r
            .block
            .iter()
            .find(|d| d.name == name || d.dm_name.as_deref() == Some(name));
        assert_eq!(
            dev.and_then(|d| d.logical_block_size),
            Some(4096),
            "{name}: {:?}",
            r.block
        );
    }
    assert_data_grew(&b, &r);
    assert!(console_has(
        &b,
        "liftoff-grub: slot A never reached PID 1, falling back to slot B"
    ));
    assert!(console_has(
        &b,
        "liftoff-grub: booting slot B from (hd0,gpt5)"
    ));
    assert!(!console_has(&b, "booting slot A"));
    assert_runs_slot(&b, &r, Slot::B);
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
    // A's failed boot took its last try; B's boot is counted until it reaches health.
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 0, false, 0));
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(1, 0, true, 1));
}

#[test]
fn vm_x86_64_firmware_falls_back_to_slot_b() {
    falls_back_to_slot_b(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_falls_back_to_slot_b() {
    falls_back_to_slot_b(Arch::Aarch64);
}

/// Another Liftoff disk comes first on the bus, with a grubenv of its own (slot B pending);
/// the boot disk's own grubenv has slot A pending and slot B empty. GRUB reads grubenv
/// and the slots on the disk it was loaded from ($cmdpath), never on the first disk that
/// has a grubenv: it falls back from A to B on its own disk, finds no kernel there and
/// boots A after all, with no prompt and no hang. PID 1 touches neither the other disk's
/// grubenv nor its GPT. (One boot for what were two scenarios with the same happy path.)
#[test]
fn vm_x86_64_firmware_uses_only_its_own_disk_and_skips_a_slot_without_kernel() {
    let mut b = boot(
        Arch::X86_64,
        "own_disk",
        Setup {
            grubenv: Env::Keys(Slot::A, true),
            slots: vec![Slot::A],
            other_disk_first: true,
            ..Setup::default()
        },
    );
    let r = report(&mut b);
    assert_console_has(
        &b,
        &[
            "liftoff-grub: slot A never reached PID 1, falling back to slot B",
            "liftoff-grub: slot B has no kernel on (hd1,gpt5)",
            "liftoff-grub: booting slot A from (hd1,gpt2)",
        ],
    );
    // The other disk's grubenv (B pending) would have GRUB fall back from B to A.
    assert!(!console_has(&b, "slot B never reached PID 1"));
    assert!(!console_has(&b, "(hd0,"), "GRUB looked at the other disk");
    assert_eq!(cmdline_value(&r, "liftoff.slot"), Some("A"));
    assert_eq!(
        cmdline_value(&r, "liftoff.boot_partuuid"),
        Some(b.disk.partuuid(disk::BOOT_A))
    );
    let dev = r.block_by_dev(&r.root_dev).expect("root device");
    assert_eq!(
        dev.slaves,
        ["vdb3", "vdb4"],
        "the boot disk is the second one"
    );
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=0\n");
    let other = b.other.clone().unwrap();
    assert_eq!(
        esp::read_grubenv(&other, &b.work).unwrap(),
        "liftoff_slot=B\nliftoff_pending=1\n"
    );
    assert_eq!(attributes(&other.path, disk::BOOT_A), word(1, 0, true, 0));
}

/// A byte-identical clone of the boot disk on NVMe (the kernel lists it first, as
/// nvme0n1): PID 1 asks the firmware which disk it booted (BootCurrent's device path, the
/// virtio disk's PCI slot), boots from that one and names the clone as ignored; nothing on
/// the clone is written, not even GRUB's pending flag (issue 16: PID 1 used to take
/// nvme0n1 and write its GPT, grubenv and DATA).
#[test]
fn vm_x86_64_firmware_tells_its_disk_from_a_clone_on_nvme() {
    let mut b = boot(
        Arch::X86_64,
        "clone_nvme",
        Setup {
            clone_on_nvme: true,
            ..Setup::default()
        },
    );
    let r = report(&mut b);
    assert_runs_slot(&b, &r, Slot::A);
    assert!(
        console_has(
            &b,
            "nvme0n1 carry the same Liftoff partitions as vda (cloned volumes?): ignored, \
             only vda, the disk the firmware booted, is used"
        ),
        "log {}",
        b.vm.log_path().display()
    );
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=0\n");
    // The clone: its GPT, grubenv and DATA as they were copied.
    let clone = BuiltDisk {
        path: b.work.join("clone.img"),
        ..b.disk.clone()
    };
    assert_eq!(attributes(&clone.path, disk::BOOT_A), word(1, 0, true, 0));
    assert_eq!(
        esp::read_grubenv(&clone, &b.work).unwrap(),
        "liftoff_slot=A\nliftoff_pending=0\n"
    );
    let data_head = |path: &std::path::Path| {
        let (offset, _) = clone.extent(disk::DATA);
        let mut head = vec![0u8; 1 << 20];
        std::os::unix::fs::FileExt::read_exact_at(
            &std::fs::File::open(path).unwrap(),
            &mut head,
            offset,
        )
        .unwrap();
        head.iter().any(|&b| b != 0)
    };
    assert!(!data_head(&clone.path), "the clone's DATA is blank");
    assert!(data_head(&b.disk.path), "the boot disk's DATA was set up");
}

/// grubenv says B (an update: B has priority 2 and one try), nothing pending: GRUB boots B,
/// PID 1 spends B's try and, as B is not successful yet, points grubenv back at A for the
/// case that this boot never reaches health. The disk is on virtio-scsi (GCE, Proxmox) and
/// bigger than the image.
fn boots_slot_b(arch: Arch) {
    let mut b = boot(
        arch,
        "slot_b",
        Setup {
            grubenv: Env::Keys(Slot::B, false),
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(1, 0, true, 0), word(2, 1, false, 0))),
            bus: Bus::VirtioScsi,
            grow_mib: GROW_MIB,
            // PID 1 loads `virtio_scsi` and then, in its next pass, `sd_mod` for the SCSI
            // disk it brought up: the only boot that loads them (docs/hardware.md).
            debian_kernel: true,
            ..Setup::default()
        },
    );
    let r = report(&mut b);
    assert_data_grew(&b, &r);
    assert!(console_has(
        &b,
        "liftoff-grub: booting slot B from (hd0,gpt5)"
    ));
    assert!(!console_has(&b, "falling back"));
    assert_runs_slot(&b, &r, Slot::B);
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(1, 0, true, 0));
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(2, 0, false, 0));
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=0\n");
}

#[test]
fn vm_x86_64_firmware_boots_slot_b() {
    boots_slot_b(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_boots_slot_b() {
    boots_slot_b(Arch::Aarch64);
}

/// A grubenv that is not an environment block (torn, overwritten) after an update to slot
/// B: GRUB says it cannot read or write it and boots slot A. PID 1 sees that B must boot,
/// writes a fresh block naming B into the file's sectors and reboots; GRUB then boots B,
/// which spends its try (issue 17: nobody used to rewrite the file, and GRUB kept booting
/// A).
fn rewrites_a_broken_grubenv(arch: Arch) {
    let garbage = vec![b'x'; 1024];
    let mut b = boot(
        arch,
        "broken_grubenv",
        Setup {
            grubenv: Env::Raw(garbage),
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(1, 0, true, 0), word(2, 1, false, 0))),
            ..Setup::default()
        },
    );
    b.vm.wait_for_text("slot B must boot instead: rebooting", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_console_has(
        &b,
        &[
            "liftoff-grub: cannot read (hd0,gpt1)/grubenv, booting slot A",
            "liftoff-grub: booting slot A from (hd0,gpt2)",
            "liftoff-grub: cannot write (hd0,gpt1)/grubenv",
            "grubenv was torn",
        ],
    );
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");

    b.restart("console-2");
    let r = report(&mut b);
    assert!(console_has(
        &b,
        "liftoff-grub: booting slot B from (hd0,gpt5)"
    ));
    assert_runs_slot(&b, &r, Slot::B);
    // B spent its only try: should it die before health, GRUB boots A.
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=0\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(2, 0, false, 0));
}

#[test]
fn vm_x86_64_firmware_rewrites_a_broken_grubenv() {
    rewrites_a_broken_grubenv(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_rewrites_a_broken_grubenv() {
    rewrites_a_broken_grubenv(Arch::Aarch64);
}

/// No grubenv on the ESP after an update to slot B: GRUB boots slot A, and PID 1 cannot
/// point GRUB at B. Rebooting would bring A back for ever (issue 17), so PID 1 says so and
/// boots A, counting nothing (grubenv is a mirror; the GPT stays the source of truth).
fn without_grubenv_boots_slot_a(arch: Arch) {
    let mut b = boot(
        arch,
        "no_grubenv",
        Setup {
            grubenv: Env::Missing,
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(1, 0, true, 0), word(2, 1, false, 0))),
            ..Setup::default()
        },
    );
    let r = report(&mut b);
    assert!(console_has(
        &b,
        "liftoff-grub: no grubenv on hd0, booting slot A"
    ));
    assert!(
        console_has(
            &b,
            "slot B should boot, but grubenv cannot point GRUB at it: staying on slot A"
        ),
        "log {}",
        b.vm.log_path().display()
    );
    assert_runs_slot(&b, &r, Slot::A);
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(1, 0, true, 0));
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(2, 1, false, 0));
}

#[test]
fn vm_x86_64_firmware_without_grubenv_boots_slot_a() {
    without_grubenv_boots_slot_a(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_without_grubenv_boots_slot_a() {
    without_grubenv_boots_slot_a(Arch::Aarch64);
}

/// Neither slot has a kernel: GRUB says so and reboots (QEMU's -no-reboot ends it) instead
/// of stopping at a prompt.
fn reboots_when_nothing_boots(arch: Arch) {
    let mut b = boot(
        arch,
        "nothing",
        Setup {
            grubenv: Env::Keys(Slot::B, false),
            slots: Vec::new(),
            ..Setup::default()
        },
    );
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_console_has(
        &b,
        &[
            "liftoff-grub: slot B has no kernel on (hd0,gpt5)",
            "liftoff-grub: slot A has no kernel on (hd0,gpt2)",
            "liftoff-grub: no slot can boot, rebooting",
        ],
    );
    assert!(!console_has(&b, "Linux version"));
    println!(
        "GRUB gave up and reset after {:.1} s",
        b.vm.elapsed().as_secs_f64()
    );
    // Nothing was armed: no kernel was started.
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
}

#[test]
fn vm_x86_64_firmware_reboots_when_nothing_boots() {
    reboots_when_nothing_boots(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_reboots_when_nothing_boots() {
    reboots_when_nothing_boots(Arch::Aarch64);
}

/// The whole rollback, nothing simulated: an update in slot A (one try) whose kernel panics
/// before PID 1. First boot: GRUB boots A and arms the pending flag, the kernel panics and
/// reboots. Second boot: GRUB finds the flag still set and boots B; PID 1 records A's failed
/// try and stays on B. `bios`: the same on x86_64 under legacy BIOS (SeaBIOS and GRUB
/// for i386-pc, which loads A's `bios/vmlinuz` without an initramfs).
fn rollback_after_kernel_panic(arch: Arch, bios: bool) {
    let mut b = boot(
        arch,
        if bios { "bios_panic_a" } else { "panic_a" },
        Setup {
            grubenv: Env::Keys(Slot::A, false),
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(2, 1, false, 0), word(1, 0, true, 0))),
            kill_a: true,
            bios,
            // Under BIOS, as the other `vm_x86_64_bios_*` test: GRUB for i386-pc loads
            // Debian's kernel and initramfs from `bios/`.
            debian_kernel: bios,
            ..Setup::default()
        },
    );
    b.vm.wait_for_text("liftoff-grub: booting slot A from (hd0,gpt2)", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_for_text("Kernel panic", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "slot A panicked and reset after {:.1} s",
        b.vm.elapsed().as_secs_f64()
    );
    assert!(!console_has(&b, liftoff_probe::MARKER));
    // GRUB armed the flag with save_env; nobody cleared it.
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=1\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 1, false, 0));

    b.restart("console-2");
    let r = report(&mut b);
    assert!(console_has(
        &b,
        "liftoff-grub: slot A never reached PID 1, falling back to slot B"
    ));
    assert!(console_has(
        &b,
        "liftoff-grub: booting slot B from (hd0,gpt5)"
    ));
    assert_runs_slot(&b, &r, Slot::B);
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 0, false, 0));
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(1, 0, true, 1));
}

#[test]
fn vm_x86_64_firmware_rolls_back_after_kernel_panic() {
    rollback_after_kernel_panic(Arch::X86_64, false);
}

#[test]
fn vm_aarch64_firmware_rolls_back_after_kernel_panic() {
    rollback_after_kernel_panic(Arch::Aarch64, false);
}

/// The rollback above under legacy BIOS: the pending flag in grubenv works the same with
/// GRUB for i386-pc, and PID 1, with no EFI variables at all, records A's failed try.
#[test]
fn vm_x86_64_bios_rolls_back_after_kernel_panic() {
    rollback_after_kernel_panic(Arch::X86_64, true);
}

/// A kernel that hangs before PID 1 is reset (issue 17 item 4), on the minimal kernel
/// with softdog built in: the image builder puts `softdog.soft_active_on_boot=1` on the
/// signed command line (`liftoff_image::boot::early_watchdog_args`), with a margin made
/// short here (10 s instead of 60 s). Slot A (the update, one try) waits forever for a root
/// device that never comes; nobody opens `/dev/watchdog`, so softdog panics the kernel 10 s
/// after it registered and `panic=-1` reboots it. GRUB finds its pending flag still set and
/// boots slot B, whose PID 1 takes the watchdog over in time, spends A's try and stays on
/// B. Without the keys slot A waits for its disk forever.
fn resets_a_kernel_that_hangs(arch: Arch) {
    let mut b = boot(
        arch,
        "hang_a",
        Setup {
            grubenv: Env::Keys(Slot::A, false),
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(2, 1, false, 0), word(1, 0, true, 0))),
            hang_a: true,
            extra: "liftoff.watchdog=120 softdog.soft_margin=10",
            ..Setup::default()
        },
    );
    b.vm.wait_for_text("liftoff-grub: booting slot A from (hd0,gpt2)", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_for_text("Waiting for root device /dev/liftoff-missing", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let hung = b.vm.elapsed();
    b.vm.wait_for_text("Software Watchdog Timer expired", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let fired = b.vm.elapsed();
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "slot A hung at {:.1} s, softdog fired at {:.1} s, reset after {:.1} s",
        hung.as_secs_f64(),
        fired.as_secs_f64(),
        b.vm.elapsed().as_secs_f64()
    );
    assert_console_has(
        &b,
        &[
            "softdog: initialized. soft_noboot=0 soft_margin=10 sec soft_panic=1",
            "soft_active_on_boot=1",
        ],
    );
    // softdog fired its margin after it started (kernel time; its "initialized" line comes
    // a few milliseconds after the timer started).
    let registered = common::printk_of(b.vm.lines(), "softdog: initialized").unwrap();
    let panicked = common::printk_of(b.vm.lines(), "Software Watchdog Timer expired").unwrap();
    let after = panicked - registered;
    assert!(
        (9_500_000..12_000_000).contains(&after),
        "softdog fired {after} us after it registered"
    );
    assert!(!console_has(&b, "liftoff: "), "PID 1 never ran");
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=1\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 1, false, 0));

    b.restart("console-2");
    let r = report(&mut b);
    assert_console_has(
        &b,
        &[
            "liftoff-grub: slot A never reached PID 1, falling back to slot B",
            "liftoff-grub: booting slot B from (hd0,gpt5)",
        ],
    );
    assert_runs_slot(&b, &r, Slot::B);
    assert!(
        r.liftoff_log
            .iter()
            .any(|l| l.starts_with("watchdog /dev/watchdog armed: 120 s")),
        "PID 1 took over the softdog running since boot: {:?}",
        r.liftoff_log
    );
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 0, false, 0));
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(1, 0, true, 1));
    // The softdog panic is in pstore (efi-pstore, built into this kernel): slot A's, before
    // PID 1, so GRUB's fallback has counted it; B is not charged, the history names it.
    assert!(
        r.liftoff_log.iter().any(|l| l
            == "pstore: the previous boot of slot A ended in a kernel watchdog (kernel): \
                before PID 1, counted by GRUB's fallback"),
        "{:?}",
        r.liftoff_log
    );
    let history = r.failures.as_deref().unwrap_or_default();
    let fields: Vec<&str> = history.split_whitespace().collect();
    assert!(
        matches!(fields.as_slice(), ["A", time, "kernel", "watchdog"] if time.parse::<u64>().is_ok()),
        "failure history {history:?}"
    );
}

#[test]
fn vm_x86_64_firmware_resets_a_kernel_that_hangs() {
    resets_a_kernel_that_hangs(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_resets_a_kernel_that_hangs() {
    resets_a_kernel_that_hangs(Arch::Aarch64);
}

/// Legacy BIOS, the happy path: SeaBIOS runs GRUB's boot.img from the MBR, which loads
/// the core image from the BIOS boot partition; GRUB reads grubenv (`A`/`0`), boots slot
/// A's `bios/vmlinuz` and `bios/initramfs` with `bios/cmdline.env`'s command line and the
/// BOOT partition's GUID from `probe`, and arms the pending flag; PID 1 (no EFI
/// variables, no Secure Boot) finds the disk by that GUID, sets up verity, grows DATA on
/// the bigger disk and encrypts it with a key file on PRIVATE (the machine has a TPM, but
/// `liftoff.data=keyfile` under BIOS), clears the flag and counts the boot in the GPT. The
/// MBR keeps GRUB's code when PID 1 grows the protective MBR's record.
#[test]
fn vm_x86_64_bios_boots_slot_a() {
    let arch = Arch::X86_64;
    let mut b = boot(
        arch,
        "bios_slot_a",
        Setup {
            grubenv: Env::Keys(Slot::A, false),
            slots: vec![Slot::A],
            grow_mib: GROW_MIB,
            bios: true,
            debian_kernel: true,
            ..Setup::default()
        },
    );
    let mbr_before = mbr(&b);
    let boot_img = liftoff_image::bios::boot_img().unwrap();
    assert_eq!(
        mbr_before[..0x5c],
        boot_img[..0x5c],
        "GRUB's boot.img is in the MBR"
    );
    let r = report(&mut b);
    assert_data_grew(&b, &r);
    assert_console(&b, arch);
    assert_console_has(&b, &["liftoff-grub: booting slot A from (hd0,gpt2)"]);
    assert!(!console_has(&b, "falling back"));
    // No UEFI: the kernel found no EFI system table, and nothing spoke of Secure Boot.
    assert!(!console_has(&b, "efi: EFI v"));
    assert!(!console_has(&b, "Secure boot"));
    assert_runs_slot(&b, &r, Slot::A);
    assert_eq!(cmdline_value(&r, "liftoff.data"), Some("keyfile"));
    assert!(
        r.liftoff_log
            .iter()
            .any(|l| l.contains("LUKS2 opened with the key on PRIVATE")),
        "{:?}",
        r.liftoff_log
    );
    assert!(
        r.liftoff_log.iter().any(|l| l.contains("grubenv updated")),
        "PID 1 cleared GRUB's pending flag: {:?}",
        r.liftoff_log
    );
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=0\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(1, 0, true, 1));
    // The disk grew: the 0xEE record now covers it, and the boot code is still there.
    let mbr_after = mbr(&b);
    assert_eq!(mbr_after[..0x1b8], mbr_before[..0x1b8]);
    assert_ne!(mbr_after[0x1be..0x1ce], mbr_before[0x1be..0x1ce]);
}

/// The first sector of the boot's disk.
fn mbr(b: &Boot) -> Vec<u8> {
    let mut mbr = vec![0u8; 512];
    let f = std::fs::File::open(&b.disk.path).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut mbr, 0).unwrap();
    mbr
}

/// Automatic rollback when the update's boot fails after GRUB: slot A holds the update
/// (priority 2, one try), slot B the running version (priority 1, successful). `how` breaks
/// A; the first boot must end in a reboot with `first_boot_line` on the console, and the
/// second boot must run B with A's try spent and grubenv pointing at B. Returns the probe's
/// report of the second boot.
fn rollback(
    arch: Arch,
    test: &str,
    a_extra: Option<String>,
    corrupt: bool,
    a_word: u64,
    first_boot_line: &str,
    debian_kernel: bool,
) -> Report {
    let mut b = boot(
        arch,
        test,
        Setup {
            grubenv: Env::Keys(Slot::A, false),
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((a_word, word(1, 0, true, 0))),
            a_extra,
            corrupt_root_a: corrupt,
            debian_kernel,
            ..Setup::default()
        },
    );
    b.vm.wait_for_text("liftoff-grub: booting slot A from (hd0,gpt2)", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_for_text(first_boot_line, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    no_kernel_panic(&b.vm);
    assert!(!console_has(&b, liftoff_probe::MARKER));
    // PID 1 counted the boot against A before using its root and pointed GRUB at B: A is
    // no longer eligible (no try left, not successful).
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
    let a = attributes(&b.disk.path, disk::BOOT_A);
    assert_eq!(a & (0xf << 52 | 1 << 56), 0, "BOOT-A attributes {a:016x}");

    b.restart("console-2");
    let r = report(&mut b);
    assert!(console_has(
        &b,
        "liftoff-grub: booting slot B from (hd0,gpt5)"
    ));
    assert_runs_slot(&b, &r, Slot::B);
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(1, 0, true, 1));
    r
}

/// Scenario 2: the update's PID 1 fails (a wrong root hash on its command line). PID 1's
/// failure is no panic: it keeps it in an EFI variable, and B's boot puts it into the
/// failure history (issue 17 item 2), not charged again (B's boot above saw A's try spent
/// once, by the A/B rules).
fn pid1_fails(arch: Arch) {
    let r = rollback(
        arch,
        "pid1_fails_a",
        Some(format!(
            "liftoff.handoff={PROBE} liftoff.roothash={}",
            "ab".repeat(32)
        )),
        false,
        word(2, 1, false, 0),
        "liftoff: stage verity failed",
        false,
    );
    assert!(
        r.liftoff_log.iter().any(|l| l
            .starts_with("pstore: the previous boot of slot A failed in PID 1 at stage verity: ")),
        "{:?}",
        r.liftoff_log
    );
    let history = r.failures.as_deref().unwrap_or_default();
    let fields: Vec<&str> = history.split_whitespace().collect();
    assert!(
        matches!(fields.as_slice(), ["A", time, "verity", "pid1"] if time.parse::<u64>().is_ok()),
        "failure history {history:?}"
    );
    let status = r.status_json.as_deref().expect("prairiedog in the root");
    let v: serde_json::Value =
        serde_json::from_str(status).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert_eq!(v["failures"]["A"][0]["cause"], "pid1", "{status}");
    assert_eq!(v["failures"]["A"][0]["stage"], "verity", "{status}");
    assert_eq!(v["failures"]["B"], serde_json::json!([]), "{status}");
}

#[test]
fn vm_x86_64_firmware_rolls_back_when_pid1_fails() {
    pid1_fails(Arch::X86_64);
}

/// Scenario 3, and failure memory across boots (issue 17 item 2): slot A, which had reached
/// health on earlier boots (successful), has a corrupted root. Its first read of the bad
/// block panics the kernel (`liftoff.verity=panic`, as the image sets it), and efi-pstore
/// keeps the panic's log in an EFI variable. Next boot (GRUB still boots A: PID 1 had
/// cleared the pending flag): PID 1 reads the record, charges it to slot A, which its line
/// in the record names, and, a verity corruption, demotes A at once; the rules then pick
/// B: reboot. Third boot: B runs, and the failure history names A's verity failure.
/// Without the pstore record, A would boot again and again (its count cleared by health).
fn root_corrupted(arch: Arch) {
    let mut b = boot(
        arch,
        "corrupt_root_a",
        Setup {
            grubenv: Env::Keys(Slot::A, false),
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(2, 0, true, 0), word(1, 0, true, 0))),
            a_extra: Some(format!("liftoff.handoff={PROBE} -- read-root")),
            corrupt_root_a: true,
            ..Setup::default()
        },
    );
    b.vm.wait_for_text("liftoff-grub: booting slot A from (hd0,gpt2)", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_for_text(
        "Kernel panic - not syncing: dm-verity device corrupted",
        TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(!console_has(&b, liftoff_probe::MARKER));
    // Health had cleared A's count; this boot counted one.
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=0\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 0, true, 1));

    b.restart("console-2");
    b.vm.wait_for_text(
        "liftoff: pstore: the previous boot of slot A ended in a kernel verity (boot): charged to it",
        TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_for_text("slot B must boot instead: rebooting", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    no_kernel_panic(&b.vm);
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
    // Demoted: no longer successful, no try; the charge and this boot both counted.
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 0, false, 2));

    b.restart("console-3");
    let r = report(&mut b);
    assert_runs_slot(&b, &r, Slot::B);
    assert!(
        !r.liftoff_log.iter().any(|l| l.starts_with("pstore:")),
        "the record was erased after the charge: {:?}",
        r.liftoff_log
    );
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 0, false, 2));
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(1, 0, true, 1));
    let history = r.failures.as_deref().unwrap_or_default();
    let fields: Vec<&str> = history.split_whitespace().collect();
    assert!(
        matches!(fields.as_slice(), ["A", time, "boot", "verity"] if time.parse::<u64>().is_ok()),
        "failure history {history:?}"
    );
    // `prairiedog status --json` in the guest names it.
    let status = r.status_json.as_deref().expect("prairiedog in the root");
    let v: serde_json::Value =
        serde_json::from_str(status).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert_eq!(v["failures"]["A"][0]["cause"], "verity", "{status}");
    assert_eq!(v["failures"]["A"][0]["stage"], "boot", "{status}");
    assert_eq!(v["failures"]["B"], serde_json::json!([]), "{status}");
}

#[test]
fn vm_x86_64_firmware_rolls_back_when_the_root_is_corrupted() {
    root_corrupted(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_rolls_back_when_the_root_is_corrupted() {
    root_corrupted(Arch::Aarch64);
}

/// Scenario 5: a slot that was successful crash-loops; at the limit PID 1 demotes it and
/// reboots into the other slot.
fn crash_loop(arch: Arch) {
    rollback(
        arch,
        "crash_loop_a",
        None,
        false,
        word(2, 0, true, 3),
        "crash loop on slot A (3 unhealthy boots), demoted",
        false,
    );
}

#[test]
fn vm_x86_64_firmware_demotes_a_crash_looping_slot() {
    crash_loop(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_demotes_a_crash_looping_slot() {
    crash_loop(Arch::Aarch64);
}

#[test]
fn vm_aarch64_firmware_rolls_back_when_pid1_fails() {
    pid1_fails(Arch::Aarch64);
}

/// Scenario 4: the update hangs after the handoff and never reaches health; the boot
/// watchdog resets the machine and GRUB boots the other slot.
fn update_hangs(arch: Arch) {
    rollback(
        arch,
        "hang_a",
        Some("liftoff.handoff=/usr/bin/sleep liftoff.watchdog=10 -- 3600".into()),
        false,
        word(2, 1, false, 0),
        "softdog: Initiating system reboot",
        // Debian's softdog is a module PID 1 loads with its defaults: it reboots without a
        // panic. The minimal kernel's, built in, gets `softdog.soft_panic=1` from the
        // image builder (for pstore), so the same hang ends in a kernel panic there.
        true,
    );
}

#[test]
fn vm_x86_64_firmware_rolls_back_when_the_update_hangs() {
    update_hangs(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_rolls_back_when_the_update_hangs() {
    update_hangs(Arch::Aarch64);
}

/// Scenario 6: both slots broken. The machine keeps trying, every boot ends in one clear
/// failure line and a reboot, never a hang: the update once (its try), then the old slot,
/// which stays the best choice (nothing else is eligible) while its crash-loop count rises.
fn both_broken(arch: Arch) {
    let wrong = format!(
        "liftoff.handoff={PROBE} liftoff.roothash={}",
        "ab".repeat(32)
    );
    let mut b = boot(
        arch,
        "both_broken",
        Setup {
            grubenv: Env::Keys(Slot::A, false),
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(2, 1, false, 0), word(1, 0, true, 0))),
            a_extra: Some(wrong.clone()),
            b_extra: Some(wrong),
            ..Setup::default()
        },
    );
    for (i, slot) in ["A", "B", "B"].iter().enumerate() {
        if i > 0 {
            b.restart(&format!("console-{}", i + 1));
        }
        b.vm.wait_for_text(&format!("liftoff-grub: booting slot {slot}"), TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
        let line =
            b.vm.wait_for_text("liftoff: stage verity failed", TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(line.contains("action: reboot"), "{line}");
        b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        no_kernel_panic(&b.vm);
        assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
    }
    // B was booted twice and failed twice: still successful, two unhealthy boots.
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(1, 0, true, 2));
}

#[test]
fn vm_x86_64_firmware_keeps_trying_when_both_slots_are_broken() {
    both_broken(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_keeps_trying_when_both_slots_are_broken() {
    both_broken(Arch::Aarch64);
}

/// Tamper matrix (issue 13), first half: an update in slot A (priority 2, one try) whose
/// signed UKI had one byte of its kernel flipped. shim_lock refuses it ("bad shim
/// signature"), GRUB goes on to slot B in the same boot and arms the pending flag, so PID 1
/// charges A's try as a failed boot and stays on B. The tampered kernel never starts.
fn refuses_a_tampered_kernel(arch: Arch) {
    let mut b = boot(
        arch,
        "tampered_kernel",
        Setup {
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(2, 1, false, 0), word(1, 0, true, 0))),
            tamper_a: Some(Tamper::Byte(".linux")),
            ..Setup::default()
        },
    );
    let r = report(&mut b);
    assert_console_has(
        &b,
        &[
            "liftoff-grub: booting slot A from (hd0,gpt2)",
            "error: bad shim signature.",
            "liftoff-grub: slot A: (hd0,gpt2)/liftoff.efi refused (signature) or unreadable",
            "liftoff-grub: booting slot B from (hd0,gpt5)",
            "Secure boot enabled",
        ],
    );
    assert_runs_slot(&b, &r, Slot::B);
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 0, false, 0));
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(1, 0, true, 1));
}

#[test]
fn vm_x86_64_firmware_refuses_a_tampered_kernel() {
    refuses_a_tampered_kernel(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_refuses_a_tampered_kernel() {
    refuses_a_tampered_kernel(Arch::Aarch64);
}

/// Tamper matrix, second half: both slots carry a refused UKI, so nothing boots and GRUB
/// resets without starting a kernel or arming the pending flag, and the GPT is untouched.
/// One boot checks two tampers: `a` in slot A and `b` in slot B.
fn refuses_both(arch: Arch, test: &str, a: Tamper, b_tamper: Tamper) {
    let mut b = boot(
        arch,
        test,
        Setup {
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(1, 0, true, 0), word(1, 0, true, 0))),
            tamper_a: Some(a),
            tamper_b: Some(b_tamper),
            ..Setup::default()
        },
    );
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let refusals =
        b.vm.lines()
            .iter()
            .filter(|l| l.contains("error: bad shim signature."))
            .count();
    assert_eq!(refusals, 2, "{}", b.vm.log_path().display());
    assert_console_has(
        &b,
        &[
            "liftoff-grub: slot A: (hd0,gpt2)/liftoff.efi refused (signature) or unreadable",
            "liftoff-grub: slot B: (hd0,gpt5)/liftoff.efi refused (signature) or unreadable",
            "liftoff-grub: no slot can boot, rebooting",
        ],
    );
    assert!(!console_has(&b, "Linux version"));
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=0\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(1, 0, true, 0));
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(1, 0, true, 0));
}

#[test]
fn vm_x86_64_firmware_refuses_a_tampered_initramfs_and_command_line() {
    refuses_both(
        Arch::X86_64,
        "tampered_initrd_cmdline",
        Tamper::Byte(".initrd"),
        Tamper::RootHash,
    );
}

#[test]
fn vm_aarch64_firmware_refuses_a_tampered_initramfs_and_command_line() {
    refuses_both(
        Arch::Aarch64,
        "tampered_initrd_cmdline",
        Tamper::Byte(".initrd"),
        Tamper::RootHash,
    );
}

#[test]
fn vm_x86_64_firmware_refuses_foreign_and_unsigned_images() {
    refuses_both(
        Arch::X86_64,
        "foreign_unsigned",
        Tamper::ForeignKey,
        Tamper::Unsigned,
    );
}

#[test]
fn vm_aarch64_firmware_refuses_foreign_and_unsigned_images() {
    refuses_both(
        Arch::Aarch64,
        "foreign_unsigned",
        Tamper::ForeignKey,
        Tamper::Unsigned,
    );
}

/// A GRUB without a signature: shim refuses to start it, so no Liftoff code runs.
fn refuses_an_unsigned_loader(arch: Arch) {
    let mut b = boot(
        arch,
        "unsigned_loader",
        Setup {
            loader: Loader::UnsignedGrub,
            ..Setup::default()
        },
    );
    b.vm.wait_for_text("Verification failed", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "shim refused GRUB after {:.1} s",
        b.vm.elapsed().as_secs_f64()
    );
    assert!(!console_has(&b, "Welcome to GRUB"));
    assert!(!console_has(&b, "liftoff-grub"));
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=0\n");
}

#[test]
fn vm_x86_64_firmware_refuses_an_unsigned_loader() {
    refuses_an_unsigned_loader(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_refuses_an_unsigned_loader() {
    refuses_an_unsigned_loader(Arch::Aarch64);
}

/// Two ways past the signed command line under Secure Boot, in one test. Slot A holds an
/// update (priority 2, one try) whose `.cmdline` hands off to `/bin/sh`, re-signed with the
/// db key, so the firmware starts it while its initramfs still carries the command line
/// that was built: PID 1 refuses the boot before touching the disk, and GRUB, finding its
/// pending flag still set, falls back to slot B. The loader passes `liftoff.handoff=/bin/sh`
/// and a zero root hash to both slots: systemd-stub ignores them, and on B PID 1 finds every
/// `liftoff.` key signed and hands off to the probe on B's verified root.
fn refuses_command_lines_it_did_not_sign(arch: Arch) {
    let zeros = "0".repeat(64);
    let args = format!("liftoff.handoff=/bin/sh liftoff.roothash={zeros}");
    let mut b = boot(
        arch,
        "unsigned_cmdline",
        Setup {
            slots: vec![Slot::A, Slot::B],
            root_b: true,
            words: Some((word(2, 1, false, 0), word(1, 0, true, 0))),
            tamper_a: Some(Tamper::Handoff("/bin/sh")),
            loader: Loader::PassingArgs(args),
            ..Setup::default()
        },
    );
    b.vm.wait_for_text("liftoff-grub: booting slot A from (hd0,gpt2)", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let line =
        b.vm.wait_for_text("liftoff: stage cmdline failed", TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.contains(
            "Secure Boot is on and liftoff.handoff=/bin/sh did not come from the signed \
             image; refusing to boot this slot; action: reboot"
        ),
        "{line}"
    );
    b.vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    no_kernel_panic(&b.vm);
    assert!(console_has(&b, "Secure boot enabled"));
    assert!(!console_has(&b, liftoff_probe::MARKER));
    // Refused before the slots stage: the disk is as GRUB left it.
    assert_eq!(grubenv(&b), "liftoff_slot=A\nliftoff_pending=1\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 1, false, 0));

    b.restart("console-2");
    let r = report(&mut b);
    assert_console_has(
        &b,
        &[
            "liftoff-grub: slot A never reached PID 1, falling back to slot B",
            "liftoff: cmdline: Secure Boot is on; every liftoff. key is the signed image's",
        ],
    );
    assert_runs_slot(&b, &r, Slot::B);
    assert!(!r.cmdline.contains("/bin/sh"), "{}", r.cmdline);
    assert!(!r.cmdline.contains(&zeros), "{}", r.cmdline);
    assert_eq!(
        cmdline_value(&r, "liftoff.roothash"),
        Some(b.disk.root_hash.as_str())
    );
    assert_eq!(grubenv(&b), "liftoff_slot=B\nliftoff_pending=0\n");
    assert_eq!(attributes(&b.disk.path, disk::BOOT_A), word(2, 0, false, 0));
    assert_eq!(attributes(&b.disk.path, disk::BOOT_B), word(1, 0, true, 1));
}

#[test]
fn vm_x86_64_firmware_refuses_command_lines_it_did_not_sign() {
    refuses_command_lines_it_did_not_sign(Arch::X86_64);
}

#[test]
fn vm_aarch64_firmware_refuses_command_lines_it_did_not_sign() {
    refuses_command_lines_it_did_not_sign(Arch::Aarch64);
}
