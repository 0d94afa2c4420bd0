//! Link target for `scripts/check-no-panic`: calls every `#[no_panic]` function of the
//! crate on inputs the optimiser cannot see, so that each proof is linked and checked.
//! Built only with the `no-panic` feature, in the check-no-panic profile.

use std::hint::black_box;

use prairiedog::attrs::SlotAttrs;
use prairiedog::decide::{bootloader_fell_back, decide, select, SlotWords};
use prairiedog::Slot;

fn main() {
    let (a, b) = black_box((0x0103_0000_0000_0000_u64, 0x0002_0000_0000_0004_u64));
    let words = SlotWords { a, b };
    let slot = if black_box(true) { Slot::A } else { Slot::B };
    let attrs = SlotAttrs::from_word(a);
    black_box(attrs.apply(b));
    let fell_back = bootloader_fell_back(slot, black_box(Some(Slot::B)), black_box(Some(true)));
    black_box(select(words, black_box(3), black_box(None)));
    black_box(decide(words, slot, fell_back, black_box(3)));
}
