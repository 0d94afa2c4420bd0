//! Liftoff on the minimal kernel of `kernel-config/` (issue 9): everything the boot path
//! needs is built in, so the initramfs carries PID 1 and no modules at all. The kernel is
//! built by `scripts/build-kernel` (cached per machine by a hash of its configuration).

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use liftoff_image::initramfs::Initramfs;
use liftoff_image::kernel::workspace_root;
use liftoff_image::{artifacts, system, Arch};
use liftoff_probe::Report;
use liftoff_qemu::vm::{Disk, Vm, VmConfig};

const TIMEOUT: Duration = Duration::from_secs(300);

/// The cached minimal kernel image for `arch` (built first if missing).
fn minimal_kernel(arch: Arch) -> PathBuf {
    let script = workspace_root().join("scripts/build-kernel");
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

fn boots_without_modules(arch: Arch) {
    let kernel = minimal_kernel(arch);
    let sys = common::system(arch);
    let (work, _scratch) = common::work_dir(&format!("minimal_kernel-{arch}"));
    let disk = system::guest_disk(&sys, &work.join("disk.img")).unwrap();
    let mut initramfs = Initramfs::new().unwrap();
    let init = artifacts::musl_binary(arch, "init").unwrap_or_else(|e| panic!("{e}"));
    initramfs.host_file("init", 0o755, &init).unwrap();
    let initrd = work.join("initramfs.cpio");
    std::fs::write(&initrd, initramfs.finish().unwrap()).unwrap();
    let mut config = VmConfig::new(arch, &kernel, &work.join("console.log"));
    config.initrd = Some(initrd);
    config.memory_mib = 1024;
    config.append = format!(
        "{} liftoff.handoff={} liftoff.watchdog=120",
        disk.cmdline_slot_a(),
        common::PROBE
    );
    config.disks.push(Disk {
        path: disk.path.clone(),
        read_only: false,
        serial: Some("liftoff-boot".into()),
    });
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
    assert!(r.dm.iter().any(|t| t.device == "root" && t.status == "V"));
    assert_eq!(r.mount("/local").unwrap().fstype, "ext4");
    assert!(r
        .dm
        .iter()
        .any(|t| t.device == "data" && t.target_type == "crypt"));
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
    boots_without_modules(Arch::X86_64);
}

#[test]
fn vm_aarch64_minimal_kernel_boots_without_modules() {
    boots_without_modules(Arch::Aarch64);
}
