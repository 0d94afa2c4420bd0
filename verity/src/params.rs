//! The parameters that define a hash tree: algorithm, hash type, block sizes, data size,
//! salt, and the small value types they are made of (hex salts, UUIDs, root hashes).

use std::fmt;
use std::str::FromStr;

/// Smallest data or hash block size accepted (one sector).
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest data or hash block size accepted (the largest page size of aarch64).
pub const MAX_BLOCK_SIZE: u32 = 64 * 1024;
/// Longest salt the superblock can hold.
pub const MAX_SALT_SIZE: usize = 256;
/// Longest digest of the supported algorithms (SHA-512).
pub const MAX_DIGEST_SIZE: usize = 64;

/// Errors in a parameter given by a user or read from a superblock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The algorithm name is not sha1, sha256 or sha512.
    #[error("unsupported hash algorithm {0:?} (expected sha256, sha512 or sha1)")]
    Algorithm(String),
    /// The hash type is neither 0 (Chrome OS) nor 1 (normal).
    #[error("unsupported hash type {0} (expected 0 or 1)")]
    HashType(u32),
    /// A data block size that is not a power of two between 512 and 65536.
    #[error("data block size {0} is not a power of two between 512 and 65536")]
    DataBlockSize(u64),
    /// A hash block size that is not a power of two between 512 and 65536.
    #[error("hash block size {0} is not a power of two between 512 and 65536")]
    HashBlockSize(u64),
    /// Zero data blocks: there is nothing to protect.
    #[error("the data area is smaller than one data block")]
    NoDataBlocks,
    /// The data area does not fit the kernel's 64-bit sector arithmetic.
    #[error("{0} data blocks are too many for a 64-bit device size")]
    TooManyDataBlocks(u64),
    /// A salt longer than the superblock can hold.
    #[error("salt is {0} bytes long; at most 256 are allowed")]
    SaltTooLong(usize),
    /// A string that should be hexadecimal is not.
    #[error("{what} {value:?} is not an even number of hexadecimal digits")]
    Hex {
        /// What the string was meant to be.
        what: &'static str,
        /// The string.
        value: String,
    },
    /// A UUID that is not in the 8-4-4-4-12 form.
    #[error("UUID {0:?} is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
    Uuid(String),
    /// A root hash that is empty or longer than any supported digest.
    #[error("root hash has {0} bytes; digests have 1 to 64")]
    RootHashSize(usize),
    /// A root hash whose length does not match the algorithm's digest.
    #[error("root hash has {got} bytes; {algorithm} digests have {expected}")]
    RootHashLength {
        /// The algorithm in use.
        algorithm: HashAlgorithm,
        /// Its digest size.
        expected: usize,
        /// The length given.
        got: usize,
    },
}

/// A hash algorithm dm-verity and veritysetup both support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    /// SHA-1 (20-byte digests): legacy images only, and only with the `sha1` feature.
    #[cfg(feature = "sha1")]
    Sha1,
    /// SHA-256 (32-byte digests): the default.
    #[default]
    Sha256,
    /// SHA-512 (64-byte digests).
    Sha512,
}

impl HashAlgorithm {
    /// The name used by veritysetup, the superblock and the kernel's table line.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "sha1")]
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// The algorithm called `name` (`sha1`, `sha256`, `sha512`): [`FromStr`] without the
    /// owned error, for the allocation-free superblock decoder.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            #[cfg(feature = "sha1")]
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Digest length in bytes.
    pub fn digest_size(self) -> usize {
        match self {
            #[cfg(feature = "sha1")]
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| ParamError::Algorithm(s.to_owned()))
    }
}

/// The hash format (`--format` in veritysetup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashType {
    /// Type 0, the original Chrome OS format: digests packed back to back, salt appended
    /// after the hashed block.
    ChromeOs,
    /// Type 1, the default: each digest padded to a power of two, salt prepended.
    #[default]
    Normal,
}

impl HashType {
    /// The number used by the superblock, veritysetup and the table line.
    pub fn number(self) -> u32 {
        match self {
            Self::ChromeOs => 0,
            Self::Normal => 1,
        }
    }

    /// The hash type with this number.
    pub fn from_number(n: u32) -> Result<Self, ParamError> {
        match n {
            0 => Ok(Self::ChromeOs),
            1 => Ok(Self::Normal),
            other => Err(ParamError::HashType(other)),
        }
    }
}

/// Decodes hex for a parameter, naming it in the error.
fn hex_param(what: &'static str, s: &str) -> Result<Vec<u8>, ParamError> {
    crate::hex::decode(s).map_err(|_| ParamError::Hex {
        what,
        value: s.to_owned(),
    })
}

/// A salt of at most 256 bytes; empty means no salt (`-` on veritysetup's command line).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Salt(Vec<u8>);

