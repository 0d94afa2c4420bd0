//! `prairiedog`: A/B slot state on a booted host or a disk image. Parses arguments and calls
//! the library; see docs/prairiedog.md for usage and exit codes.

use clap::{Parser, Subcommand};
use prairiedog::authenticode::Trust;
use prairiedog::boot::{save_grubenv, GrubEnvAt, Located};
use prairiedog::decide::{SlotWords, DEFAULT_UNHEALTHY_LIMIT};
use prairiedog::disk::SlotDisk;
use prairiedog::grubenv::{GrubEnv, KEY_SLOT};
use prairiedog::install::{self, InstallOptions, Manifest, Payload};
use prairiedog::status::Status;
use prairiedog::uki::Signature;
use prairiedog::{bootconfig, host, pstore, transition, Slot};
use serde_json::json;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "prairiedog",
    version,
    about = "Liftoff A/B slot state (GPT attributes, grubenv, bootconfig)"
)]
struct Cli {
    /// Disk or image file holding the slots (default: the disk the running root came from).
    #[arg(long, global = true)]
    disk: Option<PathBuf>,
    /// The running slot (default: `liftoff.slot=` on /proc/cmdline, else the slot holding the
    /// root's partition).
    #[arg(long, global = true, value_parser = parse_slot)]
    active: Option<Slot>,
    /// grubenv to keep in step with the decision: a file, or `esp:/PATH` inside the disk's
    /// EFI system partition, rewritten in place without mounting it [default: esp:/grubenv,
    /// skipped with a note when the ESP holds none].
    #[arg(long, global = true)]
    grubenv: Option<String>,
    /// Crash-loop limit: boots without reaching health before a successful slot is demoted.
    #[arg(long, global = true, default_value_t = DEFAULT_UNHEALTHY_LIMIT)]
    unhealthy_limit: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum DataAction {
    /// Crypto-erase DATA: zero its first 16 MiB (both LUKS2 header copies and every
    /// keyslot, or a plain file system's superblocks). The next boot finds DATA fresh and
    /// formats it. Without the header nothing can decrypt an encrypted DATA again, not
    /// even the recovery key; a plain (liftoff.data=none) DATA's other blocks keep their
    /// bytes.
    Erase {
        /// The DATA partition (for example /dev/nvme0n1p9) or an image file.
        device: PathBuf,
        /// Confirm: this destroys every file on DATA for good.
        #[arg(long)]
        yes: bool,
    },
    /// Confirm that the recovery key PID 1 handed over in /run/liftoff/recovery-key is
    /// saved: later boots keep it instead of making a new one, and the file is removed.
    RecoveryKeySaved {
        /// The DATA partition (LUKS2).
        device: PathBuf,
        /// The file the key was handed over in.
        #[arg(long, default_value = prairiedog::host::RECOVERY_KEY_FILE)]
        recovery_key_file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show both slots, the active and next slot, the counters and why.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Make the inactive slot (cleared and marked valid) boot next, with the active one as fallback.
    UpgradeToInactive,
    /// Make the inactive slot (which must be bootable) boot next.
    RollbackToInactive,
    /// Undo upgrade-to-inactive before the new slot has booted successfully.
    CancelUpgrade,
    /// Make the inactive slot unbootable, ready to be overwritten.
    ClearInactive,
    /// Give the freshly written inactive slot one try.
    MarkInactiveValid,
    /// Record that the active slot reached health.
    MarkSuccessfulBoot,
    /// Whether the active slot has ever booted successfully.
    HasBootEverSucceeded {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write BOOT, ROOT and HASH images into the inactive slot, verified against a manifest.
    Install {
        /// The manifest (`boot|root|hash <bytes> <blake3>`, `verity-root-hash <hex>`,
        /// `version <v>`).
        #[arg(long)]
        manifest: PathBuf,
        /// The manifest's detached signature (RSA PKCS#1 v1.5, SHA-256, by the db key),
        /// checked whenever the kernel image's signature is [default: MANIFEST.sig].
        #[arg(long, value_name = "FILE")]
        manifest_sig: Option<PathBuf>,
        /// BOOT image.
        #[arg(long)]
        boot: PathBuf,
        /// ROOT image.
        #[arg(long)]
        root: PathBuf,
        /// HASH image (verity superblock and tree).
        #[arg(long)]
        hash: PathBuf,
        /// Install even when the update's kernel image is older than the running slot's.
        #[arg(long)]
        allow_downgrade: bool,
        /// Check the kernel image's and the manifest's signatures against this certificate
        /// (PEM or DER; repeatable) instead of the running machine's db.
        #[arg(long = "trust", value_name = "CERT")]
        trust: Vec<PathBuf>,
        /// efivarfs to read SecureBoot, db and dbx from.
        #[arg(long, default_value = "/sys/firmware/efi/efivars")]
        efivars: PathBuf,
    },
    /// Print a manifest for BOOT, ROOT and HASH images (the version from the BOOT image's
    /// kernel image); sign it with `openssl dgst -sha256 -sign db.key -out M.sig M`.
    Manifest {
        /// BOOT image.
        #[arg(long)]
        boot: PathBuf,
        /// ROOT image.
        #[arg(long)]
        root: PathBuf,
        /// HASH image.
        #[arg(long)]
        hash: PathBuf,
        /// The verity root hash of ROOT with HASH (hex).
        #[arg(long)]
        verity_root_hash: String,
    },
    /// Write a bootconfig initrd (kernel bootconfig format) from key=value settings.
    GenerateBootConfig {
        /// A setting, `kernel.key=value`, `init.key=value`, or a `liftoff.` key PID 1 takes
        /// from the bootconfig on PRIVATE (docs/init.md); repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Read settings from a file in the flat bootconfig form (`key = "value"` lines).
        #[arg(long)]
        from: Option<PathBuf>,
        /// Where to write the bootconfig initrd.
        #[arg(long)]
        output: PathBuf,
    },
    /// The DATA partition.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// Show the settings in a bootconfig initrd.
    ReadBootConfig {
        /// The file.
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn parse_slot(s: &str) -> Result<Slot, String> {
    Slot::parse(s).ok_or_else(|| format!("{s:?} is not a slot (A or B)"))
}

/// The disk to use and, when it is the running one, the root's partition.
fn resolve_disk(cli: &Cli) -> Result<(PathBuf, Option<host::RootPartition>), String> {
    match &cli.disk {
        Some(d) => Ok((d.clone(), None)),
        None => {
            let root = host::running_root_partition()
                .map_err(|e| format!("finding the disk the root came from: {e} (use --disk)"))?;
            Ok((PathBuf::from("/dev").join(&root.disk), Some(root)))
        }
    }
}

fn resolve_active(
    cli: &Cli,
    disk: &SlotDisk<File>,
    root: Option<&host::RootPartition>,
) -> Option<Slot> {
    cli.active
        .or_else(|| {
            if cli.disk.is_some() {
                return None;
            }
            std::fs::read_to_string("/proc/cmdline")
                .ok()
                .and_then(|c| host::cmdline_slot(&c))
        })
        .or_else(|| root.and_then(|r| disk.layout().slot_of(r.number)))
}

fn open(cli: &Cli, write: bool) -> Result<(SlotDisk<File>, Option<Slot>), String> {
    let (path, root) = resolve_disk(cli)?;
    let disk =
        host::open_disk(&path, write).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let active = resolve_active(cli, &disk, root.as_ref());
    Ok((disk, active))
}

fn need_active(active: Option<Slot>) -> Result<Slot, String> {
    active.ok_or_else(|| "cannot tell which slot is running: pass --active A|B".to_owned())
}

fn grubenv_at(cli: &Cli) -> GrubEnvAt<'_> {
    match cli.grubenv.as_deref() {
        None => GrubEnvAt::Esp("/grubenv"),
        Some(s) => match s.strip_prefix("esp:") {
            Some(path) => GrubEnvAt::Esp(path),
            None => GrubEnvAt::File(Path::new(s)),
        },
    }
}

/// Finds grubenv before a transition writes anything. A grubenv that cannot be found is an
/// error only when `--grubenv` named it; otherwise the note says why it is left alone.
fn find_grubenv(
    cli: &Cli,
    disk: &SlotDisk<File>,
) -> Result<(Option<(GrubEnv, Located)>, String), String> {
    match grubenv_at(cli).load(disk) {
        Ok(found) => Ok((found, String::new())),
        Err(e) if cli.grubenv.is_none() => Ok((None, format!("grubenv not updated: {e}"))),
        Err(e) => Err(format!("reading grubenv: {e}")),
    }
}

/// Points grubenv's `liftoff_slot` at what the GPT now says boots next.
fn sync_grubenv(
    cli: &Cli,
    disk: &mut SlotDisk<File>,
    found: Option<(GrubEnv, Located)>,
    words: SlotWords,
) -> Result<String, String> {
    let next = prairiedog::decide::select(words, cli.unhealthy_limit, None).slot;
    let Some((mut env, at)) = found else {
        return Ok(String::new());
    };
    if env.slot() == Some(next) {
        return Ok(format!("grubenv already says {KEY_SLOT}={next}"));
    }
    env.set(KEY_SLOT, next.as_str())
        .map_err(|e| format!("updating grubenv: {e}"))?;
    save_grubenv(disk, &at, &env).map_err(|e| format!("writing grubenv: {e}"))?;
    Ok(format!("grubenv: {KEY_SLOT}={next}"))
}

fn status_json(disk: &SlotDisk<File>, status: &Status, cli: &Cli) -> serde_json::Value {
    let env = match grubenv_at(cli).load(disk) {
        Ok(Some((env, _))) => json!({
            "liftoff_slot": env.slot().map(Slot::as_str),
            "liftoff_pending": env.pending(),
        }),
        Ok(None) => serde_json::Value::Null,
        Err(e) => json!({ "error": e.to_string() }),
    };
    let slot = |i: usize| {
        let s = status.slots.get(i).copied();
        s.map(|s| {
            json!({
                "priority": s.attrs.priority(),
                "tries": s.attrs.tries(),
                "successful": s.attrs.successful(),
                "unhealthy": s.attrs.unhealthy(),
                "eligible": s.eligible,
                "ineligible_because": s.attrs.ineligible_because(),
                "attributes": format!("{:#018x}", s.word),
            })
        })
    };
    let health = disk.health();
    json!({
        "disk": disk.device(),
        "slots": { "A": slot(0), "B": slot(1) },
        "active": status.active.map(Slot::as_str),
        "next": status.next.slot.as_str(),
        "why": status.next.why.describe(),
        "crash_loop": status.next.crash_loop.map(|c| json!({
            "slot": c.slot.as_str(), "unhealthy": c.unhealthy, "demoted": c.demoted,
        })),
        "unhealthy_limit": status.unhealthy_limit,
        "gpt": {
            "sector_size": disk.gpt().sector_size().bytes(),
            "primary": health.primary.as_ref().map(ToString::to_string),
            "backup": health.backup.as_ref().map(ToString::to_string),
        },
        "grubenv": env,
        "degraded": running_degraded(cli),
        "failures": {
            "A": failures_json(cli, Slot::A),
            "B": failures_json(cli, Slot::B),
        },
    })
}

/// The failure history PID 1 copied to /run, when the status is about the running host's
/// disk (PRIVATE itself is not mounted after the boot).
fn running_failures(cli: &Cli) -> Vec<pstore::Failure> {
    if cli.disk.is_some() {
        return Vec::new();
    }
    std::fs::read(Path::new("/").join(pstore::RUN_FILE))
        .map(|t| pstore::read_history(&t))
        .unwrap_or_default()
}

fn failures_json(cli: &Cli, slot: Slot) -> serde_json::Value {
    running_failures(cli)
        .iter()
        .filter(|f| f.slot == slot)
        .map(|f| json!({ "time": f.time, "stage": f.stage.as_str(), "cause": f.cause.as_str() }))
        .collect()
}

/// Why the running boot is degraded, when the status is about the running host's disk.
fn running_degraded(cli: &Cli) -> Option<String> {
    cli.disk
        .is_none()
        .then(|| host::degraded(Path::new("/")))
        .flatten()
}

fn run(cli: &Cli) -> Result<(), String> {
    type Transition = fn(SlotWords, Slot) -> Result<SlotWords, transition::TransitionError>;
    let transition: Option<(&str, Transition)> = match &cli.command {
        Command::UpgradeToInactive => {
            Some(("upgrade-to-inactive", transition::upgrade_to_inactive))
        }
        Command::RollbackToInactive => {
            Some(("rollback-to-inactive", transition::rollback_to_inactive))
        }
        Command::CancelUpgrade => Some(("cancel-upgrade", transition::cancel_upgrade)),
        Command::ClearInactive => Some(("clear-inactive", |w, a| {
            Ok(transition::clear_inactive(w, a))
        })),
        Command::MarkInactiveValid => {
            Some(("mark-inactive-valid", transition::mark_inactive_valid))
        }
        Command::MarkSuccessfulBoot => Some(("mark-successful-boot", |w, a| {
            Ok(transition::mark_successful_boot(w, a))
        })),
        _ => None,
    };
    if let Some((name, f)) = transition {
        let (mut disk, active) = open(cli, true)?;
        let active = need_active(active)?;
        let new = f(disk.words(), active).map_err(|e| format!("{name}: {e}"))?;
        let (found, note) = find_grubenv(cli, &disk)?;
        let wrote = disk
            .store(new)
            .map_err(|e| format!("{name}: writing {}: {e}", disk.device().display()))?;
        println!(
            "{name}: {} (active {active}, next {})",
            if wrote {
                "written"
            } else {
                "nothing to change"
            },
            prairiedog::decide::select(new, cli.unhealthy_limit, None).slot
        );
        let synced = sync_grubenv(cli, &mut disk, found, new)?;
        for line in [note, synced] {
            if !line.is_empty() {
                println!("{line}");
            }
        }
        return Ok(());
    }
    match &cli.command {
        Command::Status { json } => {
            let (disk, active) = open(cli, false)?;
            let status = Status::new(disk.words(), active, cli.unhealthy_limit);
            if *json {
                println!("{}", status_json(&disk, &status, cli));
            } else {
                print!("Disk:   {}\n{}", disk.device().display(), status.render());
                match grubenv_at(cli).load(&disk) {
                    Ok(Some((env, _))) => println!(
                        "Grubenv: liftoff_slot={} liftoff_pending={}",
                        env.slot().map_or("-", Slot::as_str),
                        env.pending().map_or("-", |p| if p { "1" } else { "0" })
                    ),
                    Ok(None) => {}
                    Err(e) => println!("Grubenv: {e}"),
                }
                if let Some(reason) = running_degraded(cli) {
                    println!("Degraded: {reason}");
                }
                for f in running_failures(cli) {
                    println!(
                        "Failure: slot {} {} at stage {} (time {})",
                        f.slot,
                        f.cause.as_str(),
                        f.stage.as_str(),
                        f.time.map_or("unknown".to_owned(), |t| t.to_string())
                    );
                }
                let h = disk.health();
                for (copy, problem) in [("primary", &h.primary), ("backup", &h.backup)] {
                    if let Some(p) = problem {
                        println!("GPT {copy} copy is damaged ({p}); repaired on the next write");
                    }
                }
            }
        }
        Command::HasBootEverSucceeded { json } => {
            let (disk, active) = open(cli, false)?;
            let ok = transition::has_boot_ever_succeeded(disk.words(), need_active(active)?);
            if *json {
                println!("{}", json!({ "has_boot_ever_succeeded": ok }));
            } else {
                println!("{ok}");
            }
        }
        Command::Install {
            manifest,
            manifest_sig,
            boot,
            root,
            hash,
            allow_downgrade,
            trust,
            efivars,
        } => {
            let signature = match Trust::for_install(efivars, trust)
                .map_err(|e| format!("finding the certificates to trust: {e}"))?
            {
                Some(trust) => Signature::Verify(trust),
                None => {
                    println!(
                        "Secure Boot is off and no --trust given: the signatures of the \
                         update's kernel image and manifest are not checked"
                    );
                    Signature::Unchecked
                }
            };
            let sig = manifest_sig
                .clone()
                .unwrap_or_else(|| install::default_signature_path(manifest));
            let (m, manifest_signer) =
                install::read_manifest(manifest, &sig, &signature).map_err(|e| e.to_string())?;
            let (mut disk, active) = open(cli, true)?;
            let active = need_active(active)?;
            let payload = Payload {
                boot: boot.clone(),
                root: root.clone(),
                hash: hash.clone(),
            };
            let options = InstallOptions {
                allow_downgrade: *allow_downgrade,
                signature,
            };
            let report = install::install(&mut disk, active, &m, &payload, &options)
                .map_err(|e| format!("installing into slot {}: {e}", active.other()))?;
            if let Some(signer) = &manifest_signer {
                println!("manifest signed by {signer}");
            }
            if let Some(signer) = &report.signed_by {
                println!("kernel image signed by {signer}");
            }
            println!(
                "installed {} bytes into slot {}; run upgrade-to-inactive to boot it",
                report.bytes, report.slot
            );
        }
        Command::Manifest {
            boot,
            root,
            hash,
            verity_root_hash,
        } => {
            let payload = Payload {
                boot: boot.clone(),
                root: root.clone(),
                hash: hash.clone(),
            };
            let m = Manifest::for_files(&payload, verity_root_hash).map_err(|e| e.to_string())?;
            print!("{}", m.render());
        }
        Command::GenerateBootConfig { set, from, output } => {
            let mut entries = match from {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("reading {}: {e}", path.display()))?;
                    bootconfig::parse_flat(&text).map_err(|e| format!("{}: {e}", path.display()))?
                }
                None => Vec::new(),
            };
            for kv in set {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
                entries.push((k.to_owned(), v.to_owned()));
            }
            let text = bootconfig::render(&entries).map_err(|e| e.to_string())?;
            let bytes = bootconfig::build(text.as_bytes(), 0).map_err(|e| e.to_string())?;
            write_atomically(output, &bytes)?;
            println!(
                "{}: {} settings, {} bytes",
                output.display(),
                entries.len(),
                bytes.len()
            );
        }
        Command::Data {
            action: DataAction::Erase { device, yes },
        } => {
            if !yes {
                return Err(format!(
                    "erasing {} destroys every file on it for good; add --yes to do it",
                    device.display()
                ));
            }
            erase_data(device)?;
            println!(
                "{}: first {} MiB zeroed; the next boot formats it",
                device.display(),
                DATA_ERASE_BYTES >> 20
            );
        }
        Command::Data {
            action:
                DataAction::RecoveryKeySaved {
                    device,
                    recovery_key_file,
                },
        } => {
            let keyslot = recovery_key_saved(device)?;
            match keyslot {
                Some(keyslots) => println!(
                    "{}: recovery key in keyslot {} marked saved; later boots keep it",
                    device.display(),
                    keyslots
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => println!(
                    "{}: no unsaved recovery key; nothing to do",
                    device.display()
                ),
            }
            match std::fs::remove_file(recovery_key_file) {
                Ok(()) => println!("removed {}", recovery_key_file.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("removing {}: {e}", recovery_key_file.display())),
            }
        }
        Command::ReadBootConfig { path, json } => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let parsed =
                bootconfig::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            let text = String::from_utf8_lossy(parsed.text);
            let entries =
                bootconfig::parse_flat(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            if *json {
                let map: serde_json::Map<String, serde_json::Value> =
                    entries.into_iter().map(|(k, v)| (k, v.into())).collect();
                println!(
                    "{}",
                    json!({ "size": parsed.size, "checksum": parsed.checksum, "settings": map })
                );
            } else {
                for (k, v) in entries {
                    println!("{k}={v}");
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Bytes [`erase_data`] zeroes: LUKS2's data offset in the layout Liftoff and cryptsetup
/// make (two 16 KiB header copies and the keyslots area), more than PID 1's "fresh" test
/// reads (1 MiB) and every file system superblock DATA can hold.
const DATA_ERASE_BYTES: u64 = 16 << 20;

/// Zeroes the start of `device` and flushes it to the disk.
fn erase_data(device: &Path) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(|e| format!("opening {}: {e}", device.display()))?;
    let size = rustix::fs::seek(&f, rustix::fs::SeekFrom::End(0))
        .map_err(|e| format!("sizing {}: {e}", device.display()))?;
    rustix::fs::seek(&f, rustix::fs::SeekFrom::Start(0))
        .map_err(|e| format!("seeking {}: {e}", device.display()))?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = DATA_ERASE_BYTES.min(size);
    while left > 0 {
        let n = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
        f.write_all(zeros.get(..n).unwrap_or_default())
            .map_err(|e| format!("writing zeros to {}: {e}", device.display()))?;
        left -= n as u64;
    }
    f.sync_all()
        .map_err(|e| format!("flushing {}: {e}", device.display()))
}

/// Removes DATA's unsaved-recovery token (the luks2 crate's crash-safe write); the
/// keyslots it named, or `None` when there was none.
fn recovery_key_saved(device: &Path) -> Result<Option<Vec<u32>>, String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| format!("opening {}: {e}", device.display()))?;
    let mut header =
        luks2::Luks2::read(&mut f).map_err(|e| format!("{}: {e}", device.display()))?;
    let Some((token, keyslot)) = header
        .metadata
        .tokens
        .iter()
        .find(|(_, t)| t.kind == prairiedog::host::UNSAVED_RECOVERY_TOKEN)
        .map(|(n, t)| (*n, t.keyslots.clone()))
    else {
        return Ok(None);
    };
    header
        .remove_token(token)
        .and_then(|()| header.write(&mut f))
        .map_err(|e| format!("{}: {e}", device.display()))?;
    Ok(Some(keyslot))
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prairiedog: {e}");
            ExitCode::FAILURE
        }
    }
}
