//! `liftoff-qemu image` and `liftoff-qemu payload` on the host (no VM): the disk of DESIGN.md
//! sections 3 and 4 as `sgdisk`, `veritysetup`, mtools and `dumpe2fs` read it, the payloads
//! as `prairiedog install` consumes them, reproducibility (same inputs and seed, same bytes,
//! whatever the paths, the time or the time zone), and clear failures that leave nothing
//! behind; 4Kn disks (`--sector-size 4096`) on a loop device with 4096-byte blocks.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use liftoff_image::disk;
use liftoff_image::secureboot::pe::PeInfo;
use liftoff_image::secureboot::uki;
use liftoff_image::secureboot::KeySet;

mod common;
use common::{assert_sgdisk_clean, attributes, host_binary, word, Loop};

/// One step of making a tree.
type Step = Box<dyn Fn(&Path)>;

/// A small root: enough for every file type the builders handle, quick to build.
/// `reverse` creates the same entries in the opposite order (readdir order must not matter).
fn tiny_tree(dir: &Path, reverse: bool) {
    let _ = std::fs::remove_dir_all(dir);
    let mut steps: Vec<Step> = vec![
        Box::new(|d| std::fs::create_dir_all(d.join("sbin")).unwrap()),
        Box::new(|d| std::fs::create_dir_all(d.join("etc/liftoff")).unwrap()),
        Box::new(|d| std::fs::create_dir_all(d.join("usr/lib/many")).unwrap()),
    ];
    let mut files: Vec<Step> = vec![
        Box::new(|d| write(d, "sbin/init", b"#!/bin/sh\nexec /bin/sh\n", 0o755)),
        Box::new(|d| write(d, "etc/os-release", b"ID=liftoff-test\n", 0o644)),
        Box::new(|d| write(d, "etc/liftoff/secret", b"only root\n", 0o600)),
        Box::new(|d| std::os::unix::fs::symlink("../sbin/init", d.join("etc/init-link")).unwrap()),
        Box::new(|d| {
            std::fs::hard_link(d.join("etc/os-release"), d.join("usr/os-release")).unwrap()
        }),
        Box::new(|d| {
            for i in 0..300 {
                write(
                    d,
                    &format!("usr/lib/many/f{i:03}"),
                    format!("{i}\n").as_bytes(),
                    0o644,
                );
            }
        }),
        Box::new(|d| write(d, "usr/lib/big", &vec![0x5a; 300_000], 0o644)),
    ];
    if reverse {
        // Hard link after its target, folders before their files: reverse within each list.
        files.swap(0, 1);
        files[5..].reverse();
        steps.reverse();
    }
    for step in steps.iter().chain(&files) {
        step(dir);
    }
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let path = root.join(rel);
    std::fs::write(&path, data).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// An emptied folder for one test under the target folder; removed when the test passes.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir = liftoff_image::artifacts::target_dir()
            .join("image-build-tests")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn liftoff_qemu(args: &[&str], tz: &str) -> Output {
    let bin = host_binary("qemu", "liftoff-qemu");
    Command::new(bin).args(args).env("TZ", tz).output().unwrap()
}

/// Runs a verb that must succeed and returns its `--json` object.
fn built(args: &[&str], tz: &str) -> serde_json::Value {
    let out = liftoff_qemu(args, tz);
    assert!(
        out.status.success(),
        "liftoff-qemu {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A section of a unified kernel image, as loaded.
fn section<'a>(uki: &'a [u8], name: &str) -> &'a [u8] {
    let pe = PeInfo::parse(uki).unwrap();
    pe.section_data(uki, name)
        .unwrap_or_else(|| panic!("no {name} section"))
}

/// Whether `sbverify --cert` (the peer tool) accepts the signature of `image` with the
/// development key set's db certificate.
fn signed_by_dev_db(image: &[u8], dir: &Path) -> bool {
    let (keys, _) = KeySet::development().unwrap();
    let path = dir.join("check.efi");
    std::fs::write(&path, image).unwrap();
    liftoff_image::secureboot::verifies(&path, &keys.db.cert).unwrap()
}

const PAYLOAD_FILES: [&str; 5] = [
    "boot.img",
    "root.img",
    "hash.img",
    "manifest",
    "manifest.sig",
];

/// Builds the disk and the payloads (for `slot`) of `root` with `extra` options; returns the
/// image's and the payload's JSON. The payload's UKI names the disk's BOOT partition of
/// `slot` (`--boot-partuuid`), as the disk's own UKI does.
fn build_both(
    root: &Path,
    disk: &Path,
    payload: &Path,
    slot: &str,
    extra: &[&str],
    tz: &str,
) -> (serde_json::Value, serde_json::Value) {
    let common = ["--arch", "x86_64", "--root", s(root), "--boot-mib", "64"];
    let mut args: Vec<&str> = vec!["image", "--out", s(disk), "--json"];
    args.extend(common);
    args.extend(extra);
    let image = built(&args, tz);
    let number = if slot == "A" {
        disk::BOOT_A
    } else {
        disk::BOOT_B
    };
    let boot = image["partitions"][number as usize - 1]["guid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut args: Vec<&str> = vec!["payload", "--out-dir", s(payload), "--slot", slot, "--json"];
    args.extend(["--boot-partuuid", &boot]);
    args.extend(common);
    args.extend(extra);
    let payload = built(&args, tz);
    (image, payload)
}

/// Same tree (made in another order, at another path), or its tarball, with the same seed
/// and boot files: the same disk and payloads, byte for byte, for both root file systems;
/// another seed gives other bytes, another root hash and other GUIDs.
#[test]
fn same_inputs_same_bytes() {
    let dir = TestDir::new("reproducible");
    let one = dir.0.join("one/tree");
    let two = dir.0.join("second-place/tree");
    tiny_tree(&one, false);
    tiny_tree(&two, true);
    // Liftoff's initramfs, made once: PID 1 is rebuilt by other work while this test runs,
    // and a new PID 1 is a different input, not a reproducibility failure.
    let kernel = liftoff_image::kernel::Kernel::debian(liftoff_image::Arch::X86_64).unwrap();
    let initramfs = dir.0.join("initramfs");
    std::fs::write(
        &initramfs,
        liftoff_image::system::initramfs(liftoff_image::Arch::X86_64, &kernel).unwrap(),
    )
    .unwrap();
    let tarball = dir.0.join("tree.tar.gz");
    tarball_of(&one, &tarball);
    for fs in ["erofs", "ext4"] {
        let runs: Vec<(PathBuf, &str, &str, &str)> = vec![
            (one.clone(), "a", "liftoff", "UTC"),
            (two.clone(), "b", "liftoff", "Pacific/Auckland"),
            (tarball.clone(), "c", "liftoff", "America/St_Johns"),
            (one.clone(), "d", "another seed", "UTC"),
        ];
        let mut results = Vec::new();
        for (root, name, seed, tz) in &runs {
            let disk = dir.0.join(format!("{fs}-{name}/disk.img"));
            let payload = dir.0.join(format!("{fs}-{name}/payload"));
            std::fs::create_dir_all(disk.parent().unwrap()).unwrap();
            let (image, _) = build_both(
                root,
                &disk,
                &payload,
                "B",
                &["--fs", fs, "--seed", seed, "--initramfs", s(&initramfs)],
                tz,
            );
            let mut sums = vec![sha256(&disk)];
            sums.extend(PAYLOAD_FILES.iter().map(|f| sha256(&payload.join(f))));
            results.push((sums, image));
            // The time stamps the tools would take from the clock differ between runs.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        let (a, b, c, d) = (&results[0], &results[1], &results[2], &results[3]);
        assert_eq!(a.0, b.0, "{fs}: the same tree made in another order");
        assert_eq!(a.0, c.0, "{fs}: the tarball of the tree");
        assert_eq!(a.1["root_hash"], c.1["root_hash"]);
        for (i, what) in [
            "disk",
            "boot.img",
            "root.img",
            "hash.img",
            "manifest",
            "manifest.sig",
        ]
        .iter()
        .enumerate()
        {
            assert_ne!(a.0[i], d.0[i], "{fs}: another seed, the same {what}");
        }
        assert_ne!(a.1["root_hash"], d.1["root_hash"]);
        assert_ne!(a.1["salt"], d.1["salt"]);
        assert_ne!(a.1["disk_guid"], d.1["disk_guid"]);
        for n in 0..9 {
            assert_ne!(
                a.1["partitions"][n]["guid"],
                d.1["partitions"][n]["guid"],
                "{fs}: partition {}",
                n + 1
            );
        }
        for (_, name, _, _) in &runs {
            std::fs::remove_dir_all(dir.0.join(format!("{fs}-{name}"))).unwrap();
        }
    }
}

/// `mtype` of a file in the FAT at byte `offset` of `disk`.
fn fat_file(disk: &Path, offset: u64, name: &str) -> Vec<u8> {
    let out = Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@{offset}", disk.display()))
        .arg(format!("::/{name}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {out:?}");
    out.stdout
}

fn extent(json: &serde_json::Value, number: u32) -> (u64, u64) {
    let p = &json["partitions"][number as usize - 1];
    (
        p["first_byte"].as_u64().unwrap(),
        p["bytes"].as_u64().unwrap(),
    )
}

fn extract(disk: &Path, (offset, len): (u64, u64), dest: &Path) -> PathBuf {
    liftoff_image::disk::extract(disk, offset, len, dest).unwrap();
    dest.to_path_buf()
}

/// The disk as the reference tools read it: the table (`sgdisk -v` clean; names, type GUIDs,
/// unique GUIDs and extents as printed; slot A priority 1 and successful, B all zero), the
/// ESP (shim with our certificate and GRUB with SBAT, both signed as `sbverify` checks;
/// grubenv for slot A), BOOT-A (the signed UKI: kernel, initramfs, the command line with the
/// printed root hash), ROOT-A/HASH-A (`veritysetup verify` with the printed root hash and
/// salt), PRIVATE (ext4). The payloads: root.img and hash.img are ROOT-A's and HASH-A's
/// content, a slot-A boot.img is BOOT-A's, and `prairiedog install` takes the slot-B payloads
/// into slot B of the disk (manifest sizes and BLAKE3, verity root hash).
#[test]
fn disk_and_payloads_as_the_reference_tools_see_them() {
    let dir = TestDir::new("layout");
    let tree = dir.0.join("tree");
    tiny_tree(&tree, false);
    let disk = dir.0.join("disk.img");
    let (image_json, payload_a) = build_both(
        &tree,
        &disk,
        &dir.0.join("payload-a"),
        "A",
        &["--append", "liftoff.handoff=containerd"],
        "UTC",
    );
    let root_hash = image_json["root_hash"].as_str().unwrap().to_owned();
    let salt = image_json["salt"].as_str().unwrap().to_owned();

    assert_sgdisk_clean(&disk);
    for (number, label, type_guid) in disk::PARTITIONS {
        let out = Command::new("sgdisk")
            .arg("-i")
            .arg(number.to_string())
            .arg(&disk)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        let json = &image_json["partitions"][number as usize - 1];
        assert_eq!(json["label"], label);
        assert!(
            text.contains(&format!("partition name: '{}'", label.to_lowercase())),
            "{text}"
        );
        assert!(
            text.contains(&format!("partition guid code: {type_guid}")),
            "{text}"
        );
        let guid = json["guid"].as_str().unwrap();
        assert!(
            text.contains(&format!("partition unique guid: {guid}")),
            "{text}"
        );
        let (first, bytes) = extent(&image_json, number);
        assert_eq!(first % (1 << 20), 0, "{label} is 1 MiB aligned");
        assert!(
            text.contains(&format!("first sector: {} ", first / 512)),
            "{text}"
        );
        assert!(
            text.contains(&format!("last sector: {} ", (first + bytes) / 512 - 1)),
            "{text}"
        );
    }
    assert_eq!(attributes(&disk, disk::BOOT_A), word(1, 0, true, 0));
    assert_eq!(attributes(&disk, disk::BOOT_B), 0);
    assert_bios_boot(&disk, &image_json, &root_hash, &salt);

    let esp = extent(&image_json, disk::ESP).0;
    // shim at the removable-media path and GRUB beside it, both signed with the db key;
    // shim carries our certificate instead of Debian's.
    let shim = fat_file(&disk, esp, "EFI/BOOT/BOOTX64.EFI");
    assert!(signed_by_dev_db(&shim, &dir.0));
    let (keys, _) = KeySet::development().unwrap();
    let der = keys.db_cert_der().unwrap();
    assert!(section(&shim, ".vendor_cert")[16..].starts_with(&der));
    let grub = fat_file(&disk, esp, "EFI/BOOT/grubx64.efi");
    assert!(signed_by_dev_db(&grub, &dir.0));
    assert!(String::from_utf8_lossy(section(&grub, ".sbat")).contains("\ngrub,5,"));
    let env = dir.0.join("grubenv");
    std::fs::write(&env, fat_file(&disk, esp, "grubenv")).unwrap();
    let out = Command::new("grub-editenv")
        .arg(&env)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "liftoff_slot=A\nliftoff_pending=0\n"
    );
    // BOOT-A: one signed UKI with the kernel, the initramfs and the whole command line.
    let boot_a = extent(&image_json, disk::BOOT_A).0;
    let kernel = liftoff_image::kernel::Kernel::debian(liftoff_image::Arch::X86_64).unwrap();
    let uki = fat_file(&disk, boot_a, "liftoff.efi");
    assert!(signed_by_dev_db(&uki, &dir.0));
    assert!(section(&uki, ".linux") == std::fs::read(&kernel.image).unwrap().as_slice());
    assert_eq!(
        &section(&uki, ".initrd")[..6],
        b"070701",
        "a newc cpio archive"
    );
    let cmdline = String::from_utf8(section(&uki, ".cmdline").to_vec()).unwrap();
    let boot_a_guid = image_json["partitions"][1]["guid"].as_str().unwrap();
    assert_eq!(
        cmdline,
        format!(
            "liftoff.boot_partuuid={boot_a_guid} liftoff.slot=A liftoff.roothash={root_hash} \
             liftoff.salt={salt} console=ttyS0 nvme_core.io_timeout=4294967295 panic=-1 liftoff.verity=panic \
             liftoff.handoff=containerd"
        )
    );
    assert_eq!(cmdline, image_json["cmdline"].as_str().unwrap());
    let osrel = String::from_utf8_lossy(section(&uki, ".osrel")).into_owned();
    assert!(osrel.contains("\nIMAGE_VERSION=0\n"), "{osrel}");

    let root_part = extract(
        &disk,
        extent(&image_json, disk::ROOT_A),
        &dir.0.join("root-a"),
    );
    let hash_part = extract(
        &disk,
        extent(&image_json, disk::HASH_A),
        &dir.0.join("hash-a"),
    );
    let out = Command::new("veritysetup")
        .arg("verify")
        .arg(&root_part)
        .arg(&hash_part)
        .arg(&root_hash)
        .output()
        .unwrap();
    assert!(out.status.success(), "veritysetup verify: {out:?}");
    let out = Command::new("veritysetup")
        .arg("dump")
        .arg(&hash_part)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(
        dump.lines()
            .any(|l| l.starts_with("Salt:") && l.trim_end().ends_with(&salt)),
        "{dump}"
    );
    let private = extract(
        &disk,
        extent(&image_json, disk::PRIVATE),
        &dir.0.join("private"),
    );
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&private)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Filesystem volume name:   PRIVATE"),
        "{text}"
    );
    for n in [disk::ROOT_B, disk::HASH_B, disk::DATA] {
        let part = extract(&disk, extent(&image_json, n), &dir.0.join("blank"));
        let bytes = std::fs::read(&part).unwrap();
        assert!(bytes.iter().all(|b| *b == 0), "partition {n} is blank");
    }

    // Payloads for slot A are slot A's partitions, byte for byte.
    let pa = dir.0.join("payload-a");
    let same_prefix = |payload: &Path, part: &Path| {
        let p = std::fs::read(payload).unwrap();
        let d = std::fs::read(part).unwrap();
        assert!(
            d.len() >= p.len() && d[..p.len()] == p[..],
            "{}",
            payload.display()
        );
        assert!(
            d[p.len()..].iter().all(|b| *b == 0),
            "{}: padding",
            payload.display()
        );
    };
    same_prefix(&pa.join("root.img"), &root_part);
    same_prefix(&pa.join("hash.img"), &hash_part);
    let boot_part = extract(
        &disk,
        extent(&image_json, disk::BOOT_A),
        &dir.0.join("boot-a"),
    );
    same_prefix(&pa.join("boot.img"), &boot_part);
    assert_eq!(payload_a["root_hash"], image_json["root_hash"]);
    assert_eq!(
        payload_a["root"]["bytes"].as_u64(),
        image_json["root_bytes"].as_u64()
    );
    assert_eq!(
        payload_a["hash"]["bytes"].as_u64(),
        image_json["hash_bytes"].as_u64()
    );

    // Slot B's payloads go in with prairiedog's own installer, which checks every size and
    // BLAKE3 sum of the manifest, reads back what it wrote and checks the verity root hash.
    let pb = dir.0.join("payload-b");
    let json = built(
        &[
            "payload",
            "--arch",
            "x86_64",
            "--root",
            s(&tree),
            "--boot-mib",
            "64",
            "--out-dir",
            s(&pb),
            "--append",
            "liftoff.handoff=containerd",
            "--json",
        ],
        "UTC",
    );
    assert_eq!(json["slot"], "B");
    assert!(json["cmdline"]
        .as_str()
        .unwrap()
        .starts_with("liftoff.slot=B "));
    let manifest = std::fs::read_to_string(pb.join("manifest")).unwrap();
    assert_eq!(
        manifest,
        format!(
            "boot {} {}\nroot {} {}\nhash {} {}\nverity-root-hash {root_hash}\nversion {}\n",
            json["boot"]["bytes"],
            json["boot"]["blake3"].as_str().unwrap(),
            json["root"]["bytes"],
            json["root"]["blake3"].as_str().unwrap(),
            json["hash"]["bytes"],
            json["hash"]["blake3"].as_str().unwrap(),
            liftoff_image::build::DEFAULT_VERSION,
        )
    );
    // The manifest's signature, made with the db key, as the peer tool checks it.
    let (keys, _) = KeySet::development().unwrap();
    assert_eq!(json["manifest_sig"], s(&pb.join("manifest.sig")));
    assert!(
        liftoff_image::secureboot::verifies_detached(
            &pb.join("manifest"),
            &pb.join("manifest.sig"),
            &keys.db.cert
        )
        .unwrap(),
        "openssl dgst -verify refuses the builder's manifest.sig"
    );
    let prairiedog = host_binary("prairiedog", "prairiedog");
    let install = || {
        Command::new(&prairiedog)
            .args(["--disk", s(&disk), "--active", "A", "install", "--manifest"])
            .arg(pb.join("manifest"))
            .args(["--efivars", "/nonexistent/efivars", "--trust"])
            .arg(&keys.db.cert)
            .arg("--boot")
            .arg(pb.join("boot.img"))
            .arg("--root")
            .arg(pb.join("root.img"))
            .arg("--hash")
            .arg(pb.join("hash.img"))
            .output()
            .unwrap()
    };
    let out = install();
    assert!(out.status.success(), "prairiedog install: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("manifest signed by CN="), "{stdout}");
    assert_eq!(attributes(&disk, disk::BOOT_B), word(0, 1, false, 0));
    let uki = fat_file(&disk, extent(&image_json, disk::BOOT_B).0, "liftoff.efi");
    let cmdline = String::from_utf8_lossy(section(&uki, ".cmdline")).into_owned();
    assert!(
        cmdline.starts_with("liftoff.slot=B liftoff.roothash="),
        "{cmdline}"
    );
    // The update also carries slot B's files for GRUB under BIOS.
    let boot_b = extent(&image_json, disk::BOOT_B).0;
    assert!(bios_cmdline(&disk, boot_b, &dir.0).starts_with("liftoff.slot=B liftoff.roothash="));
    assert!(
        fat_file(&disk, boot_b, "bios/vmlinuz")
            == std::fs::read(
                liftoff_image::kernel::Kernel::debian(liftoff_image::Arch::X86_64)
                    .unwrap()
                    .image
            )
            .unwrap()
    );
    // A payload whose bytes differ from its manifest is refused.
    let mut root = std::fs::read(pb.join("root.img")).unwrap();
    root[0] ^= 1;
    std::fs::write(pb.join("root.img"), root).unwrap();
    let out = install();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BLAKE3"),
        "{out:?}"
    );
}

/// `liftoff_cmdline` of `bios/cmdline.env` in the BOOT partition at byte `offset`, as
/// `grub-editenv list` reads the block.
fn bios_cmdline(disk: &Path, offset: u64, dir: &Path) -> String {
    let env = dir.join("cmdline.env");
    std::fs::write(&env, fat_file(disk, offset, "bios/cmdline.env")).unwrap();
    let out = Command::new("grub-editenv")
        .arg(&env)
        .arg("list")
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    list.strip_prefix("liftoff_cmdline=")
        .and_then(|l| l.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{list:?}"))
        .to_owned()
}

/// An x86_64 image with 512-byte sectors boots under BIOS too: partition 10 is the BIOS
/// boot partition (1 MiB, right before DATA, which stays last) holding GRUB's core image
/// with its block list pointing at itself; the MBR has GRUB's boot.img code pointing at
/// the core image, and its own bytes from the disk signature on (the 0xEE record) are the
/// protective MBR's, unchanged; BOOT-A carries the kernel, the initramfs of its UKI and the
/// BIOS command line (no boot PARTUUID, which GRUB probes; `liftoff.data=keyfile`).
fn assert_bios_boot(disk: &Path, json: &serde_json::Value, root_hash: &str, salt: &str) {
    let p = &json["partitions"][disk::BIOS_BOOT as usize - 1];
    assert_eq!(p["label"], "BIOS-BOOT");
    assert_eq!(p["type_guid"], "21686148-6449-6e6f-744e-656564454649");
    let out = Command::new("sgdisk")
        .args(["-i", "10"])
        .arg(disk)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        text.contains("partition guid code: 21686148-6449-6e6f-744e-656564454649"),
        "{text}"
    );
    let (first, bytes) = extent(json, disk::BIOS_BOOT);
    let (private, private_bytes) = extent(json, disk::PRIVATE);
    assert_eq!((first, bytes), (private + private_bytes, 1 << 20));
    assert_eq!(extent(json, disk::DATA).0, first + bytes);
    assert!(
        text.contains(&format!("first sector: {} ", first / 512)),
        "{text}"
    );

    let image = std::fs::read(disk).unwrap();
    let core = std::fs::read(liftoff_image::bios::grub_core().unwrap()).unwrap();
    let placed = liftoff_image::bios::place_core(&core, first / 512).unwrap();
    let at = first as usize;
    assert!(
        image[at..at + placed.len()] == placed[..],
        "core.img in partition 10"
    );
    assert_eq!(
        image[at + 0x1f4..at + 0x1fc],
        (first / 512 + 1).to_le_bytes()
    );
    let boot_img = liftoff_image::bios::boot_img().unwrap();
    assert_eq!(image[..3], boot_img[..3], "boot.img's jump");
    assert_eq!(image[0x5c..0x64], (first / 512).to_le_bytes());
    assert_eq!(image[0x68..0x1b8], boot_img[0x68..0x1b8], "boot.img's code");
    let pmbr = gpt::mbr::ProtectiveMbr::new(image.len() as u64 / 512);
    assert_eq!(
        image[0x1b8..512],
        pmbr.as_bytes()[0x1b8..],
        "the partition table bytes of the protective MBR"
    );

    let boot_a = extent(json, disk::BOOT_A).0;
    let kernel = liftoff_image::kernel::Kernel::debian(liftoff_image::Arch::X86_64).unwrap();
    assert!(fat_file(disk, boot_a, "bios/vmlinuz") == std::fs::read(&kernel.image).unwrap());
    let uki = fat_file(disk, boot_a, "liftoff.efi");
    // The UKI's initramfs, without the archive of the signed command line that follows
    // it in `.initrd` (PID 1 holds the command line to it only under Secure Boot).
    let initramfs = fat_file(disk, boot_a, "bios/initramfs");
    let initrd = section(&uki, ".initrd");
    assert!(initrd.starts_with(&initramfs));
    assert!(initrd[initramfs.len()..].starts_with(b"070701"));
    let dir = disk.parent().unwrap();
    assert_eq!(
        bios_cmdline(disk, boot_a, dir),
        format!(
            "liftoff.slot=A liftoff.roothash={root_hash} liftoff.salt={salt} console=ttyS0 \
             nvme_core.io_timeout=4294967295 panic=-1 liftoff.verity=panic liftoff.data=keyfile \
             liftoff.handoff=containerd"
        )
    );
}

/// Everything in `dir`, names only, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Bad input: a clear message naming the file or option, exit status 2 for bad arguments and
/// 1 for a failed build, and nothing left behind.
#[test]
fn bad_input_fails_cleanly() {
    let dir = TestDir::new("bad-input");
    let tree = dir.0.join("tree");
    tiny_tree(&tree, false);
    let not_tar = dir.0.join("not-a-tarball.tar.gz");
    std::fs::write(&not_tar, b"this is not a tarball\n").unwrap();
    let out_dir = dir.0.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let disk = out_dir.join("disk.img");
    let payload = out_dir.join("payload");
    let missing = dir.0.join("no-such-root");
    for (args, code, message) in [
        (
            vec!["image", "--root", s(&missing), "--out", s(&disk)],
            1,
            format!("reading the root {}", missing.display()),
        ),
        (
            vec!["image", "--root", s(&not_tar), "--out", s(&disk)],
            1,
            format!("unpacking {} with tar", not_tar.display()),
        ),
        (
            vec!["payload", "--root", s(&not_tar), "--out-dir", s(&payload)],
            1,
            format!("unpacking {} with tar", not_tar.display()),
        ),
        (
            vec![
                "image",
                "--root",
                s(&tree),
                "--out",
                s(&disk),
                "--fs",
                "btrfs",
            ],
            2,
            "unknown --fs \"btrfs\" (erofs or ext4)".to_owned(),
        ),
        (
            vec!["image", "--out", s(&disk)],
            2,
            "--root is required".to_owned(),
        ),
        (
            vec![
                "image",
                "--root",
                s(&tree),
                "--out",
                s(&disk),
                "--data-mib",
                "lots",
            ],
            2,
            "--data-mib \"lots\" is not a whole number".to_owned(),
        ),
        (
            vec![
                "payload",
                "--root",
                s(&tree),
                "--out-dir",
                s(&payload),
                "--image-version",
                "v2",
            ],
            2,
            "--image-version \"v2\" is not dotted numbers".to_owned(),
        ),
        (
            vec![
                "payload",
                "--root",
                s(&tree),
                "--out-dir",
                s(&payload),
                "--slot",
                "C",
            ],
            2,
            "unknown --slot \"C\"".to_owned(),
        ),
        (vec!["flash"], 2, "unknown command \"flash\"".to_owned()),
    ] {
        let out = liftoff_qemu(&args, "UTC");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(&message), "{args:?}: {stderr}");
        assert!(stderr.starts_with("liftoff-qemu: "), "{args:?}: {stderr}");
        assert!(
            listing(&out_dir).is_empty(),
            "{args:?} left {:?}",
            listing(&out_dir)
        );
    }
    // Help is not an error.
    for verb in ["image", "payload", "boot"] {
        let out = liftoff_qemu(&[verb, "--help"], "UTC");
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("usage: liftoff-qemu {verb}")));
    }
}

