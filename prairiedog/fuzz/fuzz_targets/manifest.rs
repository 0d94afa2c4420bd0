//! Install manifest parser: never panics; what parses renders and parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prairiedog::install::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Manifest::parse(text) {
        assert_eq!(Manifest::parse(&m.render()), Ok(m));
    }
});
