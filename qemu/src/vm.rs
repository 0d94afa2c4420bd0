//! Running a guest under QEMU and reading its serial console.
//!
//! QEMU runs with software emulation only (`-accel tcg`), no default devices, no display,
//! the serial console on its standard output and `-no-reboot`, so that a guest reboot ends
//! QEMU as a power-off does. A reader thread copies every console line to a log file and
//! hands it to the test, which waits for the lines it expects with a deadline: no fixed
//! sleeps. QEMU is killed when the [`Vm`] is dropped, whatever happened.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use liftoff_image::artifacts;

use crate::Arch;

/// The QEMU binary for a guest of `arch`.
pub fn qemu_binary(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu-system-x86_64",
        Arch::Aarch64 => "qemu-system-aarch64",
    }
}

/// Machine and CPU under TCG. KVM is never used: a KVM guest hangs on these hosts.
/// `pauth-impdef` makes pointer authentication cheap to emulate on aarch64.
pub fn machine_args(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &["-M", "q35", "-accel", "tcg", "-cpu", "max"],
        Arch::Aarch64 => &["-M", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on"],
    }
}

/// Where console logs of VM tests are kept: `vm-logs` in the cargo target folder.
pub fn log_dir() -> PathBuf {
    artifacts::target_dir().join("vm-logs")
}

/// The controller a disk is attached to, each on the PCI bus with a controller of its own.
///
/// What the guest kernel calls the disk follows from it: `vdX` (virtio-blk), `nvmeNn1`
/// (NVMe namespace 1), `sdX` (SCSI: virtio-scsi, and AHCI through libata).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Bus {
    /// `virtio-blk-pci`: QEMU/KVM's usual disk.
    #[default]
    VirtioBlk,
    /// `nvme` with the disk as namespace 1: EC2 Nitro (EBS), Graviton, current servers.
    Nvme,
    /// `virtio-scsi-pci` with the disk as `scsi-hd` on its bus: GCE, Proxmox.
    VirtioScsi,
    /// `ich9-ahci` with the disk as `ide-hd` on its first port: SATA on bare metal.
    /// x86_64 `q35` only in these tests (Debian's cloud kernels have no AHCI driver).
    Ahci,
}

impl std::str::FromStr for Bus {
    type Err = String;

    fn from_str(s: &str) -> Result<Bus, String> {
        match s {
            "virtio-blk" => Ok(Bus::VirtioBlk),
            "nvme" => Ok(Bus::Nvme),
            "virtio-scsi" => Ok(Bus::VirtioScsi),
            "ahci" => Ok(Bus::Ahci),
            other => Err(format!(
                "unknown bus {other:?} (virtio-blk, nvme, virtio-scsi or ahci)"
            )),
        }
    }
}

impl Bus {
    /// The guest's name for partition `number` of the first disk on this bus (when no other
    /// disk shares the bus's naming: `vda`, `nvme0n1`, `sda`).
    pub fn first_partition(self, number: u32) -> String {
        match self {
            Bus::VirtioBlk => format!("vda{number}"),
            Bus::Nvme => format!("nvme0n1p{number}"),
            Bus::VirtioScsi | Bus::Ahci => format!("sda{number}"),
        }
    }

    /// The `-device` arguments that put drive `id` on this bus: the controller (if the bus
    /// needs one of its own) and the disk. `bootindex` orders the firmware's boot options.
    fn devices(
        self,
        id: &str,
        serial: Option<&str>,
        block_size: Option<u32>,
        bootindex: Option<usize>,
    ) -> Vec<String> {
        let mut disk = match self {
            Bus::VirtioBlk => format!("virtio-blk-pci,drive={id}"),
            Bus::Nvme => format!("nvme,drive={id}"),
            Bus::VirtioScsi => format!("scsi-hd,drive={id},bus={id}-scsi.0"),
            Bus::Ahci => format!("ide-hd,drive={id},bus={id}-ahci.0"),
        };
        match (self, serial) {
            (_, Some(serial)) => disk.push_str(&format!(",serial={serial}")),
            // NVMe controllers must have a serial number.
            (Bus::Nvme, None) => disk.push_str(&format!(",serial={id}")),
            _ => {}
        }
        if let Some(bytes) = block_size {
            disk.push_str(&format!(
                ",logical_block_size={bytes},physical_block_size={bytes}"
            ));
        }
        if let Some(index) = bootindex {
            disk.push_str(&format!(",bootindex={index}"));
        }
        let controller = match self {
            Bus::VirtioBlk | Bus::Nvme => None,
            Bus::VirtioScsi => Some(format!("virtio-scsi-pci,id={id}-scsi")),
            Bus::Ahci => Some(format!("ich9-ahci,id={id}-ahci")),
        };
        controller
            .into_iter()
            .chain(std::iter::once(disk))
            .flat_map(|d| ["-device".to_owned(), d])
            .collect()
    }
}

