//! The boot sequence (DESIGN.md section 1): each stage returns a typed error that goes to
//! the failure policy, and each completed stage is marked on the timeline.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prairiedog::decide::{Action, DEFAULT_UNHEALTHY_LIMIT};

use crate::infra::failure::{self, fail, Stage};
use crate::infra::watchdog::Watchdog;
use crate::infra::{kmsg, timeline};
use crate::stage::disk::{self, BootDisk};
use crate::stage::{caps, data, modules, mounts, root, slots, switch_root};
use crate::supervise;
use prairiedog::cmdline::{self, Config, DataMode, Handoff};

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
    let autoload = modules::AutoloadGuard::disable(root);
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
    if kmsg::debug_enabled() {
        kmsg::debug(&format!("configuration: {:?}", cmdline.config));
    }
    timeline::mark("cmdline");

    load_modules(root);
    timeline::mark("modules");
    let watchdog = arm_watchdog(&cmdline.config);

    let config = &cmdline.config;
    if config.roothash.is_none() {
        if let Handoff::Path(target) = &config.handoff {
            // A diagnostic boot: no verified root, the next stage comes from the initramfs.
            kmsg::warn(&format!(
                "no liftoff.roothash: no verified root; handing off to {target} inside the initramfs"
            ));
            restore_autoload(autoload);
            timeline::mark("handoff");
            devkmsg.restore();
            exec(target);
        }
    }

    let mut boot_disk = find_disk(config);
    timeline::mark("disk");

    let (slot, repaired) = choose_slot(config, &boot_disk);
    if repaired {
        announce_partitions(&mut boot_disk);
    }
    timeline::mark("slots");

    // Where the slot sets, PRIVATE and DATA are: read once from the (possibly repaired) table.
    let layout = match prairiedog::disk::Layout::find(&boot_disk.gpt, &boot_disk.node) {
        Ok(l) => l,
        Err(e) => fail(Stage::Verity, &e),
    };
    let (verified, table) =
        match slot_partitions(&boot_disk, &layout, slot).and_then(|(root_node, hash_node)| {
            let expected =
                root::expected(&hash_node, config.roothash.as_ref(), config.salt.as_ref())
                    .map_err(|e| e.to_string())?;
            root::open_verity(
                &root_node,
                &hash_node,
                &expected,
                config.verity,
                Path::new("/dev"),
            )
            .map_err(|e| e.to_string())
        }) {
            Ok(v) => v,
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

    let data_node = layout
        .data
        .and_then(|n| boot_disk.disk.partition_node(Path::new("/dev"), n));
    let private_node = layout
        .private
        .and_then(|n| boot_disk.disk.partition_node(Path::new("/dev"), n));
    if data_node.is_none() {
        kmsg::warn(&format!(
            "{} has no DATA partition: /var is kept in memory only",
            boot_disk.node.display()
        ));
    }
    mount_sysroot(&verified, data_node.is_none());
    timeline::mark("root");

    if let Err(e) = switch_root::switch_root(Path::new(root::SYSROOT)) {
        fail(Stage::SwitchRoot, &e);
    }
    timeline::mark("switch-root");

    let mut unmount = Vec::new();
    if let Some(data_node) = &data_node {
        let mode = config.data.unwrap_or(DataMode::Keyfile);
        match data::setup(&boot_disk.node, data_node, private_node.as_deref(), mode) {
            Ok(outcome) => {
                data::log(&outcome, mode);
                // The supervisor unmounts in reverse of this (mount) order.
                unmount = outcome.mounts.iter().rev().map(PathBuf::from).collect();
            }
            Err(e) => fail(Stage::Data, &e),
        }
        timeline::mark("data");
    }

    match caps::drop_listed(Path::new("/")) {
        Ok(dropped) if !dropped.is_empty() => {
            kmsg::info(&format!(
                "bounding set: dropped {} for everything after PID 1",
                dropped.join(", ")
            ));
            timeline::mark("caps");
        }
        Ok(_) => {}
        Err(e) => fail(Stage::Caps, &e),
    }

    let target = match &config.handoff {
        Handoff::Path(p) => p.clone(),
        Handoff::Systemd => "/sbin/init".to_owned(),
        Handoff::Containerd => {
            restore_autoload(autoload);
            timeline::log_peak_memory();
            timeline::mark("handoff");
            // PID 1 stays the host's supervisor and keeps logging (restarts, shutdown), so
            // the kernel's rate limit stays off for its lines: with it back on, the last
            // lines of a shutdown were dropped.
            drop(devkmsg);
            supervise_containerd(&boot_disk, slot, watchdog, unmount)
        }
    };
    if let Some(dog) = watchdog {
        // Stays armed: the next stage (systemd's RuntimeWatchdogSec=) takes it over, and
        // a next stage that never gets that far is reset.
        kmsg::info(&format!(
            "watchdog {} stays armed ({} s) for {target}",
            dog.path().display(),
            dog.timeout()
        ));
        dog.hand_over();
    }
    restore_autoload(autoload);
    timeline::log_peak_memory();
    timeline::mark("handoff");
    devkmsg.restore();
    exec(&target)
}

/// Module auto-loading comes back for the next stage; if it cannot, the host still runs,
/// and the line says why a later module request fails.
fn restore_autoload(autoload: modules::AutoloadGuard) {
    let helper = autoload.previous().map(str::to_owned);
    if let (Err(e), Some(helper)) = (autoload.restore(), helper) {
        kmsg::warn(&format!(
            "restoring /proc/sys/kernel/modprobe to {helper}: {e}; module auto-loading stays off"
        ));
    }
}

