//! The Kconfig assignment syntax the fragments and `.config` files share, and a parsed
//! `.config`.

use std::collections::BTreeMap;
use std::fmt;

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

/// One `.config`/fragment assignment line: `CONFIG_X=v` or `# CONFIG_X is not set`.
pub(crate) fn parse_assignment(line: &str) -> Option<(&str, Value)> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
