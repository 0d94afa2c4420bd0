//! PID 1's module metadata (`liftoff_init::stage::modules`): the `.modinfo` section of a
//! kernel module's ELF file and the load order built from the `depends=` lists.
//!
//! The input is read three ways:
//! - as a module file: `modinfo_section` and `modinfo` never panic, and a section they
//!   find lies inside the file;
//! - as the content of a `.modinfo` section, put into a minimal ELF file written here: the
//!   reader finds exactly those bytes (the writer and the reader agree), and the names it
//!   returns are normalised (`_`, never `-`);
//! - as several sections separated by 0xff bytes, one module each (at most 64, more than
//!   an image lists and enough for deep chains): `load_order` never panics; it returns every module once with each listed dependency before its user, or
//!   names a module that really is on a dependency cycle.
//!
//! The aliases it finds go through the alias matcher (`gate::glob_match`) against the input
//! and each other: it never panics, `*` matches everything, and an alias without glob
//! characters matches exactly itself.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use liftoff_init::stage::modules::gate::glob_match;
use liftoff_init::stage::modules::{load_order, modinfo, modinfo_section, ModInfo};

fuzz_target!(|data: &[u8]| {
    if let Ok(section) = modinfo_section(data) {
        let range = data.as_ptr_range();
        assert!(range.start <= section.as_ptr() && section.as_ptr_range().end <= range.end);
    }
    let _ = modinfo(data, "fuzz-stem");

    let elf = module_elf(data);
    assert_eq!(modinfo_section(&elf), Ok(data));
    let Ok(info) = modinfo(&elf, "fuzz-stem") else {
        panic!("a module with a .modinfo section is read");
    };
    assert!(!info.name.contains('-') && info.depends.iter().all(|d| !d.contains('-')));
    assert!(info.depends.iter().all(|d| !d.is_empty()));
    for alias in &info.aliases {
        let _ = glob_match(alias.as_bytes(), data);
        assert!(glob_match(b"*", alias.as_bytes()));
        if !alias.bytes().any(|b| matches!(b, b'*' | b'?' | b'[')) {
            assert!(glob_match(alias.as_bytes(), alias.as_bytes()));
            assert!(!glob_match(alias.as_bytes(), format!("{alias}x").as_bytes()));
        }
        for other in &info.aliases {
            let _ = glob_match(alias.as_bytes(), other.as_bytes());
        }
    }

    let mods: Vec<ModInfo> = data
        .split(|b| *b == 0xff)
        .take(64)
        .enumerate()
        .filter_map(|(i, section)| modinfo(&module_elf(section), &format!("m{i}")).ok())
        .collect();
    check_order(&mods);
});

/// `load_order`'s contract, checked from the outside.
fn check_order(mods: &[ModInfo]) {
    // The module a name stands for: the last one listed with it, as in `load_order`.
    let by_name: BTreeMap<&str, usize> = mods
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let deps = |i: usize| -> Vec<usize> {
        mods.get(i)
            .map(|m| {
                m.depends
                    .iter()
                    .filter_map(|d| by_name.get(d.as_str()).copied())
                    .collect()
            })
            .unwrap_or_default()
    };
    match load_order(mods) {
        Ok(order) => {
            let mut position = vec![usize::MAX; mods.len()];
            for (at, &i) in order.iter().enumerate() {
                assert_eq!(position[i], usize::MAX, "module {i} ordered twice");
                position[i] = at;
            }
            assert_eq!(order.len(), mods.len());
            for i in 0..mods.len() {
                for d in deps(i) {
                    assert!(position[d] < position[i], "{d} must load before {i}");
                }
            }
        }
        Err(name) => {
            // The named module reaches itself through the dependency lists.
            let start = *by_name
                .get(name.as_str())
                .expect("the cycle names a listed module");
            let mut seen = vec![false; mods.len()];
            let mut todo = deps(start);
            let mut cycle = false;
            while let Some(i) = todo.pop() {
                if i == start {
                    cycle = true;
                    break;
                }
                if !std::mem::replace(&mut seen[i], true) {
                    todo.extend(deps(i));
                }
            }
            assert!(cycle, "{name} is named as on a cycle but is not");
        }
    }
}

/// A minimal 64-bit little-endian ELF file with two sections, `.shstrtab` and `.modinfo`
/// holding `modinfo` (section 0 is the null section, as in every ELF file).
fn module_elf(modinfo: &[u8]) -> Vec<u8> {
    const NAMES: &[u8] = b"\0.shstrtab\0.modinfo\0";
    let names_at = 64usize;
    let modinfo_at = names_at + NAMES.len();
    let shoff = (modinfo_at + modinfo.len()).next_multiple_of(8);
    let mut elf = vec![0u8; shoff + 3 * 64];
    elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    elf[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
    elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
    elf[names_at..modinfo_at].copy_from_slice(NAMES);
    elf[modinfo_at..modinfo_at + modinfo.len()].copy_from_slice(modinfo);
    // (name offset in .shstrtab, type: 3 string table / 1 program bits, offset, size)
    let sections = [
        (1u32, 3u32, names_at, NAMES.len()),
        (11, 1, modinfo_at, modinfo.len()),
    ];
    for (i, (name, kind, offset, size)) in sections.into_iter().enumerate() {
        let at = shoff + (i + 1) * 64;
        elf[at..at + 4].copy_from_slice(&name.to_le_bytes());
        elf[at + 4..at + 8].copy_from_slice(&kind.to_le_bytes());
        elf[at + 0x18..at + 0x20].copy_from_slice(&(offset as u64).to_le_bytes());
        elf[at + 0x20..at + 0x28].copy_from_slice(&(size as u64).to_le_bytes());
    }
    elf
}
