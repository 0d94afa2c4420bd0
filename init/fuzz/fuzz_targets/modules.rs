//! PID 1's module list (`liftoff_init::stage::modules`): `/etc/liftoff/modules` as the image
//! builder writes it (version 1: `PHASE NAME PATH DEPENDS [ALIAS ...]` per module), the
//! loader that goes through one phase of it, and the alias matcher.
//!
//! - `parse_list` never panics; what it accepts has non-empty fields without spaces or
//!   control characters, and the entries written back in the list format parse to the
//!   same entries;
//! - `load_listed`, over each phase of an accepted list with a loader that records and a
//!   hardware view made of the input's own aliases, never panics (dependency cycles
//!   included), loads only listed modules and each at most once, and names every module
//!   it did not load as skipped at most once;
//! - `defer_watchdogs` keeps every entry (moving some from the root phase to the late
//!   one) and `can_load_beside` never panics; `split_beside` splits the data phase into
//!   two parts that keep every entry, the first of which can load beside the root phase
//!   and needs nothing of the second;
//! - the aliases go through `gate::glob_match` against the input and each other: it never
//!   panics, `*` matches everything, and an alias without glob characters matches exactly
//!   itself.
#![no_main]

use std::io;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use liftoff_init::stage::modules::gate::glob_match;
use liftoff_init::stage::modules::{
    can_load_beside, defer_watchdogs, load_listed, parse_list, split_beside, Entry, Loader, Phase,
    HEADER,
};

/// Records each load; every bus holds the aliases of the list as its devices.
struct Recorder {
    loaded: Vec<String>,
    devices: Vec<String>,
}

impl Loader for Recorder {
    fn load(&mut self, path: &Path, _params: &str) -> io::Result<()> {
        self.loaded.push(path.display().to_string());
        // Some loads fail as the kernel's would: EEXIST and ENODEV are outcomes, EPERM an
        // error that ends the phase.
        match self.loaded.len() % 11 {
            3 => Err(io::Error::from_raw_os_error(17)),
            5 => Err(io::Error::from_raw_os_error(19)),
            7 => Err(io::Error::from_raw_os_error(1)),
            _ => Ok(()),
        }
    }

    fn bus(&mut self, bus: &str) -> Option<Vec<String>> {
        bus.len().is_multiple_of(2).then(|| self.devices.clone())
    }
}

fn write_back(entries: &[Entry]) -> String {
    let mut text = format!("{HEADER}\n");
    for e in entries {
        let phase = match e.phase {
            Phase::Root => "root",
            Phase::Verity => "verity",
            Phase::Data => "data",
            Phase::Late => "late",
        };
        let deps = if e.depends.is_empty() {
            "-".to_owned()
        } else {
            e.depends.join(",")
        };
        text.push_str(&format!("{phase} {} {} {deps}", e.name, e.path.display()));
        for a in &e.aliases {
            text.push(' ');
            text.push_str(a);
        }
        text.push('\n');
    }
    text
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Also with the header in front, so the fuzzer need not find it first.
    for text in [text.to_string(), format!("{HEADER}\n{text}")] {
        let Ok(entries) = parse_list(&text) else {
            continue;
        };
        for e in &entries {
            assert!(!e.name.is_empty() && !e.name.contains([' ', '-']));
            let plain =
                |f: &str| !f.is_empty() && !f.contains(|c: char| c == ' ' || c.is_control());
            assert!(e
                .path
                .to_str()
                .is_some_and(|p| p.starts_with('/') && plain(p)));
            assert!(e.depends.iter().all(|d| plain(d)));
            assert!(e.aliases.iter().all(|a| plain(a)));
        }
        assert_eq!(parse_list(&write_back(&entries)).as_ref(), Ok(&entries));

        // Deferring the watchdog drivers moves entries from the root phase to the late one
        // and loses none.
        let of = |phase| -> Vec<Entry> {
            entries
                .iter()
                .filter(|e| e.phase == phase)
                .cloned()
                .collect()
        };
        let (mut root, mut late) = (of(Phase::Root), of(Phase::Late));
        let before = root.len() + late.len();
        defer_watchdogs(&mut root, &mut late);
        assert_eq!(root.len() + late.len(), before);
        assert!(late.iter().all(|e| e.phase == Phase::Late));
        let _ = can_load_beside(&of(Phase::Verity), &root);
        let phase_data = of(Phase::Data);
        let (early, rest) = split_beside(phase_data.clone(), &root);
        assert_eq!(early.len() + rest.len(), phase_data.len());
        assert!(can_load_beside(&early, &root));
        assert!(early
            .iter()
            .all(|e| !e.depends.iter().any(|d| rest.iter().any(|r| r.name == *d))));

        let devices: Vec<String> = entries.iter().flat_map(|e| e.aliases.clone()).collect();
        for phase in [Phase::Root, Phase::Verity, Phase::Data, Phase::Late] {
            let part: Vec<Entry> = entries
                .iter()
                .filter(|e| e.phase == phase)
                .cloned()
                .collect();
            let mut loader = Recorder {
                loaded: Vec::new(),
                devices: devices.clone(),
            };
            let result = load_listed(&mut loader, &part, &[]);
            // Each module at most once: a path no more often than modules list it.
            for path in &loader.loaded {
                let loads = loader.loaded.iter().filter(|p| *p == path).count();
                let listed = part
                    .iter()
                    .filter(|e| e.path.display().to_string() == *path)
                    .count();
                assert!(
                    loads <= listed,
                    "{path} loaded {loads} times, listed {listed}"
                );
            }
            if let Ok(done) = result {
                let mut named = std::collections::BTreeSet::new();
                for (name, _) in &done {
                    assert!(named.insert(name.clone()), "{name} named twice");
                }
            }
        }

        for e in &entries {
            for alias in &e.aliases {
                let _ = glob_match(alias.as_bytes(), data);
                assert!(glob_match(b"*", alias.as_bytes()));
                if !alias.bytes().any(|b| matches!(b, b'*' | b'?' | b'[')) {
                    assert!(glob_match(alias.as_bytes(), alias.as_bytes()));
                    assert!(!glob_match(
                        alias.as_bytes(),
                        format!("{alias}x").as_bytes()
                    ));
                }
            }
        }
    }
});
