//! The boot sequence (DESIGN.md section 1): each stage returns a typed error that goes to
//! the failure policy, and each completed stage is marked on the timeline.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use prairiedog::decide::{Action, DEFAULT_UNHEALTHY_LIMIT};

use crate::blockdev::{self, BootDisk};
use crate::cmdline::{self, Config, Handoff};
use crate::failure::{self, fail, Stage};
use crate::{kmsg, modules, mounts, root, slots, switch_root, timeline};

/// How long PID 1 waits for the boot disk without `liftoff.device_timeout`.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the disks are looked at again while waiting.
const DEVICE_POLL: Duration = Duration::from_millis(20);

/// Runs the boot from the first instruction of PID 1 to the handoff. Never returns.
pub fn run() -> ! {
    if rustix::process::getpid() != rustix::process::Pid::INIT {
        eprintln!("liftoff init: must run as PID 1 (the kernel starts it from the initramfs)");
        std::process::exit(2);
    }
    // Taken now, logged once /dev/kmsg is there.
    let started = timeline::boottime_us();
    let root = Path::new("/");

    if let Err(e) = mounts::run(&mut mounts::System, root, &mounts::api_filesystems()) {
        fail(Stage::ApiMounts, &e);
    }
    if let Err(e) = kmsg::open(root) {
        // Records keep going to the console.
        kmsg::warn(&format!("opening /dev/kmsg: {e}; logging to the console"));
    }
    let devkmsg = kmsg::DevkmsgGuard::enable(root);
    timeline::mark_at("pid1", started);
    timeline::mark("api-mounts");

    let text = match std::fs::read_to_string(root.join("proc/cmdline")) {
        Ok(t) => t,
        Err(e) => fail(Stage::Cmdline, &format!("reading /proc/cmdline: {e}")),
    };
    let cmdline = cmdline::parse(&text);
    kmsg::set_debug(cmdline.config.debug);
    for problem in &cmdline.problems {
        kmsg::error(&problem.to_string());
    }
    kmsg::debug(&format!("configuration: {:?}", cmdline.config));
    timeline::mark("cmdline");

    load_modules(root);
    timeline::mark("modules");

    let config = &cmdline.config;
    if config.roothash.is_none() {
        if let Handoff::Path(target) = &config.handoff {
            // A diagnostic boot: no verified root, the next stage comes from the initramfs.
            kmsg::warn(&format!(
                "no liftoff.roothash: no verified root; handing off to {target} inside the initramfs"
            ));
            timeline::mark("handoff");
            devkmsg.restore();
            exec(target);
        }
    }

    let boot_disk = find_disk(config);
    timeline::mark("disk");

    let slot = choose_slot(config, &boot_disk);
    timeline::mark("slots");

    let table = match slot_partitions(&boot_disk, slot).and_then(|(root_node, hash_node)| {
        root::verity_table(
            &root_node,
            &hash_node,
            config.roothash.as_deref(),
            config.salt.as_ref(),
            config.verity,
        )
        .map_err(|e| e.to_string())
    }) {
        Ok(t) => t,
        Err(e) => fail(Stage::Verity, &e),
    };
    let verified = match root::open_verity(&table, Path::new("/dev")) {
        Ok(node) => node,
        Err(e) => fail(Stage::Verity, &e),
    };
    kmsg::info(&format!(
        "verity: {} serves ROOT-{} checked against HASH-{} ({})",
        verified.display(),
        slot.as_str(),
        slot.as_str(),
        table.line()
    ));
    timeline::mark("verity");

    mount_sysroot(&verified);
    timeline::mark("root");

    let target = match &config.handoff {
        Handoff::Path(p) => p.clone(),
        Handoff::Systemd => "/sbin/init".to_owned(),
        Handoff::Containerd => fail(
            Stage::Handoff,
            &"liftoff.handoff=containerd is not supported by this build yet",
        ),
    };
    if let Err(e) = switch_root::switch_root(Path::new(root::SYSROOT)) {
        fail(Stage::SwitchRoot, &e);
    }
    timeline::mark("handoff");
    devkmsg.restore();
    exec(&target)
}

