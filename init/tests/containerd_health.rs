//! The health client against a real containerd on this host (installed by scripts/setup).
//!
//! Starts `containerd` as root with its own root, state and socket in a temporary
//! directory and a configuration that leaves out the plugins that need more than a plain
//! host (CRI), waits for the socket with [`health::version`], compares the answer with
//! what `containerd --version` prints, checks that an unknown method comes back as a gRPC
//! error, and stops containerd.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use liftoff_init::health::{self, Failure};

/// Held while a test spawns processes or needs a listener socket to be closed for good: a
/// process forked by one test thread holds a copy of every descriptor the other has open
/// until it execs, so a listener "closed" at that moment still takes a connection, which
/// is then reset (seen once in CI as "Connection reset by peer").
static FORKS: Mutex<()> = Mutex::new(());

/// Stops containerd and removes its directory however the test ends.
struct Containerd {
    child: Child,
    dir: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SIGTERM first so it removes its sockets; SIGKILL if it does not go.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn containerd_binary() -> PathBuf {
    let path = Path::new("/usr/bin/containerd");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (it installs the containerd package)",
        path.display()
    );
    assert!(
        rustix::process::geteuid().is_root(),
        "this test starts containerd, which needs root"
    );
    path.to_owned()
}

/// `containerd --version` prints `containerd <package> <version> <revision>`.
fn reported_version(bin: &Path) -> (String, String) {
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), 4, "unexpected --version output {text:?}");
    (words[2].to_owned(), words[3].to_owned())
}

fn start(bin: &Path) -> Containerd {
    let dir = std::env::temp_dir().join(format!("liftoff-containerd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "version = 2\n\
         # CRI wants cgroups and CNI; opt writes to /opt. Neither is needed to answer.\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.internal.v1.opt\"]\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--address")
        .arg(dir.join("sock"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Containerd { child, dir }
}

#[test]
fn containerd_answers_with_the_version_it_prints() {
    let bin = containerd_binary();
    let forks = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let (version, revision) = reported_version(&bin);
    let mut containerd = start(&bin);
    drop(forks);
    let socket = containerd.dir.join("sock");

    let started = Instant::now();
    let mut probes = 0;
    let mut last_error;
    let answer = loop {
        probes += 1;
        match health::version(&socket, Duration::from_secs(2)) {
            Ok(v) => break v,
            Err(e) => last_error = e.to_string(),
        }
        if let Ok(Some(status)) = containerd.child.try_wait() {
            let log = std::fs::read_to_string(containerd.dir.join("containerd.log"));
            panic!("containerd exited ({status}) before answering: {last_error}\n{log:?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "containerd did not answer within 30 s: {last_error}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let to_health = started.elapsed();
    assert_eq!(answer.version, version);
    assert_eq!(answer.revision, revision);

    // A healthy containerd answers quickly; time a few probes.
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            health::version(&socket, Duration::from_secs(2)).unwrap(),
            answer
        );
    }
    let per_probe = t.elapsed() / 20;
    eprintln!(
        "containerd {version} answered {} ms after its start ({probes} probes); one probe takes {} us",
        to_health.as_millis(),
        per_probe.as_micros()
    );

    // An unknown method: grpc-go answers trailers-only with status 12 (UNIMPLEMENTED),
    // HPACK-coded with Huffman strings and its dynamic table.
    let err = health::call(
        &socket,
        "/containerd.services.version.v1.Version/NoSuchMethod",
        b"",
        Duration::from_secs(2),
    )
    .unwrap_err();
    match err {
        Failure::Grpc { status, message } => {
            assert_eq!(status, "12");
            assert!(message.contains("NoSuchMethod"), "{message}");
        }
        other => panic!("expected a gRPC error, got {other}"),
    }
}

#[test]
fn a_socket_nobody_listens_on_is_refused_at_once() {
    let dir = std::env::temp_dir().join(format!("liftoff-dead-sock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("sock");
    // A socket file whose listener is gone, as after containerd died.
    let _forks = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let t = Instant::now();
    let e = health::version(&socket, Duration::from_secs(2)).unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(500));
    match &e.failure {
        Failure::Connect(io) => assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{other}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
