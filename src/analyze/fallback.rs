//! Text-level helpers that run without a parse: the cache key with literals
//! normalised, first-keyword recognition of transaction control and SET,
//! splitting a multi-statement string, and the token scan that decides
//! whether an unparsable statement can be admitted.

use std::collections::BTreeSet;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Words that make an unparsable statement dynamic SQL or server-side code.
const DYNAMIC_WORDS: &[&str] = &[
    "do",
    "execute",
    "function",
    "procedure",
    "trigger",
    "rule",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "database_to_xml",
    "ts_stat",
    "dblink",
    "dblink_exec",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "lo_import",
    "lo_export",
    "lo_get",
    "loread",
    "set_config",
    "pg_notify",
    "notify",
    "search_path",
    "copy",
    "into",
    "pg_stats",
    "pg_statistic",
    "pg_stat_activity",
    "pg_stat_statements",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes",
];

/// What the token scan of an unparsable statement found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FallbackScan {
    /// Lower-cased words and identifiers, plus the words inside string
    /// literals (which may be SQL run dynamically).
    pub words: BTreeSet<String>,
    /// The first word that makes the statement dynamic, if any.
    pub dynamic: Option<String>,
    /// PostgreSQL's kind of a statement that is admitted only after
    /// sqlparser's full analysis (not in `ADMITTED_KINDS`).
    pub unadmitted_kind: Option<&'static str>,
    /// An ALTER DOMAIN that checks the stored values of the domain's
    /// columns (see `PgStatement::checks_domain_values`).
    pub checks_domain_values: bool,
}

/// Statement kinds admitted without sqlparser's tree, judged by what
/// PostgreSQL's tree references: reads, writes and schema changes that move
/// no protected data when none of their names is protected (views and
/// tables made from a query, publications, roles, function and trigger
/// definitions: a function is judged where it is called or attached, a
/// definition under an allowed name by `defined_functions`). Anything else
/// (DO, EXECUTE, COPY, cursors, prepared statements, rules, NOTIFY,
/// settings …) needs the full analysis, except a SET or RESET of a named
/// setting other than search_path (`SET role TO 'x'`, which sqlparser does
/// not read): PostgreSQL's grammar admits only constants there, and the
/// session reads search_path again after it.
const ADMITTED_KINDS: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
    "ExplainStmt",
    "VariableShowStmt",
    "TransactionStmt",
    "CreateStmt",
    "IndexStmt",
    "AlterTableStmt",
    "DropStmt",
    "CommentStmt",
    "GrantStmt",
    "GrantRoleStmt",
    "CreateSchemaStmt",
    "CreateSeqStmt",
    "AlterSeqStmt",
    "TruncateStmt",
    "LockStmt",
    "VacuumStmt",
    "ClusterStmt",
    "ReindexStmt",
    "CheckPointStmt",
    "DiscardStmt",
    "ListenStmt",
    "UnlistenStmt",
    "ClosePortalStmt",
    "DeallocateStmt",
    "CreateDomainStmt",
    "CompositeTypeStmt",
    "CreateEnumStmt",
    "AlterEnumStmt",
    "RenameStmt",
    "AlterObjectSchemaStmt",
    "AlterOwnerStmt",
    "CreateStatsStmt",
    "AlterStatsStmt",
    "ViewStmt",
    "CreateTableAsStmt",
    "CreateFunctionStmt",
    "CreateTrigStmt",
    "CreateRoleStmt",
    "AlterRoleStmt",
    "DropRoleStmt",
    "ConstraintsSetStmt",
    "DefineStmt",
    "CreatePublicationStmt",
    "AlterPublicationStmt",
    "DropdbStmt",
    "DropUserMappingStmt",
    "AlterDomainStmt",
    "CreateConversionStmt",
    "AlterTsConfigurationStmt",
];

/// Node kinds that make any statement need the full analysis: a prepared
/// statement's rows stored (`CREATE TABLE … AS EXECUTE`: its query is not
/// in the text) or code run for each row.
const REFUSED_NODES: &[&str] = &["ExecuteStmt", "CallStmt", "DoStmt"];

