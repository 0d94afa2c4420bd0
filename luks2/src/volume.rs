//! A LUKS2 volume's header in memory: read from a device, unlocked, changed, written back.
//!
//! Every mutator here changes only the in-memory header (and queues the keyslot area
//! bytes it needs); nothing reaches the device until [`Luks2::write`], which writes in
//! this order, with a flush after each step:
//!
//! 1. the areas of new keyslots (nothing refers to them yet, so a cut here changes
//!    nothing);
//! 2. the secondary header copy, with the seqid increased;
//! 3. the primary header copy, same seqid;
//! 4. zeros over the areas of removed keyslots (no header refers to them any more).
//!
//! A cut during step 2 leaves the old primary valid (the old state); a cut during step 3
//! leaves the new secondary valid with the higher seqid (the new state): a reader, ours or
//! cryptsetup's, takes the valid copy with the higher seqid. Writing the primary last also
//! means that, on a fresh device, the first 4 KiB stay zero until the header is complete:
//! an all-zero head still means "never formatted" after a cut anywhere in a first write.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use zeroize::Zeroizing;

use crate::crypto::{self, VolumeKey};
use crate::error::{Error, HeaderError, MetadataError};
use crate::header::{self, BinaryHeader, Copy, BINARY_SIZE, HEADER_SIZES};
use crate::json::{self, Object, Value};
use crate::metadata::{
    Area, Argon2Type, Config, Digest, Hash, Kdf, Keyslot, Metadata, Segment, SegmentSize, Token,
    MAX_KEYSLOTS, MAX_TOKENS,
};
use crate::table::CryptTable;

/// Header size (binary header + JSON area) of new volumes: cryptsetup 2.x's default
/// (`--luks2-metadata-size` 16 KiB).
pub const HEADER_SIZE: u64 = 16 * 1024;
/// Where the data segment of new volumes starts: cryptsetup 2.x's default, 16 MiB, which
/// leaves `16 MiB - 2 * 16 KiB` for keyslot areas (room for 64 keyslots of 256 KiB).
pub const DATA_OFFSET: u64 = 16 * 1024 * 1024;
/// Bytes of the keyslots area of new volumes.
pub const KEYSLOTS_SIZE: u64 = DATA_OFFSET - 2 * HEADER_SIZE;
/// Stripes of the anti-forensic splitter (cryptsetup's and the spec's 4000).
pub const AF_STRIPES: u32 = 4000;
/// Cipher of the data segment and the keyslot areas of new volumes.
pub const CIPHER: &str = "aes-xts-plain64";
/// Bytes of the volume key of new volumes (AES-256-XTS).
pub const VOLUME_KEY_BYTES: usize = 64;
/// PBKDF2-SHA256 iterations of the volume key digest of new volumes. cryptsetup measures
/// ~1/8 s with a floor of 1000; the digest guards a 512-bit random key, which no number of
/// iterations makes easier or harder to guess, so the floor is enough and saves boot time.
pub const DIGEST_ITERATIONS: u32 = 1000;
/// Largest keyslots area accepted on read (cryptsetup's `LUKS2_MAX_KEYSLOTS_SIZE`).
pub const MAX_KEYSLOTS_SIZE: u64 = 128 * 1024 * 1024;
/// Largest Argon2 memory cost accepted on unlock, in KiB (cryptsetup's maximum, 4 GiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;

/// Where a header copy is written and read back with flushes: a block device or file, or an
/// in-memory image in tests.
pub trait Storage: Read + Write + Seek {
    /// Makes what was written durable (fsync).
    fn sync(&mut self) -> io::Result<()>;
}

impl Storage for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

impl Storage for Cursor<Vec<u8>> {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: Storage + ?Sized> Storage for &mut T {
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
}

/// The KDF and its cost for a new keyslot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfParams {
    Pbkdf2 {
        hash: Hash,
        iterations: u32,
    },
    Argon2id {
        time: u32,
        memory_kib: u32,
        cpus: u32,
    },
}

impl KdfParams {
    /// For a passphrase a person chose: argon2id with 4 passes over 64 MiB on one lane
    /// (needs the `argon2` feature to open).
    ///
    /// cryptsetup benchmarks argon2id to 2 s of one machine's time with up to 1 GiB and 4
    /// lanes; the cost here is fixed so that a 512 MiB guest can open the slot too.
    /// cryptsetup opens it on any machine (it reads the cost from the header).
    pub const PASSPHRASE: KdfParams = KdfParams::Argon2id {
        time: 4,
        memory_kib: 64 * 1024,
        cpus: 1,
    };

    /// For high-entropy secrets (a TPM-sealed secret, a key file, a generated 256-bit
    /// recovery key): PBKDF2-SHA512 with 1000 iterations, what systemd-cryptenroll uses for
    /// its TPM2 and its recovery-key keyslots (`cryptsetup_set_minimal_pbkdf`: the NIST
    /// SP 800-132 minimum). A random 256-bit secret gains nothing from a costly KDF, and
    /// unlocking stays in the microseconds.
    pub const MACHINE_SECRET: KdfParams = KdfParams::Pbkdf2 {
        hash: Hash::Sha512,
        iterations: 1000,
    };

