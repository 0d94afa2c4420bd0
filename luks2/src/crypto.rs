//! The cryptography of a keyslot: KDF, keyslot area cipher, anti-forensic splitter and the
//! volume key digest (LUKS2 spec section 4, "Keyslot", and the LUKS1 spec section 2.4
//! "AF-Splitter", which LUKS2 keyslots of AF type `luks1` reuse).
//!
//! Unlocking keyslot `k` with a secret:
//!
//! 1. `area_key = KDF(secret, kdf.salt)` with `area.key_size` bytes (PBKDF2-HMAC or Argon2);
//! 2. the area's first `key_size * stripes` bytes, rounded up to 512-byte sectors, are
//!    decrypted with `area.encryption` (aes-xts-plain64), sector numbers counted from the
//!    area's start (IV 0 for its first sector), 512-byte sectors whatever the segment's
//!    sector size: what cryptsetup does for keyslot areas;
//! 3. AF-merge: XOR the first `stripes - 1` stripes together, passing the running value
//!    through the diffuser (hash of a 4-byte big-endian block counter and each hash-sized
//!    block) after each, then XOR the last stripe: the candidate volume key;
//! 4. `PBKDF2(candidate, digest.salt, digest.iterations)` must equal `digest.digest`.

use std::fmt;

#[cfg(feature = "soft-cipher")]
use aes::cipher::KeyInit;
use sha2::{Digest as _, Sha256, Sha512};
#[cfg(feature = "soft-cipher")]
use xts_mode::Xts128;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::metadata::{Hash, Kdf};

/// The volume key (the dm-crypt key of the data segment). Zeroed on drop; `Debug` never
/// shows its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct VolumeKey(Zeroizing<Vec<u8>>);

impl VolumeKey {
    /// `len` random bytes from getrandom(2).
    pub fn random(len: usize) -> Result<VolumeKey, Error> {
        let mut k = Zeroizing::new(vec![0u8; len]);
        fill_random(&mut k)?;
        Ok(VolumeKey(k))
    }

    /// Takes the bytes of a key (zeroing the caller's vector is up to the caller).
    pub fn from_bytes(bytes: &[u8]) -> VolumeKey {
        VolumeKey(Zeroizing::new(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key as hex, in a buffer reserved in full first (never reallocated, so no
    /// unzeroed copy is left behind) and zeroed on drop.
    pub fn hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(self.0.len().saturating_mul(2)));
        verity::hex::encode_into(&mut s, &self.0);
        s
    }
}

impl fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VolumeKey({} bytes, hidden)", self.0.len())
    }
}

/// Fills `buf` from getrandom(2) (blocking until the pool is initialised).
pub fn fill_random(buf: &mut [u8]) -> Result<(), Error> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::Random(e.into())),
        }
    }
    Ok(())
}

/// PBKDF2-HMAC with `hash`.
pub fn pbkdf2(hash: Hash, secret: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    match hash {
        Hash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(secret, salt, iterations, out),
        Hash::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(secret, salt, iterations, out),
    }
}

/// Runs a keyslot's KDF: `len` bytes of area key from `secret`.
pub fn derive(kdf: &Kdf, secret: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    match kdf {
        Kdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => {
            if *iterations == 0 {
                return Err(Error::Kdf {
                    kdf: "pbkdf2",
                    detail: "zero iterations".to_owned(),
                });
            }
            pbkdf2(*hash, secret, salt, *iterations, &mut out);
        }
        #[cfg(feature = "argon2")]
        Kdf::Argon2 {
            kind,
            time,
            memory,
            cpus,
            salt,
        } => {
            use crate::metadata::Argon2Type;
            let alg = match kind {
                Argon2Type::Argon2i => argon2::Algorithm::Argon2i,
                Argon2Type::Argon2id => argon2::Algorithm::Argon2id,
            };
            let bad = |e: argon2::Error| Error::Kdf {
                kdf: kind.name(),
                detail: e.to_string(),
            };
            let params = argon2::Params::new(*memory, *time, *cpus, Some(len)).map_err(bad)?;
            argon2::Argon2::new(alg, argon2::Version::V0x13, params)
                .hash_password_into(secret, salt, &mut out)
                .map_err(bad)?;
        }
        #[cfg(not(feature = "argon2"))]
        Kdf::Argon2 { kind, .. } => {
            return Err(Error::Kdf {
                kdf: kind.name(),
                detail: "this build has no Argon2 (the crate's `argon2` feature is off); \
                         open this keyslot with cryptsetup or prairiedog"
                    .to_owned(),
            });
        }
    }
    Ok(out)
}

/// Bytes per keyslot area sector (cryptsetup's `SECTOR_SIZE`).
pub const AREA_SECTOR: usize = 512;

