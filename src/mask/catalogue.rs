//! The catalogue DBAs choose from: one description per mask function, used
//! to validate policy arguments and to print docs (`pgveil schema`).

use super::{ArgValue, KeyRing, MaskArgs, MaskError};

/// What kind of value an argument takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A whole number.
    Int,
    /// A number, whole or not.
    Number,
    /// A string.
    Str,
    /// The name of a key in the key ring (never the key itself).
    Key,
    /// Any scalar (string, number or boolean).
    Scalar,
}

/// One argument of a mask function.
#[derive(Debug, Clone, Copy)]
pub struct ArgInfo {
    pub name: &'static str,
    pub kind: ArgKind,
    pub required: bool,
    /// Default as written in a policy file, when not required.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// One mask function of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct MaskFnInfo {
    pub name: &'static str,
    pub args: &'static [ArgInfo],
    /// `pg_type.typname`s the function accepts (`any` for every type).
    pub types: &'static [&'static str],
    pub doc: &'static str,
    pub example: &'static str,
}

const fn req(name: &'static str, kind: ArgKind, doc: &'static str) -> ArgInfo {
    ArgInfo {
        name,
        kind,
        required: true,
        default: None,
        doc,
    }
}

const fn opt(
    name: &'static str,
    kind: ArgKind,
    default: &'static str,
    doc: &'static str,
) -> ArgInfo {
    ArgInfo {
        name,
        kind,
        required: false,
        default: Some(default),
        doc,
    }
}

const TEXT: &[&str] = &["text", "varchar", "bpchar", "name"];
const DATES: &[&str] = &["date", "timestamp", "timestamptz"];
const NUMBERS: &[&str] = &["int2", "int4", "int8", "numeric", "float4", "float8"];