    fn with_salt(self, salt: Vec<u8>) -> Kdf {
        match self {
            KdfParams::Pbkdf2 { hash, iterations } => Kdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            },
            KdfParams::Argon2id {
                time,
                memory_kib,
                cpus,
            } => Kdf::Argon2 {
                kind: Argon2Type::Argon2id,
                time,
                memory: memory_kib,
                cpus,
                salt,
            },
        }
    }
}

/// Options of [`Luks2::format`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    /// Encryption sector size of the data segment: 4096 where the device's logical sector
    /// size allows it (faster, and what cryptsetup 2.4+ picks), else 512.
    pub sector_size: u32,
    /// Header label (up to 47 bytes).
    pub label: String,
    /// UUID; a random version 4 UUID if `None`.
    pub uuid: Option<String>,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            sector_size: 512,
            label: String::new(),
            uuid: None,
        }
    }
}

/// A LUKS2 header: the binary header fields, the JSON metadata, what [`Luks2::read`] found
/// wrong with the other copy, and the writes queued for [`Luks2::write`].
#[derive(Debug)]
pub struct Luks2 {
    pub header: BinaryHeader,
    pub metadata: Metadata,
    /// The copy that was not used and why (damaged, or older), if any.
    pub damaged: Option<(Copy, HeaderError)>,
    /// Encrypted keyslot material to write before the header: (offset, bytes).
    pending_areas: Vec<(u64, Zeroizing<Vec<u8>>)>,
    /// Areas of removed keyslots to zero after the header: (offset, size).
    pending_wipes: Vec<(u64, u64)>,
}

/// Reads `len` bytes at `offset`: `Ok(None)` if the device ends first.
fn read_at<R: Read + Seek>(
    dev: &mut R,
    offset: u64,
    len: usize,
    what: &'static str,
) -> Result<Option<Vec<u8>>, Error> {
    let err = |source| Error::Read {
        what,
        offset,
        source,
    };
    dev.seek(SeekFrom::Start(offset)).map_err(err)?;
    let mut buf = vec![0u8; len];
    match dev.read_exact(&mut buf) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(err(e)),
    }
}

fn write_at<W: Storage>(
    dev: &mut W,
    offset: u64,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), Error> {
    let err = |source| Error::Write {
        what,
        offset,
        source,
    };
    dev.seek(SeekFrom::Start(offset)).map_err(err)?;
    dev.write_all(bytes).map_err(err)
}

fn sync<W: Storage>(dev: &mut W, what: &'static str) -> Result<(), Error> {
    dev.flush()
        .and_then(|()| dev.sync())
        .map_err(|source| Error::Sync { what, source })
}

type Fetch<'a> = dyn FnMut(u64, usize) -> Result<Option<Vec<u8>>, Error> + 'a;

/// One copy read, checked and parsed.
fn load_copy(
    fetch: &mut Fetch<'_>,
    which: Copy,
    offset: u64,
) -> Result<Result<(BinaryHeader, Metadata), HeaderError>, Error> {
    let Some(head) = fetch(offset, BINARY_SIZE)? else {
        return Ok(Err(HeaderError::Truncated { offset }));
    };
    let size = match header::peek_size(&head, which) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let Some(bytes) = fetch(offset, usize::try_from(size).unwrap_or(usize::MAX))? else {
        return Ok(Err(HeaderError::Truncated { offset }));
    };
    let (bin, text) = match header::parse_copy(&bytes, which, offset) {
        Ok(x) => x,
        Err(e) => return Ok(Err(e)),
    };
    let value = match json::parse(text) {
        Ok(v) => v,
        Err(e) => return Ok(Err(HeaderError::Json(e))),
    };
    let md = match Metadata::from_json(&value, size - BINARY_SIZE as u64)
        .and_then(|md| check_layout(&md, size).map(|()| md))
    {
        Ok(md) => md,
        Err(e) => return Ok(Err(HeaderError::Metadata(e))),
    };
    Ok(Ok((bin, md)))
}

/// Keyslot areas lie inside the keyslots area, which follows the two header copies.
fn check_layout(md: &Metadata, hdr_size: u64) -> Result<(), MetadataError> {
    let start = 2 * hdr_size;
    if md.config.keyslots_size > MAX_KEYSLOTS_SIZE || !md.config.keyslots_size.is_multiple_of(4096)
    {
        return Err(MetadataError::new(
            "config.keyslots_size",
            format!(
                "{} is not a multiple of 4096 up to {MAX_KEYSLOTS_SIZE}",
                md.config.keyslots_size
            ),
        ));
    }
    let end = start + md.config.keyslots_size;
    for (n, k) in &md.keyslots {
        let a_end = k.area.offset.saturating_add(k.area.size);
        if k.area.offset < start || a_end > end {
            return Err(MetadataError::new(
                format!("keyslots.{n}.area"),
                format!(
                    "bytes {}..{a_end} lie outside the keyslots area {start}..{end}",
                    k.area.offset
                ),
            ));
        }
    }
    Ok(())
}

impl Luks2 {
    /// Reads and checks both header copies from `dev` and keeps the valid one with the
    /// higher seqid (the primary on a tie). [`Luks2::damaged`] says what was wrong with the
    /// other. Only when neither copy is valid is this an error.
    pub fn read<R: Read + Seek>(dev: &mut R) -> Result<Luks2, Error> {
        Luks2::load(&mut |offset, len| read_at(dev, offset, len, "LUKS2 header"))
    }

