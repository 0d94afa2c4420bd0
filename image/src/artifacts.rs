//! The static binaries a guest runs, built by `scripts/build-guest` (or `scripts/test`)
//! with `cargo build --release --target <arch>-unknown-linux-musl`.

use std::path::PathBuf;

use crate::kernel::workspace_root;
use crate::Arch;

/// The cargo target folder: `$CARGO_TARGET_DIR`, else `target` at the workspace root.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

/// Path of the release build of binary `name` for `arch`, or an error that says how to
/// build it.
pub fn musl_binary(arch: Arch, name: &str) -> Result<PathBuf, String> {
    let path = target_dir()
        .join(arch.musl_target())
        .join("release")
        .join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run scripts/build-guest (cargo build --release --target {})",
            path.display(),
            arch.musl_target()
        ))
    }
}
