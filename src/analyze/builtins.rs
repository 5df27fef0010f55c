//! What pgveil knows about the functions PostgreSQL ships: the catalogue in
//! `builtins_pg15.tsv`, generated from `pg_proc` of a fresh PostgreSQL 15
//! cluster by `tools/builtin-functions.sh` and reviewed. A built-in function
//! is trusted only for what its category says; one that is not listed (a
//! newer release's) is not trusted at all.

use std::collections::HashMap;
use std::sync::OnceLock;

/// How a built-in function is treated for masked roles, from harmless to
/// blocked. The order matters: when the overload cannot be told apart, the
/// most severe category of the candidates applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BuiltinCategory {
    /// The output derives from the inputs only: analysed through.
    Pure,
    /// No inputs; reads session or server state (`now()`, `version()`).
    Context,
    /// Turns an argument into an object by name or OID (`to_regclass`,
    /// `has_table_privilege`, `current_setting` …): its error names what was
    /// not found, so no protected value may reach its arguments.
    Lookup,
    /// Leaves its arguments where others can read them (`nextval`,
    /// `pg_advisory_lock`, `set_config` …): no protected value may reach
    /// its arguments.
    Write,
    /// Runs SQL given as text or reads relations the statement does not
    /// name (`query_to_xml`, `ts_rewrite(tsquery, text)`, `ts_stat`):
    /// blocked.
    Sql,
    /// Server files, large objects, WAL, administration, other sessions'
    /// query texts: blocked.
    Server,
    /// Type I/O, planner support, access-method handlers: not meant to be
    /// called from SQL, blocked.
    Internal,
}

impl BuiltinCategory {
    fn parse(text: &str) -> Option<BuiltinCategory> {
        Some(match text {
            "pure" => BuiltinCategory::Pure,
            "context" => BuiltinCategory::Context,
            "lookup" => BuiltinCategory::Lookup,
            "write" => BuiltinCategory::Write,
            "sql" => BuiltinCategory::Sql,
            "server" => BuiltinCategory::Server,
            "internal" => BuiltinCategory::Internal,
            _ => return None,
        })
    }

    /// The name used in the catalogue file and in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinCategory::Pure => "pure",
            BuiltinCategory::Context => "context",
            BuiltinCategory::Lookup => "lookup",
            BuiltinCategory::Write => "write",
            BuiltinCategory::Sql => "sql",
            BuiltinCategory::Server => "server",
            BuiltinCategory::Internal => "internal",
        }
    }
}

/// One overload: how many arguments it takes and what it is.
#[derive(Debug, Clone, Copy)]
struct Overload {
    nargs: usize,
    ndefaults: usize,
    variadic: bool,
    category: BuiltinCategory,
}

impl Overload {
    fn accepts(&self, count: usize) -> bool {
        let min = self.nargs.saturating_sub(self.ndefaults);
        if self.variadic {
            // VARIADIC: the last parameter takes any number of arguments.
            count >= min.saturating_sub(1)
        } else {
            (min..=self.nargs).contains(&count)
        }
    }
}

const CATALOGUE_TEXT: &str = include_str!("builtins_pg15.tsv");

type Catalogue = HashMap<(String, String), Vec<Overload>>;

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| parse_catalogue(CATALOGUE_TEXT))
}

/// Lines that do not parse are left out, so their functions count as not
/// listed (blocked); a unit test keeps the shipped file fully parseable.
fn parse_catalogue(text: &str) -> Catalogue {
    let mut map: Catalogue = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some((key, overload)) = parse_line(line) {
            map.entry(key).or_default().push(overload);
        }
    }
    map
}

