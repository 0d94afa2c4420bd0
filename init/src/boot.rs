//! The boot sequence (DESIGN.md section 1), top to bottom: each stage ([`crate::stage`])
//! returns its own error, which `or_fail()` hands to the failure policy
//! ([`crate::infra::failure`]) as a [`BootError`]; each completed stage is marked on the
//! timeline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prairiedog::cmdline::{Config, Handoff};
use prairiedog::decide::{Action, DEFAULT_UNHEALTHY_LIMIT};
use prairiedog::pstore::Failure;

use crate::infra::failure::{self, fail, OrFail};
use crate::infra::process::{Beside, Handshake};
use crate::infra::watchdog::Watchdog;
use crate::infra::{kmsg, timeline};
use crate::stage::data::PrivateMount;
use crate::stage::disk::{self, BootDisk};
use crate::stage::{
    caps, cmdline, data, handoff, host, modules, mounts, pstore, root, settings, slots,
    switch_root, verity, BootError,
};

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
        fail(BootError::ApiMounts(e));
    }
    if let Err(e) = kmsg::open(root) {
        // Records keep going to the console.
        kmsg::warn(&format!("opening /dev/kmsg: {e}; logging to the console"));
    }
    let devkmsg = kmsg::DevkmsgGuard::enable(root);
    let autoload = modules::AutoloadGuard::disable(root);
    timeline::mark_at("pid1", started);
    timeline::mark("api-mounts");

    let mut cmdline = cmdline::read(root).or_fail();
    kmsg::set_debug(cmdline.config.debug);
    for problem in &cmdline.problems {
        kmsg::error(&problem.to_string());
    }
    if kmsg::debug_enabled() {
        kmsg::debug(&format!("configuration: {:?}", cmdline.config));
    }
    failure::set_slot(cmdline.config.slot);
    timeline::mark("cmdline");

    // A watchdog built into the kernel is there already, and may be running since boot
    // (softdog.soft_active_on_boot, which the image sets for a kernel with softdog built
    // in): take it over before the modules load. A modular one (Debian's softdog) is armed
    // once they have.
    let built_in = root.join("dev/watchdog").exists();
    let early_dog = built_in.then(|| arm_watchdog(&cmdline.config)).flatten();
    let (mut beside, mut late_modules) = load_modules(root, &cmdline.others, &cmdline.config);
    timeline::mark("modules");
    check_signed_cmdline(root);
    let watchdog = if built_in {
        early_dog
    } else {
        arm_watchdog(&cmdline.config)
    };

    let config = &cmdline.config;
    if config.roothash.is_none() {
        if let Handoff::Path(target) = &config.handoff {
            // A diagnostic boot: no verified root, the next stage comes from the initramfs.
            kmsg::warn(&format!(
                "no liftoff.roothash: no verified root; handing off to {target} inside the initramfs"
            ));
            beside.join();
            late_modules.load(&cmdline.others);
            restore_autoload(autoload);
            timeline::mark("handoff");
            beside.reap();
            devkmsg.restore();
            fail(handoff::exec(target).into());
        }
    }

    let mut boot_disk = find_disk(config);
    timeline::mark("disk");

    let previous = pstore::read(Path::new("/sys"));
    let pid1 = pstore::read_pid1(Path::new("/sys"));
    let (slot, repaired, failed) = choose_slot(config, &boot_disk, previous, pid1);
    failure::set_slot(Some(slot));
    if repaired {
        slots::announce_partitions(&mut boot_disk, Path::new("/sys")).or_fail();
    }
    timeline::mark("slots");

    // Where the slot sets, PRIVATE and DATA are: read once from the (possibly repaired) table.
    let layout = prairiedog::disk::Layout::find(&boot_disk.gpt, &boot_disk.node)
        .map_err(verity::VerityError::Layout)
        .or_fail();
    let data_node = layout
        .data
        .and_then(|n| boot_disk.disk.partition_node(Path::new("/dev"), n));
    let private_node = layout
        .private
        .and_then(|n| boot_disk.disk.partition_node(Path::new("/dev"), n));
    // The DATA stage's first step: DATA its final size before anybody opens it.
    let grown = data_node.as_ref().map(|_| data::grow(&boot_disk.node));
    if let (Some(data), Some(private), Some(Ok(_))) = (&data_node, &private_node, &grown) {
        // The module child reads PRIVATE and opens DATA beside the verity and root stages.
        beside.send_data(data::early::Request {
            data: data.clone(),
            private: private.clone(),
        });
    }
    // dm-verity and the root's file systems (the SHA-256 acceleration came with the
    // child's first modules), now that the child has what it needs to open DATA.
    beside.load_verity(root, &cmdline.others);
    let (verified, table) = verity::run(
        &boot_disk,
        &layout,
        slot,
        config.roothash.as_ref(),
        config.salt.as_ref(),
        config.verity,
        Path::new("/dev"),
    )
    .or_fail();
    kmsg::info(&format!(
        "verity: {} serves ROOT-{} checked against HASH-{} ({})",
        verified.display(),
        slot.as_str(),
        slot.as_str(),
        table.line()
    ));
    timeline::mark("verity");

    if data_node.is_none() {
        kmsg::warn(&format!(
            "{} has no DATA partition: /var is kept in memory only",
            boot_disk.node.display()
        ));
    }
    let fs = root::mount(&verified, data_node.is_none()).or_fail();
    kmsg::info(&format!(
        "root: {} ({}) mounted read-only at {}",
        verified.display(),
        fs.name(),
        root::SYSROOT
    ));
    timeline::mark("root");

    beside.wait_files();
    // The initramfs's files are freed with the late modules, after the handoff mark.
    late_modules.initramfs = switch_root::switch_root(Path::new(root::SYSROOT)).or_fail();
    timeline::mark("switch-root");

    // dm-crypt, its ciphers and the TPM, loading since the modules stage, and what the
    // child read on PRIVATE and did with DATA.
    let early = beside.join();
    // The mode the child opened DATA for, from the bytes PID 1 takes its settings from
    // unless it reads PRIVATE itself.
    let child_mode = early
        .private
        .as_ref()
        .map(|files| data::early::mode(cmdline.config.data, files.settings.as_deref()));

    // PRIVATE is mounted read-only once (unless the child read it), for the settings and
    // then the DATA stage, which unmounts it.
    let (merged, mut private_mount) = match &private_node {
        Some(private) => settings(&mut cmdline.config, private, failed, early.private),
        None => {
            remember(None, failed);
            (settings::Merged::default(), None)
        }
    };
    let sysctls = &merged.sysctls;
    let config = &cmdline.config;
    // PID 1 read PRIVATE itself and found another mode (its read failed): the child's DATA
    // was opened for a mode this boot does not use.
    let early_opened = match early.opened {
        Some(device) if child_mode == Some(config.data) => Some(device),
        Some(_) => {
            data::remove_untaken("for another mode than this boot's");
            None
        }
        None => None,
    };

    let mut unmount = Vec::new();
    let root_hash = config.roothash.as_ref().map(ToString::to_string);
    if let Some(data_node) = &data_node {
        let mounts = match data::setup(
            &boot_disk.node,
            data_node,
            private_node.as_deref(),
            private_mount.take(),
            config.data,
            root_hash.as_deref(),
            (grown.unwrap_or(Ok(false)), early_opened),
        ) {
            Ok(outcome) => {
                data::log(&outcome);
                outcome.mounts
            }
            Err(e) => {
                failure::degrade_or_fail(
                    e.into(),
                    root,
                    "DATA left untouched and unmounted, /local in memory",
                );
                data::in_memory().or_fail()
            }
        };
        // The supervisor unmounts in reverse of this (mount) order.
        unmount = mounts.iter().rev().map(PathBuf::from).collect();
        timeline::mark("data");
    }
    // Without DATA nothing took PRIVATE over: unmount it before anything else runs.
    drop(private_mount);

    let dropped = caps::drop_listed(Path::new("/")).or_fail();
    if !dropped.is_empty() {
        kmsg::info(&format!(
            "bounding set: dropped {} for everything after PID 1",
            crate::infra::join(&dropped, ", ")
        ));
        timeline::mark("caps");
    }

    let target = match &config.handoff {
        Handoff::Path(p) => p.clone(),
        Handoff::Systemd => "/sbin/init".to_owned(),
        Handoff::Containerd => {
            container_host(config, sysctls);
            restore_autoload(autoload);
            timeline::log_peak_memory();
            timeline::mark("handoff");
            beside.reap();
            // PID 1 stays the host's supervisor and keeps logging (restarts, shutdown), so
            // the kernel's rate limit stays off for its lines: with it back on, the last
            // lines of a shutdown were dropped.
            drop(devkmsg);
            // Before the supervisor opens the power button.
            late_modules.load(&cmdline.others);
            let stable_after = config
                .stable_after_secs
                .map_or(handoff::DEFAULT_STABLE_AFTER, |s| {
                    Duration::from_secs(u64::from(s))
                });
            match handoff::containerd(
                &boot_disk,
                slot,
                watchdog,
                unmount,
                stable_after,
                &merged.service_args,
            ) {
                // Only after the kernel refused to power off or reboot.
                Ok(_) => failure::halt(),
                Err(e) => fail(e.into()),
            }
        }
    };
    for e in host::write_sysctls(&mut mounts::System, root, sysctls) {
        failure::degrade_or_fail(e.into(), root, "the host goes on without it");
    }
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
    late_modules.load_beside(&cmdline.others);
    restore_autoload(autoload);
    timeline::log_peak_memory();
    timeline::mark("handoff");
    beside.reap();
    devkmsg.restore();
    fail(handoff::exec(&target).into())
}

