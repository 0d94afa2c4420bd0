//! Formatting, verifying and reading hash devices named by path: the operations of
//! `veritysetup format`, `verify` and `dump`, with errors that name the device.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::geometry::{Geometry, Layout, LayoutError};
use crate::params::{
    HashAlgorithm, HashType, ParamError, Params, RootHash, RootHashBytes, Salt, Uuid,
};
use crate::superblock::{Superblock, SuperblockError, SUPERBLOCK_SIZE};
use crate::tree::{self, CheckReport, ReadAt, RunOptions, TreeError};

/// A failure of a path-level operation; each variant names the device involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An invalid parameter.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// An invalid placement of the hash area.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The data device could not be opened.
    #[error("opening data device {path}: {source}")]
    OpenData {
        /// Device path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The hash device could not be opened.
    #[error("opening hash device {path}: {source}")]
    OpenHash {
        /// Device path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The size of a device could not be read.
    #[error("reading the size of {path}: {source}")]
    Size {
        /// Device path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The data device is smaller than the blocks to protect (or than one block).
    #[error("data device {path} has {size} bytes; {needed} are needed")]
    DataTooSmall {
        /// Device path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The size needed.
        needed: u64,
    },
    /// The hash device cannot hold the superblock and tree (and cannot grow).
    #[error("hash device {path} has {size} bytes; the hash area needs {needed}")]
    HashTooSmall {
        /// Device path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The size needed.
        needed: u64,
    },
    /// A hash file could not be extended to the tree's size.
    #[error("extending hash file {path} to {size} bytes: {source}")]
    Extend {
        /// File path.
        path: PathBuf,
        /// Target size.
        size: u64,
        /// The error.
        source: io::Error,
    },
    /// The superblock could not be read.
    #[error("reading the superblock of {path} at byte {offset}: {source}")]
    ReadSuperblock {
        /// Device path.
        path: PathBuf,
        /// Its offset.
        offset: u64,
        /// The error.
        source: io::Error,
    },
    /// The superblock is invalid.
    #[error("superblock of {path} at byte {offset}: {source}")]
    Superblock {
        /// Device path.
        path: PathBuf,
        /// Its offset.
        offset: u64,
        /// What is wrong.
        source: SuperblockError,
    },
    /// The superblock could not be written.
    #[error("writing the superblock of {path}: {source}")]
    WriteSuperblock {
        /// Device path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The superblock holds other parameters than the trusted ones.
    #[error("superblock of {path}: {field} is {found}, expected {expected}")]
    Unexpected {
        /// Device path.
        path: PathBuf,
        /// The field that differs.
        field: &'static str,
        /// The trusted value.
        expected: String,
        /// The value found.
        found: String,
    },
    /// The block at the top of the tree does not hash to the trusted root hash: the root
    /// hash (or salt) is wrong for this tree, or the top block is damaged.
    #[error("the top block of the tree on {path} hashes to {found}, not the trusted root hash {expected}")]
    RootMismatch {
        /// The device holding the top block (hash device; data device for a one-block tree).
        path: PathBuf,
        /// The trusted root hash.
        expected: String,
        /// What the block hashes to.
        found: String,
    },
    /// Reading the top block failed.
    #[error("reading the top block of the tree from {path}: {source}")]
    ReadTop {
        /// Device path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Building or checking the tree failed.
    #[error("hashing {data} into {hash}: {source}")]
    Tree {
        /// Data device path.
        data: PathBuf,
        /// Hash device path.
        hash: PathBuf,
        /// What failed.
        source: TreeError,
    },
    /// Flushing the hash device failed.
    #[error("flushing {path}: {source}")]
    Sync {
        /// Device path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Without a superblock the parameters must be given.
    #[error("{0} has no superblock in use; the tree parameters must be given")]
    NeedParams(PathBuf),
}

/// What `format` should build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    /// Hash format (default 1).
    pub hash_type: HashType,
    /// Digest algorithm (default sha256).
    pub algorithm: HashAlgorithm,
    /// Data block size (default 4096).
    pub data_block_size: u32,
    /// Hash block size (default 4096).
    pub hash_block_size: u32,
    /// Blocks to protect; `None` means every whole block of the data device.
    pub data_blocks: Option<u64>,
    /// Salt (the caller chooses; veritysetup's default is 32 random bytes).
    pub salt: Salt,
    /// UUID written to the superblock (the caller chooses; veritysetup's default is random).
    pub uuid: Uuid,
    /// Byte offset of the hash area on the hash device.
    pub hash_offset: u64,
    /// Whether to write a superblock.
    pub superblock: bool,
}

impl Default for FormatOptions {
    fn default() -> Self {
        Self {
            hash_type: HashType::Normal,
            algorithm: HashAlgorithm::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: None,
            salt: Salt::none(),
            uuid: Uuid::default(),
            hash_offset: 0,
            superblock: true,
        }
    }
}

/// The result of `format`: everything needed to print it or build a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatted {
    /// UUID written (or that would have been, without a superblock).
    pub uuid: Uuid,
    /// The tree parameters.
    pub params: Params,
    /// Where the hash area is.
    pub layout: Layout,
    /// Where each level is.
    pub geometry: Geometry,
    /// The root hash.
    pub root_hash: RootHash,
}

fn device_size(file: &File, path: &Path) -> Result<u64, Error> {
    // Seeking to the end works for regular files and block devices alike.
    let mut f = file;
    f.seek(SeekFrom::End(0)).map_err(|source| Error::Size {
        path: path.to_owned(),
        source,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => {
            x.dev() == y.dev() && x.ino() == y.ino() || x.rdev() != 0 && x.rdev() == y.rdev()
        }
        _ => false,
    }
}

fn open_data(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|source| Error::OpenData {
        path: path.to_owned(),
        source,
    })
}

/// Builds the superblock (unless disabled) and hash tree of `data` into `hash`.
///
/// Everything is checked before the first write: parameters, placement, device sizes.
/// The data device is opened read-only unless it is also the hash device, and then only
/// the hash area (which must start after the data) is written. A regular hash file is
/// extended to the tree's size if it is smaller; a block device that is too small is an
/// error. The superblock is written last, after the tree, and the device is flushed.
pub fn format(
    data_path: &Path,
    hash_path: &Path,
    opts: &FormatOptions,
    run: &RunOptions<'_>,
) -> Result<Formatted, Error> {
    let mut params = Params {
        hash_type: opts.hash_type,
        algorithm: opts.algorithm,
        data_block_size: opts.data_block_size,
        hash_block_size: opts.hash_block_size,
        data_blocks: opts.data_blocks.unwrap_or(1),
        salt: opts.salt.clone(),
    };
    params.validate()?;

    let data = open_data(data_path)?;
    let data_size = device_size(&data, data_path)?;
    let dbs = u64::from(opts.data_block_size);
    params.data_blocks = opts.data_blocks.unwrap_or(data_size / dbs);
    let needed = params.data_blocks.saturating_mul(dbs).max(dbs);
    if data_size < needed {
        return Err(Error::DataTooSmall {
            path: data_path.to_owned(),
            size: data_size,
            needed,
        });
    }
    params.validate()?;

    let same_device = same_file(data_path, hash_path);
    let layout = Layout {
        hash_offset: opts.hash_offset,
        superblock: opts.superblock,
        same_device,
    };
    let geometry = Geometry::new(&params, &layout)?;

    let hash = if same_device {
        OpenOptions::new().read(true).write(true).open(hash_path)
    } else {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(hash_path)
    }
    .map_err(|source| Error::OpenHash {
        path: hash_path.to_owned(),
        source,
    })?;
    let hash_size = device_size(&hash, hash_path)?;
    let needed = geometry.hash_device_min_size;
    if hash_size < needed {
        let regular = hash.metadata().map(|m| m.is_file()).unwrap_or(false);
        if !regular {
            return Err(Error::HashTooSmall {
                path: hash_path.to_owned(),
                size: hash_size,
                needed,
            });
        }
        hash.set_len(needed).map_err(|source| Error::Extend {
            path: hash_path.to_owned(),
            size: needed,
            source,
        })?;
    }

    let data_dev: &dyn ReadAt = if same_device { &hash } else { &data };
    let root_hash =
        tree::build(&params, &geometry, data_dev, &hash, run).map_err(|source| Error::Tree {
            data: data_path.to_owned(),
            hash: hash_path.to_owned(),
            source,
        })?;
    if opts.superblock {
        let sb = Superblock {
            uuid: opts.uuid,
            params: params.clone(),
        };
        tree::WriteAt::write_all_at(&hash, &sb.to_bytes(), opts.hash_offset).map_err(|source| {
            Error::WriteSuperblock {
                path: hash_path.to_owned(),
                source,
            }
        })?;
    }
    hash.sync_all().map_err(|source| Error::Sync {
        path: hash_path.to_owned(),
        source,
    })?;
    Ok(Formatted {
        uuid: opts.uuid,
        params,
        layout,
        geometry,
        root_hash,
    })
}

/// Checks that the data device at `path` holds the `params.data_blocks` blocks the tree
/// covers (the kernel would refuse the table with a less helpful message).
pub fn check_data_size(path: &Path, params: &Params) -> Result<(), Error> {
    let data = open_data(path)?;
    let size = device_size(&data, path)?;
    if size < params.data_size() {
        return Err(Error::DataTooSmall {
            path: path.to_owned(),
            size,
            needed: params.data_size(),
        });
    }
    Ok(())
}

/// Checks the trusted root hash against the one block it covers: the top hash block (or
/// the only data block of a one-block tree). One block read finds a wrong root hash or
/// salt before a table is loaded, instead of the kernel's first failed read.
pub fn check_top_block(
    data_path: &Path,
    hash_path: &Path,
    params: &Params,
    geometry: &Geometry,
    root: &RootHash,
) -> Result<(), Error> {
    let (path, offset, size) = match geometry.levels.last() {
        Some(top) => (
            hash_path,
            top.first_block
                .saturating_mul(u64::from(params.hash_block_size)),
            params.hash_block_size,
        ),
        None => (data_path, 0, params.data_block_size),
    };
    let mut block = vec![0u8; size as usize];
    File::open(path)
        .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut block, offset))
        .map_err(|source| Error::ReadTop {
            path: path.to_owned(),
            source,
        })?;
    let found = tree::block_digest(params, &block);
    if found.as_slice() != root.as_bytes() {
        return Err(Error::RootMismatch {
            path: path.to_owned(),
            expected: root.to_string(),
            found: crate::hex::encode(&found),
        });
    }
    Ok(())
}

/// Reads and validates the superblock at `offset` of the hash device at `path`.
pub fn read_superblock(path: &Path, offset: u64) -> Result<Superblock, Error> {
    let file = File::open(path).map_err(|source| Error::OpenHash {
        path: path.to_owned(),
        source,
    })?;
    read_superblock_from(&file, path, offset)
}

fn read_superblock_from(file: &File, path: &Path, offset: u64) -> Result<Superblock, Error> {
    let mut buf = [0u8; SUPERBLOCK_SIZE];
    let size = device_size(file, path)?;
    let available = size.saturating_sub(offset).min(SUPERBLOCK_SIZE as u64) as usize;
    let head = buf.get_mut(..available).unwrap_or_default();
    ReadAt::read_exact_at(file, head, offset).map_err(|source| Error::ReadSuperblock {
        path: path.to_owned(),
        offset,
        source,
    })?;
    Superblock::parse(buf.get(..available).unwrap_or_default()).map_err(|source| {
        Error::Superblock {
            path: path.to_owned(),
            offset,
            source,
        }
    })
}

/// The trusted values a superblock is compared with before its tree is used (they come
/// from the kernel command line, which the boot chain vouches for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The trusted salt.
    pub salt: Salt,
    /// The trusted algorithm, if known (otherwise the root hash length must fit).
    pub algorithm: Option<HashAlgorithm>,
    /// The trusted root hash; its length is checked against the superblock's algorithm.
    pub root_hash: RootHashBytes,
}

