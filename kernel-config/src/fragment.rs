//! Kernel configuration for Liftoff: the fragments, and a checker for kernel `.config` files.
//!
//! # The fragments
//!
//! `kernel-config/common.config`, `x86_64.config` and `aarch64.config` are plain Kconfig
//! fragments: `scripts/build-kernel` merges them onto `make tinyconfig` with the kernel's
//! `scripts/kconfig/merge_config.sh` to build a kernel that boots Liftoff with no modules at
//! all. This crate embeds the same files and reads them as the list of requirements, so the
//! build and the checker can never disagree. Kconfig sees only the option lines; the checker
//! also reads these comments:
//!
//! - `## Title` starts a group. The `# ...` lines that follow say why the group is there, and
//!   one `# breaks: ...` line says what fails without it. Every group has both.
//! - `# liftoff: module-ok` before an option: a module is acceptable on a distribution kernel,
//!   because PID 1 loads the image's modules (boot flow stage 3) before it needs the option.
//! - `# liftoff: recommended` before an option: its absence is a warning, not an error (the
//!   option makes the minimal kernel faster or more capable, but Liftoff works without it).
//! - Both markers may share one line: `# liftoff: module-ok recommended`.
//! - A `# breaks: ...` line after the group's first `# breaks:` line is about the next
//!   option alone (for an option whose absence breaks less than the group's), and must be
//!   followed by that option or its marker.
//! - `CONFIG_X=y` and `# CONFIG_X is not set` are requirements; `=m` is refused, since the
//!   fragments describe a kernel without modules.
//!
//! # Checking a `.config`
//!
//! [`check`] compares every requirement of one architecture ([`requirements`]) with a parsed
//! [`DotConfig`] and returns a [`Report`] with one [`Finding`] per requirement:
//!
//! - built in as asked: [`Status::Ok`];
//! - a module where a built-in option is asked, the option is `module-ok` and the mode is
//!   [`Mode::ModulesAllowed`]: [`Status::Module`] (the image must list the module);
//! - anything else is [`Status::Missing`] (not set, or absent because Kconfig dropped it when
//!   its dependencies were missing) or [`Status::Wrong`] (a module that must be built in, a
//!   different value), with [`Severity::Error`] for required options and
//!   [`Severity::Warning`] for recommended ones.
//!
//! [`Mode::NoModules`] accepts nothing but built-in options: it is how `scripts/build-kernel`
//! verifies that every option it asked for survived `make olddefconfig`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// The fragment shared by every architecture.
pub const COMMON_FRAGMENT: &str = include_str!("../common.config");
/// The x86_64 fragment, merged after [`COMMON_FRAGMENT`].
pub const X86_64_FRAGMENT: &str = include_str!("../x86_64.config");
/// The aarch64 fragment, merged after [`COMMON_FRAGMENT`].
pub const AARCH64_FRAGMENT: &str = include_str!("../aarch64.config");

/// The architectures Liftoff supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// x86_64 (`ARCH=x86_64`, `bzImage`).
    X86_64,
    /// aarch64 (`ARCH=arm64`, `Image`).
    Aarch64,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The name Liftoff uses (`x86_64`, `aarch64`), also the fragment's file stem.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The architecture's fragment file name and text.
    pub fn fragment(self) -> (&'static str, &'static str) {
        match self {
            Arch::X86_64 => ("x86_64.config", X86_64_FRAGMENT),
            Arch::Aarch64 => ("aarch64.config", AARCH64_FRAGMENT),
        }
    }

    /// The architecture a `.config` was made for, from `CONFIG_X86_64=y` or `CONFIG_ARM64=y`.
    pub fn of_config(config: &DotConfig) -> Option<Arch> {
        if config.get("CONFIG_X86_64") == Some(&Value::Yes) {
            Some(Arch::X86_64)
        } else if config.get("CONFIG_ARM64") == Some(&Value::Yes) {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = UnknownArch;

    /// Accepts Liftoff's names and the kernel's/Debian's (`amd64`, `arm64`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(UnknownArch(other.to_owned())),
        }
    }
}

/// An architecture name that is not one of Liftoff's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture {0:?} (expected x86_64 or aarch64)")]
pub struct UnknownArch(pub String);

/// The value of one Kconfig option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// `=y`: built in.
    Yes,
    /// `=m`: a module.
    Module,
    /// `# CONFIG_X is not set` (or `=n`).
    No,
    /// A string (kept with its quotes, as in the file) or a number.
    Text(String),
}

