//! dm-verity hash trees and superblocks, byte-compatible with `veritysetup`, plus table
//! lines and device setup for Liftoff's PID 1.
//!
//! # The format
//!
//! dm-verity protects a read-only *data* device with a Merkle tree of digests kept on a
//! *hash* device (or the same device after the data). Every data block is hashed
//! (salted: salt first for hash type 1, last for type 0); the digests fill hash blocks
//! (level 0), which are hashed in turn (level 1) until one block remains, whose digest
//! is the root hash. The root hash is the only trusted input: it comes from the kernel
//! command line. veritysetup puts a 512-byte [`superblock`] in front of the tree recording
//! the parameters; the tree starts at the next hash block. See [`geometry`] for the
//! placement rules and [`tree`] for the streaming, multi-threaded builder and checker.
//!
//! # Lifecycle in PID 1
//!
//! [`device::setup`] does the whole step; its parts are public too:
//!
//! ```text
//! read_superblock(HASH, 0)          -> Superblock     (validated, every field)
//! check_expected(&sb, &trusted, ..) -> RootHash       (salt/algorithm from the cmdline)
//! check_data_size(ROOT, &sb.params)                   (the data covers the tree)
//! Geometry::new(&sb.params, &Layout::default())
//! VerityTable::new(ROOT dev, HASH dev, &sb.params, &geometry, &root, options)
//! device::open(&Control::open()?, "root", uuid, &table) -> /dev/dm-N
//! device::status(..) -> V/C ;  device::close(..)
//! ```
//!
//! The library never writes to a data device, and is built without unwrap, indexing or
//! panics so that untrusted superblocks cannot take PID 1 down.

pub mod base64;
pub mod device;
pub mod geometry;
pub mod hex;
pub mod image;
pub mod params;
pub mod sha256x4;
pub mod superblock;
pub mod table;
pub mod tree;

pub use geometry::{Geometry, Layout, LayoutError};
pub use image::{
    check_data_size, check_expected, check_top_block, format, read_superblock, verify, Error,
    Expected, FormatOptions, Formatted, Verified, VerifyOptions,
};
pub use params::{
    HashAlgorithm, HashType, ParamError, Params, RootHash, RootHashBytes, Salt, Uuid,
};
pub use superblock::{Superblock, SuperblockError, SUPERBLOCK_SIZE};
pub use table::{ErrorMode, TableOptions, VerityTable};
pub use tree::{CheckReport, Mismatch, RunOptions};
