//! The JSON metadata area as types (LUKS2 on-disk format specification, section 3:
//! "keyslots", "segments", "digests", "tokens", "config").
//!
//! [`Metadata::from_json`] checks every field this crate uses and keeps what it does not
//! interpret (tokens whole, unknown members of a token) so that writing back loses
//! nothing a token holder needs. Offsets and sizes are decimal strings in LUKS2 (they
//! may exceed 2^53); small counts are JSON numbers. [`Metadata::to_json`] writes the same
//! shape cryptsetup writes.

use crate::error::MetadataError;
use crate::idmap::IdMap;
use crate::json::{Object, Value};
use verity::base64;

/// Most keyslots and tokens LUKS2 allows (cryptsetup's `LUKS2_KEYSLOTS_MAX`,
/// `LUKS2_TOKENS_MAX`).
pub const MAX_KEYSLOTS: u32 = 32;
pub const MAX_TOKENS: u32 = 32;

/// Hash functions for PBKDF2, the AF diffuser and the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "sha256",
            Hash::Sha512 => "sha512",
        }
    }

    pub fn from_name(s: &str) -> Option<Hash> {
        match s {
            "sha256" => Some(Hash::Sha256),
            "sha512" => Some(Hash::Sha512),
            _ => None,
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha512 => 64,
        }
    }
}

/// Argon2 variants LUKS2 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Type {
    Argon2i,
    Argon2id,
}

impl Argon2Type {
    /// The name in the metadata's `kdf.type`.
    pub fn name(self) -> &'static str {
        match self {
            Argon2Type::Argon2i => "argon2i",
            Argon2Type::Argon2id => "argon2id",
        }
    }
}

/// A keyslot's key derivation function (spec section 3.2, "kdf").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kdf {
    Pbkdf2 {
        hash: Hash,
        iterations: u32,
        salt: Vec<u8>,
    },
    Argon2 {
        kind: Argon2Type,
        /// Passes over memory (`time`).
        time: u32,
        /// KiB of memory (`memory`).
        memory: u32,
        /// Lanes (`cpus`).
        cpus: u32,
        salt: Vec<u8>,
    },
}

/// A keyslot of type `luks2` (spec section 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyslot {
    /// Bytes of the volume key the slot holds.
    pub key_size: usize,
    /// Where the AF-split, encrypted key material lies.
    pub area: Area,
    pub kdf: Kdf,
    /// Anti-forensic splitter (type `luks1`).
    pub af_stripes: u32,
    pub af_hash: Hash,
    /// `priority`, if written (0 ignore, 1 normal, 2 high).
    pub priority: Option<u64>,
}

/// A keyslot area of type `raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    /// Byte offset from the start of the device.
    pub offset: u64,
    /// Bytes reserved.
    pub size: u64,
    /// Cipher of the area (`aes-xts-plain64`).
    pub encryption: String,
    /// Bytes of the area's key (what the KDF makes).
    pub key_size: usize,
}

/// Length of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentSize {
    /// To the end of the device.
    Dynamic,
    Bytes(u64),
}

/// A segment of type `crypt` (spec section 3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Byte offset of the data from the start of the device.
    pub offset: u64,
    pub size: SegmentSize,
    /// The IV of the segment's first sector (`iv_tweak`).
    pub iv_tweak: u64,
    pub encryption: String,
    /// Encryption sector size: 512, 1024, 2048 or 4096.
    pub sector_size: u32,
    /// Segment flags, kept as written.
    pub flags: Vec<String>,
}

/// A digest of type `pbkdf2` (spec section 3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub keyslots: Vec<u32>,
    pub segments: Vec<u32>,
    pub hash: Hash,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub digest: Vec<u8>,
}

/// A token (spec section 3.5): any object with a `type` and a `keyslots` array, kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: String,
    pub keyslots: Vec<u32>,
    /// The whole object, `type` and `keyslots` included.
    pub object: Object,
}

/// The `config` object (spec section 3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bytes of the JSON area (header size minus 4096).
    pub json_size: u64,
    /// Bytes of the keyslots area, which starts after the second header copy.
    pub keyslots_size: u64,
    /// Persistent activation flags (`allow-discards`, ...).
    pub flags: Vec<String>,
    /// `requirements`, kept as written; a non-empty `mandatory` list is refused on read.
    pub requirements: Option<Value>,
    /// `label` and `subsystem` are in the binary header; anything else unknown is kept.
    pub rest: Object,
}

/// The whole JSON area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub keyslots: IdMap<Keyslot>,
    pub tokens: IdMap<Token>,
    pub segments: IdMap<Segment>,
    pub digests: IdMap<Digest>,
    pub config: Config,
}