/// Per-host settings from the bootconfig on PRIVATE, taken into `config` where allowed
/// (one line for each entry that is not); returns the sysctls to set, the services'
/// arguments, and PRIVATE, still mounted read-only, for the DATA stage. The previous boot's
/// failure (`failed`) goes into PRIVATE's history first ([`remember`]). A PRIVATE or
/// bootconfig that cannot be read leaves the boot degraded, with the command line's
/// settings. `early` is PRIVATE's files as the module child read them: used, with no
/// mount, unless there is a failure to add to the history.
fn settings(
    config: &mut Config,
    private: &Path,
    failed: Failed,
    early: Option<data::early::PrivateFiles>,
) -> (settings::Merged, Option<PrivateMount>) {
    let early = early.filter(|_| failed.list.is_empty() && failed.pid1_var.is_none());
    let read = match early {
        Some(files) => {
            let path = Path::new(data::PRIVATE_MOUNT).join(settings::FILE);
            settings::parse(files.settings.as_deref(), &path)
                .map(|entries| (entries, None, files.history))
        }
        None => PrivateMount::read_only(private)
            .map_err(|e| settings::SettingsError::Private(Box::new(e)))
            .and_then(|mount| Ok((settings::read(&mount)?, Some(mount), Vec::new()))),
    };
    let (entries, mut mount, history) = match read {
        Ok(read) => read,
        Err(e) => {
            // PRIVATE is there but unreadable: PID 1's record waits for a later boot.
            let failed = Failed {
                pid1_var: None,
                ..failed
            };
            remember(None, failed);
            failure::degrade_or_fail(e.into(), Path::new("/"), "the command line's settings only");
            return (settings::Merged::default(), None);
        }
    };
    match mount.as_mut() {
        Some(mount) => remember(Some(mount), failed),
        // Read by the child: nothing to add to the history.
        None => copy_history(&String::from_utf8_lossy(&history)),
    }
    if entries.is_empty() {
        return (settings::Merged::default(), mount);
    }
    let merged = settings::merge(config, &entries);
    for line in &merged.ignored {
        kmsg::warn(&format!("bootconfig on {}: {line}", private.display()));
    }
    let sysctls: Vec<String> = merged
        .sysctls
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    kmsg::info(&format!(
        "bootconfig on {}: took {}{}{}",
        private.display(),
        crate::infra::join(&merged.taken, ", "),
        if merged.taken.is_empty() || sysctls.is_empty() {
            ""
        } else {
            ", "
        },
        crate::infra::join(&sysctls, " ")
    ));
    timeline::mark("settings");
    (merged, mount)
}

