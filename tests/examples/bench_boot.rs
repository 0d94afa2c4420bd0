//! Boot benchmark (issue 6): Liftoff's PID 1 against a busybox-shell initramfs doing
//! `insmod` + `veritysetup open` + `mount` + `switch_root` into the same next stage, on the
//! same Debian kernel, disk image and QEMU (x86_64 TCG), several boots each.
//!
//! usage: cargo run --release -p tests --example bench_boot [-- BOOTS]
//!        BENCH_SMP=2 cargo run ... (both sides with two virtual CPUs; default one)
//!        BENCH_APPEND="liftoff.debug" cargo run ... (more kernel arguments, both sides:
//!        `liftoff.debug` gives each module load and DATA step a line of its own, at a
//!        cost; the figures of such a run are for finding time, not for the ratios)
//!        BENCH_DISK_GIB=20 cargo run ... (the disk grown to 20 GiB before the first boot,
//!        as a cloud volume larger than the image is: Liftoff grows DATA to fill it, and
//!        the first boot's file system is one of that size, with its journal)
//!
//! Boots, each side in turn: the first boot of a fresh disk (Liftoff makes DATA's key,
//! LUKS2 header, recovery key and file system), a second boot in which nobody has
//! confirmed saving the recovery key yet (Liftoff replaces it), then, after the host
//! confirms it as `prairiedog data recovery-key-saved` would (the LUKS2 token that marks
//! it unsaved is removed from the disk image), BOOTS steady-state boots, each after the
//! host marked slot A successful as `prairiedog mark-successful-boot` would after a
//! healthy boot: every boot after the first is on a host whose operator kept the key and
//! whose slot is healthy. The medians are of the
//! steady-state boots; the first two are shown on their own.
//!
//! Both initramfs images load the same modules and hand off to the same probe in the same
//! verified root. Times come from the kernel's own printk timestamps of marker lines, so
//! both sides are measured with one clock:
//! - kernel-to-handoff: printk time of the handoff mark, split at the kernel's "Run /init"
//!   into the kernel's own part (initcalls and unpacking the initramfs, the same work on
//!   both sides) and the part after it; the last line says what kernel-to-handoff would be
//!   with a PID 1 that took no time at all;
//! - PID 1's own time: from the kernel's "Run /init" to the handoff, less module loading
//!   (the modules stage, PID 1's own `verity` modules and its waits for its module child)
//!   and the wait for the disk
//!   (which depend on the kernel, not on PID 1);
//! - the stages: from one mark's line to the next, the first from "Run /init"
//!   (`timeline_marks` says how the `pid1` mark, logged late, is placed).
//!
//! Liftoff does more in that time (A/B state in the GPT, grubenv, DATA with dm-crypt and
//! its key on PRIVATE, tmpfs and overlays, the bounding set); the busybox script only
//! opens verity and mounts the root.
//!
//! A third side, the floor (`bench_boot_floor.c`, built with the host's `cc`, no C library),
//! asks the kernel for the work of Liftoff's root path (the API mounts, both GPT copies
//! written and synced, the verity table Liftoff loaded, the root, /etc's overlay, the
//! moves) with the least code there can be, and none of the rest: its own time is what
//! the kernel alone takes for that work under this QEMU, the part of PID 1's own time no
//! PID 1 can take away. It boots after the other two, on the same disk.

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

/// The floor's /init ([`floor_initramfs`]).
const FLOOR_SOURCE: &str = include_str!("bench_boot_floor.c");

#[derive(Debug, Clone, Copy)]
struct Sample {
    kernel_to_handoff: u64,
    /// The kernel's own part: its start to "Run /init" (initcalls, unpacking the initramfs).
    kernel_to_init: u64,
    own: u64,
}