impl Salt {
    /// A salt from raw bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, ParamError> {
        if bytes.len() > MAX_SALT_SIZE {
            return Err(ParamError::SaltTooLong(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// No salt.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// The salt bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The salt as veritysetup and the table line write it: hex, or `-` when empty.
    pub fn to_table_string(&self) -> String {
        if self.0.is_empty() {
            "-".to_owned()
        } else {
            crate::hex::encode(&self.0)
        }
    }
}

impl FromStr for Salt {
    type Err = ParamError;

    /// Parses hex, or `-` (or the empty string) for no salt.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "-" || s.is_empty() {
            return Ok(Self::none());
        }
        Self::new(hex_param("salt", s)?)
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salt({})", self.to_table_string())
    }
}

impl fmt::Display for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_table_string())
    }
}

/// The 16-byte UUID stored in the superblock.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Uuid(pub [u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = crate::hex::encode(&self.0);
        let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or("");
        write!(
            f,
            "{}-{}-{}-{}-{}",
            part(0..8),
            part(8..12),
            part(12..16),
            part(16..20),
            part(20..32)
        )
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

impl FromStr for Uuid {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return Err(ParamError::Uuid(s.to_owned()));
        }
        let bytes =
            hex_param("UUID", &groups.concat()).map_err(|_| ParamError::Uuid(s.to_owned()))?;
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| ParamError::Uuid(s.to_owned()))?;
        Ok(Self(arr))
    }
}

/// A root hash (the digest of the top tree block, or of the only data block).
#[derive(Clone, PartialEq, Eq)]
pub struct RootHash(Vec<u8>);

impl RootHash {
    /// A root hash from bytes; its length is checked against the algorithm.
    pub fn new(algorithm: HashAlgorithm, bytes: Vec<u8>) -> Result<Self, ParamError> {
        if bytes.len() != algorithm.digest_size() {
            return Err(ParamError::RootHashLength {
                algorithm,
                expected: algorithm.digest_size(),
                got: bytes.len(),
            });
        }
        Ok(Self(bytes))
    }

    /// Parses a hex root hash for `algorithm`.
    pub fn from_hex(algorithm: HashAlgorithm, s: &str) -> Result<Self, ParamError> {
        Self::new(algorithm, hex_param("root hash", s)?)
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl fmt::Debug for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootHash({self})")
    }
}

/// A root hash as a trusted source gives it (the kernel command line, an update manifest),
/// before the superblock names the algorithm: 1 to [`MAX_DIGEST_SIZE`] bytes, parsed from
/// hex once. [`RootHashBytes::for_algorithm`] checks the length against the algorithm's
/// digest and gives the [`RootHash`] the tree is checked with.
#[derive(Clone, PartialEq, Eq)]
pub struct RootHashBytes(Vec<u8>);

impl RootHashBytes {
    /// Root hash bytes; between 1 and [`MAX_DIGEST_SIZE`] of them.
    pub fn new(bytes: Vec<u8>) -> Result<Self, ParamError> {
        if bytes.is_empty() || bytes.len() > MAX_DIGEST_SIZE {
            return Err(ParamError::RootHashSize(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The root hash for `algorithm`: its length must be the algorithm's digest size.
    pub fn for_algorithm(&self, algorithm: HashAlgorithm) -> Result<RootHash, ParamError> {
        RootHash::new(algorithm, self.0.clone())
    }
}

impl FromStr for RootHashBytes {
    type Err = ParamError;

    /// Parses hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(hex_param("root hash", s)?)
    }
}

impl From<&RootHash> for RootHashBytes {
    fn from(root: &RootHash) -> Self {
        Self(root.0.clone())
    }
}

impl fmt::Display for RootHashBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl fmt::Debug for RootHashBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootHashBytes({self})")
    }
}

/// Everything that defines the content of a hash tree (the superblock's fields except the
/// UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Hash format.
    pub hash_type: HashType,
    /// Digest algorithm.
    pub algorithm: HashAlgorithm,
    /// Bytes per data block.
    pub data_block_size: u32,
    /// Bytes per hash block.
    pub hash_block_size: u32,
    /// Number of data blocks covered by the tree.
    pub data_blocks: u64,
    /// Salt mixed into every digest.
    pub salt: Salt,
}

impl Params {
    /// Checks every field: block sizes, data size, salt length.
    #[cfg_attr(feature = "no-panic", no_panic::no_panic)]
    pub fn validate(&self) -> Result<(), ParamError> {
        if !block_size_ok(self.data_block_size) {
            return Err(ParamError::DataBlockSize(self.data_block_size.into()));
        }
        if !block_size_ok(self.hash_block_size) {
            return Err(ParamError::HashBlockSize(self.hash_block_size.into()));
        }
        if self.data_blocks == 0 {
            return Err(ParamError::NoDataBlocks);
        }
        // The kernel addresses the data in 512-byte sectors held in a u64.
        let sectors_per_block = u64::from(self.data_block_size / 512);
        if self.data_blocks.checked_mul(sectors_per_block).is_none() {
            return Err(ParamError::TooManyDataBlocks(self.data_blocks));
        }
        if self.salt.as_bytes().len() > MAX_SALT_SIZE {
            return Err(ParamError::SaltTooLong(self.salt.as_bytes().len()));
        }
        Ok(())
    }