    /// [`Luks2::read`] over an image in memory (the first bytes of a device).
    pub fn from_bytes(image: &[u8]) -> Result<Luks2, Error> {
        Luks2::load(&mut |offset, len| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            Ok(start
                .checked_add(len)
                .and_then(|end| image.get(start..end))
                .map(<[u8]>::to_vec))
        })
    }

    fn load(fetch: &mut Fetch<'_>) -> Result<Luks2, Error> {
        let primary = load_copy(fetch, Copy::Primary, 0)?;
        // The secondary lies at the primary's size; with no usable primary, at any size.
        let mut offsets: Vec<u64> = Vec::with_capacity(HEADER_SIZES.len());
        if let Ok((p, _)) = &primary {
            offsets.push(p.hdr_size);
        } else {
            offsets.extend(HEADER_SIZES);
        }
        let mut secondary = Err(HeaderError::Magic);
        for off in offsets {
            let got = load_copy(fetch, Copy::Secondary, off)?;
            let found = got.is_ok()
                || !matches!(got, Err(HeaderError::Magic | HeaderError::Truncated { .. }));
            secondary = got;
            if found {
                break;
            }
        }
        let (header, metadata, damaged) = match (primary, secondary) {
            (Ok((p, pm)), Ok((s, sm))) => {
                if s.seqid > p.seqid {
                    let why = HeaderError::Outdated {
                        seqid: p.seqid,
                        current: s.seqid,
                    };
                    (s, sm, Some((Copy::Primary, why)))
                } else if p.seqid > s.seqid {
                    let why = HeaderError::Outdated {
                        seqid: s.seqid,
                        current: p.seqid,
                    };
                    (p, pm, Some((Copy::Secondary, why)))
                } else {
                    (p, pm, None)
                }
            }
            (Ok((p, pm)), Err(e)) => (p, pm, Some((Copy::Secondary, e))),
            (Err(e), Ok((s, sm))) => (s, sm, Some((Copy::Primary, e))),
            (Err(primary), Err(secondary)) => {
                return Err(Error::NoValidHeader { primary, secondary })
            }
        };
        Ok(Luks2 {
            header,
            metadata,
            damaged,
            pending_areas: Vec::new(),
            pending_wipes: Vec::new(),
        })
    }

    /// A new header for a device of `device_size` bytes whose data segment uses
    /// `volume_key`: one aes-xts-plain64 segment from [`DATA_OFFSET`] to the end of the
    /// device (`dynamic`, so it follows the partition when it grows), one PBKDF2-SHA256
    /// digest of the key, no keyslots yet. Does not write to the device: add keyslots, then
    /// [`Luks2::write`].
    pub fn format(
        device_size: u64,
        volume_key: &VolumeKey,
        opts: &FormatOptions,
    ) -> Result<Luks2, Error> {
        if volume_key.len() != VOLUME_KEY_BYTES {
            return Err(Error::VolumeKeyLength {
                len: volume_key.len(),
                expected: VOLUME_KEY_BYTES,
            });
        }
        if !matches!(opts.sector_size, 512 | 1024 | 2048 | 4096) {
            return Err(Error::Unsupported {
                what: "sector size",
                detail: opts.sector_size.to_string(),
            });
        }
        let data = device_size.saturating_sub(DATA_OFFSET);
        if data == 0 || !data.is_multiple_of(u64::from(opts.sector_size)) {
            return Err(Error::Geometry {
                size: device_size,
                problem: format!(
                    "needs more than {DATA_OFFSET} bytes, and whole {}-byte sectors after them",
                    opts.sector_size
                ),
            });
        }
        let uuid = match &opts.uuid {
            Some(u) => u.clone(),
            None => random_uuid()?,
        };
        let mut salt = vec![0u8; 32];
        crypto::fill_random(&mut salt)?;
        let mut digest = vec![0u8; 32];
        crypto::pbkdf2(
            Hash::Sha256,
            volume_key.as_bytes(),
            &salt,
            DIGEST_ITERATIONS,
            &mut digest,
        );
        let metadata = Metadata {
            keyslots: Default::default(),
            tokens: Default::default(),
            segments: [(
                0,
                Segment {
                    offset: DATA_OFFSET,
                    size: SegmentSize::Dynamic,
                    iv_tweak: 0,
                    encryption: CIPHER.to_owned(),
                    sector_size: opts.sector_size,
                    flags: Vec::new(),
                },
            )]
            .into(),
            digests: [(
                0,
                Digest {
                    keyslots: Vec::new(),
                    segments: vec![0],
                    hash: Hash::Sha256,
                    iterations: DIGEST_ITERATIONS,
                    salt,
                    digest,
                },
            )]
            .into(),
            config: Config {
                json_size: HEADER_SIZE - BINARY_SIZE as u64,
                keyslots_size: KEYSLOTS_SIZE,
                flags: Vec::new(),
                requirements: None,
                rest: Object::new(),
            },
        };
        Ok(Luks2 {
            header: BinaryHeader {
                hdr_size: HEADER_SIZE,
                seqid: 0,
                label: opts.label.clone(),
                uuid,
                subsystem: String::new(),
            },
            metadata,
            damaged: None,
            pending_areas: Vec::new(),
            pending_wipes: Vec::new(),
        })
    }

    /// The digest of segment 0 (the data).
    fn data_digest(&self) -> Result<(u32, &Digest), Error> {
        self.metadata
            .digests
            .iter()
            .find(|(_, d)| d.segments.contains(&0))
            .map(|(n, d)| (*n, d))
            .ok_or_else(|| {
                Error::Metadata(MetadataError::new("digests", "no digest for segment 0"))
            })
    }

    /// Whether `key` is the volume key (checks it against the digest of segment 0).
    pub fn verify_volume_key(&self, key: &VolumeKey) -> Result<bool, Error> {
        Ok(digest_matches(self.data_digest()?.1, key))
    }

    /// Tries `secret` on every keyslot (priority 2 first, then unset or 1; priority 0 is
    /// skipped, as cryptsetup does) and returns the first keyslot that opens with the
    /// volume key it holds.
    pub fn unlock<R: Read + Seek>(
        &self,
        dev: &mut R,
        secret: &[u8],
    ) -> Result<(u32, VolumeKey), Error> {
        let mut order: Vec<(u32, u64)> = self
            .metadata
            .keyslots
            .iter()
            .map(|(n, k)| (*n, k.priority.unwrap_or(1)))
            .filter(|(_, p)| *p != 0)
            .collect();
        order.sort_by_key(|(n, p)| (std::cmp::Reverse(*p), *n));
        let mut tried = Vec::with_capacity(order.len());
        for (n, _) in order {
            if let Some(key) = self.unlock_keyslot(dev, n, secret)? {
                return Ok((n, key));
            }
            tried.push(n);
        }
        Err(Error::WrongSecret { tried })
    }

    /// Opens keyslot `n` with `secret`: `Ok(None)` if the secret is wrong for it (or its
    /// area was damaged: the two cannot be told apart, by design of the format).
    pub fn unlock_keyslot<R: Read + Seek>(
        &self,
        dev: &mut R,
        n: u32,
        secret: &[u8],
    ) -> Result<Option<VolumeKey>, Error> {
        let k = self
            .metadata
            .keyslots
            .get(&n)
            .ok_or(Error::NoSuchKeyslot(n))?;
        let bad = |problem: String| Error::Keyslot {
            keyslot: n,
            problem,
        };
        let (_, digest) = self
            .metadata
            .digest_of_keyslot(n)
            .ok_or_else(|| bad("no digest refers to it".to_owned()))?;
        if let Kdf::Argon2 { memory, .. } = k.kdf {
            if memory > MAX_ARGON2_MEMORY_KIB {
                return Err(bad(format!(
                    "argon2 memory {memory} KiB is over the {MAX_ARGON2_MEMORY_KIB} KiB limit"
                )));
            }
        }
        let len = crypto::af_sectors_bytes(k.key_size, k.af_stripes)
            .filter(|&l| l as u64 <= k.area.size)
            .ok_or_else(|| {
                bad(format!(
                    "{} stripes of {} bytes do not fit its {}-byte area",
                    k.af_stripes, k.key_size, k.area.size
                ))
            })?;
        let area_key = crypto::derive(&k.kdf, secret, k.area.key_size)?;
        let mut material = Zeroizing::new(
            read_at(dev, k.area.offset, len, "keyslot area")?.ok_or_else(|| {
                bad(format!(
                    "the device ends before its area at byte {}",
                    k.area.offset
                ))
            })?,
        );
        crypto::area_crypt(&k.area.encryption, &area_key, &mut material, false).map_err(bad)?;
        let candidate = crypto::af_merge(&material, k.key_size, k.af_stripes, k.af_hash)
            .ok_or_else(|| bad("AF material too short".to_owned()))?;
        Ok(digest_matches(digest, &candidate).then_some(candidate))
    }

    /// Adds a keyslot that opens with `secret` and holds `volume_key`; returns its number.
    /// The keyslot area is queued for [`Luks2::write`]: does not write to the device.
    pub fn add_keyslot(
        &mut self,
        volume_key: &VolumeKey,
        secret: &[u8],
        kdf: KdfParams,
    ) -> Result<u32, Error> {
        let (digest_id, digest) = self.data_digest()?;
        if !digest_matches(digest, volume_key) {
            return Err(Error::VolumeKeyMismatch);
        }
        let n = (0..MAX_KEYSLOTS)
            .find(|n| !self.metadata.keyslots.contains_key(n))
            .ok_or(Error::KeyslotsFull { max: MAX_KEYSLOTS })?;
        let key_size = volume_key.len();
        let material_len =
            crypto::af_sectors_bytes(key_size, AF_STRIPES).unwrap_or(usize::MAX) as u64;
        let size = material_len.next_multiple_of(4096);
        let offset = self.free_area(size)?;
        let mut salt = vec![0u8; 32];
        crypto::fill_random(&mut salt)?;
        let kdf = kdf.with_salt(salt);
        let area_key = crypto::derive(&kdf, secret, key_size)?;
        let mut material = crypto::af_split(volume_key, AF_STRIPES, Hash::Sha256)?;
        crypto::area_crypt(CIPHER, &area_key, &mut material, true).map_err(|problem| {
            Error::Keyslot {
                keyslot: n,
                problem,
            }
        })?;
        self.metadata.keyslots.insert(
            n,
            Keyslot {
                key_size,
                area: Area {
                    offset,
                    size,
                    encryption: CIPHER.to_owned(),
                    key_size,
                },
                kdf,
                af_stripes: AF_STRIPES,
                af_hash: Hash::Sha256,
                priority: None,
            },
        );
        if let Some(d) = self.metadata.digests.get_mut(&digest_id) {
            d.keyslots.push(n);
            d.keyslots.sort_unstable();
        }
        self.pending_areas.push((offset, material));
        Ok(n)
    }

    /// The lowest 4096-aligned offset in the keyslots area where `size` bytes overlap no
    /// keyslot's area (nor an area whose wipe is still queued).
    fn free_area(&self, size: u64) -> Result<u64, Error> {
        let start = 2 * self.header.hdr_size;
        let end = start + self.metadata.config.keyslots_size;
        let mut used: Vec<(u64, u64)> = self
            .metadata
            .keyslots
            .values()
            .map(|k| (k.area.offset, k.area.offset.saturating_add(k.area.size)))
            .chain(
                self.pending_wipes
                    .iter()
                    .map(|&(o, s)| (o, o.saturating_add(s))),
            )
            .collect();
        used.sort_unstable();
        let mut at = start;
        for (o, e) in used {
            if at.saturating_add(size) <= o {
                break;
            }
            at = at.max(e.next_multiple_of(4096));
        }
        if at.saturating_add(size) <= end {
            Ok(at)
        } else {
            Err(Error::NoRoom {
                size,
                area: self.metadata.config.keyslots_size,
            })
        }
    }

    /// Removes keyslot `n` from the header (and from the digests and tokens that name it)
    /// and queues zeros over its area for after the header is written. Does not write to
    /// the device. Removing the last keyslot makes the data unrecoverable once written.
    pub fn remove_keyslot(&mut self, n: u32) -> Result<(), Error> {
        let k = self
            .metadata
            .keyslots
            .remove(&n)
            .ok_or(Error::NoSuchKeyslot(n))?;
        for d in self.metadata.digests.values_mut() {
            d.keyslots.retain(|&x| x != n);
        }
        for t in self.metadata.tokens.values_mut() {
            t.keyslots.retain(|&x| x != n);
        }
        self.pending_areas.retain(|(o, _)| *o != k.area.offset);
        self.pending_wipes.push((k.area.offset, k.area.size));
        Ok(())
    }

    /// Adds a token: any JSON object with a string `type` and a `keyslots` array of
    /// existing keyslot numbers (as strings), e.g. a `systemd-tpm2` token. Returns its
    /// number. Does not write to the device.
    pub fn add_token(&mut self, object: Object) -> Result<u32, Error> {
        let n = (0..MAX_TOKENS)
            .find(|n| !self.metadata.tokens.contains_key(n))
            .ok_or(Error::Unsupported {
                what: "another token",
                detail: format!("all {MAX_TOKENS} are in use"),
            })?;
        let mut probe = self.metadata.to_json();
        if let Value::Object(root) = &mut probe {
            let mut tokens = Object::new();
            tokens.insert(n.to_string(), Value::Object(object));
            root.insert("tokens", Value::Object(tokens));
        }
        let md =
            Metadata::from_json(&probe, self.metadata.config.json_size).map_err(Error::Metadata)?;
        let token: Token = md
            .tokens
            .get(&n)
            .cloned()
            .ok_or_else(|| Error::Metadata(MetadataError::new("tokens", "token lost")))?;
        self.metadata.tokens.insert(n, token);
        Ok(n)
    }

    /// Removes token `n`. Does not write to the device.
    pub fn remove_token(&mut self, n: u32) -> Result<(), Error> {
        self.metadata
            .tokens
            .remove(&n)
            .map(|_| ())
            .ok_or(Error::NoSuchToken(n))
    }

    /// The JSON text of the metadata as it would be written.
    pub fn json_text(&self) -> String {
        self.metadata.to_json().to_text()
    }

    /// Writes the queued keyslot areas, both header copies with the seqid increased, and
    /// the queued wipes, in the order the module documentation gives, flushing after each.
    pub fn write<W: Storage>(&mut self, dev: &mut W) -> Result<(), Error> {
        let json = self.json_text();
        if !header::json_fits(json.len(), self.header.hdr_size) {
            return Err(Error::JsonTooLarge {
                len: json.len(),
                max: self.header.hdr_size - BINARY_SIZE as u64 - 1,
            });
        }
        if !self.pending_areas.is_empty() {
            for (offset, bytes) in &self.pending_areas {
                write_at(dev, *offset, bytes, "keyslot area")?;
            }
            sync(dev, "keyslot areas")?;
        }
        let mut next = self.header.clone();
        next.seqid = next.seqid.saturating_add(1);
        for (which, offset) in [(Copy::Secondary, next.hdr_size), (Copy::Primary, 0)] {
            let mut salt = [0u8; 64];
            crypto::fill_random(&mut salt)?;
            let bytes = header::build_copy(&next, which, &salt, &json);
            let what = match which {
                Copy::Primary => "primary LUKS2 header",
                Copy::Secondary => "secondary LUKS2 header",
            };
            write_at(dev, offset, &bytes, what)?;
            sync(dev, what)?;
        }
        self.header = next;
        self.damaged = None;
        self.pending_areas.clear();
        if !self.pending_wipes.is_empty() {
            for (offset, size) in &self.pending_wipes {
                let zeros = vec![0u8; usize::try_from(*size).unwrap_or(0)];
                write_at(dev, *offset, &zeros, "removed keyslot area")?;
            }
            sync(dev, "removed keyslot areas")?;
            self.pending_wipes.clear();
        }
        Ok(())
    }

    /// The dm-crypt table of segment 0 on `device` (a path or `major:minor`) of
    /// `device_size` bytes, with `volume_key` (checked against the digest first).
    pub fn crypt_table(
        &self,
        volume_key: &VolumeKey,
        device: &str,
        device_size: u64,
    ) -> Result<CryptTable, Error> {
        if !self.verify_volume_key(volume_key)? {
            return Err(Error::VolumeKeyMismatch);
        }
        let seg = self
            .metadata
            .segments
            .get(&0)
            .ok_or_else(|| Error::Metadata(MetadataError::new("segments", "no segment 0")))?;
        CryptTable::new(
            seg,
            &self.metadata.config.flags,
            volume_key,
            device,
            device_size,
        )
    }
}