/// Packs `tree` into `tarball` as root would (owners by number, extended attributes),
/// compressed as its name says.
fn tarball_of(tree: &Path, tarball: &Path) {
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-caf"])
        .arg(tarball)
        .arg("-C")
        .arg(tree)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The Debian root tree of `scripts/build-rootfs` (systemd, containerd) as a tarball: a disk
/// whose ROOT-A `veritysetup` verifies and whose erofs `fsck.erofs` accepts, with the size
/// and time of the build printed for docs/image.md.
#[test]
fn debian_tree_tarball() {
    let dir = TestDir::new("debian");
    let tree = liftoff_image::system::root_tree(liftoff_image::Arch::X86_64)
        .unwrap_or_else(|e| panic!("{e}"));
    let tarball = dir.0.join("root.tar");
    tarball_of(&tree, &tarball);
    let disk = dir.0.join("disk.img");
    let start = std::time::Instant::now();
    let json = built(
        &[
            "image",
            "--arch",
            "x86_64",
            "--root",
            s(&tarball),
            "--out",
            s(&disk),
            "--json",
        ],
        "UTC",
    );
    eprintln!(
        "debian tree: image in {:.1} s, root {} MiB, hash {} KiB",
        start.elapsed().as_secs_f64(),
        json["root_bytes"].as_u64().unwrap() >> 20,
        json["hash_bytes"].as_u64().unwrap() >> 10
    );
    std::fs::remove_file(&tarball).unwrap();
    let root_part = extract(&disk, extent(&json, disk::ROOT_A), &dir.0.join("root-a"));
    let hash_part = extract(&disk, extent(&json, disk::HASH_A), &dir.0.join("hash-a"));
    let out = Command::new("veritysetup")
        .arg("verify")
        .arg(&root_part)
        .arg(&hash_part)
        .arg(json["root_hash"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "veritysetup verify: {out:?}");
    let out = Command::new("fsck.erofs").arg(&root_part).output().unwrap();
    assert!(out.status.success(), "fsck.erofs: {out:?}");
}

/// The whole path a user takes, in a VM: the Debian root tree as a tarball, made into a
/// disk by `liftoff-qemu image`, booted by `liftoff-qemu boot --disk` through OVMF and
/// GRUB until containerd answers and slot A is marked successful. The console shows GRUB
/// booting slot A and PID 1 opening the root with the root hash `image` printed.
#[test]
fn vm_x86_64_image_from_a_tarball_boots_to_containerd() {
    let (work, _scratch) = common::work_dir("image-cli-x86_64");
    let tree = liftoff_image::system::root_tree(liftoff_image::Arch::X86_64)
        .unwrap_or_else(|e| panic!("{e}"));
    let tarball = work.join("root.tar.gz");
    tarball_of(&tree, &tarball);
    let disk = work.join("disk.img");
    let json = built(
        &[
            "image",
            "--arch",
            "x86_64",
            "--root",
            s(&tarball),
            "--out",
            s(&disk),
            "--append",
            "liftoff.handoff=containerd",
            "--json",
        ],
        "UTC",
    );
    std::fs::remove_file(&tarball).unwrap();
    let out = liftoff_qemu(
        &[
            "boot",
            "--arch",
            "x86_64",
            "--disk",
            s(&disk),
            "--timeout",
            "400",
        ],
        "UTC",
    );
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "liftoff-qemu boot: {}\n{console}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(console.contains("the container host is up"), "{console}");
    assert!(
        console.contains("liftoff-grub: booting slot A"),
        "{console}"
    );
    let root_hash = json["root_hash"].as_str().unwrap();
    assert!(
        console
            .lines()
            .any(|l| l.contains("liftoff: verity:") && l.contains(root_hash)),
        "{console}"
    );
    assert!(!console.contains("Kernel panic"), "{console}");
    // Slot A stays the successful slot with priority 1, this boot counted (health keeps
    // the count until it has held for liftoff.stable_after); B was never touched.
    assert_eq!(attributes(&disk, disk::BOOT_A), word(1, 0, true, 1));
    assert_eq!(attributes(&disk, disk::BOOT_B), 0);
    std::fs::write(work.join("console.log"), console.as_bytes()).unwrap();
}

/// `--kernel` with `--modules` naming the cached Debian kernel and its module tree, and
/// `--initramfs` with the initramfs the default disk carries, give the default disk byte for
/// byte; a kernel that is not there is a failure that names it.
#[test]
fn explicit_kernel_modules_and_initramfs_equal_the_default() {
    let dir = TestDir::new("kernel-options");
    let tree = dir.0.join("tree");
    tiny_tree(&tree, false);
    let kernel = liftoff_image::kernel::Kernel::debian(liftoff_image::Arch::X86_64).unwrap();
    let base = [
        "image",
        "--arch",
        "x86_64",
        "--root",
        s(&tree),
        "--boot-mib",
        "64",
        "--json",
    ];
    let default = dir.0.join("default.img");
    let json = built(&[&base[..], &["--out", s(&default)]].concat(), "UTC");
    let explicit = dir.0.join("explicit.img");
    built(
        &[
            &base[..],
            &[
                "--out",
                s(&explicit),
                "--kernel",
                s(&kernel.image),
                "--modules",
                s(&kernel.modules_dir),
            ],
        ]
        .concat(),
        "UTC",
    );
    assert_eq!(sha256(&default), sha256(&explicit), "--kernel --modules");
    // The UKI's .initrd is the initramfs, then the archive with the signed command line.
    let initramfs = dir.0.join("initramfs");
    let uki = fat_file(&default, extent(&json, disk::BOOT_A).0, "liftoff.efi");
    let cmdline = String::from_utf8(section(&uki, ".cmdline").to_vec()).unwrap();
    let tail = uki::signed_cmdline_archive(&cmdline).unwrap();
    let initrd = section(&uki, ".initrd");
    let (head, signed) = initrd.split_at(initrd.len() - tail.len());
    assert_eq!(signed, tail.as_slice());
    std::fs::write(&initramfs, head).unwrap();
    let given = dir.0.join("given.img");
    built(
        &[
            &base[..],
            &["--out", s(&given), "--initramfs", s(&initramfs)],
        ]
        .concat(),
        "UTC",
    );
    assert_eq!(sha256(&default), sha256(&given), "--initramfs");
    // Without --modules the initramfs holds PID 1 only: a smaller, different BOOT-A.
    let bare = dir.0.join("bare.img");
    let bare_json = built(
        &[
            &base[..],
            &["--out", s(&bare), "--kernel", s(&kernel.image)],
        ]
        .concat(),
        "UTC",
    );
    let bare_uki = fat_file(&bare, extent(&bare_json, disk::BOOT_A).0, "liftoff.efi");
    let bare_initramfs = section(&bare_uki, ".initrd").to_vec();
    assert!(bare_initramfs.len() < std::fs::read(&initramfs).unwrap().len() / 2);
    let has_dm_verity = |bytes: &[u8]| String::from_utf8_lossy(bytes).contains("dm-verity.ko");
    assert!(has_dm_verity(&std::fs::read(&initramfs).unwrap()));
    assert!(!has_dm_verity(&bare_initramfs));
    let missing = dir.0.join("no-vmlinuz");
    let out = liftoff_qemu(
        &[
            &base[..],
            &["--out", s(&dir.0.join("x.img")), "--kernel", s(&missing)],
        ]
        .concat(),
        "UTC",
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("the kernel {} is not a file", missing.display())),
        "{stderr}"
    );
    assert!(!dir.0.join("x.img").exists());
}

/// aarch64: signed arm64 shim and GRUB at `EFI/BOOT/BOOTAA64.EFI` and `grubaa64.efi`, a
/// signed arm64 UKI in BOOT-A with Debian's arm64 kernel and no `console=` (SPCR decides), a table `sgdisk -v` accepts, the same bytes in two
/// time zones.
#[test]
fn aarch64_disk() {
    let dir = TestDir::new("aarch64");
    let tree = dir.0.join("tree");
    tiny_tree(&tree, false);
    let args = |out: &Path| {
        vec![
            "image".to_owned(),
            "--arch".into(),
            "aarch64".into(),
            "--root".into(),
            s(&tree).into(),
            "--out".into(),
            s(out).into(),
            "--json".into(),
        ]
    };
    let one = dir.0.join("one.img");
    let two = dir.0.join("two.img");
    let a: Vec<String> = args(&one);
    let json = built(&a.iter().map(String::as_str).collect::<Vec<_>>(), "UTC");
    let b: Vec<String> = args(&two);
    built(
        &b.iter().map(String::as_str).collect::<Vec<_>>(),
        "Asia/Tokyo",
    );
    assert_eq!(sha256(&one), sha256(&two));
    assert_sgdisk_clean(&one);
    for path in ["EFI/BOOT/BOOTAA64.EFI", "EFI/BOOT/grubaa64.efi"] {
        let efi = fat_file(&one, extent(&json, disk::ESP).0, path);
        assert_eq!(PeInfo::parse(&efi).unwrap().machine, 0xaa64, "{path}");
        assert!(signed_by_dev_db(&efi, &dir.0), "{path}");
    }
    let kernel = liftoff_image::kernel::Kernel::debian(liftoff_image::Arch::Aarch64).unwrap();
    let boot_a = extent(&json, disk::BOOT_A).0;
    let uki = fat_file(&one, boot_a, "liftoff.efi");
    assert_eq!(PeInfo::parse(&uki).unwrap().machine, 0xaa64);
    assert!(signed_by_dev_db(&uki, &dir.0));
    assert!(section(&uki, ".linux") == std::fs::read(&kernel.image).unwrap().as_slice());
    let cmdline = String::from_utf8_lossy(section(&uki, ".cmdline")).into_owned();
    // No console named: the kernel takes the one the firmware describes (ACPI SPCR).
    assert!(
        cmdline.ends_with(" nvme_core.io_timeout=4294967295 panic=-1 liftoff.verity=panic")
            && !cmdline.contains("console="),
        "{cmdline}"
    );
    assert_eq!(attributes(&one, disk::BOOT_A), word(1, 0, true, 0));
}

/// `--sector-size 4096` makes a 4Kn disk that the reference tools accept on a loop device
/// with 4096-byte logical blocks: `sgdisk -v` finds no problem and reads the partitions in
/// 4096-byte LBAs (1 MiB aligned, BOOT-A's attributes), libblkid (`partx`) puts them where
/// the image builder says, `fsck.vfat -n` accepts the ESP and BOOT-A (FAT sectors of 4096
/// bytes, as the kernel needs on such a device), `veritysetup verify` accepts ROOT-A and
/// HASH-A. On a 512-byte device the same image has no GPT (sgdisk makes a new one in
/// memory). The root, its hash tree and the GUIDs are those of the 512-byte image; only the
/// table, the FATs and the BIOS boot partition (512-byte images only) differ. Other sizes
/// are refused.
#[test]
fn four_k_sector_disk_on_a_4kn_loop_device() {
    let dir = TestDir::new("fourk");
    let tree = dir.0.join("tree");
    tiny_tree(&tree, false);
    let build = |name: &str, sector: &str| {
        let out = dir.0.join(name);
        let json = built(
            &[
                "image",
                "--arch",
                "x86_64",
                "--root",
                s(&tree),
                "--out",
                s(&out),
                "--boot-mib",
                "64",
                "--sector-size",
                sector,
                "--json",
            ],
            "UTC",
        );
        (out, json)
    };
    let (four_k, json) = build("4k.img", "4096");
    let (legacy, json_512) = build("512.img", "512");
    assert_eq!(json["sector_size"], 4096);
    assert_eq!(json_512["sector_size"], 512);
    assert_eq!(json["root_hash"], json_512["root_hash"]);
    // Partitions 1-8 are the same; the 512-byte image also boots under BIOS, so its BIOS
    // boot partition (10) sits where the 4Kn image's DATA starts, and DATA follows it.
    let (p4k, p512) = (
        json["partitions"].as_array().unwrap(),
        json_512["partitions"].as_array().unwrap(),
    );
    assert_eq!((p4k.len(), p512.len()), (9, 10));
    assert_eq!(p4k[..8], p512[..8]);
    assert_eq!(p512[9]["label"], "BIOS-BOOT");
    assert_eq!(p4k[8]["guid"], p512[8]["guid"]);
    assert_eq!(p4k[8]["first_byte"], p512[9]["first_byte"]);
    assert_ne!(sha256(&four_k), sha256(&legacy));
    assert_sgdisk_clean(&legacy);

    let dev = Loop::attach(&four_k, 4096);
    let (ok, ss) = dev.run("blockdev", &["--getss"]);
    assert!(ok && ss.trim() == "4096", "{ss}");
    let (_, verify) = dev.run("sgdisk", &["-v"]);
    assert!(
        verify.contains("No problems found") && !verify.contains("Creating new GPT"),
        "sgdisk -v {}: {verify}",
        dev.0.display()
    );
    for (number, label, _) in disk::PARTITIONS {
        let (first, bytes) = extent(&json, number);
        assert_eq!(first % (1 << 20), 0, "{label}");
        let (ok, info) = dev.run("sgdisk", &["-i", &number.to_string()]);
        assert!(ok, "{info}");
        let want_first = format!("First sector: {} ", first / 4096);
        let want_last = format!("Last sector: {} ", (first + bytes) / 4096 - 1);
        assert!(info.contains(&want_first), "{label}: {info}");
        assert!(info.contains(&want_last), "{label}: {info}");
        assert!(
            info.contains(&format!("Partition name: '{label}'")),
            "{info}"
        );
        if number == disk::BOOT_A {
            assert!(info.contains("Attribute flags: 0101000000000000"), "{info}");
        }
    }
    let parts = dev.partitions(9);
    for (number, _, _) in disk::PARTITIONS {
        assert_eq!(dev.partition_start(number), extent(&json, number).0);
    }
    for (number, part) in [(disk::ESP, &parts[0]), (disk::BOOT_A, &parts[1])] {
        let out = Command::new("fsck.vfat")
            .arg("-n")
            .arg(part)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fsck.vfat -n {}: {out:?}",
            part.display()
        );
        // Bytes per sector in the boot sector (offset 11): the device's.
        let mut bpb = [0u8; 13];
        std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(part).unwrap(), &mut bpb, 0)
            .unwrap();
        assert_eq!(u16::from_le_bytes([bpb[11], bpb[12]]), 4096, "{number}");
    }
    let out = Command::new("veritysetup")
        .arg("verify")
        .arg(&parts[2])
        .arg(&parts[3])
        .arg(json["root_hash"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "veritysetup verify: {out:?}");
    drop(dev);

    // The 4Kn image on a 512-byte device: no GPT where sgdisk looks for one.
    let dev = Loop::attach(&four_k, 512);
    let (_, verify) = dev.run("sgdisk", &["-v"]);
    assert!(verify.contains("Creating new GPT"), "{verify}");
    drop(dev);

    let out = liftoff_qemu(
        &[
            "image",
            "--root",
            s(&tree),
            "--out",
            s(&dir.0.join("x.img")),
            "--sector-size",
            "2048",
        ],
        "UTC",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unsupported sector size 2048: a Liftoff disk has 512- or 4096-byte sectors"),
        "{out:?}"
    );
    assert!(!dir.0.join("x.img").exists());
}