impl Value {
    fn parse(raw: &str) -> Value {
        match raw {
            "y" => Value::Yes,
            "m" => Value::Module,
            "n" => Value::No,
            other => Value::Text(other.to_owned()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Yes => f.write_str("y"),
            Value::Module => f.write_str("m"),
            Value::No => f.write_str("not set"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// Whether a missing option is an error or a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Liftoff fails without it: the checker exits 1.
    Required,
    /// Marked `# liftoff: recommended`: a warning.
    Recommended,
}

/// One option a fragment asks for, with the reasons from its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The option, with its `CONFIG_` prefix.
    pub name: String,
    /// The value the fragment sets.
    pub want: Value,
    /// `# liftoff: module-ok`: a module is fine when modules are allowed.
    pub module_ok: bool,
    /// Required or recommended.
    pub level: Level,
    /// The group's title (`## ...`).
    pub group: String,
    /// The group's explanation, its comment lines joined with spaces.
    pub why: String,
    /// What breaks without it: the option's own `# breaks:` line, else its group's.
    pub breaks: String,
    /// The fragment file the option is set in.
    pub file: String,
    /// 1-based line number in [`Requirement::file`].
    pub line: usize,
}

/// A fragment that does not follow the format in the crate docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// An option line before the first `## ` group header.
    #[error("{file}:{line}: option {option} is outside any `## ` group")]
    OutsideGroup {
        /// Fragment file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The option.
        option: String,
    },
    /// A `# liftoff:` marker with an unknown word, or not followed by an option.
    #[error("{file}:{line}: {reason}")]
    BadMarker {
        /// Fragment file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A line that is neither a comment, a blank line nor a Kconfig assignment.
    #[error("{file}:{line}: not a Kconfig line: {text:?}")]
    BadLine {
        /// Fragment file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The line.
        text: String,
    },
    /// `CONFIG_X=m`: the fragments build a kernel without modules.
    #[error("{file}:{line}: {option}=m: fragments ask for built-in options only (mark it `# liftoff: module-ok` instead)")]
    ModuleValue {
        /// Fragment file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The option.
        option: String,
    },
    /// A group without its why text or its `# breaks:` line.
    #[error("{file}:{line}: group {group:?} lacks {what}")]
    IncompleteGroup {
        /// Fragment file.
        file: String,
        /// 1-based line of the `## ` header.
        line: usize,
        /// The group's title.
        group: String,
        /// "a why comment" or "a `# breaks:` line" or "options".
        what: &'static str,
    },
    /// The same option set twice (in one fragment or across common and an architecture).
    #[error("{file}:{line}: {option} is already set at {first}")]
    Duplicate {
        /// Fragment file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The option.
        option: String,
        /// `file:line` of the first setting.
        first: String,
    },
}

/// One `.config`/fragment assignment line: `CONFIG_X=v` or `# CONFIG_X is not set`.
fn parse_assignment(line: &str) -> Option<(&str, Value)> {
    if let Some(rest) = line.strip_prefix("# ") {
        let name = rest.strip_suffix(" is not set")?;
        return valid_name(name).then_some((name, Value::No));
    }
    let (name, raw) = line.split_once('=')?;
    (valid_name(name) && !raw.is_empty()).then(|| (name, Value::parse(raw)))
}

fn valid_name(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.bytes().all(|b| {
                b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b.is_ascii_lowercase()
            })
    })
}

struct GroupState {
    title: String,
    line: usize,
    why: Vec<String>,
    breaks: Option<String>,
    options: usize,
}

impl GroupState {
    fn finish(self, file: &str) -> Result<(), FragmentError> {
        let missing = if self.why.is_empty() {
            Some("a why comment")
        } else if self.breaks.is_none() {
            Some("a `# breaks:` line")
        } else if self.options == 0 {
            Some("options")
        } else {
            None
        };
        match missing {
            Some(what) => Err(FragmentError::IncompleteGroup {
                file: file.to_owned(),
                line: self.line,
                group: self.title,
                what,
            }),
            None => Ok(()),
        }
    }
}

#[derive(Default)]
struct Markers {
    line: usize,
    module_ok: bool,
    recommended: bool,
}

/// Parses one fragment into its requirements, in file order.
///
/// `file` names the fragment in errors and in [`Requirement::file`].
pub fn parse_fragment(file: &str, text: &str) -> Result<Vec<Requirement>, FragmentError> {
    let mut out = Vec::new();
    let mut group: Option<GroupState> = None;
    let mut markers: Option<Markers> = None;
    // An option's own `# breaks:` line: (line, text).
    let mut own_breaks: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim_end();
        if let Some((name, want)) = parse_assignment(trimmed) {
            let Some(g) = group.as_mut() else {
                return Err(FragmentError::OutsideGroup {
                    file: file.to_owned(),
                    line,
                    option: name.to_owned(),
                });
            };
            if want == Value::Module {
                return Err(FragmentError::ModuleValue {
                    file: file.to_owned(),
                    line,
                    option: name.to_owned(),
                });
            }
            let m = markers.take().unwrap_or_default();
            if m.module_ok && want != Value::Yes {
                return Err(FragmentError::BadMarker {
                    file: file.to_owned(),
                    line: m.line,
                    reason: format!("module-ok on {name}, which is not set to y"),
                });
            }
            let own = own_breaks.take().map(|(_, text)| text);
            if let Some(b) = own.as_ref().or(g.breaks.as_ref()) {
                g.options += 1;
                out.push(Requirement {
                    name: name.to_owned(),
                    want,
                    module_ok: m.module_ok,
                    level: if m.recommended {
                        Level::Recommended
                    } else {
                        Level::Required
                    },
                    group: g.title.clone(),
                    why: g.why.join(" "),
                    breaks: b.clone(),
                    file: file.to_owned(),
                    line,
                });
            } else {
                return Err(FragmentError::IncompleteGroup {
                    file: file.to_owned(),
                    line: g.line,
                    group: g.title.clone(),
                    what: "a `# breaks:` line before its first option",
                });
            }
            continue;
        }
        if let Some(m) = markers.as_ref() {
            return Err(FragmentError::BadMarker {
                file: file.to_owned(),
                line: m.line,
                reason: "a `# liftoff:` marker must be followed directly by an option".to_owned(),
            });
        }
        if let Some((at, _)) = own_breaks.as_ref() {
            if !trimmed.starts_with("# liftoff:") {
                return Err(FragmentError::BadMarker {
                    file: file.to_owned(),
                    line: *at,
                    reason: "an option's `# breaks:` line must be followed by the option or its \
                             `# liftoff:` marker"
                        .to_owned(),
                });
            }
        }
        if trimmed.is_empty() {
            continue;
        }
        if let Some(title) = trimmed.strip_prefix("## ") {
            if let Some(done) = group.take() {
                done.finish(file)?;
            }
            group = Some(GroupState {
                title: title.trim().to_owned(),
                line,
                why: Vec::new(),
                breaks: None,
                options: 0,
            });
            continue;
        }
        let Some(comment) = trimmed.strip_prefix('#') else {
            return Err(FragmentError::BadLine {
                file: file.to_owned(),
                line,
                text: trimmed.to_owned(),
            });
        };
        let comment = comment.trim();
        if let Some(words) = comment.strip_prefix("liftoff:") {
            let mut m = Markers {
                line,
                ..Markers::default()
            };
            for word in words.split_whitespace() {
                match word {
                    "module-ok" => m.module_ok = true,
                    "recommended" => m.recommended = true,
                    other => {
                        return Err(FragmentError::BadMarker {
                            file: file.to_owned(),
                            line,
                            reason: format!(
                                "unknown marker {other:?} (expected module-ok or recommended)"
                            ),
                        })
                    }
                }
            }
            if !m.module_ok && !m.recommended {
                return Err(FragmentError::BadMarker {
                    file: file.to_owned(),
                    line,
                    reason: "empty `# liftoff:` marker".to_owned(),
                });
            }
            markers = Some(m);
            continue;
        }
        // Comments before the first group are the file's preamble.
        let Some(g) = group.as_mut() else { continue };
        if let Some(b) = comment.strip_prefix("breaks:") {
            if b.trim().is_empty() {
                return Err(FragmentError::BadMarker {
                    file: file.to_owned(),
                    line,
                    reason: "an empty `# breaks:` line (say what fails without the option)"
                        .to_owned(),
                });
            }
            if g.breaks.is_none() {
                g.breaks = Some(b.trim().to_owned());
            } else {
                own_breaks = Some((line, b.trim().to_owned()));
            }
        } else if g.options == 0 && g.breaks.is_none() && !comment.is_empty() {
            g.why.push(comment.to_owned());
        }
    }
    if let Some(at) = markers.map(|m| m.line).or(own_breaks.map(|(at, _)| at)) {
        return Err(FragmentError::BadMarker {
            file: file.to_owned(),
            line: at,
            reason: "a `# liftoff:` marker or `# breaks:` line at the end of the file".to_owned(),
        });
    }
    if let Some(done) = group {
        done.finish(file)?;
    }
    Ok(out)
}

