//! mask: pure functions from a column value's wire bytes to masked bytes,
//! per type and format, plus detectors that recognise sensitive values.
//!
//! Owns: the catalogue of mask functions (`catalogue()`), their argument
//! validation (`build`), and per-value masking (`Mask::apply`).
//! Must not touch: sockets, tokio, files other than key files, policy logic.
//! Keys are named by policies and read once at startup into a [`KeyRing`].

mod catalogue;
mod crypto;
pub mod detect;
mod fast;
mod json;
mod numeric;
mod temporal;
#[cfg(test)]
mod tests;
mod text;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

pub use catalogue::{catalogue, ArgInfo, ArgKind, MaskFnInfo};
pub use json::JsonMask;

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

/// PostgreSQL type OIDs the catalogue knows (pg_type.oid of built-in types).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// `pg_type.typname` (and the SQL spellings DBAs write) to OID.
const TYPE_NAMES: &[(&str, u32)] = &[
    ("bool", oid::BOOL),
    ("boolean", oid::BOOL),
    ("bytea", oid::BYTEA),
    ("char", oid::CHAR),
    ("name", oid::NAME),
    ("int8", oid::INT8),
    ("bigint", oid::INT8),
    ("int2", oid::INT2),
    ("smallint", oid::INT2),
    ("int4", oid::INT4),
    ("int", oid::INT4),
    ("integer", oid::INT4),
    ("text", oid::TEXT),
    ("oid", oid::OID),
    ("json", oid::JSON),
    ("float4", oid::FLOAT4),
    ("real", oid::FLOAT4),
    ("float8", oid::FLOAT8),
    ("double precision", oid::FLOAT8),
    ("bpchar", oid::BPCHAR),
    ("character", oid::BPCHAR),
    ("varchar", oid::VARCHAR),
    ("character varying", oid::VARCHAR),
    ("date", oid::DATE),
    ("time", oid::TIME),
    ("timestamp", oid::TIMESTAMP),
    ("timestamptz", oid::TIMESTAMPTZ),
    ("numeric", oid::NUMERIC),
    ("decimal", oid::NUMERIC),
    ("uuid", oid::UUID),
    ("jsonb", oid::JSONB),
];

/// OID of a built-in type name, as `accepts_type` understands it.
pub fn type_oid(type_name: &str) -> Option<u32> {
    TYPE_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(type_name))
        .map(|(_, o)| *o)
}

pub(crate) const TEXT_TYPES: &[u32] = &[oid::TEXT, oid::VARCHAR, oid::BPCHAR, oid::NAME];
pub(crate) const NUMBER_TYPES: &[u32] = &[
    oid::INT2,
    oid::INT4,
    oid::INT8,
    oid::NUMERIC,
    oid::FLOAT4,
    oid::FLOAT8,
];
pub(crate) const BUCKET_TYPES: &[u32] = &[
    oid::INT2,
    oid::INT4,
    oid::INT8,
    oid::NUMERIC,
    oid::FLOAT4,
    oid::FLOAT8,
    oid::TEXT,
    oid::VARCHAR,
    oid::BPCHAR,
];
pub(crate) const DATE_TYPES: &[u32] = &[oid::DATE, oid::TIMESTAMP, oid::TIMESTAMPTZ];
pub(crate) const REDACT_TYPES: &[u32] = &[
    oid::BOOL,
    oid::BYTEA,
    oid::CHAR,
    oid::NAME,
    oid::INT8,
    oid::INT2,
    oid::INT4,
    oid::TEXT,
    oid::OID,
    oid::JSON,
    oid::FLOAT4,
    oid::FLOAT8,
    oid::BPCHAR,
    oid::VARCHAR,
    oid::DATE,
    oid::TIME,
    oid::TIMESTAMP,
    oid::TIMESTAMPTZ,
    oid::NUMERIC,
    oid::UUID,
    oid::JSONB,
];

/// Key bytes by key name. Keys never live in policy files.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, Vec<u8>>,
}

// Key bytes must never reach a log line through `{:?}`.
impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
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
    /// the file `<dir>/<name>` when a key directory is configured. A trailing
    /// newline in a key file is dropped, since `echo … > file` adds one and
    /// the same key set through the environment would not have it.
    pub fn load(names: &[String], dir: Option<&std::path::Path>) -> Result<KeyRing, MaskError> {
        let mut ring = KeyRing::new();
        for name in names {
            if let Ok(v) = std::env::var(key_env_var(name)) {
                ring.insert(name, v.into_bytes());
            } else if let Some(mut bytes) = dir.and_then(|d| std::fs::read(d.join(name)).ok()) {
                while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                    bytes.pop();
                }
                ring.insert(name, bytes);
            } else {
                return Err(MaskError::MissingKey { key: name.clone() });
            }
        }
        Ok(ring)
    }
}

