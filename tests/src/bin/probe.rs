//! The test probe: prints what the guest looks like as one JSON line and powers off.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use liftoff_probe::{
    liftoff_message, parse_mountinfo, parse_proc_modules, BlockDev, DmTarget, GrowLive, ReadBack,
    Report, MARKER, MARKER_FILE, WAITING_FOR_GROWTH,
};

/// Where PID 1 hands DATA's recovery key over (`prairiedog::host::RECOVERY_KEY_FILE`).
const RECOVERY_KEY_FILE: &str = "/run/liftoff/recovery-key";

/// Tries what an attacker with root in the booted system would: unseal DATA's TPM2 token.
/// PID 1 extended PCR 15 after its own unseal, so the TPM must refuse.
fn tpm_unseal_attempt() -> Option<String> {
    let tpm_dev = Path::new(tpm2::Device::RESOURCE_MANAGER);
    if !tpm_dev.exists() {
        return None;
    }
    // DATA: what the device-mapper device named "data" is stacked on.
    let data = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .find_map(|d| {
            let name = std::fs::read_to_string(d.path().join("dm/name")).ok()?;
            if name.trim_end() != "data" {
                return None;
            }
            let slave = std::fs::read_dir(d.path().join("slaves"))
                .ok()?
                .flatten()
                .next()?;
            Some(Path::new("/dev").join(slave.file_name()))
        })?;
    let mut f = std::fs::File::open(&data).ok()?;
    let header = luks2::Luks2::read(&mut f).ok()?;
    let token = header
        .metadata
        .tokens
        .values()
        .find(|t| t.kind == tpm2::token::TYPE)?;
    let sealed = match tpm2::Tpm2Token::from_token(token) {
        Ok(t) => t.sealed,
        Err(e) => return Some(format!("token: {e}")),
    };
    let mut tpm = match tpm2::Device::open(tpm_dev) {
        Ok(d) => tpm2::Tpm::new(d),
        Err(e) => return Some(format!("refused: {e}")),
    };
    Some(match tpm2::unseal(&mut tpm, &sealed) {
        Ok(_) => "UNSEALED".to_owned(),
        Err(e) => format!("refused: {e}"),
    })
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Liftoff's records from the kernel log buffer (non-blocking: stops at the end).
fn liftoff_log() -> Vec<String> {
    let Ok(mut kmsg) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open("/dev/kmsg")
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // read() never returns more than the buffer holds.
                let record = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                if let Some(m) = liftoff_message(&record) {
                    out.push(m.to_owned());
                }
            }
            // EPIPE: a record was overwritten while reading; go on with the next one.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) => {}
            Err(_) => break,
        }
    }
    out
}

