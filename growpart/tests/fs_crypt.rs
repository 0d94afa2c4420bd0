//! The separate growth steps PID 1 runs after the partition grew: the filesystem (with the
//! real resize2fs) and the dm-crypt mapping (through a recording double; dm itself is
//! tested in QEMU guests).

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

use gpt::testing::MemDisk;
use growpart::crypt::{crypt_target, grow_crypt, TableReloader};
use growpart::fs::{detect, grow_command, run, FsKind, ToolCommand};
use growpart::Error;

fn mkfs(tool: &str, args: &[&str], image: &Path, mib: u64) {
    std::fs::File::create(image)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let out = Command::new(tool).args(args).arg(image).output().unwrap();
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ext_blocks(image: &Path) -> u64 {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Block count:"))
        .unwrap();
    line.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn detects_filesystems_made_by_mkfs() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], u64, Option<FsKind>); 4] = [
        ("mkfs.ext4", &["-q", "-F"], 16, Some(FsKind::Ext)),
        ("mkfs.ext2", &["-q", "-F"], 16, Some(FsKind::Ext)),
        ("mkfs.xfs", &["-q", "-f"], 320, Some(FsKind::Xfs)),
        ("mkfs.vfat", &[], 16, None),
    ];
    for (tool, args, mib, want) in cases {
        let image = dir.path().join(format!("{tool}.img"));
        mkfs(tool, args, &image, mib);
        let f = std::fs::File::open(&image).unwrap();
        assert_eq!(detect(&f).unwrap(), want, "{tool}");
    }
    assert_eq!(detect(&MemDisk::zeroed(4096)).unwrap(), None);
    assert!(
        detect(&MemDisk::zeroed(512)).is_err(),
        "short device must be an error"
    );
}

#[test]
fn commands_use_the_roots_tools() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sbin")).unwrap();
    std::fs::write(root.join("sbin/resize2fs"), "").unwrap();
    let dev = Path::new("/dev/dm-0");
    let mnt = Path::new("/local");
    let cases = [
        (FsKind::Ext, root, "/sbin/resize2fs", "/dev/dm-0"),
        (FsKind::Xfs, root, "/usr/sbin/xfs_growfs", "/local"),
        (
            FsKind::Ext,
            Path::new("/nonexistent"),
            "/usr/sbin/resize2fs",
            "/dev/dm-0",
        ),
    ];
    for (kind, root, program, arg) in cases {
        let c = grow_command(kind, root, dev, mnt);
        assert_eq!(
            c,
            ToolCommand {
                program: PathBuf::from(program),
                args: vec![arg.into()]
            },
            "{kind:?} {root:?}"
        );
    }
}

/// resize2fs from the running root (here the host's /) grows an enlarged ext4 image.
#[test]
fn resize2fs_grows_ext4() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("data.img");
    mkfs("mkfs.ext4", &["-q", "-F", "-b", "4096"], &image, 16);
    assert_eq!(ext_blocks(&image), 4096);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let c = grow_command(FsKind::Ext, Path::new("/"), &image, Path::new("/unused"));
    run(&c, Path::new("/")).unwrap();
    assert_eq!(ext_blocks(&image), 12288);
    // Not a filesystem: the tool's own message comes back.
    let junk = dir.path().join("junk.img");
    std::fs::File::create(&junk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let err = run(
        &grow_command(FsKind::Ext, Path::new("/"), &junk, Path::new("/x")),
        Path::new("/"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::ToolFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("resize2fs failed"), "{err}");
}

/// Chrooted: the program path is resolved inside the root (busybox-static stands in for a
/// root's tool; it answers "applet not found" for resize2fs, which proves it ran there).
#[test]
fn runs_chrooted_in_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("usr/sbin/resize2fs")).unwrap();
    let c = grow_command(FsKind::Ext, root, Path::new("/dev/x"), Path::new("/x"));
    assert_eq!(c.program, Path::new("/usr/sbin/resize2fs"));
    match run(&c, root) {
        Err(Error::ToolFailed { output, .. }) => {
            assert!(output.contains("applet not found"), "{output}")
        }
        other => panic!("{other:?}"),
    }
    // Missing from the root: a spawn error naming the program.
    let err = run(
        &grow_command(FsKind::Xfs, root, Path::new("/d"), Path::new("/m")),
        root,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Tool { .. }) && err.to_string().contains("xfs_growfs"),
        "{err}"
    );
}

/// (mapping, start, length, target type, parameters) of each reloaded target.
type Reload = (String, u64, u64, String, String);

#[derive(Default)]
struct Recorder {
    calls: RefCell<Vec<Reload>>,
    fail: bool,
}

impl TableReloader for Recorder {
    fn reload(&self, name: &str, targets: &[dm::Target]) -> Result<(), dm::Error> {
        for t in targets {
            self.calls.borrow_mut().push((
                name.into(),
                t.start,
                t.length,
                t.target_type.clone(),
                t.params.clone(),
            ));
        }
        if self.fail {
            return Err(dm::Error::StatusTooLarge(name.into()));
        }
        Ok(())
    }
}

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[test]
fn crypt_table_lengths() {
    let params = |offset: u64| format!("aes-xts-plain64 {KEY} 0 /dev/vda9 {offset}");
    let cases: [(String, u64, Option<u64>); 8] = [
        (params(0), 100 << 20, Some(204_800)),
        (params(0), (100 << 20) + 511, Some(204_800)),
        (params(2048), 100 << 20, Some(202_752)),
        (
            format!("{} 1 sector_size:4096", params(0)),
            1 << 30,
            Some(2_097_152),
        ),
        (
            format!("{} 1 sector_size:4096", params(1)),
            (1 << 30) + 4096,
            Some(2_097_152),
        ),
        (format!("{} 1 sector_size:1000", params(0)), 1 << 30, None),
        (params(204_800), 100 << 20, None),
        ("aes-xts-plain64 key".to_owned(), 1 << 30, None),
    ];
    for (p, bytes, want) in cases {
        match (crypt_target("data", &p, bytes), want) {
            (Ok(t), Some(len)) => {
                assert_eq!(
                    (t.start, t.length, t.target_type.as_str()),
                    (0, len, "crypt")
                );
                assert_eq!(t.params, p, "parameters (and key) must be kept");
            }
            (Err(Error::CryptParams { name }), None) => assert_eq!(name, "data"),
            (got, want) => panic!("{bytes}: {got:?} vs {want:?}"),
        }
    }
}

#[test]
fn grow_crypt_reloads_once_with_the_new_length() {
    let params = format!("aes-xts-plain64 {KEY} 0 /dev/vda9 0");
    let r = Recorder::default();
    assert_eq!(
        grow_crypt(&r, "liftoff-data", &params, 1 << 30).unwrap(),
        2_097_152
    );
    assert_eq!(
        r.calls.borrow().as_slice(),
        &[(
            "liftoff-data".to_owned(),
            0,
            2_097_152,
            "crypt".to_owned(),
            params.clone()
        )]
    );
    let failing = Recorder {
        fail: true,
        ..Recorder::default()
    };
    let err = grow_crypt(&failing, "liftoff-data", &params, 1 << 30).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("reloading dm-crypt mapping liftoff-data"),
        "{text}"
    );
    assert!(
        !text.contains(KEY) && !format!("{err:?}").contains(KEY),
        "key leaked into an error"
    );
}
