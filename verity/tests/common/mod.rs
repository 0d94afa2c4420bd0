//! Helpers shared by the integration tests: deterministic data and the real veritysetup.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const VERITYSETUP: &str = "/usr/sbin/veritysetup";
pub const UUID: &str = "12345678-9abc-4ef0-8123-456789abcdef";

/// Fails the test (never skips it) when veritysetup is missing.
pub fn veritysetup() -> Command {
    assert!(
        Path::new(VERITYSETUP).exists(),
        "{VERITYSETUP} is missing: run scripts/setup (package cryptsetup-bin)"
    );
    Command::new(VERITYSETUP)
}

/// Runs a command and returns its output, failing with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The value of a `Label:` line in veritysetup-style output.
pub fn field(stdout: &[u8], label: &str) -> String {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
}

/// `len` bytes of deterministic noise (xorshift), different per `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("creating a temp dir")
}

pub fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// The `verity` binary under test.
pub fn verity_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_verity"))
}
