//! The 512-byte veritysetup superblock at the start of the hash area.
//!
//! Layout (all integers little-endian), as cryptsetup writes it:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | signature `verity\0\0` |
//! | 8 | 4 | version, always 1 |
//! | 12 | 4 | hash type (0 Chrome OS, 1 normal) |
//! | 16 | 16 | UUID |
//! | 32 | 32 | algorithm name, NUL-padded (`sha256`) |
//! | 64 | 4 | data block size |
//! | 68 | 4 | hash block size |
//! | 72 | 8 | number of data blocks |
//! | 80 | 2 | salt size |
//! | 82 | 6 | padding (zero) |
//! | 88 | 256 | salt, zero after `salt size` bytes |
//! | 344 | 168 | padding (zero) |
//!
//! Parsing checks every field and that every byte it does not use is zero, so that a
//! parsed superblock serialises back to exactly the bytes it came from.

use crate::params::{HashAlgorithm, HashType, ParamError, Params, Salt, Uuid, MAX_SALT_SIZE};

/// Size of the superblock on disk.
pub const SUPERBLOCK_SIZE: usize = 512;
/// The signature at offset 0.
pub const SIGNATURE: &[u8; 8] = b"verity\0\0";
/// The only superblock version there is.
pub const VERSION: u32 = 1;

const OFF_VERSION: usize = 8;
const OFF_HASH_TYPE: usize = 12;
const OFF_UUID: usize = 16;
const OFF_ALGORITHM: usize = 32;
const ALGORITHM_LEN: usize = 32;
const OFF_DATA_BLOCK_SIZE: usize = 64;
const OFF_HASH_BLOCK_SIZE: usize = 68;
const OFF_DATA_BLOCKS: usize = 72;
const OFF_SALT_SIZE: usize = 80;
const OFF_PAD1: usize = 82;
const OFF_SALT: usize = 88;
const OFF_PAD2: usize = OFF_SALT + MAX_SALT_SIZE;

/// Why a superblock was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    /// Fewer than 512 bytes were given.
    #[error("superblock is truncated: {0} bytes, expected 512")]
    Truncated(usize),
    /// The first eight bytes are not `verity\0\0`.
    #[error("no verity superblock signature")]
    Signature,
    /// A version other than 1.
    #[error("unsupported superblock version {0}")]
    Version(u32),
    /// The algorithm field is not a NUL-terminated known name.
    #[error("algorithm field {0:?} is not a supported, NUL-padded name")]
    AlgorithmField(String),
    /// The salt size is larger than the salt field.
    #[error("salt size {0} is larger than 256")]
    SaltSize(u16),
    /// A padding or unused byte is not zero.
    #[error("byte {0} of the superblock should be zero")]
    NonZeroPadding(usize),
    /// A field holds a value that is not a valid parameter.
    #[error("invalid superblock field: {0}")]
    Param(#[from] ParamError),
}

/// A decoded superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// The UUID veritysetup prints.
    pub uuid: Uuid,
    /// The tree parameters.
    pub params: Params,
}

fn field<const N: usize>(bytes: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(off..off + N) {
        out.copy_from_slice(src);
    }
    out
}

fn first_nonzero(bytes: &[u8], range: std::ops::Range<usize>) -> Option<usize> {
    let start = range.start;
    bytes
        .get(range)?
        .iter()
        .position(|&b| b != 0)
        .map(|i| start + i)
}

/// The fields of a superblock, checked for layout but still borrowed from the input.
struct Fields<'a> {
    hash_type: HashType,
    uuid: Uuid,
    algorithm: HashAlgorithm,
    data_block_size: u32,
    hash_block_size: u32,
    data_blocks: u64,
    salt: &'a [u8],
}

/// A layout error found by [`decode`]: a [`SuperblockError`] without its owned parts, which
/// [`Superblock::parse`] adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Truncated(usize),
    Signature,
    Version(u32),
    HashType(u32),
    /// The 32-byte algorithm field at [`OFF_ALGORITHM`] is not a known, NUL-padded name.
    AlgorithmField,
    SaltSize(u16),
    NonZeroPadding(usize),
}

