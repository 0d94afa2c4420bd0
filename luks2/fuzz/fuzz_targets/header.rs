//! The LUKS2 header reader on arbitrary device heads: both binary header copies, the JSON
//! parser and the metadata checks. It must never panic; a header it accepts must write
//! back (both copies, seqid + 1) and read back clean with the same metadata; JSON it
//! accepts must write back to text that parses to the same value.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use luks2::{json, Luks2};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(v) = json::parse(text) {
            let again = json::parse(&v.to_text()).expect("written JSON parses");
            assert_eq!(again, v);
        }
    }
    let Ok(mut l) = Luks2::from_bytes(data) else {
        return;
    };
    let metadata = l.metadata.clone();
    let seqid = l.header.seqid;
    let mut dev = Cursor::new(data.to_vec());
    if l.write(&mut dev).is_err() {
        // Only a JSON area too small for our (compact) text may refuse; cryptsetup writes
        // compact text too, so anything it accepted fits.
        return;
    }
    let again = Luks2::from_bytes(dev.get_ref()).expect("a written header reads back");
    assert_eq!(again.damaged, None);
    assert_eq!(again.metadata, metadata);
    assert_eq!(again.header.seqid, seqid.saturating_add(1));
});
