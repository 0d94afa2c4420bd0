//! A unified kernel image's PE headers and sections (`pe::PeInfo`, `uki::parse_uki`: an
//! update payload's UKI, read by `prairiedog install` and the image builder) never panic.
//! Properties: a section's data lies inside the input and is as long as its raw and
//! virtual sizes allow; the end of the image covers every section; an accepted UKI's
//! command line is its `.cmdline` section and its values are parts of it; a version
//! written back parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prairiedog::pe::PeInfo;
use prairiedog::uki::{self, Version};

fuzz_target!(|data: &[u8]| {
    let pe = PeInfo::parse(data);
    if let Ok(pe) = &pe {
        let range = data.as_ptr_range();
        for s in &pe.sections {
            assert!(
                pe.end_of_image()
                    >= u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.raw_size))
            );
            let first = pe
                .section(&s.name)
                .expect("a listed section is found by name");
            if let Some(bytes) = pe.section_data(data, &s.name) {
                let inside = bytes.as_ptr_range();
                assert!(range.start <= inside.start && inside.end <= range.end);
                assert_eq!(bytes.len(), first.raw_size.min(first.virtual_size) as usize);
                assert_eq!(
                    inside.start as usize - range.start as usize,
                    first.raw_offset as usize
                );
            }
        }
    }
    if let Ok(u) = uki::parse_uki(data) {
        {
            let pe = pe.expect("parse_uki accepted what PeInfo refused");
            let cmdline = pe.section_data(data, ".cmdline").expect("no .cmdline");
            assert_eq!(u.cmdline, String::from_utf8_lossy(cmdline));
            for key in ["liftoff.slot", "liftoff.roothash", "a"] {
                if let Some(v) = u.value(key) {
                    assert!(u.cmdline.contains(&format!("{key}={v}")));
                }
            }
            if let Some(v) = &u.version {
                assert_eq!(Version::parse(&v.to_string()).as_ref(), Some(v));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(v) = Version::parse(text) {
            let again = Version::parse(&v.to_string()).expect("a version written back parses");
            assert_eq!(again, v);
            assert!(
                !text.is_empty() && text.split('.').count() == v.to_string().split('.').count()
            );
        }
    }
});