/// The previous boot's failures for the history, and PID 1's failure record to erase once
/// the history keeps them.
#[derive(Debug, Default)]
struct Failed {
    list: Vec<Failure>,
    pid1_var: Option<PathBuf>,
}

/// The failure history: `failed` added to the one on PRIVATE (written crash-safely), and
/// the history copied to /run for `prairiedog status`; PID 1's failure record is erased
/// once PRIVATE keeps it, or at once without PRIVATE. Trouble is logged, never fatal.
#[inline(never)]
fn remember(private: Option<&mut PrivateMount>, failed: Failed) {
    use prairiedog::pstore::{add_to_history, read_history, PRIVATE_FILE};
    let mut text = String::new();
    let mut result = Ok(());
    let private_missing = private.is_none();
    if let Some(mount) = private {
        let old = std::fs::read(mount.dir().join(PRIVATE_FILE)).unwrap_or_default();
        text = String::from_utf8_lossy(&old).into_owned();
        if !failed.list.is_empty() {
            text = add_to_history(&read_history(&old), &failed.list);
            let (dir, name) = PRIVATE_FILE.split_once('/').unwrap_or(("", PRIVATE_FILE));
            let dir = mount.dir().join(dir);
            result = mount
                .writable()
                .and_then(|()| {
                    std::fs::create_dir_all(&dir).map_err(|source| data::DataError::Key {
                        path: dir.clone(),
                        source,
                    })
                })
                .and_then(|()| data::write_durably(&dir, name, text.as_bytes(), 0o644))
                .map_err(|e| e.to_string());
        }
    } else if !failed.list.is_empty() {
        text = add_to_history(&[], &failed.list);
        result = Err("no PRIVATE".to_owned());
    }
    if let Some(var) = &failed.pid1_var {
        if result.is_ok() || private_missing {
            pstore::forget_pid1(var);
        }
    }
    if let Err(e) = result {
        kmsg::warn(&format!(
            "failure history not kept on PRIVATE ({e}): only this boot shows it"
        ));
    }
    copy_history(&text);
}

