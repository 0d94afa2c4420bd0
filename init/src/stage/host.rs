//! The container host (`liftoff.handoff=containerd`): what runc, containerd and CNI expect
//! of the system before containerd starts, set up by PID 1 after switch_root.
//!
//! 1. [`mounts`]: cgroup2 at /sys/fs/cgroup (`nsdelegate`), devpts at /dev/pts (a new
//!    instance, `ptmxmode=0666`, `mode=0620`, `gid=5`: Debian's `tty` group), /dev/shm
//!    (tmpfs, 1777) and /dev/mqueue (POSIX message queues); /dev/ptmx becomes a link to
//!    `pts/ptmx`, the multiplexer of that instance.
//! 2. [`CONTROLLERS`] enabled in the root cgroup's `cgroup.subtree_control` (those the
//!    kernel offers in `cgroup.controllers`). The root cgroup is exempt from cgroup v2's
//!    "no internal processes" rule, so PID 1 and containerd stay in it; runc creates each
//!    container's cgroup below and enables the controllers on the way down itself.
//! 3. `lo` up and 127.0.0.1/8 on it over rtnetlink, the messages `ip link set lo up` and
//!    `ip addr add 127.0.0.1/8 dev lo` send ([`link_up`], [`add_address`]). The kernel
//!    gives lo 127.0.0.1/8 and ::1 itself when it comes up, so the address is usually
//!    there already (EEXIST counts as done).
//! 4. The host name: `liftoff.hostname`, else [`DEFAULT_HOSTNAME`].
//! 5. [`SYSCTLS`], written under /proc/sys.
//!
//! Every step is tried; each failure is one [`HostError`] that the caller hands to the
//! failure policy, which boots degraded (a host without a controller still runs
//! containerd; rebooting would not bring the controller back). docs/container-host.md says
//! why each setting is there.

use std::fmt;
use std::io;
use std::path::Path;

use super::mounts::{self, Mount, MountError, MountFlags, Mounter};

/// The cgroup v2 controllers containerd and runc use for resource limits.
pub const CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// The sysctls a container host needs (docs/container-host.md says why each).
pub const SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.ip_forward", "1"),
    ("fs.inotify.max_user_instances", "8192"),
];

/// The host name without `liftoff.hostname`.
pub const DEFAULT_HOSTNAME: &str = "liftoff";

/// The loopback device's interface index, the same in every network namespace
/// (`LOOPBACK_IFINDEX`, include/net/flow.h).
pub const LOOPBACK_INDEX: u32 = 1;

