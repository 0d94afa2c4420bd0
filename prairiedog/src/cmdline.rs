//! The kernel command line: splitting it the way the kernel does, and reading the
//! `liftoff.` keys of DESIGN.md section 6 into typed values. The one parser of the
//! workspace: PID 1 reads its configuration with [`parse`], and `prairiedog` the running
//! slot ([`crate::host::cmdline_slot`]).
//!
//! Splitting follows the kernel's `next_arg()` (lib/cmdline.c): arguments are separated by
//! white space; a double quote toggles quoting anywhere, so `key="a b"` and `"key=a b"` are one
//! argument; the quotes that open the argument or the value and the matching one at its end
//! are removed, any others are kept. `--` ends the kernel's parameters; what follows is
//! passed to init as arguments and is not ours to read.
//!
//! Keys compare with `-` and `_` treated alike, as the kernel does for its own parameters.
//! A key that appears more than once takes its last well-formed value. An unknown `liftoff.`
//! key or a malformed value is reported as a [`Problem`] (PID 1 logs it) and ignored: the
//! boot goes on with the earlier value or the default. Every other parameter is left alone;
//! the kernel already passes the ones meant for init on to it, and PID 1 forwards them.
//!
//! Values are parsed here, once, into the types of the crates that use them: the boot
//! partition's [`gpt::Guid`], the root hash as [`verity::RootHashBytes`] (hex, 1 to 64
//! bytes; the superblock's algorithm fixes its length at the verity stage), the salt as
//! [`verity::Salt`] (`-` is no salt) and the error mode as [`verity::ErrorMode`].

use std::fmt;

/// One `key[=value]` argument of the command line, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Everything before the first `=`.
    pub key: String,
    /// Everything after it; none without `=`.
    pub value: Option<String>,
}

/// Splits a command line into parameters and the arguments after `--`.
pub fn split(cmdline: &str) -> (Vec<Param>, Vec<String>) {
    let mut params = Vec::new();
    let mut rest = cmdline.trim_start_matches(is_space);
    while !rest.is_empty() {
        let (param, next) = next_arg(rest);
        rest = next.trim_start_matches(is_space);
        if param.key == "--" && param.value.is_none() {
            let init_args = split(rest)
                .0
                .into_iter()
                .map(|p| match p.value {
                    Some(v) => format!("{}={v}", p.key),
                    None => p.key,
                })
                .collect();
            return (params, init_args);
        }
        params.push(param);
    }
    (params, Vec::new())
}

/// The kernel's `isspace()` on ASCII: space, tab, newline, vertical tab, form feed and
/// carriage return. (Rust's `is_ascii_whitespace` leaves out the vertical tab. The kernel
/// also counts byte 0xa0, Latin-1's no-break space; in UTF-8 text that byte only occurs
/// inside a character, which this parser, reading text, keeps whole.)
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// One step of the kernel's `next_arg()`: the argument at the start of `args` and the rest.
fn next_arg(args: &str) -> (Param, &str) {
    let (body, quoted) = match args.strip_prefix('"') {
        Some(b) => (b, true),
        None => (args, false),
    };
    let mut in_quote = quoted;
    let mut end = body.len();
    let mut equals = None;
    for (i, c) in body.char_indices() {
        if is_space(c) && !in_quote {
            end = i;
            break;
        }
        // The kernel keeps the offset of the first '=' in a variable that is 0 for "none
        // yet", so an '=' at the very start of the argument is part of the name.
        if equals.is_none() && c == '=' && i > 0 {
            equals = Some(i);
        }
        if c == '"' {
            in_quote = !in_quote;
        }
    }
    let (arg, rest) = body.split_at(end);
    // The separator (one white-space character) is consumed with the argument.
    let rest = rest.get(1..).unwrap_or("");
    let param = match equals {
        None => Param {
            key: strip_trailing_quote(arg, quoted).to_owned(),
            value: None,
        },
        Some(eq) => {
            let key = arg.get(..eq).unwrap_or("");
            let mut value = arg.get(eq + 1..).unwrap_or("");
            if let Some(v) = value.strip_prefix('"') {
                value = v.strip_suffix('"').unwrap_or(v);
            } else {
                value = strip_trailing_quote(value, quoted);
            }
            Param {
                key: key.to_owned(),
                value: Some(value.to_owned()),
            }
        }
    };
    (param, rest)
}