/// Environment variable that holds a key: `PGVEIL_KEY_` + the name
/// upper-cased, other characters than letters and digits as `_`.
pub fn key_env_var(name: &str) -> String {
    let mut var = String::from("PGVEIL_KEY_");
    var.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    var
}

/// Why a mask specification is invalid. Messages say how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MaskError {
    #[error("unknown mask function `{name}`{}; `pgveil schema` lists the catalogue", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
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
    #[error(
        "mask `{function}` needs the argument `{argument}`: add `{argument}: …` to its arguments"
    )]
    MissingArgument { function: String, argument: String },
    #[error("mask `{function}`: bad value for `{argument}`: {reason}")]
    BadArgument {
        function: String,
        argument: String,
        reason: String,
    },
    #[error(
        "key `{key}` is not available: set {} or put a file named `{key}` in the key directory",
        key_env_var(key)
    )]
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
    kind: Kind,
}

/// The compiled form of each catalogue function, arguments resolved.
enum Kind {
    Redact,
    Null,
    Constant(text::Constant),
    Keep {
        first: usize,
        last: usize,
        fill: char,
    },
    BankCard {
        first: usize,
        last: usize,
    },
    CnIdCard {
        first: usize,
        last: usize,
    },
    CnMobile,
    CnName,
    Email,
    Address {
        level: text::AdminLevel,
        first: usize,
    },
    Regex {
        re: regex::Regex,
        replacement: String,
    },
    Hash(crypto::Hasher),
    Fpe(Box<crypto::Fpe>),
    DateTrunc(temporal::Unit),
    DateShift(temporal::Shift),
    Noise(numeric::Noise),
    Bucket(numeric::Bucket),
    /// Masks inside a JSON value (see `json`); never named by a policy.
    Json(Box<JsonMask>),
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mask({})", self.inner.name)
    }
}

/// Whether the mask function `name` is keyed (`hash`, `fpe`, `date_shift`,
/// `noise`): its output for a value is fixed by a secret key, so the
/// output for a value an attacker chose is a dictionary entry against the
/// outputs for stored values.
pub fn is_keyed(name: &str) -> bool {
    catalogue()
        .iter()
        .find(|f| f.name == name)
        .is_some_and(|f| f.args.iter().any(|a| matches!(a.kind, ArgKind::Key)))
}

/// Names of every mask function in the catalogue.
pub fn function_names() -> Vec<&'static str> {
    catalogue().iter().map(|f| f.name).collect()
}

