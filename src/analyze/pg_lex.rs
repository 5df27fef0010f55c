//! Reading statement text with PostgreSQL's own scanner (libpg_query), for
//! everything where a difference to the server is a hole.
//!
//! The analysis cache is keyed by the statement's tokens as the server
//! lexes them, so two strings share an analysis only when PostgreSQL sees
//! the same statement in both (literal values aside). A hand-written
//! normaliser got this wrong: PostgreSQL ends a `--` comment at `\r`, so
//! `SELECT 1 --\r, id_number FROM customers` reused `SELECT 1`'s analysis.

use pg_query::protobuf::{KeywordKind, Token};

/// The analysis-cache key of `sql`: PostgreSQL's tokens, comments dropped,
/// numeric constants as `?n`, strings as `?s`, bit strings as `?b`,
/// unquoted keywords and names folded as the server folds them (ASCII
/// only), everything else as written, one space between tokens. `None`
/// when the text must be keyed exactly: the scanner rejects it, or it has
/// a backslash (how a string containing one ends depends on
/// `standard_conforming_strings`, which the scanner here does not know).
pub fn cache_key(sql: &str) -> Option<String> {
    if sql.contains('\\') {
        return None;
    }
    // Text of whitespace only has no token, and for no token pg_query 18.1's
    // scan_tokens builds a slice from a null pointer: undefined behaviour, and
    // an abort of the whole process where the check is compiled in (a debug
    // build, on psycopg2's empty query). The key of no tokens is "".
    if sql.bytes().all(|b| PG_WHITESPACE.contains(&b)) {
        return Some(String::new());
    }
    let tokens = pg_query::scan_tokens(sql).ok()?;
    let mut key = String::with_capacity(sql.len());
    for t in &tokens {
        let text = sql.get(usize::try_from(t.start).ok()?..usize::try_from(t.end).ok()?)?;
        let piece = match Token::try_from(t.token).ok()? {
            Token::SqlComment | Token::CComment => continue,
            Token::Iconst | Token::Fconst => "?n",
            Token::Sconst | Token::Usconst => "?s",
            Token::Bconst | Token::Xconst => "?b",
            Token::Ident if !text.starts_with('"') => {
                push_folded(&mut key, text);
                continue;
            }
            _ if t.keyword_kind != KeywordKind::NoKeyword as i32 => {
                push_folded(&mut key, text);
                continue;
            }
            _ => text,
        };
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(piece);
    }
    Some(key)
}

/// The names written in `sql` as the server reads them: unquoted names and
/// keywords folded as the server folds them, quoted names without their
/// quotes. Empty when the scanner rejects the text.
pub fn names(sql: &str) -> Vec<String> {
    if sql.bytes().all(|b| PG_WHITESPACE.contains(&b)) {
        return Vec::new();
    }
    let Ok(tokens) = pg_query::scan_tokens(sql) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for t in &tokens {
        let (Ok(start), Ok(end)) = (usize::try_from(t.start), usize::try_from(t.end)) else {
            continue;
        };
        let Some(text) = sql.get(start..end) else {
            continue;
        };
        let keyword = t.keyword_kind != KeywordKind::NoKeyword as i32;
        match Token::try_from(t.token) {
            Ok(Token::Ident) if text.starts_with('"') => {
                let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
                names.push(inner.replace("\"\"", "\""));
            }
            Ok(Token::Ident) => names.push(text.to_ascii_lowercase()),
            _ if keyword => names.push(text.to_ascii_lowercase()),
            _ => {}
        }
    }
    names
}

/// What PostgreSQL's scanner skips between tokens (`space` in scan.l).
const PG_WHITESPACE: &[u8] = b" \t\n\r\x0c\x0b";

/// PostgreSQL folds unquoted names to lower case for A–Z only: `Év` stays
/// `Év` (it is not `év`).
fn push_folded(key: &mut String, text: &str) {
    if !key.is_empty() {
        key.push(' ');
    }
    key.extend(text.chars().map(|c| c.to_ascii_lowercase()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_folded_or_unquoted_and_literals_are_not_names() {
        assert_eq!(
            names("SELECT * FROM __DNE__ JOIN \"My \"\"T\"\"\" ON a = 'lit'"),
            ["select", "from", "__dne__", "join", "My \"T\"", "on", "a"]
        );
        assert!(names("  ").is_empty());
    }

    #[test]
    fn keys_share_literals_and_case_but_not_tokens() {
        assert_eq!(
            cache_key("SELECT * FROM t WHERE a = 42 AND b = 'x''y'"),
            cache_key("select *  from t where a = 7 and b = 'zz' -- c")
        );
        assert_ne!(
            cache_key("SELECT a FROM t ORDER BY 2"),
            cache_key("SELECT a FROM t ORDER BY '2'")
        );
        assert_ne!(
            cache_key("SELECT \"A\" FROM t"),
            cache_key("SELECT a FROM t")
        );
        assert_eq!(
            cache_key("SELECT $1, t1.a").as_deref(),
            Some("select $1 , t1 . a")
        );
    }

    #[test]
    fn comments_end_where_postgres_ends_them() {
        // A `--` comment ends at a carriage return for the server.
        assert_ne!(
            cache_key("SELECT 1 --\r, id_number FROM customers"),
            cache_key("SELECT 1")
        );
        assert_eq!(
            cache_key("SELECT 1 --\r, id_number FROM customers"),
            cache_key("SELECT 1, id_number FROM customers")
        );
        // Block comments nest.
        assert_eq!(
            cache_key("SELECT 1 /* a /* b */ , id_number */"),
            cache_key("SELECT 1")
        );
    }

    #[test]
    fn only_ascii_letters_fold() {
        assert_ne!(cache_key("SELECT * FROM Év"), cache_key("SELECT * FROM év"));
        assert_eq!(cache_key("SELECT * FROM ÉV"), cache_key("SELECT * FROM Év"));
        assert_eq!(
            cache_key("SELECT * FROM Tab"),
            cache_key("select * from tab")
        );
    }

    #[test]
    fn text_without_tokens_has_the_empty_key() {
        for sql in ["", " ", "\n\t \r\x0c\x0b"] {
            assert_eq!(cache_key(sql).as_deref(), Some(""), "{sql:?}");
        }
        assert_eq!(cache_key("-- only a comment").as_deref(), Some(""));
    }

    #[test]
    fn text_the_scanner_cannot_key_is_keyed_exactly() {
        assert_eq!(cache_key("SELECT 'unterminated"), None);
        assert_eq!(cache_key("SELECT E'\\'x'"), None);
    }
}
