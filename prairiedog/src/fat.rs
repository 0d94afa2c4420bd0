//! Finding a file's bytes inside a FAT12/16/32 file system, to rewrite grubenv on the ESP in
//! place without mounting it, the way GRUB's `save_env` does: GRUB asks its FAT driver which
//! disk sectors hold the file and overwrites those sectors; no allocation, no directory update.
//!
//! # What is read
//!
//! - Boot sector (BPB): bytes per sector (11), sectors per cluster (13), reserved sectors (14),
//!   FAT count (16), root entries (17), total sectors (19 or 32), FAT size (22 or 36), FAT32
//!   root cluster (44). The FAT type follows from the cluster count (< 4085: FAT12,
//!   < 65525: FAT16, else FAT32), as the specification says.
//! - Directories: 32-byte entries; a first byte of 0 ends the directory, 0xE5 is deleted;
//!   long-name entries (attribute 0x0F) and the volume label are skipped; names are matched
//!   on the 8.3 short name, case-insensitively. FAT12/16 roots are a fixed region, FAT32 roots
//!   and all subdirectories a cluster chain.
//! - The file's cluster chain, bounded by the cluster count (a loop is an error).
//!
//! Only names that fit 8.3 are supported (`grubenv`, `EFI/BOOT/grubenv`).

use crate::disk::Region;
use gpt::BlockIo;

/// A failure locating or rewriting a file.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// Reading the file system.
    #[error("reading the FAT file system at byte {offset}: {source}")]
    Read {
        /// Byte offset on the disk.
        offset: u64,
        /// The cause.
        source: std::io::Error,
    },
    /// The boot sector does not describe a FAT file system.
    #[error("not a FAT file system: {0}")]
    NotFat(&'static str),
    /// A path component that is not an 8.3 name.
    #[error("{0:?} is not an 8.3 name")]
    NotShortName(String),
    /// A path component not found.
    #[error("{0} not found on the FAT file system")]
    NotFound(String),
    /// A path component that is a directory where a file was expected, or the reverse.
    #[error("{0} is not a {1}")]
    WrongKind(String, &'static str),
    /// A cluster chain that is broken, loops or is too short for the file.
    #[error("cluster chain of {path} is broken at cluster {cluster}")]
    Chain {
        /// The file or directory.
        path: String,
        /// The cluster where it broke.
        cluster: u32,
    },
    /// The new contents have another size than the file.
    #[error("{path} is {size} bytes, refusing to write {len} bytes in place")]
    Size {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The length given.
        len: usize,
    },
    /// Writing the file's sectors.
    #[error("writing {path} in place: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

#[derive(Debug, Clone, Copy)]
struct Geometry {
    cluster_bytes: u64,
    fat_offset: u64,
    root_offset: u64,
    root_bytes: u64,
    data_offset: u64,
    clusters: u32,
    root_cluster: u32,
    kind: Kind,
}

fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |s| {
        u16::from_le_bytes([
            s.first().copied().unwrap_or(0),
            s.get(1).copied().unwrap_or(0),
        ])
    })
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from(le16(b, at)) | (u32::from(le16(b, at + 2)) << 16)
}

fn read<D: BlockIo + ?Sized>(disk: &D, offset: u64, len: u64) -> Result<Vec<u8>, FatError> {
    let len = usize::try_from(len).map_err(|_| FatError::NotFat("region too large"))?;
    let mut buf = vec![0u8; len];
    disk.read_at(offset, &mut buf)
        .map_err(|source| FatError::Read { offset, source })?;
    Ok(buf)
}

