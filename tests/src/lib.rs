//! The in-guest probe: what a booted Liftoff guest looks like from the inside, as one JSON
//! line on the console that the host-side VM tests parse.
//!
//! The probe is the next stage after PID 1 in test images. It reads what it can see
//! (command line, mounts, loaded modules, Liftoff's kernel-log lines), prints
//! `PROBE-JSON: {...}` and powers the machine off.

use serde::{Deserialize, Serialize};

/// The marker that starts the probe's line on the console.
pub const MARKER: &str = "PROBE-JSON: ";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub pid: i32,
    pub argv: Vec<String>,
    pub cmdline: String,
    pub mounts: Vec<MountInfo>,
    pub modules: Vec<String>,
    /// Liftoff's own kernel-log records (`liftoff: ...`), message text only.
    pub liftoff_log: Vec<String>,
    /// `major:minor` of the device behind `/`.
    #[serde(default)]
    pub root_dev: String,
    /// Block devices from /sys/block.
    #[serde(default)]
    pub block: Vec<BlockDev>,
    /// Device-mapper targets (status lines only: a crypt table holds a key).
    #[serde(default)]
    pub dm: Vec<DmTarget>,
    /// Whether a file could be created in /etc.
    #[serde(default)]
    pub etc_writable: bool,
    /// Whether a file could be created in /usr (it must not: the root is read-only).
    #[serde(default)]
    pub usr_writable: bool,
    /// Whether the probe runs as a systemd service (`INVOCATION_ID` set).
    #[serde(default)]
    pub under_systemd: bool,
    /// Under systemd: what `systemctl is-active multi-user.target` says.
    #[serde(default)]
    pub multi_user: Option<String>,
    /// The bounding set (`CapBnd` of /proc/self/status).
    #[serde(default)]
    pub cap_bnd: u64,
    /// The kernel's module helper (`/proc/sys/kernel/modprobe`) as the next stage finds it.
    #[serde(default)]
    pub modprobe: String,
    /// Why PID 1 booted degraded (`/run/liftoff/degraded`), if it did.
    #[serde(default)]
    pub degraded: Option<String>,
    /// The failure history PID 1 copied to /run (`prairiedog::pstore::RUN_FILE`), if any.
    #[serde(default)]
    pub failures: Option<String>,
    /// The output of `prairiedog status --json` in the guest, if the root has prairiedog.
    #[serde(default)]
    pub status_json: Option<String>,
    /// Contents of /local/liftoff-marker (written by `write-marker` on an earlier boot).
    #[serde(default)]
    pub local_marker: Option<String>,
    /// Size of the file system on /local in bytes.
    #[serde(default)]
    pub local_bytes: u64,
    /// PCR 7 of the TPM's SHA-256 bank in hex (`/sys/class/tpm/tpm0/pcr-sha256/7`), when
    /// the guest has a TPM and its driver loaded.
    #[serde(default)]
    pub tpm_pcr7: Option<String>,
    /// What became of an attempt, from the booted system, to unseal DATA's TPM2 token
    /// (`refused: <error>` or `UNSEALED`); `None` without a TPM or a token.
    #[serde(default)]
    pub tpm_unseal: Option<String>,
    /// The recovery key PID 1 handed over in /run/liftoff/recovery-key, if any. The probe
    /// gives it away so the host can test it with cryptsetup, and so a test can show that
    /// nothing else on the console carries it.
    #[serde(default)]
    pub recovery_key: Option<String>,
    /// With the argument `read-root`: reading the whole root device back.
    #[serde(default)]
    pub read_root: Option<ReadBack>,
    /// With the argument `grow-live`: growing DATA while it is mounted.
    #[serde(default)]
    pub grow_live: Option<GrowLive>,
}

/// What `grow-live` saw: the disk grew under the running guest (the host resized it), then
/// `growpart` grew DATA while mounted at /local, `resize2fs` grew the file system online,
/// and a second `growpart` found nothing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrowLive {
    pub disk_sectors_before: u64,
    pub disk_sectors_after: u64,
    pub local_bytes_before: u64,
    pub marker_before: Option<String>,
    pub growpart_exit: Option<i32>,
    pub growpart_output: String,
    pub resize2fs_exit: Option<i32>,
    pub second_growpart_exit: Option<i32>,
    pub second_growpart_output: String,
}

/// What the probe prints when `grow-live` waits for the host to resize the disk.
pub const WAITING_FOR_GROWTH: &str = "PROBE-WAITING-FOR-GROWTH";

