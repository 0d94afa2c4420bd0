//! The update of issue 8, end to end through firmware and GRUB: a running v1 host (slot A,
//! systemd) installs v2's payloads from a second disk into slot B with `prairiedog install`,
//! runs `prairiedog upgrade-to-inactive` and reboots (a forged manifest and a UKI changed
//! after signing are refused first, against the firmware's db); GRUB boots B, Liftoff's PID 1 spends
//! B's try, opens v2's verified root and hands off to containerd, and containerd's answer
//! marks B successful. A stays as the fallback.
//!
//! The v2 boot then shows the clean stop of issue 15 item 7 on both arches, through the
//! firmware (OVMF, AAVMF's ACPI): once B is marked, v2's one-shot service `60-fresh` writes
//! 16 fresh random bytes to /var (DATA, LUKS2 with its key sealed in the TPM) without sync
//! and prints them with DATA's current recovery key; the host presses the ACPI power button
//! at once (QMP `system_powerdown`), sees PID 1 unmount /local and power off, then opens
//! DATA from the disk image with that recovery key (loop device, cryptsetup) and checks
//! that its ext4 has no `needs_recovery` (`dumpe2fs -h`), passes `e2fsck -fn`, has the
//! journal first use left unwritten (`lazy_journal_init`: noise, not zeros, under DATA's
//! new key) and holds exactly those bytes (`debugfs -R 'cat /var/lib/liftoff-fresh'`).
//! QEMU quit instead of the button (tried on aarch64) fails on both: the journal needs
//! recovery and the file is not there.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use liftoff_image::boot::{self, Install};
use liftoff_image::build::{self, BootSpec, PayloadSpec};
use liftoff_image::disk::{self, DiskSpec, Slot};
use liftoff_image::kernel::Kernel;
use liftoff_image::root::RootFsType;
use liftoff_image::secureboot::KeySet;
use liftoff_image::system::{self, BuiltSystem, RootFile, RootLink, SystemSpec};
use liftoff_image::{artifacts, esp, Arch};
use liftoff_qemu::firmware::{self, Mode};
use liftoff_qemu::vm::{Bus, Disk, Vm};

use crate::common;
use common::{attributes, word};

const TIMEOUT: Duration = Duration::from_secs(400);
const MIB: u64 = 1 << 20;

/// What v1 runs once multi-user.target is reached, when the payload disk is attached.
const UPDATE_SCRIPT: &str = "#!/bin/sh
set -e
mkdir -p /run/payload
mount -o ro /dev/vdb /run/payload
# A forged manifest (a line added after signing) is refused against this machine's db.
mkdir -p /run/forged
cp /run/payload/manifest.sig /run/forged/manifest.sig
{ cat /run/payload/manifest; echo '# forged'; } > /run/forged/manifest
if prairiedog install --manifest /run/forged/manifest --boot /run/payload/boot.img \\
  --root /run/payload/root.img --hash /run/payload/hash.img; then
  echo LIFTOFF-FORGED-INSTALLED
  exit 1
fi
# So is a UKI changed after signing: it no longer has the signed manifest's digest.
if prairiedog install --manifest /run/payload/manifest --boot /run/payload/forged-boot.img \\
  --root /run/payload/root.img --hash /run/payload/hash.img; then
  echo LIFTOFF-FORGED-INSTALLED
  exit 1
fi
echo LIFTOFF-FORGED-REFUSED
prairiedog install --manifest /run/payload/manifest --boot /run/payload/boot.img \\
  --root /run/payload/root.img --hash /run/payload/hash.img
prairiedog upgrade-to-inactive
prairiedog status
umount /run/payload
echo LIFTOFF-UPDATE-INSTALLED
systemctl reboot
";

const UPDATE_UNIT: &str = "\
[Unit]
Description=Liftoff VM test: install the update from the payload disk
After=multi-user.target
ConditionPathExists=/dev/vdb

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/liftoff-test-update
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console

[Install]
WantedBy=multi-user.target
";

/// v2's one-shot service (containerd mode; optional, `restart=no`): [`FRESH_SCRIPT`].
const FRESH_SERVICE: &str = "\
# VM test only: data written just before the power button (issue 15 item 7).
command=/bin/sh /usr/local/sbin/liftoff-test-fresh
restart=no
";

