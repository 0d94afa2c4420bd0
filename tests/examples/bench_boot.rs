//! Boot benchmark (issue 6): Liftoff's PID 1 against a busybox-shell initramfs doing
//! `insmod` + `veritysetup open` + `mount` + `switch_root` into the same next stage, on the
//! same Debian kernel, disk image and QEMU (x86_64 TCG), several boots each.
//!
//! usage: cargo run --release -p tests --example bench_boot [-- BOOTS]
//!
//! Both initramfs images load the same modules and hand off to the same probe in the same
//! verified root. Times come from the kernel's own printk timestamps of marker lines, so
//! both sides are measured with one clock:
//! - kernel-to-handoff: printk time of the handoff mark, split at the kernel's "Run /init"
//!   into the kernel's own part (initcalls and unpacking the initramfs, the same work on
//!   both sides) and the part after it; the last line says what kernel-to-handoff would be
//!   with a PID 1 that took no time at all;
//! - PID 1's own time: from the kernel's "Run /init" to the handoff, less module loading
//!   and the wait for the disk (which depend on the kernel, not on PID 1).
//!
//! Liftoff does more in that time (A/B state in the GPT, grubenv, DATA with dm-crypt and
//! its key on PRIVATE, tmpfs and overlays, the bounding set); the busybox script only
//! opens verity and mounts the root.

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

use std::path::{Path, PathBuf};
use std::process::Command;

use liftoff_image::cpio::Archive;
use liftoff_image::kernel::Kernel;
use liftoff_image::{system, Arch};
use liftoff_qemu::vm;

#[derive(Debug, Clone, Copy)]
struct Sample {
    kernel_to_handoff: u64,
    /// The kernel's own part: its start to "Run /init" (initcalls, unpacking the initramfs).
    kernel_to_init: u64,
    own: u64,
}

fn liftoff_sample(lines: &[String]) -> Sample {
    let handoff = printk_of(lines, "liftoff: timeline stage=handoff").expect("handoff mark");
    let marks: std::collections::BTreeMap<String, u64> =
        liftoff_qemu::console::timeline(lines).into_iter().collect();
    let at = |s: &str| *marks.get(s).unwrap_or_else(|| panic!("no {s} mark"));
    let run_init = printk_of(lines, "Run /init as init process").expect("Run /init");
    let modules = at("modules") - at("cmdline");
    let disk = at("disk") - at("modules");
    Sample {
        kernel_to_handoff: handoff,
        kernel_to_init: run_init,
        own: (handoff - run_init).saturating_sub(modules + disk),
    }
}

/// PID 1's peak resident set in KiB, from its `memory:` line at the handoff.
fn liftoff_peak_kib(lines: &[String]) -> u64 {
    lines
        .iter()
        .find_map(|l| l.split("liftoff: memory: peak resident set ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("PID 1's peak memory line")
}

fn busybox_sample(lines: &[String]) -> Sample {
    let at =
        |s: &str| printk_of(lines, &format!("bench: {s}")).unwrap_or_else(|| panic!("no {s} mark"));
    let run_init = printk_of(lines, "Run /init as init process").expect("Run /init");
    let modules = at("modules") - at("start");
    let disk = at("disk") - at("modules");
    Sample {
        kernel_to_handoff: at("handoff"),
        kernel_to_init: run_init,
        own: (at("handoff") - run_init).saturating_sub(modules + disk),
    }
}

/// The busybox initramfs: static busybox, the dynamically linked veritysetup with its
/// libraries, the same modules as Liftoff's, and a shell script as /init.
fn busybox_initramfs(arch: Arch, kernel: &Kernel, work: &Path) -> PathBuf {
    let mut a = Archive::new();
    for dir in [
        "bin", "dev", "proc", "sys", "run", "sysroot", "etc", "lib", "lib64", "usr", "usr/lib",
        "usr/sbin",
    ] {
        a.dir(dir, 0o755).unwrap();
    }
    a.char_dev("dev/console", 0o600, 5, 1).unwrap();
    a.file(
        "bin/busybox",
        0o755,
        &std::fs::read("/bin/busybox").expect("busybox-static"),
    )
    .unwrap();
    // veritysetup and every library ldd names, at their own paths.
    let veritysetup = "/usr/sbin/veritysetup";
    a.file(
        "usr/sbin/veritysetup",
        0o755,
        &std::fs::read(veritysetup).unwrap(),
    )
    .unwrap();
    let ldd = Command::new("ldd").arg(veritysetup).output().unwrap();
    let mut dirs = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_owned);
        let Some(path) = path else { continue };
        let rel = path.trim_start_matches('/');
        if let Some((parent, _)) = rel.rsplit_once('/') {
            let mut sofar = String::new();
            for part in parent.split('/') {
                if !sofar.is_empty() {
                    sofar.push('/');
                }
                sofar.push_str(part);
                if !["lib", "lib64", "usr", "usr/lib"].contains(&sofar.as_str())
                    && dirs.insert(sofar.clone())
                {
                    a.dir(&sofar, 0o755).unwrap();
                }
            }
        }
        a.file(rel, 0o755, &std::fs::read(&path).unwrap()).unwrap();
    }
    // The modules Liftoff's PID 1 loads on this virtio guest (it skips the drivers of
    // absent hardware; busybox's insmod cannot tell, so it gets only these).
    let mut modules: Vec<&str> = system::SYSTEM_MODULES
        .iter()
        .copied()
        .filter(|m| {
            ![
                "virtio_scsi",
                "sd_mod",
                "xen-blkfront",
                "virtio_net",
                "ena",
                "efi-pstore",
            ]
            .contains(m)
        })
        .collect();
    modules.extend(system::arch_modules(arch));
    let closure = kernel.module_closure(&modules).unwrap();
    let mut order = String::new();
    for (i, rel) in closure.iter().enumerate() {
        let name = format!("lib/m{i:02}.ko");
        a.file(
            &name,
            0o644,
            &std::fs::read(kernel.modules_dir.join(rel)).unwrap(),
        )
        .unwrap();
        order.push_str(&format!("/{name}\n"));
    }
    a.file("etc/modules", 0o644, order.as_bytes()).unwrap();
    let script = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "bench: start" > /dev/kmsg
for m in $(cat /etc/modules); do insmod "$m" 2>/dev/null; done
echo "bench: modules" > /dev/kmsg
while [ ! -e /dev/vda4 ]; do usleep 1000; done
echo "bench: disk" > /dev/kmsg
for arg in $(cat /proc/cmdline); do
  case "$arg" in liftoff.roothash=*) hash="${arg#*=}";; esac
