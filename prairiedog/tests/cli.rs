//! The `prairiedog` binary on sgdisk images: status, transitions, grubenv, install, bootconfig.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use liftoff_image::secureboot::{self, KeySet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn prairiedog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prairiedog"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = prairiedog(args);
    assert!(
        out.status.success(),
        "prairiedog {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = prairiedog(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "prairiedog {args:?} should fail"
    );
    String::from_utf8(out.stderr).unwrap()
}

fn status(img: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&[
        "status",
        "--json",
        "--disk",
        img.to_str().unwrap(),
        "--active",
        "A",
    ]))
    .unwrap()
}

#[test]
fn status_and_transitions_keep_gpt_and_grubenv_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "d.img", 4096, w(2, 0, 1, 0), w(1, 0, 1, 0));
    let d = img.to_str().unwrap();
    let s = status(&img);
    assert_eq!(s["next"], "A");
    assert_eq!(s["active"], "A");
    assert_eq!(s["why"], "both slots eligible, higher priority");
    assert_eq!(s["slots"]["A"]["priority"], 2);
    assert_eq!(s["slots"]["B"]["successful"], true);
    assert_eq!(s["gpt"]["sector_size"], 4096);
    assert_eq!(s["gpt"]["primary"], serde_json::Value::Null);

    let env = dir.path().join("grubenv");
    run(Command::new("grub-editenv").arg(&env).arg("create"));
    run(Command::new("grub-editenv").arg(&env).args([
        "set",
        "liftoff_slot=A",
        "liftoff_pending=0",
    ]));
    let e = env.to_str().unwrap();
    let out = ok(&[
        "rollback-to-inactive",
        "--disk",
        d,
        "--active",
        "A",
        "--grubenv",
        e,
    ]);
    assert!(
        out.contains("rollback-to-inactive: written (active A, next B)"),
        "{out}"
    );
    assert_eq!(sgdisk_attrs(&img, 4096, 2), w(1, 0, 1, 0));
    assert_eq!(sgdisk_attrs(&img, 4096, 5), w(2, 0, 1, 0));
    assert_eq!(
        run(Command::new("grub-editenv").arg(&env).arg("list")),
        "liftoff_slot=B\nliftoff_pending=0\n"
    );
    // Running it again changes nothing and says so.
    let out = ok(&["mark-successful-boot", "--disk", d, "--active", "B"]);
    assert!(out.contains("nothing to change"), "{out}");
    // Refusals are errors with the reason, and write nothing.
    let before = std::fs::read(&img).unwrap();
    let err = fails(&["upgrade-to-inactive", "--disk", d, "--active", "B"]);
    assert!(err.contains("is not cleared"), "{err}");
    let err = fails(&["cancel-upgrade", "--disk", d, "--active", "B"]);
    assert!(err.contains("no upgrade to cancel"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), before);
    // Without --active on an image, a transition cannot know the running slot.
    assert!(fails(&["clear-inactive", "--disk", d]).contains("--active"));

    assert_eq!(
        ok(&["has-boot-ever-succeeded", "--disk", d, "--active", "B"]),
        "true\n"
    );
    ok(&["clear-inactive", "--disk", d, "--active", "B"]);
    assert_eq!(
        ok(&[
            "has-boot-ever-succeeded",
            "--json",
            "--disk",
            d,
            "--active",
            "A"
        ]),
        "{\"has_boot_ever_succeeded\":false}\n"
    );
    let text = ok(&["status", "--disk", d, "--active", "B"]);
    assert!(
        text.contains(
            "Slot A: priority=0 tries=0 successful=0 unhealthy=0 eligible=0 (priority 0)"
        ),
        "{text}"
    );
    assert!(
        text.contains("Next:   B (the only eligible slot)"),
        "{text}"
    );
}

struct Update {
    boot: PathBuf,
    root: PathBuf,
    hash: PathBuf,
    manifest: PathBuf,
    root_hash: String,
    /// The BOOT image's kernel image (signed when made with keys).
    uki: PathBuf,
}

/// A 1 MiB root of pseudo-random blocks, its tree made by the real veritysetup, a BOOT image
/// whose kernel image boots slot B with that root hash, and the manifest made by
/// `prairiedog manifest`.
fn make_update(dir: &Path) -> Update {
    make_update_with(dir, "", None)
}

/// [`make_update`] whose kernel image has this `.osrel` (`IMAGE_VERSION=`).
fn make_update_version(dir: &Path, osrel: &str) -> Update {
    make_update_with(dir, osrel, None)
}

