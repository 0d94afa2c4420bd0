//! The kernel command line (`prairiedog::cmdline`), as PID 1 reads `/proc/cmdline`.
//!
//! - `split` agrees with a model of the kernel's own splitting (below), on every line the
//!   kernel could hand over as text: no NUL, and no byte 0xa0, which the kernel's `isspace()`
//!   counts as white space (Latin-1's no-break space) even inside a UTF-8 character.
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
    if !data.contains(&0) && !data.contains(&0xa0) {
        let ours: Vec<(&[u8], Option<&[u8]>)> = params
            .iter()
            .map(|p| (p.key.as_bytes(), p.value.as_deref().map(str::as_bytes)))
            .collect();
        let (kernel, kernel_args) = kernel_split(data);
        let kernel_params: Vec<(&[u8], Option<&[u8]>)> = kernel
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        assert_eq!(ours, kernel_params, "parameters of {line:?}");
        let ours_args: Vec<&[u8]> = init_args.iter().map(|a| a.as_bytes()).collect();
        let kernel_args: Vec<&[u8]> = kernel_args.iter().map(Vec::as_slice).collect();
        assert_eq!(ours_args, kernel_args, "init arguments of {line:?}");
    }

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
    let spaced = |s: &str| s.bytes().any(kernel_space);
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
            DataMode::Tpm2 => "tpm2",
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

/// A parameter as the kernel sees it: the name, and the value if there was an `=`.
type KernelParam = (Vec<u8>, Option<Vec<u8>>);

/// The kernel's `isspace()` on a byte: the ASCII white space (with vertical tab) and 0xa0.
fn kernel_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0)
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| kernel_space(**b)).count();
    &s[n..]
}

/// One step of the kernel's `next_arg()` (lib/cmdline.c), modelled on a NUL-terminated
/// copy of the argument with the same writes of NUL bytes, then read back as C strings.
fn kernel_next_arg(args: &[u8]) -> (KernelParam, &[u8]) {
    let quoted = args.first() == Some(&b'"');
    let start = usize::from(quoted);
    let mut buf = args[start..].to_vec();
    buf.push(0);
    let mut in_quote = quoted;
    let mut equals = 0;
    let mut i = 0;
    while buf[i] != 0 {
        if kernel_space(buf[i]) && !in_quote {
            break;
        }
        // An '=' at offset 0 does not count: the kernel tests `equals == 0`.
        if equals == 0 && buf[i] == b'=' {
            equals = i;
        }
        if buf[i] == b'"' {
            in_quote = !in_quote;
        }
        i += 1;
    }
    let mut value = None;
    if equals != 0 {
        buf[equals] = 0;
        let mut v = equals + 1;
        if buf[v] == b'"' {
            v += 1;
            if buf[i - 1] == b'"' {
                buf[i - 1] = 0;
            }
        }
        value = Some(v);
    }
    if quoted && i > 0 && buf[i - 1] == b'"' {
        buf[i - 1] = 0;
    }
    // The separator becomes the argument's NUL.
    let next = if buf[i] != 0 {
        buf[i] = 0;
        i + 1
    } else {
        i
    };
    let c_string = |at: usize| -> Vec<u8> {
        buf[at..]
            .split(|b| *b == 0)
            .next()
            .unwrap_or_default()
            .to_vec()
    };
    let param = (c_string(0), value.map(c_string));
    (param, skip_spaces(&args[start + next..]))
}

/// The kernel's `parse_args()` up to `--`, then the init arguments after it (a second
/// `--` ends those too), each `name=value` joined again as `repair_env_string()` does.
fn kernel_split(line: &[u8]) -> (Vec<KernelParam>, Vec<Vec<u8>>) {
    fn until_dashes(mut args: &[u8]) -> (Vec<KernelParam>, Option<&[u8]>) {
        let mut params = Vec::new();
        args = skip_spaces(args);
        while !args.is_empty() {
            let (param, rest) = kernel_next_arg(args);
            args = rest;
            if param.1.is_none() && param.0 == b"--" {
                return (params, Some(args));
            }
            params.push(param);
        }
        (params, None)
    }
    let (params, after) = until_dashes(line);
    let init_args = after
        .map(|rest| {
            until_dashes(rest)
                .0
                .into_iter()
                .map(|(name, value)| match value {
                    Some(v) => [name, b"=".to_vec(), v].concat(),
                    None => name,
                })
                .collect()
        })
        .unwrap_or_default();
    (params, init_args)
}
