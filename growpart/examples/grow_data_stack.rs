//! The DATA growth sequence PID 1 runs, on a real disk, for the QEMU smoke run
//! (`qemu-smoke/run`): open a plain dm-crypt mapping over partition PARTNUM of DISK with a
//! random key, make FSTYPE (ext4 or xfs) in it and mount it at MOUNTPOINT, then grow the
//! partition ([`growpart::grow_data`], BLKPG), the mapping
//! ([`growpart::crypt::grow_crypt`]) and the filesystem
//! ([`growpart::fs::grow_filesystem`], online resize2fs or xfs_growfs), printing one
//! `SMOKE` line per step. Needs root, device-mapper with dm-crypt, mkfs.FSTYPE, mount and
//! resize2fs or xfs_growfs.
//!
//! ```text
//! grow_data_stack DISK PARTITION_DEVICE MOUNTPOINT FSTYPE
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, ExitCode};

fn size_of(path: &Path) -> Result<u64, String> {
    let mut f = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    f.seek(SeekFrom::End(0))
        .map_err(|e| format!("sizing {}: {e}", path.display()))
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let st = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("running {program}: {e}"))?;
    st.success()
        .then_some(())
        .ok_or_else(|| format!("{program} {args:?} failed: {st}"))
}

fn smoke(disk: &Path, part: &Path, mnt: &Path, fstype: &str) -> Result<(), String> {
    let mut key = [0u8; 64];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("reading a key: {e}"))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let params = format!("aes-xts-plain64 {hex} 0 {} 0", part.display());
    let name = "smoke-data";
    let dm = dm::Control::open().map_err(|e| e.to_string())?;
    let target =
        growpart::crypt::crypt_target(name, &params, size_of(part)?).map_err(|e| e.to_string())?;
    let info = dm
        .create_device(name, "", std::slice::from_ref(&target), false)
        .map_err(|e| e.to_string())?;
    let node = info.devnode(Path::new("/dev"));
    println!("SMOKE crypt-before={}", size_of(&node)?);
    let node_s = node.to_string_lossy().into_owned();
    match fstype {
        "ext4" => run("mkfs.ext4", &["-q", "-F", "-b", "4096", &node_s])?,
        "xfs" => run("mkfs.xfs", &["-q", "-f", &node_s])?,
        other => return Err(format!("unknown filesystem type {other}")),
    }
    run("mount", &["-t", fstype, &node_s, &mnt.to_string_lossy()])?;

    let mut file = growpart::open_disk(disk, false).map_err(|e| e.to_string())?;
    let report = growpart::grow_data(&mut file, disk).map_err(|e| e.to_string())?;
    println!(
        "SMOKE partition-changed={} kernel={:?}",
        report.changes(),
        report.kernel
    );
    let length = growpart::crypt::grow_crypt(&dm, name, &params, report.table.plan.new_size())
        .map_err(|e| e.to_string())?;
    println!(
        "SMOKE crypt-length={length} crypt-after={}",
        size_of(&node)?
    );
    let kind =
        growpart::fs::grow_filesystem(&node, mnt, Path::new("/")).map_err(|e| e.to_string())?;
    println!("SMOKE fs={kind:?}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, disk, part, mnt, fstype] = args.as_slice() else {
        eprintln!("usage: grow_data_stack DISK PARTITION_DEVICE MOUNTPOINT FSTYPE");
        return ExitCode::from(2);
    };
    match smoke(Path::new(disk), Path::new(part), Path::new(mnt), fstype) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("SMOKE error: {e}");
            ExitCode::from(1)
        }
    }
}