/// Checks a superblock read from `path` against trusted values and returns the parsed
/// root hash. Does not read the tree.
pub fn check_expected(
    sb: &Superblock,
    expected: &Expected,
    path: &Path,
) -> Result<RootHash, Error> {
    let p = &sb.params;
    let differ = |field, expected: String, found: String| Error::Unexpected {
        path: path.to_owned(),
        field,
        expected,
        found,
    };
    if let Some(alg) = expected.algorithm {
        if alg != p.algorithm {
            return Err(differ(
                "algorithm",
                alg.to_string(),
                p.algorithm.to_string(),
            ));
        }
    }
    if expected.salt != p.salt {
        return Err(differ(
            "salt",
            expected.salt.to_string(),
            p.salt.to_string(),
        ));
    }
    Ok(expected.root_hash.for_algorithm(p.algorithm)?)
}

/// Where to find the tree for `verify` and what it should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Byte offset of the hash area.
    pub hash_offset: u64,
    /// Whether the hash area starts with a superblock (its parameters are then used).
    pub superblock: bool,
    /// The parameters, required without a superblock.
    pub params: Option<Params>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The parameters the tree was checked with.
    pub params: Params,
    /// The UUID from the superblock, if there is one.
    pub uuid: Option<Uuid>,
    /// The mismatches; empty when everything is intact.
    pub report: CheckReport,
}