/// The container host's mounts, in order.
pub fn mounts() -> [Mount; 4] {
    let nosuid_nodev = MountFlags::NOSUID | MountFlags::NODEV;
    let nosuid_nodev_noexec = nosuid_nodev | MountFlags::NOEXEC;
    [
        Mount::new(
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nosuid_nodev_noexec,
            "nsdelegate",
        ),
        Mount::new(
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        Mount::new("shm", "/dev/shm", "tmpfs", nosuid_nodev, "mode=1777"),
        Mount::new("mqueue", "/dev/mqueue", "mqueue", nosuid_nodev_noexec, ""),
    ]
}

/// What to write to the root's `cgroup.subtree_control` given its `cgroup.controllers`
/// (`available`), and the [`CONTROLLERS`] the kernel does not offer.
pub fn subtree_control(available: &str) -> (String, Vec<&'static str>) {
    let mut enable = String::new();
    let mut missing = Vec::new();
    for c in CONTROLLERS {
        if available.split_whitespace().any(|a| a == c) {
            if !enable.is_empty() {
                enable.push(' ');
            }
            enable.push('+');
            enable.push_str(c);
        } else {
            missing.push(c);
        }
    }
    (enable, missing)
}

/// `net.ipv4.ip_forward` -> `proc/sys/net/ipv4/ip_forward` (relative to a root).
pub fn sysctl_path(key: &str) -> String {
    format!("proc/sys/{}", key.replace('.', "/"))
}

const NLMSG_HDRLEN: usize = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const IFF_UP: u32 = 0x1;
const AF_INET: u8 = 2;
const RT_SCOPE_HOST: u8 = 254;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// An rtnetlink request: `struct nlmsghdr` (RFC 3549 section 2.3.2) and `body`.
fn request(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in the sender.
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// RTM_NEWLINK setting IFF_UP on interface `index` (`struct ifinfomsg`, rtnetlink(7)).
pub fn link_up(index: u32, seq: u32) -> Vec<u8> {
    let mut body = [0u8; 16];
    // ifi_family AF_UNSPEC, padding, ifi_type 0; then ifi_index, ifi_flags, ifi_change.
    for (at, v) in [(4, index), (8, IFF_UP), (12, IFF_UP)] {
        if let Some(field) = body.get_mut(at..at + 4) {
            field.copy_from_slice(&v.to_ne_bytes());
        }
    }
    request(RTM_NEWLINK, 0, seq, &body)
}

/// RTM_NEWADDR for `addr/prefix` on interface `index`, host scope, with IFA_LOCAL and
/// IFA_ADDRESS as iproute2 sends them (`struct ifaddrmsg`, rtnetlink(7)).
pub fn add_address(index: u32, addr: [u8; 4], prefix: u8, seq: u32) -> Vec<u8> {
    let mut body = vec![AF_INET, prefix, 0, RT_SCOPE_HOST];
    body.extend_from_slice(&index.to_ne_bytes());
    for kind in [IFA_LOCAL, IFA_ADDRESS] {
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(&addr);
    }
    request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, seq, &body)
}

/// The errno of the kernel's answer to request `seq` (`NLMSG_ERROR`, 0 for success);
/// `None` if `reply` is no such answer.
pub fn ack_errno(reply: &[u8], seq: u32) -> Option<i32> {
    let word = |at: usize| -> Option<[u8; 4]> { reply.get(at..at + 4)?.try_into().ok() };
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if kind != NLMSG_ERROR || u32::from_ne_bytes(word(8)?) != seq {
        return None;
    }
    i32::from_ne_bytes(word(NLMSG_HDRLEN)?).checked_neg()
}

/// A container-host step that failed; the boot goes on without it.
#[derive(Debug)]
pub enum HostError {
    Mount(MountError),
    Ptmx {
        source: io::Error,
    },
    Controllers {
        missing: Vec<&'static str>,
    },
    Cgroup {
        file: &'static str,
        source: io::Error,
    },
    Loopback {
        step: &'static str,
        source: io::Error,
    },
    Hostname {
        name: String,
        source: io::Error,
    },
    Sysctl {
        key: String,
        source: io::Error,
    },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Mount(e) => e.fmt(f),
            HostError::Ptmx { source } => write!(f, "linking /dev/ptmx to pts/ptmx: {source}"),
            HostError::Controllers { missing } => write!(
                f,
                "the kernel offers no cgroup controller {}: containers get no such limits",
                crate::infra::join(missing, ", ")
            ),
            HostError::Cgroup { file, source } => {
                write!(f, "/sys/fs/cgroup/{file}: {source}")
            }
            HostError::Loopback { step, source } => write!(f, "lo: {step}: {source}"),
            HostError::Hostname { name, source } => {
                write!(f, "setting the host name {name}: {source}")
            }
            HostError::Sysctl { key, source } => write!(f, "sysctl {key}: {source}"),
        }
    }
}

impl std::error::Error for HostError {}

/// The effects [`setup`] needs beyond mounting; [`System`](mounts::System) makes the calls.
pub trait HostSystem: Mounter {
    fn read(&mut self, path: &Path) -> io::Result<String>;
    fn write(&mut self, path: &Path, data: &str) -> io::Result<()>;
    /// Replaces whatever is at `link` with a symbolic link to `target`.
    fn symlink(&mut self, target: &str, link: &Path) -> io::Result<()>;
    /// Sends one rtnetlink request and waits for its acknowledgement (errno 0).
    fn netlink(&mut self, request: &[u8], seq: u32) -> io::Result<()>;
    fn set_hostname(&mut self, name: &str) -> io::Result<()>;
}

