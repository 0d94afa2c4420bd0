//! FAT locator over untrusted partition bytes: never panics, loops are bounded, and a located
//! file's extents hold its size.
#![no_main]

use gpt::testing::MemDisk;
use libfuzzer_sys::fuzz_target;
use prairiedog::disk::Region;
use prairiedog::fat;

fuzz_target!(|data: &[u8]| {
    let disk = MemDisk::new(data.to_vec());
    let part = Region {
        offset: 0,
        len: data.len() as u64,
    };
    for path in ["/grubenv", "/EFI/BOOT/grubenv"] {
        if let Ok(file) = fat::locate(&disk, part, path) {
            let held: u64 = file.extents.iter().map(|e| e.len).sum();
            assert!(held >= file.size);
            if let Ok(bytes) = fat::read_file(&disk, &file) {
                assert_eq!(bytes.len() as u64, file.size);
            }
        }
    }
});