fn trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn block_devices() -> Vec<BlockDev> {
    let mut out: Vec<BlockDev> = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let dir = e.path();
            let mut slaves: Vec<String> = std::fs::read_dir(dir.join("slaves"))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter_map(|s| s.file_name().to_str().map(str::to_owned))
                .collect();
            slaves.sort();
            Some(BlockDev {
                dev: trimmed(&dir.join("dev"))?,
                dm_name: trimmed(&dir.join("dm/name")),
                logical_block_size: trimmed(&dir.join("queue/logical_block_size"))
                    .and_then(|s| s.parse().ok()),
                name,
                slaves,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn dm_targets(block: &[BlockDev]) -> Vec<DmTarget> {
    let Ok(control) = dm::Control::open() else {
        return Vec::new();
    };
    block
        .iter()
        .filter_map(|b| b.dm_name.as_deref())
        .filter_map(|name| {
            let (_, targets) = control.table_status(name).ok()?;
            Some(
                targets
                    .into_iter()
                    .map(|t| DmTarget {
                        device: name.to_owned(),
                        target_type: t.target_type.clone(),
                        sectors: t.length,
                        status: t.params.clone(),
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect()
}

/// Whether a file can be created (and is removed again) in `dir`.
fn writable(dir: &str) -> bool {
    let path = Path::new(dir).join(".liftoff-probe");
    let ok = std::fs::write(&path, b"probe").is_ok();
    let _ = std::fs::remove_file(&path);
    ok
}

fn root_dev() -> String {
    match rustix::fs::stat("/") {
        Ok(st) => format!(
            "{}:{}",
            rustix::fs::major(st.st_dev),
            rustix::fs::minor(st.st_dev)
        ),
        Err(_) => String::new(),
    }
}

/// `systemctl is-active multi-user.target`, when systemd runs the probe.
fn multi_user(under_systemd: bool) -> Option<String> {
    if !under_systemd {
        return None;
    }
    let out = std::process::Command::new("systemctl")
        .args(["is-active", "multi-user.target"])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `CapBnd:` of /proc/self/status.
fn cap_bnd() -> u64 {
    read("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// With the argument `write-marker`: a new marker on DATA (synced), so a later boot can
/// show whether DATA kept it.
fn write_marker() {
    let mut bytes = [0u8; 16];
    if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).is_err() {
        return;
    }
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Ok(mut f) = std::fs::File::create(MARKER_FILE) {
        let _ = f.write_all(text.as_bytes());
        let _ = f.sync_all();
    }
}

/// Reads the device behind `/` from start to end (`read-root`): with dm-verity every
/// block is checked on the way.
fn read_root(root_dev: &str) -> ReadBack {
    // No udev, so no /dev/block links: the kernel names the node in uevent.
    let path = read(&format!("/sys/dev/block/{root_dev}/uevent"))
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(|n| format!("/dev/{n}"))
        .unwrap_or_else(|| format!("/sys/dev/block/{root_dev} (no DEVNAME)"));
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let error = match std::fs::File::open(&path) {
        Err(e) => Some(e.to_string()),
        Ok(mut f) => loop {
            match f.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => bytes += n as u64,
                Err(e) => break Some(e.to_string()),
            }
        },
    };
    ReadBack {
        device: path,
        bytes,
        error,
    }
}

fn disk_sectors() -> u64 {
    read("/sys/block/vda/size").trim().parse().unwrap_or(0)
}

fn run(program: &str, args: &[&str]) -> (Option<i32>, String) {
    match std::process::Command::new(program).args(args).output() {
        Ok(out) => (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_owned(),
        ),
        Err(e) => (None, format!("running {program}: {e}")),
    }
}

/// `grow-live`: waits (at most two minutes) for the disk to grow under the running guest,
/// then grows DATA (partition 9, mounted at /local, unencrypted) and its file system.
fn grow_live() -> GrowLive {
    let before = disk_sectors();
    let local_bytes_before = local_bytes();
    let marker_before = std::fs::read_to_string(MARKER_FILE).ok();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{WAITING_FOR_GROWTH}");
    let _ = out.flush();
    drop(out);
    for _ in 0..1200 {
        if disk_sectors() > before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (growpart_exit, growpart_output) = run("/usr/local/sbin/growpart", &["/dev/vda", "9"]);
    let (resize2fs_exit, _) = run("/usr/sbin/resize2fs", &["/dev/vda9"]);
    let (second_growpart_exit, second_growpart_output) =
        run("/usr/local/sbin/growpart", &["/dev/vda", "9"]);
    GrowLive {
        disk_sectors_before: before,
        disk_sectors_after: disk_sectors(),
        local_bytes_before,
        marker_before,
        growpart_exit,
        growpart_output,
        resize2fs_exit,
        second_growpart_exit,
        second_growpart_output,
    }
}

fn local_bytes() -> u64 {
    rustix::fs::statvfs("/local")
        .map(|s| s.f_blocks.saturating_mul(s.f_frsize))
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "write-marker") {
        write_marker();
    }
    let grow_live = std::env::args().any(|a| a == "grow-live").then(grow_live);
    let block = block_devices();
    let root_dev = root_dev();
    let read_root = std::env::args()
        .any(|a| a == "read-root")
        .then(|| read_root(&root_dev));
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
    let report = Report {
        root_dev,
        read_root,
        grow_live,
        dm: dm_targets(&block),
        block,
        etc_writable: writable("/etc"),
        usr_writable: writable("/usr"),
        under_systemd,
        multi_user: multi_user(under_systemd),
        cap_bnd: cap_bnd(),
        modprobe: read("/proc/sys/kernel/modprobe").trim_end().to_owned(),
        degraded: std::fs::read_to_string("/run/liftoff/degraded")
            .ok()
            .map(|s| s.trim_end().to_owned()),
        failures: std::fs::read_to_string("/run/liftoff/failures").ok(),
        status_json: std::path::Path::new("/usr/bin/prairiedog")
            .exists()
            .then(|| run("/usr/bin/prairiedog", &["status", "--json"]).1),
        local_marker: std::fs::read_to_string(MARKER_FILE).ok(),
        local_bytes: local_bytes(),
        tpm_unseal: tpm_unseal_attempt(),
        recovery_key: std::fs::read_to_string(RECOVERY_KEY_FILE)
            .ok()
            .map(|s| s.trim_end().to_owned()),
        tpm_pcr7: std::fs::read_to_string("/sys/class/tpm/tpm0/pcr-sha256/7")
            .ok()
            .map(|s| s.trim_end().to_lowercase()),
        pid: rustix::process::getpid().as_raw_nonzero().get(),
        argv: std::env::args().collect(),
        cmdline: read("/proc/cmdline").trim_end().to_owned(),
        mounts: parse_mountinfo(&read("/proc/self/mountinfo")),
        modules: parse_proc_modules(&read("/proc/modules")),
        liftoff_log: liftoff_log(),
    };
    let line = match serde_json::to_string(&report) {
        Ok(json) => format!("{MARKER}{json}\n"),
        Err(e) => format!("PROBE-ERROR: {e}\n"),
    };
    // The kernel prints to the same serial console without the tty's write lock, so a
    // message logged while the line goes out splits it. Only emergencies (the "Power down"
    // line among them) reach the console from here on; the line is written in one piece.
    let _ = std::fs::write("/proc/sys/kernel/printk", "1");
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    if report.pid == 1 {
        // Shut down as a host's init does: disk file systems unmounted (the bind mounts
        // first), so the next boot finds DATA clean and replays no journal, like any boot
        // after a clean shutdown. Best effort: a busy mount is left to the sync.
        for m in report.mounts.iter().rev() {
            if m.target != "/" && matches!(m.fstype.as_str(), "ext4" | "xfs") {
                let _ =
                    rustix::mount::unmount(m.target.as_str(), rustix::mount::UnmountFlags::empty());
            }
        }
        rustix::fs::sync();
        let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
        // Powering off failed: exiting would panic the kernel, so wait.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
