//! `verity`: veritysetup-compatible command line over the `verity` library.
//!
//! Exit codes: 0 success, 1 failure (bad input, I/O, device-mapper), 2 usage error,
//! 3 verification found corruption.

use std::io::{IsTerminal, Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use verity::{
    device, ErrorMode, FormatOptions, Geometry, HashType, Layout, Params, RootHash, RunOptions,
    Salt, Superblock, TableOptions, Uuid, VerifyOptions, VerityTable,
};

const EXIT_FAILURE: u8 = 1;
const EXIT_CORRUPT: u8 = 3;

#[derive(Parser)]
#[command(
    name = "verity",
    version,
    about = "dm-verity hash trees, compatible with veritysetup"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the superblock and hash tree of DATA into HASH and print the root hash.
    Format(FormatCmd),
    /// Check every data block and every tree level against ROOT_HASH.
    Verify(VerifyCmd),
    /// Print the superblock of HASH.
    Dump(DumpCmd),
    /// Print the dm table line (or the dm-mod.create= value) for DATA and HASH.
    Table(TableCmd),
    /// Create the read-only verity device NAME over DATA and HASH (needs dm-mod, root).
    Open(OpenCmd),
    /// Remove the verity device NAME.
    Close(CloseCmd),
    /// Show whether NAME has seen corruption (V verified, C corrupted).
    Status(StatusCmd),
}