fn load_modules(root: &Path) {
    match modules::load_listed(&mut modules::Kernel, root) {
        Ok(done) => {
            for (name, outcome) in &done {
                match outcome {
                    modules::Outcome::NoDevice => {
                        kmsg::warn(&format!("module {name}: no device for it, skipped"))
                    }
                    other => kmsg::debug(&format!("module {name}: {other:?}")),
                }
            }
            kmsg::info(&format!("loaded {} modules", done.len()));
        }
        Err(e) => fail(Stage::Modules, &e),
    }
}

fn find_disk(config: &Config) -> BootDisk {
    let want = match config.boot_partuuid.as_deref().map(str::parse::<gpt::Guid>) {
        Some(Ok(g)) => Some(g),
        Some(Err(e)) => {
            kmsg::error(&format!("liftoff.boot_partuuid: {e}; looking for any Liftoff disk"));
            None
        }
        None => None,
    };
    let timeout = config
        .device_timeout_secs
        .map_or(DEFAULT_DEVICE_TIMEOUT, |s| Duration::from_secs(u64::from(s)));
    match blockdev::find_boot_disk(
        Path::new("/sys"),
        Path::new("/dev"),
        want,
        timeout,
        DEVICE_POLL,
        &mut blockdev::DeviceReader,
    ) {
        Ok(disk) => {
            kmsg::info(&format!(
                "boot disk {} ({}-byte sectors, {} partitions)",
                disk.node.display(),
                disk.disk.sector_size,
                disk.disk.partitions.len()
            ));
            if !disk.ignored_clones.is_empty() {
                kmsg::warn(&format!(
                    "{} carry the same Liftoff partitions as {} (cloned volumes?): ignored, only {} is used",
                    disk.ignored_clones.join(", "),
                    disk.disk.name,
                    disk.disk.name
                ));
            }
            disk
        }
        Err(e) => fail(Stage::Disk, &e),
    }
}

fn choose_slot(config: &Config, boot_disk: &BootDisk) -> prairiedog::Slot {
    let want = config
        .boot_partuuid
        .as_deref()
        .and_then(|g| g.parse::<gpt::Guid>().ok());
    match slots::run(boot_disk, config.slot, want, DEFAULT_UNHEALTHY_LIMIT) {
        Ok((outcome, booted)) => {
            slots::log(&outcome);
            let d = &outcome.boot.decision;
            if d.action == Action::Reboot {
                failure::reboot();
            }
            failure::set_note(&format!(
                "this boot is already counted against slot {}; next boot: slot {}",
                booted.as_str(),
                d.next.as_str()
            ));
            booted
        }
        Err(e) => fail(Stage::Slots, &e),
    }
}

/// The device nodes of ROOT-<slot> and HASH-<slot> on the boot disk.
fn slot_partitions(
    boot_disk: &BootDisk,
    slot: prairiedog::Slot,
) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let layout = prairiedog::disk::Layout::find(&boot_disk.gpt, &boot_disk.node)
        .map_err(|e| e.to_string())?;
    let set = layout.set(slot);
    let node = |number: u32, what: &str| {
        boot_disk
            .disk
            .partition_node(Path::new("/dev"), number)
            .ok_or_else(|| {
                format!(
                    "{what}-{} (partition {number} of {}) has no device node",
                    slot.as_str(),
                    boot_disk.node.display()
                )
            })
    };
    Ok((node(set.root, "ROOT")?, node(set.hash, "HASH")?))
}

fn mount_sysroot(verified: &Path) {
    let fs = match root::read_fs_type(verified) {
        Ok(fs) => fs,
        Err(e) => fail(Stage::Root, &e),
    };
    for (upper, work) in root::OVERLAID.map(root::overlay_dirs) {
        for dir in [upper, work] {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                fail(Stage::Root, &format!("creating {dir}: {e}"));
            }
        }
    }
    if let Err(e) = mounts::run(
        &mut mounts::System,
        Path::new("/"),
        &root::sysroot_plan(verified, fs),
    ) {
        fail(Stage::Root, &e);
    }
    kmsg::info(&format!(
        "root: {} ({}) mounted read-only at {}",
        verified.display(),
        fs.name(),
        root::SYSROOT
    ));
}

/// Replaces PID 1 with the next stage. The kernel passed the parameters meant for init as
/// our arguments and environment; the next stage gets them unchanged.
fn exec(target: &str) -> ! {
    let error = std::process::Command::new(target)
        .args(std::env::args_os().skip(1))
        .exec();
    fail(Stage::Handoff, &format!("executing {target}: {error}"))
}
