//! Which driver modules have hardware to drive: the kernel's device aliases matched the way
//! modprobe matches them, without udev.
//!
//! A driver module names the devices it drives in `.modinfo` `alias=` entries, shell globs
//! over the `modalias` string the kernel gives each device in sysfs
//! (`pci:v00001AF4d*sv*sd*bc*sc*i*` matches `/sys/bus/pci/devices/*/modalias` of every virtio
//! PCI function). A module with at least one alias on a hardware bus ([`HARDWARE_BUSES`]) is
//! loaded only when a device that is there matches one of them; any other module (device-
//! mapper, file systems, crypto, softdog; aliases such as `fs-erofs` or `cpu:type:...`) is
//! always loaded. Loading a PCI driver for absent hardware does not fail (it registers and
//! finds nothing), so without this every image would pay for every driver it lists, on every
//! machine.
//!
//! SCSI disks are found by an asynchronous scan after their host driver loads, so a device
//! on the `scsi` bus may not exist yet when PID 1 decides: a `scsi:` alias counts as present
//! when the bus itself is there (some host driver, virtio-scsi or libata, was loaded).

use std::path::Path;

/// Buses whose drivers PID 1 loads only for a device that is there. `of:` aliases match the
/// modalias of device-tree platform devices, `acpi:` ones that of ACPI devices.
pub const HARDWARE_BUSES: &[&str] = &["pci", "virtio", "xen", "acpi", "of", "platform", "scsi"];

/// Buses whose devices appear after their host driver loaded, in the background.
const ASYNC_BUSES: &[&str] = &["scsi"];

/// The sysfs buses whose devices' modaliases are read.
const SCANNED_BUSES: &[&str] = &["pci", "virtio", "xen", "acpi", "platform"];

/// The hardware bus an alias is on (`acpi*:MSFT0101:*` is on `acpi`), if it is on one.
pub fn alias_bus(alias: &str) -> Option<&'static str> {
    let (prefix, _) = alias.split_once(':')?;
    let prefix = prefix.trim_end_matches('*');
    HARDWARE_BUSES.iter().copied().find(|bus| *bus == prefix)
}

/// What sysfs says is there: every device modalias on the scanned buses, and which buses
/// exist at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Present {
    pub modaliases: Vec<String>,
    pub buses: Vec<String>,
}

impl Present {
    /// Reads `<root>/sys/bus/*`: the bus names and the `modalias` of each device on the
    /// [`SCANNED_BUSES`]. Unreadable entries are left out (a device going away while it is
    /// read is not an error).
    pub fn scan(root: &Path) -> Present {
        let bus_dir = root.join("sys/bus");
        let mut present = Present::default();
        let Ok(buses) = std::fs::read_dir(&bus_dir) else {
            return present;
        };
        for bus in buses.flatten() {
            let name = bus.file_name().to_string_lossy().into_owned();
            if SCANNED_BUSES.contains(&name.as_str()) {
                let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
                    continue;
                };
                for device in devices.flatten() {
                    if let Ok(alias) = std::fs::read_to_string(device.path().join("modalias")) {
                        present.modaliases.push(alias.trim_end().to_owned());
                    }
                }
            }
            present.buses.push(name);
        }
        present
    }

    /// Whether a module with these aliases has something to drive: `None` when none of
    /// them is on a hardware bus (the module is not a device driver, or drives something
    /// PID 1 does not look for), else whether one of them matches a device that is there.
    pub fn wants(&self, aliases: &[String]) -> Option<bool> {
        let mut gated = false;
        for alias in aliases {
            let Some(bus) = alias_bus(alias) else {
                continue;
            };
            gated = true;
            let matched = if ASYNC_BUSES.contains(&bus) {
                self.buses.iter().any(|b| b == bus)
            } else {
                self.modaliases
                    .iter()
                    .any(|m| glob_match(alias.as_bytes(), m.as_bytes()))
            };
            if matched {
                return Some(true);
            }
        }
        gated.then_some(false)
    }
}

/// Shell-style matching as the kernel's aliases use it (`fnmatch(3)` without flags): `*`
/// any run of bytes, `?` one byte, `[abc]`, `[a-z]` and `[!a]`/`[^a]` one byte of a class,
/// anything else itself. An unclosed `[` is a literal. Linear in practice: on a mismatch it
/// backtracks only to the last `*`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where the last `*` was, and the text position it has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let c = text.get(t).copied().unwrap_or(0);
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match class(pattern.get(p..).unwrap_or_default(), c) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None => (c == b'[').then_some(1),
            },
            Some(&literal) => (literal == c).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(len), _) => {
                p += len;
                t += 1;
            }
            (None, Some((sp, st))) => {
                // Let the last `*` take one more byte and try again after it.
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&b| b == b'*')
}

