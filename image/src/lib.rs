//! Liftoff's image builder: everything that turns a root tree into the bytes a Liftoff
//! machine boots, and nothing that runs them (booting is the `qemu` crate's job).
//!
//! # The disk, partition by partition (DESIGN.md section 3)
//!
//! - [`disk`]: the GPT layout (numbers, labels, type GUIDs, the A/B [`disk::Slot`]s) and
//!   [`disk::build_disk`], which assembles the partitions into one image with `sgdisk`;
//! - [`esp`]: partition 1, the ESP: shim, the stock GRUB EFI binary and grubenv;
//! - [`boot`]: the BOOT partitions (the slot's signed unified kernel image and its command
//!   line) and [`boot::install`], which writes them and the ESP into a built disk;
//! - [`bios`]: legacy BIOS boot on x86_64: GRUB's core image in the BIOS boot partition
//!   (number 10) and its boot sector in the protective MBR;
//! - [`secureboot`]: key sets, signing, shim with our certificate, the unified kernel image
//!   and UEFI variable stores with the keys enrolled (docs/secure-boot.md);
//! - [`root`]: ROOT and HASH, the root file system and its dm-verity tree;
//! - [`fat`]: the FAT images the ESP and the BOOT partitions are made of;
//! - [`seed`] and [`tool`]: the seeded GUIDs that make builds reproducible, and the host
//!   tools every step runs, with [`tool::ImageError`].
//!
//! # What goes into it
//!
//! - [`initramfs`] on [`cpio`]: PID 1, device nodes and the kernel modules it loads;
//! - [`kernel`]: Debian's cloud kernels cached by `scripts/setup`, and module closures;
//! - [`modinfo`]: what a module file says about itself (name, dependencies, aliases);
//! - [`artifacts`]: the static guest binaries of `scripts/build-guest`;
//! - [`arch`]: the two architectures.
//!
//! # Whole builds
//!
//! - [`build`]: a root tree (directory or tarball) into a whole disk or update payloads:
//!   `liftoff-qemu image` and `liftoff-qemu payload`;
//! - [`system`]: the Debian test root plus a test's files into a cached, verified disk for
//!   the VM tests;
//! - [`oci`]: a busybox OCI image archive for `ctr image import` in a guest.
//!
//! Dependencies inside the crate point one way: `build` and `system` use the partition
//! modules; `boot` uses `esp`, `secureboot`, `disk` and `fat`; `esp` uses `secureboot` and
//! `disk`; `secureboot` uses `seed`, `tool`, `artifacts` and the cache folder of `kernel` (and
//! `prairiedog`'s PE reader), never `esp` or `boot`; `disk` uses
//! `root` and `fat`; those use only `seed` and `tool`.

pub mod arch;
pub mod artifacts;
pub mod bios;
pub mod boot;
pub mod build;
pub mod cpio;
pub mod disk;
pub mod esp;
pub mod fat;
pub mod initramfs;
pub mod kernel;
pub mod modinfo;
pub mod oci;
pub mod root;
pub mod secureboot;
pub mod seed;
pub mod system;
pub mod tool;
pub mod tools;

pub use arch::Arch;

/// An empty folder for one unit test, under the system's temporary folder.
#[cfg(test)]
pub(crate) fn test_work(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("liftoff-image-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One MiB: every partition and root image is a whole number of them.
pub(crate) const MIB: u64 = 1024 * 1024;

/// `bytes` rounded up to whole MiB, at least one.
pub(crate) fn round_up_mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB).max(1) * MIB
}
