//! bootconfig parsers: never panic; what parses rebuilds to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prairiedog::bootconfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = bootconfig::parse(data) {
        // Text without NULs rebuilds to a blob that parses to the same text.
        if let Ok(rebuilt) = bootconfig::build(p.text, p.offset as u64) {
            let again = bootconfig::parse(&rebuilt).expect("rebuilt bootconfig parses");
            assert_eq!(again.text, p.text);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(entries) = bootconfig::parse_flat(text) {
            if let Ok(rendered) = bootconfig::render(&entries) {
                assert_eq!(bootconfig::parse_flat(&rendered).ok(), Some(entries));
            }
        }
    }
});
