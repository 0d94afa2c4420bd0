//! The protective MBR in LBA 0.
//!
//! A GPT disk carries a legacy MBR whose one partition record of type 0xEE covers the
//! disk from LBA 1, so MBR-only tools see a full disk. Only the first 512 bytes of LBA 0
//! are the MBR, whatever the sector size; sizes in it count logical sectors. The size field
//! is 32 bits: a disk with more than 2^32 sectors gets 0xFFFFFFFF. CHS fields use the
//! 255-head, 63-sector geometry and 0xFFFFFF past cylinder 1023, as sgdisk writes them.
//! A hybrid MBR (0xEE plus other records) is reported, never changed.

use std::path::Path;

use crate::io::BlockIo;
use crate::Error;

/// Byte offset of the first of the four partition records.
const RECORDS: usize = 446;
/// The protective partition type.
pub const TYPE_PROTECTIVE: u8 = 0xEE;

/// What LBA 0 holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MbrKind {
    /// One 0xEE record starting at LBA 1, the other records empty.
    Protective {
        /// Its size field, in logical sectors.
        size: u32,
    },
    /// A 0xEE record plus other records.
    Hybrid,
    /// No 0x55AA signature or no 0xEE record.
    Missing,
}

/// The 512 bytes of the MBR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectiveMbr {
    raw: [u8; 512],
}

impl ProtectiveMbr {
    /// Reads LBA 0.
    pub fn read<D: BlockIo + ?Sized>(disk: &D, device: &Path) -> Result<ProtectiveMbr, Error> {
        let mut raw = [0u8; 512];
        disk.read_at(0, &mut raw).map_err(|source| Error::Io {
            device: device.to_path_buf(),
            what: "reading the protective MBR",
            source,
        })?;
        Ok(ProtectiveMbr { raw })
    }

    /// From the raw 512 bytes.
    pub fn from_bytes(raw: [u8; 512]) -> ProtectiveMbr {
        ProtectiveMbr { raw }
    }

