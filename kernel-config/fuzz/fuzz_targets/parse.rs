//! The `.config` and fragment parsers on arbitrary text: they must never panic; a parsed
//! `.config` must check cleanly against both architectures, and a parsed fragment must
//! obey the format's rules (why and breaks text, no `=m`, module-ok only on `=y`).

#![no_main]

use kernel_config::{check, parse_fragment, requirements, Arch, DotConfig, Mode, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = DotConfig::parse(text) {
        for arch in Arch::ALL {
            let reqs = requirements(arch).expect("the embedded fragments parse");
            for mode in [Mode::ModulesAllowed, Mode::NoModules] {
                let report = check(&reqs, &config, mode);
                assert_eq!(report.findings.len(), reqs.len());
            }
        }
        let _ = Arch::of_config(&config);
    }
    if let Ok(reqs) = parse_fragment("fuzz.config", text) {
        for r in reqs {
            assert!(!r.why.is_empty() && !r.breaks.is_empty() && !r.group.is_empty());
            assert_ne!(r.want, Value::Module);
            assert!(!r.module_ok || r.want == Value::Yes);
            assert!(r.name.starts_with("CONFIG_"));
        }
    }
});
