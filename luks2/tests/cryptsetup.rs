//! Golden tests against the real peer, run at test time: `cryptsetup` (cryptsetup-bin,
//! installed by scripts/setup) reads the headers this crate writes, and this crate reads
//! the headers cryptsetup writes. Both sides work on image files: luksFormat, luksDump,
//! `open --test-passphrase` and `luksDump --dump-volume-key` need no device-mapper.
//!
//! The dm-crypt table needs device-mapper, which the development and CI hosts' kernels
//! lack (DESIGN.md section 10): it is compared inside the guests instead, where cryptsetup
//! opens the DATA volume PID 1 made and loads a table byte for byte equal to PID 1's
//! (`vm_*_verified_root_under_systemd`, docs/data.md).

// Test harness: panicking on a failed step is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use luks2::json::{self, Value};
use luks2::volume::DATA_OFFSET;
use luks2::{Error, FormatOptions, KdfParams, Luks2, VolumeKey};

/// Data after the 16 MiB header area.
const IMAGE_SIZE: u64 = DATA_OFFSET + (4 << 20);

fn run(args: &[&str]) -> Output {
    Command::new("cryptsetup")
        .args(args)
        .output()
        .expect("running cryptsetup (scripts/setup installs cryptsetup-bin)")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "cryptsetup {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn image(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        File::create(&p).unwrap().set_len(IMAGE_SIZE).unwrap();
        p
    }

    fn key_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        p
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    luks2::crypto::fill_random(&mut b).unwrap();
    b
}

