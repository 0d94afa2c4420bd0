//! Corruption and bad input through the `verity` binary: each is reported with the block
//! number or one clear error and a non-zero exit, and the data device is never written.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::*;

fn verity(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = verity_bin();
    cmd.args(args).args(paths);
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A formatted image with three tree levels (512-byte hash blocks, sha256: 16 digests a
/// block; 300 data blocks -> levels of 19, 2 and 1 blocks).
struct Image {
    dir: tempfile::TempDir,
    root: String,
}

const SALT: &str = "5a5a";

impl Image {
    fn new() -> Self {
        let dir = temp_dir();
        fs::write(path(&dir, "data"), noise(300 * 4096, 11)).unwrap();
        let out = run_ok(
            verity_bin()
                .args([
                    "format",
                    "--hash-block-size=512",
                    "--salt",
                    SALT,
                    "--uuid",
                    UUID,
                ])
                .arg(path(&dir, "data"))
                .arg(path(&dir, "hash")),
        );
        let root = field(&out.stdout, "Root hash");
        Self { dir, root }
    }

    fn data(&self) -> std::path::PathBuf {
        path(&self.dir, "data")
    }

    fn hash(&self) -> std::path::PathBuf {
        path(&self.dir, "hash")
    }

    fn flip(&self, file: &Path, offset: usize) {
        let mut b = fs::read(file).unwrap();
        b[offset] ^= 0x40;
        fs::write(file, b).unwrap();
    }

    fn verify(&self) -> Output {
        verity(
            &["verify"],
            &[&self.data(), &self.hash(), Path::new(&self.root)],
        )
    }
}

#[test]
fn intact_image_verifies() {
    let img = Image::new();
    let out = img.verify();
    assert!(out.status.success(), "{}", stderr(&out));
    let json = verity(
        &["verify", "--json"],
        &[&img.data(), &img.hash(), Path::new(&img.root)],
    );
    assert_eq!(
        String::from_utf8_lossy(&json.stdout).trim(),
        r#"{"corrupt":[],"mismatches":0,"verified":true}"#
    );
}

#[test]
fn one_flipped_byte_anywhere_is_found_with_its_block() {
    // Geometry of Image: superblock in hash block 0; level 2 (1 block) at hash block 1,
    // level 1 (2 blocks) at 2-3, level 0 (19 blocks) at 4-22.
    struct Flip {
        in_data: bool,
        offset: usize,
        expect: &'static [&'static str],
    }
    let flips = [
        Flip {
            in_data: true,
            offset: 0,
            expect: &["data block 0 is corrupt"],
        },
        Flip {
            in_data: true,
            offset: 123 * 4096 + 77,
            expect: &["data block 123 is corrupt"],
        },
        Flip {
            in_data: true,
            offset: 300 * 4096 - 1,
            expect: &["data block 299 is corrupt"],
        },
        // Level 0, hash block 4 + 3 (level index 3), digest 5 = data block 3 * 16 + 5.
        Flip {
            in_data: false,
            offset: 7 * 512 + 5 * 32 + 1,
            expect: &[
                "data block 53 is corrupt",
                "hash block 3 of level 0 (hash device block 7) is corrupt",
            ],
        },
        // Level 1, second block (hash block 3), digest 2 = level-0 block 18.
        Flip {
            in_data: false,
            offset: 3 * 512 + 2 * 32,
            expect: &[
                "hash block 18 of level 0 (hash device block 22) is corrupt",
                "hash block 1 of level 1 (hash device block 3) is corrupt",
            ],
        },
        // Level 2 (the top, hash block 1), digest 0 = level-1 block 0.
        Flip {
            in_data: false,
            offset: 512 + 3,
            expect: &[
                "hash block 0 of level 1 (hash device block 2) is corrupt",
                "hash block 0 of level 2 (hash device block 1) is corrupt",
            ],
        },
        // Padding after the last digest of the last level-0 block (300 = 18 * 16 + 12).
        Flip {
            in_data: false,
            offset: 22 * 512 + 12 * 32 + 3,
            expect: &[
                "hash device block 22 (level 0) has non-zero padding",
                "hash block 18 of level 0 (hash device block 22) is corrupt",
            ],
        },
    ];
    for f in flips {
        let img = Image::new();
        let before = fs::read(img.data()).unwrap();
        let target = if f.in_data { img.data() } else { img.hash() };
        img.flip(&target, f.offset);
        let out = img.verify();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "offset {}: {err}", f.offset);
        for e in f.expect {
            assert!(err.contains(e), "offset {}: want {e:?} in {err}", f.offset);
        }
        // veritysetup agrees that the tree is corrupt.
        let theirs = veritysetup()
            .arg("verify")
            .arg(img.data())
            .arg(img.hash())
            .arg(&img.root)
            .output()
            .unwrap();
        assert!(
            !theirs.status.success(),
            "veritysetup accepted offset {}",
            f.offset
        );
        if !f.in_data {
            assert_eq!(fs::read(img.data()).unwrap(), before, "data changed");
        }
    }
}

#[test]
fn wrong_root_hash_is_corruption() {
    let img = Image::new();
    let mut root = img.root.clone().into_bytes();
    root[0] = if root[0] == b'0' { b'1' } else { b'0' };
    let root = String::from_utf8(root).unwrap();
    let out = verity(&["verify"], &[&img.data(), &img.hash(), Path::new(&root)]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("hash block 0 of level 2"),
        "{}",
        stderr(&out)
    );
}