/// A raw disk image and the controller it is attached to.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub read_only: bool,
    /// Serial number the guest sees in `/sys/block/*/serial` (NVMe: the controller's; one
    /// is made up when `None`, as NVMe requires one).
    pub serial: Option<String>,
    pub bus: Bus,
    /// Logical and physical block size the guest sees (`logical_block_size=`,
    /// `physical_block_size=`); `None` is QEMU's 512. 4096 makes a 4Kn disk.
    pub block_size: Option<u32>,
}

impl Disk {
    /// A writable virtio-blk disk with this serial number.
    pub fn new(path: &Path, serial: &str) -> Disk {
        Disk {
            path: path.to_path_buf(),
            read_only: false,
            serial: Some(serial.to_owned()),
            bus: Bus::VirtioBlk,
            block_size: None,
        }
    }

    /// The same disk on `bus`.
    pub fn on(self, bus: Bus) -> Disk {
        Disk { bus, ..self }
    }

    /// The same disk with `bytes`-byte logical and physical blocks.
    pub fn with_block_size(self, bytes: u32) -> Disk {
        Disk {
            block_size: Some(bytes),
            ..self
        }
    }
}

/// How to start a guest.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub arch: Arch,
    /// The kernel QEMU loads itself; `None` leaves the boot to the firmware in `extra`
    /// (see `firmware::vm_config`), and `initrd` and `append` are then unused.
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    /// Kernel command line; the console and `panic=-1` are prepended.
    pub append: String,
    pub memory_mib: u32,
    /// Virtual CPUs (`-smp`): 1 unless a benchmark asks for more (TCG runs them on host
    /// threads of their own).
    pub cpus: u32,
    /// The disks, each on its [`Bus`], in this order on the PCI bus. When they are not all
    /// on one bus, this is also the firmware's boot order (`bootindex`): otherwise the
    /// firmware would order them by controller type.
    pub disks: Vec<Disk>,
    /// Extra QEMU arguments.
    pub extra: Vec<String>,
    /// A QMP socket for [`Vm::qmp`] (e.g. `block_resize` while the guest runs).
    pub qmp: Option<PathBuf>,
    /// A TPM 2.0 for the guest: swtpm keeps its state in this folder (it survives the VM,
    /// as a real TPM's does across reboots; a new folder is a cleared TPM). x86_64 gets a
    /// `tpm-tis` device, aarch64 `virt` a `tpm-tis-device`; the firmware measures into it.
    pub tpm: Option<PathBuf>,
    /// Where the console log goes.
    pub log: PathBuf,
    /// A virtio-net NIC on QEMU's user network with `restrict=on`: the guest reaches only
    /// QEMU's built-in DHCP server (it hands out 10.0.2.15, router 10.0.2.2); no packet
    /// leaves the host. There is never an unrestricted NIC.
    pub nic: bool,
}

/// The swtpm control socket in a TPM state folder.
pub fn tpm_socket(state: &Path) -> PathBuf {
    state.join("swtpm.sock")
}

impl VmConfig {
    pub fn new(arch: Arch, kernel: &Path, log: &Path) -> Self {
        VmConfig {
            arch,
            kernel: Some(kernel.to_path_buf()),
            initrd: None,
            append: String::new(),
            memory_mib: 512,
            cpus: 1,
            disks: Vec::new(),
            extra: Vec::new(),
            qmp: None,
            tpm: None,
            log: log.to_path_buf(),
            nic: false,
        }
    }

