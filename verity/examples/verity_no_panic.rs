//! Link target for `scripts/check-no-panic`: calls every `#[no_panic]` function of the
//! crate on inputs the optimiser cannot see, so that each proof is linked and checked.
//! Built only with the `no-panic` feature, in the check-no-panic profile.

use std::hint::black_box;

fn main() {
    let bytes = black_box(vec![0u8; black_box(512)]);
    let _ = black_box(verity::Superblock::parse(&bytes));
}
