//! `liftoff-qemu`: build a Liftoff guest and boot it under QEMU with the console on the
//! terminal.

use std::process::ExitCode;
use std::time::Duration;

use liftoff_qemu::initramfs::{Initramfs, DEBIAN_QEMU_MODULES};
use liftoff_qemu::kernel::Kernel;
use liftoff_qemu::vm::{Vm, VmConfig};
use liftoff_qemu::{artifacts, console, Arch};

const USAGE: &str = "\
usage: liftoff-qemu boot [--arch x86_64|aarch64] [--append ARGS] [--timeout SECONDS]

Builds an initramfs with Liftoff's PID 1 (/init), the Debian cloud kernel's virtio and
device-mapper modules and the test probe as the next stage, boots it under QEMU (TCG),
streams the serial console here and prints the boot timeline when the guest powers off.
The console log is kept in target/vm-logs/boot-<arch>/console.log.

Exit status: 0 the guest reached the probe and powered off; 1 it did not; 2 usage or setup.";

struct Args {
    arch: Arch,
    append: String,
    timeout: Duration,
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
        timeout: Duration::from_secs(300),
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
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(parsed)
}

fn run(args: &Args) -> Result<bool, String> {
    let kernel = Kernel::debian(args.arch).map_err(|e| e.to_string())?;
    let mut initramfs = Initramfs::new().map_err(|e| e.to_string())?;
    for name in ["init", "probe"] {
        let path = artifacts::musl_binary(args.arch, name)?;
        initramfs
            .host_file(name, 0o755, &path)
            .map_err(|e| e.to_string())?;
    }
    initramfs
        .modules(&kernel, DEBIAN_QEMU_MODULES)
        .map_err(|e| e.to_string())?;
    let work = artifacts::log_dir().join(format!("boot-{}", args.arch));
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let initrd = work.join("initramfs.cpio");
    let bytes = initramfs.finish().map_err(|e| e.to_string())?;
    std::fs::write(&initrd, bytes).map_err(|e| format!("writing {}: {e}", initrd.display()))?;

    let mut config = VmConfig::new(args.arch, &kernel.image, &work.join("console.log"));
    config.initrd = Some(initrd);
    config.append = format!("liftoff.handoff=/probe {}", args.append);
    eprintln!(
        "liftoff-qemu: booting {} kernel {} under TCG (console log {})",
        args.arch,
        kernel.version,
        config.log.display()
    );
    let mut vm = Vm::start(&config).map_err(|e| e.to_string())?;
    while vm.elapsed() < args.timeout {
        match vm.next_line(Duration::from_millis(500)) {
            Some(line) => println!("{line}"),
            None if vm.has_exited() => break,
            None => {}
        }
    }
    if !vm.has_exited() {
        eprintln!(
            "liftoff-qemu: the guest did not power off within {:?}",
            args.timeout
        );
        return Ok(false);
    }
    let marks = console::timeline(vm.lines());
    println!("\nboot timeline ({}):", args.arch);
    print!("{}", console::format_timeline(&marks));
    let reached = vm.lines().iter().any(|l| l.contains("PROBE-JSON: "));
    println!(
        "{}",
        if reached {
            "the guest reached the next stage and powered off"
        } else {
            "the guest did NOT reach the next stage; see the log above"
        }
    );
    Ok(reached)
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
