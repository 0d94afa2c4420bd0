//! The dm-verity table line and the kernel's `dm-mod.create=` parameter.
//!
//! A verity target's parameters (Documentation/admin-guide/device-mapper/verity.rst):
//!
//! ```text
//! <version> <data_dev> <hash_dev> <data_block_size> <hash_block_size>
//! <num_data_blocks> <hash_start_block> <algorithm> <root_digest> <salt>
//! [<#opt_params> <opt_params>]
//! ```
//!
//! `hash_start_block` counts hash blocks from the start of the hash device to the tree
//! (the superblock is skipped). Devices are paths (`/dev/vda4`) or `major:minor`.

use crate::geometry::Geometry;
use crate::params::{Params, RootHash};

/// What the kernel does when a block does not match its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorMode {
    /// Return EIO to the reader (the kernel's default; no option).
    Eio,
    /// `restart_on_corruption`: reboot the machine (Liftoff's default: fail closed, then
    /// the A/B crash-loop counter decides).
    #[default]
    Restart,
    /// `panic_on_corruption`: panic the kernel.
    Panic,
}

impl std::str::FromStr for ErrorMode {
    type Err = String;

    /// Parses `restart`, `panic` or `eio` (the values of `liftoff.verity=`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "eio" => Ok(Self::Eio),
            "restart" => Ok(Self::Restart),
            "panic" => Ok(Self::Panic),
            other => Err(format!(
                "unknown verity error mode {other:?} (expected restart, panic or eio)"
            )),
        }
    }
}

/// Optional parameters of the verity target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableOptions {
    /// Reaction to a corrupt block.
    pub error_mode: ErrorMode,
    /// `ignore_zero_blocks`: blocks whose hash is the hash of zeros read as zeros without
    /// being read.
    pub ignore_zero_blocks: bool,
    /// `check_at_most_once`: verify each data block only the first time it is read.
    pub check_at_most_once: bool,
}

impl TableOptions {
    /// The option words, in the order the kernel documents them.
    pub fn words(&self) -> Vec<&'static str> {
        let mut words = Vec::new();
        match self.error_mode {
            ErrorMode::Eio => {}
            ErrorMode::Restart => words.push("restart_on_corruption"),
            ErrorMode::Panic => words.push("panic_on_corruption"),
        }
        if self.ignore_zero_blocks {
            words.push("ignore_zero_blocks");
        }
        if self.check_at_most_once {
            words.push("check_at_most_once");
        }
        words
    }
}

/// A complete verity target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityTable {
    /// Data device, as a path or `major:minor`.
    pub data_device: String,
    /// Hash device, as a path or `major:minor`.
    pub hash_device: String,
    /// Tree parameters (from the superblock or the command line).
    pub params: Params,
    /// First tree block on the hash device, in hash blocks.
    pub hash_start_block: u64,
    /// The trusted root hash.
    pub root_hash: RootHash,
    /// Optional parameters.
    pub options: TableOptions,
}

impl VerityTable {
    /// A table for a tree of `params` placed as `geometry` says.
    pub fn new(
        data_device: impl Into<String>,
        hash_device: impl Into<String>,
        params: &Params,
        geometry: &Geometry,
        root_hash: &RootHash,
        options: TableOptions,
    ) -> Self {
        Self {
            data_device: data_device.into(),
            hash_device: hash_device.into(),
            params: params.clone(),
            hash_start_block: geometry.hash_start_block(params),
            root_hash: root_hash.clone(),
            options,
        }
    }