fn strip_trailing_quote(s: &str, quoted: bool) -> &str {
    if quoted {
        s.strip_suffix('"').unwrap_or(s)
    } else {
        s
    }
}

pub use crate::Slot;
pub use gpt::Guid;
/// What dm-verity does when a block does not match its hash (`liftoff.verity`): the
/// table's error mode, restart by default (fail closed, then the crash-loop counter
/// decides).
pub use verity::ErrorMode as VerityMode;
pub use verity::{RootHashBytes, Salt};

/// Where the DATA partition's key comes from (`liftoff.data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMode {
    /// A fresh random key each boot; nothing on DATA survives a reboot.
    Ephemeral,
    /// A key kept on PRIVATE, made on the first boot.
    Keyfile,
    /// A secret sealed in the TPM to PCR 7 (Secure Boot), made on the first boot.
    Tpm2,
    /// No encryption.
    None,
}

/// What runs after switch_root (`liftoff.handoff`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Handoff {
    /// Exec `/sbin/init`.
    #[default]
    Systemd,
    /// Stay PID 1 and supervise containerd.
    Containerd,
    /// Exec this absolute path.
    Path(String),
}

/// Everything PID 1 reads from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `liftoff.slot`: the slot the bootloader booted.
    pub slot: Option<Slot>,
    /// `liftoff.boot_partuuid`: the unique GUID of the BOOT partition the kernel came from.
    pub boot_partuuid: Option<Guid>,
    /// `liftoff.roothash`: the trusted verity root hash.
    pub roothash: Option<RootHashBytes>,
    /// `liftoff.salt`: the trusted salt (none: the superblock's).
    pub salt: Option<Salt>,
    /// `liftoff.verity`: the error mode of the verity table.
    pub verity: VerityMode,
    /// `liftoff.data`: where DATA's key comes from.
    pub data: Option<DataMode>,
    /// `liftoff.handoff`: what runs after switch_root.
    pub handoff: Handoff,
    /// `liftoff.watchdog`: seconds to reach health.
    pub watchdog_secs: Option<u32>,
    /// `liftoff.device_timeout`: seconds to wait for the boot disk.
    pub device_timeout_secs: Option<u32>,
    /// `liftoff.stable_after`: seconds health must hold before the slot's crash-loop
    /// (unhealthy) count is cleared.
    pub stable_after_secs: Option<u32>,
    /// `liftoff.hostname`: the host's name in containerd mode.
    pub hostname: Option<Hostname>,
    /// `liftoff.debug`: debug lines.
    pub debug: bool,
}

/// A host name as `liftoff.hostname` takes it: 1 to 64 bytes (the kernel's
/// `__NEW_UTS_LEN`), dot-separated labels of ASCII letters, digits and `-`, none empty,
/// none starting or ending with `-` (RFC 1123 section 2.1), and no longer than 63 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname(String);