/// The failure history `text` copied to /run for `prairiedog status`, if there is one.
fn copy_history(text: &str) {
    if !text.is_empty() {
        let run = Path::new("/").join(prairiedog::pstore::RUN_FILE);
        let _ = run.parent().map(std::fs::create_dir_all);
        if let Err(e) = std::fs::write(&run, text) {
            kmsg::warn(&format!("writing {}: {e}", run.display()));
        }
    }
}

/// [`remember`] from the slots stage: PRIVATE mounted for the history alone.
#[inline(never)]
fn remember_before_reboot(boot_disk: &BootDisk, failed: Failed) {
    let private = prairiedog::disk::Layout::find(&boot_disk.gpt, &boot_disk.node)
        .ok()
        .and_then(|l| l.private)
        .and_then(|n| boot_disk.disk.partition_node(Path::new("/dev"), n));
    match private.map(|p| PrivateMount::read_only(&p)) {
        Some(Ok(mut mount)) => remember(Some(&mut mount), failed),
        Some(Err(e)) => kmsg::warn(&format!("failure history not kept on PRIVATE ({e})")),
        None => remember(None, failed),
    }
}

/// containerd mode: what runc, containerd and CNI expect of the system. A step that fails
/// leaves the host degraded, not down.
fn container_host(config: &Config, sysctls: &[(String, String)]) {
    let name = config
        .hostname
        .as_ref()
        .map_or(host::DEFAULT_HOSTNAME, |h| h.as_str());
    let root = Path::new("/");
    for e in host::setup(&mut mounts::System, root, name, sysctls) {
        failure::degrade_or_fail(e.into(), root, "the host goes on without it");
    }
    timeline::mark("host");
}

/// Under Secure Boot, refuses a boot whose `liftoff.` keys are not the signed image's
/// (the slot's try is spent, so GRUB falls back to the other slot).
fn check_signed_cmdline(root: &Path) {
    let secure_boot = disk::Efi {
        sys: root.join("sys"),
    }
    .secure_boot();
    if let cmdline::SecureBoot::Unknown(why) = &secure_boot {
        kmsg::warn(&format!(
            "cmdline: cannot tell whether Secure Boot is on ({why}); holding the command \
             line to the signed image's, if there is one"
        ));
    }
    match cmdline::check_signed(root, &secure_boot).or_fail() {
        cmdline::Provenance::Signed if secure_boot == cmdline::SecureBoot::On => {
            kmsg::info("cmdline: Secure Boot is on; every liftoff. key is the signed image's")
        }
        cmdline::Provenance::Signed => {
            kmsg::info("cmdline: every liftoff. key is the signed image's")
        }
        cmdline::Provenance::Loader(Some(difference)) => kmsg::info(&format!(
            "cmdline: Secure Boot is off, so the loader's command line stands, though {difference}"
        )),
        cmdline::Provenance::Loader(None) => {
            kmsg::debug("cmdline: Secure Boot is off; the command line is the signed image's")
        }
        cmdline::Provenance::NoSignedLine => {
            kmsg::debug("cmdline: Secure Boot is off; no signed command line in the initramfs")
        }
    }
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
    match Watchdog::arm(Path::new("/dev"), Path::new("/sys"), seconds) {
        Ok(dog) if dog.timeout() < seconds => {
            kmsg::warn(&format!(
                "watchdog {} armed: {} s to reach health, the most it grants of the {seconds} s asked",
                dog.path().display(),
                dog.timeout()
            ));
            Some(dog)
        }
        Ok(dog) => {
            kmsg::info(&format!(
                "watchdog {} armed: {} s to reach health",
                dog.path().display(),
                dog.timeout()
            ));
            Some(dog)
        }
        Err(e) if e.left_running() => {
            kmsg::error(&format!(
                "liftoff.watchdog={seconds}: {e}; nobody can pet it: the machine resets when it expires"
            ));
            None
        }
        Err(e) => {
            kmsg::error(&format!(
                "liftoff.watchdog={seconds}: {e}; booting without a watchdog"
            ));
            None
        }
    }
}

