//! Finding the boot disk without udev: sysfs lists the disks and their partitions,
//! devtmpfs gives their nodes, and the GPT of each disk says whether it holds Liftoff's
//! slot sets.
//!
//! The boot disk is the one whose BOOT partition has the unique GUID the loader reported
//! (`liftoff.boot_partuuid`, else the firmware variable `LoaderDevicePartUUID` that
//! systemd-stub sets); without either, the one disk that carries BOOT partitions. Disks
//! appear while drivers probe, so the search repeats until a deadline.
//!
//! A second disk with the same GUIDs (a cloned volume) is never mixed in: every partition
//! PID 1 uses comes from the one disk chosen here. When several disks match, only the
//! firmware can tell which one it booted: the device path of its `BootCurrent` load option
//! (PCI devices from the root bridge down, then the NVMe namespace or SCSI target and LUN)
//! is compared with each disk's place in sysfs. One match is the boot disk and the others
//! are named in a warning; otherwise PID 1 refuses to guess and stops, naming the disks
//! (booting the wrong one would write its A/B state and DATA). A clone probed before the
//! boot disk has appeared at all is not caught: the firmware is asked only when two disks
//! match.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gpt::{Guid, SectorSize};
use prairiedog::efi::{self, Node};

/// A whole disk as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (`vda`, `nvme0n1`).
    pub name: String,
    /// Logical sector size from `queue/logical_block_size`.
    pub sector_size: u32,
    /// Partition number -> kernel name (`3` -> `vda3`, `nvme0n1p3`).
    pub partitions: BTreeMap<u32, String>,
}

impl Disk {
    /// The device node under `dev` (`/dev/vda`).
    pub fn node(&self, dev: &Path) -> PathBuf {
        dev.join(&self.name)
    }

    /// The node of partition `number`, if the kernel knows it.
    pub fn partition_node(&self, dev: &Path, number: u32) -> Option<PathBuf> {
        self.partitions.get(&number).map(|n| dev.join(n))
    }
}

/// Kinds of block device that are never a boot disk.
fn is_virtual(name: &str) -> bool {
    ["loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Lists the disks in `<sys>/block`, sorted by name.
pub fn scan(sys: &Path) -> Vec<Disk> {
    let Ok(entries) = std::fs::read_dir(sys.join("block")) else {
        return Vec::new();
    };
    let mut disks: Vec<Disk> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            if is_virtual(&name) {
                return None;
            }
            let dir = sys.join("block").join(&name);
            let size: u64 = read_trimmed(&dir.join("size"))?.parse().ok()?;
            if size == 0 {
                return None;
            }
            let sector_size = read_trimmed(&dir.join("queue/logical_block_size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(512);
            let partitions = std::fs::read_dir(&dir)
                .ok()?
                .filter_map(Result::ok)
                .filter_map(|p| {
                    let pname = p.file_name().to_str()?.to_owned();
                    // Partitions are named after their disk (vda1, nvme0n1p1); the other
                    // entries are attributes, and asking each for a `partition` file cost
                    // a failed sysfs lookup apiece.
                    if !pname.starts_with(name.as_str()) {
                        return None;
                    }
                    let number = read_trimmed(&dir.join(&pname).join("partition"))?
                        .parse()
                        .ok()?;
                    Some((number, pname))
                })
                .collect();
            Some(Disk {
                name,
                sector_size,
                partitions,
            })
        })
        .collect();
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    disks
}

/// What one disk's GPT says, as far as the choice is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub disk: String,
    /// Unique GUIDs of its BOOT partitions (BOOT-A, BOOT-B).
    pub boot_partuuids: Vec<Guid>,
}

/// The outcome of one look at the disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Exactly one disk matches.
    One(String),
    /// Several disks match: cloned volumes, or several Liftoff disks when no BOOT
    /// partition was named. Only the firmware can tell which one it booted.
    Several(Vec<String>),
    /// No disk matches (yet).
    None,
}

/// The disks among `candidates` (sorted by disk name) that can be the boot disk.
pub fn choose(candidates: &[Candidate], boot_partuuid: Option<Guid>) -> Choice {
    let matching: Vec<&str> = candidates
        .iter()
        .filter(|c| match boot_partuuid {
            Some(want) => c.boot_partuuids.contains(&want),
            None => !c.boot_partuuids.is_empty(),
        })
        .map(|c| c.disk.as_str())
        .collect();
    match matching.as_slice() {
        [] => Choice::None,
        [one] => Choice::One((*one).to_owned()),
        several => Choice::Several(several.iter().map(|s| (*s).to_owned()).collect()),
    }
}