    /// The protective MBR of a blank disk of `disk_sectors` logical sectors, as `sgdisk
    /// --clear` writes it: no boot code, disk signature 0, one 0xEE record from LBA 1 (start
    /// CHS 0/0/2) covering the disk ([`ProtectiveMbr::fit_to_disk`]), the 0x55AA signature.
    pub fn new(disk_sectors: u64) -> ProtectiveMbr {
        let mut raw = [0u8; 512];
        if let Some(r) = raw.get_mut(RECORDS..RECORDS + 16) {
            r.copy_from_slice(&[0, 0, 2, 0, TYPE_PROTECTIVE, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        }
        if let Some(sig) = raw.get_mut(510..512) {
            sig.copy_from_slice(&[0x55, 0xAA]);
        }
        let mut mbr = ProtectiveMbr { raw };
        mbr.fit_to_disk(disk_sectors);
        mbr
    }

    /// The raw 512 bytes.
    pub fn as_bytes(&self) -> &[u8; 512] {
        &self.raw
    }

    fn record(&self, i: usize) -> Option<&[u8]> {
        let start = RECORDS.checked_add(i.checked_mul(16)?)?;
        self.raw.get(start..start.checked_add(16)?)
    }

    /// Classifies LBA 0.
    pub fn kind(&self) -> MbrKind {
        if self.raw.get(510..512) != Some(&[0x55, 0xAA][..]) {
            return MbrKind::Missing;
        }
        let mut protective = None;
        let mut others = 0;
        for i in 0..4 {
            let Some(r) = self.record(i) else {
                return MbrKind::Missing;
            };
            let ty = r.get(4).copied().unwrap_or(0);
            let start = crate::le::u32_at(r, 8).unwrap_or(0);
            let size = crate::le::u32_at(r, 12).unwrap_or(0);
            if ty == TYPE_PROTECTIVE && start == 1 && protective.is_none() {
                protective = Some(size);
            } else if ty != 0 {
                others += 1;
            }
        }
        match (protective, others) {
            (Some(size), 0) => MbrKind::Protective { size },
            (Some(_), _) => MbrKind::Hybrid,
            (None, _) => MbrKind::Missing,
        }
    }

    /// Makes a protective MBR cover a disk of `disk_sectors` logical sectors: size field
    /// `min(disk_sectors - 1, 0xFFFFFFFF)` and the matching end CHS. Returns whether
    /// anything changed; a hybrid or missing MBR is left alone (returns false). Does not
    /// write to the disk.
    pub fn fit_to_disk(&mut self, disk_sectors: u64) -> bool {
        let MbrKind::Protective { .. } = self.kind() else {
            return false;
        };
        let size = u32::try_from(disk_sectors.saturating_sub(1)).unwrap_or(u32::MAX);
        let end_lba = u64::from(size); // start is LBA 1, so the last LBA equals the size
        let chs = lba_to_chs(end_lba);
        let Some(i) =
            (0..4).find(|&i| self.record(i).and_then(|r| r.get(4)) == Some(&TYPE_PROTECTIVE))
        else {
            return false;
        };
        let before = self.raw;
        let base = RECORDS + i * 16;
        if let Some(f) = self.raw.get_mut(base + 5..base + 8) {
            f.copy_from_slice(&chs);
        }
        if let Some(f) = self.raw.get_mut(base + 12..base + 16) {
            f.copy_from_slice(&size.to_le_bytes());
        }
        self.raw != before
    }

    /// Writes LBA 0's first 512 bytes and syncs.
    pub fn write<D: BlockIo + ?Sized>(&self, disk: &mut D, device: &Path) -> Result<(), Error> {
        let err = |what| {
            move |source| Error::Io {
                device: device.to_path_buf(),
                what,
                source,
            }
        };
        disk.write_at(0, &self.raw)
            .map_err(err("writing the protective MBR"))?;
        disk.sync().map_err(err("syncing"))
    }
}

/// CHS bytes (head, sector | cylinder high bits, cylinder low byte) of `lba` with 255
/// heads and 63 sectors per track; all 0xFF past cylinder 1023.
fn lba_to_chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cyl = lba / (HEADS * SECTORS);
    if cyl > 1023 {
        return [0xFF; 3];
    }
    let rem = lba % (HEADS * SECTORS);
    let head = rem / SECTORS;
    let sector = rem % SECTORS + 1;
    [
        head as u8,
        (sector as u8) | (((cyl >> 2) as u8) & 0xC0),
        cyl as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_matches_sgdisk() {
        // (last LBA, bytes sgdisk 1.0.9 writes), from `sgdisk -o` on sparse files.
        let cases = [
            (131_071u64, [0x28, 0x20, 0x08]),
            (262_143, [0x51, 0x01, 0x10]),
            (16_434_495, [0x00, 0xC1, 0xFF]),
            (16_434_496, [0x00, 0xC2, 0xFF]),
            (16_450_559, [0xFE, 0xFF, 0xFF]),
            (16_450_560, [0xFF, 0xFF, 0xFF]),
            (u64::from(u32::MAX), [0xFF, 0xFF, 0xFF]),
        ];
        for (lba, want) in cases {
            assert_eq!(lba_to_chs(lba), want, "LBA {lba}");
        }
    }

    #[test]
    fn new_is_protective_and_fits() {
        let m = ProtectiveMbr::new(262_144);
        assert_eq!(m.kind(), MbrKind::Protective { size: 262_143 });
        assert_eq!(m.as_bytes()[446..450], [0, 0, 2, 0]);
        assert_eq!(m.as_bytes()[451..454], lba_to_chs(262_143));
        assert!(m.as_bytes()[..446].iter().all(|b| *b == 0));
    }

    #[test]
    fn kinds_and_fit() {
        let mut raw = [0u8; 512];
        raw[510] = 0x55;
        raw[511] = 0xAA;
        raw[446 + 4] = 0xEE;
        raw[446 + 8] = 1;
        let mut m = ProtectiveMbr::from_bytes(raw);
        assert_eq!(m.kind(), MbrKind::Protective { size: 0 });
        assert!(m.fit_to_disk(262_144));
        assert_eq!(m.kind(), MbrKind::Protective { size: 262_143 });
        assert!(!m.fit_to_disk(262_144));
        assert!(m.fit_to_disk(1 << 40));
        assert_eq!(m.kind(), MbrKind::Protective { size: u32::MAX });

        let mut hybrid = raw;
        hybrid[462 + 4] = 0x0C;
        let mut h = ProtectiveMbr::from_bytes(hybrid);
        assert_eq!(h.kind(), MbrKind::Hybrid);
        assert!(!h.fit_to_disk(262_144));

        let mut none = raw;
        none[511] = 0;
        assert_eq!(ProtectiveMbr::from_bytes(none).kind(), MbrKind::Missing);
    }
}