    /// Length of the mapped device in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.params.data_sectors()
    }

    /// The target parameters (everything after `verity`).
    pub fn params_string(&self) -> String {
        let p = &self.params;
        let mut s = format!(
            "{} {} {} {} {} {} {} {} {} {}",
            p.hash_type.number(),
            self.data_device,
            self.hash_device,
            p.data_block_size,
            p.hash_block_size,
            p.data_blocks,
            self.hash_start_block,
            p.algorithm,
            self.root_hash,
            p.salt,
        );
        let words = self.options.words();
        if !words.is_empty() {
            // Not `join`: its copying code is about 1 KiB of PID 1 per element type.
            s.push_str(&format!(" {}", words.len()));
            for word in words {
                s.push(' ');
                s.push_str(word);
            }
        }
        s
    }

    /// The table line as `dmsetup create --table` takes it: `0 <sectors> verity <params>`.
    pub fn line(&self) -> String {
        format!("0 {} verity {}", self.sectors(), self.params_string())
    }

    /// The value of the kernel's `dm-mod.create=` parameter for a read-only device
    /// `name` (`<name>,<uuid>,<minor>,<flags>,<table>`; minor left to the kernel).
    pub fn dm_mod_create(&self, name: &str, uuid: Option<&str>) -> String {
        format!("{},{},,ro,{}", name, uuid.unwrap_or(""), self.line())
    }

    /// The table as a device-mapper target.
    pub fn target(&self) -> dm::Target {
        dm::Target {
            start: 0,
            length: self.sectors(),
            target_type: "verity".to_owned(),
            params: self.params_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Layout;
    use crate::params::{HashAlgorithm, HashType, Salt};

    fn table(options: TableOptions) -> VerityTable {
        let params = Params {
            hash_type: HashType::Normal,
            algorithm: HashAlgorithm::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 244,
            salt: "0011".parse().unwrap(),
        };
        let geometry = Geometry::new(&params, &Layout::default()).unwrap();
        let root = RootHash::from_hex(
            HashAlgorithm::Sha256,
            "5693d2d753d6986caddb07b7be822a54f6d8790a1bf806a16f92d105a4ec508a",
        )
        .unwrap();
        VerityTable::new("/dev/vda3", "/dev/vda4", &params, &geometry, &root, options)
    }

    #[test]
    fn lines_for_each_option_set() {
        let base = "0 1952 verity 1 /dev/vda3 /dev/vda4 4096 4096 244 1 sha256 \
                    5693d2d753d6986caddb07b7be822a54f6d8790a1bf806a16f92d105a4ec508a 0011";
        let cases = [
            (
                TableOptions {
                    error_mode: ErrorMode::Eio,
                    ..TableOptions::default()
                },
                String::new(),
            ),
            (TableOptions::default(), " 1 restart_on_corruption".into()),
            (
                TableOptions {
                    error_mode: ErrorMode::Panic,
                    ignore_zero_blocks: true,
                    check_at_most_once: true,
                },
                " 3 panic_on_corruption ignore_zero_blocks check_at_most_once".into(),
            ),
            (
                TableOptions {
                    error_mode: ErrorMode::Eio,
                    ignore_zero_blocks: false,
                    check_at_most_once: true,
                },
                " 1 check_at_most_once".into(),
            ),
        ];
        for (options, tail) in cases {
            assert_eq!(table(options).line(), format!("{base}{tail}"));
        }
    }

    #[test]
    fn dm_mod_create_and_target() {
        let t = table(TableOptions::default());
        assert_eq!(
            t.dm_mod_create("root", Some("VERITY-1")),
            format!("root,VERITY-1,,ro,{}", t.line())
        );
        assert!(t
            .dm_mod_create("root", None)
            .starts_with("root,,,ro,0 1952 verity 1 "));
        let target = t.target();
        assert_eq!((target.start, target.length), (0, 1952));
        assert_eq!(target.params, t.params_string());
        let mut none = t.clone();
        none.params.salt = Salt::none();
        assert!(none.params_string().ends_with(" - 1 restart_on_corruption"));
    }

    #[test]
    fn error_mode_names() {
        assert_eq!("restart".parse(), Ok(ErrorMode::Restart));
        assert_eq!("panic".parse(), Ok(ErrorMode::Panic));
        assert_eq!("eio".parse(), Ok(ErrorMode::Eio));
        assert!("ignore".parse::<ErrorMode>().is_err());
    }
}