/// Where a disk sits on its buses, read off its device path in sysfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// (device, function) of each PCI device from the root bridge down.
    pub pci: Vec<(u8, u8)>,
    /// The NVMe namespace (`nvme0n2`: 2).
    pub nvme_nsid: Option<u32>,
    /// SCSI target and LUN (`host:channel:target:lun`).
    pub scsi: Option<(u16, u16)>,
}

/// Parses the target of `/sys/block/<name>` (`../devices/pci0000:00/0000:00:04.0/nvme/
/// nvme0/nvme0n1`).
pub fn parse_location(device_path: &str, name: &str) -> Location {
    let mut loc = Location::default();
    for part in device_path.split('/') {
        // A PCI address: domain:bus:device.function, all hexadecimal.
        let pci = part.split_once('.').and_then(|(dbd, function)| {
            let mut fields = dbd.split(':');
            let (_domain, _bus, device) = (fields.next()?, fields.next()?, fields.next()?);
            if fields.next().is_some() || !part.starts_with(|c: char| c.is_ascii_hexdigit()) {
                return None;
            }
            Some((
                u8::from_str_radix(device, 16).ok()?,
                u8::from_str_radix(function, 16).ok()?,
            ))
        });
        if let Some(p) = pci {
            loc.pci.push(p);
            continue;
        }
        // A SCSI device: host:channel:target:lun, all decimal.
        let numbers: Vec<u32> = part.split(':').filter_map(|n| n.parse().ok()).collect();
        if let ([_, _, target, lun], 4) = (numbers.as_slice(), part.split(':').count()) {
            if let (Ok(t), Ok(l)) = (u16::try_from(*target), u16::try_from(*lun)) {
                loc.scsi = Some((t, l));
            }
        }
    }
    if name.starts_with("nvme") {
        loc.nvme_nsid = name
            .rsplit_once('n')
            .and_then(|(_, nsid)| nsid.parse().ok());
    }
    loc
}

/// The location of disk `name` from `<sys>/block/<name>`.
pub fn location(sys: &Path, name: &str) -> Option<Location> {
    let link = std::fs::read_link(sys.join("block").join(name)).ok()?;
    Some(parse_location(&link.to_string_lossy(), name))
}

/// Whether the disk at `loc` is the device of the firmware's boot path `path`: the same
/// PCI devices, and the same NVMe namespace or SCSI target and LUN where the path names
/// one. `None` when the path names no PCI device (only a partition, or a network boot):
/// it cannot tell disks apart.
pub fn is_boot_device(path: &[Node], loc: &Location) -> Option<bool> {
    let pci: Vec<(u8, u8)> = path
        .iter()
        .filter_map(|n| match *n {
            Node::Pci { device, function } => Some((device, function)),
            _ => None,
        })
        .collect();
    if pci.is_empty() {
        return None;
    }
    let same_namespace = path.iter().all(|n| match *n {
        Node::Nvme { nsid } => loc.nvme_nsid == Some(nsid),
        Node::Scsi { target, lun } => loc.scsi == Some((target, lun)),
        _ => true,
    });
    Some(pci == loc.pci && same_namespace)
}

/// What the firmware knows about this boot (the effect [`find_boot_disk`] needs).
pub trait Firmware {
    /// The device path of the load option the firmware booted.
    fn boot_path(&mut self) -> Result<Vec<Node>, String>;
}

/// The firmware's variables in efivarfs under `<sys>/firmware/efi/efivars`, mounted on
/// first use (the `efivarfs` module is in the initramfs list).
#[derive(Debug)]
pub struct Efi {
    pub sys: PathBuf,
}

impl Efi {
    /// The efivarfs folder, mounted if it is not yet.
    pub fn efivars(&self) -> Result<PathBuf, String> {
        let dir = self.sys.join(efi::EFIVARS);
        if !self.sys.join("firmware/efi").is_dir() {
            return Err("the kernel was not booted through UEFI".to_owned());
        }
        let mounted = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
        if !mounted {
            rustix::mount::mount(
                "efivarfs",
                &dir,
                "efivarfs",
                rustix::mount::MountFlags::NOSUID
                    | rustix::mount::MountFlags::NODEV
                    | rustix::mount::MountFlags::NOEXEC,
                None,
            )
            .map_err(|e| format!("mounting efivarfs at {}: {e}", dir.display()))?;
        }
        Ok(dir)
    }
}