type R<T> = Result<T, MetadataError>;

fn field<'a>(obj: &'a Object, path: &str, name: &str) -> R<&'a Value> {
    obj.get(name)
        .ok_or_else(|| MetadataError::new(format!("{path}.{name}"), "missing"))
}

fn object<'a>(v: &'a Value, path: &str) -> R<&'a Object> {
    v.as_object()
        .ok_or_else(|| MetadataError::new(path, "not an object"))
}

fn string<'a>(obj: &'a Object, path: &str, name: &str) -> R<&'a str> {
    field(obj, path, name)?
        .as_str()
        .ok_or_else(|| MetadataError::new(format!("{path}.{name}"), "not a string"))
}

/// A JSON number that fits `T`.
fn number<T: TryFrom<u64>>(obj: &Object, path: &str, name: &str) -> R<T> {
    field(obj, path, name)?
        .as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| MetadataError::new(format!("{path}.{name}"), "not an integer in range"))
}

/// A decimal string holding a u64 (offsets and sizes). Only plain digits, as cryptsetup
/// writes them.
fn decimal(obj: &Object, path: &str, name: &str) -> R<u64> {
    let s = string(obj, path, name)?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MetadataError::new(
            format!("{path}.{name}"),
            format!("{s:?} is not a decimal number"),
        ));
    }
    s.parse()
        .map_err(|_| MetadataError::new(format!("{path}.{name}"), "number out of range"))
}

fn b64(obj: &Object, path: &str, name: &str) -> R<Vec<u8>> {
    base64::decode(string(obj, path, name)?)
        .ok_or_else(|| MetadataError::new(format!("{path}.{name}"), "not base64"))
}

fn hash(obj: &Object, path: &str, name: &str) -> R<Hash> {
    let s = string(obj, path, name)?;
    Hash::from_name(s).ok_or_else(|| {
        MetadataError::new(
            format!("{path}.{name}"),
            format!("hash {s:?} is not supported (sha256, sha512)"),
        )
    })
}

/// An id: a decimal string key of `keyslots`, `segments`... below `max`.
fn id(s: &str, path: &str, max: u32) -> R<u32> {
    let bad = || {
        MetadataError::new(
            format!("{path}.{s}"),
            format!("{s:?} is not an id below {max}"),
        )
    };
    if s.is_empty() || s.len() > 1 && s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<u32>().ok().filter(|&n| n < max).ok_or_else(bad)
}

/// An array of id strings (`"keyslots": ["0", "1"]`).
fn ids(obj: &Object, path: &str, name: &str, max: u32) -> R<Vec<u32>> {
    let p = format!("{path}.{name}");
    let arr = field(obj, path, name)?
        .as_array()
        .ok_or_else(|| MetadataError::new(&p, "not an array"))?;
    let mut out = Vec::with_capacity(arr.len());
    for v in arr {
        let s = v
            .as_str()
            .ok_or_else(|| MetadataError::new(&p, "holds a non-string"))?;
        let n = id(s, &p, max)?;
        if out.contains(&n) {
            return Err(MetadataError::new(&p, format!("names {n} twice")));
        }
        out.push(n);
    }
    Ok(out)
}

fn strings(obj: &Object, path: &str, name: &str) -> R<Vec<String>> {
    let p = format!("{path}.{name}");
    match obj.get(name) {
        None => Ok(Vec::new()),
        Some(v) => v
            .as_array()
            .ok_or_else(|| MetadataError::new(&p, "not an array"))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| MetadataError::new(&p, "holds a non-string"))
            })
            .collect(),
    }
}

/// Iterates a section (`keyslots`...) as (id, object).
fn section<'a>(root: &'a Object, name: &str, max: u32) -> R<Vec<(u32, &'a Object)>> {
    let sec = object(field(root, "", name)?, name)?;
    let mut out = Vec::with_capacity(sec.len());
    for (k, v) in sec.iter() {
        let n = id(k, name, max)?;
        out.push((n, object(v, &format!("{name}.{k}"))?));
    }
    Ok(out)
}

/// Segment ids and digest ids in LUKS2 have no fixed maximum; this bound keeps the
/// maps small for any input.
const MAX_SEGMENTS: u32 = 32;
const MAX_DIGESTS: u32 = 32;