/// What PostgreSQL's tree of a statement sqlparser could not parse names:
/// its relations, columns, functions and types (exact references, as the
/// server reads them). Functions are judged as anywhere else: only
/// built-ins pgveil lists and analyses through are admitted.
pub fn from_tree(
    pg: &super::pg_tree::PgStatement,
    search_path: &[String],
    catalog: &super::Catalog,
) -> FallbackScan {
    let refs = &pg.references;
    let mut result = FallbackScan {
        checks_domain_values: pg.checks_domain_values,
        ..FallbackScan::default()
    };
    let names = refs
        .relations
        .iter()
        .chain(&refs.columns)
        .chain(&refs.functions)
        .chain(&refs.types);
    for name in names {
        result
            .words
            .extend(name.iter().filter(|p| *p != "*").cloned());
    }
    // MOVE returns a row count and no row (sqlparser has no MOVE; psycopg2's
    // scroll() and asyncpg's Cursor.forward() send it).
    if pg.moves_cursor {
        return result;
    }
    // A DO block that only raises constant messages runs nothing else.
    if pg.raise_only {
        return result;
    }
    // COPY … FROM STDIN writes what the client sends (sqlparser does not
    // read its WHERE clause, which PostgreSQL limits to the incoming row:
    // no subqueries); its functions are judged below.
    let setting = pg.setting.as_deref().is_some_and(|s| s != "search_path");
    if !ADMITTED_KINDS.contains(&pg.kind) && !pg.copy_from_stdin && !setting {
        result.unadmitted_kind = Some(pg.kind);
        return result;
    }
    if let Some(node) = REFUSED_NODES.iter().find(|n| refs.kinds.contains(**n)) {
        result.dynamic = Some((*node).to_owned());
        return result;
    }
    let mut walker = super::lineage::Walker::new(catalog, search_path);
    for function in &refs.functions {
        let _ = walker.check_function(function, None);
        // Its setting is an argument the references do not carry.
        if function.last().is_some_and(|n| n == "set_config") {
            walker.set_config_setting(None);
        }
    }
    // CREATE OPERATOR / AGGREGATE name the functions they attach as type
    // names (`FUNCTION = f`, `SFUNC = f`): each name that is not a built-in
    // type is judged as a function, so one the catalog lacks (made earlier
    // in the same string) is refused as unknown, not passed as a word.
    if pg.kind == "DefineStmt" {
        for name in &refs.types {
            let builtin_type = match name.as_slice() {
                [n] | [_, n] => super::builtins::is_builtin_type(n),
                _ => false,
            };
            if !builtin_type {
                let _ = walker.check_function(name, None);
            }
        }
    }
    if let Some(hazard) = walker.effects.hazards.iter().next() {
        result.dynamic = Some(hazard.detail.clone());
    }
    result
}

/// Scans the tokens of a statement sqlparser could not parse.
pub fn scan(sql: &str) -> FallbackScan {
    let mut result = FallbackScan::default();
    let dialect = PostgreSqlDialect {};
    let tokens = match Tokenizer::new(&dialect, sql).tokenize() {
        Ok(tokens) => tokens,
        Err(_) => {
            // Untokenisable text: treat every run of word characters as a name.
            add_words(&mut result.words, sql);
            result.dynamic = Some("text pgveil could not tokenise".to_owned());
            return result;
        }
    };
    for token in tokens {
        match token {
            Token::Word(word) => {
                let name = match word.quote_style {
                    Some(_) => word.value,
                    // PostgreSQL folds A–Z only.
                    None => word.value.to_ascii_lowercase(),
                };
                result.words.insert(name);
            }
            Token::SingleQuotedString(s)
            | Token::DoubleQuotedString(s)
            | Token::EscapedStringLiteral(s)
            | Token::UnicodeStringLiteral(s)
            | Token::NationalStringLiteral(s) => add_words(&mut result.words, &s),
            Token::DollarQuotedString(s) => add_words(&mut result.words, &s.value),
            _ => {}
        }
    }
    result.dynamic = result
        .words
        .iter()
        .find(|w| DYNAMIC_WORDS.contains(&w.as_str()))
        .cloned();
    if result.dynamic.is_none() && set_schema(sql).is_some() {
        result.dynamic = Some("SET SCHEMA".to_owned());
    }
    result
}