/// The outcome of reading a device from start to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadBack {
    pub device: String,
    /// Bytes read before the end or the first error.
    pub bytes: u64,
    /// The error that stopped the read (`None`: read to the end).
    pub error: Option<String>,
}

/// Where the probe keeps its marker on DATA.
pub const MARKER_FILE: &str = "/local/liftoff-marker";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDev {
    pub name: String,
    /// `major:minor`.
    pub dev: String,
    /// What it is built on (`/sys/block/<name>/slaves`).
    pub slaves: Vec<String>,
    /// The device-mapper name, for dm devices.
    pub dm_name: Option<String>,
    /// `queue/logical_block_size`: 4096 on a 4Kn disk and on what is built on it.
    pub logical_block_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmTarget {
    pub device: String,
    pub target_type: String,
    pub sectors: u64,
    pub status: String,
}

impl Report {
    /// The block device `dev` (`major:minor`).
    pub fn block_by_dev(&self, dev: &str) -> Option<&BlockDev> {
        self.block.iter().find(|b| b.dev == dev)
    }

    pub fn mount(&self, target: &str) -> Option<&MountInfo> {
        self.mounts.iter().rev().find(|m| m.target == target)
    }

    /// Timeline marks: (stage, boottime_us) in log order.
    pub fn timeline(&self) -> Vec<(String, u64)> {
        self.liftoff_log
            .iter()
            .filter_map(|l| {
                let rest = l.strip_prefix("timeline stage=")?;
                let (stage, t) = rest.split_once(" boottime_us=")?;
                Some((stage.to_owned(), t.parse().ok()?))
            })
            .collect()
    }

    /// Finds the probe line among console lines and parses it.
    pub fn from_console(lines: &[String]) -> Option<Result<Report, serde_json::Error>> {
        let lines = process_lines(lines);
        let json = lines
            .iter()
            .find_map(|l| l.split_once(MARKER).map(|(_, json)| json))?;
        Some(serde_json::from_str(json))
    }
}

/// Where a kernel message (`[   15.485787] ...`: seconds and six digits of them) starts
/// in `line`, if one does.
fn kernel_message(line: &str) -> Option<usize> {
    line.match_indices('[').map(|(i, _)| i).find(|&i| {
        let rest = line[i + 1..].trim_start_matches(' ');
        let Some((stamp, _)) = rest.split_once("] ") else {
            return false;
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        stamp
            .split_once('.')
            .is_some_and(|(s, us)| digits(s) && digits(us) && us.len() == 6)
    })
}

/// The console's lines as the guest's processes wrote them. The kernel writes its
/// messages to the serial port past the tty a process writes through, so a message can
/// land inside a line being sent (`LIFTOFF-CT oom_kill [  15.48] cni0: ... state`, then
/// `1`): the text before the message and the next line that is not a kernel message
/// are one line. Lines that start with a kernel message are kept as they are (in the
/// order the console shows them, before the line they cut). The probe's line is read
/// through it too ([`Report::from_console`]): late module loads log while it prints.
pub fn process_lines(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cut: Option<String> = None;
    for line in lines {
        match kernel_message(line) {
            Some(0) => out.push(line.clone()),
            Some(at) => cut.get_or_insert_with(String::new).push_str(&line[..at]),
            None => out.push(cut.take().unwrap_or_default() + line),
        }
    }
    out.extend(cut);
    out
}

/// `/proc/self/mountinfo`: fields 5 (mount point), 6 (options), and after the ` - `
/// separator the type and source.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let source = right.next()?;
            Some(MountInfo {
                source: unescape(source),
                target: unescape(fields.get(4)?),
                fstype: fstype.to_owned(),
                options: fields.get(5)?.to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `/proc/modules`: the first field of each line.
pub fn parse_proc_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A `/dev/kmsg` record `prio,seq,time,flags;message` -> the message if it is Liftoff's.
pub fn liftoff_message(record: &str) -> Option<&str> {
    let (_, message) = record.split_once(';')?;
    message.trim_end().strip_prefix("liftoff: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo() {
        let text = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n\
                    25 1 0:5 / /dev rw,nosuid,noexec shared:2 - devtmpfs devtmpfs rw,size=1k,mode=755\n\
                    30 1 0:30 / /with\\040space ro - tmpfs tmp\\134fs rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0],
            MountInfo {
                source: "proc".into(),
                target: "/proc".into(),
                fstype: "proc".into(),
                options: "rw,nosuid,nodev,noexec,relatime".into()
            }
        );
        assert_eq!(m[1].fstype, "devtmpfs");
        assert_eq!(m[2].target, "/with space");
        assert_eq!(m[2].source, "tmp\\fs");
    }

    #[test]
    fn kmsg_records() {
        assert_eq!(
            liftoff_message("6,339,5140900,-;liftoff: timeline stage=pid1 boottime_us=5\n"),
            Some("timeline stage=pid1 boottime_us=5")
        );
        assert_eq!(liftoff_message("6,1,2,-;systemd: hello"), None);
        assert_eq!(liftoff_message("garbage"), None);
    }

    #[test]
    fn timeline_and_console() {
        let r = Report {
            pid: 1,
            argv: vec![],
            cmdline: String::new(),
            mounts: vec![],
            modules: parse_proc_modules(
                "dm_mod 184320 0 - Live 0x0\nvirtio 16384 2 virtio_blk, Live 0x0\n",
            ),
            root_dev: "253:0".into(),
            block: vec![BlockDev {
                name: "dm-0".into(),
                dev: "253:0".into(),
                slaves: vec!["vda3".into(), "vda4".into()],
                dm_name: Some("root".into()),
                logical_block_size: Some(4096),
            }],
            dm: vec![],
            etc_writable: true,
            usr_writable: false,
            under_systemd: false,
            multi_user: None,
            cap_bnd: 0,
            modprobe: String::new(),
            degraded: None,
            failures: None,
            status_json: None,
            local_marker: None,
            local_bytes: 0,
            tpm_pcr7: None,
            tpm_unseal: None,
            recovery_key: None,
            read_root: None,
            grow_live: None,
            liftoff_log: vec![
                "timeline stage=pid1 boottime_us=10".into(),
                "loaded 3 modules".into(),
                "timeline stage=modules boottime_us=30".into(),
            ],
        };
        assert_eq!(r.modules, ["dm_mod", "virtio"]);
        assert_eq!(
            r.block_by_dev("253:0").unwrap().dm_name.as_deref(),
            Some("root")
        );
        assert_eq!(
            r.block_by_dev("253:0").unwrap().dm_name.as_deref(),
            Some("root")
        );
        assert_eq!(
            r.timeline(),
            [("pid1".to_string(), 10), ("modules".to_string(), 30)]
        );
        let line = format!("[    1.0] x {MARKER}{}", serde_json::to_string(&r).unwrap());
        let parsed = Report::from_console(&["noise".into(), line.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(parsed, r);
        // A kernel message that landed inside the probe's line.
        let (head, tail) = line.split_at(line.len() / 2);
        let cut = [
            format!("{head}[    2.345678] virtio_net virtio1 enp0s2: renamed"),
            "[    2.345999] evdev: loaded".into(),
            tail.to_string(),
        ];
        assert_eq!(Report::from_console(&cut).unwrap().unwrap(), r);
        assert!(Report::from_console(&["noise".into()]).is_none());
    }

    #[test]
    fn kernel_messages_inside_a_line_are_taken_out() {
        let console = [
            "[   15.332303] oom-kill:constraint=CONSTRAINT_MEMCG,task=awk",
            "LIFTOFF-CT hog exit 137",
            "LIFTOFF-CT oom_kill [   15.485787] cni0: port 1(veth0) entered disabled state",
            "[   15.509594] device veth0 left promiscuous mode",
            "1",
            "LIFTOFF-CT a[1.5] b[ 2.x] c[    9.000001] eth0: up",
            "",
            "\u{1b}[36mINFO\u{1b}[0m[2026-12-06T20:34:38.512989267Z] shim disconnected",
            "liftoff-workload: done; [    3.100000] x",
        ]
        .map(String::from);
        assert_eq!(
            process_lines(&console),
            [
                "[   15.332303] oom-kill:constraint=CONSTRAINT_MEMCG,task=awk",
                "LIFTOFF-CT hog exit 137",
                "[   15.509594] device veth0 left promiscuous mode",
                "LIFTOFF-CT oom_kill 1",
                "LIFTOFF-CT a[1.5] b[ 2.x] c",
                "\u{1b}[36mINFO\u{1b}[0m[2026-12-06T20:34:38.512989267Z] shim disconnected",
                "liftoff-workload: done; ",
            ]
        );
    }
}
