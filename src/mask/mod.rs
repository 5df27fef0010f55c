//! mask: pure functions from a column value's wire bytes to masked bytes,
//! per type and format. No I/O, no tokio.
//!
//! INTERFACE STUB: the signatures below are the contract `policy` and
//! `session` build on. The masking-functions issue replaces the bodies.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A scalar argument of a mask function, as written in a policy file.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
}

/// Named arguments of one mask, e.g. `{ first: 0, last: 4 }`.
pub type MaskArgs = BTreeMap<String, ArgValue>;

/// Format of a value on the wire (the format code of RowDescription/Bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    Text,
    Binary,
}

/// Key bytes by key name. Keys never live in policy files.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, Vec<u8>>,
}

impl KeyRing {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, name: &str, bytes: Vec<u8>) {
        self.keys.insert(name.to_string(), bytes);
    }
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.keys.get(name).map(Vec::as_slice)
    }
    /// Reads each named key from `PGVEIL_KEY_<NAME>` or, failing that, from
    /// the file `<dir>/<name>` when a key directory is configured.
    pub fn load(names: &[String], dir: Option<&std::path::Path>) -> Result<KeyRing, MaskError> {
        let mut ring = KeyRing::new();
        for name in names {
            let var = format!("PGVEIL_KEY_{}", name.to_uppercase());
            if let Ok(v) = std::env::var(&var) {
                ring.insert(name, v.into_bytes());
            } else if let Some(bytes) = dir.and_then(|d| std::fs::read(d.join(name)).ok()) {
                ring.insert(name, bytes);
            } else {
                return Err(MaskError::MissingKey { key: name.clone() });
            }
        }
        Ok(ring)
    }
}

/// Why a mask specification is invalid. Messages say how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskError {
    #[error("unknown mask function `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownFunction {
        name: String,
        suggestion: Option<String>,
    },
    #[error("mask `{function}` has no argument `{argument}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownArgument {
        function: String,
        argument: String,
        suggestion: Option<String>,
    },
    #[error("mask `{function}` needs the argument `{argument}`")]
    MissingArgument { function: String, argument: String },
    #[error("mask `{function}`: bad value for `{argument}`: {reason}")]
    BadArgument {
        function: String,
        argument: String,
        reason: String,
    },
    #[error("key `{key}` is not available: set PGVEIL_KEY_{} or put a file named `{key}` in the key directory", key.to_uppercase())]
    MissingKey { key: String },
}

/// Why a value could not be masked; the session fails closed on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("mask `{function}` cannot handle a value of type oid {type_oid} in {format:?} format")]
pub struct MaskApplyError {
    pub function: String,
    pub type_oid: u32,
    pub format: WireFormat,
}

/// A compiled mask: cheap to clone, shared across sessions.
#[derive(Clone)]
pub struct Mask {
    inner: Arc<MaskInner>,
}

struct MaskInner {
    name: &'static str,
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mask({})", self.inner.name)
    }
}

/// Argument names of each catalogue function (stub table).
const CATALOGUE: &[(&str, &[&str])] = &[
    ("redact", &[]),
    ("null", &[]),
    ("constant", &["value"]),
    ("keep", &["first", "last", "fill"]),
    ("bank_card", &["first", "last"]),
    ("cn_id_card", &["first", "last"]),
    ("cn_mobile", &[]),
    ("cn_name", &[]),
    ("email", &[]),
    ("address", &["keep", "first"]),
    ("regex", &["pattern", "replacement"]),
    ("hash", &["key", "length", "encoding", "prefix"]),
    ("fpe", &["key", "alphabet", "keep_first", "keep_last"]),
    ("date_trunc", &["unit"]),
    ("date_shift", &["key", "max_days"]),
    ("noise", &["ratio", "key"]),
    ("bucket", &["width"]),
];

/// Names of every mask function in the catalogue.
pub fn function_names() -> Vec<&'static str> {
    CATALOGUE.iter().map(|(n, _)| *n).collect()
}

/// Compiles a mask specification, validating its arguments and keys.
pub fn build(name: &str, args: &MaskArgs, keys: &KeyRing) -> Result<Mask, MaskError> {
    let Some((fname, arg_names)) = CATALOGUE.iter().find(|(n, _)| *n == name) else {
        return Err(MaskError::UnknownFunction {
            name: name.to_string(),
            suggestion: None,
        });
    };
    for arg in args.keys() {
        if !arg_names.contains(&arg.as_str()) {
            return Err(MaskError::UnknownArgument {
                function: name.to_string(),
                argument: arg.clone(),
                suggestion: None,
            });
        }
    }
    if let Some(ArgValue::Str(key)) = args.get("key") {
        if keys.get(key).is_none() {
            return Err(MaskError::MissingKey { key: key.clone() });
        }
    }
    Ok(Mask {
        inner: Arc::new(MaskInner { name: fname }),
    })
}

impl Mask {
    /// The catalogue name of this mask.
    pub fn name(&self) -> &str {
        self.inner.name
    }

    /// Whether this mask can be applied to a column of the given PostgreSQL
    /// type (`pg_type.typname`, e.g. `text`, `int4`, `date`, `numeric`).
    pub fn accepts_type(&self, type_name: &str) -> bool {
        let _ = type_name;
        true
    }

    /// Masks one value as it travels on the wire. `None` is SQL NULL.
    pub fn apply(
        &self,
        value: Option<&[u8]>,
        type_oid: u32,
        format: WireFormat,
    ) -> Result<Option<Vec<u8>>, MaskApplyError> {
        let _ = (value, type_oid, format);
        Ok(Some(b"****".to_vec()))
    }
}
