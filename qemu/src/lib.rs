//! Liftoff's QEMU runner: guests booted under software emulation, directly from a kernel or
//! through UEFI firmware and GRUB, whose serial console a test reads line by line.
//! What it boots (disks, initramfs images, kernels) is built by the `image` crate
//! (`liftoff_image`); this crate only runs it.
//!
//! The pieces:
//! - [`vm`]: start QEMU, wait for console lines with deadlines, always kill it;
//! - [`firmware`]: OVMF/AAVMF, a fresh variable store per guest, and the VM configuration
//!   of a firmware boot;
//! - [`console`]: Liftoff's boot timeline read back from a console log;
//! - the `liftoff-qemu` binary: `image` and `payload` (the image builder's CLI) and `boot`.

pub mod console;
pub mod firmware;
pub mod vm;

/// The architecture of a guest, shared with the image builder that made its disk.
pub use liftoff_image::Arch;