fn add_words(words: &mut BTreeSet<String>, text: &str) {
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')) {
        if !word.is_empty() {
            // Either spelling may be meant once the text runs as SQL.
            words.insert(word.to_ascii_lowercase());
            words.insert(word.to_owned());
        }
    }
}

/// Splits a multi-statement string at top-level semicolons (quotes,
/// comments and dollar quotes respected). Empty statements are dropped.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b';' => {
                pieces.push(&sql[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i = skip_token(sql, i).max(i + 1),
        }
    }
    pieces.push(&sql[start..]);
    pieces.retain(|p| !p.trim().is_empty());
    pieces
}

/// Index just past a quoted string, comment or dollar quote starting at `i`;
/// `i + 1` for anything else.
fn skip_token(sql: &str, i: usize) -> usize {
    let bytes = sql.as_bytes();
    match bytes[i] {
        b'\'' | b'"' => {
            let quote = bytes[i];
            let backslash = quote == b'\''
                && i > 0
                && matches!(bytes[i - 1], b'e' | b'E')
                && (i < 2 || !is_word_byte(bytes[i - 2]));
            let mut j = i + 1;
            while j < bytes.len() {
                if backslash && bytes[j] == b'\\' {
                    j += 2;
                    continue;
                }
                if bytes[j] == quote {
                    if bytes.get(j + 1) == Some(&quote) {
                        j += 2;
                        continue;
                    }
                    return j + 1;
                }
                j += 1;
            }
            bytes.len()
        }
        b'-' if bytes.get(i + 1) == Some(&b'-') => sql[i..]
            .find('\n')
            .map(|n| i + n + 1)
            .unwrap_or(bytes.len()),
        b'/' if bytes.get(i + 1) == Some(&b'*') => {
            // PostgreSQL block comments nest.
            let mut depth = 0usize;
            let mut j = i;
            while j + 1 < bytes.len() {
                if bytes[j] == b'/' && bytes[j + 1] == b'*' {
                    depth += 1;
                    j += 2;
                } else if bytes[j] == b'*' && bytes[j + 1] == b'/' {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        return j;
                    }
                } else {
                    j += 1;
                }
            }
            bytes.len()
        }
        b'$' if i == 0 || !is_word_byte(bytes[i - 1]) => {
            // $tag$ … $tag$ (not $1 parameters).
            let tag_end = sql[i + 1..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map(|n| i + 1 + n);
            match tag_end {
                Some(end)
                    if bytes[end] == b'$'
                        && !bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()) =>
                {
                    let tag = &sql[i..=end];
                    match sql[end + 1..].find(tag) {
                        Some(n) => end + 1 + n + tag.len(),
                        None => bytes.len(),
                    }
                }
                _ => i + 1,
            }
        }
        _ => i + 1,
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The plan-cache key of a statement string: comments dropped, whitespace
/// collapsed, unquoted words lower-cased, numeric literals replaced by `?n`
/// and string literals by `?s` (kept apart because `ORDER BY 2` and
/// `ORDER BY '2'` mean different things).
pub fn normalize(sql: &str) -> String {
    let bytes = sql.as_bytes();
    // Built as bytes: every piece pushed is a whole UTF-8 sequence.
    let mut out: Vec<u8> = Vec::with_capacity(sql.len());
    let mut i = 0;
    let mut pending_space = false;
    let push_space = |out: &mut Vec<u8>, pending: &mut bool| {
        if *pending && !out.is_empty() {
            out.push(b' ');
        }
        *pending = false;
    };
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            pending_space = true;
            i += 1;
            continue;
        }
        // Only quotes, comments and dollar quotes span more than one byte.
        let next = if matches!(b, b'\'' | b'"' | b'-' | b'/' | b'$') {
            skip_token(sql, i)
        } else {
            i + 1
        };
        match b {
            b'\'' => {
                push_space(&mut out, &mut pending_space);
                // Drop a literal prefix (E, B, X) already emitted.
                while let Some(&last) = out.last() {
                    let prefix = matches!(last, b'e' | b'b' | b'x' | b'E' | b'B' | b'X');
                    let standalone = out.len() < 2 || !is_word_byte(out[out.len() - 2]);
                    if !(prefix && standalone) {
                        break;
                    }
                    out.pop();
                }
                out.extend_from_slice(b"?s");
                i = next;
            }
            b'"' => {
                push_space(&mut out, &mut pending_space);
                out.extend_from_slice(&bytes[i..next]);
                i = next;
            }
            b'-' | b'/' if next > i + 1 => {
                pending_space = true;
                i = next;
            }
            b'$' if next > i + 1 => {
                push_space(&mut out, &mut pending_space);
                out.extend_from_slice(b"?s");
                i = next;
            }
            b'0'..=b'9' | b'.'
                if (b != b'.' || bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit()))
                    && (i == 0 || !is_word_byte(bytes[i - 1]) && bytes[i - 1] != b'$') =>
            {
                push_space(&mut out, &mut pending_space);
                let mut j = i;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'.' || bytes[j] == b'_')
                {
                    // 1e-5: the sign belongs to the exponent.
                    if matches!(bytes[j], b'e' | b'E')
                        && matches!(bytes.get(j + 1), Some(b'+' | b'-'))
                    {
                        j += 1;
                    }
                    j += 1;
                }
                out.extend_from_slice(b"?n");
                i = j;
            }
            _ => {
                push_space(&mut out, &mut pending_space);
                if is_word_byte(b) {
                    let mut j = i;
                    while j < bytes.len() && (is_word_byte(bytes[j]) || bytes[j] == b'$') {
                        j += 1;
                    }
                    let word = &sql[i..j];
                    if word.is_ascii() {
                        out.extend(word.bytes().map(|c| c.to_ascii_lowercase()));
                    } else {
                        out.extend_from_slice(word.to_lowercase().as_bytes());
                    }
                    i = j;
                } else {
                    out.push(b);
                    i += 1;
                }
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `SET [SESSION|LOCAL] SCHEMA 'name'`: the schema it switches to.
pub fn set_schema(sql: &str) -> Option<String> {
    let normalized = normalize(sql);
    let mut words = normalized.split_whitespace();
    if words.next() != Some("set") {
        return None;
    }
    let mut next = words.next()?;
    if matches!(next, "session" | "local") {
        next = words.next()?;
    }
    if next != "schema" {
        return None;
    }
    let start = sql.find('\'')? + 1;
    let end = start + sql[start..].find('\'')?;
    Some(sql[start..end].to_owned())
}

/// Whether a statement's first keyword changes the schema.
pub fn is_ddl_keyword(sql: &str) -> bool {
    // normalize() drops comments and lower-cases words.
    let normalized = normalize(sql);
    let first = normalized
        .split(|c: char| c.is_whitespace() || c == '(')
        .find(|w| !w.is_empty())
        .unwrap_or_default();
    matches!(
        first,
        "create"
            | "alter"
            | "drop"
            | "comment"
            | "grant"
            | "revoke"
            | "security"
            | "import"
            | "reindex"
            | "cluster"
            | "refresh"
    )
}

/// Statements recognised from their first keyword without parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuickKind {
    Transaction,
    /// SET/RESET/SHOW that does not touch search_path.
    Setting,
    Show,
}