/// Every requirement for `arch`: the common fragment, then the architecture's, with
/// duplicates across the two refused.
pub fn requirements(arch: Arch) -> Result<Vec<Requirement>, FragmentError> {
    let (arch_file, arch_text) = arch.fragment();
    let mut all = parse_fragment("common.config", COMMON_FRAGMENT)?;
    all.extend(parse_fragment(arch_file, arch_text)?);
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    for r in &all {
        if let Some(first) = seen.insert(&r.name, format!("{}:{}", r.file, r.line)) {
            return Err(FragmentError::Duplicate {
                file: r.file.clone(),
                line: r.line,
                option: r.name.clone(),
                first,
            });
        }
    }
    Ok(all)
}

/// A parsed kernel `.config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DotConfig {
    values: BTreeMap<String, Value>,
}

/// A `.config` line that is not a Kconfig assignment or comment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: not a Kconfig line: {text:?}")]
pub struct DotConfigError {
    /// 1-based line.
    pub line: usize,
    /// The line.
    pub text: String,
}

impl DotConfig {
    /// Parses `.config` text: `CONFIG_X=v`, `# CONFIG_X is not set`, other comments and
    /// blank lines. A later setting of the same option wins, as in Kconfig.
    pub fn parse(text: &str) -> Result<DotConfig, DotConfigError> {
        let mut values = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            if let Some((name, value)) = parse_assignment(line) {
                values.insert(name.to_owned(), value);
            } else if !(line.is_empty() || line.starts_with('#')) {
                return Err(DotConfigError {
                    line: index + 1,
                    text: line.to_owned(),
                });
            }
        }
        Ok(DotConfig { values })
    }

    /// The option's value: `None` when the file does not mention it at all.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
}

