//! The VM tests, one test binary for all of them, so that the harness's two threads (one
//! per core) stay busy from the first boot to the last: as separate binaries, each one's
//! last long test ran alone while the other core idled (the A/B update: 146 s on x86_64
//! against 101 s on aarch64, the end of its binary).
//!
//! The harness runs tests in name order, so the modules are named to put the longest
//! first: `ab_update` (an update through firmware, two boots per arch) starts while the
//! many short tests of the other modules still queue behind it.
//!
//! Run one part with a name filter: `cargo test -p tests --test vm -- firmware::` or
//! `-- vm_x86_64_firmware_boots_slot_a`.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../common/mod.rs"]
mod common;

mod ab_update;
mod container;
mod firmware;
mod initramfs;
mod minimal_kernel;
mod root;
