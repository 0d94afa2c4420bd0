//! VM test of issue 15's workload: the verified Debian root booted through PID 1 with
//! `liftoff.handoff=containerd` (PID 1 supervises containerd; no systemd) imports a small
//! OCI image made locally from busybox (`liftoff_image::oci`) with `ctr` and runs it in
//! its own network namespace on a CNI bridge with a memory limit; then containerd is
//! killed, PID 1 restarts it, and a container started before keeps running.
//!
//! The image's `/usr/bin/containerd` is a wrapper that, at its first start only, starts
//! the workload script in a session of its own and then becomes the real containerd. The
//! script waits for PID 1's health line, reports `liftoff-workload: ...` lines (and the
//! container its `LIFTOFF-CT ...` lines) on the console and ends with `kill -TERM 1`: PID 1
//! shuts down (containers included) and powers off. The host asserts on the console.
//!
//! The image is on the read-only erofs root; containerd keeps its content and snapshots
//! in /var/lib/containerd, on the encrypted DATA file system PID 1 binds /var from.

use std::time::Duration;

use liftoff_image::disk::DiskSpec;
use liftoff_image::kernel::Kernel;
use liftoff_image::root::RootFsType;
use liftoff_image::system::{self, BuiltSystem, RootFile, SystemSpec};
use liftoff_image::{oci, Arch};
use liftoff_probe::process_lines;
use liftoff_qemu::vm::{Bus, Disk, Vm, VmConfig};

use crate::common;

const TIMEOUT: Duration = Duration::from_secs(300);

const IMAGE_REF: &str = "docker.io/liftoff/busybox:test";
const ARCHIVE: &str = "/usr/share/liftoff-test/busybox-oci.tar";
const SCRIPT: &str = "/usr/local/bin/liftoff-workload";

/// The container prints this followed by `6*7` as its shell computes it, so the line can
/// only come from busybox's shell running inside the container (the script's own text,
/// should it ever reach the console, has `$((6*7))` instead).
const MARKER: &str = "LIFTOFF-CONTAINER-MARKER-42";

/// `ctr run --memory-limit`: 32 MiB, the container's `memory.max`.
const MEMORY_LIMIT: u64 = 32 << 20;

/// The CNI network is the product's, `liftoff_image::system::CNI_CONFLIST` (10.88.0.0/24,
/// the bridge the gateway).
const SUBNET_PREFIX: &str = "10.88.0.";
const GATEWAY: &str = "10.88.0.1";

/// The image's `/usr/bin/containerd`: at the first start it records its pid (which the
/// real containerd keeps through `exec`) and starts the workload script in its own
/// session, so neither PID 1's restart nor containerd's death touches it.
const CONTAINERD_WRAPPER: &str = "#!/bin/sh
if [ ! -e /run/liftoff-workload/pid ]; then
  mkdir -p /run/liftoff-workload
  echo $$ > /run/liftoff-workload/pid
  setsid /usr/local/bin/liftoff-workload < /dev/null > /dev/console 2>&1 &
fi
exec /usr/bin/containerd.real \"$@\"
";