/// [`make_update`] whose kernel image has this `.osrel` and, with `keys`, is signed by
/// `sbsign` with their db key (through the image builder's `sign`).
fn make_update_with(dir: &Path, osrel: &str, keys: Option<&KeySet>) -> Update {
    let root = dir.join("root.img");
    let bytes: Vec<u8> = (0u32..1 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&root, bytes).unwrap();
    let hash = dir.join("hash.img");
    let out = run(Command::new("veritysetup")
        .arg("format")
        .arg(&root)
        .arg(&hash));
    let root_hash = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_owned();
    let mut uki = uki_file(
        dir,
        "boot.img",
        &format!("liftoff.slot=B liftoff.roothash={root_hash} console=ttyS0"),
        osrel,
    );
    if let Some(keys) = keys {
        let signed = dir.join("boot.img.signed.efi");
        secureboot::sign(keys, &uki, &signed).unwrap();
        uki = signed;
    }
    let boot = boot_image_with(dir, "boot.img", &uki, 512);
    let manifest = dir.join("manifest");
    let update = Update {
        boot,
        root,
        hash,
        manifest,
        root_hash,
        uki,
    };
    write_manifest(&update);
    update
}

/// The manifest of `u`'s files, made by `prairiedog manifest`.
fn write_manifest(u: &Update) {
    let text = ok(&[
        "manifest",
        "--boot",
        u.boot.to_str().unwrap(),
        "--root",
        u.root.to_str().unwrap(),
        "--hash",
        u.hash.to_str().unwrap(),
        "--verity-root-hash",
        &u.root_hash,
    ]);
    std::fs::write(&u.manifest, text).unwrap();
}

/// Signs `u`'s manifest with `keys`' db key into `manifest.sig` beside it, the default
/// `install` reads (`openssl dgst -sha256 -sign`, through the image builder's
/// `sign_detached`).
fn sign_manifest(u: &Update, keys: &KeySet) -> PathBuf {
    let sig = u.manifest.with_file_name("manifest.sig");
    secureboot::sign_detached(keys, &u.manifest, &sig).unwrap();
    sig
}

/// `install` of `u` into slot B of `disk`, with no UEFI variables (`--efivars` names a
/// folder that does not exist: Secure Boot off, so nothing is trusted unless a test adds
/// `--trust`), whatever the machine running the tests has.
fn install_args<'a>(u: &'a Update, disk: &'a str) -> Vec<&'a str> {
    vec![
        "install",
        "--efivars",
        "/nonexistent/efivars",
        "--disk",
        disk,
        "--active",
        "A",
        "--manifest",
        u.manifest.to_str().unwrap(),
        "--boot",
        u.boot.to_str().unwrap(),
        "--root",
        u.root.to_str().unwrap(),
        "--hash",
        u.hash.to_str().unwrap(),
    ]
}

fn assert_b_not_bootable(img: &Path) {
    let s = status(img);
    assert_eq!(s["slots"]["B"]["eligible"], false, "{s}");
    assert_eq!(s["slots"]["B"]["priority"], 0, "{s}");
    assert_eq!(s["next"], "A");
    assert!(fails(&[
        "upgrade-to-inactive",
        "--disk",
        img.to_str().unwrap(),
        "--active",
        "A"
    ])
    .contains("not been marked valid"));
}

