//! Where every part of a hash tree lives: the tree math shared by the kernel's dm-verity
//! and veritysetup, as pure functions.
//!
//! Level 0 holds one digest per data block, level 1 one digest per level-0 block, and so
//! on until a level fits in one hash block; the digest of that block is the root hash.
//! With a single data block there are no levels and the root hash is that block's digest.
//! On the hash device the highest level comes first, right after the superblock (rounded
//! up to a hash block) or at the hash offset when there is no superblock.

use crate::params::{HashType, Params};
use crate::superblock::SUPERBLOCK_SIZE;

/// Errors in the placement of the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The hash offset is not a multiple of 512 bytes.
    #[error("hash offset {0} is not a multiple of 512 bytes")]
    HashOffsetUnaligned(u64),
    /// Without a superblock the tree starts at the hash offset, which must then be a whole
    /// number of hash blocks (veritysetup silently rounds it down instead).
    #[error("hash offset {offset} is not a multiple of the hash block size {block} (needed without a superblock)")]
    HashOffsetNotBlockAligned {
        /// The hash offset.
        offset: u64,
        /// The hash block size.
        block: u32,
    },
    /// Data and hash share a device and the hash area starts inside the data area.
    #[error(
        "hash area at byte {hash_offset} overlaps the data area, which ends at byte {data_end}"
    )]
    Overlap {
        /// Where the hash area starts.
        hash_offset: u64,
        /// Where the data area ends.
        data_end: u64,
    },
    /// A size does not fit 64 bits.
    #[error("the hash tree does not fit a 64-bit device")]
    Overflow,
}

/// Where the hash area goes on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Byte offset of the hash area (the superblock, or the tree without one).
    pub hash_offset: u64,
    /// Whether a superblock precedes the tree.
    pub superblock: bool,
    /// Whether the data and the hash area are on the same device (the hash area must
    /// then start after the data).
    pub same_device: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            hash_offset: 0,
            superblock: true,
            same_device: false,
        }
    }
}

/// One level of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// First hash block of the level, counted in hash blocks from the start of the hash
    /// device.
    pub first_block: u64,
    /// Number of hash blocks in the level.
    pub blocks: u64,
}

/// The complete geometry of a tree: levels, digest placement, sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Levels, index 0 hashing the data; empty for a single data block.
    pub levels: Vec<Level>,
    /// log2 of the digests per hash block.
    pub hashes_per_block_bits: u32,
    /// Distance between two digests in a hash block.
    pub digest_stride: usize,
    /// Byte offset of the tree on the hash device (a multiple of the hash block size).
    pub tree_offset: u64,
    /// Total tree size in hash blocks.
    pub tree_blocks: u64,
    /// The smallest hash device size that holds superblock and tree.
    pub hash_device_min_size: u64,
}

impl Geometry {
    /// Computes the geometry for `params` (which must be valid) placed by `layout`.
    pub fn new(params: &Params, layout: &Layout) -> Result<Self, LayoutError> {
        let hbs = u64::from(params.hash_block_size);
        if !layout.hash_offset.is_multiple_of(512) {
            return Err(LayoutError::HashOffsetUnaligned(layout.hash_offset));
        }
        if layout.same_device && layout.hash_offset < params.data_size() {
            return Err(LayoutError::Overlap {
                hash_offset: layout.hash_offset,
                data_end: params.data_size(),
            });
        }
        let tree_offset = if layout.superblock {
            let after_sb = layout
                .hash_offset
                .checked_add(SUPERBLOCK_SIZE as u64)
                .ok_or(LayoutError::Overflow)?;
            after_sb
                .div_ceil(hbs)
                .checked_mul(hbs)
                .ok_or(LayoutError::Overflow)?
        } else {
            if !layout.hash_offset.is_multiple_of(hbs) {
                return Err(LayoutError::HashOffsetNotBlockAligned {
                    offset: layout.hash_offset,
                    block: params.hash_block_size,
                });
            }
            layout.hash_offset
        };

        let digest = params.algorithm.digest_size();
        let per_block = params.hash_block_size as usize / digest;
        // floor(log2(per_block)); per_block >= 8 for the supported sizes.
        let bits = usize::BITS - 1 - per_block.leading_zeros();
        let digest_stride = match params.hash_type {
            HashType::ChromeOs => digest,
            HashType::Normal => params.hash_block_size as usize >> bits,
        };

        // Number of levels: the smallest n with (data_blocks - 1) >> (bits * n) == 0.
        let mut n = 0u32;
        while bits * n < 64 && (params.data_blocks - 1) >> (bits * n) != 0 {
            n += 1;
        }
        let mut sizes = Vec::new();
        for i in 0..n {
            let shift = bits * (i + 1);
            let size = if shift >= 64 {
                1
            } else {
                params.data_blocks.div_ceil(1u64 << shift)
            };
            sizes.push(size);
        }
        let mut levels = vec![
            Level {
                first_block: 0,
                blocks: 0
            };
            sizes.len()
        ];
        let mut position = tree_offset / hbs;
        for (level, size) in levels.iter_mut().zip(&sizes).rev() {
            *level = Level {
                first_block: position,
                blocks: *size,
            };
            position = position.checked_add(*size).ok_or(LayoutError::Overflow)?;
        }
        let tree_blocks = sizes.iter().try_fold(0u64, |a, s| a.checked_add(*s));
        let tree_blocks = tree_blocks.ok_or(LayoutError::Overflow)?;
        let hash_device_min_size = position.checked_mul(hbs).ok_or(LayoutError::Overflow)?;
        Ok(Self {
            levels,
            hashes_per_block_bits: bits,
            digest_stride,
            tree_offset,
            tree_blocks,
            hash_device_min_size,
        })
    }

