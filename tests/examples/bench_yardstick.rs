//! The no-initramfs yardstick (issue 9): on the minimal kernel of `kernel-config/`, the same
//! verified root booted (a) with Liftoff's PID 1 from an initramfs and (b) without any
//! initramfs, the kernel setting up dm-verity itself from `dm-mod.create=` (Bottlerocket's
//! way). Both hand off to the same probe.
//!
//! usage: cargo run --release -p tests --example bench_yardstick [-- BOOTS]
//!
//! Times are the kernel's printk stamps: root mounted (Liftoff: its `root` timeline mark;
//! kernel: "VFS: Mounted root") and handoff (Liftoff: its `handoff` mark; kernel: "Run
//! /usr/local/bin/liftoff-probe as init process"). Liftoff also makes the A/B decision,
//! opens and mounts the encrypted DATA partition and arms nothing else; the kernel path
//! does none of that.

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
use common::printk_of;

use std::path::PathBuf;
use std::process::Command;

use liftoff_image::initramfs::Initramfs;
use liftoff_image::kernel::workspace_root;
use liftoff_image::{artifacts, system, Arch};
use liftoff_qemu::vm;

fn main() {
    let boots = common::boots_arg();
    let arch = Arch::X86_64;
    let out = Command::new(workspace_root().join("scripts/build-kernel"))
        .arg(arch.name())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kernel = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let sys = common::system(arch);
    let work = vm::log_dir().join("bench_yardstick");
    std::fs::create_dir_all(&work).unwrap();
    let disk = system::guest_disk(&sys, &work.join("disk.img")).unwrap();

    let mut initramfs = Initramfs::new().unwrap();
    initramfs
        .host_file(
            "init",
            0o755,
            &artifacts::musl_binary(arch, "init").unwrap(),
        )
        .unwrap();
    let initrd = work.join("liftoff.cpio");
    std::fs::write(&initrd, initramfs.finish().unwrap()).unwrap();
    let liftoff_append = format!(
        "{} liftoff.handoff={}",
        disk.cmdline_slot_a(),
        common::PROBE
    );

    // The kernel-only boot: the table PID 1 would load, given to dm-init.
    let dm_create = kernel_table(&disk);
    let kernel_append = format!(
        "dm-mod.create=\"{dm_create}\" dm-mod.waitfor=/dev/vda3,/dev/vda4 root=/dev/dm-0 ro rootfstype=erofs init={}",
        common::PROBE
    );

    let mut rows = Vec::new();
    for i in 0..=boots {
        let l = common::boot_to_probe(
            arch,
            &kernel,
            Some(&initrd),
            &disk,
            &liftoff_append,
            &work.join(format!("liftoff-{i}.log")),
        );
        let k = common::boot_to_probe(
            arch,
            &kernel,
            None,
            &disk,
            &kernel_append,
            &work.join(format!("kernel-{i}.log")),
        );
        if i == 0 {
            continue; // warm-up: Liftoff's first boot makes the DATA key and file system
        }
        let at = |lines: &[String], needle: &str| {
            printk_of(lines, needle).unwrap_or_else(|| panic!("no {needle:?} on the console"))
        };
        rows.push((
            at(&l, "liftoff: timeline stage=root"),
            at(&l, "liftoff: timeline stage=handoff"),
            at(&k, "VFS: Mounted root"),
            at(&k, &format!("Run {} as init process", common::PROBE)),
        ));
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let lr = common::median(rows.iter().map(|r| r.0).collect());
    let lh = common::median(rows.iter().map(|r| r.1).collect());
    let kr = common::median(rows.iter().map(|r| r.2).collect());
    let kh = common::median(rows.iter().map(|r| r.3).collect());
    println!(
        "yardstick, {arch}, minimal kernel {}, {boots} boots each (medians)",
        kernel.display()
    );
    println!("                       liftoff    kernel-only (dm-mod.create)   ratio");
    println!(
        "kernel to root mounted {:>8.1} ms  {:>8.1} ms                    {:.2}x",
        ms(lr),
        ms(kr),
        lr as f64 / kr as f64
    );
    println!(
        "kernel to handoff      {:>8.1} ms  {:>8.1} ms                    {:.2}x",
        ms(lh),
        ms(kh),
        lh as f64 / kh as f64
    );
    println!("logs: {}", work.display());
}

/// The `dm-mod.create` value for slot A's verified root, from the HASH superblock (read
/// from the disk image at HASH-A's offset).
fn kernel_table(disk: &liftoff_image::disk::BuiltDisk) -> String {
    let (hash_off, _) = disk.extent(liftoff_image::disk::HASH_A);
    let sb = verity::read_superblock(&disk.path, hash_off).unwrap_or_else(|e| panic!("{e}"));
    let geometry = verity::Geometry::new(&sb.params, &verity::Layout::default()).unwrap();
    let root = verity::RootHash::from_hex(sb.params.algorithm, &disk.root_hash).unwrap();
    let table = verity::VerityTable::new(
        "/dev/vda3",
        "/dev/vda4",
        &sb.params,
        &geometry,
        &root,
        verity::TableOptions::default(),
    );
    table.dm_mod_create("root", None)
}