impl Metadata {
    /// Reads the typed metadata from the JSON area's value. `json_area` is the JSON area's
    /// size from the binary header, which `config.json_size` must equal.
    pub fn from_json(v: &Value, json_area: u64) -> R<Metadata> {
        let root = object(v, "(top)")?;
        let mut keyslots = IdMap::new();
        for (n, o) in section(root, "keyslots", MAX_KEYSLOTS)? {
            keyslots.insert(n, parse_keyslot(o, &format!("keyslots.{n}"))?);
        }
        let mut tokens = IdMap::new();
        for (n, o) in section(root, "tokens", MAX_TOKENS)? {
            let p = format!("tokens.{n}");
            tokens.insert(
                n,
                Token {
                    kind: string(o, &p, "type")?.to_owned(),
                    keyslots: ids(o, &p, "keyslots", MAX_KEYSLOTS)?,
                    object: o.clone(),
                },
            );
        }
        let mut segments = IdMap::new();
        for (n, o) in section(root, "segments", MAX_SEGMENTS)? {
            segments.insert(n, parse_segment(o, &format!("segments.{n}"))?);
        }
        let mut digests = IdMap::new();
        for (n, o) in section(root, "digests", MAX_DIGESTS)? {
            let p = format!("digests.{n}");
            let kind = string(o, &p, "type")?;
            if kind != "pbkdf2" {
                return Err(MetadataError::new(
                    format!("{p}.type"),
                    format!("digest type {kind:?} is not supported (pbkdf2)"),
                ));
            }
            digests.insert(
                n,
                Digest {
                    keyslots: ids(o, &p, "keyslots", MAX_KEYSLOTS)?,
                    segments: ids(o, &p, "segments", MAX_SEGMENTS)?,
                    hash: hash(o, &p, "hash")?,
                    iterations: number(o, &p, "iterations")?,
                    salt: b64(o, &p, "salt")?,
                    digest: b64(o, &p, "digest")?,
                },
            );
        }
        let config = parse_config(object(field(root, "", "config")?, "config")?)?;
        if config.json_size != json_area {
            return Err(MetadataError::new(
                "config.json_size",
                format!(
                    "{} does not match the {json_area}-byte JSON area of the binary header",
                    config.json_size
                ),
            ));
        }
        let md = Metadata {
            keyslots,
            tokens,
            segments,
            digests,
            config,
        };
        md.check_references()?;
        Ok(md)
    }

    /// Every id a digest or token names exists, and keyslot areas lie in the keyslots
    /// area without overlapping.
    fn check_references(&self) -> R<()> {
        for (n, d) in &self.digests {
            for k in &d.keyslots {
                if !self.keyslots.contains_key(k) {
                    return Err(MetadataError::new(
                        format!("digests.{n}.keyslots"),
                        format!("keyslot {k} does not exist"),
                    ));
                }
            }
            for s in &d.segments {
                if !self.segments.contains_key(s) {
                    return Err(MetadataError::new(
                        format!("digests.{n}.segments"),
                        format!("segment {s} does not exist"),
                    ));
                }
            }
        }
        for (n, t) in &self.tokens {
            for k in &t.keyslots {
                if !self.keyslots.contains_key(k) {
                    return Err(MetadataError::new(
                        format!("tokens.{n}.keyslots"),
                        format!("keyslot {k} does not exist"),
                    ));
                }
            }
        }
        let mut areas: Vec<(u64, u64, u32)> = Vec::new();
        for (n, k) in &self.keyslots {
            let end = k.area.offset.checked_add(k.area.size).ok_or_else(|| {
                MetadataError::new(format!("keyslots.{n}.area"), "offset + size overflows")
            })?;
            for &(o, e, m) in &areas {
                if k.area.offset < e && o < end {
                    return Err(MetadataError::new(
                        format!("keyslots.{n}.area"),
                        format!("overlaps the area of keyslot {m}"),
                    ));
                }
            }
            areas.push((k.area.offset, end, *n));
        }
        Ok(())
    }