/// Recognises transaction control and harmless settings. `None` means the
/// statement needs a real parse.
pub fn quick_kind(sql: &str) -> Option<QuickKind> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    // One statement only, no quoting tricks.
    if trimmed.contains([';', '\'', '"', '$', '-', '/', '\\']) {
        return None;
    }
    let mut words = trimmed.split_ascii_whitespace();
    let first = words.next()?.to_ascii_lowercase();
    let kind = match first.as_str() {
        "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint" | "release" => {
            QuickKind::Transaction
        }
        "set" | "reset" => QuickKind::Setting,
        "show" => QuickKind::Show,
        _ => return None,
    };
    if kind != QuickKind::Transaction {
        let lower = trimmed.to_ascii_lowercase();
        // search_path changes, and RESET ALL, need the full path.
        if lower.contains("search_path") || lower.contains("all") || lower.contains("schema") {
            return None;
        }
        // SET ROLE / SESSION AUTHORIZATION are parsed so the kind is exact.
        if lower.contains("role") || lower.contains("authorization") {
            return None;
        }
        // So are changes of how the server reads text (SET NAMES,
        // client_encoding, standard_conforming_strings …).
        let setting = lower
            .split_ascii_whitespace()
            .skip(1)
            .find(|w| !matches!(*w, "session" | "local"))
            .unwrap_or("");
        let setting = setting.split('=').next().unwrap_or("");
        if crate::analyze::resolves_search_path(setting) {
            return None;
        }
    }
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_shares_literals_but_keeps_kinds_apart() {
        assert_eq!(
            normalize("SELECT * FROM t WHERE a = 42 AND b = 'x''y'"),
            normalize("select *  from t where a = 7 and b = 'zz' -- c")
        );
        assert_ne!(
            normalize("SELECT a FROM t ORDER BY 2"),
            normalize("SELECT a FROM t ORDER BY '2'")
        );
        assert_ne!(
            normalize("SELECT \"A\" FROM t"),
            normalize("SELECT a FROM t")
        );
        assert_eq!(normalize("SELECT $1, t1.a"), "select $1, t1.a");
        assert_eq!(normalize("SELECT E'\\'x'"), "select ?s");
    }

    #[test]
    fn split_respects_quotes() {
        assert_eq!(
            split_statements("SELECT ';'; SELECT $$;$$ ; -- ;\n SELECT 1"),
            vec!["SELECT ';'", " SELECT $$;$$ ", " -- ;\n SELECT 1"]
        );
    }

    #[test]
    fn set_schema_is_recognised() {
        assert_eq!(set_schema("SET SCHEMA 'evil'").as_deref(), Some("evil"));
        assert_eq!(set_schema("set local schema 'x'").as_deref(), Some("x"));
        assert_eq!(set_schema("SET search_path TO x"), None);
    }

    #[test]
    fn ddl_keyword_after_comments() {
        assert!(is_ddl_keyword(
            "-- note\n/* x */ ALTER TABLE t SET SCHEMA s"
        ));
        assert!(!is_ddl_keyword("SELECT 1"));
    }

    #[test]
    fn quick_kinds() {
        assert_eq!(quick_kind("BEGIN"), Some(QuickKind::Transaction));
        assert_eq!(
            quick_kind("set statement_timeout = 5"),
            Some(QuickKind::Setting)
        );
        assert_eq!(quick_kind("SET search_path TO x"), None);
        assert_eq!(quick_kind("SET standard_conforming_strings = off"), None);
        assert_eq!(quick_kind("set session client_encoding=sjis"), None);
        assert_eq!(quick_kind("RESET standard_conforming_strings"), None);
        assert_eq!(quick_kind("SET NAMES sjis"), None);
        assert_eq!(quick_kind("SELECT 1"), None);
    }

    #[test]
    fn scan_reads_string_literals() {
        let s = scan("SELEKT 'select id_number from customers'");
        assert!(s.words.contains("id_number"));
        assert_eq!(scan("DO $$ begin end $$").dynamic.as_deref(), Some("do"));
    }
}
