//! Growing the filesystem inside the grown partition (or dm-crypt mapping), with the
//! tools of the running root: `resize2fs DEVICE` for ext2/3/4 (online when mounted) and
//! `xfs_growfs MOUNTPOINT` for xfs (xfs only grows mounted).
//!
//! The steps are split so each can be tested: [`detect`] reads the superblock magic,
//! [`grow_command`] builds the command (pure), [`run`] executes it, optionally chrooted
//! into the root that holds the tools (PID 1 before switch_root: `/sysroot`). Inside a
//! chroot the device and mount-point paths are looked up in that root, so the caller must
//! make them visible there (PID 1 runs this after moving /dev and the DATA mount into the
//! new root, or after switch_root).

#![allow(unsafe_code)]

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use gpt::BlockIo;

use crate::Error;

/// A filesystem growpart knows how to grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext2, ext3 or ext4 (grown by `resize2fs`).
    Ext,
    /// XFS (grown by `xfs_growfs`).
    Xfs,
}

/// ext2/3/4: superblock at byte 1024, `s_magic` (0xEF53, little-endian) at offset 56.
const EXT_MAGIC_AT: u64 = 1024 + 56;
/// XFS: "XFSB" at byte 0.
const XFS_MAGIC: [u8; 4] = *b"XFSB";

/// Which filesystem `dev` holds, from its superblock magic; `None` if neither.
pub fn detect<D: BlockIo + ?Sized>(dev: &D) -> io::Result<Option<FsKind>> {
    let mut head = [0u8; 4];
    dev.read_at(0, &mut head)?;
    if head == XFS_MAGIC {
        return Ok(Some(FsKind::Xfs));
    }
    let mut magic = [0u8; 2];
    dev.read_at(EXT_MAGIC_AT, &mut magic)?;
    Ok((u16::from_le_bytes(magic) == 0xEF53).then_some(FsKind::Ext))
}

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCommand {
    /// Absolute path of the program, as seen inside the root it runs in.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<OsString>,
}

/// Where the tools live in a merged-/usr or classic root, first match wins.
const SBIN_DIRS: [&str; 2] = ["usr/sbin", "sbin"];

/// The command that grows `kind` on `device` mounted at `mountpoint`. `root` is the tree
/// holding the tools; the returned program path is relative to that root (absolute inside
/// it), so it can be run chrooted. Falls back to `/usr/sbin/<tool>` if `root` has neither.
pub fn grow_command(kind: FsKind, root: &Path, device: &Path, mountpoint: &Path) -> ToolCommand {
    let (tool, arg) = match kind {
        FsKind::Ext => ("resize2fs", device),
        FsKind::Xfs => ("xfs_growfs", mountpoint),
    };
    let dir = SBIN_DIRS
        .into_iter()
        .find(|d| root.join(d).join(tool).exists())
        .unwrap_or("usr/sbin");
    ToolCommand {
        program: Path::new("/").join(dir).join(tool),
        args: vec![arg.as_os_str().to_owned()],
    }
}

/// Runs `cmd`, chrooted into `root` unless `root` is `/`; a non-zero exit is an error that
/// carries the tool's output.
pub fn run(cmd: &ToolCommand, root: &Path) -> Result<(), Error> {
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args);
    if root != Path::new("/") {
        let dir = CString::new(root.as_os_str().as_bytes()).map_err(|_| Error::Tool {
            program: cmd.program.clone(),
            source: io::ErrorKind::InvalidInput.into(),
        })?;
        // SAFETY: the closure runs in the forked child before exec and only calls chroot(2)
        // and chdir(2), both async-signal-safe raw syscalls in rustix, on a CString
        // allocated before the fork (a `&CStr` path is passed through without allocating);
        // it touches no locks or allocator state.
        unsafe {
            c.pre_exec(move || {
                rustix::process::chroot(dir.as_c_str())?;
                rustix::process::chdir(c"/")?;
                Ok(())
            });
        }
    }
    let out = c.output().map_err(|source| Error::Tool {
        program: cmd.program.clone(),
        source,
    })?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        return Err(Error::ToolFailed {
            program: cmd.program.clone(),
            status: out.status.to_string(),
            output: text,
        });
    }
    Ok(())
}

/// Detects the filesystem on `device` (opened for reading) and grows it with the root's
/// tool. Returns the kind grown, or `None` when there is no ext or xfs filesystem.
pub fn grow_filesystem(
    device: &Path,
    mountpoint: &Path,
    root: &Path,
) -> Result<Option<FsKind>, Error> {
    grow_filesystem_with(device, mountpoint, root, run)
}

/// [`grow_filesystem`], with the tool started by `run` (given the command and `root`), for
/// a caller with its own way of starting programs: PID 1 does without `std::process`.
pub fn grow_filesystem_with<F>(
    device: &Path,
    mountpoint: &Path,
    root: &Path,
    run: F,
) -> Result<Option<FsKind>, Error>
where
    F: FnOnce(&ToolCommand, &Path) -> Result<(), Error>,
{
    let dev = std::fs::File::open(device).map_err(|source| Error::Open {
        device: device.to_path_buf(),
        source,
    })?;
    let kind = detect(&dev).map_err(|source| Error::Open {
        device: device.to_path_buf(),
        source,
    })?;
    let Some(kind) = kind else { return Ok(None) };
    run(&grow_command(kind, root, device, mountpoint), root)?;
    Ok(Some(kind))
}