fn parse_line(line: &str) -> Option<((String, String), Overload)> {
    let mut fields = line.split('\t');
    let schema = fields.next()?;
    let name = fields.next()?;
    let nargs = fields.next()?.parse().ok()?;
    let ndefaults = fields.next()?.parse().ok()?;
    let variadic = fields.next()? == "t";
    let category = BuiltinCategory::parse(fields.next()?)?;
    Some((
        (schema.to_owned(), name.to_owned()),
        Overload {
            nargs,
            ndefaults,
            variadic,
            category,
        },
    ))
}

/// The category of `schema.name` called with `arg_count` arguments (`None`
/// when the count is not known): the most severe of the overloads that
/// accept that many arguments. `None` when PostgreSQL 15 ships no such
/// function.
pub fn category(schema: &str, name: &str, arg_count: Option<usize>) -> Option<BuiltinCategory> {
    let overloads = catalogue().get(&(schema.to_owned(), name.to_owned()))?;
    let matching = overloads
        .iter()
        .filter(|o| arg_count.is_none_or(|n| o.accepts(n)))
        .map(|o| o.category)
        .max();
    // No overload takes that many arguments: the server will reject the
    // call, but judge it by every overload rather than trust it.
    matching.or_else(|| overloads.iter().map(|o| o.category).max())
}

const VOLATILE_TEXT: &str = include_str!("builtin_volatile_pg15.txt");

/// True when some overload of the built-in `schema.name` is volatile
/// (`random()`, `nextval()`, `clock_timestamp()` …): PostgreSQL computes a
/// volatile expression even where nobody reads its result.
pub fn is_volatile(schema: &str, name: &str) -> bool {
    static VOLATILE: OnceLock<std::collections::HashSet<(&'static str, &'static str)>> =
        OnceLock::new();
    VOLATILE
        .get_or_init(|| {
            VOLATILE_TEXT
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| l.split_once('\t'))
                .collect()
        })
        .contains(&(schema, name))
}

const TYPES_TEXT: &str = include_str!("builtin_types_pg15.txt");

/// True when pg_catalog of PostgreSQL 15 has a type of this name.
pub fn is_builtin_type(name: &str) -> bool {
    static TYPES: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    TYPES
        .get_or_init(|| {
            TYPES_TEXT
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .collect()
        })
        .contains(name)
}

const OPERATORS_TEXT: &str = include_str!("builtin_operators_pg15.tsv");

/// One operator of pg_catalog: operand types (`typname`; the left one empty
/// for a prefix operator) and the category of the function it runs.
#[derive(Debug, Clone)]
struct BuiltinOperator {
    left: String,
    right: String,
    category: BuiltinCategory,
}

fn operators() -> &'static HashMap<String, Vec<BuiltinOperator>> {
    static OPERATORS: OnceLock<HashMap<String, Vec<BuiltinOperator>>> = OnceLock::new();
    OPERATORS.get_or_init(|| parse_operators(OPERATORS_TEXT))
}

/// Operator names can start with `#`, so only `# ` starts a comment.
fn parse_operators(text: &str) -> HashMap<String, Vec<BuiltinOperator>> {
    let mut map: HashMap<String, Vec<BuiltinOperator>> = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with("# ") && !l.is_empty())
    {
        let mut fields = line.split('\t');
        let (Some(name), Some(left), Some(right), Some(schema), Some(function), Some(nargs)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next().and_then(|n| n.parse().ok()),
        ) else {
            continue;
        };
        // A function missing from the function catalogue is not trusted.
        let category = category(schema, function, Some(nargs)).unwrap_or(BuiltinCategory::Internal);
        map.entry(name.to_owned())
            .or_default()
            .push(BuiltinOperator {
                left: left.to_owned(),
                right: right.to_owned(),
                category,
            });
    }
    map
}

/// The category of pg_catalog's operator `name` taking exactly these
/// operand types (`left` empty for a prefix operator); `None` when
/// PostgreSQL 15 has no such operator.
pub fn operator_exact(name: &str, left: &str, right: &str) -> Option<BuiltinCategory> {
    operators()
        .get(name)?
        .iter()
        .find(|o| o.left == left && o.right == right)
        .map(|o| o.category)
}