    /// The metadata as the JSON value cryptsetup writes.
    pub fn to_json(&self) -> Value {
        let mut root = Object::new();
        let mut ks = Object::new();
        for (n, k) in &self.keyslots {
            ks.insert(n.to_string(), keyslot_json(k));
        }
        root.insert("keyslots", Value::Object(ks));
        let mut toks = Object::new();
        for (n, t) in &self.tokens {
            let mut o = t.object.clone();
            o.insert("type", Value::str(&t.kind));
            o.insert("keyslots", id_array(&t.keyslots));
            toks.insert(n.to_string(), Value::Object(o));
        }
        root.insert("tokens", Value::Object(toks));
        let mut segs = Object::new();
        for (n, s) in &self.segments {
            segs.insert(n.to_string(), segment_json(s));
        }
        root.insert("segments", Value::Object(segs));
        let mut digs = Object::new();
        for (n, d) in &self.digests {
            let mut o = Object::new();
            o.insert("type", Value::str("pbkdf2"));
            o.insert("keyslots", id_array(&d.keyslots));
            o.insert("segments", id_array(&d.segments));
            o.insert("hash", Value::str(d.hash.name()));
            o.insert("iterations", Value::int(u64::from(d.iterations)));
            o.insert("salt", Value::str(base64::encode(&d.salt)));
            o.insert("digest", Value::str(base64::encode(&d.digest)));
            digs.insert(n.to_string(), Value::Object(o));
        }
        root.insert("digests", Value::Object(digs));
        let c = &self.config;
        let mut cfg = c.rest.clone();
        cfg.insert("json_size", Value::str(c.json_size.to_string()));
        cfg.insert("keyslots_size", Value::str(c.keyslots_size.to_string()));
        if !c.flags.is_empty() {
            cfg.insert(
                "flags",
                Value::Array(c.flags.iter().map(Value::str).collect()),
            );
        }
        if let Some(r) = &c.requirements {
            cfg.insert("requirements", r.clone());
        }
        root.insert("config", Value::Object(cfg));
        Value::Object(root)
    }

    /// The digest that verifies keyslot `k`'s key.
    pub fn digest_of_keyslot(&self, k: u32) -> Option<(u32, &Digest)> {
        self.digests
            .iter()
            .find(|(_, d)| d.keyslots.contains(&k))
            .map(|(n, d)| (*n, d))
    }
}

fn id_array(ids: &[u32]) -> Value {
    Value::Array(ids.iter().map(|n| Value::str(n.to_string())).collect())
}

fn parse_keyslot(o: &Object, p: &str) -> R<Keyslot> {
    let kind = string(o, p, "type")?;
    if kind != "luks2" {
        return Err(MetadataError::new(
            format!("{p}.type"),
            format!("keyslot type {kind:?} is not supported (luks2)"),
        ));
    }
    let ap = format!("{p}.area");
    let area = object(field(o, p, "area")?, &ap)?;
    let area_type = string(area, &ap, "type")?;
    if area_type != "raw" {
        return Err(MetadataError::new(
            format!("{ap}.type"),
            format!("area type {area_type:?} is not supported (raw)"),
        ));
    }
    let kp = format!("{p}.kdf");
    let kdf_obj = object(field(o, p, "kdf")?, &kp)?;
    let kdf = match string(kdf_obj, &kp, "type")? {
        "pbkdf2" => Kdf::Pbkdf2 {
            hash: hash(kdf_obj, &kp, "hash")?,
            iterations: number(kdf_obj, &kp, "iterations")?,
            salt: b64(kdf_obj, &kp, "salt")?,
        },
        t @ ("argon2i" | "argon2id") => Kdf::Argon2 {
            kind: if t == "argon2i" {
                Argon2Type::Argon2i
            } else {
                Argon2Type::Argon2id
            },
            time: number(kdf_obj, &kp, "time")?,
            memory: number(kdf_obj, &kp, "memory")?,
            cpus: number(kdf_obj, &kp, "cpus")?,
            salt: b64(kdf_obj, &kp, "salt")?,
        },
        other => {
            return Err(MetadataError::new(
                format!("{kp}.type"),
                format!("kdf {other:?} is not supported (pbkdf2, argon2i, argon2id)"),
            ))
        }
    };
    let afp = format!("{p}.af");
    let af = object(field(o, p, "af")?, &afp)?;
    let af_type = string(af, &afp, "type")?;
    if af_type != "luks1" {
        return Err(MetadataError::new(
            format!("{afp}.type"),
            format!("af type {af_type:?} is not supported (luks1)"),
        ));
    }
    Ok(Keyslot {
        key_size: number(o, p, "key_size")?,
        area: Area {
            offset: decimal(area, &ap, "offset")?,
            size: decimal(area, &ap, "size")?,
            encryption: string(area, &ap, "encryption")?.to_owned(),
            key_size: number(area, &ap, "key_size")?,
        },
        kdf,
        af_stripes: number(af, &afp, "stripes")?,
        af_hash: hash(af, &afp, "hash")?,
        priority: match o.get("priority") {
            None => None,
            Some(_) => Some(number(o, p, "priority")?),
        },
    })
}

