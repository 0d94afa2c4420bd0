//! The two architectures Liftoff boots on, and their names in Rust, Debian and the guest.
//! What QEMU needs for each is the `qemu` crate's (`vm.rs`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture of this host.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name for it (package architecture).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The static Rust target PID 1 is built for.
    pub fn musl_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The console to name on the kernel command line (`console=`), if any.
    ///
    /// x86_64: `ttyS0`, the first 16550 UART (QEMU, EC2's serial console, most servers);
    /// PC firmware rarely describes its console to the kernel. aarch64: none, so the kernel
    /// takes the console the firmware describes: ACPI's SPCR table (QEMU `virt` under AAVMF:
    /// the PL011, `ttyAMA0`; Graviton: a 16550, `ttyS0`), or the device tree's
    /// `/chosen/stdout-path` when there is no ACPI (QEMU `virt` booted with `-kernel`).
    /// Naming one would lose the other machines' consoles.
    pub fn console(self) -> Option<&'static str> {
        match self {
            Arch::X86_64 => Some("ttyS0"),
            Arch::Aarch64 => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            _ => Err(format!("unknown architecture {s:?} (x86_64 or aarch64)")),
        }
    }
}