impl Hostname {
    /// `name` if it is a valid host name.
    pub fn parse(name: &str) -> Option<Hostname> {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        (name.len() <= 64 && name.split('.').all(label_ok)).then(|| Hostname(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Something wrong with a `liftoff.` key; the key is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A `liftoff.` key this parser does not know.
    UnknownKey {
        /// The key as written.
        key: String,
    },
    /// A known key with a value it cannot take.
    Malformed {
        /// The key as written.
        key: String,
        /// The value, if any.
        value: Option<String>,
        /// What the key takes.
        expected: &'static str,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownKey { key } => {
                write!(f, "unknown command-line key {key}, ignored")
            }
            Problem::Malformed {
                key,
                value: Some(value),
                expected,
            } => write!(
                f,
                "malformed command-line value {key}={value:?}: expected {expected}; ignored"
            ),
            Problem::Malformed {
                key,
                value: None,
                expected,
            } => write!(
                f,
                "command-line key {key} needs a value: expected {expected}; ignored"
            ),
        }
    }
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cmdline {
    /// The `liftoff.` keys, typed.
    pub config: Config,
    /// Unknown keys and malformed values, each ignored.
    pub problems: Vec<Problem>,
    /// Parameters that are not ours, in order, for the kernel and the next stage.
    pub others: Vec<Param>,
    /// Arguments after `--`, which the kernel passes to init.
    pub init_args: Vec<String>,
}

const PREFIX: &str = "liftoff.";

/// Parses a whole command line (the contents of `/proc/cmdline`).
pub fn parse(cmdline: &str) -> Cmdline {
    let (params, init_args) = split(cmdline);
    let mut out = Cmdline {
        init_args,
        ..Cmdline::default()
    };
    for param in params {
        match param.key.strip_prefix(PREFIX) {
            Some(name) => {
                let name = name.replace('-', "_");
                if let Err(problem) = apply(&mut out.config, &name, &param) {
                    out.problems.push(problem);
                }
            }
            None => out.others.push(param),
        }
    }
    out
}

/// Sets one `liftoff.` key (`key` with its prefix; `-` and `_` alike) on `config` as the
/// command line would, for settings that come from elsewhere: PID 1 takes a few from the
/// bootconfig on PRIVATE.
pub fn set(config: &mut Config, key: &str, value: &str) -> Result<(), Problem> {
    let name = key.strip_prefix(PREFIX).unwrap_or(key).replace('-', "_");
    let param = Param {
        key: key.to_owned(),
        value: Some(value.to_owned()),
    };
    apply(config, &name, &param)
}

/// The first place where the `liftoff.` keys of a running command line part from those of
/// a signed one. Under Secure Boot PID 1 boots only with the signed image's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsigned {
    /// A `key[=value]` of the running line that the signed line does not have there.
    Added(String),
    /// A `key[=value]` of the signed line that the running line lacks.
    Missing(String),
}

impl fmt::Display for Unsigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsigned::Added(p) => write!(f, "{p} did not come from the signed image"),
            Unsigned::Missing(p) => write!(f, "the signed image's {p} is missing"),
        }
    }
}

/// Compares the `liftoff.` keys of `running` with those of `signed`, in order (the last
/// value of a key wins, so order matters), keys with `-` and `_` alike; every other
/// parameter is the kernel's business. `None` when they are the same.
pub fn unsigned_difference(signed: &str, running: &str) -> Option<Unsigned> {
    let ours = |line: &str| -> Vec<(String, Option<String>)> {
        split(line)
            .0
            .into_iter()
            .filter(|p| p.key.starts_with(PREFIX))
            .map(|p| (p.key.replace('-', "_"), p.value))
            .collect()
    };
    let show = |(key, value): &(String, Option<String>)| match value {
        Some(v) => format!("{key}={v}"),
        None => key.clone(),
    };
    let (signed, running) = (ours(signed), ours(running));
    let at = signed
        .iter()
        .zip(&running)
        .position(|(s, r)| s != r)
        .unwrap_or(signed.len().min(running.len()));
    match (running.get(at), signed.get(at)) {
        (Some(r), _) => Some(Unsigned::Added(show(r))),
        (None, Some(s)) => Some(Unsigned::Missing(show(s))),
        (None, None) => None,
    }
}

