//! A slot's ROOT and HASH partitions: the read-only root file system (erofs, or ext4 with
//! 4096-byte blocks) made from a staged tree, and its dm-verity superblock and hash tree made
//! by Liftoff's own `verity` library (byte-compatible with `veritysetup format`).

use std::fs::File;
use std::path::Path;
use std::process::Command;

use crate::seed::{seeded_bytes, seeded_guid};
use crate::tool::{io_err, run, ImageError};
use crate::{round_up_mib, MIB};

/// The root file system type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFsType {
    Erofs,
    Ext4,
}

/// Makes the root file system image from a staged tree.
pub fn make_root_fs(tree: &Path, out: &Path, fs: RootFsType, seed: &str) -> Result<(), ImageError> {
    let uuid = seeded_guid(seed, "root-fs");
    let _ = std::fs::remove_file(out);
    match fs {
        RootFsType::Erofs => run(Command::new("mkfs.erofs")
            .arg("--quiet")
            .arg("-zlz4hc")
            .arg("-T0")
            .arg(format!("-U{uuid}"))
            .arg(out)
            .arg(tree)),
        RootFsType::Ext4 => {
            // Size: the tree plus a quarter, at least 64 MiB; 4096-byte blocks (DESIGN.md
            // section 10: dm-verity refuses 1024-byte ext4 blocks).
            let used = dir_size(tree);
            let size = round_up_mib((used + used / 4).max(64 * MIB));
            File::create(out)
                .and_then(|f| f.set_len(size))
                .map_err(io_err(format!("creating {}", out.display())))?;
            run(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-b", "4096", "-O", "^has_journal", "-U", &uuid])
                .arg("-E")
                .arg(format!("hash_seed={uuid}"))
                .arg("-d")
                .arg(tree)
                .arg(out)
                .env("E2FSPROGS_FAKE_TIME", "1"))
        }
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len() + 4096;
            }
        }
    }
    total
}

/// dm-verity's data and hash block size: the root file systems' block size (erofs and ext4
/// both use 4096), and no smaller than any logical sector size a disk may have (the kernel
/// refuses verity blocks smaller than the device's logical block, so 4Kn disks need 4096).
pub const VERITY_BLOCK: u32 = 4096;

/// Builds the verity hash image for `root` and returns (root hash hex, salt hex).
pub fn make_hash(root: &Path, hash: &Path, seed: &str) -> Result<(String, String), ImageError> {
    let salt_bytes = seeded_bytes(seed, "verity-salt", 32);
    let uuid_bytes = seeded_bytes(seed, "verity-uuid", 16);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&uuid_bytes);
    let opts = verity::FormatOptions {
        salt: verity::Salt::new(salt_bytes.clone()).map_err(|e| ImageError::Tool {
            command: "salt".into(),
            output: e.to_string(),
        })?,
        uuid: verity::Uuid(uuid),
        data_block_size: VERITY_BLOCK,
        hash_block_size: VERITY_BLOCK,
        ..verity::FormatOptions::default()
    };
    let _ = std::fs::remove_file(hash);
    File::create(hash).map_err(io_err(format!("creating {}", hash.display())))?;
    let formatted = verity::format(
        root,
        hash,
        &opts,
        &verity::RunOptions {
            threads: None,
            progress: None,
        },
    )
    .map_err(ImageError::Verity)?;
    Ok((
        verity::hex::encode(formatted.root_hash.as_bytes()),
        verity::hex::encode(&salt_bytes),
    ))
}