/// `liftoff-qemu keys` makes a key set (or one around an existing db key and certificate)
/// and never overwrites one; `uefi-vars` writes an OVMF variable store and EC2's
/// `--uefi-data` blob that `virt-fw-vars` (the peer tool) reads back with exactly our PK,
/// KEK and db enrolled and Secure Boot on.
#[test]
fn key_sets_and_uefi_variable_stores() {
    let dir = TestDir::new("keys");
    let set = dir.0.join("set");
    let out = liftoff_qemu(&["keys", "--out", s(&set), "--name", "Acme"], "UTC");
    assert!(out.status.success(), "{out:?}");
    for name in ["PK", "KEK", "db"] {
        assert!(set.join(format!("{name}.crt")).is_file());
        let mode = std::fs::metadata(set.join(format!("{name}.key")))
            .unwrap()
            .permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077, 0);
    }
    let again = liftoff_qemu(&["keys", "--out", s(&set)], "UTC");
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let bring = dir.0.join("bring");
    let out = liftoff_qemu(
        &[
            "keys",
            "--out",
            s(&bring),
            "--db-key",
            s(&set.join("db.key")),
            "--db-cert",
            s(&set.join("db.crt")),
        ],
        "UTC",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(bring.join("db.crt")).unwrap(),
        std::fs::read(set.join("db.crt")).unwrap()
    );
    let half = liftoff_qemu(&["keys", "--out", "x", "--db-key", "k"], "UTC");
    assert_eq!(half.status.code(), Some(2));
    for (arch, aws) in [("x86_64", false), ("aarch64", false), ("x86_64", true)] {
        let file = dir.0.join(format!("{arch}-{aws}.vars"));
        let mut args = vec![
            "uefi-vars",
            "--arch",
            arch,
            "--keys",
            s(&set),
            "--out",
            s(&file),
        ];
        if aws {
            args.push("--aws");
        }
        let out = liftoff_qemu(&args, "UTC");
        assert!(out.status.success(), "{out:?}");
        let shown = Command::new("virt-fw-vars")
            .arg("-i")
            .arg(&file)
            .args(["--print", "--verbose"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.status.success(), "{shown:?}");
        for name in ["PK", "KEK", "db"] {
            assert!(
                text.contains(&format!("subject CN=Acme Secure Boot {name}")),
                "{arch} aws={aws}: {name}: {text}"
            );
        }
        assert_eq!(
            text.matches("subject CN=").count(),
            3,
            "only our keys: {text}"
        );
        assert!(
            text.contains("SecureBootEnable") && text.contains("ON"),
            "{text}"
        );
    }
}