/// The volume key cryptsetup dumps with `key_file` (`luksDump --dump-volume-key`).
fn dumped_volume_key(image: &Path, key_file: &Path) -> Vec<u8> {
    let out = ok(&[
        "luksDump",
        "--dump-volume-key",
        "--batch-mode",
        "--key-file",
        s(key_file),
        s(image),
    ]);
    // "MK dump:\t12 34 ...\n\t\t56 78 ...\n" (the label is "MK dump" in 2.6).
    let start = out.find("MK dump:").expect("no MK dump in luksDump output") + 8;
    let hex: String = out[start..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .flat_map(|l| l.split_whitespace())
        .collect();
    verity::hex::decode(&hex).unwrap()
}

fn test_passphrase(image: &Path, key_file: &Path, slot: u32) -> bool {
    run(&[
        "open",
        "--test-passphrase",
        "--key-slot",
        &slot.to_string(),
        "--key-file",
        s(key_file),
        s(image),
    ])
    .status
    .success()
}

/// The recovery-style keyslot with a cost small enough for tests that run it in debug
/// builds and in cryptsetup, still argon2id.
const SMALL_ARGON2ID: KdfParams = KdfParams::Argon2id {
    time: 3,
    memory_kib: 16 * 1024,
    cpus: 1,
};

fn write_ours(image: &Path, sector_size: u32) -> (Luks2, VolumeKey, Vec<u8>, Vec<u8>) {
    let key = VolumeKey::random(64).unwrap();
    let opts = FormatOptions {
        sector_size,
        label: "liftoff-data".into(),
        uuid: None,
    };
    let mut l = Luks2::format(IMAGE_SIZE, &key, &opts).unwrap();
    let machine = random(32);
    let recovery = b"correct horse battery staple 42".to_vec();
    assert_eq!(
        l.add_keyslot(&key, &machine, KdfParams::MACHINE_SECRET)
            .unwrap(),
        0
    );
    assert_eq!(l.add_keyslot(&key, &recovery, SMALL_ARGON2ID).unwrap(), 1);
    let Value::Object(tok) = json::parse(
        r#"{"type":"systemd-tpm2","keyslots":["0"],"tpm2-blob":"AAECAw==","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"00ff","tpm2-pin":false}"#,
    )
    .unwrap() else {
        panic!()
    };
    l.add_token(tok).unwrap();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    l.write(&mut f).unwrap();
    (l, key, machine, recovery)
}

/// (a) A header we write: luksDump accepts it and shows what we wrote, every keyslot opens
/// with its secret and no other, and the volume key cryptsetup dumps is ours.
#[test]
fn cryptsetup_opens_what_we_write() {
    for sector_size in [512, 4096] {
        let t = Scratch::new();
        let img = t.image("ours.img");
        let (l, key, machine, recovery) = write_ours(&img, sector_size);
        let kf_machine = t.key_file("machine.key", &machine);
        let kf_recovery = t.key_file("recovery.key", &recovery);
        let kf_wrong = t.key_file("wrong.key", b"wrong");

        let dump = ok(&["luksDump", s(&img)]);
        for want in [
            "Version:       \t2".to_owned(),
            format!("UUID:          \t{}", l.header.uuid),
            "Label:         \tliftoff-data".to_owned(),
            "offset: 16777216 [bytes]".to_owned(),
            "cipher: aes-xts-plain64".to_owned(),
            format!("sector: {sector_size} [bytes]"),
            "PBKDF:      pbkdf2".to_owned(),
            "Hash:       sha512".to_owned(),
            "PBKDF:      argon2id".to_owned(),
            "Memory:     16384".to_owned(),
            "Threads:    1".to_owned(),
            "AF stripes: 4000".to_owned(),
            "Area offset:32768 [bytes]".to_owned(),
            "Area offset:290816 [bytes]".to_owned(),
            "0: systemd-tpm2".to_owned(),
        ] {
            assert!(dump.contains(&want), "luksDump lacks {want:?}:\n{dump}");
        }

        assert!(test_passphrase(&img, &kf_machine, 0));
        assert!(test_passphrase(&img, &kf_recovery, 1));
        assert!(!test_passphrase(&img, &kf_machine, 1));
        assert!(!test_passphrase(&img, &kf_recovery, 0));
        assert!(!run(&[
            "open",
            "--test-passphrase",
            "--key-file",
            s(&kf_wrong),
            s(&img)
        ])
        .status
        .success());

        assert_eq!(dumped_volume_key(&img, &kf_machine), key.as_bytes());
        assert_eq!(dumped_volume_key(&img, &kf_recovery), key.as_bytes());
    }
}

/// Keyslots removed by us no longer open in cryptsetup; one added later does.
#[test]
fn cryptsetup_follows_our_keyslot_changes() {
    let t = Scratch::new();
    let img = t.image("ours.img");
    let (_, key, machine, recovery) = write_ours(&img, 4096);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut l = Luks2::read(&mut f).unwrap();
    let (slot, got) = l.unlock(&mut f, &recovery).unwrap();
    assert_eq!((slot, &got), (1, &key));
    l.remove_keyslot(0).unwrap();
    l.remove_token(0).unwrap();
    let new_secret = random(32);
    assert_eq!(
        l.add_keyslot(&got, &new_secret, KdfParams::MACHINE_SECRET)
            .unwrap(),
        0
    );
    l.write(&mut f).unwrap();
    drop(f);

    let kf_old = t.key_file("old.key", &machine);
    let kf_new = t.key_file("new.key", &new_secret);
    let kf_recovery = t.key_file("recovery.key", &recovery);
    assert!(!test_passphrase(&img, &kf_old, 0));
    assert!(test_passphrase(&img, &kf_new, 0));
    assert!(test_passphrase(&img, &kf_recovery, 1));
    let dump = ok(&["luksDump", s(&img)]);
    assert!(!dump.contains("systemd-tpm2"), "{dump}");
    assert_eq!(dumped_volume_key(&img, &kf_new), key.as_bytes());
}

/// (b) Headers cryptsetup writes, with each KDF and sector size: we unlock them and get the
/// volume key cryptsetup dumps; a wrong key is refused.
#[test]
fn we_open_what_cryptsetup_writes() {
    let cases: &[(&str, &[&str])] = &[
        (
            "pbkdf2-sha256-512",
            &[
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--sector-size",
                "512",
            ],
        ),
        (
            "pbkdf2-sha512-4096",
            &[
                "--pbkdf",
                "pbkdf2",
                "--hash",
                "sha512",
                "--pbkdf-force-iterations",
                "1000",
                "--sector-size",
                "4096",
            ],
        ),
        (
            "argon2id-4096",
            &[
                "--pbkdf",
                "argon2id",
                "--pbkdf-memory",
                "32768",
                "--pbkdf-parallel",
                "2",
                "--pbkdf-force-iterations",
                "4",
                "--sector-size",
                "4096",
            ],
        ),
        (
            "argon2i-512",
            &[
                "--pbkdf",
                "argon2i",
                "--pbkdf-memory",
                "16384",
                "--pbkdf-parallel",
                "1",
                "--pbkdf-force-iterations",
                "4",
                "--sector-size",
                "512",
            ],
        ),
        (
            "aes-xts-256bit-key",
            &[
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--key-size",
                "256",
            ],
        ),
    ];
    for (name, extra) in cases {
        let t = Scratch::new();
        let img = t.image("theirs.img");
        let secret = random(48);
        let kf = t.key_file("k", &secret);
        let mut args = vec![
            "luksFormat",
            "--type",
            "luks2",
            "--batch-mode",
            "--key-file",
            s(&kf),
        ];
        args.extend_from_slice(extra);
        args.push(s(&img));
        ok(&args);
        // A second keyslot, added by cryptsetup with a passphrase.
        let kf2 = t.key_file("k2", b"second passphrase");
        ok(&[
            "luksAddKey",
            "--batch-mode",
            "--key-file",
            s(&kf),
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            s(&img),
            s(&kf2),
        ]);
        let theirs = dumped_volume_key(&img, &kf);

        let mut f = File::open(&img).unwrap();
        let l = Luks2::read(&mut f).unwrap();
        assert_eq!(l.damaged, None, "{name}");
        let (slot, key) = l.unlock(&mut f, &secret).unwrap();
        assert_eq!(slot, 0, "{name}");
        assert_eq!(key.as_bytes(), &theirs[..], "{name}");
        let (slot, key2) = l.unlock(&mut f, b"second passphrase").unwrap();
        assert_eq!((slot, key2), (1, key.clone()), "{name}");
        assert!(
            matches!(l.unlock(&mut f, b"not it"), Err(Error::WrongSecret { ref tried }) if tried == &[0, 1]),
            "{name}"
        );
        // What cryptsetup would load, from our side (compared with the kernel's in the
        // ignored test below): offset and sector size from cryptsetup's own dump.
        let dump = ok(&["luksDump", s(&img)]);
        let table = l.crypt_table(&key, "7:0", IMAGE_SIZE).unwrap();
        assert_eq!(table.offset * 512, DATA_OFFSET, "{name}");
        let sector_line = dump.lines().find(|x| x.contains("sector:")).unwrap();
        let sector: u32 = sector_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            l.metadata.segments.get(&0).unwrap().sector_size,
            sector,
            "{name}"
        );
        assert_eq!(
            table.options.iter().any(|o| o == "sector_size:4096"),
            sector == 4096,
            "{name}"
        );
    }
}