/// Matches `c` against the class at the start of `pattern` (which starts with `[`):
/// whether it matched and the class's length, or `None` when the class is not closed.
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let body = pattern.get(1..)?;
    let (negated, body, extra) = match body.first() {
        Some(b'!' | b'^') => (true, body.get(1..)?, 2),
        _ => (false, body, 1),
    };
    // A `]` right after the opening (or the negation) is a member, not the end.
    let end = body.iter().skip(1).position(|&b| b == b']')? + 1;
    let members = body.get(..end)?;
    let mut matched = false;
    let mut i = 0;
    while let Some(&first) = members.get(i) {
        match (members.get(i + 1), members.get(i + 2)) {
            (Some(b'-'), Some(&last)) => {
                matched |= (first..=last).contains(&c);
                i += 3;
            }
            _ => {
                matched |= first == c;
                i += 1;
            }
        }
    }
    Some((matched != negated, extra + end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_as_fnmatch() {
        for (pattern, text, want) in [
            (
                "pci:v00001AF4d*sv*sd*bc*sc*i*",
                "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
                true,
            ),
            (
                "pci:v00001AF4d*sv*sd*bc*sc*i*",
                "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02",
                false,
            ),
            (
                "pci:v00001D0Fd0000EC20sv*sd*bc*sc*i*",
                "pci:v00001D0Fd0000EC20sv00000000sd00000000bc02sc00i00",
                true,
            ),
            ("virtio:d00000002v*", "virtio:d00000002v00001AF4", true),
            ("virtio:d00000002v*", "virtio:d00000008v00001AF4", false),
            ("xen:vbd", "xen:vbd", true),
            ("xen:vbd", "xen:vif", false),
            ("acpi*:MSFT0101:*", "acpi:MSFT0101:", true),
            ("acpi*:MSFT0101:*", "acpi:PNP0501:", false),
            (
                "of:N*T*Ctcg,tpm-tis-mmioC*",
                "of:NtpmT(null)Ctcg,tpm-tis-mmio",
                false,
            ),
            (
                "of:N*T*Ctcg,tpm-tis-mmio",
                "of:NtpmT(null)Ctcg,tpm-tis-mmio",
                true,
            ),
            ("platform:efivars", "platform:efivars", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("x*", "", false),
            ("acpi*:PNP0C0[A-F]*", "acpi:PNP0C0B:", true),
            ("acpi*:PNP0C0[A-F]*", "acpi:PNP0C09:", false),
            ("[!a]b", "cb", true),
            ("[^a]b", "ab", false),
            ("[]]", "]", true),
            ("[a", "[a", true),
            (
                "*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
        ] {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern} {text}"
            );
        }
    }

    #[test]
    fn buses_of_aliases() {
        assert_eq!(alias_bus("pci:v00001AF4d*sv*sd*bc*sc*i*"), Some("pci"));
        assert_eq!(alias_bus("acpi*:MSFT0101:*"), Some("acpi"));
        assert_eq!(alias_bus("scsi:t-0x00*"), Some("scsi"));
        for other in [
            "fs-erofs",
            "crypto-xts",
            "devname:mapper/control",
            "cpu:type:x86,ven*fam*mod*:feature:*0099*",
            "char-major-10-236",
            "xenblk",
        ] {
            assert_eq!(alias_bus(other), None, "{other}");
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wants_only_present_hardware() {
        let present = Present {
            modaliases: strings(&[
                "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
                "virtio:d00000002v00001AF4",
                "platform:efivars",
            ]),
            buses: strings(&["pci", "virtio", "platform", "acpi"]),
        };
        let ena = strings(&["pci:v00001D0Fd0000EC20sv*sd*bc*sc*i*"]);
        let virtio_pci = strings(&["pci:v00001AF4d*sv*sd*bc*sc*i*"]);
        let virtio_blk = strings(&["virtio:d00000002v*"]);
        let virtio_scsi = strings(&["virtio:d00000008v*"]);
        let sd_mod = strings(&["scsi:t-0x00*", "block-major-8-*"]);
        let blkfront = strings(&["xenblk", "xen:vbd", "block-major-202-*"]);
        let pstore = strings(&["platform:efivars"]);
        let dm_mod = strings(&["devname:mapper/control", "char-major-10-236"]);
        assert_eq!(present.wants(&ena), Some(false));
        assert_eq!(present.wants(&virtio_pci), Some(true));
        assert_eq!(present.wants(&virtio_blk), Some(true));
        assert_eq!(present.wants(&virtio_scsi), Some(false));
        assert_eq!(
            present.wants(&sd_mod),
            Some(false),
            "no SCSI host driver loaded"
        );
        assert_eq!(present.wants(&blkfront), Some(false));
        assert_eq!(present.wants(&pstore), Some(true));
        assert_eq!(present.wants(&dm_mod), None);
        assert_eq!(present.wants(&[]), None);
        let with_scsi = Present {
            buses: strings(&["pci", "scsi"]),
            ..present
        };
        assert_eq!(
            with_scsi.wants(&sd_mod),
            Some(true),
            "the scan may still be running"
        );
    }

    #[test]
    fn scans_a_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("liftoff-gate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let device = |bus: &str, dev: &str, alias: Option<&str>| {
            let dir = root.join("sys/bus").join(bus).join("devices").join(dev);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(alias) = alias {
                std::fs::write(dir.join("modalias"), format!("{alias}\n")).unwrap();
            }
        };
        device(
            "pci",
            "0000:00:01.0",
            Some("pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"),
        );
        device("pci", "0000:00:00.0", None);
        device("virtio", "virtio0", Some("virtio:d00000002v00001AF4"));
        device("scsi", "host0", None);
        device("memory", "memory0", Some("memory:ignored"));
        let mut present = Present::scan(&root);
        present.modaliases.sort();
        present.buses.sort();
        assert_eq!(
            present,
            Present {
                modaliases: strings(&[
                    "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02",
                    "virtio:d00000002v00001AF4",
                ]),
                buses: strings(&["memory", "pci", "scsi", "virtio"]),
            }
        );
        assert_eq!(Present::scan(&root.join("nowhere")), Present::default());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