impl Efi {
    /// `LoaderDevicePartUUID`, when a loader set it; a firmware that has no variables, or
    /// a variable that does not parse, is said in a warning and gives `None`.
    pub fn loader_partuuid(&self) -> Option<Guid> {
        if !self.sys.join("firmware/efi").is_dir() {
            return None;
        }
        let found = self
            .efivars()
            .and_then(|dir| efi::loader_device_partuuid(&dir).map_err(|e| e.to_string()));
        match found {
            Ok(guid) => guid,
            Err(e) => {
                crate::infra::kmsg::warn(&format!("boot disk: {e}; looking for any Liftoff disk"));
                None
            }
        }
    }
}

impl Efi {
    /// Whether the firmware booted with Secure Boot on; a boot without UEFI has none.
    pub fn secure_boot(&self) -> crate::stage::cmdline::SecureBoot {
        use crate::stage::cmdline::SecureBoot;
        if !self.sys.join("firmware/efi").is_dir() {
            return SecureBoot::Off;
        }
        let state = self
            .efivars()
            .and_then(|dir| efi::secure_boot(&dir).map_err(|e| e.to_string()));
        match state {
            Ok(Some(true)) => SecureBoot::On,
            Ok(Some(false) | None) => SecureBoot::Off,
            Err(e) => SecureBoot::Unknown(e),
        }
    }
}

impl Firmware for Efi {
    fn boot_path(&mut self) -> Result<Vec<Node>, String> {
        let efivars = self.efivars()?;
        let (number, option) = efi::boot_current(&efivars).map_err(|e| e.to_string())?;
        if option.path.is_empty() {
            return Err(format!("Boot{number:04X} has an empty device path"));
        }
        Ok(option.path)
    }
}

/// Picks, among the matching disks `names`, the one the firmware booted.
fn firmware_choice(
    sys: &Path,
    names: &[String],
    firmware: &mut impl Firmware,
) -> Result<String, Ambiguous> {
    let ambiguous = |why: String| Ambiguous {
        disks: names.to_vec(),
        why,
    };
    let path = firmware.boot_path().map_err(ambiguous)?;
    let hits: Vec<&String> = names
        .iter()
        .filter(|n| location(sys, n).and_then(|l| is_boot_device(&path, &l)) == Some(true))
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ambiguous(format!(
            "the firmware's boot device ({}) is none of them",
            describe_path(&path)
        ))),
        _ => Err(ambiguous(format!(
            "the firmware's boot device ({}) matches several",
            describe_path(&path)
        ))),
    }
}

/// A device path in the firmware's own notation, for log lines.
fn describe_path(path: &[Node]) -> String {
    let nodes: Vec<String> = path
        .iter()
        .filter_map(|n| match *n {
            Node::PciRoot { uid } => Some(format!("PciRoot({uid:#x})")),
            Node::Pci { device, function } => Some(format!("Pci({device:#x},{function:#x})")),
            Node::Nvme { nsid } => Some(format!("NVMe({nsid:#x})")),
            Node::Scsi { target, lun } => Some(format!("Scsi({target:#x},{lun:#x})")),
            Node::Sata { port } => Some(format!("Sata({port:#x})")),
            Node::HardDrive { number, .. } => Some(format!("HD({number})")),
            Node::Other { .. } => None,
        })
        .collect();
    crate::infra::join(&nodes, "/")
}

/// Reads a disk's GPT (the effect [`find_boot_disk`] needs).
pub trait GptReader {
    fn read(&mut self, disk: &Disk, node: &Path) -> Result<gpt::Gpt, gpt::Error>;
}

/// Reads the real device node.
#[derive(Debug, Default)]
pub struct DeviceReader;

impl GptReader for DeviceReader {
    fn read(&mut self, disk: &Disk, node: &Path) -> Result<gpt::Gpt, gpt::Error> {
        let file = std::fs::File::open(node).map_err(|source| gpt::Error::Io {
            device: node.to_path_buf(),
            what: "opening",
            source,
        })?;
        gpt::Gpt::read(&file, node, SectorSize::new(disk.sector_size))
    }
}

/// The boot disk and its table.
#[derive(Debug)]
pub struct BootDisk {
    pub disk: Disk,
    pub node: PathBuf,
    pub gpt: gpt::Gpt,
    /// Disks that looked like clones of the boot disk and are ignored.
    pub ignored_clones: Vec<String>,
}