    /// The full QEMU argument list.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = machine_args(self.arch)
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(
            [
                "-m",
                &self.memory_mib.to_string(),
                "-smp",
                &self.cpus.to_string(),
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
            ]
            .map(String::from),
        );
        if let Some(kernel) = &self.kernel {
            args.push("-kernel".into());
            args.push(kernel.display().to_string());
            if let Some(initrd) = &self.initrd {
                args.push("-initrd".into());
                args.push(initrd.display().to_string());
            }
            args.push("-append".into());
            let console = self
                .arch
                .console()
                .map(|c| format!("console={c} "))
                .unwrap_or_default();
            args.push(
                format!("{console}panic=-1 {}", self.append)
                    .trim_end()
                    .to_owned(),
            );
        }
        let drive = |disk: &Disk, id: &str| {
            let mut drive = format!(
                "file={},format=raw,if=none,id={id},cache=unsafe",
                disk.path.display()
            );
            if disk.read_only {
                drive.push_str(",readonly=on");
            }
            drive
        };
        let mixed = self.disks.windows(2).any(|w| match w {
            [a, b] => a.bus != b.bus,
            _ => false,
        });
        for (i, disk) in self.disks.iter().enumerate() {
            let id = format!("disk{i}");
            args.push("-drive".into());
            args.push(drive(disk, &id));
            args.extend(disk.bus.devices(
                &id,
                disk.serial.as_deref(),
                disk.block_size,
                mixed.then_some(i),
            ));
        }
        if let Some(qmp) = &self.qmp {
            args.push("-qmp".into());
            args.push(format!("unix:{},server=on,wait=off", qmp.display()));
        }
        if let Some(state) = &self.tpm {
            let device = match self.arch {
                Arch::X86_64 => "tpm-tis",
                Arch::Aarch64 => "tpm-tis-device",
            };
            args.extend([
                "-chardev".into(),
                format!("socket,id=chrtpm,path={}", tpm_socket(state).display()),
                "-tpmdev".into(),
                "emulator,id=tpm0,chardev=chrtpm".into(),
                "-device".into(),
                format!("{device},tpmdev=tpm0"),
            ]);
        }
        if self.nic {
            args.extend([
                "-nic".into(),
                "user,restrict=on,model=virtio-net-pci".into(),
            ]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// The file swtpm keeps a TPM 2.0's permanent state in, inside its state folder.
const TPM_STATE_FILE: &str = "tpm2-00.permall";

/// Makes the TPM of a new state folder with the SHA-256 PCR bank active alone
/// (`swtpm_setup --pcr-banks sha256`); a folder that holds a TPM already is left as it is.
///
/// A TPM that swtpm makes by itself at its first start has all four banks active (SHA-1,
/// SHA-256, SHA-384, SHA-512), and everything measured into a PCR is hashed once per active
/// bank: by the firmware (each image it loads, here the whole 19 MB unified kernel image),
/// by the image's stub (its sections) and by the kernel's (the initramfs). Under TCG that
/// is seconds of every firmware boot. Liftoff reads and seals to the SHA-256 bank only
/// (`tpm2`), and servers' and EC2's TPMs have it active.
fn provision_swtpm(state: &Path) -> Result<(), VmError> {
    let failed = |source: io::Error| VmError::Start {
        binary: "swtpm_setup".into(),
        source,
    };
    if state.join(TPM_STATE_FILE).exists() {
        return Ok(());
    }
    let log = state.join("swtpm_setup.log");
    let status = Command::new("swtpm_setup")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(state)
        .args(["--pcr-banks", "sha256", "--not-overwrite", "--logfile"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(failed)?;
    if !status.success() {
        return Err(failed(io::Error::other(format!(
            "{status} making a TPM in {}; see {}",
            state.display(),
            log.display()
        ))));
    }
    Ok(())
}

/// Starts swtpm for a VM: a TPM 2.0 whose state lives in `state` (made first by
/// [`provision_swtpm`] if the folder is new), listening on [`tpm_socket`], ending when
/// QEMU disconnects. Waits (up to 30 s, for a loaded machine) for the socket.
fn start_swtpm(state: &Path) -> Result<Child, VmError> {
    let failed = |source: io::Error| VmError::Start {
        binary: "swtpm".into(),
        source,
    };
    std::fs::create_dir_all(state).map_err(failed)?;
    provision_swtpm(state)?;
    let socket = tpm_socket(state);
    let _ = std::fs::remove_file(&socket);
    let mut child = Command::new("swtpm")
        .arg("socket")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(format!("dir={}", state.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", socket.display()))
        .arg("--terminate")
        .arg("--log")
        .arg(format!(
            "file={},level=1",
            state.join("swtpm.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(failed)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(io::Error::other(format!(
                "swtpm exited ({status}) before making {}; see {}",
                socket.display(),
                state.join("swtpm.log").display()
            ))));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(io::Error::other(format!(
                "no {} after 30 s",
                socket.display()
            ))));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// Something the test waited for did not happen.
#[derive(Debug)]
pub enum VmError {
    Start {
        binary: String,
        source: io::Error,
    },
    Log {
        path: PathBuf,
        source: io::Error,
    },
    Timeout {
        waiting_for: String,
        after: Duration,
        log: PathBuf,
        tail: String,
    },
    Exited {
        waiting_for: String,
        log: PathBuf,
        tail: String,
    },
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::Start { binary, source } => {
                write!(f, "starting {binary}: {source} (run scripts/setup)")
            }
            VmError::Log { path, source } => {
                write!(f, "creating console log {}: {source}", path.display())
            }
            VmError::Timeout {
                waiting_for,
                after,
                log,
                tail,
            } => write!(
                f,
                "timed out after {after:?} waiting for {waiting_for}; console log {}; last lines:\n{tail}",
                log.display()
            ),
            VmError::Exited {
                waiting_for,
                log,
                tail,
            } => write!(
                f,
                "QEMU exited while waiting for {waiting_for}; console log {}; last lines:\n{tail}",
                log.display()
            ),
        }
    }
}

impl std::error::Error for VmError {}

/// A running guest.
#[derive(Debug)]
pub struct Vm {
    qmp: Option<PathBuf>,
    child: Child,
    /// swtpm, when the VM has a TPM.
    tpm: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
    log: PathBuf,
    started: Instant,
    exited: bool,
}

impl Vm {
    pub fn start(config: &VmConfig) -> Result<Vm, VmError> {
        if let Some(parent) = config.log.parent() {
            std::fs::create_dir_all(parent).map_err(|source| VmError::Log {
                path: config.log.clone(),
                source,
            })?;
        }
        let mut log = File::create(&config.log).map_err(|source| VmError::Log {
            path: config.log.clone(),
            source,
        })?;
        let tpm = config.tpm.as_deref().map(start_swtpm).transpose()?;
        let binary = qemu_binary(config.arch);
        // The command line goes first in the log so a failed run can be reproduced.
        let _ = writeln!(log, "# {binary} {}", config.args().join(" "));
        let mut child = Command::new(binary)
            .args(config.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| VmError::Start {
                binary: binary.to_owned(),
                source,
            })?;
        let (tx, rx) = mpsc::channel();
        let streams: [Box<dyn io::Read + Send>; 2] = [
            Box::new(child.stdout.take().ok_or_else(|| VmError::Start {
                binary: binary.to_owned(),
                source: io::Error::other("no stdout pipe"),
            })?),
            Box::new(child.stderr.take().ok_or_else(|| VmError::Start {
                binary: binary.to_owned(),
                source: io::Error::other("no stderr pipe"),
            })?),
        ];
        for (n, stream) in streams.into_iter().enumerate() {
            let tx = tx.clone();
            let mut log = log.try_clone().map_err(|source| VmError::Log {
                path: config.log.clone(),
                source,
            })?;
            std::thread::spawn(move || {
                let mut stream = stream;
                let prefix = if n == 1 { "qemu-stderr: " } else { "" };
                let mut lines = ConsoleLines::default();
                let mut chunk = [0u8; 4096];
                loop {
                    let len = match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(len) => len,
                    };
                    let mut gone = false;
                    for line in lines.push(chunk.get(..len).unwrap_or_default()) {
                        // The log is for people; losing a line of it must not stop the test.
                        let _ = writeln!(log, "{prefix}{line}");
                        if tx.send(format!("{prefix}{line}")).is_err() {
                            gone = true;
                        }
                    }
                    if gone {
                        return;
                    }
                }
                if let Some(line) = lines.rest() {
                    let _ = writeln!(log, "{prefix}{line}");
                    let _ = tx.send(format!("{prefix}{line}"));
                }
            });
        }
        Ok(Vm {
            qmp: config.qmp.clone(),
            child,
            tpm,
            lines: rx,
            seen: Vec::new(),
            log: config.log.clone(),
            started: Instant::now(),
            exited: false,
        })
    }

    /// Every console line seen so far.
    pub fn lines(&self) -> &[String] {
        &self.seen
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Runs one QMP command (`{"execute": ...}` JSON) on the socket of
    /// [`VmConfig::qmp`] and returns QEMU's answer line.
    pub fn qmp(&self, command: &str) -> io::Result<String> {
        use std::os::unix::net::UnixStream;
        let path = self
            .qmp
            .as_ref()
            .ok_or_else(|| io::Error::other("this VM was started without a QMP socket"))?;
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let mut line = String::new();
        // Greeting, then capabilities negotiation, then the command.
        reader.read_line(&mut line)?;
        for cmd in [r#"{"execute": "qmp_capabilities"}"#, command] {
            writeln!(writer, "{cmd}")?;
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Err(io::Error::other("QMP socket closed"));
                }
                // Skip asynchronous events; stop at the command's return or error.
                if line.contains("\"return\"") || line.contains("\"error\"") {
                    break;
                }
            }
        }
        if line.contains("\"error\"") {
            return Err(io::Error::other(format!("QMP {command}: {}", line.trim())));
        }
        Ok(line.trim().to_owned())
    }

    /// Whether QEMU has ended (its console closed).
    pub fn has_exited(&self) -> bool {
        self.exited
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The next console line, or `None` when QEMU has ended or `timeout` passed.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.exited = true;
                None
            }
            Err(RecvTimeoutError::Timeout) => None,
        }
    }

