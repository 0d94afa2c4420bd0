//! The boot sequence.

use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::cmdline::{self, Handoff};
use crate::failure::{fail, Stage};
use crate::{kmsg, modules, mounts, timeline};

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
    timeline::mark("modules");

    let target = match &cmdline.config.handoff {
        Handoff::Path(p) => p.clone(),
        Handoff::Systemd => "/sbin/init".to_owned(),
        Handoff::Containerd => fail(
            Stage::Handoff,
            &"liftoff.handoff=containerd needs a verified root, which this build does not set up yet",
        ),
    };
    timeline::mark("handoff");
    devkmsg.restore();
    // The kernel passed the parameters meant for init as our arguments and environment;
    // the next stage gets them unchanged.
    let error = std::process::Command::new(&target)
        .args(std::env::args_os().skip(1))
        .exec();
    fail(Stage::Handoff, &format!("executing {target}: {error}"))
}
