//! A small OCI image made locally from Debian's static busybox, as the archive
//! `ctr image import` takes, so a guest can run a real container without a registry.
//!
//! The archive is an OCI image layout (image-spec `image-layout.md`) in a ustar tar:
//!
//! ```text
//! oci-layout                      {"imageLayoutVersion":"1.0.0"}
//! index.json                      one manifest, named by the ref.name annotation
//! blobs/sha256/<manifest digest>  the image manifest: one config, one layer
//! blobs/sha256/<config digest>    architecture, os, the layer's diff_id
//! blobs/sha256/<layer digest>     an uncompressed tar: bin/busybox and its applet links
//! ```
//!
//! Every byte is a function of the busybox binary, the architecture and the name: fixed
//! mtimes, owners and modes, entries in a fixed order, JSON written with keys in a fixed
//! order. The layer is stored uncompressed (`application/vnd.oci.image.layer.v1.tar`),
//! so its digest is also its diff_id.
//!
//! [`busybox`] finds the static busybox of an architecture: the host's
//! `/bin/busybox` (package busybox-static) on x86_64, and for aarch64 the binary from
//! Debian's arm64 busybox-static package, fetched once with `apt-get download` and
//! unpacked with `dpkg -x` under the machine cache (`$LIFTOFF_CACHE/busybox/arm64`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::kernel::cache_dir;
use crate::Arch;

/// The applets linked to `/bin/busybox` in the layer: a shell and what the VM tests'
/// containers run (`tests/tests/vm/container.rs`: addresses, a ping over the CNI bridge,
/// their netns link, a cgroup file, awk to go over a memory limit).
pub const APPLETS: &[&str] = &[
    "awk", "cat", "echo", "grep", "ip", "ls", "ping", "readlink", "sh", "sleep", "true",
];

/// The fixed modification time of every tar entry (2020-01-01T00:00:00Z).
const MTIME: u64 = 1_577_836_800;

#[derive(Debug)]
pub enum OciError {
    /// The host has no static busybox for this architecture.
    HostBusybox { path: PathBuf, source: io::Error },
    /// Creating the cache folder for the arm64 package failed.
    CacheDir { path: PathBuf, source: io::Error },
    /// `apt-get download` or `dpkg -x` could not run or failed.
    Tool { command: String, output: String },
    /// The downloaded package had no single busybox-static .deb.
    NoPackage { dir: PathBuf },
    /// Reading the unpacked binary failed.
    ReadBusybox { path: PathBuf, source: io::Error },
    /// A name does not fit a ustar header (100 bytes).
    NameTooLong { name: String },
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OciError::HostBusybox { path, source } => write!(
                f,
                "reading the host's static busybox {} (package busybox-static): {source}",
                path.display()
            ),
            OciError::CacheDir { path, source } => {
                write!(f, "creating {}: {source}", path.display())
            }
            OciError::Tool { command, output } => write!(f, "{command} failed: {output}"),
            OciError::NoPackage { dir } => {
                write!(
                    f,
                    "no busybox-static .deb downloaded into {}",
                    dir.display()
                )
            }
            OciError::ReadBusybox { path, source } => {
                write!(f, "reading {}: {source}", path.display())
            }
            OciError::NameTooLong { name } => {
                write!(f, "tar entry name {name:?} is longer than 100 bytes")
            }
        }
    }
}

