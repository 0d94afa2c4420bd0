use std::collections::HashMap;
use std::path::PathBuf;

use super::*;

/// Records every call; each map names the paths (or steps) that fail and how.
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    files: HashMap<PathBuf, String>,
    fail: HashMap<String, i32>,
}

impl Recorder {
    fn outcome(&self, what: &str) -> io::Result<()> {
        match self.fail.get(what) {
            Some(errno) => Err(io::Error::from_raw_os_error(*errno)),
            None => Ok(()),
        }
    }
}

impl Mounter for Recorder {
    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        self.calls.push(format!("mkdir {}", path.display()));
        Ok(())
    }
    fn mount(&mut self, step: &Mount, target: &Path) -> io::Result<()> {
        self.calls.push(format!(
            "mount {} {} {} {:?} {}",
            step.source,
            target.display(),
            step.fstype,
            step.flags,
            step.data
        ));
        self.outcome(&target.display().to_string())
    }
}

impl HostSystem for Recorder {
    fn read(&mut self, path: &Path) -> io::Result<String> {
        self.calls.push(format!("read {}", path.display()));
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }
    fn write(&mut self, path: &Path, data: &str) -> io::Result<()> {
        self.calls.push(format!("write {} {data}", path.display()));
        self.outcome(&path.display().to_string())
    }
    fn symlink(&mut self, target: &str, link: &Path) -> io::Result<()> {
        self.calls
            .push(format!("symlink {} -> {target}", link.display()));
        self.outcome("symlink")
    }
    fn netlink(&mut self, request: &[u8], seq: u32) -> io::Result<()> {
        let kind = u16::from_ne_bytes([request[4], request[5]]);
        self.calls.push(format!("netlink type {kind} seq {seq}"));
        self.outcome(&format!("netlink {kind}"))
    }
    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        self.calls.push(format!("sethostname {name}"));
        self.outcome("sethostname")
    }
}

fn recorder(controllers: &str) -> Recorder {
    let mut r = Recorder::default();
    r.files.insert(
        PathBuf::from("/sys/fs/cgroup/cgroup.controllers"),
        controllers.to_owned(),
    );
    r
}

#[test]
fn the_whole_plan_in_order() {
    let mut r = recorder("cpuset cpu io memory hugetlb pids rdma misc\n");
    let failed = setup(
        &mut r,
        Path::new("/"),
        "node-7",
        &[("net.core.somaxconn".to_owned(), "4096".to_owned())],
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        r.calls,
        [
            "mkdir /sys/fs/cgroup",
            "mount cgroup2 /sys/fs/cgroup cgroup2 MountFlags(NODEV | NOEXEC | NOSUID) nsdelegate",
            "mkdir /dev/pts",
            "mount devpts /dev/pts devpts MountFlags(NOEXEC | NOSUID) newinstance,ptmxmode=0666,mode=0620,gid=5",
            "mkdir /dev/shm",
            "mount shm /dev/shm tmpfs MountFlags(NODEV | NOSUID) mode=1777",
            "mkdir /dev/mqueue",
            "mount mqueue /dev/mqueue mqueue MountFlags(NODEV | NOEXEC | NOSUID) ",
            "symlink /dev/ptmx -> pts/ptmx",
            "read /sys/fs/cgroup/cgroup.controllers",
            "write /sys/fs/cgroup/cgroup.subtree_control +cpu +cpuset +io +memory +pids",
            "netlink type 16 seq 1",
            "netlink type 20 seq 2",
            "sethostname node-7",
            "write /proc/sys/net/ipv4/ip_forward 1",
            "write /proc/sys/fs/inotify/max_user_instances 8192",
            "write /proc/sys/net/core/somaxconn 4096",
        ]
    );
}

