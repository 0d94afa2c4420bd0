//! Kernel configuration for Liftoff: the fragments, and a checker for kernel `.config` files.
//!
//! # The fragments
//!
//! `kernel-config/common.config`, `x86_64.config` and `aarch64.config` are plain Kconfig
//! fragments: `scripts/build-kernel` merges them onto `make tinyconfig` with the kernel's
//! `scripts/kconfig/merge_config.sh` to build a kernel that boots Liftoff with no modules at
//! all. This crate embeds the same files and reads them as the list of requirements, so the
//! build and the checker can never disagree. Kconfig sees only the option lines; the checker
//! also reads these comments:
//!
//! - `## Title` starts a group. The `# ...` lines that follow say why the group is there, and
//!   one `# breaks: ...` line says what fails without it. Every group has both.
//! - `# liftoff: module-ok` before an option: a module is acceptable on a distribution kernel,
//!   because PID 1 loads the image's modules (boot flow stage 3) before it needs the option.
//! - `# liftoff: recommended` before an option: its absence is a warning, not an error (the
//!   option makes the minimal kernel faster or more capable, but Liftoff works without it).
//! - Both markers may share one line: `# liftoff: module-ok recommended`.
//! - A `# breaks: ...` line after the group's first `# breaks:` line is about the next
//!   option alone (for an option whose absence breaks less than the group's), and must be
//!   followed by that option or its marker.
//! - `CONFIG_X=y` and `# CONFIG_X is not set` are requirements; `=m` is refused, since the
//!   fragments describe a kernel without modules.
//!
//! # Checking a `.config`
//!
//! [`check`] compares every requirement of one architecture ([`requirements`]) with a parsed
//! [`DotConfig`] and returns a [`Report`] with one [`Finding`] per requirement:
//!
//! - built in as asked: [`Status::Ok`];
//! - a module where a built-in option is asked, the option is `module-ok` and the mode is
//!   [`Mode::ModulesAllowed`]: [`Status::Module`] (the image must list the module);
//! - anything else is [`Status::Missing`] (not set, or absent because Kconfig dropped it when
//!   its dependencies were missing) or [`Status::Wrong`] (a module that must be built in, a
//!   different value), with [`Severity::Error`] for required options and
//!   [`Severity::Warning`] for recommended ones.
//!
//! [`Mode::NoModules`] accepts nothing but built-in options: it is how `scripts/build-kernel`
//! verifies that every option it asked for survived `make olddefconfig`.

mod check;
mod fragment;
mod kconfig;

use std::fmt;
use std::str::FromStr;

pub use check::{check, describe, judge, Finding, Have, Mode, Report, Severity, Status};
pub use fragment::{parse_fragment, requirements, FragmentError, Level, Requirement};
pub use kconfig::{DotConfig, DotConfigError, Value};

/// The fragment shared by every architecture.
pub const COMMON_FRAGMENT: &str = include_str!("../common.config");
/// The x86_64 fragment, merged after [`COMMON_FRAGMENT`].
pub const X86_64_FRAGMENT: &str = include_str!("../x86_64.config");
/// The aarch64 fragment, merged after [`COMMON_FRAGMENT`].
pub const AARCH64_FRAGMENT: &str = include_str!("../aarch64.config");

/// The architectures Liftoff supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// x86_64 (`ARCH=x86_64`, `bzImage`).
    X86_64,
    /// aarch64 (`ARCH=arm64`, `Image`).
    Aarch64,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The name Liftoff uses (`x86_64`, `aarch64`), also the fragment's file stem.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The architecture's fragment file name and text.
    pub fn fragment(self) -> (&'static str, &'static str) {
        match self {
            Arch::X86_64 => ("x86_64.config", X86_64_FRAGMENT),
            Arch::Aarch64 => ("aarch64.config", AARCH64_FRAGMENT),
        }
    }

    /// The architecture a `.config` was made for, from `CONFIG_X86_64=y` or `CONFIG_ARM64=y`.
    pub fn of_config(config: &DotConfig) -> Option<Arch> {
        if config.get("CONFIG_X86_64") == Some(&Value::Yes) {
            Some(Arch::X86_64)
        } else if config.get("CONFIG_ARM64") == Some(&Value::Yes) {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = UnknownArch;

    /// Accepts Liftoff's names and the kernel's/Debian's (`amd64`, `arm64`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(UnknownArch(other.to_owned())),
        }
    }
}

/// An architecture name that is not one of Liftoff's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture {0:?} (expected x86_64 or aarch64)")]
pub struct UnknownArch(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        for (s, a) in [
            ("x86_64", Arch::X86_64),
            ("amd64", Arch::X86_64),
            ("aarch64", Arch::Aarch64),
            ("arm64", Arch::Aarch64),
        ] {
            assert_eq!(s.parse::<Arch>(), Ok(a));
        }
        assert!("riscv64".parse::<Arch>().is_err());
        let x86 = DotConfig::parse("CONFIG_X86_64=y\n").unwrap();
        let arm = DotConfig::parse("CONFIG_ARM64=y\n").unwrap();
        let none = DotConfig::parse("# CONFIG_X86_64 is not set\n").unwrap();
        assert_eq!(Arch::of_config(&x86), Some(Arch::X86_64));
        assert_eq!(Arch::of_config(&arm), Some(Arch::Aarch64));
        assert_eq!(Arch::of_config(&none), None);
    }
}
