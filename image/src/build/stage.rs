//! Steps 1 and 2 of a build: the root tree staged in the work folder (copied or unpacked,
//! with the mount points PID 1 needs and every time stamp at 0), then made into the root
//! file system image (erofs, or ext4 with its inode times fixed by `debugfs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{io_err, remove_tree, BuildError};
use super::spec::ImageSpec;
use crate::root::{self, RootFsType};
use crate::tool::ImageError;

/// Mount points PID 1 needs in the verified root (docs/init.md, "What the image provides").
pub const MOUNT_POINTS: [&str; 6] = ["etc", "local", "opt", "run", "tmp", "var"];

/// Where the root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    Dir(PathBuf),
    Tarball(PathBuf),
}

impl RootSource {
    /// A directory is a tree; a regular file is taken for a tarball (tar says if it is not).
    pub fn of(path: &Path) -> Result<RootSource, BuildError> {
        let meta = std::fs::metadata(path).map_err(|source| BuildError::NoRoot {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            Ok(RootSource::Dir(path.to_path_buf()))
        } else if meta.is_file() {
            Ok(RootSource::Tarball(path.to_path_buf()))
        } else {
            Err(BuildError::NotATree {
                path: path.to_path_buf(),
            })
        }
    }
}

/// Step 1: the root tree in `stage` (which must not exist), with the mount points PID 1
/// needs and every time stamp at 0.
pub fn stage_root(source: &RootSource, stage: &Path) -> Result<(), BuildError> {
    match source {
        RootSource::Dir(tree) => {
            std::fs::create_dir_all(stage)
                .map_err(io_err(format!("creating {}", stage.display())))?;
            // `TREE/.`: the tree's content and its own owner and mode, also when TREE is a
            // symbolic link to the tree.
            let out = Command::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg(tree.join("."))
                .arg(stage)
                .output()
                .map_err(io_err("running cp"))?;
            if !out.status.success() {
                return Err(BuildError::Copy {
                    tree: tree.clone(),
                    output: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
        RootSource::Tarball(tarball) => {
            std::fs::create_dir_all(stage)
                .map_err(io_err(format!("creating {}", stage.display())))?;
            let out = Command::new("tar")
                .arg("-x")
                .arg("-p")
                .arg("--numeric-owner")
                .arg("--same-owner")
                .arg("--xattrs")
                .arg("--xattrs-include=*")
                .arg("-f")
                .arg(tarball)
                .arg("-C")
                .arg(stage)
                .output()
                .map_err(io_err("running tar"))?;
            if !out.status.success() {
                return Err(BuildError::Unpack {
                    tarball: tarball.clone(),
                    output: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
    }
    for dir in MOUNT_POINTS {
        let path = stage.join(dir);
        if path.symlink_metadata().is_err() {
            std::fs::create_dir(&path).map_err(io_err(format!("creating {}", path.display())))?;
            let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(io_err(format!("chmod {}", path.display())))?;
        }
    }
    zero_times(stage)
}

/// Sets the access and modification time of everything under `dir` (itself included,
/// symbolic links themselves) to 0.
fn zero_times(dir: &Path) -> Result<(), BuildError> {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    let zero = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    };
    let mut stack = vec![dir.to_path_buf()];
    let mut dirs = Vec::new();
    while let Some(path) = stack.pop() {
        let meta = path
            .symlink_metadata()
            .map_err(io_err(format!("reading {}", path.display())))?;
        if meta.is_dir() {
            for entry in
                std::fs::read_dir(&path).map_err(io_err(format!("reading {}", path.display())))?
            {
                let entry = entry.map_err(io_err(format!("reading {}", path.display())))?;
                stack.push(entry.path());
            }
            dirs.push(path);
        } else {
            utimensat(CWD, &path, &zero, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
                io_err(format!("setting the times of {}", path.display()))(e.into())
            })?;
        }
    }
    // Folders last: nothing changes them after this.
    for path in dirs.iter().rev() {
        utimensat(CWD, path, &zero, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(format!("setting the times of {}", path.display()))(e.into()))?;
    }
    Ok(())
}

/// `mkfs.ext4 -d` copies each file's access and change times from the stage (the change
/// time cannot be set there); `debugfs` sets both to 0 in the image, by path.
fn fix_ext4_times(stage: &Path, image_path: &Path, work: &Path) -> Result<(), BuildError> {
    let mut script = String::new();
    let mut stack = vec![stage.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(path) = stack.pop() {
        if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            for entry in
                std::fs::read_dir(&path).map_err(io_err(format!("reading {}", path.display())))?
            {
                let entry = entry.map_err(io_err(format!("reading {}", path.display())))?;
                stack.push(entry.path());
            }
        }
        paths.push(path);
    }
    paths.sort();
    for path in paths {
        let rel = path.strip_prefix(stage).unwrap_or(&path);
        let name = format!("/{}", rel.display());
        if name.contains(['"', '\n', '\r']) {
            return Err(BuildError::Ext4Path { path });
        }
        for field in ["atime", "ctime"] {
            script.push_str(&format!("sif \"{name}\" {field} 0\n"));
        }
    }
    let script_path = work.join("debugfs.cmds");
    std::fs::write(&script_path, script)
        .map_err(io_err(format!("writing {}", script_path.display())))?;
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(image_path)
        .env("E2FSPROGS_FAKE_TIME", "1")
        .output()
        .map_err(io_err("running debugfs (e2fsprogs)"))?;
    // debugfs goes on after a failed command and still exits 0; its errors are the stderr
    // lines other than the version banner.
    let errors: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(BuildError::Image(ImageError::Tool {
            command: format!("debugfs -w -f {}", script_path.display()),
            output: errors.join("\n"),
        }));
    }
    Ok(())
}

/// Steps 1 and 2: the root file system image of `spec.root` at `out`.
pub fn make_root_image(
    spec: &ImageSpec,
    out: &Path,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    let source = RootSource::of(&spec.root)?;
    let stage = work.join("tree");
    progress(&match &source {
        RootSource::Dir(p) => format!("copying {}", p.display()),
        RootSource::Tarball(p) => format!("unpacking {}", p.display()),
    });
    stage_root(&source, &stage)?;
    crate::tools::add(&stage, spec.arch)?;
    crate::system::add_files(&stage, &spec.files)?;
    if let Some(kernel) = &spec.boot.modules {
        progress(&format!(
            "installing kernel {}'s container-host modules",
            kernel.version
        ));
        crate::system::install_root_modules(&stage, spec.arch, kernel)?;
    }
    zero_times(&stage)?;
    progress(&format!(
        "making the {} root file system",
        match spec.fs {
            RootFsType::Erofs => "erofs",
            RootFsType::Ext4 => "ext4",
        }
    ));
    root::make_root_fs(&stage, out, spec.fs, &spec.seed)?;
    if spec.fs == RootFsType::Ext4 {
        fix_ext4_times(&stage, out, work)?;
    }
    remove_tree(&stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_sources() {
        let dir = crate::test_work("sources");
        let file = dir.join("root.tar");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(RootSource::of(&dir).unwrap(), RootSource::Dir(dir.clone()));
        assert_eq!(
            RootSource::of(&file).unwrap(),
            RootSource::Tarball(file.clone())
        );
        assert!(matches!(
            RootSource::of(&dir.join("missing")),
            Err(BuildError::NoRoot { .. })
        ));
        assert!(matches!(
            RootSource::of(Path::new("/dev/null")),
            Err(BuildError::NotATree { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The stage gets the mount points it lacks, keeps what it has, and every time is 0.
    #[test]
    fn stage_adds_mount_points_and_zeroes_times() {
        let dir = crate::test_work("stage");
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), "liftoff\n").unwrap();
        std::os::unix::fs::symlink("/run", tree.join("var")).unwrap();
        std::fs::set_permissions(&tree, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
        // Through a symbolic link to the tree: the tree is copied, not the link.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&tree, &link).unwrap();
        let stage = dir.join("stage");
        stage_root(&RootSource::Dir(link), &stage).unwrap();
        assert!(stage.symlink_metadata().unwrap().is_dir());
        for name in MOUNT_POINTS {
            assert!(stage.join(name).symlink_metadata().is_ok(), "{name}");
        }
        assert!(stage
            .join("var")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink());
        let mode = |p: &str| {
            std::os::unix::fs::PermissionsExt::mode(
                &stage.join(p).metadata().unwrap().permissions(),
            ) & 0o7777
        };
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode(""), 0o750, "the tree's own mode");
        assert_eq!(mode("local"), 0o755);
        for p in ["", "etc", "etc/hostname", "var", "tmp"] {
            let meta = stage.join(p).symlink_metadata().unwrap();
            assert_eq!(
                meta.modified().unwrap(),
                std::time::UNIX_EPOCH,
                "{p:?} mtime"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
