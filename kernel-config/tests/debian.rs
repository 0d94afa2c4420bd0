//! The checker against Debian's cloud kernels (`linux-image-*-cloud-amd64`/`-arm64`), whose
//! configs `scripts/setup` unpacks under `.cache/kernels/{amd64,arm64}/root/boot/`.
//!
//! Debian builds device-mapper, virtio and most filesystems as modules, which Liftoff's PID 1
//! loads: with modules allowed nothing required may be missing, and exactly those options must
//! be reported as modules; with `--no-modules` exactly the required ones must be errors.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use kernel_config::{check, requirements, Arch, DotConfig, Mode, Severity};

fn cache_dir() -> PathBuf {
    std::env::var_os("LIFTOFF_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/liftoff"), PathBuf::from)
}

/// The one `config-*` of Debian's cloud kernel for `debian_arch`; fails (never skips) when
/// scripts/setup has not unpacked it.
fn debian_config(debian_arch: &str) -> PathBuf {
    let boot = cache_dir()
        .join("kernels")
        .join(debian_arch)
        .join("root/boot");
    let entries = std::fs::read_dir(&boot)
        .unwrap_or_else(|e| panic!("reading {}: {e} (run scripts/setup first)", boot.display()));
    let configs: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("config-") && n.ends_with(&format!("-cloud-{debian_arch}"))
            })
        })
        .collect();
    assert_eq!(
        configs.len(),
        1,
        "expected one cloud config in {}: {configs:?}",
        boot.display()
    );
    configs.into_iter().next().unwrap()
}

/// Options Debian's cloud kernels build as modules, the same on both architectures.
const COMMON_MODULES: &[&str] = &[
    "CONFIG_VIRTIO_PCI",
    "CONFIG_VIRTIO_BLK",
    "CONFIG_VIRTIO_MMIO",
    "CONFIG_SCSI_VIRTIO",
    "CONFIG_XEN_BLKDEV_FRONTEND",
    "CONFIG_SCSI",
    "CONFIG_BLK_DEV_SD",
    "CONFIG_ATA",
    "CONFIG_BLK_DEV_DM",
    "CONFIG_DM_VERITY",
    "CONFIG_DM_CRYPT",
    "CONFIG_CRYPTO_XTS",
    "CONFIG_CRYPTO_USER_API_SKCIPHER",
    "CONFIG_HW_RANDOM_VIRTIO",
    "CONFIG_EROFS_FS",
    "CONFIG_XFS_FS",
    "CONFIG_OVERLAY_FS",
    "CONFIG_VFAT_FS",
    "CONFIG_NLS_CODEPAGE_437",
    "CONFIG_NLS_ISO8859_1",
    "CONFIG_VETH",
    "CONFIG_BRIDGE",
    "CONFIG_VIRTIO_NET",
    "CONFIG_SOFT_WATCHDOG",
    "CONFIG_EFI_VARS_PSTORE",
    "CONFIG_EFIVAR_FS",
    "CONFIG_ENA_ETHERNET",
];

/// Recommended options the cloud kernels lack: no bootconfig, no AHCI, no i6300esb, and no
/// dm-init (device-mapper is a module there).
const MISSING_RECOMMENDED: &[&str] = &[
    "CONFIG_BOOT_CONFIG",
    "CONFIG_SATA_AHCI",
    "CONFIG_DM_INIT",
    "CONFIG_I6300ESB_WDT",
];

/// Module options that are only recommended: warnings, not errors, with --no-modules.
const RECOMMENDED_MODULES: &[&str] = &[
    "CONFIG_ATA",
    "CONFIG_HW_RANDOM_VIRTIO",
    "CONFIG_VETH",
    "CONFIG_BRIDGE",
    "CONFIG_VIRTIO_NET",
    "CONFIG_EFI_VARS_PSTORE",
    "CONFIG_ARM_SBSA_WATCHDOG",
    "CONFIG_ENA_ETHERNET",
    "CONFIG_TCG_TIS",
];