/// The timeline marks of `who` (`liftoff`, or the floor's `floor`) on the printk clock,
/// the one the kernel's "Run /init" line and the busybox side's marks are on. The marks
/// carry CLOCK_BOOTTIME, which runs 20-40 ms apart from printk's clock in these guests
/// (the kernel finds its sched_clock unstable under TCG), so a stage measured from
/// "Run /init" must not mix the two. Each mark's line is written as the mark is taken, so
/// its printk time is the mark's; `pid1`, taken at the first instruction and written once
/// /dev/kmsg is there, is placed by its CLOCK_BOOTTIME distance to the next mark.
fn timeline_marks(lines: &[String], who: &str) -> Vec<(String, u64)> {
    let prefix = format!("{who}: timeline stage=");
    let boottime = liftoff_qemu::console::timeline_of(lines, who);
    let printk: Vec<u64> = boottime
        .iter()
        .map(|(stage, _)| {
            printk_of(lines, &format!("{prefix}{stage} "))
                .unwrap_or_else(|| panic!("no printk time for {who}'s {stage} mark"))
        })
        .collect();
    boottime
        .iter()
        .enumerate()
        .map(|(i, (stage, t))| {
            let at = if stage == "pid1" {
                let (_, next) = &boottime[i + 1];
                printk[i + 1] - (next - t)
            } else {
                printk[i]
            };
            (stage.clone(), at)
        })
        .collect()
}

/// The busybox script's `bench:` marks, on the printk clock.
fn busybox_marks(lines: &[String]) -> Vec<(String, u64)> {
    ["start", "modules", "disk", "verity", "root", "handoff"]
        .iter()
        .map(|s| {
            let t =
                printk_of(lines, &format!("bench: {s}")).unwrap_or_else(|| panic!("no {s} mark"));
            (s.to_string(), t)
        })
        .collect()
}

/// The time each stage took, from `marks` (the first from the kernel's "Run /init").
fn stages(lines: &[String], marks: Vec<(String, u64)>) -> Vec<(String, u64)> {
    let run_init = printk_of(lines, "Run /init as init process").expect("Run /init");
    let mut previous = run_init;
    let mut out = Vec::new();
    for (stage, t) in marks {
        out.push((stage, t.saturating_sub(previous)));
        previous = t;
    }
    out
}

/// Medians of each stage over some boots, in the order the first boot has them.
fn stage_medians(boots: &[Vec<(String, u64)>]) -> Vec<(String, u64)> {
    let Some(first) = boots.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|(stage, _)| {
            let v: Vec<u64> = boots
                .iter()
                .filter_map(|b| b.iter().find(|(s, _)| s == stage).map(|(_, t)| *t))
                .collect();
            (stage.clone(), common::median(v))
        })
        .collect()
}

/// Marks slot A successful with no tries left and no unhealthy boots, its priority kept
/// (DESIGN.md section 4), as `prairiedog mark-successful-boot` does once the next stage is
/// healthy: the probe is no health check, so without this every boot would count as one
/// more unhealthy boot of a slot in a crash loop. (Each boot still counts itself until
/// health: PID 1 writes the GPT on every boot.)
fn mark_slot_a_successful(disk: &liftoff_image::disk::BuiltDisk) {
    const BOOT_A: u32 = 2;
    let priority = common::attributes(&disk.path, BOOT_A) >> 48 & 0xf;
    common::set_attributes(&disk.path, BOOT_A, common::word(priority, 0, true, 0));
}

fn liftoff_sample(lines: &[String]) -> Sample {
    let marks: std::collections::BTreeMap<String, u64> =
        timeline_marks(lines, "liftoff").into_iter().collect();
    let at = |s: &str| *marks.get(s).unwrap_or_else(|| panic!("no {s} mark"));
    let handoff = at("handoff");
    let run_init = printk_of(lines, "Run /init as init process").expect("Run /init");
    let modules = at("modules") - at("cmdline");
    let disk = at("disk") - at("modules");
    Sample {
        kernel_to_handoff: handoff,
        kernel_to_init: run_init,
        own: (handoff - run_init).saturating_sub(modules + disk + module_waits_us(lines)),
    }
}

/// How long PID 1 loaded modules after the modules stage, in microseconds: its `verity`
/// modules (`loaded N modules for verity in M ms`) and its waits for its module child (the
/// `data` phase: `<what> modules: waited M ms for them`). Module loading, like the modules
/// stage. With one vCPU the child's work also slows the stages it runs beside; that stays
/// in PID 1's own time.
fn module_waits_us(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| {
            let (_, rest) = l
                .split_once(" modules: waited ")
                .or_else(|| l.split_once(" modules for verity in "))?;
            rest.split_once(" ms")?.0.parse::<u64>().ok()
        })
        .sum::<u64>()
        * 1000
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