impl std::error::Error for OciError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OciError::HostBusybox { source, .. }
            | OciError::CacheDir { source, .. }
            | OciError::ReadBusybox { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The OCI (Go) name of an architecture.
pub fn oci_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

/// The static busybox binary of `arch`. For aarch64 the arm64 package is downloaded and
/// unpacked into the cache on first use (needs network and dpkg's arm64 architecture,
/// both set up by `scripts/setup`).
pub fn busybox(arch: Arch) -> Result<Vec<u8>, OciError> {
    match arch {
        Arch::X86_64 => {
            let path = PathBuf::from("/bin/busybox");
            std::fs::read(&path).map_err(|source| OciError::HostBusybox { path, source })
        }
        Arch::Aarch64 => {
            let dir = cache_dir().join("busybox/arm64");
            let bin = dir.join("root/bin/busybox");
            if !bin.exists() {
                unpack_arm64(&dir)?;
            }
            std::fs::read(&bin).map_err(|source| OciError::ReadBusybox { path: bin, source })
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), OciError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| OciError::Tool {
        command: command.clone(),
        output: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(OciError::Tool {
            command,
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Downloads busybox-static:arm64 into `dir` and unpacks it into `dir/root`, through a
/// temporary folder renamed into place so a concurrent or interrupted run leaves no half
/// tree.
fn unpack_arm64(dir: &Path) -> Result<(), OciError> {
    let tmp = dir.join(format!("tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|source| OciError::CacheDir {
        path: tmp.clone(),
        source,
    })?;
    run(Command::new("apt-get")
        .arg("download")
        .arg("busybox-static:arm64")
        .current_dir(&tmp))?;
    let deb = std::fs::read_dir(&tmp)
        .map_err(|source| OciError::CacheDir {
            path: tmp.clone(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| OciError::NoPackage { dir: tmp.clone() })?;
    run(Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(tmp.join("root")))?;
    let root = dir.join("root");
    if std::fs::rename(tmp.join("root"), &root).is_err() && !root.join("bin/busybox").exists() {
        return Err(OciError::ReadBusybox {
            path: root.join("bin/busybox"),
            source: io::Error::other("unpacked tree could not be moved into place"),
        });
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", verity::hex::encode(&Sha256::digest(data)))
}

/// The kind of a tar entry.
enum Entry<'a> {
    Dir,
    File { mode: u32, data: &'a [u8] },
    Symlink { target: &'a str },
}

/// Writes `value` as a zero-padded octal number with a NUL into `field`.
/// A value too wide for the field keeps its low digits.
fn octal(field: &mut [u8], value: u64) {
    let Some((nul, digits)) = field.split_last_mut() else {
        return;
    };
    let text = format!("{value:0width$o}", width = digits.len());
    for (digit, t) in digits.iter_mut().rev().zip(text.bytes().rev()) {
        *digit = t;
    }
    *nul = 0;
}

/// Copies `text` into `h` from byte `at` on (the caller checked that it fits).
fn put(h: &mut [u8], at: usize, text: &str) {
    for (byte, t) in h.iter_mut().skip(at).zip(text.bytes()) {
        *byte = t;
    }
}

/// Appends one ustar entry (header, data, padding to 512 bytes) owned by root.
fn tar_entry(out: &mut Vec<u8>, name: &str, entry: Entry<'_>) -> Result<(), OciError> {
    let too_long = || OciError::NameTooLong {
        name: name.to_owned(),
    };
    if name.len() > 100 {
        return Err(too_long());
    }
    let mut h = [0u8; 512];
    put(&mut h, 0, name);
    let (mode, size, kind, data): (u32, u64, u8, &[u8]) = match entry {
        Entry::Dir => (0o755, 0, b'5', &[]),
        Entry::File { mode, data } => (mode, data.len() as u64, b'0', data),
        Entry::Symlink { target } => {
            if target.len() > 100 {
                return Err(too_long());
            }
            put(&mut h, 157, target);
            (0o777, 0, b'2', &[])
        }
    };
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], MTIME);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    // The checksum is computed with its own field as eight spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    Ok(())
}

/// Ends a tar stream with its two zero blocks.
fn tar_end(out: &mut Vec<u8>) {
    out.resize(out.len() + 1024, 0);
}

/// The layer: `bin/` with `busybox` (mode 0755) and one symbolic link to it per applet.
pub fn layer(busybox: &[u8]) -> Result<Vec<u8>, OciError> {
    let mut out = Vec::new();
    tar_entry(&mut out, "bin/", Entry::Dir)?;
    tar_entry(
        &mut out,
        "bin/busybox",
        Entry::File {
            mode: 0o755,
            data: busybox,
        },
    )?;
    for applet in APPLETS {
        tar_entry(
            &mut out,
            &format!("bin/{applet}"),
            Entry::Symlink { target: "busybox" },
        )?;
    }
    tar_end(&mut out);
    Ok(out)
}

/// The pieces of an image, each blob with its digest.
#[derive(Debug, Clone)]
pub struct Image {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub index: Vec<u8>,
}

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// JSON string literal of `s` (names and references here are plain ASCII; quotes,
/// backslashes and control characters are escaped anyway).
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The image of `busybox` for `arch`, named `reference` (a full name such as
/// `docker.io/liftoff/busybox:test`). The index carries both the OCI `ref.name`
/// annotation (the tag) and containerd's `io.containerd.image.name` (the full name), so
/// `ctr image import` names the image `reference` whatever its `--base-name`.
pub fn image(arch: Arch, reference: &str, busybox: &[u8]) -> Result<Image, OciError> {
    let layer = layer(busybox)?;
    let layer_digest = digest(&layer);
    let a = oci_arch(arch);
    let config = format!(
        concat!(
            "{{\"architecture\":\"{a}\",\"os\":\"linux\",",
            "\"config\":{{\"Cmd\":[\"/bin/sh\"],\"Env\":[\"PATH=/bin\"]}},",
            "\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{d}\"]}}}}"
        ),
        a = a,
        d = layer_digest
    )
    .into_bytes();
    let manifest = format!(
        concat!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{mt}\",",
            "\"config\":{{\"mediaType\":\"{ct}\",\"digest\":\"{cd}\",\"size\":{cs}}},",
            "\"layers\":[{{\"mediaType\":\"{lt}\",\"digest\":\"{ld}\",\"size\":{ls}}}]}}"
        ),
        mt = MANIFEST_TYPE,
        ct = CONFIG_TYPE,
        cd = digest(&config),
        cs = config.len(),
        lt = LAYER_TYPE,
        ld = layer_digest,
        ls = layer.len()
    )
    .into_bytes();
    let tag = reference
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or("latest", |(_, t)| t);
    let index = format!(
        concat!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",",
            "\"manifests\":[{{\"mediaType\":\"{mt}\",\"digest\":\"{md}\",\"size\":{ms},",
            "\"platform\":{{\"architecture\":\"{a}\",\"os\":\"linux\"}},",
            "\"annotations\":{{\"io.containerd.image.name\":{name},",
            "\"org.opencontainers.image.ref.name\":{tag}}}}}]}}"
        ),
        mt = MANIFEST_TYPE,
        md = digest(&manifest),
        ms = manifest.len(),
        a = a,
        name = json_str(reference),
        tag = json_str(tag)
    )
    .into_bytes();
    Ok(Image {
        layer,
        config,
        manifest,
        index,
    })
}

impl Image {
    /// The OCI layout as one tar: `oci-layout`, `index.json`, then the blobs.
    pub fn archive(&self) -> Result<Vec<u8>, OciError> {
        let mut out = Vec::new();
        tar_entry(
            &mut out,
            "oci-layout",
            Entry::File {
                mode: 0o644,
                data: b"{\"imageLayoutVersion\":\"1.0.0\"}",
            },
        )?;
        tar_entry(
            &mut out,
            "index.json",
            Entry::File {
                mode: 0o644,
                data: &self.index,
            },
        )?;
        for dir in ["blobs/", "blobs/sha256/"] {
            tar_entry(&mut out, dir, Entry::Dir)?;
        }
        for blob in [&self.manifest, &self.config, &self.layer] {
            let d = digest(blob);
            let hex = d.trim_start_matches("sha256:");
            tar_entry(
                &mut out,
                &format!("blobs/sha256/{hex}"),
                Entry::File {
                    mode: 0o644,
                    data: blob,
                },
            )?;
        }
        tar_end(&mut out);
        Ok(out)
    }
}

/// The archive `ctr image import` takes for `arch`'s busybox, named `reference`.
pub fn busybox_archive(arch: Arch, reference: &str) -> Result<Vec<u8>, OciError> {
    image(arch, reference, &busybox(arch)?)?.archive()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("liftoff-oci-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn tool(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// sha256sum agrees with `digest`, for a table of inputs.
    #[test]
    fn digest_matches_sha256sum() {
        let dir = tmp("digest");
        for (i, data) in [&b""[..], b"abc", &[0u8; 5000]].iter().enumerate() {
            let path = dir.join(i.to_string());
            std::fs::write(&path, data).unwrap();
            let out = tool(Command::new("sha256sum").arg(&path));
            let hex = out.split_whitespace().next().unwrap();
            assert_eq!(digest(data), format!("sha256:{hex}"));
        }
    }

    /// The binary found for each architecture is a 64-bit ELF for that machine (e_machine
    /// 62 is x86-64, 183 is AArch64), statically linked (no PT_INTERP program header).
    #[test]
    fn busybox_is_a_static_binary_of_the_architecture() {
        for (arch, machine) in [(Arch::X86_64, 62u16), (Arch::Aarch64, 183)] {
            let bin = busybox(arch).unwrap();
            assert_eq!(&bin[..5], b"\x7fELF\x02", "{arch}");
            assert_eq!(u16::from_le_bytes([bin[18], bin[19]]), machine, "{arch}");
            let phoff = u64::from_le_bytes(bin[32..40].try_into().unwrap()) as usize;
            let phentsize = usize::from(u16::from_le_bytes([bin[54], bin[55]]));
            let phnum = usize::from(u16::from_le_bytes([bin[56], bin[57]]));
            for i in 0..phnum {
                let at = phoff + i * phentsize;
                let kind = u32::from_le_bytes(bin[at..at + 4].try_into().unwrap());
                assert_ne!(kind, 3, "{arch} busybox has PT_INTERP: not static");
            }
        }
    }

    /// GNU tar lists and extracts the layer as written: the binary byte for byte, the
    /// links, the modes, owners and mtime.
    #[test]
    fn gnu_tar_reads_the_layer() {
        let dir = tmp("layer");
        let bin = b"\x7fELF not really, but any bytes".repeat(100);
        let tar = dir.join("layer.tar");
        std::fs::write(&tar, layer(&bin).unwrap()).unwrap();
        let listing = tool(
            Command::new("tar")
                .arg("--numeric-owner")
                .arg("--full-time")
                .arg("-tvf")
                .arg(&tar)
                .env("TZ", "UTC"),
        );
        let mut expected = vec![
            "drwxr-xr-x 0/0 0 2020-01-01 00:00:00 bin/".to_owned(),
            format!(
                "-rwxr-xr-x 0/0 {} 2020-01-01 00:00:00 bin/busybox",
                bin.len()
            ),
        ];
        for a in APPLETS {
            expected.push(format!(
                "lrwxrwxrwx 0/0 0 2020-01-01 00:00:00 bin/{a} -> busybox"
            ));
        }
        let got: Vec<String> = listing
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(got, expected);
        let out = dir.join("x");
        std::fs::create_dir_all(&out).unwrap();
        tool(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&out));
        assert_eq!(std::fs::read(out.join("bin/busybox")).unwrap(), bin);
        assert_eq!(
            std::fs::read_link(out.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
    }

    /// The archive unpacks to a layout whose every blob is named by its sha256sum, and
    /// whose index, manifest and config point at each other by digest and size.
    #[test]
    fn archive_is_a_consistent_layout() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let dir = tmp(&format!("layout-{arch}"));
            let img = image(arch, "docker.io/liftoff/busybox:test", b"busybox bytes").unwrap();
            let tar = dir.join("image.tar");
            std::fs::write(&tar, img.archive().unwrap()).unwrap();
            let listing = tool(Command::new("tar").arg("-tf").arg(&tar));
            let names: Vec<&str> = listing.lines().collect();
            let blob = |b: &[u8]| format!("blobs/sha256/{}", &digest(b)[7..]);
            assert_eq!(
                names,
                [
                    "oci-layout",
                    "index.json",
                    "blobs/",
                    "blobs/sha256/",
                    &blob(&img.manifest),
                    &blob(&img.config),
                    &blob(&img.layer),
                ]
            );
            let out = dir.join("x");
            std::fs::create_dir_all(&out).unwrap();
            tool(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&out));
            let sums = tool(
                Command::new("sha256sum")
                    .arg("--")
                    .args(names[4..].iter().map(|n| out.join(n))),
            );
            for line in sums.lines() {
                let (hex, path) = line.split_once("  ").unwrap();
                assert!(path.ends_with(hex), "{line}");
            }
            let index = String::from_utf8(img.index.clone()).unwrap();
            let manifest = String::from_utf8(img.manifest.clone()).unwrap();
            let config = String::from_utf8(img.config.clone()).unwrap();
            assert!(index.contains(&format!(
                "\"digest\":\"{}\",\"size\":{}",
                digest(&img.manifest),
                img.manifest.len()
            )));
            assert!(index.contains("\"org.opencontainers.image.ref.name\":\"test\""));
            assert!(index.contains(&format!("\"architecture\":\"{}\"", oci_arch(arch))));
            assert!(manifest.contains(&format!(
                "\"digest\":\"{}\",\"size\":{}",
                digest(&img.config),
                img.config.len()
            )));
            assert!(manifest.contains(&format!(
                "\"digest\":\"{}\",\"size\":{}",
                digest(&img.layer),
                img.layer.len()
            )));
            assert!(config.contains(&format!("\"diff_ids\":[\"{}\"]", digest(&img.layer))));
            // Same inputs, same bytes.
            let again = image(arch, "docker.io/liftoff/busybox:test", b"busybox bytes").unwrap();
            assert_eq!(again.archive().unwrap(), img.archive().unwrap());
        }
    }

    /// skopeo (a real OCI implementation) reads the layout and copies it, checking every
    /// digest on the way.
    #[test]
    fn skopeo_accepts_the_layout() {
        if Command::new("skopeo").arg("--version").output().is_err() {
            panic!("skopeo is missing: scripts/setup installs it");
        }
        let dir = tmp("skopeo");
        let bin = std::fs::read("/bin/busybox").unwrap();
        let tar = dir.join("image.tar");
        let img = image(Arch::X86_64, "docker.io/liftoff/busybox:test", &bin).unwrap();
        std::fs::write(&tar, img.archive().unwrap()).unwrap();
        let out = dir.join("x");
        std::fs::create_dir_all(&out).unwrap();
        tool(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&out));
        let inspect = tool(
            Command::new("skopeo")
                .arg("inspect")
                .arg("--raw")
                .arg(format!("oci:{}:test", out.display())),
        );
        assert_eq!(inspect.as_bytes(), &img.manifest[..]);
        let copy = dir.join("copy");
        tool(
            Command::new("skopeo")
                .arg("copy")
                .arg(format!("oci:{}:test", out.display()))
                .arg(format!("dir:{}", copy.display())),
        );
        assert_eq!(
            std::fs::read(copy.join(&digest(&img.layer)[7..])).unwrap(),
            img.layer
        );
    }
}