impl Geometry {
    fn read<D: BlockIo + ?Sized>(disk: &D, part: Region) -> Result<Geometry, FatError> {
        let bs = read(disk, part.offset, 512)?;
        if bs.get(510..512) != Some(&[0x55, 0xaa][..]) {
            return Err(FatError::NotFat("no boot sector signature"));
        }
        let sector = u64::from(le16(&bs, 11));
        let spc = u64::from(bs.get(13).copied().unwrap_or(0));
        let reserved = u64::from(le16(&bs, 14));
        let fats = u64::from(bs.get(16).copied().unwrap_or(0));
        let root_entries = u64::from(le16(&bs, 17));
        let total = match le16(&bs, 19) {
            0 => u64::from(le32(&bs, 32)),
            n => u64::from(n),
        };
        let fat_size = match le16(&bs, 22) {
            0 => u64::from(le32(&bs, 36)),
            n => u64::from(n),
        };
        if !(512..=4096).contains(&sector) || !sector.is_power_of_two() {
            return Err(FatError::NotFat("bad bytes per sector"));
        }
        if spc == 0 || !spc.is_power_of_two() || fats == 0 || fat_size == 0 || reserved == 0 {
            return Err(FatError::NotFat("bad BPB"));
        }
        let root_sectors = (root_entries * 32).div_ceil(sector);
        let first_data = reserved + fats * fat_size + root_sectors;
        let data_sectors = total
            .checked_sub(first_data)
            .ok_or(FatError::NotFat("no data area"))?;
        if total * sector > part.len {
            return Err(FatError::NotFat("larger than its partition"));
        }
        let clusters =
            u32::try_from(data_sectors / spc).map_err(|_| FatError::NotFat("too many clusters"))?;
        let kind = if clusters < 4085 {
            Kind::Fat12
        } else if clusters < 65525 {
            Kind::Fat16
        } else {
            Kind::Fat32
        };
        Ok(Geometry {
            cluster_bytes: spc * sector,
            fat_offset: part.offset + reserved * sector,
            root_offset: part.offset + (reserved + fats * fat_size) * sector,
            root_bytes: root_sectors * sector,
            data_offset: part.offset + first_data * sector,
            clusters,
            root_cluster: if kind == Kind::Fat32 {
                le32(&bs, 44)
            } else {
                0
            },
            kind,
        })
    }

    fn next<D: BlockIo + ?Sized>(&self, disk: &D, cluster: u32) -> Result<Option<u32>, FatError> {
        let c = u64::from(cluster);
        let (value, end) = match self.kind {
            Kind::Fat12 => {
                let b = read(disk, self.fat_offset + c + c / 2, 2)?;
                let v = u32::from(le16(&b, 0));
                (if cluster % 2 == 1 { v >> 4 } else { v & 0xfff }, 0xff8)
            }
            Kind::Fat16 => (
                u32::from(le16(&read(disk, self.fat_offset + 2 * c, 2)?, 0)),
                0xfff8,
            ),
            Kind::Fat32 => (
                le32(&read(disk, self.fat_offset + 4 * c, 4)?, 0) & 0x0fff_ffff,
                0x0fff_fff8,
            ),
        };
        Ok((value < end).then_some(value))
    }

    fn in_range(&self, cluster: u32) -> bool {
        cluster >= 2 && cluster - 2 < self.clusters
    }

    /// Byte extents of the chain starting at `first`, merged when contiguous.
    fn chain<D: BlockIo + ?Sized>(
        &self,
        disk: &D,
        first: u32,
        path: &str,
    ) -> Result<Vec<Region>, FatError> {
        let mut extents: Vec<Region> = Vec::new();
        let mut cluster = first;
        let broken = |cluster| FatError::Chain {
            path: path.to_owned(),
            cluster,
        };
        for _ in 0..=self.clusters {
            if !self.in_range(cluster) {
                return Err(broken(cluster));
            }
            let offset = self.data_offset + u64::from(cluster - 2) * self.cluster_bytes;
            match extents.last_mut() {
                Some(last) if last.offset + last.len == offset => last.len += self.cluster_bytes,
                _ => extents.push(Region {
                    offset,
                    len: self.cluster_bytes,
                }),
            }
            match self.next(disk, cluster)? {
                Some(next) => cluster = next,
                None => return Ok(extents),
            }
        }
        Err(broken(cluster))
    }
}

fn short_name(component: &str) -> Result<[u8; 11], FatError> {
    let bad = || FatError::NotShortName(component.to_owned());
    let (base, ext) = component.split_once('.').unwrap_or((component, ""));
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || ext.contains('.') {
        return Err(bad());
    }
    let mut out = [b' '; 11];
    for (i, c) in base.bytes().enumerate() {
        *out.get_mut(i).ok_or_else(bad)? = c.to_ascii_uppercase();
    }
    for (i, c) in ext.bytes().enumerate() {
        *out.get_mut(8 + i).ok_or_else(bad)? = c.to_ascii_uppercase();
    }
    if out
        .iter()
        .any(|&c| c < 0x20 || b"\"*+,/:;<=>?[\\]|".contains(&c))
    {
        return Err(bad());
    }
    Ok(out)
}

