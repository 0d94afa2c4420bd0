//! The GPT reader on arbitrary disk images: it must never panic; whatever it accepts must
//! be consistent, write back without error, and read back clean with the same entries.

#![no_main]

use std::path::Path;

use gpt::mbr::ProtectiveMbr;
use gpt::testing::MemDisk;
use gpt::Gpt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz");
    let disk = MemDisk::new(data.to_vec());
    if let Ok(mbr) = ProtectiveMbr::read(&disk, path) {
        let _ = mbr.kind();
    }
    let Ok(mut table) = Gpt::read(&disk, path, None) else {
        return;
    };
    table
        .check_layout()
        .expect("an accepted table is consistent");
    let entries = table.entries().to_vec();
    let mut out = MemDisk::new(data.to_vec());
    table
        .write(&mut out, path)
        .expect("an accepted table writes back");
    let again =
        Gpt::read(&out, path, Some(table.sector_size())).expect("a written table reads back");
    assert!(again.health().is_clean(), "{:?}", again.health());
    assert_eq!(again.entries(), entries.as_slice());
});
