//! `growpart DISK [PARTNUM]`: the CLI over the growpart library.
//!
//! Exit codes as cloud-utils' growpart: 0 grown (or, with `--dry-run`, would grow),
//! 1 NOCHANGE, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use growpart::{KernelUpdate, Options, Report, Target};

/// Grow a GPT partition (DATA by default) to the end of its disk, live (BLKPG).
#[derive(Debug, Parser)]
#[command(name = "growpart", version)]
struct Args {
    /// The whole disk (block device or image file).
    disk: PathBuf,
    /// Partition number; default: the DATA partition.
    partnum: Option<u32>,
    /// Show what would change; write nothing.
    #[arg(short = 'N', long)]
    dry_run: bool,
    /// One JSON object on stdout instead of the text line.
    #[arg(long)]
    json: bool,
    /// If one GPT copy is damaged, rewrite it from the valid one while growing (as after
    /// a power cut during an earlier grow) instead of refusing.
    #[arg(long)]
    repair: bool,
}

const EXIT_CHANGED: u8 = 0;
const EXIT_NOCHANGE: u8 = 1;
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let target = args.partnum.map_or(Target::Data, Target::Number);
    let options = Options {
        dry_run: args.dry_run,
        repair: args.repair,
    };
    let result = growpart::open_disk(&args.disk, args.dry_run)
        .and_then(|mut f| growpart::grow_device(&mut f, &args.disk, target, options));
    match result {
        Ok(report) => {
            if args.json {
                println!("{}", json(&report, args.dry_run));
            } else {
                println!("{}", text(&report, args.dry_run));
            }
            ExitCode::from(if report.changes() {
                EXIT_CHANGED
            } else {
                EXIT_NOCHANGE
            })
        }
        Err(e) => {
            let message = e.to_string();
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "outcome": "error", "device": args.disk, "error": message })
                );
            }
            eprintln!("FAILED: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn outcome(r: &Report, dry_run: bool) -> &'static str {
    match (r.changes(), dry_run) {
        (false, _) => "nochange",
        (true, true) => "change",
        (true, false) => "changed",
    }
}

fn kernel(k: KernelUpdate) -> &'static str {
    match k {
        KernelUpdate::Resized => "resized with BLKPG_RESIZE_PARTITION",
        KernelUpdate::NotNeeded => "not needed",
        KernelUpdate::DryRun => "dry run",
        KernelUpdate::NotABlockDevice => "skipped: not a block device",
    }
}

/// cloud-utils style: `CHANGED: partition=9 start=.. old: size=..,end=.. new: size=..,end=..`
/// (sizes and ends in sectors), or `NOCHANGE: ...`.
fn text(r: &Report, dry_run: bool) -> String {
    let p = &r.table.plan;
    let sectors = |bytes: u64| bytes / p.sector_size;
    if !r.changes() {
        return format!(
            "NOCHANGE: partition {} is size {}. it cannot be grown (disk {} has not grown)",
            p.number,
            sectors(p.old_size()),
            r.device.display()
        );
    }
    let mut line = format!(
        "{}: partition={} start={} old: size={},end={} new: size={},end={}",
        if dry_run { "CHANGE" } else { "CHANGED" },
        p.number,
        p.first_lba,
        sectors(p.old_size()),
        p.old_last_lba + 1,
        sectors(p.new_size()),
        p.new_last_lba + 1
    );
    if p.moves_backup() {
        line.push_str(&format!(
            " backup-header: {} -> {}",
            p.old_backup_lba, p.new_backup_lba
        ));
    }
    for (copy, problem) in [
        ("primary", &r.table.repaired.primary),
        ("backup", &r.table.repaired.backup),
    ] {
        if let Some(problem) = problem {
            line.push_str(&format!(" repaired-{copy}: {problem}"));
        }
    }
    line.push_str(&format!("; kernel: {}", kernel(r.kernel)));
    line
}

fn json(r: &Report, dry_run: bool) -> serde_json::Value {
    let p = &r.table.plan;
    let problem = |p: &Option<gpt::Problem>| p.as_ref().map(ToString::to_string);
    serde_json::json!({
        "outcome": outcome(r, dry_run),
        "device": r.device,
        "partition": p.number,
        "sector_size": p.sector_size,
        "start_lba": p.first_lba,
        "old": { "last_lba": p.old_last_lba, "size_bytes": p.old_size() },
        "new": { "last_lba": p.new_last_lba, "size_bytes": p.new_size() },
        "backup_header": { "old_lba": p.old_backup_lba, "new_lba": p.new_backup_lba },
        "protective_mbr_updated": r.table.mbr_updated,
        "repaired": { "primary": problem(&r.table.repaired.primary), "backup": problem(&r.table.repaired.backup) },
        "written": r.written,
        "kernel": kernel(r.kernel),
    })
}
