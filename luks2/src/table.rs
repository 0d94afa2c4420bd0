//! The dm-crypt table of the data segment: the line cryptsetup loads when it opens the
//! volume (`cryptsetup open --disable-keyring`, so the key is in the table as hex rather
//! than a reference to the kernel keyring).
//!
//! ```text
//! <start> <length> crypt <cipher> <key hex> <iv_offset> <device> <offset> [<#opts> <opts>...]
//! 0 <(device size - segment offset) / 512> crypt aes-xts-plain64 <key> <iv_tweak> <dev> <segment offset / 512>
//! ```
//!
//! Lengths and offsets are in 512-byte sectors whatever the encryption sector size; a
//! sector size other than 512 adds the option `sector_size:<n>`. The IV counts 512-byte
//! sectors (LUKS2 never sets `iv_large_sectors`). Persistent flags from `config.flags`
//! become options in the kernel's order (Documentation/admin-guide/device-mapper/dm-crypt.rst).

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::VolumeKey;
use crate::error::Error;
use crate::metadata::{Segment, SegmentSize};

/// A dm-crypt target for one segment. `Debug` hides the key.
#[derive(Clone)]
pub struct CryptTable {
    /// Sectors (512 bytes) of the mapped device.
    pub length: u64,
    pub cipher: String,
    key: VolumeKey,
    /// IV of the first sector (the segment's `iv_tweak`).
    pub iv_offset: u64,
    /// The data device as the kernel should find it: a path or `major:minor`.
    pub device: String,
    /// Where the data starts on the device, in 512-byte sectors.
    pub offset: u64,
    /// Optional parameters, in order.
    pub options: Vec<String>,
}

impl fmt::Debug for CryptTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptTable")
            .field("length", &self.length)
            .field("cipher", &self.cipher)
            .field("key", &self.key)
            .field("iv_offset", &self.iv_offset)
            .field("device", &self.device)
            .field("offset", &self.offset)
            .field("options", &self.options)
            .finish()
    }
}

/// `config.flags` (cryptsetup's persistent activation flags) and the option each becomes,
/// in the order the kernel reports them.
const FLAG_OPTIONS: [(&str, &str); 5] = [
    ("allow-discards", "allow_discards"),
    ("same-cpu-crypt", "same_cpu_crypt"),
    ("submit-from-crypt-cpus", "submit_from_crypt_cpus"),
    ("no-read-workqueue", "no_read_workqueue"),
    ("no-write-workqueue", "no_write_workqueue"),
];

impl CryptTable {
    /// The table for `segment` on a device of `device_size` bytes reached as `device`.
    /// Unknown persistent flags are refused rather than silently dropped.
    pub fn new(
        segment: &Segment,
        config_flags: &[String],
        key: &VolumeKey,
        device: &str,
        device_size: u64,
    ) -> Result<CryptTable, Error> {
        let geometry = |problem: String| Error::Geometry {
            size: device_size,
            problem,
        };
        let bytes = match segment.size {
            SegmentSize::Dynamic => device_size.checked_sub(segment.offset).ok_or_else(|| {
                geometry(format!("smaller than the data offset {}", segment.offset))
            })?,
            SegmentSize::Bytes(n) => {
                let end = segment.offset.saturating_add(n);
                if end > device_size {
                    return Err(geometry(format!(
                        "segment of {n} bytes at {} runs past the end",
                        segment.offset
                    )));
                }
                n
            }
        };
        let sector = u64::from(segment.sector_size);
        if bytes == 0 || !bytes.is_multiple_of(sector) || !segment.offset.is_multiple_of(512) {
            return Err(geometry(format!(
                "{bytes} bytes of data at {} are not whole {sector}-byte sectors",
                segment.offset
            )));
        }
        let mut options = Vec::new();
        for flag in config_flags {
            match FLAG_OPTIONS.iter().find(|(f, _)| f == flag) {
                Some((_, opt)) => options.push((*opt).to_owned()),
                None => {
                    return Err(Error::Unsupported {
                        what: "persistent flag",
                        detail: flag.clone(),
                    })
                }
            }
        }
        options.sort_by_key(|o| FLAG_OPTIONS.iter().position(|(_, x)| x == o));
        if segment.sector_size != 512 {
            options.push(format!("sector_size:{}", segment.sector_size));
        }
        Ok(CryptTable {
            length: bytes / 512,
            cipher: segment.encryption.clone(),
            key: key.clone(),
            iv_offset: segment.iv_tweak,
            device: device.to_owned(),
            offset: segment.offset / 512,
            options,
        })
    }

