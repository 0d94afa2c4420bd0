//! VM test of issue 7's container host: the verified Debian root with containerd and runc,
//! booted through PID 1 into systemd, imports a small OCI image made locally from busybox
//! (`liftoff_image::oci`) with `ctr` and runs a container that prints a marker.
//!
//! The image is on the read-only erofs root; containerd keeps its content and snapshots
//! in /var/lib/containerd, on the encrypted DATA file system PID 1 binds /var from.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use liftoff_image::disk::DiskSpec;
use liftoff_image::kernel::Kernel;
use liftoff_image::root::RootFsType;
use liftoff_image::system::{self, BuiltSystem, RootFile, RootLink, SystemSpec};
use liftoff_image::{oci, Arch};
use liftoff_qemu::vm::{Bus, Disk, Vm, VmConfig};

mod common;

const TIMEOUT: Duration = Duration::from_secs(300);

const IMAGE_REF: &str = "docker.io/liftoff/busybox:test";
const ARCHIVE: &str = "/usr/share/liftoff-test/busybox-oci.tar";
const SCRIPT: &str = "/usr/local/bin/liftoff-container-test";

/// The container prints this followed by `6*7` as its shell computes it, so the line can
/// only come from busybox's shell running inside the container (the script's own text,
/// should it ever reach the console, has `$((6*7))` instead).
const MARKER: &str = "LIFTOFF-CONTAINER-MARKER-42";