static CATALOGUE: &[MaskFnInfo] = &[
    MaskFnInfo {
        name: "redact",
        args: &[],
        types: &[
            "text", "varchar", "bpchar", "name", "char", "int2", "int4", "int8", "oid", "numeric",
            "float4", "float8", "bool", "bytea", "json", "jsonb", "date", "time", "timestamp",
            "timestamptz", "uuid",
        ],
        doc: "A fixed value of the column's type: **** for text, 0 for numbers, 2000-01-01 for dates, false, empty bytea, nil uuid",
        example: "张三 → ****; 42 → 0",
    },
    MaskFnInfo {
        name: "null",
        args: &[],
        types: &["any"],
        doc: "SQL NULL",
        example: "x → NULL",
    },
    MaskFnInfo {
        name: "constant",
        args: &[req("value", ArgKind::Scalar, "the value every row shows; must be valid for the column type")],
        types: &["text", "varchar", "bpchar", "name", "int2", "int4", "int8", "numeric", "float4", "float8", "bool", "date", "json", "jsonb"],
        doc: "A given value",
        example: "constant(value: hidden) → hidden",
    },
    MaskFnInfo {
        name: "keep",
        args: &[
            req("first", ArgKind::Int, "characters kept at the start"),
            req("last", ArgKind::Int, "characters kept at the end"),
            opt("fill", ArgKind::Str, "*", "one character that replaces each hidden character"),
        ],
        types: TEXT,
        doc: "Keep the first and last N characters, fill the rest one for one (length kept); a value not longer than first+last is filled entirely",
        example: "keep(first: 1, last: 3): abcdefgh → a****fgh",
    },
    MaskFnInfo {
        name: "bank_card",
        args: &[
            opt("first", ArgKind::Int, "6", "leading digits kept (BIN); at most 6, or 8 for PANs of 16+ digits (PCI DSS 3.4.1)"),
            opt("last", ArgKind::Int, "4", "trailing digits kept; at most 4"),
        ],
        types: TEXT,
        doc: "PAN masking: spaces and dashes are skipped when counting and kept in the output",
        example: "6222021234567890128 → 622202*********0128",
    },
    MaskFnInfo {
        name: "cn_id_card",
        args: &[
            opt("first", ArgKind::Int, "6", "leading characters kept (region code); at most 6"),
            opt("last", ArgKind::Int, "4", "trailing characters kept; at most 4 (3 for 15-digit numbers)"),
        ],
        types: TEXT,
        doc: "Resident ID numbers (18 and 15 digits); the X check character is kept as is",
        example: "11010519491231002X → 110105********002X",
    },
    MaskFnInfo {
        name: "cn_mobile",
        args: &[],
        types: TEXT,
        doc: "Mainland mobile numbers: keep 3 + 4 digits, with or without +86",
        example: "13812345678 → 138****5678; +8613812345678 → +86138****5678",
    },
    MaskFnInfo {
        name: "cn_name",
        args: &[],
        types: TEXT,
        doc: "Keep the surname (compound surnames such as 欧阳, 司马, 诸葛 included); Latin names keep the initial",
        example: "张三丰 → 张**; 欧阳娜娜 → 欧阳**; John Smith → J*** *****",
    },
    MaskFnInfo {
        name: "email",
        args: &[],
        types: TEXT,
        doc: "Keep the first character of the local part and the domain",
        example: "zhangsan@x.com → z*******@x.com",
    },
    MaskFnInfo {
        name: "address",
        args: &[
            opt("keep", ArgKind::Str, "district", "deepest administrative level kept: province, city or district"),
            opt("first", ArgKind::Int, "6", "characters kept when no level is found (never more than half)"),
        ],
        types: TEXT,
        doc: "Keep province / city / district, mask the rest character for character",
        example: "浙江省杭州市西湖区文三路90号 → 浙江省杭州市西湖区******",
    },
    MaskFnInfo {
        name: "regex",
        args: &[
            req("pattern", ArgKind::Str, "regular expression (Rust regex syntax)"),
            req("replacement", ArgKind::Str, "replacement for every match; $1 or ${name} refer to groups"),
        ],
        types: TEXT,
        doc: "Regular-expression replace of every match",
        example: r"regex(pattern: '\d{4}$', replacement: '****'): A-1234 → A-****",
    },
    MaskFnInfo {
        name: "hash",
        args: &[
            req("key", ArgKind::Key, "name of the key (PGVEIL_KEY_<NAME> or key file), at least 16 bytes"),
            opt("length", ArgKind::Int, "16", "characters of the token: 8-64 for hex, 8-52 for base32"),
            opt("encoding", ArgKind::Str, "hex", "hex or base32"),
            opt("prefix", ArgKind::Str, "", "text put before the token, e.g. tk_"),
        ],
        types: TEXT,
        doc: "Keyed HMAC-SHA256 token: the same input gives the same token, so joins and GROUP BY still work",
        example: "hash(key: pii, prefix: tk_): 13812345678 → tk_3f9a1c…",
    },
    MaskFnInfo {
        name: "fpe",
        args: &[
            req("key", ArgKind::Key, "name of the key, at least 16 bytes"),
            opt("alphabet", ArgKind::Str, "digits", "digits, lower, upper, alpha, alnum, or the literal characters"),
            opt("keep_first", ArgKind::Int, "0", "leading characters left in clear"),
            opt("keep_last", ArgKind::Int, "0", "trailing characters left in clear"),
        ],
        types: TEXT,
        doc: "Format-preserving encryption (FF1, NIST SP 800-38G) of the middle part; reversible with the key; a middle part of fewer than one million possible values is refused",
        example: "fpe(key: pan, keep_first: 6, keep_last: 4): 6222021234567890128 → 622202 + 9 other digits + 0128",
    },
    MaskFnInfo {
        name: "date_trunc",
        args: &[opt("unit", ArgKind::Str, "year", "year, month or day")],
        types: DATES,
        doc: "Truncate a date or timestamp to the start of its year, month or day",
        example: "date_trunc(unit: year): 1985-10-21 → 1985-01-01",
    },
    MaskFnInfo {
        name: "date_shift",
        args: &[
            req("key", ArgKind::Key, "name of the key, at least 16 bytes"),
            opt("max_days", ArgKind::Int, "30", "largest shift in days, 1-3650; never 0"),
        ],
        types: DATES,
        doc: "Shift by a keyed, deterministic number of days per date (time of day kept)",
        example: "date_shift(key: pii, max_days: 30): 1985-10-21 → 1985-11-07",
    },
    MaskFnInfo {
        name: "noise",
        args: &[
            opt("ratio", ArgKind::Number, "0.1", "largest relative change, above 0 and at most 1"),
            req("key", ArgKind::Key, "name of the key, at least 16 bytes"),
        ],
        types: NUMBERS,
        doc: "Numeric value ± up to ratio, keyed and deterministic per value; numeric keeps its scale",
        example: "noise(ratio: 0.1, key: pii): 10000 → 9342",
    },
    MaskFnInfo {
        name: "bucket",
        args: &[req("width", ArgKind::Number, "width of each range, above 0")],
        types: &["int2", "int4", "int8", "numeric", "float4", "float8", "text", "varchar", "bpchar"],
        doc: "Lower bound of the value's range; text columns get the range as [lo,hi)",
        example: "bucket(width: 10): 37 → 30; '37' in a text column → [30,40)",
    },
];