/// Loads the list's `root` modules now (a watchdog driver only when `watchdog`, the
/// command line's `liftoff.watchdog`, asks for one: else it waits for the `late` phase),
/// the `data` ones in a child process (with the `verity` ones they need), and opens the
/// files of the `late` ones (the module docs of [`modules`] say why); PID 1 loads the other
/// `verity` modules itself before the verity stage ([`BesideModules::load_verity`]). The
/// child starts before the `root` phase when its first modules can load beside it
/// ([`modules::can_load_beside`]), else right after it; either way it reads the hardware
/// its gated `data` drivers need only once the `root` phase is in.
fn load_modules(
    root: &Path,
    cmdline: &[prairiedog::cmdline::Param],
    config: &Config,
) -> (BesideModules, LateModules) {
    let split = |list: Vec<modules::Entry>, phase| -> (Vec<_>, Vec<_>) {
        list.into_iter().partition(|e| e.phase == phase)
    };
    let (mut now, rest) = split(modules::read_list(root).or_fail(), modules::Phase::Root);
    let (verity, rest) = split(rest, modules::Phase::Verity);
    let (data, mut late) = split(rest, modules::Phase::Data);
    if config.watchdog_secs.is_none() {
        modules::defer_watchdogs(&mut now, &mut late);
    }
    // The DATA modules that need neither hardware nor a `root` module (dm-crypt and the
    // ciphers, with dm-mod) load beside the `root` phase: with them in, the child opens
    // DATA as soon as PID 1 has the disk. The child's chain (these modules, then PRIVATE,
    // the keyslot and the table) is as long as PID 1's path to the DATA stage; the other
    // `verity` modules would make it the longer one (docs/performance.md).
    let (mut first, data) = modules::split_beside(data, &now);
    let verity = modules::take_dependencies(&mut first, verity);
    let early = modules::can_load_beside(&first, &now);
    let mut child = None;
    let mut work = |handshake: &mut Handshake| {
        let load = |loader: &mut modules::Opened, entries: &[modules::Entry], what| {
            let done = modules::load_listed(loader, entries, cmdline).map_err(|e| e.to_string())?;
            if !entries.is_empty() {
                log_modules(what, &done);
            }
            Ok::<(), String>(())
        };
        let open = |entries| modules::Opened::new(root, entries).map_err(|e| e.to_string());
        load(&mut open(&first)?, &first, " for DATA beside the disk")?;
        // Milestone 1: PID 1 waits for it before it loads the `verity` modules.
        handshake.reach_milestone();
        // The `root` phase's drivers may bring up buses the other `data` modules are gated
        // on: they are read once it is in.
        handshake.wait_for_go();
        let mut gated = open(&data)?;
        // Milestone 2, every file open and every bus read: PID 1 waits for it before
        // switch_root, which moves sysfs (and after which the initramfs is freed).
        handshake.reach_milestone();
        load(&mut gated, &data, " for DATA beside the boot")?;
        // Milestone 3: the DATA modules are in.
        handshake.reach_milestone();
        // Then PRIVATE and DATA, once PID 1 knows where they are.
        Ok(match handshake.own_mounts() {
            true => handshake
                .receive()
                .map(|request| data::early::run(&request, config))
                .unwrap_or_default(),
            false => Vec::new(),
        })
    };
    // With a verified root there is a DATA stage to start beside the boot.
    let beside = config.roothash.is_some() || !(first.is_empty() && data.is_empty());
    let early = beside && early;
    if early {
        child = fork_modules(&mut work);
    }
    let done = modules::Opened::live(root, &now)
        .and_then(|mut loader| modules::load_listed(&mut loader, &now, cmdline))
        .or_fail();
    log_modules("", &done);
    if beside && !early {
        child = fork_modules(&mut work);
    }
    if let Some(child) = child.as_mut() {
        child.go();
    } else if beside {
        work(&mut Handshake::default())
            .map_err(|detail| modules::ModuleError::Beside {
                phase: "DATA",
                detail,
            })
            .or_fail();
    }
    let beside = BesideModules {
        child,
        milestones: 0,
        verity,
        reported: None,
    };
    let opened = if late.is_empty() {
        None
    } else {
        Some(modules::Opened::live(root, &late).or_fail())
    };
    let late = LateModules {
        late,
        opened,
        initramfs: None,
    };
    (beside, late)
}

