//! Power cut at every write of `Gpt::write`, with and without a torn last write, from a
//! clean table and from each repair case: the disk must always read back as exactly the
//! old or exactly the new table.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use gpt::testing::MemDisk;
use gpt::{Entry, Gpt};
use support::*;

type Change = fn(&mut Gpt);

fn flip_bits(t: &mut Gpt) {
    let e = t.partition_mut(2).unwrap();
    e.attributes ^= 1 << 56 | 1 << 49;
    t.partition_mut(5).unwrap().attributes ^= 0xf << 52;
}

fn grow(t: &mut Gpt) {
    assert!(t.move_backup_to_end().unwrap());
    let last = t.last_usable_lba();
    t.partition_mut(9).unwrap().last_lba = last;
}

fn state(t: &Gpt) -> (Vec<Entry>, u64, u64) {
    (t.entries().to_vec(), t.last_usable_lba(), t.backup_lba())
}

#[test]
fn every_cut_point_leaves_old_or_new() {
    type Damage = fn(&mut [u8], usize);
    let damages: [(&str, Damage); 3] = [
        ("clean", |_, _| {}),
        ("bad primary", |d, s| d[s + 40] ^= 1),
        ("bad backup", |d, s| {
            let l = d.len() - s;
            d[l + 40] ^= 1
        }),
    ];
    let changes: [(&str, Change, u64); 2] = [("attributes", flip_bits, 0), ("grow", grow, 32)];
    let dir = tempfile::tempdir().unwrap();
    let mut cuts = 0;
    for sector in [512u32, 4096] {
        let image = liftoff_image(dir.path(), sector, 64);
        for (change_name, change, extra_mib) in changes {
            for (damage_name, damage) in damages {
                let mut bytes = std::fs::read(&image).unwrap();
                bytes.resize(bytes.len() + (extra_mib << 20) as usize, 0);
                damage(&mut bytes, sector as usize);
                let old = Gpt::read(&MemDisk::new(bytes.clone()), &image, None).unwrap();
                let mut new = old.clone();
                change(&mut new);
                // A full run tells how many writes there are.
                let mut full = MemDisk::new(bytes.clone());
                new.clone().write(&mut full, &image).unwrap();
                let total = full.writes();
                assert_eq!(state(&Gpt::read(&full, &image, None).unwrap()), state(&new));
                for n in 0..total {
                    for tear in [false, true] {
                        let ctx = format!(
                            "{sector} {change_name} {damage_name} cut after {n} tear {tear}"
                        );
                        let mut disk = MemDisk::new(bytes.clone());
                        disk.cut_after_writes(n);
                        disk.tear_cut_write(tear);
                        assert!(
                            new.clone().write(&mut disk, &image).is_err(),
                            "{ctx}: write survived"
                        );
                        let got =
                            Gpt::read(&disk, &image, None).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        let s = state(&got);
                        assert!(
                            s == state(&old) || s == state(&new),
                            "{ctx}: neither old nor new"
                        );
                        cuts += 1;
                    }
                }
            }
        }
    }
    assert!(cuts >= 2 * 2 * 3 * 2 * 4, "only {cuts} cut points");
}

#[test]
fn failed_sync_and_read_only_leave_the_disk_alone() {
    let dir = tempfile::tempdir().unwrap();
    let image = liftoff_image(dir.path(), 512, 64);
    let bytes = std::fs::read(&image).unwrap();
    let mut t = Gpt::read(&MemDisk::new(bytes.clone()), &image, None).unwrap();
    flip_bits(&mut t);

    let mut ro = MemDisk::new(bytes.clone());
    ro.set_read_only(true);
    let err = t.clone().write(&mut ro, &image).unwrap_err().to_string();
    assert!(
        err.contains("writing the backup entry array") && err.contains(&*image.to_string_lossy()),
        "{err}"
    );
    assert!(ro.bytes() == bytes.as_slice());

    // A failing flush stops before the primary is touched.
    let mut flaky = MemDisk::new(bytes.clone());
    flaky.fail_syncs(true);
    assert!(t
        .clone()
        .write(&mut flaky, &image)
        .unwrap_err()
        .to_string()
        .contains("syncing"));
    let s = flaky.bytes().len() - 512;
    assert!(
        flaky.bytes()[..s - 32 * 512] == bytes[..s - 32 * 512],
        "primary side changed"
    );
}