/// The keyslot area ciphers this crate implements in Rust (the `soft-cipher` feature):
/// aes-xts-plain64 with a 256-bit (AES-128) or 512-bit (AES-256) key.
#[cfg(feature = "soft-cipher")]
enum AreaCipher {
    Aes128(Box<Xts128<aes::Aes128>>),
    Aes256(Box<Xts128<aes::Aes256>>),
}

#[cfg(feature = "soft-cipher")]
impl AreaCipher {
    fn new(encryption: &str, key: &[u8]) -> Result<AreaCipher, String> {
        if encryption != "aes-xts-plain64" {
            return Err(format!(
                "area cipher {encryption:?} is not supported (aes-xts-plain64)"
            ));
        }
        let half = key.len() / 2;
        let (k1, k2) = (key.get(..half), key.get(half..));
        let bad = || format!("area key of {} bytes fits no AES-XTS key", key.len());
        match (key.len(), k1, k2) {
            (32, Some(k1), Some(k2)) => Ok(AreaCipher::Aes128(Box::new(Xts128::new(
                aes::Aes128::new_from_slice(k1).map_err(|_| bad())?,
                aes::Aes128::new_from_slice(k2).map_err(|_| bad())?,
            )))),
            (64, Some(k1), Some(k2)) => Ok(AreaCipher::Aes256(Box::new(Xts128::new(
                aes::Aes256::new_from_slice(k1).map_err(|_| bad())?,
                aes::Aes256::new_from_slice(k2).map_err(|_| bad())?,
            )))),
            _ => Err(bad()),
        }
    }

    /// Processes whole 512-byte sectors in place, sector 0 at the start of `buf`; plain64
    /// is the sector number as a little-endian 128-bit tweak.
    fn run(&self, buf: &mut [u8], encrypt: bool) {
        let tweak = xts_mode::get_tweak_default;
        match (self, encrypt) {
            (AreaCipher::Aes128(x), true) => x.encrypt_area(buf, AREA_SECTOR, 0, tweak),
            (AreaCipher::Aes128(x), false) => x.decrypt_area(buf, AREA_SECTOR, 0, tweak),
            (AreaCipher::Aes256(x), true) => x.encrypt_area(buf, AREA_SECTOR, 0, tweak),
            (AreaCipher::Aes256(x), false) => x.decrypt_area(buf, AREA_SECTOR, 0, tweak),
        }
    }
}

/// Encrypts (or decrypts) keyslot material in place. `buf` must be whole sectors. With the
/// `soft-cipher` feature in this crate's own Rust AES; without it in the kernel's
/// ([`crate::kernel`]), which PID 1 uses.
pub fn area_crypt(
    encryption: &str,
    key: &[u8],
    buf: &mut [u8],
    encrypt: bool,
) -> Result<(), String> {
    if !buf.len().is_multiple_of(AREA_SECTOR) {
        return Err(format!(
            "{} bytes are not whole 512-byte sectors",
            buf.len()
        ));
    }
    #[cfg(feature = "soft-cipher")]
    {
        AreaCipher::new(encryption, key)?.run(buf, encrypt);
        Ok(())
    }
    #[cfg(not(feature = "soft-cipher"))]
    {
        if encryption != "aes-xts-plain64" {
            return Err(format!(
                "area cipher {encryption:?} is not supported (aes-xts-plain64)"
            ));
        }
        if key.len() != 32 && key.len() != 64 {
            return Err(format!(
                "area key of {} bytes fits no AES-XTS key",
                key.len()
            ));
        }
        crate::kernel::xts_plain64(key, buf, AREA_SECTOR, encrypt)
    }
}

/// Bytes of AF-split material for a `key_size`-byte key in `stripes` stripes, rounded up to
/// whole area sectors (what is read from and written to the area).
pub fn af_sectors_bytes(key_size: usize, stripes: u32) -> Option<usize> {
    key_size
        .checked_mul(usize::try_from(stripes).ok()?)?
        .checked_next_multiple_of(AREA_SECTOR)
}

/// The AF diffuser: each hash-sized block `j` of `block` becomes the first bytes of
/// `H(be32(j) || block_j)`.
/// The digest goes through one buffer on the stack: the merge diffuses 3999 times per
/// keyslot, and a heap allocation per block cost PID 1 a few milliseconds under emulation.
fn diffuse(hash: Hash, block: &mut [u8]) {
    let mut digest = Zeroizing::new([0u8; 64]);
    for (j, chunk) in block.chunks_mut(hash.output_len()).enumerate() {
        let iv = u32::try_from(j).unwrap_or(u32::MAX).to_be_bytes();
        let out = match hash {
            Hash::Sha256 => {
                let mut h = Sha256::new();
                h.update(iv);
                h.update(&*chunk);
                let (out, _) = digest.split_at_mut(32);
                h.finalize_into(out.into());
                &*out
            }
            Hash::Sha512 => {
                let mut h = Sha512::new();
                h.update(iv);
                h.update(&*chunk);
                h.finalize_into((&mut digest[..]).into());
                &digest[..]
            }
        };
        for (c, d) in chunk.iter_mut().zip(out) {
            *c = *d;
        }
    }
}