/// Starts `work` (the `data` modules, PRIVATE and DATA) in a child process; `None` if it
/// could not (the caller then runs it itself).
fn fork_modules(work: &mut dyn FnMut(&mut Handshake) -> Result<Vec<u8>, String>) -> Option<Beside> {
    match crate::infra::process::beside(work) {
        Ok(started) => Some(started),
        Err(e) => {
            kmsg::warn(&format!(
                "forking to load the DATA modules: {e}; loading them after the others"
            ));
            None
        }
    }
}

/// The `data` modules, then PRIVATE and DATA ([`data::early`]): in a child process
/// (`None`: done), and how many of its milestones PID 1 has waited for: its first modules
/// in (those that need no hardware), every module file open (and bus read) before
/// switch_root, the gated `data` modules in. And the `verity` modules the child does not
/// load, for PID 1.
struct BesideModules {
    child: Option<Beside>,
    milestones: usize,
    verity: Vec<modules::Entry>,
    /// The child once joined: one that reported may still be ending, one that did not was
    /// waited for already (its reap then finds nothing) ([`BesideModules::reap`]).
    reported: Option<i32>,
}

impl BesideModules {
    /// Loads the `verity` modules once the child's first ones (dm-mod among them) are in;
    /// one that failed fails the modules stage, as before the disk (the child logged what
    /// it loaded). The line says how long PID 1 took (module loading, for the boot bench).
    fn load_verity(&mut self, root: &Path, cmdline: &[prairiedog::cmdline::Param]) {
        self.wait_for(1);
        if self.verity.is_empty() {
            return;
        }
        let start = timeline::boottime_us();
        let done = modules::Opened::live(root, &self.verity)
            .and_then(|mut loader| modules::load_listed(&mut loader, &self.verity, cmdline))
            .or_fail();
        let ms = timeline::boottime_us().saturating_sub(start) / 1000;
        log_modules(&format!(" for verity in {ms} ms"), &done);
    }

    /// Waits until the child has opened every module file and read every bus it needs:
    /// before switch_root moves sysfs (the initramfs is freed after it).
    fn wait_files(&mut self) {
        self.wait_for(2);
    }

    /// Waits for the milestones up to the `count`th, logging each wait.
    fn wait_for(&mut self, count: usize) {
        const WAITS: [(&str, &str); 3] = [
            ("first DATA", "them"),
            ("DATA", "their files"),
            ("DATA", "them"),
        ];
        while self.milestones < count {
            let what = WAITS.get(self.milestones).copied().unwrap_or_default();
            self.milestones += 1;
            if let Some(child) = self.child.take() {
                let waiting = timeline::boottime_us();
                self.child = Some(waited(what, waiting, child.milestone()));
            }
        }
    }

    /// Asks the child to read PRIVATE and open DATA once its modules are in.
    fn send_data(&mut self, request: data::early::Request) {
        if let Some(child) = self.child.as_mut() {
            child.send(&request.encode());
        }
    }

    /// Waits for the child that reported to end, so that no child of PID 1's boot is left
    /// to the next stage (after the handoff mark: by then it has ended).
    fn reap(&mut self) {
        if let Some(pid) = self.reported.take() {
            crate::infra::process::reap(pid);
        }
    }