    /// The target parameters (everything after `crypt`), holding the key: zeroed on drop.
    pub fn params(&self) -> Zeroizing<String> {
        // Not `join`: its copying code is about 1 KiB of PID 1 per element type.
        let mut opts = String::new();
        if !self.options.is_empty() {
            opts = format!(" {}", self.options.len());
            for option in &self.options {
                opts.push(' ');
                opts.push_str(option);
            }
        }
        let tail = format!(" {} {} {}{opts}", self.iv_offset, self.device, self.offset);
        let mut s = Zeroizing::new(String::with_capacity(
            self.cipher.len() + 1 + self.key.len() * 2 + tail.len(),
        ));
        s.push_str(&self.cipher);
        s.push(' ');
        verity::hex::encode_into(&mut s, self.key.as_bytes());
        s.push_str(&tail);
        s
    }

    /// The whole line as `dmsetup table --showkeys` prints it.
    pub fn line(&self) -> Zeroizing<String> {
        let params = self.params();
        let mut s = Zeroizing::new(String::with_capacity(params.len() + 32));
        s.push_str(&format!("0 {} crypt ", self.length));
        s.push_str(&params);
        s
    }

    /// The target for the `dm` crate. Its `params` string holds the key; drop the target
    /// as soon as it is loaded (the `dm` crate zeroes its ioctl buffer).
    pub fn target(&self) -> dm::Target {
        dm::Target {
            start: 0,
            length: self.length,
            target_type: "crypt".to_owned(),
            params: self.params().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(sector_size: u32, size: SegmentSize) -> Segment {
        Segment {
            offset: 16 << 20,
            size,
            iv_tweak: 0,
            encryption: "aes-xts-plain64".into(),
            sector_size,
            flags: vec![],
        }
    }

    #[test]
    fn lines_for_512_and_4096_sectors() {
        let key = VolumeKey::from_bytes(&[0x11; 64]);
        let t = CryptTable::new(
            &segment(512, SegmentSize::Dynamic),
            &[],
            &key,
            "/dev/vda9",
            64 << 20,
        )
        .unwrap();
        assert_eq!(
            t.line().as_str(),
            format!(
                "0 98304 crypt aes-xts-plain64 {} 0 /dev/vda9 32768",
                "11".repeat(64)
            )
        );
        let t = CryptTable::new(
            &segment(4096, SegmentSize::Dynamic),
            &[],
            &key,
            "7:0",
            64 << 20,
        )
        .unwrap();
        assert_eq!(
            t.params().as_str(),
            format!(
                "aes-xts-plain64 {} 0 7:0 32768 1 sector_size:4096",
                "11".repeat(64)
            )
        );
        assert_eq!(t.target().length, 98304);
        assert!(!format!("{t:?}").contains("1111"));
    }

    #[test]
    fn flags_become_options_in_kernel_order() {
        let key = VolumeKey::from_bytes(&[0; 64]);
        let flags = vec!["no-write-workqueue".to_owned(), "allow-discards".to_owned()];
        let t = CryptTable::new(
            &segment(4096, SegmentSize::Dynamic),
            &flags,
            &key,
            "d",
            32 << 20,
        )
        .unwrap();
        assert_eq!(
            t.options,
            ["allow_discards", "no_write_workqueue", "sector_size:4096"]
        );
        let bad = vec!["frobnicate".to_owned()];
        assert!(matches!(
            CryptTable::new(
                &segment(512, SegmentSize::Dynamic),
                &bad,
                &key,
                "d",
                32 << 20
            ),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn geometry_is_checked() {
        let key = VolumeKey::from_bytes(&[0; 64]);
        let dynamic = segment(4096, SegmentSize::Dynamic);
        for size in [8 << 20, 16 << 20, (32 << 20) + 512] {
            assert!(matches!(
                CryptTable::new(&dynamic, &[], &key, "d", size),
                Err(Error::Geometry { .. })
            ));
        }
        let fixed = segment(512, SegmentSize::Bytes(1 << 20));
        assert_eq!(
            CryptTable::new(&fixed, &[], &key, "d", 32 << 20)
                .unwrap()
                .length,
            2048
        );
        assert!(CryptTable::new(&fixed, &[], &key, "d", (16 << 20) + 4096).is_err());
    }
}
