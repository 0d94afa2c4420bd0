//! `kernel-config`: check a kernel `.config` against Liftoff's fragments.
//!
//! Exit codes: 0 every required option is there, 1 a required option is missing or wrong
//! (with `--strict`, a recommended one too), 2 usage or I/O error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kernel_config::{
    check, describe, requirements, Arch, DotConfig, Have, Level, Mode, Report, Severity, Status,
    Value,
};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Kernel configuration fragments for Liftoff and a checker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a kernel .config: one line per missing or wrong option and what it breaks.
    Check {
        /// The kernel .config (e.g. /boot/config-6.1.0-56-cloud-amd64).
        config: PathBuf,
        /// Architecture of the config (x86_64/amd64, aarch64/arm64); detected from
        /// CONFIG_X86_64 / CONFIG_ARM64 when omitted.
        #[arg(long)]
        arch: Option<Arch>,
        /// Require every option built in, as for a kernel booted with no modules at all.
        #[arg(long)]
        no_modules: bool,
        /// Treat warnings (missing recommended options) as failures too, as
        /// scripts/build-kernel does: every option the fragments ask for must be there.
        #[arg(long)]
        strict: bool,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print(); // Nothing better to do if stderr is gone.
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Check {
            config,
            arch,
            no_modules,
            strict,
            json,
        } => match run_check(&config, arch, no_modules, strict, json) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(message) => {
                eprintln!("kernel-config: {message}");
                ExitCode::from(2)
            }
        },
    }
}

/// Returns whether the config passes; `Err` is a usage or I/O problem.
fn run_check(
    path: &std::path::Path,
    arch: Option<Arch>,
    no_modules: bool,
    strict: bool,
    json: bool,
) -> Result<bool, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let config = DotConfig::parse(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    let arch = match arch.or_else(|| Arch::of_config(&config)) {
        Some(a) => a,
        None => {
            return Err(format!(
                "{}: neither CONFIG_X86_64=y nor CONFIG_ARM64=y; pass --arch",
                path.display()
            ))
        }
    };
    let reqs = requirements(arch).map_err(|e| format!("reading the built-in fragments: {e}"))?;
    let mode = if no_modules {
        Mode::NoModules
    } else {
        Mode::ModulesAllowed
    };
    let report = check(&reqs, &config, mode);
    if json {
        println!("{}", to_json(path, arch, &report));
    } else {
        print_human(path, arch, &report);
    }
    Ok(report.passes() && !(strict && report.with_severity(Severity::Warning).next().is_some()))
}

fn print_human(path: &std::path::Path, arch: Arch, report: &Report) {
    // Errors first, then warnings, then modules, each in fragment order.
    for severity in [Severity::Error, Severity::Warning, Severity::Info] {
        for f in report.with_severity(severity) {
            println!("{}", describe(f));
        }
    }
    let count = |s| report.with_severity(s).count();
    println!(
        "{}: {arch}, {}: {} errors, {} warnings, {} modules, {} built in as asked",
        path.display(),
        match report.mode {
            Mode::NoModules => "no modules",
            Mode::ModulesAllowed => "modules allowed",
        },
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
        count(Severity::Ok),
    );
}

fn value_json(v: &Value) -> serde_json::Value {
    serde_json::Value::String(match v {
        Value::Yes => "y".into(),
        Value::Module => "m".into(),
        Value::No => "n".into(),
        Value::Text(t) => t.clone(),
    })
}

fn to_json(path: &std::path::Path, arch: Arch, report: &Report) -> serde_json::Value {
    let findings: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            let r = &f.requirement;
            serde_json::json!({
                "option": r.name,
                "need": value_json(&r.want),
                "have": match &f.have {
                    Have::Set(v) => value_json(v),
                    Have::Absent => serde_json::Value::Null,
                },
                "status": match f.status {
                    Status::Ok => "ok",
                    Status::Module => "module",
                    Status::Missing => "missing",
                    Status::Wrong => "wrong",
                },
                "severity": match f.severity() {
                    Severity::Ok => "ok",
                    Severity::Info => "info",
                    Severity::Warning => "warning",
                    Severity::Error => "error",
                },
                "required": r.level == Level::Required,
                "module_ok": r.module_ok,
                "group": r.group,
                "why": r.why,
                "breaks": r.breaks,
                "fragment": format!("{}:{}", r.file, r.line),
            })
        })
        .collect();
    let count = |s| report.with_severity(s).count();
    serde_json::json!({
        "config": path.display().to_string(),
        "arch": arch.name(),
        "mode": match report.mode {
            Mode::NoModules => "no-modules",
            Mode::ModulesAllowed => "modules-allowed",
        },
        "passes": report.passes(),
        "summary": {
            "errors": count(Severity::Error),
            "warnings": count(Severity::Warning),
            "modules": count(Severity::Info),
            "ok": count(Severity::Ok),
        },
        "findings": findings,
    })
}