fn apply(config: &mut Config, name: &str, param: &Param) -> Result<(), Problem> {
    let value = param.value.as_deref();
    let malformed = |expected: &'static str| Problem::Malformed {
        key: param.key.clone(),
        value: param.value.clone(),
        expected,
    };
    match name {
        "slot" => {
            config.slot = Some(
                value
                    .and_then(|v| Slot::parse(&v.to_ascii_uppercase()))
                    .ok_or_else(|| malformed("A or B"))?,
            )
        }
        "boot_partuuid" => {
            config.boot_partuuid = Some(
                value
                    .and_then(|v| v.parse::<Guid>().ok())
                    .ok_or_else(|| malformed("a GUID like 01234567-89ab-cdef-0123-456789abcdef"))?,
            )
        }
        "roothash" => {
            config.roothash = Some(
                value
                    .and_then(|v| v.parse::<RootHashBytes>().ok())
                    .ok_or_else(|| malformed("an even number of hex digits, at most 128"))?,
            )
        }
        "salt" => {
            config.salt = Some(match value {
                Some("-") => Salt::none(),
                // An empty value is not `-`: it is refused rather than read as no salt.
                Some(v) if !v.is_empty() => v
                    .parse::<Salt>()
                    .map_err(|_| malformed("- or an even number of hex digits, at most 512"))?,
                _ => return Err(malformed("- or an even number of hex digits, at most 512")),
            })
        }
        "verity" => {
            config.verity = value
                .and_then(|v| v.parse::<VerityMode>().ok())
                .ok_or_else(|| malformed("restart, panic or eio"))?
        }
        "data" => {
            config.data = Some(match value {
                Some("ephemeral") => DataMode::Ephemeral,
                Some("keyfile") => DataMode::Keyfile,
                Some("none") => DataMode::None,
                Some("tpm2") => DataMode::Tpm2,
                _ => return Err(malformed("tpm2, keyfile, ephemeral or none")),
            })
        }
        "handoff" => {
            config.handoff = match value {
                Some("systemd") => Handoff::Systemd,
                Some("containerd") => Handoff::Containerd,
                Some(p) if p.starts_with('/') && p.len() > 1 => Handoff::Path(p.to_owned()),
                _ => return Err(malformed("systemd, containerd or an absolute path")),
            }
        }
        "watchdog" => {
            config.watchdog_secs = Some(seconds(value).ok_or_else(|| malformed("seconds > 0"))?)
        }
        "device_timeout" => {
            config.device_timeout_secs =
                Some(seconds(value).ok_or_else(|| malformed("seconds > 0"))?)
        }
        "stable_after" => {
            config.stable_after_secs = Some(seconds(value).ok_or_else(|| malformed("seconds > 0"))?)
        }
        "hostname" => {
            config.hostname =
                Some(value.and_then(Hostname::parse).ok_or_else(|| {
                    malformed("a host name (letters, digits, - and ., at most 64)")
                })?)
        }
        "debug" => {
            config.debug = match value {
                None | Some("1") | Some("on") | Some("yes") | Some("true") => true,
                Some("0") | Some("off") | Some("no") | Some("false") => false,
                _ => return Err(malformed("no value, on or off")),
            }
        }
        _ => {
            return Err(Problem::UnknownKey {
                key: param.key.clone(),
            })
        }
    }
    Ok(())
}