/// Our parser on cryptsetup's header, written back by us: cryptsetup still opens it, and
/// the metadata reads back equal (nothing lost in the round trip).
#[test]
fn cryptsetup_headers_survive_our_rewrite() {
    let t = Scratch::new();
    let img = t.image("theirs.img");
    let secret = random(32);
    let kf = t.key_file("k", &secret);
    ok(&[
        "luksFormat",
        "--type",
        "luks2",
        "--batch-mode",
        "--key-file",
        s(&kf),
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--label",
        "theirs",
        s(&img),
    ]);
    ok(&[
        "config",
        "--batch-mode",
        "--priority",
        "prefer",
        "--key-slot",
        "0",
        s(&img),
    ]);
    // A token of another tool, with nesting and types we do not interpret.
    let tok = t.key_file(
        "token.json",
        br#"{"type":"other-tool","keyslots":["0"],"x":[1,{"y":null,"z":-2.5e3}],"s":"\u00e9"}"#,
    );
    ok(&[
        "token",
        "import",
        "--batch-mode",
        "--json-file",
        s(&tok),
        s(&img),
    ]);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut l = Luks2::read(&mut f).unwrap();
    let before = l.metadata.clone();
    let seqid = l.header.seqid;
    l.write(&mut f).unwrap();
    let again = Luks2::read(&mut f).unwrap();
    assert_eq!(again.metadata, before);
    assert_eq!(again.header.seqid, seqid + 1);
    assert_eq!(again.header.label, "theirs");
    assert_eq!(again.metadata.keyslots.get(&0).unwrap().priority, Some(2));
    assert!(test_passphrase(&img, &kf, 0));
    let dump = ok(&["luksDump", s(&img)]);
    assert!(
        dump.contains(&format!("Epoch:         \t{}", seqid + 1)),
        "{dump}"
    );
    assert!(dump.contains("Priority:   preferred"), "{dump}");
    assert!(dump.contains("0: other-tool"), "{dump}");
    assert_eq!(
        again
            .metadata
            .tokens
            .get(&0)
            .unwrap()
            .object
            .get("x")
            .unwrap()
            .to_text(),
        r#"[1,{"y":null,"z":-2.5e3}]"#
    );
}

/// One damaged copy: both cryptsetup and we still open the volume; we name the damage.
#[test]
fn one_damaged_copy_still_opens_in_both() {
    for (at, which) in [
        (4096 + 20, luks2::Copy::Primary),
        (16384 + 4096 + 20, luks2::Copy::Secondary),
    ] {
        let t = Scratch::new();
        let img = t.image("ours.img");
        let (_, key, machine, _) = write_ours(&img, 512);
        let mut bytes = fs::read(&img).unwrap();
        bytes[at] ^= 0x01;
        fs::write(&img, &bytes).unwrap();
        let l = Luks2::from_bytes(&bytes).unwrap();
        assert_eq!(l.damaged, Some((which, luks2::HeaderError::Checksum)));
        let mut f = File::open(&img).unwrap();
        assert_eq!(l.unlock(&mut f, &machine).unwrap().1, key);
        let kf = t.key_file("m", &machine);
        assert_eq!(dumped_volume_key(&img, &kf), key.as_bytes());
    }
}