fn xor_into(acc: &mut [u8], other: &[u8]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

/// AF-merge of `stripes` stripes of `key_size` bytes in `material`.
pub fn af_merge(material: &[u8], key_size: usize, stripes: u32, hash: Hash) -> Option<VolumeKey> {
    if key_size == 0 || stripes == 0 {
        return None;
    }
    let mut acc = Zeroizing::new(vec![0u8; key_size]);
    let mut chunks = material.chunks_exact(key_size);
    for _ in 1..stripes {
        xor_into(&mut acc, chunks.next()?);
        diffuse(hash, &mut acc);
    }
    xor_into(&mut acc, chunks.next()?);
    Some(VolumeKey(acc))
}

/// AF-split of `key` into `stripes` stripes: random stripes but the last, which makes the
/// merge give `key` back. Returns the material padded to whole area sectors with zeros.
pub fn af_split(key: &VolumeKey, stripes: u32, hash: Hash) -> Result<Zeroizing<Vec<u8>>, Error> {
    let ks = key.len();
    let total = af_sectors_bytes(ks, stripes).ok_or_else(|| Error::Unsupported {
        what: "AF stripes",
        detail: format!("{stripes} stripes of {ks} bytes overflow"),
    })?;
    let mut out = Zeroizing::new(vec![0u8; total]);
    let random_len = ks.saturating_mul(usize::try_from(stripes.saturating_sub(1)).unwrap_or(0));
    let (random, rest) = out.split_at_mut(random_len.min(total));
    fill_random(random)?;
    let mut acc = Zeroizing::new(vec![0u8; ks]);
    for stripe in random.chunks_exact(ks) {
        xor_into(&mut acc, stripe);
        diffuse(hash, &mut acc);
    }
    if let Some(last) = rest.get_mut(..ks) {
        last.copy_from_slice(&acc);
        xor_into(last, key.as_bytes());
    }
    Ok(out)
}

/// Constant-time comparison of two byte strings of equal length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_sha256_rfc7914_vector() {
        // RFC 7914 section 11, PBKDF2-HMAC-SHA256 with P="passwd", S="salt", c=1.
        let mut out = [0u8; 64];
        pbkdf2(Hash::Sha256, b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            verity::hex::encode(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
    }

    #[test]
    fn af_split_then_merge_gives_the_key() {
        let key = VolumeKey::random(64).unwrap();
        for hash in [Hash::Sha256, Hash::Sha512] {
            let m = af_split(&key, 4000, hash).unwrap();
            assert_eq!(m.len(), 256_000);
            assert_eq!(af_merge(&m, 64, 4000, hash).unwrap(), key);
            let mut bad = m.clone();
            bad[100] ^= 1;
            assert_ne!(af_merge(&bad, 64, 4000, hash).unwrap(), key);
        }
        // A key size that is not a multiple of the hash size (partial last block).
        let odd = VolumeKey::random(40).unwrap();
        let m = af_split(&odd, 7, Hash::Sha256).unwrap();
        assert_eq!(af_merge(&m, 40, 7, Hash::Sha256).unwrap(), odd);
        assert!(af_merge(&m[..100], 40, 7, Hash::Sha256).is_none());
    }

    #[test]
    fn area_cipher_round_trips_and_is_per_sector() {
        let key = [7u8; 64];
        let plain = vec![0u8; 2048];
        let mut buf = plain.clone();
        area_crypt("aes-xts-plain64", &key, &mut buf, true).unwrap();
        // Same plaintext, different sector numbers: different ciphertext.
        assert_ne!(buf[..512], buf[512..1024]);
        area_crypt("aes-xts-plain64", &key, &mut buf, false).unwrap();
        assert_eq!(buf, plain);
        assert!(area_crypt("aes-cbc-essiv:sha256", &key, &mut buf, true).is_err());
        assert!(area_crypt("aes-xts-plain64", &key[..48], &mut buf, true).is_err());
        assert!(area_crypt("aes-xts-plain64", &key, &mut buf[..100], true).is_err());
    }

    #[test]
    fn volume_key_debug_hides_the_bytes() {
        let k = VolumeKey::from_bytes(&[0xab; 64]);
        let shown = format!("{k:?}");
        assert_eq!(shown, "VolumeKey(64 bytes, hidden)");
        assert!(!shown.contains("ab"));
        assert_eq!(k.hex().as_str(), "ab".repeat(64));
    }

    #[test]
    fn argon2_bad_params_are_errors() {
        // With the `argon2` feature: Argon2's own parameter check; without: no Argon2.
        let kdf = Kdf::Argon2 {
            kind: crate::metadata::Argon2Type::Argon2id,
            time: 0,
            memory: 8,
            cpus: 1,
            salt: vec![0; 32],
        };
        assert!(matches!(derive(&kdf, b"x", 64), Err(Error::Kdf { .. })));
    }
}
