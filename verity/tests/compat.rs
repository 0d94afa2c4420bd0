//! Byte-for-byte compatibility with the real `veritysetup` over a matrix of sizes, block
//! sizes, algorithms, salts, hash types and layouts: for every case the hash device we
//! write equals veritysetup's (same salt and UUID), the root hashes match, veritysetup
//! verifies ours and we verify theirs.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::ffi::OsString;
use std::fs;

use common::*;
use verity::{FormatOptions, HashAlgorithm, HashType, RunOptions, Salt, VerifyOptions};

#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    data_len: usize,
    alg: HashAlgorithm,
    data_block: u32,
    hash_block: u32,
    salt: String,
    hash_type: HashType,
    hash_offset: u64,
    superblock: bool,
    data_blocks: Option<u64>,
    same_device: bool,
}

fn case(name: &'static str, data_len: usize) -> Case {
    Case {
        name,
        data_len,
        alg: HashAlgorithm::Sha256,
        data_block: 4096,
        hash_block: 4096,
        salt: "-".into(),
        hash_type: HashType::Normal,
        hash_offset: 0,
        superblock: true,
        data_blocks: None,
        same_device: false,
    }
}

fn matrix() -> Vec<Case> {
    let salt256: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
    let short = "a1b2".to_string();
    let mut cases = vec![
        case("one block", 4096),
        case("partial last block", 10 * 4096 + 1234),
        Case {
            salt: short.clone(),
            ..case("short salt", 300 * 4096)
        },
        Case {
            salt: salt256.clone(),
            ..case("256-byte salt", 129 * 4096)
        },
        Case {
            data_block: 512,
            hash_block: 512,
            ..case("512/512 many levels", 5000 * 512)
        },
        Case {
            alg: HashAlgorithm::Sha512,
            data_block: 512,
            hash_block: 512,
            salt: short.clone(),
            ..case(
                "sha512 512-byte blocks, 5 levels",
                9 * 8 * 8 * 8 * 512 + 512,
            )
        },
        Case {
            alg: HashAlgorithm::Sha1,
            salt: short.clone(),
            ..case("sha1", 700 * 4096)
        },
        Case {
            alg: HashAlgorithm::Sha1,
            hash_type: HashType::ChromeOs,
            salt: short.clone(),
            hash_block: 1024,
            ..case("sha1 type 0", 500 * 4096)
        },
        Case {
            hash_type: HashType::ChromeOs,
            salt: salt256.clone(),
            ..case("sha256 type 0 256-byte salt", 200 * 4096)
        },
        Case {
            alg: HashAlgorithm::Sha512,
            hash_type: HashType::ChromeOs,
            data_block: 1024,
            hash_block: 2048,
            ..case("sha512 type 0 mixed block sizes", 3000 * 1024 + 17)
        },
        Case {
            data_block: 65536,
            hash_block: 65536,
            salt: short.clone(),
            ..case("64 KiB blocks", 40 * 65536)
        },
        Case {
            data_block: 1024,
            hash_block: 65536,
            ..case("1 KiB data, 64 KiB hash", 2100 * 1024)
        },
        Case {
            data_block: 65536,
            hash_block: 512,
            ..case("64 KiB data, 512 hash", 20 * 65536)
        },
        Case {
            hash_offset: 1024,
            salt: short.clone(),
            ..case("hash offset 1 KiB", 50 * 4096)
        },
        Case {
            hash_offset: 8192,
            ..case("hash offset 8 KiB", 50 * 4096)
        },
        Case {
            superblock: false,
            salt: short.clone(),
            ..case("no superblock", 150 * 4096)
        },
        Case {
            superblock: false,
            hash_offset: 12288,
            ..case("no superblock, hash offset", 150 * 4096)
        },
        Case {
            data_blocks: Some(77),
            ..case("explicit data blocks", 100 * 4096)
        },
        Case {
            same_device: true,
            data_blocks: Some(200),
            hash_offset: 200 * 4096,
            salt: short.clone(),
            ..case("data and hash on one device", 200 * 4096)
        },
        Case {
            same_device: true,
            data_blocks: Some(64),
            hash_offset: 64 * 4096 + 4096,
            superblock: false,
            ..case("one device, no superblock", 64 * 4096)
        },
    ];
    // Every algorithm with both hash types at the default geometry.
    for alg in [
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha512,
    ] {
        for hash_type in [HashType::ChromeOs, HashType::Normal] {
            cases.push(Case {
                alg,
                hash_type,
                salt: short.clone(),
                ..case("algorithm x type", 130 * 4096)
            });
        }
    }
    cases
}

/// veritysetup's options for a case (shared by format and verify).
fn options(c: &Case) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        format!("--hash={}", c.alg).into(),
        format!("--data-block-size={}", c.data_block).into(),
        format!("--hash-block-size={}", c.hash_block).into(),
        format!("--salt={}", c.salt).into(),
        format!("--format={}", c.hash_type.number()).into(),
        format!("--hash-offset={}", c.hash_offset).into(),
    ];
    if let Some(n) = c.data_blocks {
        a.push(format!("--data-blocks={n}").into());
    }
    if !c.superblock {
        a.push("--no-superblock".into());
    }
    a
}