#[test]
fn every_step_is_tried_and_each_failure_named() {
    let mut r = recorder("cpu memory pids");
    for (what, errno) in [
        ("/sys/fs/cgroup", libc::ENODEV),
        ("/dev/mqueue", libc::ENODEV),
        ("symlink", libc::EROFS),
        ("netlink 16", libc::EPERM),
        // The kernel gave lo its address when it came up: not a failure.
        ("netlink 20", libc::EEXIST),
        ("sethostname", libc::EPERM),
        ("/proc/sys/net/ipv4/ip_forward", libc::ENOENT),
    ] {
        r.fail.insert(what.to_owned(), errno);
    }
    let failed: Vec<String> = setup(&mut r, Path::new("/"), "liftoff", &[])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        failed,
        [
            "mounting cgroup2 on /sys/fs/cgroup: No such device (os error 19)",
            "mounting mqueue on /dev/mqueue: No such device (os error 19)",
            "linking /dev/ptmx to pts/ptmx: Read-only file system (os error 30)",
            "the kernel offers no cgroup controller cpuset, io: containers get no such limits",
            "lo: setting it up: Operation not permitted (os error 1)",
            "setting the host name liftoff: Operation not permitted (os error 1)",
            "sysctl net.ipv4.ip_forward: No such file or directory (os error 2)",
        ]
    );
    // Nothing was skipped: the other sysctl was still written.
    assert!(r
        .calls
        .contains(&"write /proc/sys/fs/inotify/max_user_instances 8192".to_owned()));
    assert!(r
        .calls
        .contains(&"write /sys/fs/cgroup/cgroup.subtree_control +cpu +memory +pids".to_owned()));
}

#[test]
fn an_address_that_cannot_be_added_and_unreadable_controllers_are_failures() {
    let mut r = Recorder::default();
    r.fail.insert("netlink 20".to_owned(), libc::EPERM);
    let failed: Vec<String> = setup(&mut r, Path::new("/sysroot"), "h", &[])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        failed,
        [
            "/sys/fs/cgroup/cgroup.controllers: No such file or directory (os error 2)",
            "lo: adding 127.0.0.1/8: Operation not permitted (os error 1)",
        ]
    );
    assert!(r.calls.contains(&"mkdir /sysroot/dev/pts".to_owned()));
    assert!(r
        .calls
        .contains(&"write /sysroot/proc/sys/net/ipv4/ip_forward 1".to_owned()));
}

#[test]
fn controllers_enabled_are_those_offered() {
    assert_eq!(
        subtree_control("cpuset cpu io memory hugetlb pids rdma misc"),
        ("+cpu +cpuset +io +memory +pids".to_owned(), vec![])
    );
    assert_eq!(
        subtree_control("memory pids\n"),
        ("+memory +pids".to_owned(), vec!["cpu", "cpuset", "io"])
    );
    // "cpu" is a word, not a prefix of "cpuset".
    assert_eq!(
        subtree_control("cpuset"),
        ("+cpuset".to_owned(), vec!["cpu", "io", "memory", "pids"])
    );
    assert_eq!(subtree_control("").0, "");
}

#[test]
fn sysctl_keys_are_paths_under_proc_sys() {
    assert_eq!(
        sysctl_path("net.ipv4.ip_forward"),
        "proc/sys/net/ipv4/ip_forward"
    );
    // Every key of the list exists on this host's kernel, with a value of the same form.
    for (key, value) in SYSCTLS {
        let path = Path::new("/").join(sysctl_path(key));
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(!now.trim().is_empty(), "{}", path.display());
        assert!(value.parse::<u32>().is_ok(), "{key}={value}");
    }
}

/// What iproute2 6.1 sent, captured with
/// `unshare -rn strace -e trace=sendmsg -e write=3 -xx ip link set lo up` and
/// `... ip addr add 127.0.0.1/8 dev lo` (its sequence number, bytes 8-11, was 0x6b13f517).
const IP_LINK_SET_LO_UP: &str = "20 00 00 00 10 00 05 00 17 f5 13 6b 00 00 00 00 \
     00 00 00 00 01 00 00 00 01 00 00 00 01 00 00 00";