fn keyslot_json(k: &Keyslot) -> Value {
    let mut o = Object::new();
    o.insert("type", Value::str("luks2"));
    o.insert("key_size", Value::int(k.key_size as u64));
    let mut af = Object::new();
    af.insert("type", Value::str("luks1"));
    af.insert("stripes", Value::int(u64::from(k.af_stripes)));
    af.insert("hash", Value::str(k.af_hash.name()));
    o.insert("af", Value::Object(af));
    let mut area = Object::new();
    area.insert("type", Value::str("raw"));
    area.insert("offset", Value::str(k.area.offset.to_string()));
    area.insert("size", Value::str(k.area.size.to_string()));
    area.insert("encryption", Value::str(&k.area.encryption));
    area.insert("key_size", Value::int(k.area.key_size as u64));
    o.insert("area", Value::Object(area));
    let mut kdf = Object::new();
    match &k.kdf {
        Kdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => {
            kdf.insert("type", Value::str("pbkdf2"));
            kdf.insert("hash", Value::str(hash.name()));
            kdf.insert("iterations", Value::int(u64::from(*iterations)));
            kdf.insert("salt", Value::str(base64::encode(salt)));
        }
        Kdf::Argon2 {
            kind,
            time,
            memory,
            cpus,
            salt,
        } => {
            kdf.insert("type", Value::str(kind.name()));
            kdf.insert("time", Value::int(u64::from(*time)));
            kdf.insert("memory", Value::int(u64::from(*memory)));
            kdf.insert("cpus", Value::int(u64::from(*cpus)));
            kdf.insert("salt", Value::str(base64::encode(salt)));
        }
    }
    o.insert("kdf", Value::Object(kdf));
    if let Some(p) = k.priority {
        o.insert("priority", Value::int(p));
    }
    Value::Object(o)
}

fn parse_segment(o: &Object, p: &str) -> R<Segment> {
    let kind = string(o, p, "type")?;
    if kind != "crypt" {
        return Err(MetadataError::new(
            format!("{p}.type"),
            format!("segment type {kind:?} is not supported (crypt)"),
        ));
    }
    if o.get("integrity").is_some() {
        return Err(MetadataError::new(
            format!("{p}.integrity"),
            "authenticated encryption (dm-integrity) is not supported",
        ));
    }
    let size = match string(o, p, "size")? {
        "dynamic" => SegmentSize::Dynamic,
        _ => SegmentSize::Bytes(decimal(o, p, "size")?),
    };
    let sector_size: u32 = number(o, p, "sector_size")?;
    if !matches!(sector_size, 512 | 1024 | 2048 | 4096) {
        return Err(MetadataError::new(
            format!("{p}.sector_size"),
            format!("{sector_size} is not 512, 1024, 2048 or 4096"),
        ));
    }
    Ok(Segment {
        offset: decimal(o, p, "offset")?,
        size,
        iv_tweak: decimal(o, p, "iv_tweak")?,
        encryption: string(o, p, "encryption")?.to_owned(),
        sector_size,
        flags: strings(o, p, "flags")?,
    })
}

fn segment_json(s: &Segment) -> Value {
    let mut o = Object::new();
    o.insert("type", Value::str("crypt"));
    o.insert("offset", Value::str(s.offset.to_string()));
    o.insert(
        "size",
        Value::str(match s.size {
            SegmentSize::Dynamic => "dynamic".to_owned(),
            SegmentSize::Bytes(n) => n.to_string(),
        }),
    );
    o.insert("iv_tweak", Value::str(s.iv_tweak.to_string()));
    o.insert("encryption", Value::str(&s.encryption));
    o.insert("sector_size", Value::int(u64::from(s.sector_size)));
    if !s.flags.is_empty() {
        o.insert(
            "flags",
            Value::Array(s.flags.iter().map(Value::str).collect()),
        );
    }
    Value::Object(o)
}

fn parse_config(o: &Object) -> R<Config> {
    let p = "config";
    let requirements = o.get("requirements").cloned();
    if let Some(req) = &requirements {
        let mandatory = req
            .as_object()
            .and_then(|r| r.get("mandatory"))
            .and_then(Value::as_array)
            .unwrap_or_default();
        if !mandatory.is_empty() {
            return Err(MetadataError::new(
                "config.requirements.mandatory",
                format!(
                    "the device requires {} (online reencryption or another feature this crate does not implement)",
                    Value::Array(mandatory.to_vec()).to_text()
                ),
            ));
        }
    }
    let mut rest = o.clone();
    for known in ["json_size", "keyslots_size", "flags", "requirements"] {
        rest.remove(known);
    }
    Ok(Config {
        json_size: decimal(o, p, "json_size")?,
        keyslots_size: decimal(o, p, "keyslots_size")?,
        flags: strings(o, p, "flags")?,
        requirements,
        rest,
    })
}