fn check_case(c: &Case) {
    let dir = temp_dir();
    let data = noise(c.data_len, c.data_len as u64 ^ u64::from(c.data_block));
    let (data_ours, hash_ours, data_theirs, hash_theirs) = if c.same_device {
        let a = path(&dir, "ours.img");
        let b = path(&dir, "theirs.img");
        (a.clone(), a, b.clone(), b)
    } else {
        (
            path(&dir, "data.img"),
            path(&dir, "ours.hash"),
            path(&dir, "data.img"),
            path(&dir, "theirs.hash"),
        )
    };
    fs::write(&data_ours, &data).unwrap();
    fs::write(&data_theirs, &data).unwrap();

    let opts = FormatOptions {
        hash_type: c.hash_type,
        algorithm: c.alg,
        data_block_size: c.data_block,
        hash_block_size: c.hash_block,
        data_blocks: c.data_blocks,
        salt: c.salt.parse::<Salt>().unwrap(),
        uuid: UUID.parse().unwrap(),
        hash_offset: c.hash_offset,
        superblock: c.superblock,
    };
    let ours = verity::format(&data_ours, &hash_ours, &opts, &RunOptions::default())
        .unwrap_or_else(|e| panic!("{}: our format: {e}", c.name));

    let out = run_ok(
        veritysetup()
            .arg("format")
            .args(options(c))
            .arg(format!("--uuid={UUID}"))
            .arg(&data_theirs)
            .arg(&hash_theirs),
    );
    let their_root = field(&out.stdout, "Root hash");
    assert_eq!(
        ours.root_hash.to_string(),
        their_root,
        "{}: root hash",
        c.name
    );
    let ours_bytes = fs::read(&hash_ours).unwrap();
    let theirs_bytes = fs::read(&hash_theirs).unwrap();
    assert!(
        ours_bytes == theirs_bytes,
        "{}: hash devices differ ({} vs {} bytes)",
        c.name,
        ours_bytes.len(),
        theirs_bytes.len()
    );
    // The data was only read.
    assert_eq!(
        &fs::read(&data_ours).unwrap()[..c.data_len],
        &data[..],
        "{}: data changed",
        c.name
    );

    // veritysetup accepts ours.
    run_ok(
        veritysetup()
            .arg("verify")
            .args(options(c))
            .arg(&data_ours)
            .arg(&hash_ours)
            .arg(&their_root),
    );
    // We accept theirs.
    let vopts = VerifyOptions {
        hash_offset: c.hash_offset,
        superblock: c.superblock,
        params: (!c.superblock).then(|| ours.params.clone()),
    };
    let v = verity::verify(
        &data_theirs,
        &hash_theirs,
        &their_root,
        &vopts,
        &RunOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{}: our verify: {e}", c.name));
    assert!(v.report.is_ok(), "{}: {:?}", c.name, v.report);
}

#[test]
fn matrix_matches_veritysetup_byte_for_byte() {
    let cases = matrix();
    for c in &cases {
        check_case(c);
    }
    eprintln!("{} cases matched veritysetup", cases.len());
}

/// Thread count must not change a single byte.
#[test]
fn thread_counts_give_identical_trees() {
    let dir = temp_dir();
    let data = path(&dir, "data.img");
    fs::write(&data, noise(3 << 20, 7)).unwrap();
    let mut images = Vec::new();
    for threads in [1usize, 2, 3, 8] {
        let hash = path(&dir, &format!("hash{threads}"));
        let opts = FormatOptions {
            salt: "00ff".parse().unwrap(),
            ..FormatOptions::default()
        };
        let run = RunOptions {
            threads: std::num::NonZeroUsize::new(threads),
            progress: None,
        };
        verity::format(&data, &hash, &opts, &run).unwrap();
        images.push(fs::read(&hash).unwrap());
    }
    assert!(images.windows(2).all(|w| w[0] == w[1]));
}

/// The CLI prints what veritysetup prints for the same inputs (except the title line),
/// for `format` and, where there is a superblock, `dump`.
#[test]
fn cli_output_matches_veritysetup() {
    let dir = temp_dir();
    let data = path(&dir, "data.img");
    fs::write(&data, noise(123 * 4096 + 5, 3)).unwrap();
    let uuid = format!("--uuid={UUID}");
    let cases: &[&[&str]] = &[
        &["--salt=beef"],
        &["--salt=-", "--data-blocks=10"],
        &["--no-superblock", "--salt=00"],
        &[
            "--hash-offset=8192",
            "--salt=00",
            "--hash=sha512",
            "--format=0",
        ],
        &[
            "--hash=sha1",
            "--data-block-size=512",
            "--hash-block-size=1024",
            "--salt=0102",
        ],
    ];
    let body = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for args in cases {
        let (ours_hash, theirs_hash) = (path(&dir, "ours"), path(&dir, "theirs"));
        let _ = (fs::remove_file(&ours_hash), fs::remove_file(&theirs_hash));
        let ours = run_ok(
            verity_bin()
                .arg("format")
                .args(*args)
                .arg(&uuid)
                .arg(&data)
                .arg(&ours_hash),
        );
        let theirs = run_ok(
            veritysetup()
                .arg("format")
                .args(*args)
                .arg(&uuid)
                .arg(&data)
                .arg(&theirs_hash),
        );
        assert_eq!(body(&ours), body(&theirs), "format {args:?}");
        if args.contains(&"--no-superblock") {
            continue;
        }
        let offset: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| a.starts_with("--hash-offset"))
            .collect();
        let ours = run_ok(verity_bin().arg("dump").args(&offset).arg(&ours_hash));
        let theirs = run_ok(veritysetup().arg("dump").args(&offset).arg(&ours_hash));
        assert_eq!(body(&ours), body(&theirs), "dump {args:?}");
    }
}

/// The superblocks veritysetup wrote for the fuzz seeds (commands in
/// fuzz/seeds/README.md) parse and serialise back to the same bytes.
#[test]
fn veritysetup_superblocks_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/superblock");
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        let sb = verity::Superblock::parse(&bytes).unwrap();
        assert_eq!(sb.uuid.to_string(), "12345678-1234-1234-1234-123456789abc");
        assert_eq!(&sb.to_bytes()[..], &bytes[..]);
        n += 1;
    }
    assert_eq!(n, 3);
}