#[derive(Args)]
struct FormatCmd {
    /// Data device or image.
    data: PathBuf,
    /// Hash device or file (created if missing).
    hash: PathBuf,
    #[command(flatten)]
    tree: TreeArgs,
    /// UUID for the superblock (default: random).
    #[arg(long)]
    uuid: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct VerifyCmd {
    /// Data device or image.
    data: PathBuf,
    /// Hash device or file.
    hash: PathBuf,
    /// The trusted root hash (hex).
    root_hash: String,
    #[command(flatten)]
    tree: TreeArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct DumpCmd {
    /// Hash device or file.
    hash: PathBuf,
    /// Byte offset of the superblock.
    #[arg(long, default_value_t = 0)]
    hash_offset: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct TableCmd {
    /// Data device as the kernel should name it (a path or major:minor).
    data: String,
    /// Hash device as the kernel should name it (a path or major:minor).
    hash: String,
    /// The trusted root hash (hex).
    root_hash: String,
    /// Read the superblock from this file instead of HASH (an image being built).
    #[arg(long)]
    superblock_from: Option<PathBuf>,
    /// Print `dm-mod.create="NAME,..."` for the kernel command line.
    #[arg(long, value_name = "NAME")]
    dm_mod_create: Option<String>,
    /// Device-mapper UUID for --dm-mod-create.
    #[arg(long, requires = "dm_mod_create")]
    dm_uuid: Option<String>,
    #[command(flatten)]
    tree: TreeArgs,
    #[command(flatten)]
    table: TableArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct OpenCmd {
    /// Data device.
    data: PathBuf,
    /// Device-mapper name.
    name: String,
    /// Hash device.
    hash: PathBuf,
    /// The trusted root hash (hex).
    root_hash: String,
    /// Device-mapper UUID.
    #[arg(long, default_value = "")]
    dm_uuid: String,
    #[command(flatten)]
    tree: TreeArgs,
    #[command(flatten)]
    table: TableArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct CloseCmd {
    /// Device-mapper name.
    name: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct StatusCmd {
    /// Device-mapper name.
    name: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct Common {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TreeArgs {
    /// Hash algorithm: sha256, sha512 or sha1.
    #[arg(long = "hash", default_value = "sha256")]
    algorithm: String,
    /// Data block size in bytes.
    #[arg(long, default_value_t = 4096)]
    data_block_size: u32,
    /// Hash block size in bytes.
    #[arg(long, default_value_t = 4096)]
    hash_block_size: u32,
    /// Number of data blocks (default: the whole data device).
    #[arg(long)]
    data_blocks: Option<u64>,
    /// Byte offset of the hash area on the hash device.
    #[arg(long, default_value_t = 0)]
    hash_offset: u64,
    /// Salt in hex, or - for none (format's default: 32 random bytes).
    #[arg(long)]
    salt: Option<String>,
    /// Hash type: 1 (normal) or 0 (Chrome OS).
    #[arg(long = "format", default_value_t = 1)]
    hash_type: u32,
    /// No superblock: the parameters come from these options.
    #[arg(long)]
    no_superblock: bool,
    /// Hashing threads (default: one per core).
    #[arg(long)]
    threads: Option<NonZeroUsize>,
}

#[derive(Args)]
struct TableArgs {
    /// Reboot on a corrupt block (restart_on_corruption).
    #[arg(long, conflicts_with = "panic_on_corruption")]
    restart_on_corruption: bool,
    /// Panic on a corrupt block (panic_on_corruption).
    #[arg(long)]
    panic_on_corruption: bool,
    /// Read blocks whose hash is that of zeros as zeros (ignore_zero_blocks).
    #[arg(long)]
    ignore_zero_blocks: bool,
    /// Verify each block only once (check_at_most_once).
    #[arg(long)]
    check_at_most_once: bool,
}

impl TableArgs {
    fn options(&self) -> TableOptions {
        TableOptions {
            error_mode: if self.restart_on_corruption {
                ErrorMode::Restart
            } else if self.panic_on_corruption {
                ErrorMode::Panic
            } else {
                ErrorMode::Eio
            },
            ignore_zero_blocks: self.ignore_zero_blocks,
            check_at_most_once: self.check_at_most_once,
        }
    }
}

/// A failure with the context the user needs, and its exit code.
struct Failure {
    message: String,
    code: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self {
            message: e.to_string(),
            code: EXIT_FAILURE,
        }
    }
}

fn context<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, Failure> {
    r.map_err(|e| Failure {
        message: format!("{what}: {e}"),
        code: EXIT_FAILURE,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("verity: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn random_bytes(n: usize) -> Result<Vec<u8>, Failure> {
    let mut buf = vec![0u8; n];
    let mut f = context(std::fs::File::open("/dev/urandom"), "opening /dev/urandom")?;
    context(f.read_exact(&mut buf), "reading /dev/urandom")?;
    Ok(buf)
}

fn random_uuid() -> Result<Uuid, Failure> {
    let mut b: [u8; 16] = random_bytes(16)?.try_into().map_err(|_| Failure {
        message: "short random read".into(),
        code: EXIT_FAILURE,
    })?;
    // Version 4 (random), RFC 4122 variant.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(Uuid(b))
}

impl TreeArgs {
    fn params(&self, data_blocks: u64) -> Result<Params, Failure> {
        let params = Params {
            hash_type: HashType::from_number(self.hash_type)?,
            algorithm: self.algorithm.parse()?,
            data_block_size: self.data_block_size,
            hash_block_size: self.hash_block_size,
            data_blocks,
            salt: self.salt.as_deref().unwrap_or("-").parse()?,
        };
        params.validate()?;
        Ok(params)
    }

    /// The tree parameters: from the superblock of `hash_file`, or from the options.
    /// Without a superblock the data-block count defaults to the whole of `data_file`
    /// when it can be read (as in veritysetup).
    fn resolve(
        &self,
        hash_file: &Path,
        data_file: Option<&Path>,
    ) -> Result<(Params, Option<Uuid>), Failure> {
        if self.no_superblock {
            let blocks = match (self.data_blocks, data_file) {
                (Some(n), _) => n,
                (None, Some(path)) => {
                    let size = context(
                        std::fs::File::open(path),
                        &format!("opening {}", path.display()),
                    )
                    .and_then(|mut f| {
                        context(
                            std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)),
                            &format!("reading the size of {}", path.display()),
                        )
                    })?;
                    size / u64::from(self.data_block_size)
                }
                (None, None) => {
                    return Err(Failure {
                        message: "--data-blocks is needed with --no-superblock".into(),
                        code: EXIT_FAILURE,
                    })
                }
            };
            return Ok((self.params(blocks)?, None));
        }
        let sb = verity::read_superblock(hash_file, self.hash_offset)?;
        Ok((sb.params, Some(sb.uuid)))
    }

    fn layout(&self) -> Layout {
        Layout {
            hash_offset: self.hash_offset,
            superblock: !self.no_superblock,
            same_device: false,
        }
    }
}

/// Shows progress on a terminal, at most ten times a second.
struct ProgressLine {
    last: Mutex<Instant>,
    label: &'static str,
}

impl ProgressLine {
    fn show(&self, done: u64, total: u64) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if done < total && last.elapsed() < Duration::from_millis(100) {
            return;
        }
        *last = Instant::now();
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let mut err = std::io::stderr().lock();
        // Progress is cosmetic; a closed stderr must not fail the run.
        let _ = write!(err, "\r{}: {pct:3}% ({done}/{total} blocks)", self.label);
        if done >= total {
            let _ = writeln!(err);
        }
    }
}

fn with_progress<T>(
    label: &'static str,
    threads: Option<NonZeroUsize>,
    f: impl FnOnce(&RunOptions<'_>) -> T,
) -> T {
    let line = ProgressLine {
        last: Mutex::new(Instant::now()),
        label,
    };
    let show = |d, t| line.show(d, t);
    let progress: Option<&(dyn Fn(u64, u64) + Sync)> = if std::io::stderr().is_terminal() {
        Some(&show)
    } else {
        None
    };
    f(&RunOptions { threads, progress })
}

fn header_fields(
    params: &Params,
    uuid: Option<Uuid>,
    geometry: &Geometry,
) -> Vec<(&'static str, Value)> {
    // veritysetup prints an empty UUID when there is no superblock.
    let uuid = uuid.map(|u| u.to_string()).unwrap_or_default();
    let mut fields = vec![("UUID", json!(uuid))];
    fields.extend([
        ("Hash type", json!(params.hash_type.number())),
        ("Data blocks", json!(params.data_blocks)),
        ("Data block size", json!(params.data_block_size)),
        ("Hash blocks", json!(geometry.tree_blocks)),
        ("Hash block size", json!(params.hash_block_size)),
        ("Hash algorithm", json!(params.algorithm.name())),
        ("Salt", json!(params.salt.to_string())),
    ]);
    fields
}

fn json_key(label: &str) -> String {
    label.to_lowercase().replace(' ', "_")
}

/// Prints fields the way veritysetup does (label, padding, tab, value) or as JSON.
fn print_fields(title: &str, fields: &[(&'static str, Value)], as_json: bool) {
    if as_json {
        let map: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (json_key(k), v.clone()))
            .collect();
        println!("{}", Value::Object(map));
        return;
    }
    println!("{title}");
    for (label, value) in fields {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match *label {
            "Root hash" => println!("{label}:      \t{text}"),
            "Hash device size" => println!("{label}: \t{text} [bytes]"),
            _ => println!("{:<17}\t{text}", format!("{label}:")),
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Format(cmd) => format(cmd),
        Command::Verify(cmd) => verify(cmd),
        Command::Dump(cmd) => dump(cmd),
        Command::Table(cmd) => table(cmd),
        Command::Open(cmd) => open(cmd),
        Command::Close(cmd) => close(cmd),
        Command::Status(cmd) => status(cmd),
    }
}

/// `verity format`.
fn format(cmd: FormatCmd) -> Result<(), Failure> {
    let FormatCmd {
        data,
        hash,
        tree,
        uuid,
        common,
    } = cmd;
    let salt = match &tree.salt {
        Some(s) => s.parse::<Salt>()?,
        None => Salt::new(random_bytes(32)?)?,
    };
    let uuid = match uuid {
        Some(u) => u.parse()?,
        None => random_uuid()?,
    };
    let opts = FormatOptions {
        hash_type: HashType::from_number(tree.hash_type)?,
        algorithm: tree.algorithm.parse()?,
        data_block_size: tree.data_block_size,
        hash_block_size: tree.hash_block_size,
        data_blocks: tree.data_blocks,
        salt,
        uuid,
        hash_offset: tree.hash_offset,
        superblock: !tree.no_superblock,
    };
    let f = with_progress("format", tree.threads, |run| {
        verity::format(&data, &hash, &opts, run)
    })?;
    let uuid = (!tree.no_superblock).then_some(f.uuid);
    let mut fields = header_fields(&f.params, uuid, &f.geometry);
    fields.push(("Root hash", json!(f.root_hash.to_string())));
    // veritysetup shows the size only for a hash area at the start of its device.
    if f.layout.hash_offset == 0 {
        fields.push(("Hash device size", json!(f.geometry.hash_device_min_size)));
    }
    print_fields(
        &format!("VERITY header information for {}", hash.display()),
        &fields,
        common.json,
    );
    Ok(())
}

/// `verity verify`.
fn verify(cmd: VerifyCmd) -> Result<(), Failure> {
    let VerifyCmd {
        data,
        hash,
        root_hash,
        tree,
        common,
    } = cmd;
    let params = if tree.no_superblock {
        Some(tree.resolve(&hash, Some(&data))?.0)
    } else {
        None
    };
    let opts = VerifyOptions {
        hash_offset: tree.hash_offset,
        superblock: !tree.no_superblock,
        params,
    };
    let v = with_progress("verify", tree.threads, |run| {
        verity::verify(&data, &hash, &root_hash, &opts, run)
    })?;
    let problems: Vec<String> = v.report.mismatches.iter().map(|m| m.to_string()).collect();
    if common.json {
        let blocks: Vec<Value> = v
            .report
            .mismatches
            .iter()
            .map(|m| match m {
                verity::Mismatch::DataBlock { block } => json!({"kind": "data", "block": block}),
                verity::Mismatch::HashBlock { level, index, device_block } => json!({"kind": "hash", "level": level, "block": index, "hash_device_block": device_block}),
                verity::Mismatch::Padding { level, device_block } => json!({"kind": "padding", "level": level, "hash_device_block": device_block}),
            })
            .collect();
        println!(
            "{}",
            json!({"verified": v.report.is_ok(), "mismatches": v.report.total, "corrupt": blocks})
        );
    } else if v.report.is_ok() {
        println!("Verification of data area succeeded.");
    } else {
        for p in &problems {
            eprintln!("verity: {p}");
        }
        let shown = problems.len() as u64;
        if v.report.total > shown {
            eprintln!("verity: ... and {} more", v.report.total - shown);
        }
    }
    if v.report.is_ok() {
        Ok(())
    } else {
        Err(Failure {
            message: format!(
                "verification failed: {} corrupt block(s), first: {}",
                v.report.total,
                problems.first().map_or("?", String::as_str)
            ),
            code: EXIT_CORRUPT,
        })
    }
}

/// `verity dump`.
fn dump(cmd: DumpCmd) -> Result<(), Failure> {
    let DumpCmd {
        hash,
        hash_offset,
        common,
    } = cmd;
    let sb: Superblock = verity::read_superblock(&hash, hash_offset)?;
    let layout = Layout {
        hash_offset,
        ..Layout::default()
    };
    let geometry = Geometry::new(&sb.params, &layout)?;
    let mut fields = header_fields(&sb.params, Some(sb.uuid), &geometry);
    if hash_offset == 0 {
        fields.push(("Hash device size", json!(geometry.hash_device_min_size)));
    }
    print_fields(
        &format!("VERITY header information for {}", hash.display()),
        &fields,
        common.json,
    );
    Ok(())
}

/// `verity table`.
fn table(cmd: TableCmd) -> Result<(), Failure> {
    let TableCmd {
        data,
        hash,
        root_hash,
        superblock_from,
        dm_mod_create,
        dm_uuid,
        tree,
        table,
        common,
    } = cmd;
    let source = superblock_from.unwrap_or_else(|| PathBuf::from(&hash));
    let (params, _) = tree.resolve(&source, None)?;
    let geometry = Geometry::new(&params, &tree.layout())?;
    let root = RootHash::from_hex(params.algorithm, &root_hash)?;
    let t = VerityTable::new(data, hash, &params, &geometry, &root, table.options());
    let text = match &dm_mod_create {
        Some(name) => format!(
            "dm-mod.create=\"{}\"",
            t.dm_mod_create(name, dm_uuid.as_deref())
        ),
        None => t.line(),
    };
    if common.json {
        let v = match &dm_mod_create {
            Some(name) => json!({
                "table": t.line(),
                "dm_mod_create": t.dm_mod_create(name, dm_uuid.as_deref()),
            }),
            None => json!({"table": t.line()}),
        };
        println!("{v}");
    } else {
        println!("{text}");
    }
    Ok(())
}

/// `verity open`.
fn open(cmd: OpenCmd) -> Result<(), Failure> {
    let OpenCmd {
        data,
        name,
        hash,
        root_hash,
        dm_uuid,
        tree,
        table,
        common,
    } = cmd;
    let (params, _) = tree.resolve(&hash, Some(&data))?;
    let geometry = Geometry::new(&params, &tree.layout())?;
    let root = RootHash::from_hex(params.algorithm, &root_hash)?;
    let t = VerityTable::new(
        data.display().to_string(),
        hash.display().to_string(),
        &params,
        &geometry,
        &root,
        table.options(),
    );
    let control = context(dm::Control::open(), "opening device-mapper")?;
    let info = device::open(&control, &name, &dm_uuid, &t)?;
    let node = info.devnode(Path::new("/dev"));
    if common.json {
        println!(
            "{}",
            json!({"name": info.name, "major": info.major(), "minor": info.minor(), "devnode": node.display().to_string()})
        );
    } else {
        println!(
            "{} is {} ({}:{})",
            info.name,
            node.display(),
            info.major(),
            info.minor()
        );
    }
    Ok(())
}

/// `verity close`.
fn close(cmd: CloseCmd) -> Result<(), Failure> {
    let CloseCmd { name, common } = cmd;
    let control = context(dm::Control::open(), "opening device-mapper")?;
    device::close(&control, &name)?;
    if common.json {
        println!("{}", json!({"name": name, "closed": true}));
    }
    Ok(())
}

/// `verity status`.
fn status(cmd: StatusCmd) -> Result<(), Failure> {
    let StatusCmd { name, common } = cmd;
    let control = context(dm::Control::open(), "opening device-mapper")?;
    let s = device::status(&control, &name)?;
    let verified = s.health == device::Health::Verified;
    if common.json {
        println!(
            "{}",
            json!({"name": name, "status": if verified {"verified"} else {"corrupted"}, "line": s.line, "read_only": s.info.read_only(), "open_count": s.info.open_count, "minor": s.info.minor()})
        );
    } else {
        println!(
            "{name} is active{}.",
            if s.info.open_count > 0 {
                " and is in use"
            } else {
                ""
            }
        );
        println!(
            "  status:      {}",
            if verified { "verified" } else { "corrupted" }
        );
        println!("  read-only:   {}", s.info.read_only());
        println!("  device:      /dev/dm-{}", s.info.minor());
    }
    if verified {
        Ok(())
    } else {
        Err(Failure {
            message: format!("{name}: corruption detected"),
            code: EXIT_CORRUPT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_line_up_like_veritysetup() {
        assert_eq!(
            format!("{:<17}\t{}", "Hash type:", 1),
            "Hash type:       \t1"
        );
        assert_eq!(json_key("Data block size"), "data_block_size");
    }

    #[test]
    fn random_uuid_is_version_4() {
        let u = random_uuid().ok().unwrap();
        assert_eq!(u.0[6] >> 4, 4);
        assert_eq!(u.0[8] >> 6, 2);
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn table_args_map_to_options() {
        let t = TableArgs {
            restart_on_corruption: false,
            panic_on_corruption: true,
            ignore_zero_blocks: true,
            check_at_most_once: false,
        };
        let o = t.options();
        assert_eq!(o.error_mode, ErrorMode::Panic);
        assert!(o.ignore_zero_blocks && !o.check_at_most_once);
    }
}