impl HostSystem for mounts::System {
    fn read(&mut self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&mut self, path: &Path, data: &str) -> io::Result<()> {
        std::fs::write(path, data)
    }

    fn symlink(&mut self, target: &str, link: &Path) -> io::Result<()> {
        match std::fs::remove_file(link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::os::unix::fs::symlink(target, link)
    }

    fn netlink(&mut self, request: &[u8], seq: u32) -> io::Result<()> {
        use rustix::net::{recv, send, socket_with, AddressFamily, SocketFlags};
        // Protocol `None` is NETLINK_ROUTE.
        let fd = socket_with(
            AddressFamily::NETLINK,
            rustix::net::SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )?;
        // Unconnected, the socket's default peer is the kernel.
        send(&fd, request, rustix::net::SendFlags::empty())?;
        let mut reply = [0u8; 512];
        loop {
            let (n, _) = recv(&fd, &mut reply, rustix::net::RecvFlags::empty())?;
            match ack_errno(reply.get(..n).unwrap_or_default(), seq) {
                Some(0) => return Ok(()),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => continue,
            }
        }
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        rustix::system::sethostname(name.as_bytes()).map_err(Into::into)
    }
}

/// Sets up the container host under `root` (the booted system's `/`): every step is
/// tried, and the failures come back in order. `sysctls` are the host's own (from PRIVATE,
/// [`super::settings`]), written after [`SYSCTLS`] so they win.
pub fn setup(
    sys: &mut impl HostSystem,
    root: &Path,
    hostname: &str,
    sysctls: &[(String, String)],
) -> Vec<HostError> {
    let mut failed = Vec::new();
    for step in mounts() {
        if let Err(e) = mounts::run(sys, root, std::slice::from_ref(&step)) {
            failed.push(HostError::Mount(e));
        }
    }
    if let Err(source) = sys.symlink("pts/ptmx", &root.join("dev/ptmx")) {
        failed.push(HostError::Ptmx { source });
    }

    let cgroup = root.join("sys/fs/cgroup");
    let file = "cgroup.controllers";
    match sys.read(&cgroup.join(file)) {
        Ok(available) => {
            let (enable, missing) = subtree_control(&available);
            let file = "cgroup.subtree_control";
            if let Err(source) = sys.write(&cgroup.join(file), &enable) {
                failed.push(HostError::Cgroup { file, source });
            }
            if !missing.is_empty() {
                failed.push(HostError::Controllers { missing });
            }
        }
        Err(source) => failed.push(HostError::Cgroup { file, source }),
    }

    if let Err(source) = sys.netlink(&link_up(LOOPBACK_INDEX, 1), 1) {
        failed.push(HostError::Loopback {
            step: "setting it up",
            source,
        });
    }
    match sys.netlink(&add_address(LOOPBACK_INDEX, [127, 0, 0, 1], 8, 2), 2) {
        Err(e) if e.raw_os_error() != Some(rustix::io::Errno::EXIST.raw_os_error()) => {
            failed.push(HostError::Loopback {
                step: "adding 127.0.0.1/8",
                source: e,
            })
        }
        _ => {}
    }

    if let Err(source) = sys.set_hostname(hostname) {
        failed.push(HostError::Hostname {
            name: hostname.to_owned(),
            source,
        });
    }
    let defaults = SYSCTLS.map(|(k, v)| (k.to_owned(), v.to_owned()));
    failed.extend(write_sysctls(sys, root, &defaults));
    failed.extend(write_sysctls(sys, root, sysctls));
    failed
}

/// Writes each (`net.ipv4.ip_forward`, `1`) under `root`'s /proc/sys, in order.
pub fn write_sysctls(
    sys: &mut impl HostSystem,
    root: &Path,
    sysctls: &[(String, String)],
) -> Vec<HostError> {
    let mut failed = Vec::new();
    for (key, value) in sysctls {
        if let Err(source) = sys.write(&root.join(sysctl_path(key)), value) {
            failed.push(HostError::Sysctl {
                key: key.clone(),
                source,
            });
        }
    }
    failed
}

#[cfg(test)]
mod tests;
