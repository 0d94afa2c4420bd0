//! Liftoff on the minimal kernel of `kernel-config/` (issue 9): everything the boot path
//! needs is built in, so the initramfs carries PID 1 and no modules at all. The kernel is
//! built by `scripts/build-kernel` (cached per machine by a hash of its configuration).

use crate::common;

use std::time::Duration;

use liftoff_image::{disk, system, Arch};
use liftoff_probe::Report;
use liftoff_qemu::vm::{Bus, Disk, Vm, VmConfig};

const TIMEOUT: Duration = Duration::from_secs(300);

/// How much bigger than the image the disk is, so that PID 1 grows DATA.
const GROW_MIB: u64 = 64;

/// Boots the minimal kernel with the disk on `bus`. x86_64 boots from AHCI (SATA): Debian's
/// cloud kernels have no AHCI driver, the minimal kernel builds it in, so this boot is the
/// SATA column of the controller matrix (docs/hardware.md).
fn boots_without_modules(arch: Arch, bus: Bus) {
    let kernel = common::minimal_kernel(arch);
    let sys = common::system(arch);
    let (work, _scratch) = common::work_dir(&format!("minimal_kernel-{arch}"));
    let disk = system::guest_disk(&sys, &work.join("disk.img")).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len + (GROW_MIB << 20)).unwrap();
    drop(file);
    let initrd = work.join("initramfs.cpio");
    std::fs::write(&initrd, common::pid1_initramfs(arch)).unwrap();
    let mut config = VmConfig::new(arch, &kernel, &work.join("console.log"));
    config.initrd = Some(initrd);
    config.memory_mib = 1024;
    config.append = format!(
        "{} liftoff.handoff={} liftoff.watchdog=120",
        disk.cmdline_slot_a(),
        common::PROBE
    );
    config
        .disks
        .push(Disk::new(&disk.path, "liftoff-boot").on(bus));
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_text(liftoff_probe::MARKER, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    for bad in ["Kernel panic", "Attempted to kill init", "liftoff: panic"] {
        assert!(
            !vm.lines().iter().any(|l| l.contains(bad)),
            "{bad:?}; log {}",
            vm.log_path().display()
        );
    }
    assert!(
        vm.lines().iter().any(|l| l.contains("reboot: Power down")),
        "the guest powered off (ACPI/PSCI built in)"
    );
    let r = Report::from_console(vm.lines()).unwrap().unwrap();
    // No module anywhere: none listed, none loaded.
    assert!(r.modules.is_empty(), "{:?}", r.modules);
    assert!(
        r.liftoff_log.iter().any(|l| l == "loaded 0 modules"),
        "{:?}",
        r.liftoff_log
    );
    // The same verified root, DATA and watchdog as on Debian's kernel.
    assert_eq!(r.mount("/").unwrap().fstype, "erofs");
    let dev = r.block_by_dev(&r.root_dev).unwrap();
    assert_eq!(dev.dm_name.as_deref(), Some("root"));
    assert_eq!(
        dev.slaves,
        [
            bus.first_partition(disk::ROOT_A),
            bus.first_partition(disk::HASH_A)
        ],
        "verity over ROOT-A and HASH-A of the disk on {bus:?}"
    );
    assert!(r.dm.iter().any(|t| t.device == "root" && t.status == "V"));
    let local = r.mount("/local").unwrap();
    assert_eq!(local.fstype, "ext4");
    assert!(r
        .dm
        .iter()
        .any(|t| t.device == "data" && t.target_type == "crypt"));
    let crypt = r
        .block
        .iter()
        .find(|d| Some(d.name.as_str()) == local.source.strip_prefix("/dev/"))
        .unwrap();
    assert_eq!(crypt.slaves, [bus.first_partition(disk::DATA)]);
    // DATA grew into the bigger disk (32 MiB in the image) and the GPT is clean.
    let data = r
        .liftoff_log
        .iter()
        .find(|l| l.starts_with("data: "))
        .unwrap();
    assert!(data.contains("grown to fill the disk"), "{data}");
    assert!(
        r.local_bytes > (32 + GROW_MIB / 2) << 20,
        "{}",
        r.local_bytes
    );
    common::assert_sgdisk_clean(&disk.path);
    // The A/B write: slot A stays successful and this boot is counted until health.
    assert_eq!(
        common::attributes(&disk.path, disk::BOOT_A),
        common::word(1, 0, true, 1)
    );
    assert!(
        r.liftoff_log
            .iter()
            .any(|l| l.starts_with("watchdog /dev/watchdog")),
        "{:?}",
        r.liftoff_log
    );
    let marks = liftoff_qemu::console::timeline(vm.lines());
    println!("{}", liftoff_qemu::console::format_timeline(&marks));
}

#[test]
fn vm_x86_64_minimal_kernel_boots_without_modules() {
    boots_without_modules(Arch::X86_64, Bus::Ahci);
}

#[test]
fn vm_aarch64_minimal_kernel_boots_without_modules() {
    boots_without_modules(Arch::Aarch64, Bus::VirtioBlk);
}