/// Checks every data block and every tree level against `root_hash` (hex). Reads only.
pub fn verify(
    data_path: &Path,
    hash_path: &Path,
    root_hash: &str,
    opts: &VerifyOptions,
    run: &RunOptions<'_>,
) -> Result<Verified, Error> {
    let hash = File::open(hash_path).map_err(|source| Error::OpenHash {
        path: hash_path.to_owned(),
        source,
    })?;
    let (params, uuid) = if opts.superblock {
        let sb = read_superblock_from(&hash, hash_path, opts.hash_offset)?;
        (sb.params, Some(sb.uuid))
    } else {
        let params = opts
            .params
            .clone()
            .ok_or_else(|| Error::NeedParams(hash_path.to_owned()))?;
        params.validate()?;
        (params, None)
    };
    let root = RootHash::from_hex(params.algorithm, root_hash)?;
    let data = open_data(data_path)?;
    let data_size = device_size(&data, data_path)?;
    if data_size < params.data_size() {
        return Err(Error::DataTooSmall {
            path: data_path.to_owned(),
            size: data_size,
            needed: params.data_size(),
        });
    }
    let layout = Layout {
        hash_offset: opts.hash_offset,
        superblock: opts.superblock,
        same_device: same_file(data_path, hash_path),
    };
    let geometry = Geometry::new(&params, &layout)?;
    let hash_size = device_size(&hash, hash_path)?;
    if hash_size < geometry.hash_device_min_size {
        return Err(Error::HashTooSmall {
            path: hash_path.to_owned(),
            size: hash_size,
            needed: geometry.hash_device_min_size,
        });
    }
    let report = tree::check(&params, &geometry, &data, &hash, &root, run).map_err(|source| {
        Error::Tree {
            data: data_path.to_owned(),
            hash: hash_path.to_owned(),
            source,
        }
    })?;
    Ok(Verified {
        params,
        uuid,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PID 1's path: format, read the superblock back, compare it with trusted values.
    #[test]
    fn superblock_checked_against_trusted_values() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let hash = dir.path().join("hash");
        std::fs::write(&data, vec![0x5au8; 40 * 4096]).unwrap();
        let opts = FormatOptions {
            salt: "c0ffee".parse().unwrap(),
            ..FormatOptions::default()
        };
        let f = format(&data, &hash, &opts, &RunOptions::default()).unwrap();
        let sb = read_superblock(&hash, 0).unwrap();
        assert_eq!(sb.params, f.params);
        let good = Expected {
            salt: "c0ffee".parse().unwrap(),
            algorithm: Some(HashAlgorithm::Sha256),
            root_hash: (&f.root_hash).into(),
        };
        assert_eq!(check_expected(&sb, &good, &hash).unwrap(), f.root_hash);
        let cases = [
            (
                Expected {
                    salt: Salt::none(),
                    ..good.clone()
                },
                "salt is c0ffee, expected -",
            ),
            (
                Expected {
                    algorithm: Some(HashAlgorithm::Sha512),
                    ..good.clone()
                },
                "algorithm is sha256, expected sha512",
            ),
            (
                Expected {
                    root_hash: "00".repeat(64).parse().unwrap(),
                    ..good.clone()
                },
                "root hash has 64 bytes",
            ),
        ];
        for (expected, message) in cases {
            let err = check_expected(&sb, &expected, &hash)
                .unwrap_err()
                .to_string();
            assert!(err.contains(message), "{err}");
        }
        // A superblock past the end of the device is reported as truncated.
        let err = read_superblock(&hash, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("truncated: 0 bytes"), "{err}");
    }

    /// One block read finds a wrong root hash, for trees with levels and for a one-block
    /// tree (where the root hash is the data block's digest), for both hash types.
    #[test]
    fn top_block_checked_against_the_root_hash() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let hash = dir.path().join("hash");
        for (blocks, hash_type) in [
            (1u64, HashType::Normal),
            (40, HashType::Normal),
            (3000, HashType::Normal),
            (40, HashType::ChromeOs),
        ] {
            std::fs::write(&data, vec![0x5au8; (blocks * 4096) as usize]).unwrap();
            let _ = std::fs::remove_file(&hash);
            let opts = FormatOptions {
                salt: "c0ffee".parse().unwrap(),
                hash_type,
                ..FormatOptions::default()
            };
            let f = format(&data, &hash, &opts, &RunOptions::default()).unwrap();
            check_top_block(&data, &hash, &f.params, &f.geometry, &f.root_hash).unwrap();
            let wrong = RootHash::from_hex(HashAlgorithm::Sha256, &"ab".repeat(32)).unwrap();
            let err = check_top_block(&data, &hash, &f.params, &f.geometry, &wrong)
                .unwrap_err()
                .to_string();
            let device = if blocks == 1 { &data } else { &hash };
            assert!(
                err.starts_with(&format!(
                    "the top block of the tree on {}",
                    device.display()
                )) && err.ends_with(&format!("not the trusted root hash {}", "ab".repeat(32))),
                "{err}"
            );
        }
    }
}
