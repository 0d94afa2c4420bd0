//! VM tests of the first PID 1: Debian's cloud kernel boots an initramfs with Liftoff as
//! `/init`, the modules it lists and the probe as the next stage, on both architectures.

use std::path::PathBuf;
use std::time::Duration;

use liftoff_image::initramfs::{Initramfs, DEBIAN_QEMU_MODULES};
use liftoff_image::kernel::Kernel;
use liftoff_image::{artifacts, Arch};
use liftoff_probe::Report;
use liftoff_qemu::vm::{self, Vm, VmConfig};

/// Generous: two TCG guests may share the two cores with a build.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

struct Guest {
    vm: Vm,
}

fn boot(arch: Arch, test: &str, append: &str) -> Guest {
    let kernel = Kernel::debian(arch).unwrap_or_else(|e| panic!("{e}"));
    let init = artifacts::musl_binary(arch, "init").unwrap_or_else(|e| panic!("{e}"));
    let probe = artifacts::musl_binary(arch, "probe").unwrap_or_else(|e| panic!("{e}"));
    let mut initramfs = Initramfs::new().unwrap();
    initramfs.host_file("init", 0o755, &init).unwrap();
    initramfs.host_file("probe", 0o755, &probe).unwrap();
    initramfs.modules(&kernel, DEBIAN_QEMU_MODULES).unwrap();
    let work: PathBuf = vm::log_dir().join(format!("{test}-{arch}"));
    std::fs::create_dir_all(&work).unwrap();
    let initrd = work.join("initramfs.cpio");
    std::fs::write(&initrd, initramfs.finish().unwrap()).unwrap();
    let mut config = VmConfig::new(arch, &kernel.image, &work.join("console.log"));
    config.initrd = Some(initrd);
    config.append = append.to_owned();
    let vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    Guest { vm }
}

fn kernel_never_panicked(vm: &Vm) {
    for bad in ["Kernel panic", "Attempted to kill init", "liftoff: panic"] {
        assert!(
            !vm.lines().iter().any(|l| l.contains(bad)),
            "{bad:?} on the console; log {}",
            vm.log_path().display()
        );
    }
}

fn boots_to_probe(arch: Arch) {
    let mut g = boot(
        arch,
        "boots_to_probe",
        "liftoff.handoff=/probe -- probe-arg",
    );
    g.vm.wait_for_text(liftoff_probe::MARKER, BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    g.vm.wait_exit(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    kernel_never_panicked(&g.vm);
    let report = Report::from_console(g.vm.lines())
        .expect("probe line")
        .expect("probe JSON parses");

    // The probe replaced PID 1 and got the arguments the kernel gave init.
    assert_eq!(report.pid, 1);
    assert_eq!(report.argv, ["/probe", "probe-arg"]);
    assert!(report.cmdline.contains("liftoff.handoff=/probe"));

    for (target, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "devtmpfs"),
        ("/run", "tmpfs"),
    ] {
        let m = report
            .mount(target)
            .unwrap_or_else(|| panic!("{target} not mounted: {:?}", report.mounts));
        assert_eq!(m.fstype, fstype, "{target}");
    }
    assert!(report.mount("/proc").unwrap().options.contains("nosuid"));

    for module in ["dm_mod", "dm_verity", "dm_crypt", "dm_bufio"] {
        assert!(
            report.modules.iter().any(|m| m == module),
            "{module} not loaded: {:?}",
            report.modules
        );
    }
    // This guest has no disk, so no virtio device: PID 1 skips the virtio drivers it lists
    // (their PCI alias matches nothing in sysfs) and says so.
    for module in ["virtio_blk", "virtio_pci"] {
        assert!(
            !report.modules.iter().any(|m| m == module),
            "{module} loaded without its hardware: {:?}",
            report.modules
        );
    }
    assert!(
        report
            .liftoff_log
            .iter()
            .any(|l| l.ends_with("modules; no hardware for virtio_pci, virtio_blk")),
        "{:?}",
        report.liftoff_log
    );

    let stages: Vec<String> = report.timeline().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        stages,
        ["pid1", "api-mounts", "cmdline", "modules", "handoff"]
    );
    let times: Vec<u64> = report.timeline().into_iter().map(|(_, t)| t).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        report
            .liftoff_log
            .iter()
            .any(|l| l.starts_with("loaded ") && l.contains(" modules")),
        "{:?}",
        report.liftoff_log
    );
    assert!(
        !report.liftoff_log.iter().any(|l| l.contains("failed")),
        "{:?}",
        report.liftoff_log
    );
    let marks = liftoff_qemu::console::timeline(g.vm.lines());
    println!("{}", liftoff_qemu::console::format_timeline(&marks));
    // PID 1's log lines reach the console with their level.
    assert!(g
        .vm
        .lines()
        .iter()
        .any(|l| l.contains("liftoff: timeline stage=handoff")));
}

#[test]
fn vm_x86_64_boots_initramfs_to_probe() {
    boots_to_probe(Arch::X86_64);
}

#[test]
fn vm_aarch64_boots_initramfs_to_probe() {
    boots_to_probe(Arch::Aarch64);
}

/// An unknown key and a malformed value each give one error line; the boot goes on.
fn bad_keys_are_reported(arch: Arch) {
    let mut g = boot(
        arch,
        "bad_keys",
        "liftoff.handoff=/probe liftoff.bogus=1 liftoff.watchdog=soon",
    );
    g.vm.wait_for_text(liftoff_probe::MARKER, BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    g.vm.wait_exit(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    kernel_never_panicked(&g.vm);
    let report = Report::from_console(g.vm.lines()).unwrap().unwrap();
    let errors: Vec<&String> = report
        .liftoff_log
        .iter()
        .filter(|l| l.contains("liftoff.bogus") || l.contains("liftoff.watchdog"))
        .collect();
    assert_eq!(
        errors,
        [
            "unknown command-line key liftoff.bogus, ignored",
            "malformed command-line value liftoff.watchdog=\"soon\": expected seconds > 0; ignored"
        ]
    );
    // The kernel does not pass dotted parameters to init; the probe saw only its name.
    assert_eq!(report.argv, ["/probe"]);
}

#[test]
fn vm_x86_64_bad_keys_are_reported_and_boot_goes_on() {
    bad_keys_are_reported(Arch::X86_64);
}

#[test]
fn vm_aarch64_bad_keys_are_reported_and_boot_goes_on() {
    bad_keys_are_reported(Arch::Aarch64);
}

/// A stage that fails follows the failure policy: one line naming stage, path and
/// action, then a reboot (QEMU runs with -no-reboot, so it exits), never a kernel panic.
fn failed_stage_reboots(arch: Arch) {
    let mut g = boot(arch, "failed_stage", "liftoff.handoff=/no/such/stage");
    let line =
        g.vm.wait_for_text("liftoff: stage handoff failed", BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.contains("executing /no/such/stage: No such file or directory")
            && line.ends_with("action: reboot"),
        "{line}"
    );
    g.vm.wait_for_text("reboot: Restarting system", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    g.vm.wait_exit(BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    kernel_never_panicked(&g.vm);
    assert!(!g
        .vm
        .lines()
        .iter()
        .any(|l| l.contains(liftoff_probe::MARKER)));
}

#[test]
fn vm_x86_64_failed_stage_reboots() {
    failed_stage_reboots(Arch::X86_64);
}

#[test]
fn vm_aarch64_failed_stage_reboots() {
    failed_stage_reboots(Arch::Aarch64);
}
