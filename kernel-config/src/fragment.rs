//! The fragments' format (see the crate docs): parsing one fragment into requirements,
//! with the reasons from its group, and the requirements of one architecture.

use std::collections::BTreeMap;

use crate::kconfig::parse_assignment;
use crate::{Arch, Value, COMMON_FRAGMENT};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
