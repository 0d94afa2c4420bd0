//! The superblock parser on arbitrary bytes: it must never panic, and whatever it
//! accepts must serialise back to exactly the bytes it was given (every unused byte is
//! checked to be zero) and yield a geometry without overflow.

#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::{Geometry, Layout, Superblock, SUPERBLOCK_SIZE};

fuzz_target!(|data: &[u8]| {
    let Ok(sb) = Superblock::parse(data) else {
        return;
    };
    assert_eq!(&sb.to_bytes()[..], &data[..SUPERBLOCK_SIZE]);
    assert_eq!(Superblock::parse(&sb.to_bytes()), Ok(sb.clone()));
    // Any accepted superblock gives a geometry (or a clean overflow error), never a panic.
    if let Ok(g) = Geometry::new(&sb.params, &Layout::default()) {
        assert!(g.hash_device_min_size >= g.tree_offset);
    }
});