/// Whether modules satisfy `module-ok` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A distribution kernel: PID 1 loads modules, so `module-ok` options may be `=m`.
    ModulesAllowed,
    /// `--no-modules`: the kernel boots Liftoff with no modules, everything is built in.
    NoModules,
}

/// What the checked file has for one requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Have {
    /// The file sets it (`y`, `m`, not set, or a text value).
    Set(Value),
    /// The file does not mention it: Kconfig dropped it (unmet dependencies) or the option
    /// does not exist in that kernel version.
    Absent,
}

impl fmt::Display for Have {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Have::Set(v) => v.fmt(f),
            Have::Absent => f.write_str("absent"),
        }
    }
}

/// The outcome for one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Set as the fragment asks.
    Ok,
    /// A module where the fragment asks for built in, and a module is acceptable.
    Module,
    /// Not set or absent.
    Missing,
    /// Set to another value (including a module where only built in will do).
    Wrong,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Nothing to report.
    Ok,
    /// A module the image must list so PID 1 loads it.
    Info,
    /// A recommended option is missing or wrong.
    Warning,
    /// A required option is missing or wrong: Liftoff breaks.
    Error,
}

/// The outcome for one requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The requirement checked.
    pub requirement: Requirement,
    /// What the file has.
    pub have: Have,
    /// The outcome.
    pub status: Status,
}

impl Finding {
    /// How much this finding matters.
    pub fn severity(&self) -> Severity {
        match (self.status, self.requirement.level) {
            (Status::Ok, _) => Severity::Ok,
            (Status::Module, _) => Severity::Info,
            (_, Level::Recommended) => Severity::Warning,
            (_, Level::Required) => Severity::Error,
        }
    }
}

/// Compares one requirement with what the file has.
pub fn judge(requirement: &Requirement, have: &Have, mode: Mode) -> Status {
    let value = match have {
        Have::Absent => {
            // An option that does not appear is off, which is what `is not set` asks.
            return if requirement.want == Value::No {
                Status::Ok
            } else {
                Status::Missing
            };
        }
        Have::Set(v) => v,
    };
    match (&requirement.want, value) {
        (want, got) if want == got => Status::Ok,
        (Value::Yes, Value::Module) if requirement.module_ok && mode == Mode::ModulesAllowed => {
            Status::Module
        }
        (_, Value::No) => Status::Missing,
        _ => Status::Wrong,
    }
}

