//! Finding the boot disk without udev: sysfs lists the disks and their partitions,
//! devtmpfs gives their nodes, and the GPT of each disk says whether it holds Liftoff's
//! slot sets.
//!
//! The boot disk is the one whose BOOT partition has the unique GUID GRUB reported
//! (`liftoff.boot_partuuid`); without it, the one disk that carries BOOT partitions. A
//! second disk with the same GUIDs (a cloned volume) is never mixed in: every partition
//! PID 1 uses comes from the one disk chosen here, and the clone is named in a warning.
//! Disks appear while drivers probe, so the search repeats until a deadline.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gpt::{Guid, SectorSize};

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
    /// Several disks match (cloned volumes): the first by name is used, the others never.
    Clones {
        chosen: String,
        ignored: Vec<String>,
    },
    /// No disk matches (yet).
    None,
}

/// Chooses the boot disk among `candidates` (sorted by disk name).
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
        [first, rest @ ..] => Choice::Clones {
            chosen: (*first).to_owned(),
            ignored: rest.iter().map(|s| (*s).to_owned()).collect(),
        },
    }
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
            write!(f, "; disks seen: {}", self.seen.join(", "))
        }
    }
}

/// Looks for the boot disk until `timeout` has passed, checking again every `poll`.
pub fn find_boot_disk(
    sys: &Path,
    dev: &Path,
    boot_partuuid: Option<Guid>,
    timeout: Duration,
    poll: Duration,
    reader: &mut impl GptReader,
) -> Result<BootDisk, NotFound> {
    let started = Instant::now();
    loop {
        let disks = scan(sys);
        let mut seen = Vec::new();
        let mut candidates = Vec::new();
        let mut tables = BTreeMap::new();
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
                    tables.insert(disk.name.clone(), table);
                }
                Err(e) => seen.push(format!("{} ({e})", disk.name)),
            }
        }
        let (chosen, ignored) = match choose(&candidates, boot_partuuid) {
            Choice::One(d) => (Some(d), Vec::new()),
            Choice::Clones { chosen, ignored } => (Some(chosen), ignored),
            Choice::None => (None, Vec::new()),
        };
        if let Some(name) = chosen {
            let disk = disks.iter().find(|d| d.name == name);
            if let (Some(disk), Some(table)) = (disk, tables.remove(&name)) {
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
            return Err(NotFound {
                waited,
                boot_partuuid,
                seen,
            });
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
                Choice::Clones {
                    chosen: "vda".into(),
                    ignored: vec!["vdb".into()],
                },
            ),
            (
                &[c("nvme0n1", &[1, 2]), c("nvme1n1", &[3, 4])],
                None,
                Choice::Clones {
                    chosen: "nvme0n1".into(),
                    ignored: vec!["nvme1n1".into()],
                },
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