    /// Waits until a console line satisfies `pred` and returns it. Lines seen before the
    /// call are checked first.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, VmError> {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(VmError::Timeout {
                        waiting_for: what.to_owned(),
                        after: timeout,
                        log: self.log.clone(),
                        tail: self.tail(40),
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.exited = true;
                    return Err(VmError::Exited {
                        waiting_for: what.to_owned(),
                        log: self.log.clone(),
                        tail: self.tail(40),
                    });
                }
            }
        }
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for_text(&mut self, needle: &str, timeout: Duration) -> Result<String, VmError> {
        self.wait_for(&format!("{needle:?}"), timeout, |l| l.contains(needle))
    }

    /// Waits for QEMU to end (the guest powered off or rebooted) and collects every line.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(VmError::Timeout {
                        waiting_for: "QEMU to exit".into(),
                        after: timeout,
                        log: self.log.clone(),
                        tail: self.tail(40),
                    })
                }
            }
        }
        self.exited = true;
        let status = self.child.wait().map_err(|source| VmError::Log {
            path: self.log.clone(),
            source,
        })?;
        // swtpm ends once QEMU's connection is gone (--terminate); until it has, it holds
        // its state folder, and a restart of this machine would start a second swtpm on
        // it that cannot make its socket.
        if let Some(tpm) = &mut self.tpm {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(tpm.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = tpm.kill();
            let _ = tpm.wait();
        }
        Ok(status)
    }

    /// The last `n` console lines, for error reports.
    pub fn tail(&self, n: usize) -> String {
        let start = self.seen.len().saturating_sub(n);
        self.seen.get(start..).unwrap_or(&[]).join("\n")
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Always kill QEMU: a test that failed half-way must not leave a guest running.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // swtpm ends when QEMU's connection goes; make sure of it.
        if let Some(tpm) = &mut self.tpm {
            let _ = tpm.kill();
            let _ = tpm.wait();
        }
    }
}

