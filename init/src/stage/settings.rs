//! The settings stage: per-host settings from the bootconfig file on PRIVATE.
//!
//! A fleet boots one signed image everywhere; what differs per host (its name, a sysctl,
//! the DATA mode) is written to PRIVATE as a bootconfig (`prairiedog generate-boot-config
//! --output <PRIVATE>/bootconfig`, kernel bootconfig format, flat `key = "value"` lines).
//! Debian's kernel is built without CONFIG_BOOT_CONFIG, and under Secure Boot the loader
//! passes no initrd besides the signed image's, so PID 1 reads the file itself, with
//! prairiedog's parser, after the verified root is mounted and before DATA.
//!
//! PRIVATE is not covered by any signature: whoever can write the disk can write this
//! file. So it may only set what an operator tunes per host, never what the trust in the
//! boot rests on:
//!
//! | key | taken | why |
//! |---|---|---|
//! | `liftoff.hostname` | yes | the host's name (containerd mode) |
//! | `liftoff.sysctl.<name>` | yes, for the names of [`SYSCTL_PREFIXES`] | networking, memory and limits a workload needs |
//! | `liftoff.data` | yes | the DATA key source: DATA is still formatted only when provably fresh, and a mode that does not open DATA leaves it untouched (degraded) |
//! | `liftoff.stable_after` | yes | how long health must hold before the crash-loop count clears |
//! | `liftoff.service.<NAME>.args` | yes, for a service whose file in the verified root says `host_args=yes` (containerd mode) | words (split on spaces, no control characters, no shell) appended to that service's `command=`; the root decides which services take them |
//! | `liftoff.slot`, `boot_partuuid`, `roothash`, `salt`, `verity`, `handoff`, `watchdog`, `device_timeout`, `debug` | never | what is verified and against what, what runs as PID 1's successor, and what is armed or read before PRIVATE |
//! | anything else | no | unknown |
//!
//! The command line wins: a key it sets (the signed image's, under Secure Boot) is not
//! taken from PRIVATE. Every key that is not taken gets one line saying why.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use prairiedog::bootconfig;
use prairiedog::cmdline::{self, Config, Handoff, Problem};

use super::data::{DataError, PrivateMount};

/// The bootconfig's file name at the top of PRIVATE.
pub const FILE: &str = "bootconfig";

/// The prefix of sysctl keys.
pub const SYSCTL_KEY: &str = "liftoff.sysctl.";

/// The prefix of a service's arguments, `liftoff.service.NAME.args`.
pub const SERVICE_KEY: &str = "liftoff.service.";

/// The sysctls PRIVATE may set: networking, virtual memory, and the per-user and
/// file limits workloads raise. Not `kernel.*` (core_pattern, modprobe, kptr_restrict...),
/// `fs.protected_*`, `fs.suid_dumpable` or `vm.mmap_min_addr`: hardening that a file an
/// attacker with the disk can write must not turn off.
pub const SYSCTL_PREFIXES: [&str; 7] = [
    "net.",
    "vm.max_map_count",
    "vm.swappiness",
    "vm.overcommit_",
    "vm.dirty_",
    "fs.inotify.",
    "user.max_",
];

/// Keys PRIVATE may never set (with the `liftoff.` prefix removed).
const NEVER: [&str; 9] = [
    "slot",
    "boot_partuuid",
    "roothash",
    "salt",
    "verity",
    "handoff",
    "watchdog",
    "device_timeout",
    "debug",
];