/// The disk stage's failures.
#[derive(Debug)]
pub enum DiskError {
    NotFound(NotFound),
    Ambiguous(Ambiguous),
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::NotFound(e) => write!(f, "{e}"),
            DiskError::Ambiguous(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DiskError {}

/// Several disks can be the boot disk and the firmware cannot tell which.
#[derive(Debug)]
pub struct Ambiguous {
    pub disks: Vec<String>,
    /// Why the firmware could not tell.
    pub why: String,
}

impl fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} all carry the boot disk's Liftoff partitions (cloned volumes?) and {}: \
             refusing to guess which one to boot and write",
            crate::infra::join(&self.disks, " and "),
            self.why
        )
    }
}

#[derive(Debug)]
pub struct NotFound {
    pub waited: Duration,
    pub boot_partuuid: Option<Guid>,
    /// One line per disk seen at the last look.
    pub seen: Vec<String>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.boot_partuuid {
            Some(g) => write!(
                f,
                "no disk with a BOOT partition {g} after {}",
                crate::infra::timeline::duration(self.waited)
            )?,
            None => write!(
                f,
                "no disk with Liftoff BOOT partitions after {}",
                crate::infra::timeline::duration(self.waited)
            )?,
        }
        if self.seen.is_empty() {
            write!(f, "; no disks at all (missing storage driver?)")
        } else {
            write!(f, "; disks seen: {}", crate::infra::join(&self.seen, ", "))
        }
    }
}