/// Checks a `.config` against requirements; one finding per requirement, in fragment order.
pub fn check(requirements: &[Requirement], config: &DotConfig, mode: Mode) -> Report {
    let findings = requirements
        .iter()
        .map(|r| {
            let have = config
                .get(&r.name)
                .map_or(Have::Absent, |v| Have::Set(v.clone()));
            let status = judge(r, &have, mode);
            Finding {
                requirement: r.clone(),
                have,
                status,
            }
        })
        .collect();
    Report { mode, findings }
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The mode it was checked in.
    pub mode: Mode,
    /// One finding per requirement, in fragment order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The findings of one severity.
    pub fn with_severity(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.severity() == severity)
    }

    /// The option names of one severity, sorted.
    pub fn names(&self, severity: Severity) -> BTreeSet<&str> {
        self.with_severity(severity)
            .map(|f| f.requirement.name.as_str())
            .collect()
    }

    /// True when no required option is missing or wrong.
    pub fn passes(&self) -> bool {
        self.with_severity(Severity::Error).next().is_none()
    }
}

/// One human-readable line for a finding that is not [`Severity::Ok`]:
/// `error: CONFIG_X: need y (built in), have m (module): <what breaks> [group; file:line]`.
pub fn describe(finding: &Finding) -> String {
    let r = &finding.requirement;
    let label = match finding.severity() {
        Severity::Ok => "ok",
        Severity::Info => "module",
        Severity::Warning => "warning",
        Severity::Error => "error",
    };
    let need = match (&r.want, r.module_ok) {
        (Value::Yes, true) => "y (built in; a module is fine when PID 1 loads it)".to_owned(),
        (Value::Yes, false) => "y (built in)".to_owned(),
        (Value::No, _) => "not set".to_owned(),
        (v, _) => v.to_string(),
    };
    let have = match &finding.have {
        Have::Set(Value::Yes) => "y (built in)".to_owned(),
        Have::Set(Value::Module) => "m (module)".to_owned(),
        Have::Absent => "absent (dependencies unmet or no such option)".to_owned(),
        other => other.to_string(),
    };
    let consequence = match finding.status {
        Status::Module => format!("list the module in the image, or: {}", r.breaks),
        _ => r.breaks.clone(),
    };
    format!(
        "{label}: {}: need {need}, have {have}: {consequence} [{}; {}:{}]",
        r.name, r.group, r.file, r.line
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(want: Value, module_ok: bool) -> Requirement {
        Requirement {
            name: "CONFIG_T".into(),
            want,
            module_ok,
            level: Level::Required,
            group: "g".into(),
            why: "w".into(),
            breaks: "b".into(),
            file: "f".into(),
            line: 1,
        }
    }

    #[test]
    fn judge_table() {
        use Mode::*;
        use Status::*;
        let set = |v: Value| Have::Set(v);
        let t = |s: &str| Value::Text(s.into());
        let cases: Vec<(Value, bool, Have, Mode, Status)> = vec![
            (Value::Yes, false, set(Value::Yes), ModulesAllowed, Ok),
            (Value::Yes, false, set(Value::Yes), NoModules, Ok),
            (Value::Yes, true, set(Value::Yes), NoModules, Ok),
            (Value::Yes, true, set(Value::Module), ModulesAllowed, Module),
            (Value::Yes, true, set(Value::Module), NoModules, Wrong),
            (Value::Yes, false, set(Value::Module), ModulesAllowed, Wrong),
            (Value::Yes, false, set(Value::Module), NoModules, Wrong),
            (Value::Yes, true, set(Value::No), ModulesAllowed, Missing),
            (Value::Yes, false, Have::Absent, ModulesAllowed, Missing),
            (Value::Yes, true, Have::Absent, NoModules, Missing),
            (Value::Yes, false, set(t("1")), ModulesAllowed, Wrong),
            (Value::No, false, set(Value::No), NoModules, Ok),
            (Value::No, false, Have::Absent, NoModules, Ok),
            (Value::No, false, set(Value::Yes), ModulesAllowed, Wrong),
            (Value::No, false, set(Value::Module), ModulesAllowed, Wrong),
            (t("\"a\""), false, set(t("\"a\"")), NoModules, Ok),
            (t("\"a\""), false, set(t("\"b\"")), NoModules, Wrong),
            (t("\"a\""), false, set(Value::No), NoModules, Missing),
            (t("\"a\""), false, Have::Absent, NoModules, Missing),
        ];
        for (want, module_ok, have, mode, expected) in cases {
            let r = req(want.clone(), module_ok);
            assert_eq!(
                judge(&r, &have, mode),
                expected,
                "want {want:?} module_ok {module_ok} have {have:?} mode {mode:?}"
            );
        }
    }

    #[test]
    fn severity_table() {
        let cases = [
            (Status::Ok, Level::Required, Severity::Ok),
            (Status::Ok, Level::Recommended, Severity::Ok),
            (Status::Module, Level::Required, Severity::Info),
            (Status::Module, Level::Recommended, Severity::Info),
            (Status::Missing, Level::Required, Severity::Error),
            (Status::Wrong, Level::Required, Severity::Error),
            (Status::Missing, Level::Recommended, Severity::Warning),
            (Status::Wrong, Level::Recommended, Severity::Warning),
        ];
        for (status, level, severity) in cases {
            let mut requirement = req(Value::Yes, true);
            requirement.level = level;
            let f = Finding {
                requirement,
                have: Have::Absent,
                status,
            };
            assert_eq!(f.severity(), severity, "{status:?} {level:?}");
        }
    }

    #[test]
    fn dotconfig_lines() {
        let text = "#\n# Automatically generated file; DO NOT EDIT.\nCONFIG_A=y\nCONFIG_B=m\n\
                    # CONFIG_C is not set\nCONFIG_D=\"x y\"\nCONFIG_E=0x10\nCONFIG_A=n\n\n";
        let c = DotConfig::parse(text).unwrap();
        assert_eq!(c.get("CONFIG_A"), Some(&Value::No));
        assert_eq!(c.get("CONFIG_B"), Some(&Value::Module));
        assert_eq!(c.get("CONFIG_C"), Some(&Value::No));
        assert_eq!(c.get("CONFIG_D"), Some(&Value::Text("\"x y\"".into())));
        assert_eq!(c.get("CONFIG_E"), Some(&Value::Text("0x10".into())));
        assert_eq!(c.get("CONFIG_F"), None);
    }

    #[test]
    fn dotconfig_rejects_garbage() {
        for (text, line) in [
            ("CONFIG_A=y\nhello\n", 2),
            ("CONFIG_A=\n", 1),
            ("FOO=y\n", 1),
            ("CONFIG_=y\n", 1),
        ] {
            let err = DotConfig::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
        }
    }

    const GOOD: &str = "# preamble\n#\n## Group one\n# why one\n# more why\n# breaks: it breaks\n\
                        CONFIG_A=y\n# liftoff: module-ok\nCONFIG_B=y\n# liftoff: recommended\n\
                        # CONFIG_C is not set\n\n## Group two\n# why two\n# breaks: other\n\
                        # liftoff: module-ok recommended\nCONFIG_D=y\n# breaks: own\nCONFIG_E=\"s\"\n\
                        # breaks: own two\n# liftoff: recommended\nCONFIG_F=y\nCONFIG_G=y\n";

    #[test]
    fn fragment_parses() {
        let reqs = parse_fragment("t.config", GOOD).unwrap();
        let got: Vec<_> = reqs
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.want.clone(),
                    r.module_ok,
                    r.level,
                    r.group.as_str(),
                    r.why.as_str(),
                    r.breaks.as_str(),
                    r.line,
                )
            })
            .collect();
        let g1 = ("Group one", "why one more why", "it breaks");
        let g2 = ("Group two", "why two", "other");
        assert_eq!(
            got,
            vec![
                (
                    "CONFIG_A",
                    Value::Yes,
                    false,
                    Level::Required,
                    g1.0,
                    g1.1,
                    g1.2,
                    7
                ),
                (
                    "CONFIG_B",
                    Value::Yes,
                    true,
                    Level::Required,
                    g1.0,
                    g1.1,
                    g1.2,
                    9
                ),
                (
                    "CONFIG_C",
                    Value::No,
                    false,
                    Level::Recommended,
                    g1.0,
                    g1.1,
                    g1.2,
                    11
                ),
                (
                    "CONFIG_D",
                    Value::Yes,
                    true,
                    Level::Recommended,
                    g2.0,
                    g2.1,
                    g2.2,
                    17
                ),
                (
                    "CONFIG_E",
                    Value::Text("\"s\"".into()),
                    false,
                    Level::Required,
                    g2.0,
                    g2.1,
                    "own",
                    19
                ),
                (
                    "CONFIG_F",
                    Value::Yes,
                    false,
                    Level::Recommended,
                    g2.0,
                    g2.1,
                    "own two",
                    22
                ),
                (
                    "CONFIG_G",
                    Value::Yes,
                    false,
                    Level::Required,
                    g2.0,
                    g2.1,
                    g2.2,
                    23
                ),
            ]
        );
    }

    #[test]
    fn fragment_errors() {
        let cases: &[(&str, &str)] = &[
            ("CONFIG_A=y\n", "outside any"),
            (
                "## G\n# why\n# breaks: b\nCONFIG_A=m\n",
                "built-in options only",
            ),
            (
                "## G\n# why\n# breaks: b\n# liftoff: modular\nCONFIG_A=y\n",
                "unknown marker",
            ),
            (
                "## G\n# why\n# breaks: b\n# liftoff:\nCONFIG_A=y\n",
                "empty",
            ),
            (
                "## G\n# why\n# breaks: b\n# liftoff: module-ok\n\nCONFIG_A=y\n",
                "followed directly",
            ),
            (
                "## G\n# why\n# breaks: b\nCONFIG_A=y\n# liftoff: recommended\n",
                "end of the file",
            ),
            (
                "## G\n# why\n# breaks: b\nCONFIG_A=y\n# breaks: c\n",
                "end of the file",
            ),
            (
                "## G\n# why\n# breaks: b\nCONFIG_A=y\n# breaks: c\n# x\nCONFIG_B=y\n",
                "followed by the option",
            ),
            (
                "## G\n# why\n# breaks: b\n# liftoff: module-ok\n# CONFIG_A is not set\n",
                "not set to y",
            ),
            ("## G\n# breaks: b\nCONFIG_A=y\n", "why comment"),
            // Found by the fuzz smoke run: a group's and an option's empty `# breaks:`.
            ("## G\n# why\n# breaks:\nCONFIG_A=y\n", "empty `# breaks:`"),
            (
                "## G\n# why\n# breaks: b\nCONFIG_A=y\n# breaks:  \nCONFIG_B=y\n",
                "empty `# breaks:`",
            ),
            ("## G\n# why\nCONFIG_A=y\n", "breaks"),
            (
                "## G\n# why\n# breaks: b\n## H\n# why\n# breaks: b\nCONFIG_A=y\n",
                "lacks options",
            ),
            (
                "## G\n# why\n# breaks: b\nCONFIG_A=y\nbogus\n",
                "not a Kconfig line",
            ),
        ];
        for (text, needle) in cases {
            let err = parse_fragment("t", text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn embedded_fragments_are_well_formed() {
        for arch in Arch::ALL {
            let reqs = requirements(arch).unwrap();
            assert!(reqs.len() > 100, "{arch}: {} options", reqs.len());
            // Each architecture names itself, so a checker run with the wrong --arch fails.
            let own = match arch {
                Arch::X86_64 => "CONFIG_X86_64",
                Arch::Aarch64 => "CONFIG_ARM64",
            };
            assert!(reqs.iter().any(|r| r.name == own && r.want == Value::Yes));
        }
    }

    #[test]
    fn arch_names() {
        for (s, a) in [
            ("x86_64", Arch::X86_64),
            ("amd64", Arch::X86_64),
            ("aarch64", Arch::Aarch64),
            ("arm64", Arch::Aarch64),
        ] {
            assert_eq!(s.parse::<Arch>(), Ok(a));
        }
        assert!("riscv64".parse::<Arch>().is_err());
        let x86 = DotConfig::parse("CONFIG_X86_64=y\n").unwrap();
        let arm = DotConfig::parse("CONFIG_ARM64=y\n").unwrap();
        let none = DotConfig::parse("# CONFIG_X86_64 is not set\n").unwrap();
        assert_eq!(Arch::of_config(&x86), Some(Arch::X86_64));
        assert_eq!(Arch::of_config(&arm), Some(Arch::Aarch64));
        assert_eq!(Arch::of_config(&none), None);
    }
}