fn digest_matches(d: &Digest, key: &VolumeKey) -> bool {
    if d.digest.is_empty() || d.iterations == 0 {
        return false;
    }
    let mut out = Zeroizing::new(vec![0u8; d.digest.len()]);
    crypto::pbkdf2(d.hash, key.as_bytes(), &d.salt, d.iterations, &mut out);
    crypto::ct_eq(&out, &d.digest)
}

/// A random version 4 UUID in lower-case text.
fn random_uuid() -> Result<String, Error> {
    let mut b = [0u8; 16];
    crypto::fill_random(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = verity::hex::encode(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        h.get(0..8).unwrap_or_default(),
        h.get(8..12).unwrap_or_default(),
        h.get(12..16).unwrap_or_default(),
        h.get(16..20).unwrap_or_default(),
        h.get(20..32).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap KDF for tests that are not about the KDF.
    const FAST: KdfParams = KdfParams::Pbkdf2 {
        hash: Hash::Sha256,
        iterations: 1000,
    };
    const SIZE: u64 = DATA_OFFSET + (1 << 20);

    fn formatted() -> (Cursor<Vec<u8>>, Luks2, VolumeKey) {
        let key = VolumeKey::random(64).unwrap();
        let mut l = Luks2::format(SIZE, &key, &FormatOptions::default()).unwrap();
        l.add_keyslot(&key, b"first", FAST).unwrap();
        l.add_keyslot(&key, b"second", FAST).unwrap();
        let mut dev = Cursor::new(vec![0u8; SIZE as usize]);
        l.write(&mut dev).unwrap();
        (dev, l, key)
    }

    /// Rewrites one header copy with different JSON text and a correct checksum.
    fn rewrite_json(img: &mut [u8], which: Copy, edit: impl Fn(String) -> String) {
        let off = match which {
            Copy::Primary => 0,
            Copy::Secondary => HEADER_SIZE as usize,
        };
        let copy = img[off..off + HEADER_SIZE as usize].to_vec();
        let (bin, json) = header::parse_copy(&copy, which, off as u64).unwrap();
        let bytes = header::build_copy(&bin, which, &[9; 64], &edit(json.to_owned()));
        img[off..off + bytes.len()].copy_from_slice(&bytes);
    }

    #[test]
    fn format_write_read_unlock() {
        let (mut dev, l, key) = formatted();
        let r = Luks2::read(&mut dev).unwrap();
        assert_eq!(r.damaged, None);
        assert_eq!(r.header.seqid, 1);
        assert_eq!(r.header.uuid, l.header.uuid);
        assert_eq!(r.metadata, l.metadata);
        assert_eq!(r.unlock(&mut dev, b"first").unwrap(), (0, key.clone()));
        assert_eq!(r.unlock(&mut dev, b"second").unwrap(), (1, key.clone()));
        assert_eq!(r.unlock_keyslot(&mut dev, 0, b"second").unwrap(), None);
        assert!(matches!(
            r.unlock(&mut dev, b"third"),
            Err(Error::WrongSecret { tried }) if tried == [0, 1]
        ));
        // Areas are the cryptsetup layout: 32 KiB, then 258048-byte steps.
        let offs: Vec<u64> = r
            .metadata
            .keyslots
            .values()
            .map(|k| k.area.offset)
            .collect();
        assert_eq!(offs, [32768, 32768 + 258048]);
        // The head of the device is the primary header, the data area untouched.
        assert_eq!(&dev.get_ref()[..6], b"LUKS\xba\xbe");
        assert!(dev.get_ref()[DATA_OFFSET as usize..]
            .iter()
            .all(|&b| b == 0));
    }

    #[test]
    fn a_damaged_copy_is_named_and_the_other_used() {
        let (dev, _, key) = formatted();
        let cases: [(usize, Copy, HeaderError); 5] = [
            (0, Copy::Primary, HeaderError::Magic),
            (200, Copy::Primary, HeaderError::Checksum), // uuid
            (4096 + 10, Copy::Primary, HeaderError::Checksum), // JSON
            (16384 + 4096 + 10, Copy::Secondary, HeaderError::Checksum),
            (16384 + 7, Copy::Secondary, HeaderError::Version(2 ^ 0x10)),
        ];
        for (at, which, why) in cases {
            let mut img = dev.get_ref().clone();
            img[at] ^= 0x10;
            let mut d = Cursor::new(img);
            let r = Luks2::read(&mut d).unwrap();
            assert_eq!(r.damaged, Some((which, why)), "byte {at}");
            assert_eq!(r.unlock(&mut d, b"first").unwrap().1, key);
        }
    }

    #[test]
    fn both_copies_damaged_is_an_error_naming_both() {
        let (dev, _, _) = formatted();
        let mut img = dev.get_ref().clone();
        img[4096 + 3] ^= 1;
        img[16384] = 0;
        match Luks2::from_bytes(&img) {
            Err(Error::NoValidHeader { primary, secondary }) => {
                assert_eq!(primary, HeaderError::Checksum);
                assert_eq!(secondary, HeaderError::Magic);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Luks2::from_bytes(&[0u8; 100]),
            Err(Error::NoValidHeader { .. })
        ));
    }

    #[test]
    fn metadata_errors_name_the_field() {
        let (dev, _, _) = formatted();
        let cases: [(&str, &str, &str); 5] = [
            (
                "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"",
                "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"!",
                "keyslots.0.kdf.salt",
            ),
            (
                "\"sector_size\":512",
                "\"sector_size\":513",
                "segments.0.sector_size",
            ),
            (
                "\"keyslots\":[\"0\",\"1\"]",
                "\"keyslots\":[\"0\",\"7\"]",
                "digests.0.keyslots",
            ),
            (
                "\"json_size\":\"12288\"",
                "\"json_size\":\"4096\"",
                "config.json_size",
            ),
            (
                "\"offset\":\"32768\"",
                "\"offset\":\"16384\"",
                "keyslots.0.area",
            ),
        ];
        for (from, to, path) in cases {
            let mut img = dev.get_ref().clone();
            for which in [Copy::Primary, Copy::Secondary] {
                rewrite_json(&mut img, which, |j| {
                    assert!(j.contains(from), "{from} not in {j}");
                    j.replacen(from, to, 1)
                });
            }
            match Luks2::from_bytes(&img) {
                Err(Error::NoValidHeader {
                    primary: HeaderError::Metadata(e),
                    ..
                }) => assert_eq!(e.path, path),
                other => panic!("{from}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_damaged_keyslot_area_opens_no_more_but_the_other_does() {
        let (dev, l, key) = formatted();
        let mut img = dev.get_ref().clone();
        img[l.metadata.keyslots.get(&0).unwrap().area.offset as usize + 1000] ^= 1;
        let mut d = Cursor::new(img);
        let r = Luks2::read(&mut d).unwrap();
        assert!(matches!(
            r.unlock(&mut d, b"first"),
            Err(Error::WrongSecret { .. })
        ));
        assert_eq!(r.unlock(&mut d, b"second").unwrap(), (1, key));
    }

    #[test]
    fn the_newer_copy_wins() {
        let (mut dev, mut l, key) = formatted();
        let old = dev.get_ref().clone();
        l.remove_keyslot(0).unwrap();
        l.write(&mut dev).unwrap();
        // Old primary (seqid 1) with the new secondary (seqid 2).
        let mut img = dev.get_ref().clone();
        img[..HEADER_SIZE as usize].copy_from_slice(&old[..HEADER_SIZE as usize]);
        let r = Luks2::from_bytes(&img).unwrap();
        assert_eq!(r.header.seqid, 2);
        assert_eq!(
            r.damaged,
            Some((
                Copy::Primary,
                HeaderError::Outdated {
                    seqid: 1,
                    current: 2
                }
            ))
        );
        assert!(!r.metadata.keyslots.contains_key(&0));
        let mut d = Cursor::new(img);
        assert_eq!(r.unlock(&mut d, b"second").unwrap(), (1, key));
        // The removed keyslot's area is zero once the headers no longer name it.
        assert_eq!(l.header.seqid, 2);
        let area = 32768..32768 + 258048;
        assert!(dev.get_ref()[area].iter().all(|&b| b == 0));
    }

    /// A device that accepts `left` writes and fails every later one (a power cut).
    struct Cut {
        inner: Cursor<Vec<u8>>,
        left: usize,
    }
    impl Read for Cut {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.inner.read(b)
        }
    }
    impl Seek for Cut {
        fn seek(&mut self, p: SeekFrom) -> io::Result<u64> {
            self.inner.seek(p)
        }
    }
    impl Write for Cut {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("power cut"));
            }
            self.left -= 1;
            self.inner.write_all(b)?;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Storage for Cut {
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_cut_at_any_write_leaves_the_old_or_the_new_state() {
        // First use: a cut before the primary is written leaves an all-zero head.
        let key = VolumeKey::random(64).unwrap();
        for left in 0..3 {
            let mut l = Luks2::format(SIZE, &key, &FormatOptions::default()).unwrap();
            l.add_keyslot(&key, b"k", FAST).unwrap();
            let mut dev = Cut {
                inner: Cursor::new(vec![0u8; SIZE as usize]),
                left,
            };
            assert!(l.write(&mut dev).is_err());
            assert!(
                dev.inner.get_ref()[..4096].iter().all(|&b| b == 0),
                "cut {left}"
            );
        }
        // An update (add a keyslot, remove another): writes are area, secondary, primary,
        // wipe. Every cut opens with the old state or the new one.
        let (dev, _, key) = formatted();
        for left in 0..5 {
            let mut l = Luks2::from_bytes(dev.get_ref()).unwrap();
            l.add_keyslot(&key, b"third", FAST).unwrap();
            l.remove_keyslot(0).unwrap();
            let mut d = Cut {
                inner: Cursor::new(dev.get_ref().clone()),
                left,
            };
            let done = l.write(&mut d).is_ok();
            let mut img = d.inner;
            let r = Luks2::read(&mut img).unwrap();
            let slots: Vec<u32> = r.metadata.keyslots.keys().copied().collect();
            if slots == [0, 1] {
                assert!(left < 2 && !done, "cut {left}");
                assert_eq!(r.unlock(&mut img, b"first").unwrap().1, key);
            } else {
                assert_eq!(slots, [1, 2], "cut {left}");
                assert!(left >= 2, "cut {left}");
                assert_eq!(r.unlock(&mut img, b"third").unwrap().1, key);
                assert_eq!(r.unlock(&mut img, b"second").unwrap().1, key);
            }
        }
    }

    #[test]
    fn keyslots_and_tokens_are_managed() {
        let (mut dev, mut l, key) = formatted();
        let other = VolumeKey::random(64).unwrap();
        assert!(matches!(
            l.add_keyslot(&other, b"x", FAST),
            Err(Error::VolumeKeyMismatch)
        ));
        assert!(matches!(l.remove_keyslot(9), Err(Error::NoSuchKeyslot(9))));
        let tok = json::parse(
            r#"{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AAEC","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256"}"#,
        )
        .unwrap();
        let Value::Object(obj) = tok else { panic!() };
        assert_eq!(l.add_token(obj.clone()).unwrap(), 0);
        let mut bad = obj.clone();
        bad.insert("keyslots", Value::Array(vec![Value::str("5")]));
        assert!(matches!(l.add_token(bad), Err(Error::Metadata(_))));
        let mut untyped = obj.clone();
        untyped.remove("type");
        assert!(l.add_token(untyped).is_err());
        l.write(&mut dev).unwrap();
        let r = Luks2::read(&mut dev).unwrap();
        assert_eq!(r.metadata.tokens.get(&0).unwrap().kind, "systemd-tpm2");
        assert_eq!(r.metadata.tokens.get(&0).unwrap().object, obj);
        // Removing keyslot 1 unassigns it from the token; the token stays.
        let mut l = r;
        l.remove_keyslot(1).unwrap();
        assert!(l.metadata.tokens.get(&0).unwrap().keyslots.is_empty());
        l.remove_token(0).unwrap();
        assert!(matches!(l.remove_token(0), Err(Error::NoSuchToken(0))));
        // Freed areas are reused once written.
        l.write(&mut dev).unwrap();
        assert_eq!(l.add_keyslot(&key, b"again", FAST).unwrap(), 1);
        assert_eq!(
            l.metadata.keyslots.get(&1).unwrap().area.offset,
            32768 + 258048
        );
    }

    #[test]
    fn the_keyslots_area_fills_up() {
        let key = VolumeKey::random(64).unwrap();
        let mut l = Luks2::format(SIZE, &key, &FormatOptions::default()).unwrap();
        let cheap = KdfParams::Pbkdf2 {
            hash: Hash::Sha256,
            iterations: 1,
        };
        for n in 0..MAX_KEYSLOTS {
            assert_eq!(l.add_keyslot(&key, b"k", cheap).unwrap(), n);
        }
        assert!(matches!(
            l.add_keyslot(&key, b"k", cheap),
            Err(Error::KeyslotsFull { .. })
        ));
        let json = l.json_text();
        assert!(header::json_fits(json.len(), HEADER_SIZE), "{}", json.len());
    }

    #[test]
    fn format_checks_its_inputs() {
        let key = VolumeKey::random(64).unwrap();
        let opts = FormatOptions {
            sector_size: 4096,
            ..FormatOptions::default()
        };
        assert!(matches!(
            Luks2::format(DATA_OFFSET, &key, &opts),
            Err(Error::Geometry { .. })
        ));
        assert!(matches!(
            Luks2::format(DATA_OFFSET + 512, &key, &opts),
            Err(Error::Geometry { .. })
        ));
        assert!(Luks2::format(DATA_OFFSET + 4096, &key, &opts).is_ok());
        assert!(matches!(
            Luks2::format(SIZE, &VolumeKey::random(32).unwrap(), &opts),
            Err(Error::VolumeKeyLength { .. })
        ));
        let odd = FormatOptions {
            sector_size: 333,
            ..FormatOptions::default()
        };
        assert!(matches!(
            Luks2::format(SIZE, &key, &odd),
            Err(Error::Unsupported { .. })
        ));
        let u = Luks2::format(SIZE, &key, &FormatOptions::default()).unwrap();
        let uuid = &u.header.uuid;
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
    }
}