/// The byte-level half of [`Superblock::parse`]: every offset, length and padding check,
/// in the order the errors are reported. It allocates nothing, so that the `no-panic`
/// feature can prove it free of panics (an allocation can always reach one).
#[cfg_attr(feature = "no-panic", no_panic::no_panic)]
fn decode(bytes: &[u8]) -> Result<Fields<'_>, Layout> {
    let bytes = bytes
        .get(..SUPERBLOCK_SIZE)
        .ok_or(Layout::Truncated(bytes.len()))?;
    if bytes.get(..8) != Some(SIGNATURE.as_slice()) {
        return Err(Layout::Signature);
    }
    let version = u32::from_le_bytes(field(bytes, OFF_VERSION));
    if version != VERSION {
        return Err(Layout::Version(version));
    }
    let hash_type_number = u32::from_le_bytes(field(bytes, OFF_HASH_TYPE));
    let hash_type =
        HashType::from_number(hash_type_number).map_err(|_| Layout::HashType(hash_type_number))?;
    let uuid = Uuid(field(bytes, OFF_UUID));

    let alg_field: [u8; ALGORITHM_LEN] = field(bytes, OFF_ALGORITHM);
    let name_len = alg_field
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(ALGORITHM_LEN);
    let (name, rest) = alg_field.split_at(name_len);
    if rest.is_empty() || rest.iter().any(|&b| b != 0) {
        return Err(Layout::AlgorithmField);
    }
    let algorithm = std::str::from_utf8(name)
        .ok()
        .and_then(HashAlgorithm::from_name)
        .ok_or(Layout::AlgorithmField)?;

    let data_block_size = u32::from_le_bytes(field(bytes, OFF_DATA_BLOCK_SIZE));
    let hash_block_size = u32::from_le_bytes(field(bytes, OFF_HASH_BLOCK_SIZE));
    let data_blocks = u64::from_le_bytes(field(bytes, OFF_DATA_BLOCKS));
    let salt_size = u16::from_le_bytes(field(bytes, OFF_SALT_SIZE));
    if usize::from(salt_size) > MAX_SALT_SIZE {
        return Err(Layout::SaltSize(salt_size));
    }
    let salt_end = OFF_SALT + usize::from(salt_size);
    for range in [
        OFF_PAD1..OFF_SALT,
        salt_end..OFF_PAD2,
        OFF_PAD2..SUPERBLOCK_SIZE,
    ] {
        if let Some(at) = first_nonzero(bytes, range) {
            return Err(Layout::NonZeroPadding(at));
        }
    }
    Ok(Fields {
        hash_type,
        uuid,
        algorithm,
        data_block_size,
        hash_block_size,
        data_blocks,
        salt: bytes.get(OFF_SALT..salt_end).unwrap_or_default(),
    })
}