    /// The hash start block of the dm table line (in hash blocks).
    pub fn hash_start_block(&self, params: &Params) -> u64 {
        self.tree_offset / u64::from(params.hash_block_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{HashAlgorithm, Salt};

    fn params(data_blocks: u64, alg: HashAlgorithm, hbs: u32, ty: HashType) -> Params {
        Params {
            hash_type: ty,
            algorithm: alg,
            data_block_size: 4096,
            hash_block_size: hbs,
            data_blocks,
            salt: Salt::none(),
        }
    }

    #[test]
    fn levels_match_the_kernel_formula() {
        use HashAlgorithm::*;
        // (blocks, alg, hash block size, expected level sizes from level 0 up)
        let table: &[(u64, HashAlgorithm, u32, &[u64])] = &[
            (1, Sha256, 4096, &[]),
            (2, Sha256, 4096, &[1]),
            (128, Sha256, 4096, &[1]),
            (129, Sha256, 4096, &[2, 1]),
            (244, Sha256, 4096, &[2, 1]),
            (128 * 128, Sha256, 4096, &[128, 1]),
            (128 * 128 + 1, Sha256, 4096, &[129, 2, 1]),
            (17, Sha256, 512, &[2, 1]),
            (9, Sha512, 512, &[2, 1]),
            (300, Sha1, 4096, &[3, 1]),
        ];
        for (blocks, alg, hbs, want) in table {
            let g = Geometry::new(
                &params(*blocks, *alg, *hbs, HashType::Normal),
                &Layout::default(),
            )
            .unwrap();
            let got: Vec<u64> = g.levels.iter().map(|l| l.blocks).collect();
            assert_eq!(&got, want, "{blocks} {alg} {hbs}");
        }
    }

    #[test]
    fn top_level_comes_first_after_the_superblock() {
        let p = params(244, HashAlgorithm::Sha256, 4096, HashType::Normal);
        let g = Geometry::new(&p, &Layout::default()).unwrap();
        assert_eq!(g.tree_offset, 4096);
        assert_eq!(
            g.levels[1],
            Level {
                first_block: 1,
                blocks: 1
            }
        );
        assert_eq!(
            g.levels[0],
            Level {
                first_block: 2,
                blocks: 2
            }
        );
        assert_eq!(g.hash_device_min_size, 16384);
        assert_eq!(g.hash_start_block(&p), 1);

        let at_1k = Layout {
            hash_offset: 1024,
            ..Layout::default()
        };
        assert_eq!(Geometry::new(&p, &at_1k).unwrap().tree_offset, 4096);
        let at_4k = Layout {
            hash_offset: 4096,
            ..Layout::default()
        };
        assert_eq!(Geometry::new(&p, &at_4k).unwrap().tree_offset, 8192);
        let no_sb = Layout {
            hash_offset: 8192,
            superblock: false,
            same_device: false,
        };
        assert_eq!(Geometry::new(&p, &no_sb).unwrap().tree_offset, 8192);
    }

    #[test]
    fn digest_stride_depends_on_the_hash_type() {
        let table = [
            (HashAlgorithm::Sha1, HashType::Normal, 32, 7),
            (HashAlgorithm::Sha1, HashType::ChromeOs, 20, 7),
            (HashAlgorithm::Sha256, HashType::Normal, 32, 7),
            (HashAlgorithm::Sha512, HashType::ChromeOs, 64, 6),
        ];
        for (alg, ty, stride, bits) in table {
            let g = Geometry::new(&params(1000, alg, 4096, ty), &Layout::default()).unwrap();
            assert_eq!((g.digest_stride, g.hashes_per_block_bits), (stride, bits));
        }
    }

    #[test]
    fn rejects_bad_placements() {
        let p = params(244, HashAlgorithm::Sha256, 4096, HashType::Normal);
        let table = [
            (
                Layout {
                    hash_offset: 100,
                    ..Layout::default()
                },
                LayoutError::HashOffsetUnaligned(100),
            ),
            (
                Layout {
                    hash_offset: 1536,
                    superblock: false,
                    same_device: false,
                },
                LayoutError::HashOffsetNotBlockAligned {
                    offset: 1536,
                    block: 4096,
                },
            ),
            (
                Layout {
                    hash_offset: 4096,
                    superblock: true,
                    same_device: true,
                },
                LayoutError::Overlap {
                    hash_offset: 4096,
                    data_end: 244 * 4096,
                },
            ),
        ];
        for (layout, err) in table {
            assert_eq!(Geometry::new(&p, &layout), Err(err));
        }
    }
}