/// A sample of the busybox side or the floor from its `marks` (printk clock): its modules
/// stage runs from the `modules_from` mark to `modules`, its disk wait from there to
/// `disk`.
fn sample(lines: &[String], marks: Vec<(String, u64)>, modules_from: &str) -> Sample {
    let marks: std::collections::BTreeMap<String, u64> = marks.into_iter().collect();
    let at = |s: &str| *marks.get(s).unwrap_or_else(|| panic!("no {s} mark"));
    let run_init = printk_of(lines, "Run /init as init process").expect("Run /init");
    let modules = at("modules") - at(modules_from);
    let disk = at("disk") - at("modules");
    Sample {
        kernel_to_handoff: at("handoff"),
        kernel_to_init: run_init,
        own: (at("handoff") - run_init).saturating_sub(modules + disk),
    }
}

/// The modules Liftoff's PID 1 loads on this virtio guest, with their dependencies, as
/// `lib/mNN.ko`, and `etc/modules` naming them in the order to load them (busybox's
/// insmod cannot tell absent hardware, so both other sides get only these).
fn add_modules(a: &mut Archive, arch: Arch, kernel: &Kernel) {
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
}

/// The floor's initramfs ([`FLOOR_SOURCE`]): its /init built with the host's C compiler
/// (static, no C library), the modules, the verity table Liftoff loaded (`table`, from its
/// log) and the boot disk.
fn floor_initramfs(arch: Arch, kernel: &Kernel, work: &Path, table: &str) -> PathBuf {
    let source = work.join("floor.c");
    let init = work.join("floor");
    std::fs::write(&source, FLOOR_SOURCE).unwrap();
    // The floor is x86_64 code, as the guest: another host needs the cross compiler.
    let compiler = if cfg!(target_arch = "x86_64") {
        "cc"
    } else {
        "x86_64-linux-gnu-gcc"
    };
    let cc = Command::new(compiler)
        .args([
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-pie",
            "-no-pie",
            "-O2",
            // Its own memset and memcpy must not become calls to themselves.
            "-fno-tree-loop-distribute-patterns",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
        ])
        .arg(&init)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler} (the floor's /init is C): {e}"));
    assert!(
        cc.status.success(),
        "{compiler} {}: {}",
        source.display(),
        String::from_utf8_lossy(&cc.stderr)
    );
    let mut a = Archive::new();
    for dir in ["dev", "proc", "sys", "run", "sysroot", "etc", "lib"] {
        a.dir(dir, 0o755).unwrap();
    }
    a.char_dev("dev/console", 0o600, 5, 1).unwrap();
    a.file("init", 0o755, &std::fs::read(&init).unwrap())
        .unwrap();
    add_modules(&mut a, arch, kernel);
    a.file("etc/table", 0o644, format!("{table}\n").as_bytes())
        .unwrap();
    a.file("etc/disk", 0o644, b"/dev/vda\n").unwrap();
    let path = work.join("floor.cpio");
    std::fs::write(&path, a.finish().unwrap()).unwrap();
    path
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
    add_modules(&mut a, arch, kernel);
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
echo "bench: verity" > /dev/kmsg
mount -t erofs -o ro /dev/mapper/root /sysroot
echo "bench: root" > /dev/kmsg
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
    if let Ok(gib) = std::env::var("BENCH_DISK_GIB") {
        let gib: u64 = gib.parse().expect("BENCH_DISK_GIB: a size in GiB");
        let image = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk.path)
            .unwrap();
        assert!(
            gib << 30 > image.metadata().unwrap().len(),
            "BENCH_DISK_GIB={gib}: not larger than the image"
        );
        // Sparse: only what the boots write takes room on the host.
        image.set_len(gib << 30).unwrap();
    }
    let liftoff_initrd = work.join("liftoff.cpio");
    std::fs::write(&liftoff_initrd, system::initramfs(arch, &kernel).unwrap()).unwrap();
    let busybox_initrd = busybox_initramfs(arch, &kernel, &work);
    let append = format!(
        "{} liftoff.handoff={} {}",
        disk.cmdline_slot_a(),
        common::PROBE,
        std::env::var("BENCH_APPEND").unwrap_or_default()
    );
    let append = append.trim_end();

    let cpus: u32 = std::env::var("BENCH_SMP")
        .ok()
        .map(|v| v.parse().expect("BENCH_SMP: a number of CPUs"))
        .unwrap_or(1);
    let mut liftoff = Vec::new();
    let mut busybox = Vec::new();
    let mut floor = Vec::new();
    let mut floor_stages = Vec::new();
    let mut floor_initrd = None;
    let mut liftoff_stages = Vec::new();
    let mut busybox_stages = Vec::new();
    let mut early = Vec::new();
    let mut peaks = Vec::new();
    // The first boot (Liftoff makes the DATA key and file system) and an unconfirmed
    // second boot, then the steady-state boots; interleaved so both sides see the same
    // machine load.
    for i in 0..boots + 2 {
        if i == 2 {
            common::confirm_recovery_key(&disk);
        }
        if i >= 2 {
            mark_slot_a_successful(&disk);
        }
        let l = common::boot_to_probe_smp(
            arch,
            &kernel.image,
            Some(&liftoff_initrd),
            &disk,
            append,
            &work.join(format!("liftoff-{i}.log")),
            cpus,
        );
        let b = common::boot_to_probe_smp(
            arch,
            &kernel.image,
            Some(&busybox_initrd),
            &disk,
            append,
            &work.join(format!("busybox-{i}.log")),
            cpus,
        );
        assert!(
            !b.iter().any(|l| l.contains("bench: veritysetup failed")),
            "veritysetup failed; see {}",
            work.display()
        );
        // The floor loads the table Liftoff's first boot did.
        let floor_initrd = floor_initrd.get_or_insert_with(|| {
            let table = l
                .iter()
                .find_map(|l| {
                    l.split_once("liftoff: verity: ")?
                        .1
                        .rsplit_once(" (")?
                        .1
                        .strip_suffix(')')
                })
                .expect("Liftoff's verity table in its log");
            floor_initramfs(arch, &kernel, &work, table)
        });
        let f = common::boot_to_probe_smp(
            arch,
            &kernel.image,
            Some(floor_initrd),
            &disk,
            append,
            &work.join(format!("floor-{i}.log")),
            cpus,
        );
        if let Some(failure) = f.iter().find(|l| l.contains("floor: failed")) {
            panic!("{failure}; see {}", work.display());
        }
        if i < 2 {
            early.push((
                liftoff_sample(&l),
                stages(&l, timeline_marks(&l, "liftoff")),
            ));
        } else {
            liftoff.push(liftoff_sample(&l));
            liftoff_stages.push(stages(&l, timeline_marks(&l, "liftoff")));
            peaks.push(liftoff_peak_kib(&l));
            let marks = busybox_marks(&b);
            busybox.push(sample(&b, marks.clone(), "start"));
            busybox_stages.push(stages(&b, marks));
            let marks = timeline_marks(&f, "floor");
            floor.push(sample(&f, marks.clone(), "api-mounts"));
            floor_stages.push(stages(&f, marks));
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
    let fo = common::median(floor.iter().map(|s| s.own).collect());
    let fa = after(&floor);
    println!(
        "boot benchmark, {arch}, Debian kernel {}, {cpus} vCPU, {boots} steady-state boots each (medians)",
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
        "the floor (the root path's kernel work, least code): /init to handoff {:.1} ms, own time {:.1} ms",
        ms(fa),
        ms(fo)
    );
    println!(
        "PID 1's own time above the floor: {:.1} ms ({:.2}x the floor's)",
        ms(lo.saturating_sub(fo)),
        lo as f64 / fo as f64
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
    let table = |name: &str, rows: &[(String, u64)]| {
        println!("{name} stages (ms, medians; the first from the kernel's \"Run /init\"):");
        let mut line = String::from("  ");
        for (stage, t) in rows {
            line.push_str(&format!("{stage} {:.0}  ", ms(*t)));
        }
        println!("{}", line.trim_end());
    };
    table("liftoff", &stage_medians(&liftoff_stages));
    table("busybox", &stage_medians(&busybox_stages));
    table("floor", &stage_medians(&floor_stages));
    for ((sample, stages), what) in early.iter().zip([
        "first boot (new DATA key, LUKS2 header, recovery key, file system)",
        "second boot, recovery key not confirmed (a new one replaces it)",
    ]) {
        println!(
            "liftoff {what}: /init to handoff {:.1} ms, own time {:.1} ms",
            ms(sample.kernel_to_handoff - sample.kernel_to_init),
            ms(sample.own)
        );
        table("  its", stages);
    }
    println!("logs: {}", work.display());
}