/// What the first container (`t1`, `--cni`, `--memory-limit`) runs: its output, its
/// network namespace and addresses, the gateway over the bridge, its cgroup's
/// `memory.max`, and awk doubling a string until the limit bites (the OOM killer ends
/// awk with SIGKILL, exit 137, and the cgroup counts an oom_kill). ctr's default spec
/// mounts no cgroup file system; the script asks for one, read-only (without a cgroup
/// namespace it shows the whole tree, the container's cgroup at the path
/// /proc/self/cgroup names). No single quotes: the script passes it to `sh -c '...'`.
const T1: &str = r#"echo LIFTOFF-CONTAINER-MARKER-$((6*7))
echo LIFTOFF-CT netns $(readlink /proc/self/ns/net)
echo LIFTOFF-CT links $(ls /sys/class/net)
echo LIFTOFF-CT inet $(ip -4 -o addr show dev eth0)
ping -c 1 -W 10 @GATEWAY@ > /dev/null && echo LIFTOFF-CT gateway answers
cg=$(cat /proc/self/cgroup)
echo LIFTOFF-CT cgroup ${cg#0::}
m=/sys/fs/cgroup${cg#0::}
[ -e $m/memory.max ] || m=/sys/fs/cgroup
echo LIFTOFF-CT memory.max $(cat $m/memory.max 2>&1)
awk "BEGIN { s = \"x\"; while (1) s = s s }"
echo LIFTOFF-CT hog exit $?
echo LIFTOFF-CT $(grep -w oom_kill $m/memory.events 2>&1)"#;

/// The workload script (see the module's doc). Stops at the first failed step with
/// `liftoff-workload: FAILED: ...`; powers off either way.
const WORKLOAD: &str = r#"#!/bin/sh
set -u
say() { echo "liftoff-workload: $*"; }
end() { kill -TERM 1; exit "$1"; }
fail() { say "FAILED: $*"; end 1; }
healthy() { dmesg | grep -c 'liftoff: containerd (pid [0-9]*) is healthy'; }
# until_healthy N: until PID 1 has logged containerd healthy N times (at most 120 s).
until_healthy() {
  n=0
  until [ "$(healthy)" -ge "$1" ]; do
    [ "$n" -ge 600 ] && fail "PID 1 logged containerd healthy $(healthy) times, not $1"
    sleep 0.2
    n=$((n + 1))
  done
}
until_healthy 1
# ctr --cni runs plugins from /opt/cni/bin; /opt is DATA's, Debian's plugins are in
# the root's /usr/lib/cni.
mkdir -p /opt/cni && ln -sfn /usr/lib/cni /opt/cni/bin || fail "linking /opt/cni/bin"
ctr image import --all-platforms @ARCHIVE@ || fail "ctr image import exited $?"
ctr image ls -q | grep -qx '@IMAGE@' || fail "@IMAGE@ not in: $(ctr image ls -q)"
say "host netns $(readlink /proc/self/ns/net)"
ctr run --rm --cni --memory-limit @LIMIT@ \
  --mount type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:nodev:noexec \
  @IMAGE@ t1 /bin/sh -c '@T1@' ||
  fail "ctr run t1 exited $?"
say "host links $(ls /sys/class/net | tr '\n' ' ')"
say "containers left after --rm: $(ctr container ls -q | wc -l)"
# t2 counts into /count by rename, so no reader (the host's cat, the exec's) ever sees
# the file empty between a truncation and a write.
ctr run -d --null-io --memory-limit @LIMIT@ @IMAGE@ t2 \
  /bin/sh -c 'trap "exit 0" TERM; i=0; while :; do i=$((i + 1)); echo $i > /count.new; mv /count.new /count; sleep 0.2; done' ||
  fail "ctr run -d t2 exited $?"
count=/run/containerd/io.containerd.runtime.v2.task/default/t2/rootfs/count
n=0
until [ -s "$count" ]; do
  [ "$n" -ge 100 ] && fail "t2 wrote no $count within 20 s"
  sleep 0.2
  n=$((n + 1))
done
task=$(ctr task ls | awk '$1 == "t2" { print $2, $3 }')
pid=${task%% *}
shim=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status")
say "t2 before: task $task shim $shim $(cat "/proc/$shim/comm") count $(cat "$count")"
say "t2 memory.max from the host $(cat /sys/fs/cgroup/default/t2/memory.max 2>&1)"
containerd=$(cat /run/liftoff-workload/pid)
kill -KILL "$containerd" || fail "kill -KILL $containerd exited $?"
say "killed containerd (pid $containerd)"
until_healthy 2
say "t2 after: task $(ctr task ls | awk '$1 == "t2" { print $2, $3 }') shim $shim $(cat "/proc/$shim/comm" 2>&1) count $(cat "$count")"
say "t2 exec $(ctr task exec --exec-id probe t2 /bin/cat /count 2>&1)"
say "done; /var/lib/containerd on $(findmnt -n -o FSTYPE --target /var/lib/containerd)"
end 0
"#;

fn workload() -> String {
    WORKLOAD
        .replace("@T1@", &T1.replace("@GATEWAY@", GATEWAY))
        .replace("@ARCHIVE@", ARCHIVE)
        .replace("@IMAGE@", IMAGE_REF)
        .replace("@LIMIT@", &MEMORY_LIMIT.to_string())
}

fn archive(arch: Arch) -> Vec<u8> {
    oci::busybox_archive(arch, IMAGE_REF).unwrap_or_else(|e| panic!("OCI archive: {e}"))
}

fn container_system(arch: Arch, archive: Vec<u8>) -> BuiltSystem {
    let tree = system::root_tree(arch).unwrap_or_else(|e| panic!("{e}"));
    let spec = SystemSpec {
        arch,
        fs: RootFsType::Erofs,
        kernel: system::SystemKernel::Debian,
        files: vec![
            RootFile {
                path: ARCHIVE.into(),
                mode: 0o644,
                data: archive,
            },
            RootFile {
                path: SCRIPT.into(),
                mode: 0o755,
                data: workload().into_bytes(),
            },
            system::cni_conflist(),
            RootFile {
                path: "/usr/bin/containerd.real".into(),
                mode: 0o755,
                data: std::fs::read(tree.join("usr/bin/containerd")).unwrap(),
            },
            RootFile {
                path: "/usr/bin/containerd".into(),
                mode: 0o755,
                data: CONTAINERD_WRAPPER.as_bytes().to_vec(),
            },
        ],
        links: vec![],
        disk: DiskSpec {
            seed: "vm-container".into(),
            esp_files: vec![("grubenv".into(), common::grubenv_pending_a())],
            boot_mib: 8,
            data_mib: 96,
            ..DiskSpec::default()
        },
    };
    system::build(&spec).unwrap_or_else(|e| panic!("building the {arch} image: {e}"))
}

/// Boots the system with `archive` as the image in containerd mode and waits until the
/// script has ended and the guest powered off.
fn boot(arch: Arch, test: &str, archive: Vec<u8>) -> Vm {
    let sys = container_system(arch, archive);
    let (work, _scratch) = common::work_dir(&format!("{test}-{arch}"));
    let disk = system::guest_disk(&sys, &work.join("disk.img")).unwrap();
    let kernel = Kernel::debian(arch).unwrap_or_else(|e| panic!("{e}"));
    let initrd = work.join("initramfs.cpio");
    std::fs::write(&initrd, system::initramfs(arch, &kernel).unwrap()).unwrap();
    let mut config = VmConfig::new(arch, &kernel.image, &work.join("console.log"));
    config.initrd = Some(initrd);
    config.memory_mib = 1024;
    config.append = format!("{} liftoff.handoff=containerd", disk.cmdline_slot_a());
    config.disks.push(Disk {
        path: disk.path.clone(),
        read_only: false,
        serial: Some("liftoff-boot".into()),
        bus: Bus::VirtioBlk,
        block_size: None,
    });
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_text("reboot: Power down", TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_exit(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    common::no_kernel_panic(&vm);
    vm
}

/// The text after `prefix` on every line the guest's processes wrote (see
/// [`process_lines`]; the prefix need not start the line).
fn tagged(vm: &Vm, prefix: &str) -> Vec<String> {
    process_lines(vm.lines())
        .into_iter()
        .filter_map(|l| l.split_once(prefix).map(|(_, r)| r.trim_end().to_string()))
        .collect()
}

/// The value of the first `key value` line in `lines` (empty for a line of `key` alone:
/// [`tagged`] trims the space an empty value leaves).
fn value<'a>(lines: &'a [String], key: &str, log: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?;
            if rest.is_empty() {
                Some(rest)
            } else {
                rest.strip_prefix(' ')
            }
        })
        .unwrap_or_else(|| panic!("no {key:?} line in {lines:?}; log {log}"))
}

/// `task <pid> <status> shim <pid> <comm> count <n>` as the script reports t2.
fn task_fields(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn workload_runs(arch: Arch) {
    let vm = boot(arch, "container", archive(arch));
    let log = vm.log_path().display().to_string();
    let report = tagged(&vm, "liftoff-workload: ");
    let ct = tagged(&vm, "LIFTOFF-CT ");
    assert!(
        !report.iter().any(|l| l.starts_with("FAILED")),
        "{report:?}; log {log}"
    );
    let done = value(&report, "done;", &log);
    // containerd's content and snapshots are on DATA, not on the read-only root.
    assert_eq!(done, "/var/lib/containerd on ext4", "log {log}");

    // The container's output.
    assert!(
        process_lines(vm.lines())
            .iter()
            .any(|l| l.trim_end().ends_with(MARKER)),
        "no {MARKER} line on the console; log {log}"
    );
    // Its own network namespace, on the CNI bridge.
    let host_netns = value(&report, "host netns", &log);
    let netns = value(&ct, "netns", &log);
    assert!(netns.starts_with("net:["), "{netns}; log {log}");
    assert_ne!(
        netns, host_netns,
        "the container has its own netns; log {log}"
    );
    assert_eq!(value(&ct, "links", &log), "eth0 lo", "log {log}");
    let host_links = value(&report, "host links", &log);
    assert!(
        host_links.split(' ').any(|l| l == "cni0") && !host_links.split(' ').any(|l| l == "eth0"),
        "the host has the bridge, not the container's eth0: {host_links}; log {log}"
    );
    let inet = value(&ct, "inet", &log);
    let address = inet
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no address on eth0: {inet}; log {log}"));
    let host = address
        .strip_prefix(SUBNET_PREFIX)
        .and_then(|h| h.strip_suffix("/24"))
        .and_then(|h| h.parse::<u8>().ok())
        .unwrap_or_else(|| panic!("{address} is not in 10.88.0.0/24; log {log}"));
    assert!(host > 1, "{address}: the gateway's address; log {log}");
    assert!(
        ct.iter().any(|l| l == "gateway answers"),
        "the container pings {GATEWAY} over the bridge; log {log}"
    );
    // Its memory limit, in its cgroup, and biting.
    let cgroup = value(&ct, "cgroup", &log);
    assert!(cgroup.ends_with("/t1"), "{cgroup}; log {log}");
    assert_eq!(
        value(&ct, "memory.max", &log),
        MEMORY_LIMIT.to_string(),
        "log {log}"
    );
    assert_eq!(
        value(&ct, "hog exit", &log),
        "137",
        "awk killed (SIGKILL) for going over the limit; log {log}"
    );
    assert_eq!(
        value(&report, "t2 memory.max from the host", &log),
        MEMORY_LIMIT.to_string(),
        "log {log}"
    );
    let kills: u32 = value(&ct, "oom_kill", &log)
        .parse()
        .unwrap_or_else(|e| panic!("the cgroup's oom_kill count: {e}; log {log}"));
    assert!(kills >= 1, "the cgroup counts an OOM kill; log {log}");
    assert!(
        vm.lines().iter().any(|l| [
            "oom-kill:constraint=CONSTRAINT_MEMCG,",
            ",oom_memcg=/default/t1,",
            ",task=awk,"
        ]
        .iter()
        .all(|part| l.contains(part))),
        "the kernel names the limit of t1's cgroup and awk; log {log}"
    );
    assert_eq!(
        value(&report, "containers left after --rm:", &log),
        "0",
        "log {log}"
    );

    // containerd killed: restarted by PID 1, healthy again, t2 and its shim untouched.
    let before = task_fields(value(&report, "t2 before:", &log));
    let after = task_fields(value(&report, "t2 after:", &log));
    println!("{arch}: t2 before {before:?}, after {after:?}");
    assert_eq!(before.len(), 8, "{before:?}; log {log}");
    assert_eq!(before[2], "RUNNING", "{before:?}");
    assert_eq!(
        before[5], "containerd-shim",
        "t2's parent is its shim: {before:?}"
    );
    assert_eq!(
        after[..6],
        before[..6],
        "same task pid, still RUNNING, the same shim alive after the restart; log {log}"
    );
    let count = |f: &[&str]| -> u64 {
        f.get(7)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{f:?}"))
    };
    assert!(
        count(&after) > count(&before),
        "t2 kept counting through the restart: {before:?} -> {after:?}"
    );
    let exec: u64 = value(&report, "t2 exec", &log)
        .parse()
        .unwrap_or_else(|e| panic!("ctr task exec through the new containerd: {e}; log {log}"));
    assert!(exec >= count(&after), "log {log}");
    let lines = vm.lines();
    let position = |text: &str| lines.iter().position(|l| l.contains(text));
    let killed = position("liftoff-workload: killed containerd").unwrap();
    let since_kill = &lines[killed..];
    for text in ["liftoff: started /usr/bin/containerd", "is healthy"] {
        assert!(
            since_kill.iter().any(|l| l.contains(text)),
            "{text:?} after containerd was killed; log {log}"
        );
    }
    assert!(
        since_kill
            .iter()
            .any(|l| l.contains("liftoff: containerd (pid") && l.contains("ended after")),
        "PID 1 saw containerd die; log {log}"
    );
    // The script's `kill -TERM 1`: PID 1 stopped everything (t2 too) and unmounted DATA.
    let shutdown = &lines[position("liftoff: SIGTERM: shutting down")
        .unwrap_or_else(|| panic!("PID 1 got no SIGTERM; log {log}"))..];
    assert!(
        shutdown.iter().any(|l| l.contains("unmounted /local")),
        "DATA unmounted with a container running: {shutdown:?}; log {log}"
    );
    println!(
        "{arch}: workload done and powered off {:.1} s after power-on",
        vm.elapsed().as_secs_f64()
    );
}

#[test]
fn vm_x86_64_busybox_container_runs() {
    workload_runs(Arch::X86_64);
}

#[test]
fn vm_aarch64_busybox_container_runs() {
    workload_runs(Arch::Aarch64);
}

/// A layer whose bytes no longer match the digest that names them never enters
/// containerd's content store, so the import fails when it unpacks that layer: nothing
/// runs, and the script says which step failed.
#[test]
fn vm_x86_64_corrupted_layer_is_refused() {
    let arch = Arch::X86_64;
    let image = oci::image(arch, IMAGE_REF, &oci::busybox(arch).unwrap()).unwrap();
    let layer = oci::digest(&image.layer);
    let mut bytes = image.archive().unwrap();
    assert_eq!(bytes, archive(arch));
    // busybox's ELF header is in the layer blob, the only place it occurs in the archive.
    let elf = bytes
        .windows(4)
        .position(|w| w == b"\x7fELF")
        .expect("busybox in the archive");
    bytes[elf + 1000] ^= 0xff;
    let vm = boot(arch, "container_corrupt", bytes);
    let log = vm.log_path().display().to_string();
    let report = tagged(&vm, "liftoff-workload: ");
    assert!(
        report
            .iter()
            .any(|l| l.starts_with("FAILED: ctr image import")),
        "{report:?}; log {log}"
    );
    let refused = format!("ctr: failed to extract layer {layer}: ");
    assert!(
        vm.lines()
            .iter()
            .any(|l| l.starts_with(&refused) && l.trim_end().ends_with(": not found")),
        "ctr names the layer missing from the content store; log {log}"
    );
    assert!(!vm.lines().iter().any(|l| l.contains(MARKER)), "log {log}");
}