/// The catalogue of mask functions, in the order docs list them.
pub fn catalogue() -> &'static [MaskFnInfo] {
    CATALOGUE
}

/// The closest candidate to a misspelt name, if one is close enough.
pub(super) fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let lower = name.to_lowercase();
    candidates
        .map(|c| {
            let d = strsim::damerau_levenshtein(&lower, c);
            // `mobile` for `cn_mobile`, `card` for `bank_card`.
            let d = if lower.len() >= 3 && (c.contains(&lower) || lower.contains(c)) {
                d.min(1)
            } else {
                d
            };
            (d, c)
        })
        .filter(|(d, _)| *d <= 3 && *d < lower.len().max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Arguments of one mask, checked against its catalogue entry.
pub(super) struct Args<'a> {
    info: &'static MaskFnInfo,
    args: &'a MaskArgs,
}

impl<'a> Args<'a> {
    /// Rejects unknown arguments, wrong kinds and missing required ones.
    pub(super) fn check(info: &'static MaskFnInfo, args: &'a MaskArgs) -> Result<Self, MaskError> {
        for (name, value) in args {
            let Some(spec) = info.args.iter().find(|a| a.name == name) else {
                return Err(MaskError::UnknownArgument {
                    function: info.name.to_string(),
                    argument: name.clone(),
                    suggestion: suggest(name, info.args.iter().map(|a| a.name)),
                });
            };
            let ok = match spec.kind {
                ArgKind::Int => matches!(value, ArgValue::Int(_)),
                ArgKind::Number => matches!(value, ArgValue::Int(_) | ArgValue::Float(_)),
                ArgKind::Str | ArgKind::Key => matches!(value, ArgValue::Str(_)),
                ArgKind::Scalar => true,
            };
            if !ok {
                let want = match spec.kind {
                    ArgKind::Int => "a whole number",
                    ArgKind::Number => "a number",
                    ArgKind::Str => "a string",
                    ArgKind::Key => "the name of a key (a string), never the key itself",
                    ArgKind::Scalar => "a scalar",
                };
                return Err(MaskError::BadArgument {
                    function: info.name.to_string(),
                    argument: name.clone(),
                    reason: format!("expected {want}, got {}", describe(value)),
                });
            }
        }
        for spec in info.args.iter().filter(|a| a.required) {
            if !args.contains_key(spec.name) {
                return Err(MaskError::MissingArgument {
                    function: info.name.to_string(),
                    argument: spec.name.to_string(),
                });
            }
        }
        Ok(Args { info, args })
    }