/// The settings stage's failures: PRIVATE cannot be mounted, or its bootconfig read.
#[derive(Debug)]
pub enum SettingsError {
    Private(Box<DataError>),
    Read { path: PathBuf, source: io::Error },
    Format { path: PathBuf, reason: String },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Private(e) => write!(f, "PRIVATE: {e}"),
            SettingsError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            SettingsError::Format { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for SettingsError {}

/// The bootconfig's `key = value` entries on PRIVATE (mounted read-only as `mount`), or
/// none when PRIVATE has no bootconfig.
pub fn read(mount: &PrivateMount) -> Result<Vec<(String, String)>, SettingsError> {
    parse(read_file(mount.dir())?.as_deref(), &mount.dir().join(FILE))
}

/// The bootconfig's bytes in `dir` (at most one byte more than a bootconfig can be, for
/// [`parse`] to refuse), `None` without one.
pub fn read_file(dir: &Path) -> Result<Option<Vec<u8>>, SettingsError> {
    let path = dir.join(FILE);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(f) => f.take(LIMIT + 1).read_to_end(&mut bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => Err(e),
    }
    .map_err(|source| SettingsError::Read { path, source })?;
    Ok(Some(bytes))
}

/// The largest bootconfig file: its text, its footer and a newline's slack.
const LIMIT: u64 = (bootconfig::MAX_SIZE + bootconfig::FOOTER_LEN + 3) as u64;

/// The entries of a bootconfig file's `bytes` (none without a file); `path` names it in
/// errors.
pub fn parse(bytes: Option<&[u8]>, path: &Path) -> Result<Vec<(String, String)>, SettingsError> {
    let Some(bytes) = bytes else {
        return Ok(Vec::new());
    };
    let format = |reason: String| SettingsError::Format {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() as u64 > LIMIT {
        return Err(format(format!(
            "larger than a bootconfig can be ({LIMIT} bytes)"
        )));
    }
    let parsed = bootconfig::parse(bytes).map_err(|e| format(e.to_string()))?;
    let text = std::str::from_utf8(parsed.text)
        .map_err(|_| format("the settings are not UTF-8".to_owned()))?;
    bootconfig::parse_flat(text).map_err(|e| format(e.to_string()))
}

/// What [`merge`] took from PRIVATE, and a line for each entry it did not take.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// The `liftoff.` keys taken into the configuration.
    pub taken: Vec<String>,
    /// The sysctls to set, as (`net.ipv4.ip_forward`, `1`).
    pub sysctls: Vec<(String, String)>,
    /// The services' arguments, as (`20-agent`, `--region eu-1`): appended to the argv of
    /// a service that declared `host_args=yes` (`supervise::service::add_host_args`).
    pub service_args: Vec<(String, String)>,
    /// One line per entry not taken, saying why.
    pub ignored: Vec<String>,
}

/// A sysctl name PRIVATE may set: one of [`SYSCTL_PREFIXES`], lowercase letters, digits,
/// `_`, `-` and single dots, so it names a file under /proc/sys and nothing else.
pub fn sysctl_allowed(name: &str) -> bool {
    let plain = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    plain && SYSCTL_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Takes PRIVATE's `entries` into `config` where the rules of this module allow it.
pub fn merge(config: &mut Config, entries: &[(String, String)]) -> Merged {
    let mut merged = Merged::default();
    for (key, value) in entries {
        let mut ignore = |why: String| merged.ignored.push(format!("{key}: {why}, ignored"));
        if let Some(name) = key.strip_prefix(SYSCTL_KEY) {
            if !sysctl_allowed(name) {
                ignore("not a sysctl PRIVATE may set".to_owned());
            } else if value.contains(['\n', '\0']) {
                ignore("a sysctl value is one line".to_owned());
            } else {
                merged.sysctls.retain(|(n, _)| n != name);
                merged.sysctls.push((name.to_owned(), value.clone()));
            }
            continue;
        }
        if let Some(rest) = key.strip_prefix(SERVICE_KEY) {
            match rest.strip_suffix(".args") {
                Some(name) if !name.is_empty() => {
                    if config.handoff != Handoff::Containerd {
                        ignore("services run in containerd mode only".to_owned());
                    } else if value.chars().any(char::is_control) {
                        ignore("a control character in arguments".to_owned());
                    } else {
                        merged.service_args.retain(|(n, _)| n != name);
                        merged.service_args.push((name.to_owned(), value.clone()));
                    }
                }
                _ => ignore("unknown key".to_owned()),
            }
            continue;
        }
        let Some(name) = key.strip_prefix("liftoff.").map(|n| n.replace('-', "_")) else {
            ignore("not a liftoff. key".to_owned());
            continue;
        };
        if NEVER.contains(&name.as_str()) {
            ignore("never taken from PRIVATE, which no signature covers".to_owned());
            continue;
        }
        let on_command_line = match name.as_str() {
            "hostname" => config.hostname.is_some(),
            "data" => config.data.is_some(),
            "stable_after" => config.stable_after_secs.is_some(),
            _ => {
                ignore("unknown key".to_owned());
                continue;
            }
        };
        if on_command_line && !merged.taken.contains(&name) {
            ignore("the command line sets it".to_owned());
            continue;
        }
        match cmdline::set(config, key, value) {
            Ok(()) => {
                if !merged.taken.contains(&name) {
                    merged.taken.push(name);
                }
            }
            Err(Problem::Malformed { expected, .. }) => {
                ignore(format!("{value:?} is not {expected}"))
            }
            Err(Problem::UnknownKey { .. }) => ignore("unknown key".to_owned()),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use prairiedog::cmdline::DataMode;

    fn entries(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn takes_operator_settings() {
        let mut config = Config::default();
        let merged = merge(
            &mut config,
            &entries(&[
                ("liftoff.hostname", "node-17.example"),
                ("liftoff.data", "ephemeral"),
                ("liftoff.stable-after", "120"),
                ("liftoff.sysctl.net.core.somaxconn", "4096"),
                ("liftoff.sysctl.vm.max_map_count", "262144"),
                ("liftoff.sysctl.net.core.somaxconn", "8192"),
            ]),
        );
        assert_eq!(
            config.hostname.as_ref().map(|h| h.as_str()),
            Some("node-17.example")
        );
        assert_eq!(config.data, Some(DataMode::Ephemeral));
        assert_eq!(config.stable_after_secs, Some(120));
        assert_eq!(merged.taken, ["hostname", "data", "stable_after"]);
        // The last value of a sysctl wins, as in a sysctl.conf.
        assert_eq!(
            merged.sysctls,
            entries(&[
                ("vm.max_map_count", "262144"),
                ("net.core.somaxconn", "8192")
            ])
        );
        assert!(merged.ignored.is_empty(), "{:?}", merged.ignored);
    }

    /// An attacker who can write PRIVATE cannot change what is verified, what runs next,
    /// or turn off hardening through a sysctl: each such key is refused by name.
    #[test]
    fn refuses_what_would_weaken_the_boot() {
        let mut config = Config::default();
        let before = config.clone();
        let merged = merge(
            &mut config,
            &entries(&[
                ("liftoff.roothash", "00"),
                ("liftoff.salt", "-"),
                ("liftoff.slot", "B"),
                (
                    "liftoff.boot_partuuid",
                    "01234567-89ab-cdef-0123-456789abcdef",
                ),
                ("liftoff.verity", "eio"),
                ("liftoff.handoff", "/bin/sh"),
                ("liftoff.watchdog", "0"),
                ("liftoff.device_timeout", "1"),
                ("liftoff.debug", "1"),
                ("liftoff.sysctl.kernel.core_pattern", "|/local/evil"),
                ("liftoff.sysctl.kernel.modprobe", "/local/evil"),
                ("liftoff.sysctl.vm.mmap_min_addr", "0"),
                ("liftoff.sysctl.fs.protected_symlinks", "0"),
                ("liftoff.sysctl.net/../../kernel/modprobe", "x"),
                ("liftoff.sysctl.net..ipv4", "1"),
                ("liftoff.sysctl.net.ipv4.ip_forward", "1\n2"),
                ("liftoff.nonsense", "1"),
                ("kernel.console", "ttyS0"),
            ]),
        );
        assert_eq!(config, before);
        assert!(merged.taken.is_empty());
        assert!(merged.sysctls.is_empty());
        assert_eq!(merged.ignored.len(), 18, "{:#?}", merged.ignored);
        assert_eq!(
            merged.ignored[0],
            "liftoff.roothash: never taken from PRIVATE, which no signature covers, ignored"
        );
        assert_eq!(
            merged.ignored[9],
            "liftoff.sysctl.kernel.core_pattern: not a sysctl PRIVATE may set, ignored"
        );
        assert_eq!(
            merged.ignored[17],
            "kernel.console: not a liftoff. key, ignored"
        );
    }

    /// Under Secure Boot the command line is the signed image's: it wins.
    #[test]
    fn the_command_line_wins() {
        let mut config = cmdline::parse("liftoff.data=tpm2 liftoff.hostname=signed").config;
        let merged = merge(
            &mut config,
            &entries(&[
                ("liftoff.data", "none"),
                ("liftoff.hostname", "other"),
                ("liftoff.stable_after", "5"),
            ]),
        );
        assert_eq!(config.data, Some(DataMode::Tpm2));
        assert_eq!(config.hostname.as_ref().map(|h| h.as_str()), Some("signed"));
        assert_eq!(config.stable_after_secs, Some(5));
        assert_eq!(
            merged.ignored,
            [
                "liftoff.data: the command line sets it, ignored",
                "liftoff.hostname: the command line sets it, ignored"
            ]
        );
    }

    /// A service's arguments are taken as words; a value with a control character, or a
    /// key that is not `liftoff.service.NAME.args`, is refused by name.
    #[test]
    fn service_arguments() {
        let mut config = Config {
            handoff: Handoff::Containerd,
            ..Config::default()
        };
        let before = config.clone();
        let merged = merge(
            &mut config,
            &entries(&[
                ("liftoff.service.20-agent.args", "--region eu-1"),
                ("liftoff.service.10.dhcp.args", "-d"),
                ("liftoff.service.20-agent.args", "--region eu-2"),
                ("liftoff.service.30-x.args", "a\nb"),
                ("liftoff.service.30-x.args", "a\tb"),
                ("liftoff.service.30-x.command", "/bin/sh"),
                ("liftoff.service..args", "x"),
            ]),
        );
        assert_eq!(config, before);
        assert!(merged.taken.is_empty());
        // The last value wins; a dot in a service name is kept.
        assert_eq!(
            merged.service_args,
            entries(&[("10.dhcp", "-d"), ("20-agent", "--region eu-2")])
        );
        assert_eq!(
            merged.ignored,
            [
                "liftoff.service.30-x.args: a control character in arguments, ignored",
                "liftoff.service.30-x.args: a control character in arguments, ignored",
                "liftoff.service.30-x.command: unknown key, ignored",
                "liftoff.service..args: unknown key, ignored",
            ]
        );
        // systemd mode runs no services.
        let mut config = Config::default();
        let merged = merge(&mut config, &entries(&[("liftoff.service.a.args", "-x")]));
        assert!(merged.service_args.is_empty());
        assert_eq!(
            merged.ignored,
            ["liftoff.service.a.args: services run in containerd mode only, ignored"]
        );
    }

    #[test]
    fn a_malformed_value_is_named() {
        let mut config = Config::default();
        let merged = merge(
            &mut config,
            &entries(&[("liftoff.data", "plaintext"), ("liftoff.hostname", "-bad")]),
        );
        assert_eq!(config, Config::default());
        assert_eq!(
            merged.ignored[0],
            "liftoff.data: \"plaintext\" is not tpm2, keyfile, ephemeral or none, ignored"
        );
        assert_eq!(merged.ignored.len(), 2);
    }

    #[test]
    fn sysctl_names() {
        for ok in [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.all.rp_filter",
            "vm.max_map_count",
            "fs.inotify.max_user_watches",
            "user.max_user_namespaces",
            "net.ipv6.conf.eth-0.disable_ipv6",
        ] {
            assert!(sysctl_allowed(ok), "{ok}");
        }
        for bad in [
            "",
            "net",
            "kernel.panic",
            "Net.ipv4.ip_forward",
            "net.ipv4/../../x",
            "net..x",
            "net.x.",
            "vm.mmap_min_addr",
            "fs.suid_dumpable",
        ] {
            assert!(!sysctl_allowed(bad), "{bad}");
        }
    }
}