/// The most severe category of pg_catalog's operators named `name` (prefix
/// or infix); `None` when PostgreSQL 15 has none.
pub fn operator_category(name: &str, prefix: bool) -> Option<BuiltinCategory> {
    operators()
        .get(name)?
        .iter()
        .filter(|o| o.left.is_empty() == prefix)
        .map(|o| o.category)
        .max()
}

/// Types whose input function looks an object up by name (`'t'::regclass`).
pub const LOOKUP_TYPES: &[&str] = &[
    "regclass",
    "regproc",
    "regprocedure",
    "regoper",
    "regoperator",
    "regtype",
    "regconfig",
    "regdictionary",
    "regnamespace",
    "regrole",
    "regcollation",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_shipped_catalogue_parses() {
        let bad: Vec<&str> = CATALOGUE_TEXT
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter(|l| parse_line(l).is_none())
            .collect();
        assert!(bad.is_empty(), "unparseable lines: {bad:?}");
        assert!(catalogue().len() > 2000);
    }

    #[test]
    fn overloads_are_told_apart_by_argument_count() {
        let c = |name, n| category("pg_catalog", name, Some(n));
        assert_eq!(c("ts_rewrite", 2), Some(BuiltinCategory::Sql));
        assert_eq!(c("ts_rewrite", 3), Some(BuiltinCategory::Pure));
        assert_eq!(c("query_to_xml", 4), Some(BuiltinCategory::Sql));
        assert_eq!(c("upper", 1), Some(BuiltinCategory::Pure));
        assert_eq!(c("to_regclass", 1), Some(BuiltinCategory::Lookup));
        assert_eq!(c("has_table_privilege", 2), Some(BuiltinCategory::Lookup));
        assert_eq!(c("nextval", 1), Some(BuiltinCategory::Write));
        assert_eq!(c("pg_read_file", 1), Some(BuiltinCategory::Server));
        assert_eq!(c("now", 0), Some(BuiltinCategory::Context));
        assert_eq!(c("concat", 5), Some(BuiltinCategory::Pure));
        assert_eq!(c("textin", 1), Some(BuiltinCategory::Internal));
        // Unknown count: the most severe overload.
        assert_eq!(
            category("pg_catalog", "ts_rewrite", None),
            Some(BuiltinCategory::Sql)
        );
        assert_eq!(category("pg_catalog", "no_such_function", Some(1)), None);
        assert_eq!(category("public", "upper", Some(1)), None);
    }

    #[test]
    fn operators_are_listed_with_their_function_category() {
        let lines = OPERATORS_TEXT
            .lines()
            .filter(|l| !l.starts_with("# ") && !l.is_empty())
            .count();
        let parsed: usize = operators().values().map(Vec::len).sum();
        assert_eq!(lines, parsed, "every operator line parses");
        assert!(parsed > 700);
        // Every PostgreSQL 15 operator runs a pure function.
        assert!(operators()
            .values()
            .flatten()
            .all(|o| o.category == BuiltinCategory::Pure));
        assert_eq!(
            operator_exact("=", "text", "text"),
            Some(BuiltinCategory::Pure)
        );
        assert_eq!(operator_exact("=", "varchar", "varchar"), None);
        assert_eq!(
            operator_exact("#", "int4", "int4"),
            Some(BuiltinCategory::Pure)
        );
        assert_eq!(operator_category("-", true), Some(BuiltinCategory::Pure));
        assert_eq!(operator_category("===", false), None);
    }

    #[test]
    fn builtin_types_are_listed() {
        for name in ["text", "varchar", "bpchar", "regclass", "int4", "_text"] {
            assert!(is_builtin_type(name), "{name}");
        }
        assert!(!is_builtin_type("citext"));
        assert!(LOOKUP_TYPES.iter().all(|t| is_builtin_type(t)));
    }
}