done
DM_DISABLE_UDEV=1 veritysetup open /dev/vda3 root /dev/vda4 "$hash" || echo "bench: veritysetup failed" > /dev/kmsg
mount -t erofs -o ro /dev/mapper/root /sysroot
mount --move /dev /sysroot/dev
mount --move /proc /sysroot/proc
mount --move /sys /sysroot/sys
echo "bench: handoff" > /sysroot/dev/kmsg
exec switch_root /sysroot /usr/local/bin/liftoff-probe
"#;
    a.file("init", 0o755, script.as_bytes()).unwrap();
    let path = work.join("busybox.cpio");
    std::fs::write(&path, a.finish().unwrap()).unwrap();
    path
}

fn main() {
    let boots = common::boots_arg();
    let arch = Arch::X86_64;
    let kernel = Kernel::debian(arch).unwrap_or_else(|e| panic!("{e}"));
    let sys = common::system(arch);
    let work = vm::log_dir().join("bench_boot");
    std::fs::create_dir_all(&work).unwrap();
    let disk = system::guest_disk(&sys, &work.join("disk.img")).unwrap();
    let liftoff_initrd = work.join("liftoff.cpio");
    std::fs::write(&liftoff_initrd, system::initramfs(arch, &kernel).unwrap()).unwrap();
    let busybox_initrd = busybox_initramfs(arch, &kernel, &work);
    let append = format!(
        "{} liftoff.handoff={}",
        disk.cmdline_slot_a(),
        common::PROBE
    );

    let mut liftoff = Vec::new();
    let mut busybox = Vec::new();
    let mut peaks = Vec::new();
    // One warm-up boot each (Liftoff's first boot makes the DATA key and file system),
    // then interleaved boots so both see the same machine load.
    for i in 0..=boots {
        let l = common::boot_to_probe(
            arch,
            &kernel.image,
            Some(&liftoff_initrd),
            &disk,
            &append,
            &work.join(format!("liftoff-{i}.log")),
        );
        let b = common::boot_to_probe(
            arch,
            &kernel.image,
            Some(&busybox_initrd),
            &disk,
            &append,
            &work.join(format!("busybox-{i}.log")),
        );
        assert!(
            !b.iter().any(|l| l.contains("bench: veritysetup failed")),
            "veritysetup failed; see {}",
            work.display()
        );
        if i > 0 {
            liftoff.push(liftoff_sample(&l));
            peaks.push(liftoff_peak_kib(&l));
            busybox.push(busybox_sample(&b));
        }
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let lk = common::median(liftoff.iter().map(|s| s.kernel_to_handoff).collect());
    let bk = common::median(busybox.iter().map(|s| s.kernel_to_handoff).collect());
    let li = common::median(liftoff.iter().map(|s| s.kernel_to_init).collect());
    let bi = common::median(busybox.iter().map(|s| s.kernel_to_init).collect());
    let after = |v: &[Sample]| {
        common::median(
            v.iter()
                .map(|s| s.kernel_to_handoff - s.kernel_to_init)
                .collect(),
        )
    };
    let (la, ba) = (after(&liftoff), after(&busybox));
    let lo = common::median(liftoff.iter().map(|s| s.own).collect());
    let bo = common::median(busybox.iter().map(|s| s.own).collect());
    println!(
        "boot benchmark, {arch}, Debian kernel {}, {boots} boots each (medians)",
        kernel.version
    );
    println!("                          liftoff    busybox+veritysetup   ratio");
    println!(
        "kernel to handoff   {:>10.1} ms  {:>10.1} ms          {:.2}x",
        ms(lk),
        ms(bk),
        lk as f64 / bk as f64
    );
    println!(
        "  kernel to /init   {:>10.1} ms  {:>10.1} ms          {:.2}x",
        ms(li),
        ms(bi),
        li as f64 / bi as f64
    );
    println!(
        "  /init to handoff  {:>10.1} ms  {:>10.1} ms          {:.2}x",
        ms(la),
        ms(ba),
        la as f64 / ba as f64
    );
    println!(
        "PID 1's own time    {:>10.1} ms  {:>10.1} ms          {:.2}x",
        ms(lo),
        ms(bo),
        lo as f64 / bo as f64
    );
    println!(
        "PID 1's own time is {:.1}% of Liftoff's kernel-to-handoff",
        100.0 * lo as f64 / lk as f64
    );
    // The kernel's part is the same work on both sides but for unpacking a smaller
    // initramfs: what kernel-to-handoff could be with a PID 1 that took no time at all.
    println!(
        "a PID 1 taking no time would give kernel-to-handoff {:.2}x (the kernel's own part)",
        li as f64 / bk as f64
    );
    println!(
        "PID 1's peak resident set at the handoff: {} KiB (goal: at most 4096)",
        common::median(peaks)
    );
    println!("logs: {}", work.display());
}