impl Superblock {
    /// Decodes and validates the first 512 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, SuperblockError> {
        let fields = decode(bytes).map_err(|e| match e {
            Layout::Truncated(n) => SuperblockError::Truncated(n),
            Layout::Signature => SuperblockError::Signature,
            Layout::Version(v) => SuperblockError::Version(v),
            Layout::HashType(n) => SuperblockError::Param(ParamError::HashType(n)),
            Layout::AlgorithmField => {
                let alg_field: [u8; ALGORITHM_LEN] = field(bytes, OFF_ALGORITHM);
                let name = alg_field.split(|&b| b == 0).next().unwrap_or_default();
                SuperblockError::AlgorithmField(String::from_utf8_lossy(name).into_owned())
            }
            Layout::SaltSize(n) => SuperblockError::SaltSize(n),
            Layout::NonZeroPadding(at) => SuperblockError::NonZeroPadding(at),
        })?;
        let params = Params {
            hash_type: fields.hash_type,
            algorithm: fields.algorithm,
            data_block_size: fields.data_block_size,
            hash_block_size: fields.hash_block_size,
            data_blocks: fields.data_blocks,
            salt: Salt::new(fields.salt.to_vec())?,
        };
        params.validate()?;
        Ok(Self {
            uuid: fields.uuid,
            params,
        })
    }

    /// Encodes the superblock. The parameters must be valid ([`Params::validate`]); the
    /// salt is at most 256 bytes by construction of [`Salt`].
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut out = [0u8; SUPERBLOCK_SIZE];
        let p = &self.params;
        let salt = p.salt.as_bytes();
        let salt_len = u16::try_from(salt.len()).unwrap_or(u16::MAX);
        let name = p.algorithm.name().as_bytes();
        let parts: [(usize, &[u8]); 10] = [
            (0, SIGNATURE),
            (OFF_VERSION, &VERSION.to_le_bytes()),
            (OFF_HASH_TYPE, &p.hash_type.number().to_le_bytes()),
            (OFF_UUID, &self.uuid.0),
            (OFF_ALGORITHM, name),
            (OFF_DATA_BLOCK_SIZE, &p.data_block_size.to_le_bytes()),
            (OFF_HASH_BLOCK_SIZE, &p.hash_block_size.to_le_bytes()),
            (OFF_DATA_BLOCKS, &p.data_blocks.to_le_bytes()),
            (OFF_SALT_SIZE, &salt_len.to_le_bytes()),
            (OFF_SALT, salt),
        ];
        for (off, src) in parts {
            if let Some(dst) = out.get_mut(off..off + src.len()) {
                dst.copy_from_slice(src);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            uuid: "12345678-1234-1234-1234-123456789abc".parse().unwrap(),
            params: Params {
                hash_type: HashType::Normal,
                algorithm: HashAlgorithm::Sha256,
                data_block_size: 4096,
                hash_block_size: 4096,
                data_blocks: 244,
                salt: "0011".parse().unwrap(),
            },
        }
    }

    /// The superblock `veritysetup format data.img hash.img --salt 0011
    /// --uuid 12345678-1234-1234-1234-123456789abc` wrote for a 1000000-byte data.img
    /// (veritysetup 2.6.1), as the non-zero bytes of `xxd hash.img`.
    #[test]
    fn encodes_like_veritysetup() {
        let mut want = [0u8; 512];
        want[..8].copy_from_slice(b"verity\0\0");
        want[8] = 1;
        want[12] = 1;
        want[16..32].copy_from_slice(&[
            0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x56, 0x78,
            0x9a, 0xbc,
        ]);
        want[32..38].copy_from_slice(b"sha256");
        want[65] = 0x10;
        want[69] = 0x10;
        want[72] = 0xf4;
        want[80] = 2;
        want[88] = 0x00;
        want[89] = 0x11;
        assert_eq!(sample().to_bytes(), want);
        assert_eq!(Superblock::parse(&want).unwrap(), sample());
    }

    #[test]
    fn round_trips_every_algorithm_and_type() {
        for alg in [
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha512,
        ] {
            for ty in [HashType::ChromeOs, HashType::Normal] {
                for salt_len in [0usize, 1, 32, 256] {
                    let mut sb = sample();
                    sb.params.algorithm = alg;
                    sb.params.hash_type = ty;
                    sb.params.salt = Salt::new(vec![0xa5; salt_len]).unwrap();
                    let bytes = sb.to_bytes();
                    assert_eq!(Superblock::parse(&bytes).unwrap(), sb);
                }
            }
        }
    }

    #[test]
    fn rejects_each_bad_field() {
        let good = sample().to_bytes();
        type Patch = fn(&mut [u8; 512]);
        let cases: Vec<(Patch, SuperblockError)> = vec![
            (|b| b[0] = b'V', SuperblockError::Signature),
            (|b| b[8] = 2, SuperblockError::Version(2)),
            (
                |b| b[12] = 2,
                SuperblockError::Param(ParamError::HashType(2)),
            ),
            (
                |b| b[32..38].copy_from_slice(b"md5\0\0\0"),
                SuperblockError::AlgorithmField("md5".into()),
            ),
            (
                |b| b[32..64].fill(b'a'),
                SuperblockError::AlgorithmField("a".repeat(32)),
            ),
            (
                |b| b[40] = 1,
                SuperblockError::AlgorithmField("sha256".into()),
            ),
            (
                |b| b[64..68].copy_from_slice(&1000u32.to_le_bytes()),
                SuperblockError::Param(ParamError::DataBlockSize(1000)),
            ),
            (
                |b| b[68..72].copy_from_slice(&(128u32 * 1024).to_le_bytes()),
                SuperblockError::Param(ParamError::HashBlockSize(128 * 1024)),
            ),
            (
                |b| b[72..80].fill(0),
                SuperblockError::Param(ParamError::NoDataBlocks),
            ),
            (
                |b| b[80..82].copy_from_slice(&257u16.to_le_bytes()),
                SuperblockError::SaltSize(257),
            ),
            (|b| b[84] = 1, SuperblockError::NonZeroPadding(84)),
            (|b| b[90] = 1, SuperblockError::NonZeroPadding(90)),
            (|b| b[511] = 1, SuperblockError::NonZeroPadding(511)),
        ];
        for (patch, err) in cases {
            let mut b = good;
            patch(&mut b);
            assert_eq!(Superblock::parse(&b), Err(err));
        }
        assert_eq!(
            Superblock::parse(&good[..511]),
            Err(SuperblockError::Truncated(511))
        );
    }
}