/// Looks for the boot disk until `timeout` has passed, checking again every `poll`; asks
/// `firmware` when several disks match.
pub fn find_boot_disk(
    sys: &Path,
    dev: &Path,
    boot_partuuid: Option<Guid>,
    timeout: Duration,
    poll: Duration,
    reader: &mut impl GptReader,
    firmware: &mut impl Firmware,
) -> Result<BootDisk, DiskError> {
    let started = Instant::now();
    loop {
        let disks = scan(sys);
        let mut seen = Vec::new();
        let mut candidates = Vec::new();
        // A few disks at most: a Vec, not a map (a BTreeMap<String, Gpt> costs PID 1 5 KiB).
        let mut tables = Vec::new();
        for disk in &disks {
            let node = disk.node(dev);
            match reader.read(disk, &node) {
                Ok(table) => {
                    let boot_partuuids: Vec<Guid> = table
                        .used()
                        .filter(|(_, e)| e.type_guid == gpt::types::BOOT)
                        .map(|(_, e)| e.unique_guid)
                        .collect();
                    seen.push(format!(
                        "{} ({} BOOT partitions)",
                        disk.name,
                        boot_partuuids.len()
                    ));
                    candidates.push(Candidate {
                        disk: disk.name.clone(),
                        boot_partuuids,
                    });
                    tables.push((disk.name.clone(), table));
                }
                Err(e) => seen.push(format!("{} ({e})", disk.name)),
            }
        }
        let (chosen, ignored) = match choose(&candidates, boot_partuuid) {
            Choice::One(d) => (Some(d), Vec::new()),
            Choice::Several(names) => {
                let chosen =
                    firmware_choice(sys, &names, firmware).map_err(DiskError::Ambiguous)?;
                let ignored = names.into_iter().filter(|n| *n != chosen).collect();
                (Some(chosen), ignored)
            }
            Choice::None => (None, Vec::new()),
        };
        if let Some(name) = chosen {
            let disk = disks.iter().find(|d| d.name == name);
            let table = tables
                .iter()
                .position(|(n, _)| *n == name)
                .map(|i| tables.swap_remove(i).1);
            if let (Some(disk), Some(table)) = (disk, table) {
                return Ok(BootDisk {
                    node: disk.node(dev),
                    disk: disk.clone(),
                    gpt: table,
                    ignored_clones: ignored,
                });
            }
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(DiskError::NotFound(NotFound {
                waited,
                boot_partuuid,
                seen,
            }));
        }
        std::thread::sleep(poll.min(timeout.saturating_sub(waited)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: u128) -> Guid {
        Guid::from_u128(n)
    }

    fn c(disk: &str, uuids: &[u128]) -> Candidate {
        Candidate {
            disk: disk.into(),
            boot_partuuids: uuids.iter().map(|u| g(*u)).collect(),
        }
    }

    #[test]
    fn choice_table() {
        let cases: &[(&[Candidate], Option<u128>, Choice)] = &[
            (&[], None, Choice::None),
            (&[c("vda", &[])], None, Choice::None),
            (&[c("vda", &[1, 2])], None, Choice::One("vda".into())),
            (&[c("vda", &[1, 2])], Some(2), Choice::One("vda".into())),
            (&[c("vda", &[1, 2])], Some(3), Choice::None),
            (
                &[c("vda", &[]), c("vdb", &[1, 2])],
                Some(1),
                Choice::One("vdb".into()),
            ),
            (
                &[c("vda", &[1, 2]), c("vdb", &[5, 6])],
                Some(5),
                Choice::One("vdb".into()),
            ),
            (
                &[c("vda", &[1, 2]), c("vdb", &[1, 2])],
                Some(1),
                Choice::Several(vec!["vda".into(), "vdb".into()]),
            ),
            (
                &[c("nvme0n1", &[1, 2]), c("nvme1n1", &[3, 4])],
                None,
                Choice::Several(vec!["nvme0n1".into(), "nvme1n1".into()]),
            ),
        ];
        for (cands, want, expected) in cases {
            assert_eq!(&choose(cands, want.map(g)), expected, "{cands:?} {want:?}");
        }
    }

    #[test]
    fn scans_a_sysfs_tree() {
        let sys = std::env::temp_dir().join(format!("liftoff-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        let mk = |rel: &str, content: &str| {
            let p = sys.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        };
        mk("block/vda/size", "204800\n");
        mk("block/vda/queue/logical_block_size", "512\n");
        mk("block/vda/vda1/partition", "1\n");
        mk("block/vda/vda10/partition", "10\n");
        mk("block/nvme0n1/size", "8\n");
        mk("block/nvme0n1/queue/logical_block_size", "4096\n");
        mk("block/nvme0n1/nvme0n1p3/partition", "3\n");
        mk("block/loop0/size", "100\n");
        mk("block/dm-0/size", "100\n");
        mk("block/vdb/size", "0\n");
        let disks = scan(&sys);
        assert_eq!(
            disks,
            vec![
                Disk {
                    name: "nvme0n1".into(),
                    sector_size: 4096,
                    partitions: [(3, "nvme0n1p3".to_string())].into(),
                },
                Disk {
                    name: "vda".into(),
                    sector_size: 512,
                    partitions: [(1, "vda1".to_string()), (10, "vda10".to_string())].into(),
                },
            ]
        );
        assert_eq!(
            disks[0].partition_node(Path::new("/dev"), 3),
            Some(PathBuf::from("/dev/nvme0n1p3"))
        );
        assert_eq!(disks[1].partition_node(Path::new("/dev"), 2), None);
        std::fs::remove_dir_all(&sys).unwrap();
    }

    /// Firmware that booted `path`, or cannot say.
    struct FakeFirmware(Result<Vec<Node>, String>);
    impl Firmware for FakeFirmware {
        fn boot_path(&mut self) -> Result<Vec<Node>, String> {
            self.0.clone()
        }
    }

    #[test]
    fn locations_from_sysfs_device_paths() {
        let cases = [
            (
                "../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n2",
                "nvme0n2",
                Location {
                    pci: vec![(4, 0)],
                    nvme_nsid: Some(2),
                    scsi: None,
                },
            ),
            (
                "../devices/pci0000:00/0000:00:1c.0/0000:01:00.1/virtio3/block/vda",
                "vda",
                Location {
                    pci: vec![(0x1c, 0), (0, 1)],
                    ..Location::default()
                },
            ),
            (
                "../devices/pci0000:00/0000:00:05.0/virtio2/host0/target0:0:1/0:0:1:3/block/sda",
                "sda",
                Location {
                    pci: vec![(5, 0)],
                    scsi: Some((1, 3)),
                    ..Location::default()
                },
            ),
            (
                "../devices/platform/4010000000.pcie/pci0000:00/0000:00:02.0/virtio1/block/vda",
                "vda",
                Location {
                    pci: vec![(2, 0)],
                    ..Location::default()
                },
            ),
            (
                "../devices/vbd-51712/block/xvda",
                "xvda",
                Location::default(),
            ),
        ];
        for (path, name, want) in cases {
            assert_eq!(parse_location(path, name), want, "{path}");
        }
    }

    #[test]
    fn the_firmware_path_names_one_device() {
        let nvme = |nsid| {
            vec![
                Node::PciRoot { uid: 0 },
                Node::Pci {
                    device: 4,
                    function: 0,
                },
                Node::Nvme { nsid },
            ]
        };
        let at = |pci: &[(u8, u8)], nsid: Option<u32>| Location {
            pci: pci.to_vec(),
            nvme_nsid: nsid,
            scsi: None,
        };
        assert_eq!(
            is_boot_device(&nvme(1), &at(&[(4, 0)], Some(1))),
            Some(true)
        );
        assert_eq!(
            is_boot_device(&nvme(2), &at(&[(4, 0)], Some(1))),
            Some(false)
        );
        assert_eq!(is_boot_device(&nvme(1), &at(&[(3, 0)], None)), Some(false));
        assert_eq!(
            is_boot_device(&nvme(1), &at(&[(0x1c, 0), (4, 0)], Some(1))),
            Some(false),
            "the whole chain must match"
        );
        // A path of only a partition cannot tell disks apart.
        let hd = [Node::HardDrive {
            number: 1,
            partuuid: Some(g(1)),
        }];
        assert_eq!(is_boot_device(&hd, &at(&[(4, 0)], Some(1))), None);
        let scsi = [
            Node::Pci {
                device: 5,
                function: 0,
            },
            Node::Scsi { target: 1, lun: 0 },
        ];
        let lun = |t, l| Location {
            pci: vec![(5, 0)],
            nvme_nsid: None,
            scsi: Some((t, l)),
        };
        assert_eq!(is_boot_device(&scsi, &lun(1, 0)), Some(true));
        assert_eq!(is_boot_device(&scsi, &lun(2, 0)), Some(false));
    }

    /// Two disks that both match, in a sysfs tree whose block entries link to their PCI
    /// places: the firmware's path picks one, or the stage refuses naming both.
    #[test]
    fn clones_are_told_apart_by_the_firmware_or_refused() {
        let sys = std::env::temp_dir().join(format!("liftoff-sysfs3-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        for (name, pci) in [
            ("nvme0n1", "0000:00:04.0/nvme/nvme0"),
            ("vda", "0000:00:03.0/virtio1/block"),
        ] {
            let dev = sys.join(format!("devices/pci0000:00/{pci}/{name}"));
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join("size"), "100").unwrap();
            std::fs::create_dir_all(sys.join("block")).unwrap();
            std::os::unix::fs::symlink(
                format!("../devices/pci0000:00/{pci}/{name}"),
                sys.join("block").join(name),
            )
            .unwrap();
        }
        let names = ["nvme0n1".to_owned(), "vda".to_owned()];
        let find = |firmware: Result<Vec<Node>, String>| {
            firmware_choice(&sys, &names, &mut FakeFirmware(firmware))
        };
        let virtio = vec![
            Node::PciRoot { uid: 0 },
            Node::Pci {
                device: 3,
                function: 0,
            },
        ];
        assert_eq!(find(Ok(virtio)).unwrap(), "vda");

        let other = vec![Node::Pci {
            device: 9,
            function: 0,
        }];
        for (firmware, why) in [
            (
                Ok(other),
                "the firmware's boot device (Pci(0x9,0x0)) is none of them",
            ),
            (
                Err("the kernel was not booted through UEFI".to_owned()),
                "the kernel was not booted through UEFI",
            ),
        ] {
            let err = find(firmware).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "nvme0n1 and vda all carry the boot disk's Liftoff partitions (cloned \
                     volumes?) and {why}: refusing to guess which one to boot and write"
                )
            );
        }
        std::fs::remove_dir_all(&sys).unwrap();
    }

    struct NoDisks;
    impl GptReader for NoDisks {
        fn read(&mut self, _: &Disk, node: &Path) -> Result<gpt::Gpt, gpt::Error> {
            Err(gpt::Error::NotGpt {
                device: node.to_path_buf(),
            })
        }
    }

    #[test]
    fn times_out_naming_what_it_saw() {
        let sys = std::env::temp_dir().join(format!("liftoff-sysfs2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        std::fs::create_dir_all(sys.join("block/vda")).unwrap();
        std::fs::write(sys.join("block/vda/size"), "10").unwrap();
        let err = find_boot_disk(
            &sys,
            Path::new("/dev"),
            Some(g(7)),
            Duration::from_millis(30),
            Duration::from_millis(10),
            &mut NoDisks,
            &mut FakeFirmware(Err("never asked".into())),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "no disk with a BOOT partition 00000000-0000-0000-0000-000000000007 after"
            ),
            "{msg}"
        );
        assert!(msg.ends_with("disks seen: vda (/dev/vda has no GPT (no \"EFI PART\" header at LBA 1 or at the end))"), "{msg}");
        std::fs::remove_dir_all(&sys).unwrap();
    }
}