/// Arms the boot watchdog `liftoff.watchdog` asks for. A machine without a watchdog device
/// still boots: the error is logged.
fn arm_watchdog(config: &Config) -> Option<Watchdog> {
    let seconds = config.watchdog_secs?;
    match Watchdog::arm(Path::new("/dev"), seconds) {
        Ok(dog) => {
            kmsg::info(&format!(
                "watchdog {} armed: {seconds} s to reach health",
                dog.path().display()
            ));
            Some(dog)
        }
        Err(e) => {
            kmsg::error(&format!(
                "liftoff.watchdog={seconds}: {e}; booting without a watchdog"
            ));
            None
        }
    }
}

/// Stays PID 1 and supervises containerd from the verified root; marks the slot
/// successful when containerd first answers. Never returns.
fn supervise_containerd(
    boot_disk: &BootDisk,
    slot: prairiedog::Slot,
    watchdog: Option<Watchdog>,
    unmount: Vec<PathBuf>,
) -> ! {
    let config = supervise::Config {
        program: supervise::Program::containerd(),
        policy: supervise::Policy::default(),
        unmount,
    };
    let node = boot_disk.node.clone();
    let sector_size = boot_disk.disk.sector_size;
    let mut marked = false;
    let mut on_health = |version: &str| {
        if marked {
            return;
        }
        match mark_successful(&node, sector_size, slot) {
            Ok(wrote) => {
                marked = true;
                timeline::mark("healthy");
                kmsg::info(&format!(
                    "containerd {version} answers: slot {} {}",
                    slot.as_str(),
                    if wrote {
                        "marked successful"
                    } else {
                        "was already marked successful"
                    }
                ));
            }
            Err(e) => kmsg::error(&format!(
                "containerd {version} answers, but marking slot {} successful failed: {e}",
                slot.as_str()
            )),
        }
    };
    match supervise::supervise_as_pid1(config, watchdog, &mut on_health) {
        Ok(_) => failure::halt(),
        Err(e) => fail(Stage::Handoff, &e),
    }
}

/// Records that `slot` reached health (successful, tries and crash-loop count cleared).
fn mark_successful(node: &Path, sector_size: u32, slot: prairiedog::Slot) -> Result<bool, String> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(node)
        .map_err(|e| format!("opening {}: {e}", node.display()))?;
    let mut disk = prairiedog::disk::SlotDisk::open(file, node, gpt::SectorSize::new(sector_size))
        .map_err(|e| e.to_string())?;
    let new = prairiedog::transition::mark_successful_boot(disk.words(), slot);
    disk.store(new).map_err(|e| e.to_string())
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
    let timeout = config
        .device_timeout_secs
        .map_or(DEFAULT_DEVICE_TIMEOUT, |s| {
            Duration::from_secs(u64::from(s))
        });
    match disk::find_boot_disk(
        Path::new("/sys"),
        Path::new("/dev"),
        config.boot_partuuid,
        timeout,
        DEVICE_POLL,
        &mut disk::DeviceReader,
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

/// Runs the A/B stage; returns the running slot and whether a damaged GPT copy was
/// repaired.
fn choose_slot(config: &Config, boot_disk: &BootDisk) -> (prairiedog::Slot, bool) {
    match slots::run(
        boot_disk,
        config.slot,
        config.boot_partuuid,
        DEFAULT_UNHEALTHY_LIMIT,
    ) {
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
            (booted, outcome.repaired)
        }
        Err(e) => fail(Stage::Slots, &e),
    }
}

/// After a repair of the primary GPT: the kernel rejects a damaged primary (without the
/// `gpt` parameter it never looks at the backup), so it may know none of the partitions.
/// They are added one by one with BLKPG, as it would have found them.
fn announce_partitions(boot_disk: &mut BootDisk) {
    let table = match File::open(&boot_disk.node)
        .map_err(|e| gpt::Error::Io {
            device: boot_disk.node.clone(),
            what: "opening",
            source: e,
        })
        .and_then(|f| {
            let table = gpt::Gpt::read(
                &f,
                &boot_disk.node,
                gpt::SectorSize::new(boot_disk.disk.sector_size),
            )?;
            Ok((f, table))
        }) {
        Ok(t) => t,
        Err(e) => fail(Stage::Slots, &format!("re-reading the repaired GPT: {e}")),
    };
    let (file, table) = table;
    let ss = table.sector_size().bytes();
    let mut added = Vec::new();
    for (number, entry) in table.used() {
        if boot_disk.disk.partitions.contains_key(&number) {
            continue;
        }
        let start = entry.first_lba.saturating_mul(ss);
        let length = entry.sectors().saturating_mul(ss);
        match growpart::blkpg::add_partition(&file, number, start, length) {
            Ok(()) => added.push(number.to_string()),
            Err(e) => fail(
                Stage::Slots,
                &format!(
                    "telling the kernel about partition {number} of {}: {e}",
                    boot_disk.node.display()
                ),
            ),
        }
    }
    if !added.is_empty() {
        kmsg::info(&format!(
            "the kernel had rejected the damaged GPT of {}: partitions {} added with BLKPG",
            boot_disk.node.display(),
            added.join(", ")
        ));
        if let Some(disk) = disk::scan(Path::new("/sys"))
            .into_iter()
            .find(|d| d.name == boot_disk.disk.name)
        {
            boot_disk.disk = disk;
        }
    }
    boot_disk.gpt = table;
}

/// The device nodes of ROOT-<slot> and HASH-<slot> on the boot disk.
fn slot_partitions(
    boot_disk: &BootDisk,
    layout: &prairiedog::disk::Layout,
    slot: prairiedog::Slot,
) -> Result<(PathBuf, PathBuf), String> {
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

fn mount_sysroot(verified: &Path, var_overlay: bool) {
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
        &root::sysroot_plan(verified, fs, var_overlay),
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
