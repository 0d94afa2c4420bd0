//! The test system shared by the VM tests and the boot benchmark: Debian's root with
//! systemd and containerd, the probe, a test unit, and a grubenv as GRUB leaves it.

#![allow(dead_code)] // each test binary uses its own part of this module

use liftoff_qemu::image::{DiskSpec, RootFsType};
use liftoff_qemu::system::{self, BuiltSystem, RootFile, RootLink, SystemSpec};
use liftoff_qemu::{artifacts, Arch};

pub const PROBE: &str = "/usr/local/bin/liftoff-probe";

/// The systemd unit that reports and powers off once multi-user.target is reached.
const TEST_UNIT: &str = "\
[Unit]
Description=Liftoff VM test report
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/bin/liftoff-probe
ExecStartPost=/usr/bin/systemctl --no-block poweroff
StandardOutput=tty
TTYPath=/dev/console

[Install]
WantedBy=multi-user.target
";

/// A grubenv as GRUB leaves it just before booting slot A.
pub fn grubenv_pending_a() -> Vec<u8> {
    let mut env = b"# GRUB Environment Block\nliftoff_slot=A\nliftoff_pending=1\n".to_vec();
    env.resize(1024, b'#');
    env
}

pub fn system(arch: Arch) -> BuiltSystem {
    let probe = artifacts::musl_binary(arch, "probe").unwrap_or_else(|e| panic!("{e}"));
    let spec = SystemSpec {
        arch,
        fs: RootFsType::Erofs,
        files: vec![
            RootFile {
                path: PROBE.into(),
                mode: 0o755,
                data: std::fs::read(&probe).unwrap(),
            },
            RootFile {
                path: "/etc/liftoff/bounding-set.drop".into(),
                mode: 0o644,
                data: b"# A container host never loads modules or pokes at /dev/mem.\ncap_sys_module\nCAP_SYS_RAWIO\n".to_vec(),
            },
            RootFile {
                path: "/etc/systemd/system/liftoff-test.service".into(),
                mode: 0o644,
                data: TEST_UNIT.as_bytes().to_vec(),
            },
        ],
        links: vec![RootLink {
            path: "/etc/systemd/system/multi-user.target.wants/liftoff-test.service".into(),
            target: "/etc/systemd/system/liftoff-test.service".into(),
        }],
        disk: DiskSpec {
            seed: "vm-root".into(),
            esp_files: vec![("grubenv".into(), grubenv_pending_a())],
            boot_mib: 8,
            data_mib: 32,
            ..DiskSpec::default()
        },
    };
    system::build(&spec).unwrap_or_else(|e| panic!("building the {arch} image: {e}"))
}
