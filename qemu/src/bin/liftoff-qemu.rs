//! `liftoff-qemu`: build a Liftoff container-host disk image and boot it under QEMU through
//! the firmware and GRUB, with the console on the terminal.

use std::process::ExitCode;
use std::time::Duration;

use liftoff_qemu::firmware::{self, Install, Slot};
use liftoff_qemu::image::{DiskSpec, RootFsType};
use liftoff_qemu::kernel::Kernel;
use liftoff_qemu::system::{self, SystemSpec};
use liftoff_qemu::vm::{Disk, Vm};
use liftoff_qemu::{artifacts, console, Arch};

const USAGE: &str = "\
usage: liftoff-qemu boot [--arch x86_64|aarch64] [--append ARGS] [--timeout SECONDS] [--stay]

Builds the container-host disk of DESIGN.md section 3 from the Debian root tree of
scripts/build-rootfs (systemd, containerd, runc): ESP with stock GRUB and grubenv, BOOT-A
with the Debian cloud kernel and Liftoff's initramfs, ROOT-A in erofs with its dm-verity
tree, an empty slot B, PRIVATE and DATA. Boots it under QEMU (TCG) through OVMF (x86_64)
or AAVMF (aarch64) with liftoff.handoff=containerd, streams the serial console here and
prints the boot timeline once containerd answers and the slot is marked successful.
--stay keeps the machine running afterwards (stop it with Ctrl-C). The console log is kept
in target/vm-logs/boot-<arch>/console.log, the disk next to it.

Exit status: 0 the host reached health; 1 it did not within the timeout; 2 usage or setup.";

/// The line PID 1 logs when containerd answers and the slot is marked successful.
const HEALTHY: &str = "answers: slot A marked successful";

struct Args {
    arch: Arch,
    append: String,
    timeout: Duration,
    stay: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("boot") => {}
        Some("-h") | Some("--help") => return Err(String::new()),
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("missing command".into()),
    }
    let mut parsed = Args {
        arch: Arch::host().unwrap_or(Arch::X86_64),
        append: String::new(),
        timeout: Duration::from_secs(600),
        stay: false,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--arch" => parsed.arch = value("--arch")?.parse()?,
            "--append" => parsed.append = value("--append")?,
            "--timeout" => {
                let v = value("--timeout")?;
                parsed.timeout = Duration::from_secs(
                    v.parse()
                        .map_err(|_| format!("--timeout {v:?} is not a number of seconds"))?,
                );
            }
            "--stay" => parsed.stay = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(parsed)
}

fn run(args: &Args) -> Result<bool, String> {
    let arch = args.arch;
    let kernel = Kernel::debian(arch).map_err(|e| e.to_string())?;
    eprintln!("liftoff-qemu: building the {arch} disk image (the first time takes a while)");
    let sys = system::build(&SystemSpec {
        arch,
        fs: RootFsType::Erofs,
        files: Vec::new(),
        links: Vec::new(),
        disk: DiskSpec {
            seed: "liftoff-qemu".into(),
            data_mib: 256,
            ..DiskSpec::default()
        },
    })
    .map_err(|e| e.to_string())?;
    let work = artifacts::log_dir().join(format!("boot-{arch}"));
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let disk = system::guest_disk(&sys, &work.join("disk.img")).map_err(|e| e.to_string())?;
    let install = Install {
        arch,
        grubenv: Some(
            firmware::grubenv(Some(Slot::A), Some(false), &work).map_err(|e| e.to_string())?,
        ),
        kernel: kernel.image.clone(),
        initramfs: system::initramfs(arch, &kernel)?,
        slots: vec![Slot::A],
        extra_cmdline: format!("liftoff.handoff=containerd {}", args.append)
            .trim()
            .to_owned(),
    };
    firmware::install(&disk, &install, &work.join("fat")).map_err(|e| e.to_string())?;

    let vars = work.join("vars.fd");
    firmware::fresh_vars(arch, &vars).map_err(|e| e.to_string())?;
    let mut config = firmware::vm_config(arch, &vars, &work.join("console.log"));
    config.disks.push(Disk {
        path: disk.path.clone(),
        read_only: false,
        serial: Some("liftoff-boot".into()),
    });
    eprintln!(
        "liftoff-qemu: booting {} through the firmware and GRUB under TCG (console log {})",
        disk.path.display(),
        config.log.display()
    );
    let mut vm = Vm::start(&config).map_err(|e| e.to_string())?;
    let mut healthy = false;
    while vm.elapsed() < args.timeout || (healthy && args.stay) {
        match vm.next_line(Duration::from_millis(500)) {
            Some(line) => {
                println!("{line}");
                if !healthy && line.contains(HEALTHY) {
                    healthy = true;
                    let marks = console::timeline(vm.lines());
                    println!("\nboot timeline ({arch}, from the kernel's start):");
                    print!("{}", console::format_timeline(&marks));
                    println!(
                        "the container host is up: containerd answers and slot A is marked \
                         successful ({:.1} s after QEMU started)",
                        vm.elapsed().as_secs_f64()
                    );
                    if !args.stay {
                        return Ok(true);
                    }
                }
            }
            None if vm.has_exited() => break,
            None => {}
        }
    }
    if !healthy {
        eprintln!(
            "liftoff-qemu: the host did not reach health within {:?}; see {}",
            args.timeout,
            vm.log_path().display()
        );
    }
    Ok(healthy)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("liftoff-qemu: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("liftoff-qemu: {e}");
            ExitCode::from(2)
        }
    }
}