    /// Size of the protected data area in bytes.
    pub fn data_size(&self) -> u64 {
        self.data_blocks.saturating_mul(self.data_block_size.into())
    }

    /// Size of the protected data area in 512-byte sectors (the dm table's length).
    pub fn data_sectors(&self) -> u64 {
        self.data_size() / 512
    }
}

/// Whether `size` is a power of two between [`MIN_BLOCK_SIZE`] and [`MAX_BLOCK_SIZE`].
pub fn block_size_ok(size: u32) -> bool {
    size.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_hash_bytes_are_checked_against_the_algorithm() {
        let given: RootHashBytes = "AB".repeat(32).parse().unwrap();
        assert_eq!(given.to_string(), "ab".repeat(32));
        assert_eq!(
            given
                .for_algorithm(HashAlgorithm::Sha256)
                .unwrap()
                .as_bytes(),
            given.as_bytes()
        );
        assert_eq!(
            given.for_algorithm(HashAlgorithm::Sha512),
            Err(ParamError::RootHashLength {
                algorithm: HashAlgorithm::Sha512,
                expected: 64,
                got: 32
            })
        );
        assert_eq!(
            "".parse::<RootHashBytes>(),
            Err(ParamError::RootHashSize(0))
        );
        assert_eq!(
            "00".repeat(65).parse::<RootHashBytes>(),
            Err(ParamError::RootHashSize(65))
        );
        assert!(matches!(
            "abc".parse::<RootHashBytes>(),
            Err(ParamError::Hex { .. })
        ));
    }

    #[test]
    fn salt_parsing() {
        assert_eq!("-".parse::<Salt>().unwrap(), Salt::none());
        assert_eq!("".parse::<Salt>().unwrap(), Salt::none());
        assert_eq!("0a0b".parse::<Salt>().unwrap().as_bytes(), &[10, 11]);
        assert_eq!(
            "ab".repeat(256).parse::<Salt>().unwrap().as_bytes().len(),
            256
        );
        assert_eq!(
            "ab".repeat(257).parse::<Salt>(),
            Err(ParamError::SaltTooLong(257))
        );
        assert_eq!(Salt::none().to_string(), "-");
    }

    #[test]
    fn uuid_round_trip() {
        let s = "12345678-9abc-def0-1234-56789abcdef0";
        assert_eq!(s.parse::<Uuid>().unwrap().to_string(), s);
        for bad in [
            "12345678-9abc-def0-1234-56789abcdef",
            "123456789abcdef0123456789abcdef0",
            "12345678-9abc-def0-1234-56789abcdefg",
            "1234567-89abc-def0-1234-56789abcdef0",
        ] {
            assert!(bad.parse::<Uuid>().is_err(), "{bad}");
        }
    }

    #[test]
    fn block_sizes() {
        let table = [
            (0, false),
            (256, false),
            (512, true),
            (1000, false),
            (1024, true),
            (4096, true),
            (65536, true),
            (131072, false),
            (3 * 4096, false),
        ];
        for (size, ok) in table {
            assert_eq!(block_size_ok(size), ok, "{size}");
        }
    }

    #[test]
    fn params_validation() {
        let good = Params {
            hash_type: HashType::Normal,
            algorithm: HashAlgorithm::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 1,
            salt: Salt::none(),
        };
        assert_eq!(good.validate(), Ok(()));
        type Change = fn(&mut Params);
        let cases: [(Change, ParamError); 4] = [
            (
                |p| p.data_block_size = 1000,
                ParamError::DataBlockSize(1000),
            ),
            (|p| p.hash_block_size = 128, ParamError::HashBlockSize(128)),
            (|p| p.data_blocks = 0, ParamError::NoDataBlocks),
            (
                |p| p.data_blocks = u64::MAX / 2,
                ParamError::TooManyDataBlocks(u64::MAX / 2),
            ),
        ];
        for (change, err) in cases {
            let mut p = good.clone();
            change(&mut p);
            assert_eq!(p.validate(), Err(err));
        }
    }

    #[test]
    fn root_hash_length_is_checked() {
        let h = "00".repeat(32);
        assert!(RootHash::from_hex(HashAlgorithm::Sha256, &h).is_ok());
        assert!(matches!(
            RootHash::from_hex(HashAlgorithm::Sha512, &h),
            Err(ParamError::RootHashLength {
                expected: 64,
                got: 32,
                ..
            })
        ));
    }
}