/// Waits for PID 1's health line, then writes 16 fresh random bytes to /var (bound from
/// DATA's /var) without sync, and prints them and DATA's recovery key on the console: the
/// key in /run/liftoff/recovery-key is the one PID 1 put in the header on this boot (an
/// unconfirmed key is renewed every boot, the header written before the file), so it opens
/// DATA after the stop. A test image only: a real host never shows the key on the console.
const FRESH_SCRIPT: &str = "#!/bin/sh
until dmesg | grep -q 'answers: slot B marked successful'; do sleep 0.2; done
key=$(cat /run/liftoff/recovery-key) || exit 1
fresh=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n')
printf %s \"$fresh\" > /var/lib/liftoff-fresh || exit 1
echo \"LIFTOFF-RECOVERY-KEY $key\" > /dev/console
echo \"LIFTOFF-FRESH $fresh\" > /dev/console
";

/// Where [`FRESH_SCRIPT`] writes, in the guest and in DATA's file system.
const FRESH_FILE: &str = "/var/lib/liftoff-fresh";

fn version(arch: Arch, name: &str) -> BuiltSystem {
    let prairiedog = artifacts::musl_binary(arch, "prairiedog").unwrap_or_else(|e| panic!("{e}"));
    let mut files = vec![];
    if name == "v2" {
        files.push(RootFile {
            path: "/etc/liftoff/services/60-fresh".into(),
            mode: 0o644,
            data: FRESH_SERVICE.as_bytes().to_vec(),
        });
        files.push(RootFile {
            path: "/usr/local/sbin/liftoff-test-fresh".into(),
            mode: 0o755,
            data: FRESH_SCRIPT.as_bytes().to_vec(),
        });
    }
    system::build(&SystemSpec {
        arch,
        fs: RootFsType::Erofs,
        kernel: system::SystemKernel::Debian,
        files: vec![
            RootFile {
                path: "/usr/local/sbin/prairiedog".into(),
                mode: 0o755,
                data: std::fs::read(&prairiedog).unwrap(),
            },
            RootFile {
                path: "/usr/local/sbin/liftoff-test-update".into(),
                mode: 0o755,
                data: UPDATE_SCRIPT.as_bytes().to_vec(),
            },
            RootFile {
                path: "/etc/systemd/system/liftoff-test-update.service".into(),
                mode: 0o644,
                data: UPDATE_UNIT.as_bytes().to_vec(),
            },
            RootFile {
                path: "/etc/liftoff-test-version".into(),
                mode: 0o644,
                data: name.as_bytes().to_vec(),
            },
        ]
        .into_iter()
        .chain(files)
        .collect(),
        links: vec![RootLink {
            path: "/etc/systemd/system/multi-user.target.wants/liftoff-test-update.service".into(),
            target: "/etc/systemd/system/liftoff-test-update.service".into(),
        }],
        disk: DiskSpec {
            seed: format!("vm-update-{name}"),
            boot_mib: 64,
            data_mib: 64,
            ..DiskSpec::default()
        },
    })
    .unwrap_or_else(|e| panic!("building {name} for {arch}: {e}"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// v2's payloads (BOOT image, root, hash tree, manifest), made by the image builder from
/// v2's root image for slot B, on an ext4 disk image.
fn payload_disk(
    arch: Arch,
    kernel: &Kernel,
    v2: &BuiltSystem,
    keys: &KeySet,
    boot_b: &str,
    work: &Path,
) -> std::path::PathBuf {
    let dir = work.join("payload");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = work.join("v2-root.img");
    v2.extract_root(&root).unwrap();
    let boot = BootSpec {
        kernel: kernel.image.clone(),
        initramfs: system::initramfs(arch, kernel).unwrap(),
        append: "liftoff.handoff=containerd".into(),
        version: "2".into(),
        modules: Some(kernel.clone()),
    };
    let payloads = build::write_payloads(
        &PayloadSpec {
            arch,
            seed: "vm-update-v2",
            boot: &boot,
            keys,
            boot_partuuid: Some(boot_b),
            boot_mib: 64,
            sector_size: v2.disk.sector_size,
            slot: Slot::B,
        },
        &root,
        &dir,
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(&root).unwrap();
    assert_eq!(payloads.root_hash, v2.disk.root_hash);
    // A forged BOOT image: one hex digit of the root hash in the UKI's command line changed
    // after signing.
    let mut forged = std::fs::read(dir.join("boot.img")).unwrap();
    let key = b"liftoff.roothash=";
    let at = forged.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(dir.join("forged-boot.img"), forged).unwrap();
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let disk = work.join("payload.img");
    let _ = std::fs::remove_file(&disk);
    std::fs::File::create(&disk)
        .unwrap()
        .set_len((size + 64 * MIB).div_ceil(MIB) * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&dir)
        .arg(&disk));
    disk
}

fn update(arch: Arch) {
    let kernel = Kernel::debian(arch).unwrap_or_else(|e| panic!("{e}"));
    let v1 = version(arch, "v1");
    let v2 = version(arch, "v2");
    let (work, _scratch) = common::work_dir(&format!("update-{arch}"));
    let disk = system::guest_disk(&v1, &work.join("disk.img")).unwrap();
    let (keys, _) = KeySet::development().unwrap_or_else(|e| panic!("{e}"));
    let install = Install {
        arch,
        keys: keys.clone(),
        grubenv: Some(esp::grubenv(Some(Slot::A), Some(false), &work).unwrap()),
        kernel: kernel.image.clone(),
        initramfs: system::initramfs(arch, &kernel).unwrap(),
        slots: vec![Slot::A],
        extra_cmdline: String::new(),
        version: "1".into(),
    };
    boot::install(&disk, &install, &work.join("fat")).unwrap_or_else(|e| panic!("{e}"));
    let boot_b = disk.partuuid(Slot::B.boot_partition()).to_owned();
    let payload = payload_disk(arch, &kernel, &v2, &keys, &boot_b, &work);

    let vars = work.join("vars.fd");
    firmware::fresh_vars(arch, Mode::SecureBoot, &keys, &vars).unwrap_or_else(|e| panic!("{e}"));
    let mut config =
        firmware::vm_config(arch, Mode::SecureBoot, &vars, &work.join("console-v1.log"));
    config.disks.push(Disk {
        path: disk.path.clone(),
        read_only: false,
        serial: Some("liftoff-boot".into()),
        bus: Bus::VirtioBlk,
        block_size: None,
    });
    config.disks.push(Disk {
        path: payload,
        read_only: true,
        serial: Some("payload".into()),
        bus: Bus::VirtioBlk,
        block_size: None,
    });
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_text("LIFTOFF-UPDATE-INSTALLED", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    // Under Secure Boot the guest's prairiedog checks the update against the firmware's db:
    // the forged manifest was refused before a write, the real one and its UKI verified.
    let console = vm.lines().join("\n");
    for line in [
        // The machine has a TPM: DATA's first use seals its key there (the default).
        "LUKS2 opened with the key sealed in the TPM) mounted at /local; LUKS2 header and \
         keys created",
        "/run/forged/manifest.sig: the signature of /run/forged/manifest does not verify",
        "/run/payload/forged-boot.img has BLAKE3",
        "LIFTOFF-FORGED-REFUSED",
        "kernel image signed by CN=",
        "manifest signed by CN=",
    ] {
        assert!(console.contains(line), "{line:?}: {}", config.log.display());
    }
    // B is next with one try; A is the fallback.
    assert_eq!(
        attributes(&disk.path, disk::BOOT_B) & (0xff << 48 | 1 << 56),
        word(2, 1, false, 0)
    );
    let env = esp::read_grubenv(&disk, &work).unwrap();
    assert!(env.contains("liftoff_slot=B"), "{env}");

    config.log = work.join("console-v2.log");
    config.qmp = Some(work.join("console-v2.qmp"));
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_text("liftoff-grub: booting slot B", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_text("answers: slot B marked successful", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let verity = vm
        .lines()
        .iter()
        .find(|l| l.contains("liftoff: verity:"))
        .cloned()
        .unwrap_or_default();
    assert!(verity.contains(&v2.disk.root_hash), "{verity}");
    assert!(verity.contains("ROOT-B"), "{verity}");
    // DATA, made on v1's first boot with its key sealed in the machine's TPM (swtpm, kept
    // with the variable store), unseals on the new slot: PCR 7 does not change with an
    // update signed by the same key.
    let data = vm
        .lines()
        .iter()
        .find(|l| l.contains("liftoff: data: /dev/dm-"))
        .cloned()
        .unwrap_or_default();
    assert!(
        data.contains("LUKS2 opened with the key sealed in the TPM") && !data.contains("created"),
        "{data}"
    );
    // The ACPI power button (EC2 StopInstances; on aarch64 through the firmware's ACPI
    // tables, as on Graviton): PID 1 stops containerd, unmounts DATA and powers off.
    assert!(
        vm.lines()
            .iter()
            .any(|l| l.contains("liftoff: power button: /dev/input/event")),
        "PID 1 watches no power button: {}",
        config.log.display()
    );
    // Fresh bytes in /var (DATA), not synced: the button is pressed as soon as their line
    // shows, well inside ext4's 5 s commit interval, so only the clean stop writes them out.
    let fresh = vm
        .wait_for_text("LIFTOFF-FRESH ", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.qmp(r#"{"execute": "system_powerdown"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_text("reboot: Power down", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let fresh = fresh
        .split_once("LIFTOFF-FRESH ")
        .map(|(_, r)| r.trim().to_owned())
        .unwrap_or_default();
    assert_eq!(fresh.len(), 32, "16 random bytes in hex: {fresh:?}");
    let recovery = vm
        .lines()
        .iter()
        .find_map(|l| l.split_once("LIFTOFF-RECOVERY-KEY ").map(|(_, k)| k.trim()))
        .unwrap_or_else(|| panic!("no recovery key line: {}", config.log.display()))
        .to_owned();
    // On the host, DATA opened with that recovery key: its ext4 was unmounted cleanly (no
    // journal left to replay) and holds the bytes.
    {
        let mut data = common::OpenedData::open(&disk.path, disk::DATA, &recovery, &work);
        let features = data.features();
        assert!(
            !features.contains("needs_recovery"),
            "dumpe2fs -h on DATA {}: the journal needs recovery after the power button: \
             {features}; {}",
            data.device.display(),
            config.log.display()
        );
        // The journal PID 1's first use left as it was (`lazy_journal_init`: under the key
        // made then, a block never written reads as noise): e2fsck finds nothing to fix
        // after two boots on it, and the journal's blocks are not zeros, as they would be
        // had mke2fs written all of them through dm-crypt (the boots journal a few hundred
        // KiB of metadata at most, some of it zero blocks).
        data.fsck();
        let journal = data.journal();
        assert_eq!(
            journal.get(..4),
            Some(&[0xc0, 0x3b, 0x39, 0x98][..]),
            "DATA {}: no jbd2 superblock at the journal's start",
            data.device.display()
        );
        let blocks = journal.len() / 4096;
        let zero = journal
            .chunks_exact(4096)
            .filter(|b| b.iter().all(|x| *x == 0))
            .count();
        assert!(
            blocks >= 256 && zero < blocks / 4,
            "DATA {}: {zero} of the journal's {blocks} blocks are zeros: mke2fs wrote the \
             journal through dm-crypt at first use instead of leaving it (lazy_journal_init)",
            data.device.display()
        );
        let (found, stderr) = data.cat(FRESH_FILE);
        assert_eq!(
            String::from_utf8_lossy(&found),
            fresh,
            "debugfs -R 'cat {FRESH_FILE}' on DATA {}: not the bytes written just before \
             the power button ({stderr}); {}",
            data.device.display(),
            config.log.display()
        );
    }
    let shutdown: Vec<&String> = vm
        .lines()
        .iter()
        .filter(|l| l.contains("liftoff: "))
        .skip_while(|l| !l.contains("the power button: shutting down to power off"))
        .collect();
    assert!(
        shutdown.iter().any(|l| l.contains("unmounted /local"))
            && !shutdown.iter().any(|l| l.contains("unmounting")),
        "DATA not unmounted cleanly after the power button: {shutdown:?}; {}",
        config.log.display()
    );
    drop(vm);
    let b = attributes(&disk.path, disk::BOOT_B);
    assert_eq!(
        b & (0xff << 48 | 0x7f << 56),
        word(2, 0, true, 0),
        "B: {b:016x}"
    );
    let a = attributes(&disk.path, disk::BOOT_A);
    assert!(
        a >> 48 & 0xf > 0 && a >> 56 & 1 == 1,
        "A stays the fallback: {a:016x}"
    );
}

#[test]
fn vm_x86_64_update_installs_into_b_and_boots_it() {
    update(Arch::X86_64);
}

#[test]
fn vm_aarch64_update_installs_into_b_and_boots_it() {
    update(Arch::Aarch64);
}