/// A located file: where its bytes are on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatFile {
    /// The path it was found at.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Disk byte ranges holding it, in file order (clusters; the last may extend past `size`).
    pub extents: Vec<Region>,
}

/// Finds `path` (`/`-separated 8.3 names) in the FAT file system of `partition`.
pub fn locate<D: BlockIo + ?Sized>(
    disk: &D,
    partition: Region,
    path: &str,
) -> Result<FatFile, FatError> {
    let g = Geometry::read(disk, partition)?;
    // The directory being searched: its extents.
    let mut dir: Vec<Region> = match g.kind {
        Kind::Fat32 => g.chain(disk, g.root_cluster, "/")?,
        _ => vec![Region {
            offset: g.root_offset,
            len: g.root_bytes,
        }],
    };
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut walked = String::new();
    for (i, component) in components.iter().enumerate() {
        walked.push('/');
        walked.push_str(component);
        let want = short_name(component)?;
        let last = i + 1 == components.len();
        let mut found = None;
        'search: for extent in &dir {
            let bytes = read(disk, extent.offset, extent.len)?;
            for entry in bytes.chunks_exact(32) {
                match entry.first() {
                    Some(0) => break 'search,
                    Some(0xe5) | None => continue,
                    _ => {}
                }
                let attr = entry.get(11).copied().unwrap_or(0);
                if attr & 0x0f == 0x0f || attr & 0x08 != 0 {
                    continue;
                }
                if entry.get(..11) == Some(&want[..]) {
                    found = Some((
                        attr,
                        (u32::from(le16(entry, 20)) << 16) | u32::from(le16(entry, 26)),
                        le32(entry, 28),
                    ));
                    break 'search;
                }
            }
        }
        let (attr, first, size) = found.ok_or_else(|| FatError::NotFound(walked.clone()))?;
        let is_dir = attr & 0x10 != 0;
        let first = if g.kind == Kind::Fat32 {
            first
        } else {
            first & 0xffff
        };
        if last {
            if is_dir {
                return Err(FatError::WrongKind(walked, "file"));
            }
            let extents = if size == 0 {
                Vec::new()
            } else {
                g.chain(disk, first, &walked)?
            };
            let held: u64 = extents.iter().map(|e| e.len).sum();
            if held < u64::from(size) {
                return Err(FatError::Chain {
                    path: walked,
                    cluster: first,
                });
            }
            return Ok(FatFile {
                path: walked,
                size: u64::from(size),
                extents,
            });
        }
        if !is_dir {
            return Err(FatError::WrongKind(walked, "directory"));
        }
        dir = g.chain(disk, first, &walked)?;
    }
    Err(FatError::NotFound(path.to_owned()))
}

/// Ranges of `file` covering its `size` bytes: (disk offset, offset in file, length).
fn spans(file: &FatFile) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for e in &file.extents {
        if at >= file.size {
            break;
        }
        let len = e.len.min(file.size - at);
        out.push((e.offset, at, len));
        at += len;
    }
    out
}

/// Reads a located file.
pub fn read_file<D: BlockIo + ?Sized>(disk: &D, file: &FatFile) -> Result<Vec<u8>, FatError> {
    let mut out = Vec::new();
    for (offset, _, len) in spans(file) {
        out.extend(read(disk, offset, len)?);
    }
    Ok(out)
}

/// Overwrites a located file's bytes in place (same size, same sectors) and syncs.
pub fn write_in_place<D: BlockIo + ?Sized>(
    disk: &mut D,
    file: &FatFile,
    bytes: &[u8],
) -> Result<(), FatError> {
    if bytes.len() as u64 != file.size {
        return Err(FatError::Size {
            path: file.path.clone(),
            size: file.size,
            len: bytes.len(),
        });
    }
    let werr = |source| FatError::Write {
        path: file.path.clone(),
        source,
    };
    for (offset, at, len) in spans(file) {
        let (from, to) = (at as usize, (at + len) as usize);
        let chunk = bytes.get(from..to).unwrap_or_default();
        disk.write_at(offset, chunk).map_err(werr)?;
    }
    disk.sync().map_err(werr)
}
