//! Checking a parsed `.config` against the requirements: one finding per requirement,
//! its severity, and the line that describes it.

use std::collections::BTreeSet;
use std::fmt;

use crate::{DotConfig, Level, Requirement, Value};

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
}