#[test]
fn install_then_upgrade_boots_b_next_with_one_try() {
    for sector in [512u32, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let img = make_image(dir.path(), "d.img", sector, w(2, 0, 1, 0), w(1, 0, 1, 0));
        let d = img.to_str().unwrap();
        let u = make_update(dir.path());
        if sector == 4096 {
            // A BOOT image made for 512-byte sectors would be unreadable to the firmware
            // on this disk: refused before anything is written.
            let before = std::fs::read(&img).unwrap();
            let err = fails(&install_args(&u, d));
            let want = format!(
                "{}: its FAT file system has 512-byte sectors, but {d} has 4096-byte sectors \
                 (build the payload with --sector-size 4096)",
                u.boot.display()
            );
            assert!(err.contains(&want), "{err}");
            assert!(std::fs::read(&img).unwrap() == before, "disk changed");
            boot_image_sectors(dir.path(), "boot.img", &u.uki, 512, Some(4096));
            write_manifest(&u);
        }
        let out = ok(&install_args(&u, d));
        assert!(out.contains("into slot B"), "{out}");
        // Installed but not yet bootable.
        let s = status(&img);
        assert_eq!(
            (
                s["slots"]["B"]["tries"].clone(),
                s["slots"]["B"]["priority"].clone()
            ),
            (1.into(), 0.into())
        );
        assert_eq!(s["next"], "A");
        ok(&["upgrade-to-inactive", "--disk", d, "--active", "A"]);
        let s = status(&img);
        assert_eq!(s["next"], "B", "{s}");
        assert_eq!(s["slots"]["B"]["tries"], 1);
        assert_eq!(s["slots"]["B"]["priority"], 2);
        assert_eq!(sgdisk_attrs(&img, sector, 5), w(2, 1, 0, 0));
        assert_eq!(sgdisk_attrs(&img, sector, 2), w(1, 0, 1, 0));
        // The partitions hold the images byte for byte.
        let disk = std::fs::read(&img).unwrap();
        let ss = u64::from(sector);
        for (n, file) in [(5u32, &u.boot), (6, &u.root), (7, &u.hash)] {
            let out = sgdisk(&img, sector, &["-i".to_owned(), n.to_string()]);
            let first: u64 = out
                .lines()
                .find_map(|l| l.strip_prefix("First sector: "))
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let want = std::fs::read(file).unwrap();
            let at = (first * ss) as usize;
            assert_eq!(&disk[at..at + want.len()], &want[..], "partition {n}");
        }
    }
}

#[test]
fn a_bad_payload_stops_and_leaves_b_not_bootable() {
    // (what to break, expected error)
    let cases: [(&str, &str); 9] = [
        ("digest", "the manifest says"),
        ("truncate", "bytes, the manifest says"),
        ("verity", "fails verity"),
        ("too-large", "does not fit partition"),
        ("uki-root-hash", "signed command line has root hash"),
        ("uki-slot", "boots slot A, the update goes to slot B"),
        ("hash-top", "does not carry the signed root hash"),
        ("hash-salt", "is not the UKI's liftoff.salt=00"),
        ("hash-short", "its tree needs"),
    ];
    for (breakage, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let img = make_image(dir.path(), "d.img", 512, w(2, 0, 1, 0), w(1, 0, 1, 0));
        let mut u = make_update(dir.path());
        // A new BOOT image with this command line, and a manifest made for it with this
        // root hash: every digest matches, so only the named check can refuse it.
        let remake = |u: &mut Update, cmdline: &str, kib: u32, root_hash: &str| {
            boot_image(dir.path(), "boot.img", cmdline, "", kib);
            u.root_hash = root_hash.to_owned();
            write_manifest(u);
        };
        let zeros = "00".repeat(32);
        let real = u.root_hash.clone();
        match breakage {
            "digest" => smash(&u.root, 4096, 1, 0xff),
            "truncate" => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&u.root)
                    .unwrap();
                f.set_len(4096).unwrap();
            }
            // ROOT changed after its tree was made, the manifest made for the files as
            // they are: only dm-verity's check of what was written (step 5) finds it.
            "verity" => {
                smash(&u.root, 8192, 1, 0xff);
                write_manifest(&u);
            }
            "too-large" => remake(
                &mut u,
                &format!("liftoff.slot=B liftoff.roothash={real}"),
                3072,
                &real,
            ),
            // The manifest's root hash differs from the one the signed UKI carries.
            "uki-root-hash" => remake(
                &mut u,
                &format!("liftoff.slot=B liftoff.roothash={zeros}"),
                512,
                &"11".repeat(32),
            ),
            "uki-slot" => remake(
                &mut u,
                &format!("liftoff.slot=A liftoff.roothash={zeros}"),
                512,
                &zeros,
            ),
            // The UKI and the manifest agree on a root hash HASH does not have.
            "hash-top" => remake(
                &mut u,
                &format!("liftoff.slot=B liftoff.roothash={zeros}"),
                512,
                &zeros,
            ),
            // The UKI names a salt the superblock does not have (PID 1 would use it).
            "hash-salt" => remake(
                &mut u,
                &format!("liftoff.slot=B liftoff.roothash={real} liftoff.salt=00"),
                512,
                &real,
            ),
            _ => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&u.hash)
                    .unwrap();
                f.set_len(4096).unwrap();
                write_manifest(&u);
            }
        }
        let before = std::fs::read(&img).unwrap();
        let err = fails(&install_args(&u, img.to_str().unwrap()));
        assert!(err.contains(want), "{breakage}: {err}");
        if breakage.starts_with("uki-") || breakage.starts_with("hash-") {
            // Refused before the first write: the disk is as it was, B still bootable.
            assert!(std::fs::read(&img).unwrap() == before, "{breakage}");
        } else {
            assert_b_not_bootable(&img);
        }
    }
}

