//! The static binaries a guest runs, built by `scripts/build-guest` (or `scripts/test`)
//! into `target/<arch>-unknown-linux-musl/guest/` (stripped copies of the `pid1` profile's
//! build).

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

/// Path of the guest build of binary `name` for `arch`, or an error that says how to
/// build it.
pub fn musl_binary(arch: Arch, name: &str) -> Result<PathBuf, String> {
    let path = target_dir()
        .join(arch.musl_target())
        .join("guest")
        .join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run scripts/build-guest (stripped copies of cargo build \
             --profile pid1 --target {})",
            path.display(),
            arch.musl_target()
        ))
    }
}
