//! Errors a DBA sees: each names the file, line and column and says how to
//! fix the problem.

use std::fmt;
use std::path::PathBuf;

use crate::mask::MaskError;

/// A place in a policy file. Line and column are 1-based, as editors show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Whether a finding stops the policy set from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// What is wrong, independent of where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    #[error("YAML syntax: {0}")]
    Syntax(String),
    /// serde's message (unknown field, wrong type …), with the closest valid
    /// name when it is a misspelling.
    #[error("{message}")]
    Invalid {
        message: String,
        suggestion: Option<String>,
    },
    #[error("unsupported policy format version {0}")]
    Version(u32),
    #[error("`{name}` is not a `{expected}` name")]
    BadName {
        name: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Mask(MaskError),
    #[error("key `{0}` is used but not declared in `keys:`")]
    UndeclaredKey(String),
    #[error("column `{name}` is already protected at {first}")]
    DuplicateColumn { name: String, first: String },
    #[error("table `{name}` is already listed at {first}")]
    DuplicateTable { name: String, first: String },
    #[error("no policy files (*.yaml) found")]
    NoFiles,
    #[error("rule has no roles")]
    RuleWithoutRoles,
    #[error("`action` and `mask` are both set")]
    ActionAndMask,
    #[error("column `{0}` has no default")]
    NoDefault(String),
    #[error("{0}")]
    Upstream(String),
    #[error("cannot check against the upstream database: {0}")]
    UpstreamUnreachable(String),
    #[error("mask `{mask}` cannot be applied to column `{column}` of type `{type_name}`")]
    TypeMismatch {
        mask: String,
        column: String,
        type_name: String,
    },
    #[error("role `{0}` does not exist in the upstream database")]
    UnknownRole(String),
}

impl Problem {
    /// How to fix it, in one line.
    pub fn help(&self) -> Option<String> {
        match self {
            Problem::Unreadable(_) => Some("check the path and its permissions".into()),
            Problem::Syntax(_) => {
                Some("fix the YAML at this place (indentation, `:` after keys, quotes)".into())
            }
            Problem::Invalid {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?")),
            Problem::Invalid { .. } => {
                Some("see `pgveil schema` for the fields and values allowed here".into())
            }
            Problem::Version(_) => Some("write `version: 1`".into()),
            Problem::BadName { expected, .. } => Some(format!(
                "write it as `{expected}`, e.g. `{}`",
                if *expected == "schema.table.column" {
                    "public.customers.phone"
                } else if *expected == "schema.table" {
                    "public.customers"
                } else {
                    "public.safe_lookup"
                }
            )),
            Problem::Mask(MaskError::UnknownFunction { .. }) => Some(format!(
                "use one of: {}",
                crate::mask::function_names().join(", ")
            )),
            Problem::Mask(MaskError::MissingKey { .. }) => Some(
                "provide the key bytes (or pass --keys-dir; `pgveil check --skip-key-bytes` checks names only)"
                    .into(),
            ),
            Problem::Mask(_) => Some("see the masking catalogue for its arguments".into()),
            Problem::UndeclaredKey(k) => Some(format!("add `- {k}` under `keys:` (in any file)")),
            Problem::DuplicateColumn { .. } | Problem::DuplicateTable { .. } => {
                Some("keep one entry and merge the rules of both into it".into())
            }
            Problem::NoFiles => Some("point to a directory of *.yaml policy files".into()),
            Problem::RuleWithoutRoles => Some("add `roles: [ROLE, ...]` or remove the rule".into()),
            Problem::ActionAndMask => Some("keep one of them".into()),
            Problem::NoDefault(_) => Some(
                "add `mask: FUNCTION` or `action: deny`: roles no rule names never get clear text"
                    .into(),
            ),
            Problem::Upstream(_) => Some("fix the name, or create it in the database".into()),
            Problem::UpstreamUnreachable(_) => Some(
                "check the --upstream URL (postgres://user:password@host:port/db), the credentials and pg_hba.conf"
                    .into(),
            ),
            Problem::TypeMismatch { .. } => {
                Some("choose a mask for this type, or `action: deny`".into())
            }
            Problem::UnknownRole(_) => Some(
                "create the role, or fix the spelling; until then the rule never matches".into(),
            ),
        }
    }
}

/// One finding in one policy file.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyError {
    pub location: SourceLocation,
    pub severity: Severity,
    pub problem: Problem,
}

impl PolicyError {
    pub fn new(location: SourceLocation, problem: Problem) -> Self {
        Self {
            location,
            severity: Severity::Error,
            problem,
        }
    }

    pub fn warning(location: SourceLocation, problem: Problem) -> Self {
        Self {
            location,
            severity: Severity::Warning,
            problem,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {severity}: {}", self.location, self.problem)?;
        if let Some(help) = self.problem.help() {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// Every finding of one load; a set with any `Error` never takes effect.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|e| e.severity == Severity::Error)
    }
    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.0.iter()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}