    /// Waits for the `data` modules, then for the child: a module that failed fails the
    /// modules stage. What the child read on PRIVATE and did with DATA (nothing without a
    /// child, or when it could not: PID 1 then does it all itself).
    fn join(&mut self) -> data::early::Early {
        self.wait_for(3);
        let Some(child) = self.child.take() else {
            return data::early::Early::default();
        };
        let waiting = timeline::boottime_us();
        // Reaped after the handoff mark: it may still be ending (PRIVATE's unmount).
        self.reported = Some(child.pid());
        let early = match child.join() {
            Ok(report) => {
                let early = data::early::Early::decode(&report);
                // A report that does not read counts as none (one that does always has
                // the PRIVATE files).
                if !report.is_empty() && early.private.is_none() {
                    data::remove_untaken("and its report does not read");
                }
                early
            }
            // Its modules are in (the milestone said so): only its DATA work is lost, and
            // a mapping it may have made before it ended.
            Err(e) => {
                kmsg::warn(&format!(
                    "the module child failed reading PRIVATE and opening DATA ({e}); PID 1 \
                     does that work"
                ));
                data::remove_untaken("and did not report");
                data::early::Early::default()
            }
        };
        if early.private.is_some() {
            // Not a `data: ` line: that one is the DATA stage's outcome.
            kmsg::info(&format!(
                "PRIVATE read{} beside the boot: waited {} ms for it",
                if early.opened.is_some() {
                    " and DATA opened"
                } else {
                    ""
                },
                timeline::boottime_us().saturating_sub(waiting) / 1000
            ));
        }
        early
    }
}

/// After a wait for the module child since `waiting`: fails the modules stage if the
/// child's modules failed, else logs how long PID 1 waited for the `phase` modules (or
/// for their files: `of`).
fn waited((phase, of): (&str, &str), waiting: u64, outcome: Result<Beside, String>) -> Beside {
    let value = outcome
        .map_err(|detail| modules::ModuleError::Beside {
            phase: "DATA",
            detail,
        })
        .or_fail();
    kmsg::info(&format!(
        "{phase} modules: waited {} ms for {of}",
        timeline::boottime_us().saturating_sub(waiting) / 1000
    ));
    value
}

/// One line for what a phase loaded: `what` names the phase.
fn log_modules(what: &str, done: &[(String, modules::Outcome)]) {
    let mut skipped = Vec::new();
    let mut loaded = 0;
    for (name, outcome) in done {
        match outcome {
            modules::Outcome::NoDevice => {
                kmsg::warn(&format!("module {name}: no device for it, skipped"))
            }
            modules::Outcome::Skipped => skipped.push(name.as_str()),
            other => {
                loaded += 1;
                kmsg::debug(&format!("module {name}: {other:?}"));
            }
        }
    }
    if skipped.is_empty() {
        kmsg::info(&format!("loaded {loaded} modules{what}"));
    } else {
        kmsg::info(&format!(
            "loaded {loaded} modules{what}; no hardware for {}",
            crate::infra::join(&skipped, ", ")
        ));
    }
}

/// The `late` modules, their files open since the modules stage, and the initramfs's
/// root once PID 1 has left it ([`switch_root::free_initramfs`]): the work after the
/// handoff mark.
struct LateModules {
    late: Vec<modules::Entry>,
    opened: Option<modules::Opened>,
    initramfs: Option<std::os::fd::OwnedFd>,
}

impl LateModules {
    /// Loads them now, then frees the initramfs. After the handoff a failure is logged
    /// and the host goes on without the module: neither the root nor DATA needs it.
    fn load(self, cmdline: &[prairiedog::cmdline::Param]) {
        if let Some(mut loader) = self.opened {
            match modules::load_listed(&mut loader, &self.late, cmdline) {
                Ok(done) => log_modules(" after the handoff", &done),
                Err(e) => kmsg::error(&format!(
                    "stage modules failed: {e}; action: the host goes on without it (after the handoff)"
                )),
            }
        }
        if let Some(initramfs) = self.initramfs {
            switch_root::free_initramfs(initramfs);
        }
    }

    /// Does [`LateModules::load`] in a child process that outlives the exec of the next
    /// stage, which reaps it; without a child, now.
    fn load_beside(self, cmdline: &[prairiedog::cmdline::Param]) {
        if self.opened.is_none() && self.initramfs.is_none() {
            return;
        }
        let mut me = Some(self);
        let forked = crate::infra::process::detach(&mut || {
            if let Some(me) = me.take() {
                me.load(cmdline);
            }
        });
        if let Err(e) = forked {
            kmsg::warn(&format!(
                "forking to load the late modules: {e}; loading them now"
            ));
            if let Some(me) = me.take() {
                me.load(cmdline);
            }
        }
    }
}