    pub(super) fn bad(&self, argument: &str, reason: &str) -> MaskError {
        MaskError::BadArgument {
            function: self.info.name.to_string(),
            argument: argument.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The given value, or the catalogue default parsed as the arg's kind.
    fn value(&self, name: &str) -> Result<ArgValue, MaskError> {
        if let Some(v) = self.args.get(name) {
            return Ok(v.clone());
        }
        let spec = self.info.args.iter().find(|a| a.name == name);
        let default = spec.and_then(|s| s.default.map(|d| (s.kind, d)));
        match default {
            Some((ArgKind::Int, d)) => d.parse().map(ArgValue::Int).ok(),
            Some((ArgKind::Number, d)) => d.parse().map(ArgValue::Float).ok(),
            Some((_, d)) => Some(ArgValue::Str(d.to_string())),
            None => None,
        }
        .ok_or_else(|| MaskError::MissingArgument {
            function: self.info.name.to_string(),
            argument: name.to_string(),
        })
    }

    pub(super) fn scalar(&self, name: &str) -> Result<ArgValue, MaskError> {
        self.value(name)
    }

    /// A character count: a whole number from 0 to 1000.
    pub(super) fn count(&self, name: &str) -> Result<usize, MaskError> {
        let n = self.int(name)?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= 1000)
            .ok_or_else(|| {
                self.bad(
                    name,
                    &format!("{n} is out of range; use a whole number from 0 to 1000"),
                )
            })
    }

    pub(super) fn int(&self, name: &str) -> Result<i64, MaskError> {
        match self.value(name)? {
            ArgValue::Int(n) => Ok(n),
            other => Err(self.bad(
                name,
                &format!("expected a whole number, got {}", describe(&other)),
            )),
        }
    }

    pub(super) fn number(&self, name: &str) -> Result<f64, MaskError> {
        match self.value(name)? {
            ArgValue::Int(n) => Ok(n as f64),
            ArgValue::Float(f) => Ok(f),
            other => Err(self.bad(
                name,
                &format!("expected a number, got {}", describe(&other)),
            )),
        }
    }

    pub(super) fn string(&self, name: &str) -> Result<&str, MaskError> {
        match self.args.get(name) {
            Some(ArgValue::Str(s)) => Ok(s),
            Some(other) => {
                Err(self.bad(name, &format!("expected a string, got {}", describe(other))))
            }
            None => self
                .info
                .args
                .iter()
                .find(|a| a.name == name)
                .and_then(|a| a.default)
                .ok_or_else(|| MaskError::MissingArgument {
                    function: self.info.name.to_string(),
                    argument: name.to_string(),
                }),
        }
    }

    pub(super) fn fill_char(&self, name: &str) -> Result<char, MaskError> {
        let s = self.string(name)?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(self.bad(
                name,
                &format!("`{s}` must be exactly one character, e.g. '*'"),
            )),
        }
    }

    /// Bytes of the named key; refuses keys too short to resist guessing.
    pub(super) fn key<'k>(&self, name: &str, keys: &'k KeyRing) -> Result<&'k [u8], MaskError> {
        let key_name = self.string(name)?;
        let bytes = keys.get(key_name).ok_or_else(|| MaskError::MissingKey {
            key: key_name.to_string(),
        })?;
        if bytes.len() < 16 {
            return Err(self.bad(
                name,
                &format!(
                    "key `{key_name}` has {} bytes; use at least 16 random bytes (e.g. `openssl rand -hex 32`)",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }
}

fn describe(v: &ArgValue) -> String {
    match v {
        ArgValue::Int(n) => format!("the number {n}"),
        ArgValue::Float(f) => format!("the number {f}"),
        ArgValue::Str(s) => format!("the string `{s}`"),
        ArgValue::Bool(b) => format!("the boolean {b}"),
    }
}
