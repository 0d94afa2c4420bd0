//! Memory does not grow with the image: the peak RSS of `verity format` and `verify`
//! (measured by /usr/bin/time, package `time`) is the same for an 8 MiB and a 64 MiB
//! image, and far under the 64 MiB budget.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;

use common::*;

/// Runs the binary under /usr/bin/time; returns its peak RSS in KiB and its stdout.
fn peak_rss_kib(args: &[&str]) -> (u64, Vec<u8>) {
    let time = std::path::Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "/usr/bin/time is missing: run scripts/setup (package time)"
    );
    let out = Command::new(time)
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {err}");
    let kib = err.lines().last().unwrap().trim().parse().unwrap();
    (kib, out.stdout)
}

#[test]
fn peak_memory_does_not_grow_with_the_image() {
    let dir = temp_dir();
    let mut peaks = Vec::new();
    for mib in [8u64, 64] {
        let data = path(&dir, &format!("data{mib}"));
        let hash = path(&dir, &format!("hash{mib}"));
        // Sparse: the size is what matters, not the content.
        std::fs::File::create(&data)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let (d, h) = (data.to_str().unwrap(), hash.to_str().unwrap());
        let (format, stdout) = peak_rss_kib(&["format", "--salt", "-", d, h]);
        let root = field(&stdout, "Root hash");
        let (verify, _) = peak_rss_kib(&["verify", d, h, &root]);
        peaks.push((mib, format, verify));
    }
    let (small, large) = (peaks[0], peaks[1]);
    for (what, a, b) in [("format", small.1, large.1), ("verify", small.2, large.2)] {
        assert!(
            b <= a + 2048,
            "{what}: {a} KiB for 8 MiB but {b} KiB for 64 MiB"
        );
        assert!(b < 64 * 1024, "{what}: {b} KiB is over the 64 MiB budget");
    }
}