fn find_disk(config: &Config) -> BootDisk {
    let timeout = config
        .device_timeout_secs
        .map_or(DEFAULT_DEVICE_TIMEOUT, |s| {
            Duration::from_secs(u64::from(s))
        });
    let mut firmware = disk::Efi {
        sys: PathBuf::from("/sys"),
    };
    // Under Secure Boot the unified kernel image's own command line has no
    // liftoff.boot_partuuid (it cannot know the partition); systemd-stub names the
    // partition it was loaded from in LoaderDevicePartUUID.
    let boot_partuuid = config.boot_partuuid.or_else(|| firmware.loader_partuuid());
    match disk::find_boot_disk(
        Path::new("/sys"),
        Path::new("/dev"),
        boot_partuuid,
        timeout,
        DEVICE_POLL,
        &mut disk::DeviceReader,
        &mut firmware,
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
                    "{} carry the same Liftoff partitions as {} (cloned volumes?): ignored, \
                     only {}, the disk the firmware booted, is used",
                    crate::infra::join(&disk.ignored_clones, ", "),
                    disk.disk.name,
                    disk.disk.name
                ));
            }
            disk
        }
        Err(e) => fail(e.into()),
    }
}

/// Runs the A/B stage, charging `previous` (the previous boot's pstore record) in its GPT
/// write and erasing the record once that succeeded; returns the running slot, whether a
/// damaged GPT copy was repaired, and the failure for the history.
fn choose_slot(
    config: &Config,
    boot_disk: &BootDisk,
    previous: Option<pstore::Found>,
    pid1: Option<(Failure, PathBuf)>,
) -> (prairiedog::Slot, bool, Failed) {
    match slots::run(
        boot_disk,
        config.slot,
        config.boot_partuuid,
        DEFAULT_UNHEALTHY_LIMIT,
        previous.as_ref().map(|p| &p.record),
    ) {
        Ok((outcome, booted)) => {
            let charged = previous.zip(outcome.boot.charged).map(|(p, (slot, now))| {
                let r = p.record;
                kmsg::warn(&format!(
                    "pstore: the previous boot of slot {} ended in a kernel {} ({}): {}",
                    slot.as_str(),
                    r.cause.as_str(),
                    r.stage.as_str(),
                    match (now, r.slot) {
                        (false, _) => "before PID 1, counted by GRUB's fallback",
                        (true, Some(_)) => "charged to it",
                        (true, None) =>
                            "charged to it (no slot in the record: the one booting again)",
                    }
                ));
                // Only now that the charge is on disk: a cut before leaves it for the
                // next boot.
                pstore::erase(&p.files);
                Failure {
                    slot,
                    time: p.time,
                    stage: r.stage,
                    cause: r.cause,
                }
            });
            let mut failed = Failed::default();
            failed.list.extend(charged);
            if let Some((f, var)) = pid1 {
                failed.list.push(f);
                failed.pid1_var = Some(var);
            }
            slots::log(&outcome);
            let d = &outcome.boot.decision;
            if d.action == Action::Reboot {
                if outcome.boot.grubenv.steers_grub() {
                    if !failed.list.is_empty() || failed.pid1_var.is_some() {
                        // The charge made the other slot boot: the history is kept now,
                        // as this boot never reaches the settings stage.
                        remember_before_reboot(boot_disk, failed);
                    }
                    failure::reboot();
                }
                // GRUB would boot this slot again: rebooting would loop for ever. The
                // kernel that runs reached PID 1 and its root is verified; boot it.
                kmsg::error(&format!(
                    "slots: slot {} should boot, but grubenv cannot point GRUB at it: \
                     staying on slot {} instead of rebooting into it again",
                    d.boot.as_str(),
                    booted.as_str()
                ));
                failure::set_note(&format!(
                    "this boot is not counted; GRUB boots slot {} again",
                    booted.as_str()
                ));
            } else {
                failure::set_note(&format!(
                    "this boot is already counted against slot {}; next boot: slot {}",
                    booted.as_str(),
                    d.next.as_str()
                ));
            }
            (booted, outcome.repaired, failed)
        }
        Err(e) => fail(e.into()),
    }
}