fn seconds(value: Option<&str>) -> Option<u32> {
    value?.parse::<u32>().ok().filter(|s| *s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str, value: Option<&str>) -> Param {
        Param {
            key: key.into(),
            value: value.map(Into::into),
        }
    }

    #[test]
    fn splits_like_the_kernel() {
        let cases: &[(&str, &[Param], &[&str])] = &[
            ("", &[], &[]),
            ("   ", &[], &[]),
            ("ro", &[p("ro", None)], &[]),
            (
                "console=ttyS0  quiet\n",
                &[p("console", Some("ttyS0")), p("quiet", None)],
                &[],
            ),
            ("a=b=c", &[p("a", Some("b=c"))], &[]),
            ("a=", &[p("a", Some(""))], &[]),
            ("k=\"x y\" z", &[p("k", Some("x y")), p("z", None)], &[]),
            ("\"k=x y\" z", &[p("k", Some("x y")), p("z", None)], &[]),
            ("\"flag\"", &[p("flag", None)], &[]),
            // A quote inside a value toggles quoting but is kept.
            (
                "k=a\"b c\"d e",
                &[p("k", Some("a\"b c\"d")), p("e", None)],
                &[],
            ),
            // Unterminated quote runs to the end.
            ("k=\"x y", &[p("k", Some("x y"))], &[]),
            ("ro -- single x=1", &[p("ro", None)], &["single", "x=1"]),
            ("--", &[], &[]),
            ("a -- \"b c\"", &[p("a", None)], &["b c"]),
            ("tab\tsep", &[p("tab", None), p("sep", None)], &[]),
            // An '=' at the start of an argument does not split it (found by fuzzing
            // against a model of the kernel's next_arg()).
            ("=", &[p("=", None)], &[]),
            ("=a=b", &[p("=a", Some("b"))], &[]),
            ("\"=x\" y", &[p("=x", None), p("y", None)], &[]),
            ("a -- =b", &[p("a", None)], &["=b"]),
            // Vertical tab separates, as every other character of the kernel's isspace().
            (
                "a\x0bb=c\x0c\rd",
                &[p("a", None), p("b", Some("c")), p("d", None)],
                &[],
            ),
            ("\x0b-- x", &[], &["x"]),
        ];
        for (line, params, args) in cases {
            let (got, got_args) = split(line);
            assert_eq!(&got, params, "{line:?}");
            assert_eq!(got_args, *args, "{line:?}");
        }
    }

    #[test]
    fn reads_every_key() {
        let c = parse(
            "console=ttyS0 liftoff.slot=B liftoff.boot_partuuid=0123ABCD-89ab-cdef-0123-456789ABCDEF \
             liftoff.roothash=ABCDEF01 liftoff.salt=- liftoff.verity=eio liftoff.data=keyfile \
             liftoff.handoff=/probe liftoff.watchdog=30 liftoff.device-timeout=7 liftoff.debug \
             liftoff.stable_after=90 liftoff.hostname=node-7.example",
        );
        assert_eq!(c.problems, vec![]);
        assert_eq!(
            c.config,
            Config {
                slot: Some(Slot::B),
                boot_partuuid: Some("0123abcd-89ab-cdef-0123-456789abcdef".parse().unwrap()),
                roothash: Some("abcdef01".parse().unwrap()),
                salt: Some(Salt::none()),
                verity: VerityMode::Eio,
                data: Some(DataMode::Keyfile),
                handoff: Handoff::Path("/probe".into()),
                watchdog_secs: Some(30),
                device_timeout_secs: Some(7),
                stable_after_secs: Some(90),
                hostname: Hostname::parse("node-7.example"),
                debug: true,
            }
        );
        assert_eq!(c.others, vec![p("console", Some("ttyS0"))]);
    }

    #[test]
    fn defaults() {
        let c = parse("root=/dev/vda ro");
        assert_eq!(c.config, Config::default());
        assert_eq!(c.config.verity, VerityMode::Restart);
        assert_eq!(c.config.handoff, Handoff::Systemd);
        assert_eq!(c.others.len(), 2);
    }

    #[test]
    fn last_well_formed_value_wins() {
        let c = parse("liftoff.slot=A liftoff.slot=B");
        assert_eq!(c.config.slot, Some(Slot::B));
        let c = parse("liftoff.handoff=containerd liftoff.handoff=systemd");
        assert_eq!(c.config.handoff, Handoff::Systemd);
        // A malformed later value is reported and the earlier one stays.
        let c = parse("liftoff.watchdog=10 liftoff.watchdog=soon");
        assert_eq!(c.config.watchdog_secs, Some(10));
        assert_eq!(c.problems.len(), 1);
    }

    #[test]
    fn problems_are_reported_and_ignored() {
        let cases: &[(&str, &str)] = &[
            (
                "liftoff.bogus=1",
                "unknown command-line key liftoff.bogus, ignored",
            ),
            (
                "liftoff.slot=C",
                "malformed command-line value liftoff.slot=\"C\": expected A or B; ignored",
            ),
            (
                "liftoff.slot",
                "command-line key liftoff.slot needs a value: expected A or B; ignored",
            ),
            (
                "liftoff.roothash=abc",
                "malformed command-line value liftoff.roothash=\"abc\": expected an even number of hex digits, at most 128; ignored",
            ),
            (
                "liftoff.roothash=zz",
                "malformed command-line value liftoff.roothash=\"zz\": expected an even number of hex digits, at most 128; ignored",
            ),
            (
                "liftoff.watchdog=0",
                "malformed command-line value liftoff.watchdog=\"0\": expected seconds > 0; ignored",
            ),
            (
                "liftoff.handoff=relative/path",
                "malformed command-line value liftoff.handoff=\"relative/path\": expected systemd, containerd or an absolute path; ignored",
            ),
            (
                "liftoff.boot_partuuid=0123",
                "malformed command-line value liftoff.boot_partuuid=\"0123\": expected a GUID like 01234567-89ab-cdef-0123-456789abcdef; ignored",
            ),
            (
                "liftoff.debug=maybe",
                "malformed command-line value liftoff.debug=\"maybe\": expected no value, on or off; ignored",
            ),
        ];
        for (line, message) in cases {
            let c = parse(line);
            assert_eq!(c.config, Config::default(), "{line}");
            let got: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
            assert_eq!(got, vec![message.to_string()], "{line}");
        }
    }

    #[test]
    fn hostnames() {
        let long_label = "a".repeat(63);
        for good in [
            "liftoff",
            "a",
            "node-7",
            "x1.example.com",
            "A-b.C",
            long_label.as_str(),
        ] {
            assert_eq!(
                parse(&format!("liftoff.hostname={good}")).config.hostname,
                Some(Hostname(good.to_owned())),
                "{good}"
            );
        }
        let too_long = format!("{long_label}.b");
        assert_eq!(too_long.len(), 65);
        let label_too_long = "a".repeat(64);
        for bad in [
            "",
            "-node",
            "node-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "a b",
            "näme",
            "a/b",
            too_long.as_str(),
            label_too_long.as_str(),
        ] {
            assert_eq!(Hostname::parse(bad), None, "{bad:?}");
        }
        let c = parse("liftoff.hostname=bad_name");
        assert_eq!(c.config.hostname, None);
        assert_eq!(
            c.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["malformed command-line value liftoff.hostname=\"bad_name\": expected a host name (letters, digits, - and ., at most 64); ignored"]
        );
        assert!(parse("liftoff.hostname").config.hostname.is_none());
        assert_eq!(Hostname::parse(&"a".repeat(64)), None);
        assert_eq!(
            Hostname::parse(&format!("{}.b", "a".repeat(62))).map(|h| h.as_str().len()),
            Some(64)
        );
    }

    #[test]
    fn salt_limits() {
        let ok = "ab".repeat(256);
        assert_eq!(
            parse(&format!("liftoff.salt={ok}")).config.salt,
            Some(ok.parse().unwrap())
        );
        let too_long = "ab".repeat(257);
        assert_eq!(parse(&format!("liftoff.salt={too_long}")).problems.len(), 1);
    }

    #[test]
    fn unsigned_keys_are_found() {
        let signed = "console=ttyS0 liftoff.slot=A liftoff.roothash=00ff liftoff.debug";
        for same in [
            signed,
            "quiet liftoff.slot=A liftoff.roothash=00ff   liftoff.debug init=/x",
            "liftoff.slot=A \"liftoff.roothash=00ff\" liftoff.debug -- liftoff.slot=B",
        ] {
            assert_eq!(unsigned_difference(signed, same), None, "{same}");
        }
        let added = |p: &str| Some(Unsigned::Added(p.to_owned()));
        let missing = |p: &str| Some(Unsigned::Missing(p.to_owned()));
        for (running, want) in [
            (
                "liftoff.slot=A liftoff.roothash=00ff liftoff.debug liftoff.handoff=/bin/sh",
                added("liftoff.handoff=/bin/sh"),
            ),
            (
                "liftoff.slot=A liftoff.roothash=00fe liftoff.debug",
                added("liftoff.roothash=00fe"),
            ),
            (
                "liftoff.handoff=/bin/sh liftoff.slot=A liftoff.roothash=00ff liftoff.debug",
                added("liftoff.handoff=/bin/sh"),
            ),
            // Order decides which value wins: a repeated key moved is a change.
            (
                "liftoff.roothash=00ff liftoff.slot=A liftoff.debug",
                added("liftoff.roothash=00ff"),
            ),
            (
                "liftoff.slot=A liftoff.roothash=00ff",
                missing("liftoff.debug"),
            ),
            ("", missing("liftoff.slot=A")),
            (
                "liftoff.slot=A liftoff.roothash=00ff liftoff.debug=1",
                added("liftoff.debug=1"),
            ),
        ] {
            assert_eq!(unsigned_difference(signed, running), want, "{running}");
        }
        assert_eq!(
            unsigned_difference("liftoff.device_timeout=5", "liftoff.device-timeout=5"),
            None
        );
        assert_eq!(
            added("liftoff.handoff=/bin/sh").unwrap().to_string(),
            "liftoff.handoff=/bin/sh did not come from the signed image"
        );
    }

    #[test]
    fn args_after_double_dash_are_not_ours() {
        let c = parse("liftoff.slot=A -- liftoff.slot=B");
        assert_eq!(c.config.slot, Some(Slot::A));
        assert_eq!(c.init_args, vec!["liftoff.slot=B".to_string()]);
    }
}
