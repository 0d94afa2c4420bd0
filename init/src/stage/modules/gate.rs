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

use std::collections::BTreeMap;
use std::path::Path;

/// Buses whose drivers PID 1 loads only for a device that is there. `of:` aliases match the
/// modalias of device-tree platform devices, `acpi:` ones that of ACPI devices.
pub const HARDWARE_BUSES: &[&str] = &["pci", "virtio", "xen", "acpi", "of", "platform", "scsi"];

/// Buses whose devices appear after their host driver loaded, in the background.
const ASYNC_BUSES: &[&str] = &["scsi"];

/// The hardware bus an alias is on (`acpi*:MSFT0101:*` is on `acpi`), if it is on one.
pub fn alias_bus(alias: &str) -> Option<&'static str> {
    let (prefix, _) = alias.split_once(':')?;
    let prefix = prefix.trim_end_matches('*');
    HARDWARE_BUSES.iter().copied().find(|bus| *bus == prefix)
}

/// The sysfs bus whose devices carry the modaliases an alias on `bus` matches: device-tree
/// devices (`of:`) are platform devices; every other bus is its own.
pub fn sysfs_bus(bus: &'static str) -> &'static str {
    match bus {
        "of" => "platform",
        other => other,
    }
}

/// The `modalias` of every device on `<root>/sys/bus/<bus>`, or `None` when there is no
/// such bus (its driver core is not loaded). Unreadable entries are left out: a device
/// going away while it is read is not an error.
pub fn read_bus(root: &Path, bus: &str) -> Option<Vec<String>> {
    let dir = root.join("sys/bus").join(bus);
    if !dir.is_dir() {
        return None;
    }
    let mut aliases = Vec::new();
    if let Ok(devices) = std::fs::read_dir(dir.join("devices")) {
        for device in devices.flatten() {
            if let Ok(alias) = std::fs::read_to_string(device.path().join("modalias")) {
                aliases.push(alias.trim_end().to_owned());
            }
        }
    }
    Some(aliases)
}

/// What PID 1 has seen of the hardware since it last loaded something: each bus is read at
/// most once (a look at sysfs costs a few milliseconds under emulation, the ACPI and
/// platform buses having dozens of devices), and only the buses some alias is on.
#[derive(Debug, Default)]
pub struct Seen {
    buses: BTreeMap<&'static str, Option<Vec<String>>>,
}

impl Seen {
    /// Forgets everything: drivers were loaded and may have brought up devices.
    pub fn clear(&mut self) {
        self.buses.clear();
    }

    /// Whether a module with these aliases has something to drive: `None` when none of
    /// them is on a hardware bus (the module is not a device driver, or drives something
    /// PID 1 does not look for), else whether one of them matches a device that is there.
    /// `read` reads a bus ([`read_bus`]) the first time it is needed.
    pub fn wants(
        &mut self,
        aliases: &[String],
        read: &mut impl FnMut(&str) -> Option<Vec<String>>,
    ) -> Option<bool> {
        let mut gated = false;
        for alias in aliases {
            let Some(bus) = alias_bus(alias) else {
                continue;
            };
            gated = true;
            let sysfs = sysfs_bus(bus);
            let devices = self.buses.entry(sysfs).or_insert_with(|| read(sysfs));
            let matched = match devices {
                None => false,
                Some(_) if ASYNC_BUSES.contains(&bus) => true,
                Some(modaliases) => modaliases
                    .iter()
                    .any(|m| glob_match(alias.as_bytes(), m.as_bytes())),
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
        let sysfs: BTreeMap<&str, Vec<String>> = [
            (
                "pci",
                strings(&["pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"]),
            ),
            ("virtio", strings(&["virtio:d00000002v00001AF4"])),
            ("platform", strings(&["platform:efivars"])),
            ("acpi", strings(&["acpi:PNP0A08:PNP0A03:"])),
        ]
        .into();
        let mut reads = Vec::new();
        let mut read = |bus: &str| {
            reads.push(bus.to_owned());
            sysfs.get(bus).cloned()
        };
        let mut seen = Seen::default();
        let ena = strings(&["pci:v00001D0Fd0000EC20sv*sd*bc*sc*i*"]);
        let virtio_pci = strings(&["pci:v00001AF4d*sv*sd*bc*sc*i*"]);
        let virtio_blk = strings(&["virtio:d00000002v*"]);
        let virtio_scsi = strings(&["virtio:d00000008v*"]);
        let sd_mod = strings(&["scsi:t-0x00*", "block-major-8-*"]);
        let blkfront = strings(&["xenblk", "xen:vbd", "block-major-202-*"]);
        let pstore = strings(&["platform:efivars"]);
        let tpm_tis = strings(&["of:N*T*Ctcg,tpm-tis-mmio", "acpi*:MSFT0101:*"]);
        let dm_mod = strings(&["devname:mapper/control", "char-major-10-236"]);
        assert_eq!(seen.wants(&ena, &mut read), Some(false));
        assert_eq!(seen.wants(&virtio_pci, &mut read), Some(true));
        assert_eq!(seen.wants(&virtio_blk, &mut read), Some(true));
        assert_eq!(seen.wants(&virtio_scsi, &mut read), Some(false));
        assert_eq!(seen.wants(&sd_mod, &mut read), Some(false), "no SCSI host");
        assert_eq!(seen.wants(&blkfront, &mut read), Some(false));
        assert_eq!(seen.wants(&pstore, &mut read), Some(true));
        assert_eq!(seen.wants(&tpm_tis, &mut read), Some(false));
        assert_eq!(seen.wants(&dm_mod, &mut read), None);
        assert_eq!(seen.wants(&[], &mut read), None);
        // Each bus read once, only those some alias is on; of: looks at platform devices.
        assert_eq!(reads, ["pci", "virtio", "scsi", "xen", "platform", "acpi"]);

        // A SCSI host driver was loaded: the bus exists, its disks may still be scanned.
        seen.clear();
        let mut with_scsi = |bus: &str| (bus == "scsi").then(Vec::new);
        assert_eq!(seen.wants(&sd_mod, &mut with_scsi), Some(true));
    }

    #[test]
    fn reads_a_sysfs_tree() {
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
        std::fs::create_dir_all(root.join("sys/bus/scsi")).unwrap();
        assert_eq!(
            read_bus(&root, "pci"),
            Some(strings(&[
                "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"
            ]))
        );
        assert_eq!(read_bus(&root, "scsi"), Some(Vec::new()));
        assert_eq!(read_bus(&root, "xen"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
