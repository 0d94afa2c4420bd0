//! Test helpers: GPT images made by the real `sgdisk`, for 512- and 4096-byte sectors.
//!
//! `sgdisk` on a plain file always uses 512-byte sectors (its BLKSSZGET fails on a file).
//! For 4096-byte sectors the tests run `sgdisk` with `sector_size_shim.c` preloaded; the
//! shim answers BLKSSZGET/BLKPBSZGET with `SHIM_SECTOR_SIZE` and the size ioctls from
//! fstat, so the real tool lays out and verifies a 4Kn disk in an image file. The shim is
//! compiled with `cc` on first use.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds the shim once into the target's test scratch directory, named after a hash of
/// its source, so test binaries share it and nothing is left in /tmp. Compiled under a
/// temporary name and renamed, so concurrent test binaries never load a half-written file.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        const SOURCE: &str = include_str!("sector_size_shim.c");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        SOURCE.hash(&mut h);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(dir).unwrap();
        let out = dir.join(format!("sector_size_shim-{:016x}.so", h.finish()));
        if out.exists() {
            return out;
        }
        let src = dir.join(format!("sector_size_shim-{}.c", std::process::id()));
        let tmp = dir.join(format!("sector_size_shim-{}.so.tmp", std::process::id()));
        std::fs::write(&src, SOURCE).unwrap();
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-ldl")
            .status()
            .expect("running cc for the sector-size shim");
        assert!(st.success(), "building the sector-size shim failed");
        std::fs::remove_file(&src).unwrap();
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// Runs `sgdisk ARGS IMAGE` seeing `sector` bytes per sector; returns stdout+stderr.
pub fn sgdisk(sector: u32, image: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("sgdisk");
    cmd.args(args).arg(image);
    if sector != 512 {
        cmd.env("LD_PRELOAD", shim())
            .env("SHIM_SECTOR_SIZE", sector.to_string());
    }
    let out = cmd.output().expect("running sgdisk (package gdisk)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `sgdisk` that must succeed.
pub fn sgdisk_ok(sector: u32, image: &Path, args: &[&str]) -> String {
    let (ok, text) = sgdisk(sector, image, args);
    assert!(ok, "sgdisk {args:?} failed:\n{text}");
    text
}

/// `sgdisk -v` says "No problems found" and warned about nothing while loading (it
/// silently verifies the copy it recovered from a damaged table otherwise).
pub fn sgdisk_verifies(sector: u32, image: &Path) -> bool {
    let (ok, text) = sgdisk(sector, image, &["-v"]);
    ok && text.contains("No problems found")
        && !["ERROR", "corrupt", "invalid", "Warning", "Problem"]
            .iter()
            .any(|w| text.contains(w))
}

pub const DISK_GUID: &str = "11111111-2222-4333-8444-555555555555";

/// A Liftoff-like disk in a fresh image of `mib` MiB: nine partitions of DESIGN.md
/// section 3 (small sizes), fixed GUIDs, A/B attribute bits on BOOT-A and BOOT-B, DATA
/// filling the rest. sgdisk aligns to 1 MiB by default.
pub fn liftoff_image(dir: &Path, sector: u32, mib: u64) -> PathBuf {
    let image = dir.join(format!("disk-{sector}.img"));
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(mib << 20).unwrap();
    let parts: [(&str, &str, &str); 9] = [
        ("EFI-SYSTEM", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "+2M"),
        ("BOOT-A", "6b636168-7420-6568-2070-6c616e657421", "+2M"),
        ("ROOT-A", "5526016a-1a97-4ea4-b39a-b7c8c6ca4502", "+4M"),
        ("HASH-A", "598f10af-c955-4456-6a99-7720068a6cea", "+1M"),
        ("BOOT-B", "6b636168-7420-6568-2070-6c616e657421", "+2M"),
        ("ROOT-B", "5526016a-1a97-4ea4-b39a-b7c8c6ca4502", "+4M"),
        ("HASH-B", "598f10af-c955-4456-6a99-7720068a6cea", "+1M"),
        ("PRIVATE", "440408bb-eb0b-4328-a6e5-a29038fad706", "+1M"),
        ("DATA", "626f7474-6c65-6474-6861-726d61726b73", "0"),
    ];
    let mut args: Vec<String> = vec!["-o".into(), "-U".into(), DISK_GUID.into()];
    for (i, (name, ty, size)) in parts.iter().enumerate() {
        let n = i + 1;
        args.push(format!("--new={n}:0:{size}"));
        args.push(format!("--typecode={n}:{ty}"));
        args.push(format!("--change-name={n}:{name}"));
        args.push(format!(
            "--partition-guid={n}:{:08x}-0000-4000-8000-{:012x}",
            0xa0 + n,
            n
        ));
    }
    // BOOT-A: priority 2, tries 0, successful; BOOT-B: priority 1, tries 3.
    for a in ["2:set:49", "2:set:56", "5:set:48", "5:set:52", "5:set:53"] {
        args.push(format!("--attributes={a}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sgdisk_ok(sector, &image, &args);
    assert!(
        sgdisk_verifies(sector, &image),
        "sgdisk made an image it does not verify"
    );
    image
}

/// One partition as `sgdisk -i N` describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct SgdiskPart {
    pub type_guid: String,
    pub unique_guid: String,
    pub first: u64,
    pub last: u64,
    pub attributes: u64,
    pub name: String,
}

pub fn sgdisk_info(sector: u32, image: &Path, n: u32) -> SgdiskPart {
    let text = sgdisk_ok(sector, image, &[&format!("--info={n}")]);
    let field = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key:?} in sgdisk -i output:\n{text}"))
            .trim()
            .to_string()
    };
    let first_word = |s: String| s.split_whitespace().next().unwrap().to_string();
    SgdiskPart {
        type_guid: first_word(field("Partition GUID code:")).to_lowercase(),
        unique_guid: field("Partition unique GUID:").to_lowercase(),
        first: first_word(field("First sector:")).parse().unwrap(),
        last: first_word(field("Last sector:")).parse().unwrap(),
        attributes: u64::from_str_radix(&field("Attribute flags:"), 16).unwrap(),
        name: field("Partition name:").trim_matches('\'').to_string(),
    }
}