/// Imports the image, runs one container, reports and powers off either way.
fn script() -> String {
    format!(
        "\
#!/bin/sh
set -u
say() {{ echo \"liftoff-container: $*\"; }}
step() {{ \"$@\" || {{ say \"FAILED: $1 $2 $3 exited $?\"; return 1; }}; }}
named() {{
  ctr image ls -q | grep -qx '{IMAGE_REF}' ||
    {{ say \"FAILED: {IMAGE_REF} not in: $(ctr image ls -q)\"; return 1; }}
}}
if step ctr image import --all-platforms {ARCHIVE} && named &&
  step ctr run --rm {IMAGE_REF} t1 /bin/sh -c 'echo LIFTOFF-CONTAINER-MARKER-$((6*7))'
then
  say \"done; containers left: $(ctr container ls -q | wc -l);\" \\
    \"/var/lib/containerd on $(findmnt -n -o FSTYPE --target /var/lib/containerd)\"
fi
systemctl --no-block poweroff
"
    )
}

const UNIT: &str = "\
[Unit]
Description=Liftoff VM test: run a busybox container with ctr
Requires=containerd.service
After=containerd.service

[Service]
Type=oneshot
ExecStart=/usr/local/bin/liftoff-container-test
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console

[Install]
WantedBy=multi-user.target
";

fn archive(arch: Arch) -> Vec<u8> {
    oci::busybox_archive(arch, IMAGE_REF).unwrap_or_else(|e| panic!("OCI archive: {e}"))
}

fn container_system(arch: Arch, archive: Vec<u8>) -> BuiltSystem {
    let spec = SystemSpec {
        arch,
        fs: RootFsType::Erofs,
        files: vec![
            RootFile {
                path: ARCHIVE.into(),
                mode: 0o644,
                data: archive,
            },
            RootFile {
                path: SCRIPT.into(),
                mode: 0o755,
                data: script().into_bytes(),
            },
            RootFile {
                path: "/etc/systemd/system/liftoff-container.service".into(),
                mode: 0o644,
                data: UNIT.as_bytes().to_vec(),
            },
        ],
        links: vec![RootLink {
            path: "/etc/systemd/system/multi-user.target.wants/liftoff-container.service".into(),
            target: "/etc/systemd/system/liftoff-container.service".into(),
        }],
        disk: DiskSpec {
            seed: "vm-container".into(),
            esp_files: vec![("grubenv".into(), common::grubenv_pending_a())],
            boot_mib: 8,
            data_mib: 96,
            ..DiskSpec::default()
        },
    };
    system::build(&spec).unwrap_or_else(|e| panic!("building the {arch} image: {e}"))
}

/// Boots the system with `archive` as the image and waits for the script's report line.
fn boot(arch: Arch, test: &str, archive: Vec<u8>) -> (Vm, String) {
    let sys = container_system(arch, archive);
    let (work, _scratch) = common::work_dir(&format!("{test}-{arch}"));
    let disk = system::guest_disk(&sys, &work.join("disk.img")).unwrap();
    let kernel = Kernel::debian(arch).unwrap_or_else(|e| panic!("{e}"));
    let initrd = work.join("initramfs.cpio");
    std::fs::write(&initrd, system::initramfs(arch, &kernel).unwrap()).unwrap();
    let mut config = VmConfig::new(arch, &kernel.image, &work.join("console.log"));
    config.initrd = Some(initrd);
    config.memory_mib = 1024;
    config.append = disk.cmdline_slot_a();
    config.disks.push(Disk {
        path: disk.path.clone(),
        read_only: false,
        serial: Some("liftoff-boot".into()),
        bus: Bus::VirtioBlk,
        block_size: None,
    });
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let end = vm
        .wait_for_text("liftoff-container: ", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    (vm, end)
}

fn container_runs(arch: Arch) {
    let (mut vm, end) = boot(arch, "container", archive(arch));
    let log = vm.log_path().display().to_string();
    assert!(end.contains("done"), "{end}; log {log}");
    assert!(
        end.contains("containers left: 0;"),
        "--rm removed it: {end}"
    );
    // containerd's content and snapshots are on DATA, not on the read-only root.
    assert!(end.contains("/var/lib/containerd on ext4"), "{end}");
    let started = vm.elapsed();
    vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let lines = vm.lines();
    // A getty prompt may share the line, so the marker need not start it.
    assert!(
        lines.iter().any(|l| l.trim_end().ends_with(MARKER)),
        "no {MARKER} line on the console; log {log}"
    );
    for bad in ["Kernel panic", "Attempted to kill init", "liftoff: panic"] {
        assert!(!lines.iter().any(|l| l.contains(bad)), "{bad:?}; log {log}");
    }
    // containerd came up under systemd, after PID 1 handed over.
    let stages: Vec<String> = liftoff_qemu::console::timeline(lines)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        stages.last().map(String::as_str),
        Some("handoff"),
        "{stages:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("FAILED") && l.contains("containerd")),
        "containerd.service failed; log {log}"
    );
    println!(
        "{arch}: container done {:.1} s after power-on",
        started.as_secs_f64()
    );
}

#[test]
fn vm_x86_64_busybox_container_runs() {
    container_runs(Arch::X86_64);
}

#[test]
fn vm_aarch64_busybox_container_runs() {
    container_runs(Arch::Aarch64);
}

/// A layer whose bytes no longer match the digest that names them never enters
/// containerd's content store, so the import fails when it unpacks that layer: nothing
/// runs, and the script says which step failed.
#[test]
fn vm_x86_64_corrupted_layer_is_refused() {
    let arch = Arch::X86_64;
    let image = oci::image(arch, IMAGE_REF, &oci::busybox(arch).unwrap()).unwrap();
    let layer = oci::digest(&image.layer);
    let mut bytes = image.archive().unwrap();
    assert_eq!(bytes, archive(arch));
    // busybox's ELF header is in the layer blob, the only place it occurs in the archive.
    let elf = bytes
        .windows(4)
        .position(|w| w == b"\x7fELF")
        .expect("busybox in the archive");
    bytes[elf + 1000] ^= 0xff;
    let (mut vm, end) = boot(arch, "container_corrupt", bytes);
    let log = vm.log_path().display().to_string();
    assert!(end.contains("FAILED: ctr image import"), "{end}; log {log}");
    vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let lines = vm.lines();
    let refused = format!("ctr: failed to extract layer {layer}: ");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&refused) && l.trim_end().ends_with(": not found")),
        "ctr names the layer missing from the content store; log {log}"
    );
    assert!(!lines.iter().any(|l| l.contains(MARKER)), "log {log}");
}