#[test]
fn bootconfig_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("settings");
    std::fs::write(&from, "kernel.console = \"ttyS0,115200\"\n").unwrap();
    let out = dir.path().join("bootconfig.img");
    ok(&[
        "generate-boot-config",
        "--from",
        from.to_str().unwrap(),
        "--set",
        "init.liftoff.handoff=containerd",
        "--output",
        out.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.ends_with(b"#BOOTCONFIG\n"));
    assert_eq!(bytes.len() % 4, 0);
    assert_eq!(
        ok(&["read-boot-config", out.to_str().unwrap()]),
        "kernel.console=ttyS0,115200\ninit.liftoff.handoff=containerd\n"
    );
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["read-boot-config", "--json", out.to_str().unwrap()])).unwrap();
    assert_eq!(j["settings"]["init.liftoff.handoff"], "containerd");
}

#[test]
fn transitions_update_grubenv_on_the_esp_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "d.img", 512, w(2, 0, 1, 0), w(1, 0, 1, 0));
    let d = img.to_str().unwrap();
    // Without a FAT on the ESP the transition works and says grubenv was not updated.
    let out = ok(&["rollback-to-inactive", "--disk", d, "--active", "A"]);
    assert!(out.contains("grubenv not updated"), "{out}");
    // Named explicitly and missing: an error before anything is written.
    let before = std::fs::read(&img).unwrap();
    assert!(fails(&[
        "rollback-to-inactive",
        "--disk",
        d,
        "--active",
        "B",
        "--grubenv",
        "esp:/grubenv"
    ])
    .contains("reading grubenv"));
    assert_eq!(std::fs::read(&img).unwrap(), before);
    put_esp(
        dir.path(),
        &img,
        512,
        &["liftoff_slot=B", "liftoff_pending=0"],
    );
    let out = ok(&["rollback-to-inactive", "--disk", d, "--active", "B"]);
    assert!(out.contains("grubenv: liftoff_slot=A"), "{out}");
    assert_eq!(
        esp_grubenv_list(dir.path(), &img),
        "liftoff_slot=A\nliftoff_pending=0\n"
    );
    let text = ok(&["status", "--disk", d, "--active", "A"]);
    assert!(
        text.contains("Grubenv: liftoff_slot=A liftoff_pending=0"),
        "{text}"
    );
    let s: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--json", "--disk", d])).unwrap();
    assert_eq!(s["grubenv"]["liftoff_slot"], "A");
    assert_eq!(s["active"], serde_json::Value::Null);
}

/// Byte offset of partition `n` of `img` (`sgdisk -i`).
fn partition_offset(img: &Path, sector: u32, n: u32) -> u64 {
    let out = sgdisk(img, sector, &["-i".to_owned(), n.to_string()]);
    let first: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    first * u64::from(sector)
}