/// Compiles a mask specification, validating its arguments and keys.
pub fn build(name: &str, args: &MaskArgs, keys: &KeyRing) -> Result<Mask, MaskError> {
    let Some(info) = catalogue().iter().find(|f| f.name == name) else {
        return Err(MaskError::UnknownFunction {
            name: name.to_string(),
            suggestion: catalogue::suggest(name, catalogue().iter().map(|f| f.name)),
        });
    };
    let a = catalogue::Args::check(info, args)?;
    let kind = match info.name {
        "redact" => Kind::Redact,
        "null" => Kind::Null,
        "constant" => Kind::Constant(text::Constant::new(a.scalar("value")?)),
        "keep" => Kind::Keep {
            first: a.count("first")?,
            last: a.count("last")?,
            fill: a.fill_char("fill")?,
        },
        "bank_card" => {
            let (first, last) = (a.count("first")?, a.count("last")?);
            // PCI DSS 3.4.1: at most the BIN (6, or 8 for PANs of 16+ digits)
            // and the last four digits may be displayed.
            if first > 8 {
                return Err(a.bad(
                    "first",
                    "PCI DSS 3.4.1 allows at most the BIN (first 6, or 8 for 16+ digit PANs) in clear; use first: 6",
                ));
            }
            if last > 4 {
                return Err(a.bad(
                    "last",
                    "PCI DSS 3.4.1 allows at most the last 4 digits in clear; use last: 4",
                ));
            }
            Kind::BankCard { first, last }
        }
        "cn_id_card" => {
            let (first, last) = (a.count("first")?, a.count("last")?);
            // Birth date sits in characters 7-14: revealing it defeats the mask.
            if first > 6 {
                return Err(a.bad(
                    "first",
                    "at most the 6-digit region code may stay in clear (characters 7-14 are the birth date); use first: 6",
                ));
            }
            if last > 4 {
                return Err(a.bad(
                    "last",
                    "at most the last 4 characters may stay in clear; use last: 4",
                ));
            }
            Kind::CnIdCard { first, last }
        }
        "cn_mobile" => Kind::CnMobile,
        "cn_name" => Kind::CnName,
        "email" => Kind::Email,
        "address" => {
            let level = match a.string("keep")? {
                "province" => text::AdminLevel::Province,
                "city" => text::AdminLevel::City,
                "district" => text::AdminLevel::District,
                other => {
                    return Err(a.bad(
                        "keep",
                        &format!("`{other}` is not a level; use province, city or district"),
                    ))
                }
            };
            Kind::Address {
                level,
                first: a.count("first")?,
            }
        }
        "regex" => {
            let pattern = a.string("pattern")?;
            let re = regex::Regex::new(pattern).map_err(|e| a.bad("pattern", &e.to_string()))?;
            Kind::Regex {
                re,
                replacement: a.string("replacement")?.to_string(),
            }
        }
        "hash" => Kind::Hash(crypto::Hasher::build(&a, keys)?),
        "fpe" => Kind::Fpe(Box::new(crypto::Fpe::build(&a, keys)?)),
        "date_trunc" => Kind::DateTrunc(match a.string("unit")? {
            "year" => temporal::Unit::Year,
            "month" => temporal::Unit::Month,
            "day" => temporal::Unit::Day,
            other => {
                return Err(a.bad(
                    "unit",
                    &format!("`{other}` is not a unit; use year, month or day"),
                ))
            }
        }),
        "date_shift" => Kind::DateShift(temporal::Shift::build(&a, keys)?),
        "noise" => Kind::Noise(numeric::Noise::build(&a, keys)?),
        "bucket" => Kind::Bucket(numeric::Bucket::build(&a)?),
        other => {
            // A catalogue entry without a builder is a programming error;
            // report it rather than panic.
            return Err(MaskError::UnknownFunction {
                name: other.to_string(),
                suggestion: None,
            });
        }
    };
    Ok(Mask {
        inner: Arc::new(MaskInner {
            name: info.name,
            kind,
        }),
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
        if matches!(self.inner.kind, Kind::Null) {
            return true;
        }
        type_oid(type_name).is_some_and(|o| self.accepts_oid(o))
    }

    /// Whether `apply` handles values of this type OID (in both formats).
    #[inline]
    pub fn accepts_oid(&self, type_oid: u32) -> bool {
        match &self.inner.kind {
            Kind::Null => true,
            Kind::Redact => REDACT_TYPES.contains(&type_oid),
            Kind::Constant(c) => c.accepts(type_oid),
            Kind::DateTrunc(_) | Kind::DateShift(_) => DATE_TYPES.contains(&type_oid),
            Kind::Noise(_) => NUMBER_TYPES.contains(&type_oid),
            Kind::Bucket(_) => BUCKET_TYPES.contains(&type_oid),
            Kind::Json(_) => json::JSON_CARRIERS.contains(&type_oid),
            _ => TEXT_TYPES.contains(&type_oid),
        }
    }

    /// Masks one value as it travels on the wire. `None` is SQL NULL.
    pub fn apply(
        &self,
        value: Option<&[u8]>,
        type_oid: u32,
        format: WireFormat,
    ) -> Result<Option<Vec<u8>>, MaskApplyError> {
        let fail = || MaskApplyError {
            function: self.inner.name.to_string(),
            type_oid,
            format,
        };
        let Some(v) = value else { return Ok(None) };
        if !self.accepts_oid(type_oid) {
            return Err(fail());
        }
        let out = match &self.inner.kind {
            Kind::Null => return Ok(None),
            Kind::Redact => text::redact(type_oid, format).map(<[u8]>::to_vec),
            Kind::Constant(c) => c.encode(type_oid, format),
            Kind::DateTrunc(unit) => temporal::trunc(*unit, v, type_oid, format),
            Kind::DateShift(s) => s.apply(v, type_oid, format),
            Kind::Noise(n) => n.apply(v, type_oid, format),
            Kind::Bucket(b) => b.apply(v, type_oid, format),
            Kind::Json(shape) => shape.apply(v, type_oid, format),
            // Text types: the binary format is the raw string in the client
            // encoding, the same bytes as the text format.
            kind => std::str::from_utf8(v).ok().and_then(|s| {
                // char(n) pads with spaces; mask the value, keep the padding,
                // and hash without it so tokens join with text columns as
                // PostgreSQL compares bpchar.
                let (body, pad) = if type_oid == oid::BPCHAR {
                    let t = s.trim_end_matches(' ');
                    (t, &s[t.len()..])
                } else {
                    (s, "")
                };
                let mut out = text_mask(kind, body)?;
                if !matches!(kind, Kind::Hash(_)) {
                    out.push_str(pad);
                }
                Some(out.into_bytes())
            }),
        };
        out.map(Some).ok_or_else(fail)
    }

    /// Masks one non-NULL value straight into `out` (the message being
    /// built for the client): the hot path, one call per masked cell, with
    /// no allocation for the common masks. Writes the same bytes as `apply`,
    /// which stays the reference the tests hold this to. Returns `Ok(false)`,
    /// having written nothing, when the masked value is SQL NULL. On error
    /// `out` is left as it was.
    pub fn apply_into(
        &self,
        v: &[u8],
        type_oid: u32,
        format: WireFormat,
        out: &mut BytesMut,
    ) -> Result<bool, MaskApplyError> {
        let start = out.len();
        if !self.accepts_oid(type_oid) {
            return Err(self.apply_error(type_oid, format));
        }
        let done = match &self.inner.kind {
            Kind::Null => return Ok(false),
            Kind::Redact => text::redact(type_oid, format).map(|b| out.put_slice(b)),
            Kind::Constant(c) => c.encoded(type_oid, format).map(|b| out.put_slice(b)),
            Kind::DateTrunc(unit) => temporal::trunc_into(*unit, v, type_oid, format, out),
            Kind::Bucket(b) => b.apply_into(v, type_oid, format, out),
            kind @ (Kind::Keep { .. }
            | Kind::BankCard { .. }
            | Kind::CnIdCard { .. }
            | Kind::CnMobile
            | Kind::CnName
            | Kind::Email)
                if v.is_ascii() =>
            {
                // The common case (ID, card and phone numbers, e-mail
                // addresses, Latin names) on bytes: no UTF-8 decoding.
                let body = if type_oid == oid::BPCHAR {
                    // Only spaces: char(n)'s padding.
                    &v[..v.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1)]
                } else {
                    v
                };
                match kind {
                    Kind::Keep { first, last, fill } => {
                        fast::ascii::keep(body, *first, *last, *fill, out)
                    }
                    Kind::BankCard { first, last } => {
                        fast::ascii::bank_card(body, *first, *last, out)
                    }
                    Kind::CnIdCard { first, last } => {
                        fast::ascii::cn_id_card(body, *first, *last, out)
                    }
                    Kind::CnMobile => fast::ascii::cn_mobile(body, out),
                    Kind::CnName => fast::ascii::cn_name(body, out),
                    _ => fast::ascii::email(body, out),
                }
                out.put_slice(&v[body.len()..]);
                Some(())
            }
            kind @ (Kind::Keep { .. }
            | Kind::BankCard { .. }
            | Kind::CnIdCard { .. }
            | Kind::CnMobile
            | Kind::CnName
            | Kind::Email) => std::str::from_utf8(v).ok().map(|s| {
                let (body, pad) = if type_oid == oid::BPCHAR {
                    let t = s.trim_end_matches(' ');
                    (t, &s[t.len()..])
                } else {
                    (s, "")
                };
                match kind {
                    Kind::Keep { first, last, fill } => fast::keep(body, *first, *last, *fill, out),
                    Kind::BankCard { first, last } => fast::bank_card(body, *first, *last, out),
                    Kind::CnIdCard { first, last } => fast::cn_id_card(body, *first, *last, out),
                    Kind::CnMobile => fast::cn_mobile(body, out),
                    Kind::CnName => fast::cn_name(body, out),
                    _ => fast::email(body, out),
                }
                out.put_slice(pad.as_bytes());
            }),
            // Keyed and pattern masks cost far more than an allocation.
            _ => match self.apply(Some(v), type_oid, format)? {
                Some(b) => {
                    out.put_slice(&b);
                    Some(())
                }
                None => return Ok(false),
            },
        };
        if done.is_none() {
            out.truncate(start);
            return Err(self.apply_error(type_oid, format));
        }
        Ok(true)
    }

    fn apply_error(&self, type_oid: u32, format: WireFormat) -> MaskApplyError {
        MaskApplyError {
            function: self.inner.name.to_string(),
            type_oid,
            format,
        }
    }

    /// Reverses `fpe` for a holder of the key (e.g. `pgveil reveal`); other
    /// masks are one-way and return `None`.
    pub fn reveal(&self, masked: &str) -> Option<String> {
        match &self.inner.kind {
            Kind::Fpe(f) => f.decrypt(masked),
            _ => None,
        }
    }
}

fn text_mask(kind: &Kind, s: &str) -> Option<String> {
    Some(match kind {
        Kind::Keep { first, last, fill } => text::keep(s, *first, *last, *fill),
        Kind::BankCard { first, last } => text::bank_card(s, *first, *last),
        Kind::CnIdCard { first, last } => text::cn_id_card(s, *first, *last),
        Kind::CnMobile => text::cn_mobile(s),
        Kind::CnName => text::cn_name(s),
        Kind::Email => text::email(s),
        Kind::Address { level, first } => text::address(s, *level, *first),
        Kind::Regex { re, replacement } => re.replace_all(s, replacement.as_str()).into_owned(),
        Kind::Hash(h) => h.token(s.as_bytes()),
        Kind::Fpe(f) => f.encrypt(s)?,
        _ => return None,
    })
}
