//! Liftoff's QEMU harness: initramfs and disk images for Liftoff, and guests booted under
//! software emulation whose serial console a test reads line by line.
//!
//! The pieces:
//! - [`build`]: the image builder, a root tree into a whole disk or update payloads;
//! - [`cpio`]: the `newc` archive format of an initramfs;
//! - [`kernel`]: Debian's cloud kernels cached by `scripts/setup`, and module closures;
//! - [`initramfs`]: PID 1, device nodes, modules and test payloads in one archive;
//! - [`vm`]: start QEMU, wait for console lines with deadlines, always kill it.

pub mod arch;
pub mod artifacts;
pub mod build;
pub mod console;
pub mod cpio;
pub mod firmware;
pub mod image;
pub mod initramfs;
pub mod kernel;
pub mod oci;
pub mod system;
pub mod vm;

pub use arch::Arch;