/// The running slot A carries a kernel image of version 2.0: an update of version 1.9 (or
/// of no version) is refused before anything is written, unless `--allow-downgrade`;
/// 2.0 and 2.10 are taken.
#[test]
fn a_downgrade_is_refused_unless_allowed() {
    for (osrel, allowed) in [
        ("IMAGE_VERSION=1.9\n", false),
        ("", false),
        ("NAME=x\nIMAGE_VERSION=\"2.0\"\n", true),
        ("IMAGE_VERSION=2.10\n", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let img = make_image(dir.path(), "d.img", 512, w(2, 0, 1, 0), w(1, 0, 1, 0));
        let running = boot_image(
            dir.path(),
            "running.img",
            "liftoff.slot=A liftoff.roothash=00",
            "IMAGE_VERSION=2.0\n",
            512,
        );
        let mut disk = std::fs::read(&img).unwrap();
        let at = partition_offset(&img, 512, 2) as usize;
        let bytes = std::fs::read(&running).unwrap();
        disk[at..at + bytes.len()].copy_from_slice(&bytes);
        std::fs::write(&img, &disk).unwrap();
        let u = make_update_version(dir.path(), osrel);
        let args = install_args(&u, img.to_str().unwrap());
        if allowed {
            ok(&args);
            continue;
        }
        let err = fails(&args);
        assert!(
            err.contains("lower than the running slot's 2.0 (--allow-downgrade"),
            "{osrel:?}: {err}"
        );
        assert!(
            std::fs::read(&img).unwrap() == disk,
            "{osrel:?}: nothing written"
        );
        let mut forced = args.clone();
        forced.push("--allow-downgrade");
        let out = ok(&forced);
        assert!(out.contains("into slot B"), "{out}");
    }
}

/// Efivarfs fixture with Secure Boot on, db holding `db_cert` (made by efitools'
/// `cert-to-efi-sig-list`) and, when given, dbx holding the Authenticode digest of
/// `revoked` (`hash-to-efi-sig-list`).
fn efivars_with(dir: &Path, db_cert: &Path, revoked: Option<&Path>) -> PathBuf {
    let vars = dir.join("efivars");
    std::fs::create_dir_all(&vars).unwrap();
    let put = |name: &str, value: &[u8]| {
        let mut bytes = 0x27u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(value);
        std::fs::write(vars.join(name), bytes).unwrap();
    };
    put("SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c", &[1]);
    let esl = dir.join("db.esl");
    run(Command::new("cert-to-efi-sig-list").arg(db_cert).arg(&esl));
    put(
        "db-d719b2cb-3d3a-4596-a3bc-dad00e67656f",
        &std::fs::read(&esl).unwrap(),
    );
    if let Some(image) = revoked {
        let esl = dir.join("dbx.esl");
        run(Command::new("hash-to-efi-sig-list").arg(image).arg(&esl));
        put(
            "dbx-d719b2cb-3d3a-4596-a3bc-dad00e67656f",
            &std::fs::read(&esl).unwrap(),
        );
    }
    vars
}

/// The kernel image's signature, checked before anything is written: against `--trust`
/// certificates, or db/dbx of the machine when Secure Boot is on. A forged, unsigned,
/// tampered or revoked image is refused and the disk stays byte for byte as it was; an
/// image signed by the trusted key is installed. With Secure Boot off and no `--trust`,
/// install says the signature is not checked and goes on (a foreign image installs).
#[test]
fn kernel_image_signatures_are_checked_before_anything_is_written() {
    let keys = tempfile::tempdir().unwrap();
    let ours = KeySet::create(&keys.path().join("ours"), "Ours", None).unwrap();
    let other = KeySet::create(&keys.path().join("other"), "Other", None).unwrap();
    let trusted = ours.db.cert.to_str().unwrap().to_owned();
    // (case, signer, Secure Boot efivars?, --trust?, expected: Ok(stdout) or Err(stderr))
    type Case<'a> = (
        &'a str,
        Option<&'a KeySet>,
        bool,
        bool,
        Result<&'a str, &'a str>,
    );
    let signed_ours = "kernel image signed by CN=Ours Secure Boot db";
    let foreign =
        "liftoff.efi: signed by CN=Other Secure Boot db, which no trusted certificate issued";
    let cases: [Case; 10] = [
        ("ours, --trust", Some(&ours), false, true, Ok(signed_ours)),
        ("ours, db", Some(&ours), true, false, Ok(signed_ours)),
        ("foreign, --trust", Some(&other), false, true, Err(foreign)),
        ("foreign, db", Some(&other), true, false, Err(foreign)),
        (
            "unsigned, --trust",
            None,
            false,
            true,
            Err("liftoff.efi: no signature"),
        ),
        (
            "unsigned, db",
            None,
            true,
            false,
            Err("liftoff.efi: no signature"),
        ),
        (
            "tampered, --trust",
            Some(&ours),
            false,
            true,
            Err("liftoff.efi: digest mismatch: the image was changed after signing"),
        ),
        (
            "revoked, db",
            Some(&ours),
            true,
            false,
            Err("is revoked (listed in dbx)"),
        ),
        (
            "foreign, no Secure Boot",
            Some(&other),
            false,
            false,
            Ok("Secure Boot is off and no --trust given"),
        ),
        (
            "unsigned, no Secure Boot",
            None,
            false,
            false,
            Ok("Secure Boot is off and no --trust given"),
        ),
    ];
    for (case, signer, secure_boot, trust, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let img = make_image(d, "d.img", 512, w(2, 0, 1, 0), w(1, 0, 1, 0));
        let u = make_update_with(d, "", signer);
        if case.starts_with("tampered") {
            // One byte of the signed command line (console=ttyS0 -> ttyS1) changed after
            // signing; slot and root hash still agree with the manifest.
            let mut bytes = std::fs::read(&u.uki).unwrap();
            let at = bytes
                .windows(13)
                .position(|w| w == b"console=ttyS0")
                .unwrap();
            bytes[at + 12] = b'1';
            std::fs::write(&u.uki, bytes).unwrap();
            boot_image_with(d, "boot.img", &u.uki, 512);
            write_manifest(&u);
        }
        // The manifest is signed by the trusted key in every case: only the UKI differs.
        sign_manifest(&u, &ours);
        let vars = if secure_boot {
            let revoked = case.starts_with("revoked").then_some(u.uki.as_path());
            efivars_with(d, &ours.db.cert, revoked)
        } else {
            PathBuf::from("/nonexistent/efivars")
        };
        let mut args: Vec<String> = install_args(&u, img.to_str().unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect();
        args[2] = vars.to_str().unwrap().to_owned();
        if trust {
            args.extend(["--trust".to_owned(), trusted.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = std::fs::read(&img).unwrap();
        match want {
            Ok(line) => {
                let out = ok(&args);
                assert!(out.contains(line), "{case}: {out}");
                assert!(out.contains("into slot B"), "{case}: {out}");
                assert_eq!(status(&img)["slots"]["B"]["tries"], 1, "{case}");
            }
            Err(line) => {
                let err = fails(&args);
                assert!(err.contains(line), "{case}: {err}");
                assert!(
                    err.starts_with("prairiedog: installing into slot B: "),
                    "{case}: {err}"
                );
                assert!(
                    std::fs::read(&img).unwrap() == before,
                    "{case}: the disk changed"
                );
            }
        }
    }
}

/// The manifest's signature (`manifest.sig`, RSA PKCS#1 v1.5 SHA-256 by the db key),
/// checked whenever the UKI's is, with the same certificates, before anything is written.
/// Every signature here is made by `openssl dgst -sha256 -sign` and `openssl dgst
/// -sha256 -verify` gives the same verdict as `install` on each manifest and signature.
/// A manifest changed after signing (a digest, a size, the version, the root hash, a
/// comment), signed by a key not trusted, or unsigned is refused with one line naming the
/// signature file, and the disk stays byte for byte as it was; without Secure Boot or
/// `--trust` nothing is checked and the one-line notice says so.
#[test]
fn manifest_signatures_are_checked_before_anything_is_written() {
    let keys = tempfile::tempdir().unwrap();
    let ours = KeySet::create(&keys.path().join("ours"), "Ours", None).unwrap();
    let other = KeySet::create(&keys.path().join("other"), "Other", None).unwrap();
    let trusted = ours.db.cert.to_str().unwrap().to_owned();
    // How the trust is given: --trust, Secure Boot db in efivarfs, or none.
    #[derive(Clone, Copy, PartialEq)]
    enum By {
        Flag,
        Db,
        Nothing,
    }
    let bad = "manifest.sig: the signature of ";
    let not_verified = "does not verify with any trusted certificate's key";
    // (case, trust, expected: Ok(stdout) or Err(stderr))
    let cases: [(&str, By, Result<&str, &str>); 14] = [
        ("signed", By::Flag, Ok("manifest signed by CN=Ours Secure Boot db")),
        ("signed", By::Db, Ok("manifest signed by CN=Ours Secure Boot db")),
        ("--manifest-sig", By::Flag, Ok("manifest signed by CN=Ours")),
        ("boot digest", By::Flag, Err(not_verified)),
        ("root size", By::Flag, Err(not_verified)),
        ("version", By::Db, Err(not_verified)),
        ("root hash", By::Flag, Err(not_verified)),
        ("comment", By::Flag, Err(not_verified)),
        ("other key", By::Flag, Err(not_verified)),
        ("other key", By::Db, Err(not_verified)),
        ("missing", By::Flag, Err("manifest.sig: missing: with --trust or Secure Boot on")),
        ("missing", By::Db, Err("manifest.sig: missing: with --trust or Secure Boot on")),
        ("missing", By::Nothing, Ok("Secure Boot is off and no --trust given: the signatures of the update's kernel image and manifest are not checked")),
        ("other key", By::Nothing, Ok("are not checked")),
    ];
    for (case, by, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let img = make_image(d, "d.img", 512, w(2, 0, 1, 0), w(1, 0, 1, 0));
        let u = make_update_with(d, "IMAGE_VERSION=2.1\n", Some(&ours));
        let text = std::fs::read_to_string(&u.manifest).unwrap();
        assert!(text.ends_with("version 2.1\n"), "{text}");
        let signer = if case == "other key" { &other } else { &ours };
        let mut sig = sign_manifest(&u, signer);
        // Changed after signing; each edit still parses.
        let edited = match case {
            "boot digest" => {
                let line = text.lines().next().unwrap();
                let (head, digest) = line.rsplit_once(' ').unwrap();
                let flipped = if digest.starts_with('0') { "1" } else { "0" };
                text.replacen(line, &format!("{head} {flipped}{}", &digest[1..]), 1)
            }
            "root size" => text.replacen("root 1048576 ", "root 1048577 ", 1),
            "version" => text.replacen("version 2.1\n", "version 2.2\n", 1),
            "root hash" => text.replacen(&u.root_hash, &"00".repeat(32), 1),
            "comment" => format!("# release 2.1\n{text}"),
            _ => text.clone(),
        };
        assert!(case != "boot digest" || edited != text);
        std::fs::write(&u.manifest, &edited).unwrap();
        if case == "missing" {
            std::fs::remove_file(&sig).unwrap();
        }
        if case == "--manifest-sig" {
            let elsewhere = d.join("elsewhere.sig");
            std::fs::rename(&sig, &elsewhere).unwrap();
            sig = elsewhere;
        }
        // The peer tool's verdict on the same files, whenever there is a signature.
        if case != "missing" {
            let peer = secureboot::verifies_detached(&u.manifest, &sig, &ours.db.cert).unwrap();
            assert_eq!(
                peer,
                matches!(case, "signed" | "--manifest-sig"),
                "{case}: openssl"
            );
            if by != By::Nothing {
                assert_eq!(peer, want.is_ok(), "{case}: install and openssl disagree");
            }
        }
        let vars = match by {
            By::Db => efivars_with(d, &ours.db.cert, None),
            _ => PathBuf::from("/nonexistent/efivars"),
        };
        let mut args: Vec<String> = install_args(&u, img.to_str().unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect();
        args[2] = vars.to_str().unwrap().to_owned();
        if by == By::Flag {
            args.extend(["--trust".to_owned(), trusted.clone()]);
        }
        if case == "--manifest-sig" {
            args.extend([
                "--manifest-sig".to_owned(),
                sig.to_str().unwrap().to_owned(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = std::fs::read(&img).unwrap();
        match want {
            Ok(line) => {
                let out = ok(&args);
                assert!(out.contains(line), "{case}: {out}");
                assert!(out.contains("into slot B"), "{case}: {out}");
                assert_eq!(status(&img)["slots"]["B"]["tries"], 1, "{case}");
            }
            Err(line) => {
                let err = fails(&args);
                assert!(err.contains(line), "{case}: {err}");
                assert_eq!(err.lines().count(), 1, "{case}: one line: {err}");
                assert!(
                    err.starts_with(&format!("prairiedog: {}", sig.display())),
                    "{case}: names the signature file: {err}"
                );
                if line == not_verified {
                    assert!(err.contains(bad), "{case}: {err}");
                }
                assert!(
                    std::fs::read(&img).unwrap() == before,
                    "{case}: the disk changed"
                );
            }
        }
    }
}

/// The manifest's version is the UKI's: `prairiedog manifest` writes the UKI's
/// `IMAGE_VERSION=` (none without one), and a manifest that names another version, even
/// correctly signed, is refused before anything is written.
#[test]
fn the_manifest_version_is_the_kernel_image_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = make_image(d, "d.img", 512, w(2, 0, 1, 0), w(1, 0, 1, 0));
    let u = make_update_version(d, "NAME=x\nIMAGE_VERSION=\"3.0.1\"\n");
    let text = std::fs::read_to_string(&u.manifest).unwrap();
    assert!(text.ends_with("version 3.0.1\n"), "{text}");
    for (edit, want) in [
        (
            "version 3.0.2\n",
            "IMAGE_VERSION 3.0.1, the manifest says version 3.0.2",
        ),
        ("", "IMAGE_VERSION 3.0.1, the manifest says version none"),
    ] {
        std::fs::write(&u.manifest, text.replace("version 3.0.1\n", edit)).unwrap();
        let before = std::fs::read(&img).unwrap();
        let err = fails(&install_args(&u, img.to_str().unwrap()));
        assert!(err.contains(want), "{edit:?}: {err}");
        assert!(std::fs::read(&img).unwrap() == before, "{edit:?}");
    }
    let plain = d.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let u = make_update_version(&plain, "NAME=x\n");
    let text = std::fs::read_to_string(&u.manifest).unwrap();
    assert!(!text.contains("version"), "{text}");
    ok(&install_args(&u, img.to_str().unwrap()));
}

/// `data erase` on a LUKS2 volume cryptsetup made: refused without `--yes` (nothing
/// written), then the header and keyslots are gone, cryptsetup no longer sees a LUKS
/// device, and what follows the first 16 MiB is untouched.
#[test]
fn data_erase_destroys_the_luks2_header_only_when_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("data.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, b"a passphrase for the test").unwrap();
    let made = Command::new("cryptsetup")
        .args(["luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2"])
        .args(["--pbkdf-force-iterations", "1000", "--key-file"])
        .arg(&key)
        .arg(&image)
        .status()
        .unwrap();
    assert!(made.success());
    // Something in the data segment, to show it is left alone.
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[(20 << 20)..(20 << 20) + 4].copy_from_slice(b"DATA");
    std::fs::write(&image, &bytes).unwrap();
    let path = image.to_str().unwrap();

    let err = fails(&["data", "erase", path]);
    assert!(
        err.contains("destroys every file on it for good; add --yes"),
        "{err}"
    );
    assert_eq!(std::fs::read(&image).unwrap(), bytes);

    let out = ok(&["data", "erase", path, "--yes"]);
    assert_eq!(
        out,
        format!("{path}: first 16 MiB zeroed; the next boot formats it\n")
    );
    let after = std::fs::read(&image).unwrap();
    assert!(after[..16 << 20].iter().all(|b| *b == 0));
    assert_eq!(after[16 << 20..], bytes[16 << 20..]);
    let is_luks = Command::new("cryptsetup")
        .args(["isLuks"])
        .arg(&image)
        .status()
        .unwrap();
    assert!(!is_luks.success(), "cryptsetup still sees a LUKS device");
    let err = fails(&["data", "erase", "/nonexistent/data", "--yes"]);
    assert!(err.contains("opening /nonexistent/data"), "{err}");
}

/// `data recovery-key-saved`: the unsaved-recovery token PID 1 puts on DATA goes (so later
/// boots keep the key), the keyslot stays, cryptsetup still reads the header and opens it,
/// the handed-over file is removed; a second run has nothing to do.
#[test]
fn recovery_key_saved_removes_the_token_and_keeps_the_keyslot() {
    use luks2::json::{Object, Value};
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("data.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(20 << 20)
        .unwrap();
    let vk = luks2::VolumeKey::random(64).unwrap();
    let mut header = luks2::Luks2::format(20 << 20, &vk, &luks2::FormatOptions::default()).unwrap();
    let slot = header
        .add_keyslot(&vk, b"recovery", luks2::KdfParams::MACHINE_SECRET)
        .unwrap();
    let mut token = Object::new();
    token.insert("type", Value::str("liftoff-recovery-unsaved"));
    token.insert("keyslots", Value::Array(vec![Value::str(slot.to_string())]));
    header.add_token(token).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    header.write(&mut f).unwrap();
    drop(f);
    let handed_over = dir.path().join("recovery-key");
    std::fs::write(&handed_over, "the key\n").unwrap();
    let path = image.to_str().unwrap();
    let file = handed_over.to_str().unwrap();

    let out = ok(&[
        "data",
        "recovery-key-saved",
        path,
        "--recovery-key-file",
        file,
    ]);
    assert_eq!(
        out,
        format!(
            "{path}: recovery key in keyslot 0 marked saved; later boots keep it\nremoved {file}\n"
        )
    );
    assert!(!handed_over.exists());
    let h = luks2::Luks2::read(&mut std::fs::File::open(&image).unwrap()).unwrap();
    assert!(h.metadata.tokens.is_empty());
    assert_eq!(h.metadata.keyslots.len(), 1);
    let dump = Command::new("cryptsetup")
        .arg("luksDump")
        .arg(&image)
        .output()
        .unwrap();
    assert!(dump.status.success());
    assert!(!String::from_utf8_lossy(&dump.stdout).contains("liftoff-recovery-unsaved"));
    let key = dir.path().join("key");
    std::fs::write(&key, b"recovery").unwrap();
    let opened = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(&key)
        .arg(&image)
        .status()
        .unwrap();
    assert!(opened.success());

    let out = ok(&[
        "data",
        "recovery-key-saved",
        path,
        "--recovery-key-file",
        file,
    ]);
    assert_eq!(
        out,
        format!("{path}: no unsaved recovery key; nothing to do\n")
    );
    let err = fails(&["data", "recovery-key-saved", "/nonexistent/data"]);
    assert!(err.contains("opening /nonexistent/data"), "{err}");
}
