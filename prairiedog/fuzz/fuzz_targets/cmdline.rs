//! The kernel command line (`prairiedog::cmdline`), as PID 1 reads `/proc/cmdline`.
//!
//! - `split` never panics; `--` never reaches init's arguments; the parameters it returns,
//!   written back with quotes where they hold white space, split to the same parameters
//!   (those with a literal `"` in them cannot be written back and are left out).
//! - `parse` never panics; every problem names its `liftoff.` key, no `liftoff.` key is
//!   passed on; the typed configuration written back as `liftoff.` keys parses to the same
//!   configuration with no problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prairiedog::cmdline::{parse, split, Config, DataMode, Handoff, Param, VerityMode};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let (params, init_args) = split(line);
    assert!(!init_args.iter().any(|a| a == "--"));

    let plain: Vec<&Param> = params.iter().filter(|p| writable(p)).collect();
    let text: Vec<String> = plain.iter().map(|p| write_param(p)).collect();
    let (again, after) = split(&text.join(" "));
    assert_eq!(again.iter().collect::<Vec<_>>(), plain, "{text:?}");
    assert!(after.is_empty());

    let parsed = parse(line);
    assert_eq!(parsed.init_args, init_args);
    let ours = params
        .iter()
        .filter(|p| p.key.starts_with("liftoff."))
        .count();
    assert_eq!(parsed.others.len() + ours, params.len());
    assert!(parsed.problems.len() <= ours);
    for p in &parsed.others {
        assert!(!p.key.starts_with("liftoff."));
    }
    for problem in &parsed.problems {
        let key = match problem {
            prairiedog::cmdline::Problem::UnknownKey { key } => key,
            prairiedog::cmdline::Problem::Malformed { key, .. } => key,
        };
        assert!(key.starts_with("liftoff."), "{problem:?}");
        assert!(problem.to_string().contains(key.as_str()));
    }

    let (typed, want) = write_config(&parsed.config);
    let back = parse(&typed);
    assert_eq!(back.problems, [], "{typed}");
    assert!(
        back.others.is_empty() && back.init_args.is_empty(),
        "{typed}"
    );
    assert_eq!(back.config, want, "{typed}");
});

/// Whether a parameter can be written so that it splits back to itself: no literal quote
/// and not the empty argument.
fn writable(p: &Param) -> bool {
    let quote = p.key.contains('"') || p.value.as_deref().is_some_and(|v| v.contains('"'));
    let empty = p.key.is_empty() && p.value.is_none();
    !quote && !empty
}

fn write_param(p: &Param) -> String {
    let spaced = |s: &str| s.contains(|c: char| c.is_ascii_whitespace());
    let text = match &p.value {
        Some(v) => format!("{}={v}", p.key),
        None => p.key.clone(),
    };
    if spaced(&text) {
        format!("\"{text}\"")
    } else {
        text
    }
}

/// The configuration as `liftoff.` keys, and the configuration those keys give: a handoff
/// path with a quote in it cannot be written and stays at its default.
fn write_config(c: &Config) -> (String, Config) {
    let mut want = c.clone();
    let mut keys = Vec::new();
    if let Some(slot) = c.slot {
        keys.push(format!("liftoff.slot={slot}"));
    }
    if let Some(guid) = &c.boot_partuuid {
        keys.push(format!("liftoff.boot_partuuid={guid}"));
    }
    if let Some(hash) = &c.roothash {
        keys.push(format!("liftoff.roothash={hash}"));
    }
    if let Some(salt) = &c.salt {
        keys.push(format!("liftoff.salt={salt}"));
    }
    let verity = match c.verity {
        VerityMode::Eio => "eio",
        VerityMode::Restart => "restart",
        VerityMode::Panic => "panic",
    };
    keys.push(format!("liftoff.verity={verity}"));
    if let Some(data) = c.data {
        let d = match data {
            DataMode::Ephemeral => "ephemeral",
            DataMode::Keyfile => "keyfile",
            DataMode::None => "none",
        };
        keys.push(format!("liftoff.data={d}"));
    }
    match &c.handoff {
        Handoff::Systemd => keys.push("liftoff.handoff=systemd".to_owned()),
        Handoff::Containerd => keys.push("liftoff.handoff=containerd".to_owned()),
        Handoff::Path(p) if p.contains('"') => want.handoff = Handoff::default(),
        Handoff::Path(p) => keys.push(write_param(&Param {
            key: "liftoff.handoff".to_owned(),
            value: Some(p.clone()),
        })),
    }
    for (key, secs) in [
        ("watchdog", c.watchdog_secs),
        ("device_timeout", c.device_timeout_secs),
        ("stable_after", c.stable_after_secs),
    ] {
        if let Some(s) = secs {
            keys.push(format!("liftoff.{key}={s}"));
        }
    }
    keys.push(format!("liftoff.debug={}", u8::from(c.debug)));
    (keys.join(" "), want)
}
