//! The shipped unit passes `systemd-analyze verify` (with ExecStart pointed at the binary just
//! built) and is ordered after, requires and is wanted by boot-complete.target.

use std::process::Command;

const UNIT: &str = include_str!("../systemd/mark-successful-boot.service");

fn values(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .flat_map(str::split_whitespace)
        .collect()
}

#[test]
fn unit_is_valid_and_ordered_after_boot_complete() {
    assert_eq!(values("Type"), ["oneshot"]);
    assert!(values("After").contains(&"boot-complete.target"));
    assert!(values("Requires").contains(&"boot-complete.target"));
    assert!(values("WantedBy").contains(&"boot-complete.target"));
    assert_eq!(
        values("ExecStart"),
        ["/usr/bin/prairiedog", "mark-successful-boot"]
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mark-successful-boot.service");
    std::fs::write(
        &path,
        UNIT.replace("/usr/bin/prairiedog", env!("CARGO_BIN_EXE_prairiedog")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