const IP_ADDR_ADD_127_0_0_1_8: &str = "28 00 00 00 14 00 05 06 17 f5 13 6b 00 00 00 00 \
     02 08 00 fe 01 00 00 00 08 00 02 00 7f 00 00 01 08 00 01 00 7f 00 00 01";

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Our request with iproute2's sequence number in it.
fn with_seq(mut ours: Vec<u8>, theirs: &[u8]) -> Vec<u8> {
    ours[8..12].copy_from_slice(&theirs[8..12]);
    ours
}

#[test]
fn netlink_requests_are_iproute2s() {
    // The golden bytes are little-endian; so are both test architectures.
    let golden = hex(IP_LINK_SET_LO_UP);
    assert_eq!(with_seq(link_up(LOOPBACK_INDEX, 1), &golden), golden);
    assert_eq!(
        &link_up(1, 0x0102_0304)[8..12],
        &0x0102_0304u32.to_ne_bytes()
    );
    let golden = hex(IP_ADDR_ADD_127_0_0_1_8);
    assert_eq!(
        with_seq(add_address(LOOPBACK_INDEX, [127, 0, 0, 1], 8, 2), &golden),
        golden
    );
}

/// The same comparison against iproute2 run now, in a network namespace of its own
/// (`unshare -rn`, no root needed), its requests read from strace's hex dump.
#[test]
fn netlink_requests_match_iproute2_run_now() {
    let out = std::process::Command::new("unshare")
        .args([
            "-rn",
            "sh",
            "-c",
            "strace -e trace=sendmsg -e write=3 -xx ip link set lo up && \
             ip addr del 127.0.0.1/8 dev lo && \
             strace -e trace=sendmsg -e write=3 -xx ip addr add 127.0.0.1/8 dev lo",
        ])
        .output()
        .expect("unshare (util-linux), strace and ip (iproute2)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // Hex dump lines: ` | 00010  00 00 ... 00  ascii |`; a new dump starts at offset 0.
    let mut dumps: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(" | ") else {
            continue;
        };
        let (offset, bytes) = rest.split_at(5);
        if offset == "00000" {
            dumps.push(Vec::new());
        }
        let bytes: String = bytes.chars().take(50).collect();
        dumps.last_mut().unwrap().extend(hex(&bytes));
    }
    assert_eq!(dumps.len(), 2, "{text}");
    assert_eq!(with_seq(link_up(1, 1), &dumps[0]), dumps[0]);
    assert_eq!(
        with_seq(add_address(1, [127, 0, 0, 1], 8, 2), &dumps[1]),
        dumps[1]
    );
}

#[test]
fn acknowledgements() {
    let ack = |kind: u16, seq: u32, error: i32| {
        let mut m = 36u32.to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&error.to_ne_bytes());
        m
    };
    assert_eq!(ack_errno(&ack(2, 7, 0), 7), Some(0));
    assert_eq!(ack_errno(&ack(2, 7, -libc::EEXIST), 7), Some(libc::EEXIST));
    assert_eq!(
        ack_errno(&ack(2, 6, 0), 7),
        None,
        "another request's answer"
    );
    assert_eq!(ack_errno(&ack(16, 7, 0), 7), None, "not NLMSG_ERROR");
    assert_eq!(ack_errno(&ack(2, 7, i32::MIN), 7), None);
    for n in 0..20 {
        assert_eq!(ack_errno(&ack(2, 7, 0)[..n], 7), None, "{n} bytes");
    }
}

/// The real netlink path, as an unprivileged process: the kernel answers the request
/// with EPERM (no CAP_NET_ADMIN over the host's network namespace), which shows the
/// request went out and the acknowledgement was read and matched.
#[test]
fn the_kernel_acknowledges_a_request() {
    if rustix::process::geteuid().is_root() {
        // As root this would really set the host's lo up: it is up already, so the
        // kernel answers 0.
        assert!(mounts::System
            .netlink(&link_up(LOOPBACK_INDEX, 9), 9)
            .is_ok());
    } else {
        let e = mounts::System
            .netlink(&link_up(LOOPBACK_INDEX, 9), 9)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    }
}