/// Bad inputs: each gives exit 1, one error line naming the problem, and leaves the data
/// device byte-for-byte and timestamp unchanged.
#[test]
fn bad_input_fails_cleanly_without_touching_data() {
    let img = Image::new();
    let dir = &img.dir;
    let tiny = path(dir, "tiny");
    fs::write(&tiny, noise(100, 1)).unwrap();
    let truncated_sb = path(dir, "truncated-sb");
    fs::write(&truncated_sb, &fs::read(img.hash()).unwrap()[..300]).unwrap();
    let bad_sig = path(dir, "bad-sig");
    let mut b = fs::read(img.hash()).unwrap();
    b[0] = b'X';
    fs::write(&bad_sig, b).unwrap();
    let bad_alg = path(dir, "bad-alg");
    let mut b = fs::read(img.hash()).unwrap();
    b[32..38].copy_from_slice(b"md5\0\0\0");
    fs::write(&bad_alg, b).unwrap();
    let short_tree = path(dir, "short-tree");
    fs::write(&short_tree, &fs::read(img.hash()).unwrap()[..10 * 512]).unwrap();
    let salt257 = "ab".repeat(257);
    let new_hash = path(dir, "new-hash");
    let data = img.data();
    let good_hash = img.hash();
    let root = img.root.clone();

    let snapshot = |p: &Path| {
        (
            fs::read(p).unwrap(),
            fs::metadata(p).unwrap().modified().unwrap(),
        )
    };
    let before = snapshot(&data);
    let d = data.to_str().unwrap();
    let nh = new_hash.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["verify", d, truncated_sb.to_str().unwrap(), &root],
            "superblock is truncated: 300 bytes",
        ),
        (
            vec!["dump", truncated_sb.to_str().unwrap()],
            "superblock is truncated",
        ),
        (
            vec!["verify", d, bad_sig.to_str().unwrap(), &root],
            "no verity superblock signature",
        ),
        (
            vec!["dump", bad_alg.to_str().unwrap()],
            "algorithm field \"md5\"",
        ),
        (
            vec!["format", "--salt", &salt257, d, nh],
            "salt is 257 bytes long",
        ),
        (
            vec!["format", "--data-block-size=1000", d, nh],
            "data block size 1000 is not a power of two",
        ),
        (
            vec!["format", "--hash-block-size=3072", d, nh],
            "hash block size 3072 is not a power of two",
        ),
        (
            vec!["format", "--data-block-size=131072", d, nh],
            "data block size 131072",
        ),
        (
            vec!["format", "--hash-offset=100", d, nh],
            "hash offset 100 is not a multiple of 512",
        ),
        (
            vec!["format", "--data-blocks=301", d, nh],
            "has 1228800 bytes; 1232896 are needed",
        ),
        (
            vec!["format", "--hash=md5", d, nh],
            "unsupported hash algorithm \"md5\"",
        ),
        (
            vec!["format", "--format=2", d, nh],
            "unsupported hash type 2",
        ),
        (
            vec!["format", tiny.to_str().unwrap(), nh],
            "has 100 bytes; 4096 are needed",
        ),
        (
            vec!["verify", d, short_tree.to_str().unwrap(), &root],
            "the hash area needs",
        ),
        // A device (not a file that can grow) too small for the tree.
        (
            vec!["format", d, "/dev/null"],
            "hash device /dev/null has 0 bytes; the hash area needs 20480",
        ),
        (
            vec!["verify", d, good_hash.to_str().unwrap(), "abcd"],
            "root hash has 2 bytes",
        ),
        (
            vec!["format", "--data-blocks=300", "--hash-offset=4096", d, d],
            "overlaps the data area",
        ),
    ];
    for (args, want) in cases {
        let out = verity_bin().args(&args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!new_hash.exists(), "{args:?} created the hash file");
        assert!(
            snapshot(&data) == before,
            "{args:?} touched the data device"
        );
    }
}

/// `verity table` prints the kernel's table line and dm-mod.create= value for an image.
#[test]
fn table_line_for_an_image() {
    let img = Image::new();
    let sb = img.hash();
    let sb = sb.to_str().unwrap();
    let line = |extra: &[&str]| {
        let out = run_ok(
            verity_bin()
                .args([
                    "table",
                    "/dev/vda3",
                    "/dev/vda4",
                    &img.root,
                    "--superblock-from",
                    sb,
                ])
                .args(extra),
        );
        String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
    };
    // 300 blocks of 4 KiB = 2400 sectors; tree after the 512-byte superblock block.
    let base = format!(
        "0 2400 verity 1 /dev/vda3 /dev/vda4 4096 512 300 1 sha256 {} {SALT}",
        img.root
    );
    assert_eq!(line(&[]), base);
    assert_eq!(
        line(&["--restart-on-corruption", "--check-at-most-once"]),
        format!("{base} 2 restart_on_corruption check_at_most_once")
    );
    assert_eq!(
        line(&[
            "--panic-on-corruption",
            "--dm-mod-create",
            "root",
            "--dm-uuid",
            "V-A"
        ]),
        format!("dm-mod.create=\"root,V-A,,ro,{base} 1 panic_on_corruption\"")
    );
    let json = line(&["--json", "--ignore-zero-blocks"]);
    assert_eq!(
        json,
        format!("{{\"table\":\"{base} 1 ignore_zero_blocks\"}}")
    );
    // A root hash of the wrong length is refused.
    let out = verity(
        &[
            "table",
            "/dev/vda3",
            "/dev/vda4",
            "abcd",
            "--superblock-from",
            sb,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
}
