//! containerd handoff against systemd handoff (issue 7): the same image, kernel and QEMU
//! (x86_64 TCG, Debian kernel), booted with `liftoff.handoff=containerd` (PID 1 supervises
//! containerd itself) and with systemd starting the same containerd; kernel-to-containerd-
//! ready for both, several boots each, medians and the ratio.
//!
//! usage: cargo run --release -p tests --example bench_handoff [-- BOOTS]
//!
//! "Ready" is containerd answering a real request, stamped by the kernel: in containerd mode
//! PID 1's `healthy` timeline mark (its gRPC Version call answered); under systemd a unit
//! ordered after containerd.service loops on `ctr version` and writes a mark to /dev/kmsg
//! the moment it succeeds.

// A benchmark run by hand on the host: a failed step ends it with the reason, so it may
// unwrap, index and panic like a test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::printk_of;
use liftoff_image::disk::DiskSpec;
use liftoff_image::kernel::Kernel;
use liftoff_image::root::RootFsType;
use liftoff_image::system::{self, RootFile, RootLink, SystemSpec};
use liftoff_image::Arch;
use liftoff_qemu::vm::{self, Bus, Disk, Vm, VmConfig};

const TIMEOUT: Duration = Duration::from_secs(400);
const READY: &str = "bench: containerd-ready";

const READY_UNIT: &str = "\
[Unit]
Description=Liftoff benchmark: containerd answers
After=containerd.service
Requires=containerd.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'until ctr version >/dev/null 2>&1; do sleep 0.02; done; echo \"bench: containerd-ready\" > /dev/kmsg'
ExecStartPost=/usr/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
";

fn main() {
    let boots = common::boots_arg();
    let arch = Arch::X86_64;
    let kernel = Kernel::debian(arch).unwrap_or_else(|e| panic!("{e}"));
    let sys = system::build(&SystemSpec {
        arch,
        fs: RootFsType::Erofs,
        kernel: system::SystemKernel::Debian,
        files: vec![RootFile {
            path: "/etc/systemd/system/liftoff-bench-ready.service".into(),
            mode: 0o644,
            data: READY_UNIT.as_bytes().to_vec(),
        }],
        links: vec![RootLink {
            path: "/etc/systemd/system/multi-user.target.wants/liftoff-bench-ready.service".into(),
            target: "/etc/systemd/system/liftoff-bench-ready.service".into(),
        }],
        disk: DiskSpec {
            seed: "bench-handoff".into(),
            boot_mib: 8,
            data_mib: 64,
            ..DiskSpec::default()
        },
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let work = vm::log_dir().join("bench_handoff");
    std::fs::create_dir_all(&work).unwrap();
    let initrd = work.join("initramfs.cpio");
    std::fs::write(&initrd, system::initramfs(arch, &kernel).unwrap()).unwrap();

    let boot = |mode: &str, i: usize| -> u64 {
        // Each boot gets a fresh copy: both modes start from an empty DATA.
        let disk = system::guest_disk(&sys, &work.join(format!("disk-{mode}.img"))).unwrap();
        let mut config = VmConfig::new(arch, &kernel.image, &work.join(format!("{mode}-{i}.log")));
        config.initrd = Some(initrd.clone());
        config.memory_mib = 1024;
        config.append = format!("{} liftoff.handoff={mode}", disk.cmdline_slot_a());
        config.disks.push(Disk {
            path: disk.path.clone(),
            read_only: false,
            serial: Some("liftoff-boot".into()),
            bus: Bus::VirtioBlk,
            block_size: None,
        });
        let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
        let needle = if mode == "containerd" {
            "liftoff: timeline stage=healthy"
        } else {
            READY
        };
        vm.wait_for_text(needle, TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
        printk_of(vm.lines(), needle).expect("printk stamp")
    };
    let mut direct = Vec::new();
    let mut systemd = Vec::new();
    for i in 0..=boots {
        let d = boot("containerd", i);
        let s = boot("systemd", i);
        if i > 0 {
            direct.push(d);
            systemd.push(s);
        }
    }
    let d = common::median(direct);
    let s = common::median(systemd);
    println!(
        "kernel to containerd ready, {arch}, Debian kernel {}, {boots} boots each (medians)",
        kernel.version
    );
    println!(
        "containerd handoff {:>8.1} ms   systemd handoff {:>8.1} ms   ratio {:.2}x",
        d as f64 / 1000.0,
        s as f64 / 1000.0,
        d as f64 / s as f64
    );
    println!("logs: {}", work.display());
}
