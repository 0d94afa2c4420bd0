//! The boot stages of DESIGN.md section 1, one file each, in boot order:
//!
//! | file | stage | does |
//! |---|---|---|
//! | [`mounts`] | api-mounts | /proc, /sys, /dev, /run; also the mount-plan runner later stages use |
//! | [`modules`] | modules | the image's kernel modules in dependency order |
//! | [`disk`] | disk | the boot disk from sysfs and GPT, without udev |
//! | [`slots`] | slots | the A/B decision on the GPT attribute bits and grubenv |
//! | [`root`] | verity, root | dm-verity over ROOT/HASH, the verified root at /sysroot |
//! | [`switch_root`] | switch-root | API mounts moved, initramfs freed, chroot |
//! | [`data`] | data | DATA grown, encrypted, mounted at /local |
//! | [`caps`] | caps | the image's capability bounding set |
//!
//! The command line is read with `prairiedog::cmdline` (shared with the `prairiedog` tool).
//! Each stage takes paths (`/sys`, `/dev`, a root) so tests can point it at a fixture tree,
//! and returns its own error type. New stages get a file here too: DATA's LUKS2 and TPM2
//! unlock beside [`data`] (or a `data/` folder once it grows), and network and services
//! between [`caps`] and the handoff.

pub mod caps;
pub mod data;
pub mod disk;
pub mod modules;
pub mod mounts;
pub mod root;
pub mod slots;
pub mod switch_root;