/// Splits console output into lines: at a newline, and at a cursor-position escape
/// (`ESC [ row ; col H`), which firmware and shim use instead of newlines to draw a screen
/// (shim's "Verification failed" box has no newline at all and then waits for a key).
#[derive(Debug, Default)]
struct ConsoleLines {
    partial: Vec<u8>,
}

impl ConsoleLines {
    /// Adds `bytes` and returns the lines they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            self.partial.push(b);
            if b == b'\n' || (b == b'H' && ends_with_cursor_position(&self.partial)) {
                let line = String::from_utf8_lossy(&self.partial)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned();
                self.partial.clear();
                out.push(line);
            }
        }
        out
    }

    /// What is left after the last line break, at the end of the stream.
    fn rest(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            line
        })
    }
}

/// Whether `buf` ends with `ESC [ digits ; digits H`.
fn ends_with_cursor_position(buf: &[u8]) -> bool {
    let Some(start) = buf.iter().rposition(|&b| b == 0x1b) else {
        return false;
    };
    match buf.get(start + 1..) {
        Some([b'[', rest @ .., b'H']) => {
            !rest.is_empty() && rest.iter().all(|b| b.is_ascii_digit() || *b == b';')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines() {
        let mut c = ConsoleLines::default();
        assert_eq!(c.push(b"Welcome\r\nto "), ["Welcome"]);
        assert_eq!(
            c.push(b"GRUB!\n\x1b[0m\x1b[2J\x1b[01;01HVerification failed"),
            ["to GRUB!", "\x1b[0m\x1b[2J\x1b[01;01H"]
        );
        assert_eq!(
            c.push(b" box\x1b[5;7H"),
            ["Verification failed box\x1b[5;7H"]
        );
        assert!(
            c.push(b"\x1b[H \x1b[1;2").is_empty(),
            "no digits, or unfinished"
        );
        assert_eq!(c.rest().as_deref(), Some("\x1b[H \x1b[1;2"));
        assert_eq!(c.rest(), None);
    }

    #[test]
    fn command_line() {
        let mut c = VmConfig::new(Arch::Aarch64, Path::new("/k"), Path::new("/tmp/x.log"));
        c.initrd = Some("/i".into());
        c.append = "liftoff.debug".into();
        c.disks.push(Disk {
            path: "/d.img".into(),
            read_only: true,
            serial: Some("boot".into()),
            bus: Bus::VirtioBlk,
            block_size: None,
        });
        let args = c.args().join(" ");
        assert_eq!(
            args,
            "-M virt -accel tcg -cpu max,pauth-impdef=on -m 512 -smp 1 -nodefaults \
             -no-user-config -display none -serial stdio -no-reboot -kernel /k -initrd /i \
             -append panic=-1 liftoff.debug \
             -drive file=/d.img,format=raw,if=none,id=disk0,cache=unsafe,readonly=on \
             -device virtio-blk-pci,drive=disk0,serial=boot"
        );
        c.disks.push(Disk {
            path: "/n.img".into(),
            read_only: false,
            serial: None,
            bus: Bus::Nvme,
            block_size: None,
        });
        assert!(c.args().join(" ").ends_with(
            "-device virtio-blk-pci,drive=disk0,serial=boot,bootindex=0 \
             -drive file=/n.img,format=raw,if=none,id=disk1,cache=unsafe \
             -device nvme,drive=disk1,serial=disk1,bootindex=1"
        ));
        c.tpm = Some("/t".into());
        assert!(c.args().join(" ").ends_with(
            "-chardev socket,id=chrtpm,path=/t/swtpm.sock -tpmdev emulator,id=tpm0,chardev=chrtpm \
             -device tpm-tis-device,tpmdev=tpm0"
        ));
    }

    #[test]
    fn a_nic_is_always_restricted() {
        let mut c = VmConfig::new(Arch::X86_64, Path::new("/k"), Path::new("/log"));
        assert!(!c.args().iter().any(|a| a == "-nic"));
        c.nic = true;
        let args = c.args().join(" ");
        assert!(
            args.contains("-nic user,restrict=on,model=virtio-net-pci"),
            "{args}"
        );
    }

    #[test]
    fn every_bus() {
        let mut c = VmConfig::new(Arch::X86_64, Path::new("/k"), Path::new("/tmp/x.log"));
        c.append = "liftoff.debug".into();
        for (name, bus) in [("s", Bus::VirtioScsi), ("a", Bus::Ahci), ("n", Bus::Nvme)] {
            c.disks = vec![Disk::new(Path::new("/d.img"), name).on(bus)];
            let args = c.args().join(" ");
            let devices = args.split_once("cache=unsafe ").unwrap().1;
            let want = match bus {
                Bus::VirtioScsi => {
                    "-device virtio-scsi-pci,id=disk0-scsi \
                     -device scsi-hd,drive=disk0,bus=disk0-scsi.0,serial=s"
                }
                Bus::Ahci => {
                    "-device ich9-ahci,id=disk0-ahci -device ide-hd,drive=disk0,bus=disk0-ahci.0,serial=a"
                }
                _ => "-device nvme,drive=disk0,serial=n",
            };
            assert_eq!(devices, want, "{bus:?}");
            assert!(args.contains("-append console=ttyS0 panic=-1 liftoff.debug"));
        }
        c.disks = vec![Disk::new(Path::new("/d.img"), "k").with_block_size(4096)];
        assert!(c.args().join(" ").ends_with(
            "-device virtio-blk-pci,drive=disk0,serial=k,\
             logical_block_size=4096,physical_block_size=4096"
        ));
        assert_eq!(Bus::Nvme.first_partition(9), "nvme0n1p9");
        assert_eq!(Bus::Ahci.first_partition(3), "sda3");
        assert_eq!(Bus::VirtioScsi.first_partition(3), "sda3");
        assert_eq!(Bus::VirtioBlk.first_partition(4), "vda4");
        assert_eq!("virtio-scsi".parse(), Ok(Bus::VirtioScsi));
        assert!("sata".parse::<Bus>().is_err());
    }
}