struct Case {
    debian_arch: &'static str,
    arch: Arch,
    arch_modules: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        debian_arch: "amd64",
        arch: Arch::X86_64,
        arch_modules: &["CONFIG_CRYPTO_SHA256_SSSE3", "CONFIG_CRYPTO_AES_NI_INTEL"],
    },
    Case {
        debian_arch: "arm64",
        arch: Arch::Aarch64,
        arch_modules: &[
            // NitroTPM's CRB driver is built in there, the TIS one a module.
            "CONFIG_TCG_TIS",
            "CONFIG_ARM_SBSA_WATCHDOG",
            "CONFIG_CRYPTO_SHA2_ARM64_CE",
            "CONFIG_CRYPTO_AES_ARM64_CE_BLK",
        ],
    },
];

fn set(names: impl IntoIterator<Item = &'static str>) -> BTreeSet<&'static str> {
    names.into_iter().collect()
}

#[test]
fn debian_cloud_configs_with_modules_allowed() {
    for case in CASES {
        let path = debian_config(case.debian_arch);
        let text = std::fs::read_to_string(&path).unwrap();
        let config = DotConfig::parse(&text).unwrap();
        assert_eq!(
            Arch::of_config(&config),
            Some(case.arch),
            "{}",
            path.display()
        );
        let report = check(
            &requirements(case.arch).unwrap(),
            &config,
            Mode::ModulesAllowed,
        );

        assert!(
            report.passes(),
            "{}: {:?}",
            path.display(),
            report.names(Severity::Error)
        );
        let modules = set(COMMON_MODULES.iter().chain(case.arch_modules).copied());
        assert_eq!(report.names(Severity::Info), modules, "{}", path.display());
        assert_eq!(
            report.names(Severity::Warning),
            set(MISSING_RECOMMENDED.iter().copied())
        );
        // Cross-check against the raw file: every reported module is literally `=m` there.
        for name in &modules {
            assert!(
                text.lines().any(|l| l == format!("{name}=m")),
                "{name} is not =m in {}",
                path.display()
            );
        }
        // And NVMe, ext4 and device-mapper's users are where DESIGN.md section 10 says.
        for built_in in ["CONFIG_BLK_DEV_NVME", "CONFIG_EXT4_FS", "CONFIG_DEVTMPFS"] {
            assert!(
                text.lines().any(|l| l == format!("{built_in}=y")),
                "{built_in}"
            );
        }
    }
}

#[test]
fn debian_cloud_configs_without_modules() {
    for case in CASES {
        let path = debian_config(case.debian_arch);
        let config = DotConfig::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let report = check(&requirements(case.arch).unwrap(), &config, Mode::NoModules);

        assert!(!report.passes());
        let modules = set(COMMON_MODULES.iter().chain(case.arch_modules).copied());
        let recommended = set(RECOMMENDED_MODULES.iter().copied());
        let errors: BTreeSet<_> = modules.difference(&recommended).copied().collect();
        assert_eq!(report.names(Severity::Error), errors, "{}", path.display());
        let warnings: BTreeSet<_> = modules
            .intersection(&recommended)
            .copied()
            .chain(MISSING_RECOMMENDED.iter().copied())
            .collect();
        assert_eq!(
            report.names(Severity::Warning),
            warnings,
            "{}",
            path.display()
        );
        assert_eq!(report.names(Severity::Info), BTreeSet::new());
        // The device-mapper root path is among the errors: a kernel without dm built in
        // cannot boot Liftoff without modules.
        for name in ["CONFIG_BLK_DEV_DM", "CONFIG_DM_VERITY", "CONFIG_VIRTIO_BLK"] {
            assert!(errors.contains(name), "{name}");
        }
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kernel-config"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn cli_exit_codes_and_lines_on_debian_configs() {
    for case in CASES {
        let path = debian_config(case.debian_arch);
        let p = path.to_str().unwrap();

        let (code, out, _) = run(&["check", p]);
        assert_eq!(code, 0, "{out}");
        assert!(!out.lines().any(|l| l.starts_with("error:")), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("module: CONFIG_DM_VERITY: need y")
                    && l.contains("have m (module)")),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("warning: CONFIG_DM_INIT:")
                    && l.contains("have absent")
                    && l.contains("dm-mod.create= is ignored")),
            "{out}"
        );

        // --strict also fails on the missing recommended options (bootconfig, dm-init, ...).
        let (code, out, _) = run(&["check", "--strict", p]);
        assert_eq!(code, 1, "{out}");
        assert!(!out.lines().any(|l| l.starts_with("error:")), "{out}");

        let (code, out, _) = run(&["check", "--no-modules", p]);
        assert_eq!(code, 1, "{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with("error: CONFIG_VIRTIO_BLK:"))
            .unwrap_or_else(|| panic!("no VIRTIO_BLK error in {out}"));
        assert!(line.contains("have m (module)") && line.contains("the boot disk is never found"));

        // Forcing the other architecture fails on that architecture's own options.
        let other = if case.arch == Arch::X86_64 {
            "aarch64"
        } else {
            "x86_64"
        };
        let (code, out, _) = run(&["check", "--arch", other, p]);
        assert_eq!(code, 1, "{out}");
    }
}

#[test]
fn cli_json_matches_the_library() {
    for case in CASES {
        let path = debian_config(case.debian_arch);
        let (code, out, _) = run(&["check", "--json", "--no-modules", path.to_str().unwrap()]);
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["arch"], case.arch.name());
        assert_eq!(v["mode"], "no-modules");
        assert_eq!(v["passes"], false);
        let findings = v["findings"].as_array().unwrap();
        assert_eq!(findings.len(), requirements(case.arch).unwrap().len());
        let errors: BTreeSet<&str> = findings
            .iter()
            .filter(|f| f["severity"] == "error")
            .map(|f| f["option"].as_str().unwrap())
            .collect();
        assert_eq!(
            v["summary"]["errors"].as_u64().unwrap() as usize,
            errors.len()
        );
        let verity = findings
            .iter()
            .find(|f| f["option"] == "CONFIG_DM_VERITY")
            .unwrap();
        assert_eq!(verity["need"], "y");
        assert_eq!(verity["have"], "m");
        assert_eq!(verity["status"], "wrong");
        assert_eq!(verity["module_ok"], true);
        assert_eq!(verity["required"], true);
        let dm_init = findings
            .iter()
            .find(|f| f["option"] == "CONFIG_DM_INIT")
            .unwrap();
        assert_eq!(dm_init["have"], serde_json::Value::Null);
        assert_eq!(dm_init["status"], "missing");
    }
}

#[test]
fn cli_usage_and_io_errors_exit_2() {
    let dir = std::env::temp_dir().join(format!("kernel-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, "CONFIG_A=y\nthis is not kconfig\n").unwrap();
    let no_arch = dir.join("no-arch");
    std::fs::write(&no_arch, "CONFIG_A=y\n").unwrap();
    let missing = dir.join("missing");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "Usage"),
        (vec!["check"], "Usage"),
        (vec!["frobnicate"], "unrecognized subcommand"),
        (vec!["check", missing.to_str().unwrap()], "reading"),
        (vec!["check", garbage.to_str().unwrap()], "line 2"),
        (vec!["check", no_arch.to_str().unwrap()], "pass --arch"),
        (
            vec!["check", "--arch", "riscv64", no_arch.to_str().unwrap()],
            "unknown architecture",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A config with only the architecture set misses nearly everything: exit 1, not 2.
    let (code, out, _) = run(&["check", "--arch", "x86_64", no_arch.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: CONFIG_DEVTMPFS: need y (built in), have absent")),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
