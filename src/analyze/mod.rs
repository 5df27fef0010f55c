//! analyze: SQL text -> lineage of every output column and every use of a
//! protected column -> plan. Pure: no sockets, no tokio (the catalog loader
//! borrows a `tokio_postgres::Client` the caller owns).
//!
//! # Session-facing API
//!
//! ```text
//! let analyzer = Analyzer::new(capacity);                  // one per process
//! let planned: Vec<PlannedStatement> =
//!     analyzer.plan(sql, &SessionContext { database, search_path },
//!                   &catalog, policy /* &dyn PolicyView */, policy_version);
//! ```
//!
//! One `PlannedStatement { kind, plan, analysis }` per statement of `sql`, in
//! order. `plan` is `Allow`, `Mask { columns }` (field index of the
//! RowDescription/DataRow/COPY row -> decision + source column) or `Block`.
//! `kind` tells the session what else to do:
//!
//! - `Ddl`: invalidate the catalog of the database after it succeeds.
//! - `SetSearchPath { schemas }`: update the session's search_path (`None`:
//!   the server's value must be read again: RESET, DISCARD ALL, or a change
//!   of the role `"$user"` stands for: SET ROLE, SET SESSION AUTHORIZATION).
//! - `DeclareCursor { name }`: `plan` is the plan of the cursor's rows; keep
//!   it for `Fetch { cursor }`, whose own `plan` is only a fail-closed
//!   placeholder (Block for restricted roles) the session replaces with the
//!   stored one. `Close { cursor }` forgets it (`None`: CLOSE ALL).
//! - `Prepare { name }` / `Execute { name }` / `Deallocate`: same pattern
//!   for SQL-level prepared statements. A Block on DECLARE/PREPARE means the
//!   statement itself must be rejected.
//! - `CopyTo { to_client: true }`: `plan` applies to each COPY data row.
//! - `Transaction`, `Setting`, `Show`: recognised from the first keyword
//!   without a parse.
//! - `Unparsed { ddl }`: sqlparser could not parse it; the plan comes from
//!   the token scan (admitted only when no word, string literals included,
//!   names a protected column, a relation or view carrying one, or a
//!   user-defined function, and nothing is dynamic SQL). `ddl`: invalidate
//!   the catalog after it.
//!
//! Rules as implemented (see DESIGN.md): an output that is a protected
//! column's value (bare reference, text cast, COALESCE/NULLIF/min/max/
//! window lag…, scalar subquery, CTE, view, set operation) is masked with
//! its decision; an output computed from a protected column, or carrying
//! two columns with different masks, is blocked. Outside the select list,
//! `=`, `<>`, `IN`, `= ANY`, `IS [NOT] DISTINCT FROM`, `IS NULL` as a row filter
//! (not IS NOT NULL, which matches rows of every value), equi-joins,
//! USING/NATURAL, GROUP BY, DISTINCT (ON), PARTITION BY and
//! INTERSECT/EXCEPT/UNION count as equality uses of a bare column; anything
//! else (ranges, LIKE, functions of it, ORDER BY, min/max/greatest) is a
//! general use. Writes of a protected value anywhere (INSERT … SELECT,
//! UPDATE SET, MERGE, CTAS, SELECT INTO, COPY TO file/program, pg_notify,
//! set_config, EXECUTE parameters, renames) block unless the role sees it
//! in clear. Partitions and inheritance children carry their parents'
//! column rules; views carry their definition's lineage and filters.
//!
//! Roles for which `PolicyView::is_unrestricted()` get `Allow` without plan
//! derivation; the (cached) analysis still runs so the session learns the
//! statement kind. `policy_version` is accepted for a future plan memo;
//! today the plan is re-derived on every call (a few policy look-ups).
//!
//! The analysis (lineage, uses, effects) is independent of the policy and is
//! cached by (database, search_path, catalog generation, statement text with
//! literals normalised); decisions that depend on a literal's text are cached
//! under the exact text only. The plan is derived from it on every call.

pub mod builtins;
pub mod catalog;
pub mod cli;
pub mod depth;
pub mod fallback;
pub mod lineage;
pub mod pg_agree;
pub mod pg_lex;
pub mod pg_tree;
pub mod plan;
pub mod policy_view;
pub mod sealed;

use std::sync::Arc;

use dashmap::DashMap;
use sqlparser::ast::{self, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

pub use catalog::{Catalog, CatalogCache, CatalogError};
pub use lineage::{Effects, Flow, OutputColumn, Sources};
pub use plan::{
    array_parameter_limits, ArrayParameterLimit, BlockReason, MaskedColumn, StatementPlan,
};

use fallback::{FallbackScan, QuickKind};
use lineage::{HazardRule, Walker};
use policy_view::PolicyView;

/// What the session knows about where a statement runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionContext {
    pub database: String,
    /// Schemas in order, `$user` already expanded by the session.
    pub search_path: Vec<String>,
    /// The server's settings that decide where tokens end.
    pub lexing: pg_tree::LexSettings,
}

/// What a statement is, as far as the session's state machine cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    Query,
    Insert,
    Update,
    Delete,
    Merge,
    CopyTo {
        to_client: bool,
    },
    CopyFrom,
    DeclareCursor {
        name: String,
    },
    Fetch {
        cursor: String,
    },
    Close {
        cursor: Option<String>,
    },
    Prepare {
        name: String,
    },
    Execute {
        name: String,
    },
    Deallocate {
        name: Option<String>,
    },
    SetSearchPath {
        schemas: Option<Vec<String>>,
    },
    Setting,
    Show,
    Transaction,
    Ddl,
    Explain,
    Call,
    Notify,
    Listen,
    Discard,
    /// A `DO` block that only raises constant messages: what it raises is
    /// the client's own text.
    Raise,
    Other,
    /// sqlparser could not parse it; judged by the token scan. `ddl`: its
    /// first keyword changes the schema (invalidate the catalog after it).
    Unparsed {
        ddl: bool,
    },
}

/// The cached, policy-independent analysis of one statement.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub kind: StatementKind,
    /// Output columns in RowDescription order (COPY: row field order).
    pub outputs: Vec<OutputColumn>,
    pub effects: Effects,
    /// The analysis read a literal's text (positional ORDER BY, set_config,
    /// the fallback scan): never share it across different literals.
    pub literal_sensitive: bool,
    /// Present for statements sqlparser could not parse.
    pub fallback: Option<FallbackScan>,
}

impl Analysis {
    fn new(kind: StatementKind) -> Analysis {
        Analysis {
            kind,
            outputs: Vec::new(),
            effects: Effects::default(),
            literal_sensitive: false,
            fallback: None,
        }
    }
}

/// One statement's analysis and the plan for the calling role.
#[derive(Debug, Clone)]
pub struct PlannedStatement {
    pub kind: StatementKind,
    pub plan: StatementPlan,
    pub analysis: Arc<Analysis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    database: String,
    search_path: Vec<String>,
    catalog_generation: u64,
    lexing: pg_tree::LexSettings,
    /// Normalised text, or `=` + exact text for literal-sensitive entries.
    text: String,
}

/// Analyses statements and caches the analyses.
#[derive(Debug)]
pub struct Analyzer {
    cache: DashMap<CacheKey, Arc<Vec<Arc<Analysis>>>>,
    capacity: usize,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(10_000)
    }
}

impl Analyzer {
    /// `capacity`: cached statement strings before the cache is emptied.
    pub fn new(capacity: usize) -> Analyzer {
        Analyzer {
            cache: DashMap::new(),
            capacity,
        }
    }

    /// Plans every statement in `sql` for the role behind `policy`.
    ///
    /// `policy_version` identifies the compiled policy; plans are cheap to
    /// derive and are not cached across versions.
    pub fn plan(
        &self,
        sql: &str,
        ctx: &SessionContext,
        catalog: &Catalog,
        policy: &dyn PolicyView,
        policy_version: u64,
    ) -> Vec<PlannedStatement> {
        self.plan_traced(sql, ctx, catalog, policy, policy_version)
            .0
    }

    /// Like `plan`, and whether the analysis came from the cache (for
    /// metrics).
    pub fn plan_traced(
        &self,
        sql: &str,
        ctx: &SessionContext,
        catalog: &Catalog,
        policy: &dyn PolicyView,
        policy_version: u64,
    ) -> (Vec<PlannedStatement>, bool) {
        let _ = policy_version;
        let (analyses, cached) = self.analyse_traced(sql, ctx, catalog);
        (Self::plan_analysed(&analyses, catalog, policy), cached)
    }

    /// Plans analyses the caller already holds (from `analyse`, with the
    /// same context and catalog): saves a second cache look-up.
    pub fn plan_analysed(
        analyses: &[Arc<Analysis>],
        catalog: &Catalog,
        policy: &dyn PolicyView,
    ) -> Vec<PlannedStatement> {
        analyses
            .iter()
            .map(|analysis| {
                let plan = plan_for(analysis, catalog, policy);
                PlannedStatement {
                    kind: analysis.kind.clone(),
                    plan,
                    analysis: Arc::clone(analysis),
                }
            })
            .collect()
    }

    /// The (cached) analyses of every statement in `sql`.
    pub fn analyse(
        &self,
        sql: &str,
        ctx: &SessionContext,
        catalog: &Catalog,
    ) -> Arc<Vec<Arc<Analysis>>> {
        self.analyse_traced(sql, ctx, catalog).0
    }

    /// Like `analyse`, and whether the result came from the cache.
    pub fn analyse_traced(
        &self,
        sql: &str,
        ctx: &SessionContext,
        catalog: &Catalog,
    ) -> (Arc<Vec<Arc<Analysis>>>, bool) {
        // Shared across literal values only when PostgreSQL's scanner
        // sees the same tokens; otherwise keyed by the exact text.
        let normalized = pg_lex::cache_key(sql);
        let exact = || format!("={sql}");
        let mut key = CacheKey {
            database: ctx.database.clone(),
            search_path: ctx.search_path.clone(),
            catalog_generation: catalog.generation(),
            lexing: ctx.lexing,
            text: normalized.clone().unwrap_or_else(exact),
        };
        if let Some(hit) = self.cache.get(&key) {
            return (Arc::clone(&hit), true);
        }
        if normalized.is_some() {
            key.text = exact();
            if let Some(hit) = self.cache.get(&key) {
                return (Arc::clone(&hit), true);
            }
        }
        let analyses: Vec<Arc<Analysis>> =
            analyse_lexed(sql, ctx.lexing, &ctx.search_path, catalog)
                .into_iter()
                .map(Arc::new)
                .collect();
        if let Some(normalized) = normalized {
            if !analyses.iter().any(|a| a.literal_sensitive) {
                key.text = normalized;
            }
        }
        let analyses = Arc::new(analyses);
        if self.cache.len() >= self.capacity {
            // Crude but bounded: statement sets of real apps are small.
            self.cache.clear();
        }
        self.cache.insert(key, Arc::clone(&analyses));
        (analyses, false)
    }
}

fn plan_for(analysis: &Analysis, catalog: &Catalog, policy: &dyn PolicyView) -> StatementPlan {
    match &analysis.kind {
        // Placeholders: the session substitutes the plan it stored.
        StatementKind::Fetch { .. } | StatementKind::Execute { .. } if policy.is_restricted() => {
            StatementPlan::Block(BlockReason {
                reason: "pgveil has no plan for this cursor or prepared statement".into(),
                rule: HazardRule::DynamicSql.as_str().into(),
                column: None,
                hint: "DECLARE or PREPARE it on this connection first".into(),
            })
        }
        _ => plan::derive(analysis, catalog, policy),
    }
}

/// sqlparser's tokens of `sql` after one rewrite: psql and pg_dump spell
/// built-in operators `OPERATOR(pg_catalog.=)` so that search_path cannot
/// redirect them; sqlparser does not know that syntax, and the operator it
/// names is exactly the built-in one, so it is analysed as the bare
/// operator. Operators of any other schema are left alone (and so stay
/// unparsable and fail closed). The server always gets the original text.
fn tokens_postgres(sql: &str) -> Result<Vec<Token>, sqlparser::parser::ParserError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| sqlparser::parser::ParserError::TokenizerError(e.to_string()))?;
    let is_word = |t: &Token, w: &str| matches!(t, Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(w));
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if i + 5 < tokens.len()
            && is_word(&tokens[i], "operator")
            && tokens[i + 1] == Token::LParen
            && is_word(&tokens[i + 2], "pg_catalog")
            && tokens[i + 3] == Token::Period
            && tokens[i + 5] == Token::RParen
        {
            // Surround with spaces so it cannot fuse with its neighbours.
            out.push(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space));
            out.push(tokens[i + 4].clone());
            out.push(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space));
            i += 6;
            continue;
        }
        if let Some(end) = frame_exclusion_end(&tokens, i, &out) {
            i = end;
            continue;
        }
        if let Token::CustomBinaryOperator(op) = &tokens[i] {
            if let Some(split) = operator_as_postgres_scans_it(op) {
                out.extend(split);
                i += 1;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    Ok(out)
}

/// A run of operator characters as PostgreSQL's scanner ends it (scan.l):
/// before a `/*` or `--` inside it (a comment starts there), and without
/// trailing `+`/`-` when it has none of `~!@#^&|`?%` (so `<>-1` is `<>`
/// and `-1`). `None` when sqlparser's token already is that operator, or
/// when what follows does not tokenise on its own or holds a `--` comment
/// (left as it is, and refused as not understood).
fn operator_as_postgres_scans_it(op: &str) -> Option<Vec<Token>> {
    let mut end = [op.find("/*"), op.find("--")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(op.len());
    let bytes = op.as_bytes();
    if end > 1 && matches!(bytes[end - 1], b'+' | b'-') {
        let non_sql = bytes[..end - 1].iter().any(|c| b"~!@#^&|`?%".contains(c));
        if !non_sql {
            while end > 1 && matches!(bytes[end - 1], b'+' | b'-') {
                end -= 1;
            }
        }
    }
    // A `--` comment runs to the end of the line, past sqlparser's token.
    if end == op.len() || end == 0 || op[end..].contains("--") {
        return None;
    }
    let dialect = PostgreSqlDialect {};
    let mut tokens = Tokenizer::new(&dialect, &op[..end]).tokenize().ok()?;
    let rest = Tokenizer::new(&dialect, &op[end..]).tokenize().ok()?;
    tokens.push(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space));
    tokens.extend(rest);
    Some(tokens)
}

/// A window frame's `EXCLUDE CURRENT ROW | GROUP | TIES | NO OTHERS`
/// (which sqlparser does not read) starting at `tokens[i]`, right after a
/// frame bound and right before the window's `)`: the index past it.
/// Dropping it changes no lineage: the function reads the same argument
/// over a subset of the same frame.
fn frame_exclusion_end(tokens: &[Token], i: usize, before: &[Token]) -> Option<usize> {
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let significant = |t: &&Token| !matches!(t, Token::Whitespace(_));
    if !word(tokens.get(i)?, "exclude") {
        return None;
    }
    let previous = before.iter().rev().find(significant)?;
    if !["following", "preceding", "row"]
        .iter()
        .any(|w| word(previous, w))
    {
        return None;
    }
    let mut next = tokens[i + 1..]
        .iter()
        .enumerate()
        .filter(|(_, t)| significant(t));
    let (_, first) = next.next()?;
    let words: &[&str] = if word(first, "current") {
        &["row"]
    } else if word(first, "no") {
        &["others"]
    } else if word(first, "group") || word(first, "ties") {
        &[]
    } else {
        return None;
    };
    for w in words {
        let (_, t) = next.next()?;
        if !word(t, w) {
            return None;
        }
    }
    let (offset, close) = next.next()?;
    (*close == Token::RParen).then_some(i + 1 + offset)
}

/// Why a statement has no sqlparser tree.
#[derive(Debug)]
pub enum ParseFailure {
    /// Deeper than [`depth::MAX_NESTING`] by the token bound: not parsed.
    TooDeep(usize),
    Syntax(sqlparser::parser::ParserError),
}

/// Parses `sql` as [`parse_postgres`] does and hands the statements to `f`
/// on a stack big enough to walk and drop them: the only safe way to parse
/// text of unbounded depth (the trees are dropped before this returns).
pub fn with_parsed<R>(sql: &str, f: impl FnOnce(Result<&[Statement], ParseFailure>) -> R) -> R {
    with_parsed_bound(sql, |parsed, _| f(parsed))
}

/// Like [`with_parsed`], and also hands `f` the text's nesting bound.
fn with_parsed_bound<R>(
    sql: &str,
    f: impl FnOnce(Result<&[Statement], ParseFailure>, usize) -> R,
) -> R {
    let tokens = match tokens_postgres(sql) {
        Ok(tokens) => tokens,
        Err(e) => return f(Err(ParseFailure::Syntax(e)), sql.len()),
    };
    let bound = depth::nesting_bound(&tokens);
    if bound > depth::MAX_NESTING {
        return f(Err(ParseFailure::TooDeep(bound)), bound);
    }
    depth::with_stack_for(bound, || {
        let parsed = Parser::new(&PostgreSqlDialect {})
            .with_tokens(tokens)
            .parse_statements();
        match &parsed {
            Ok(statements) => f(Ok(statements), bound),
            Err(e) => f(Err(ParseFailure::Syntax(e.clone())), bound),
        }
    })
}

/// Parses with sqlparser after the `OPERATOR(pg_catalog.…)` rewrite of
/// [`tokens_postgres`]. The caller walks and drops the trees on its own
/// stack: use [`with_parsed`] for text of unknown depth.
pub fn parse_postgres(sql: &str) -> Result<Vec<Statement>, sqlparser::parser::ParserError> {
    let tokens = tokens_postgres(sql)?;
    Parser::new(&PostgreSqlDialect {})
        .with_tokens(tokens)
        .parse_statements()
}

/// Analyses every statement of `sql` without the cache, lexed with the
/// server's default settings.
pub fn analyse_uncached(sql: &str, search_path: &[String], catalog: &Catalog) -> Vec<Analysis> {
    analyse_lexed(sql, pg_tree::LexSettings::default(), search_path, catalog)
}

/// Analyses every statement of `sql` as the server reads it under
/// `lexing`, without the cache.
pub fn analyse_lexed(
    sql: &str,
    lexing: pg_tree::LexSettings,
    search_path: &[String],
    catalog: &Catalog,
) -> Vec<Analysis> {
    if let Some(kind) = fallback::quick_kind(sql) {
        return vec![Analysis::new(match kind {
            QuickKind::Transaction => StatementKind::Transaction,
            QuickKind::Setting => StatementKind::Setting,
            QuickKind::Show => StatementKind::Show,
        })];
    }
    // sqlparser lexes as with standard_conforming_strings on: it reads a
    // spelling of the text that the server would read alike.
    let Some(text) = pg_tree::text_for_sqlparser(sql, lexing) else {
        return vec![misunderstood(
            "PostgreSQL's parser rejects it under standard_conforming_strings = off".into(),
        )];
    };
    with_parsed_bound(&text, |parsed, bound| match parsed {
        Ok(statements) => {
            let mut analyses: Vec<Analysis> = statements
                .iter()
                .map(|s| analyse_statement(s, search_path, catalog))
                .collect();
            // The check runs on the text as the client sent it, under the
            // session's settings: it also checks the respelling above.
            match pg_tree::parse(sql, lexing, bound) {
                Ok(pg) if pg.len() == statements.len() => {
                    for ((analysis, statement), pg) in analyses.iter_mut().zip(statements).zip(&pg)
                    {
                        builtin_type_shadow(pg, search_path, &mut analysis.effects);
                        role_matching(pg, &mut analysis.effects);
                        if let Some(what) = pg_agree::disagreement(statement, &pg.references) {
                            analysis.effects.hazard(
                                HazardRule::Misunderstood,
                                format!(
                                    "PostgreSQL's parser reads a {what} that pgveil's does not"
                                ),
                            );
                        }
                    }
                }
                Ok(pg) => {
                    let detail = format!(
                        "PostgreSQL's parser reads {} statements where pgveil's reads {}",
                        pg.len(),
                        statements.len()
                    );
                    for analysis in &mut analyses {
                        analysis
                            .effects
                            .hazard(HazardRule::Misunderstood, detail.clone());
                    }
                }
                Err(e) => {
                    for analysis in &mut analyses {
                        analysis
                            .effects
                            .hazard(HazardRule::Misunderstood, e.to_string());
                    }
                }
            }
            analyses
        }
        // Find which statements fail (or are too deep), so the others keep
        // their analysis; split where the server splits.
        Err(_) => match pg_tree::split(sql, lexing, bound) {
            Some(pieces) => pieces
                .into_iter()
                .map(|piece| analyse_piece(piece, lexing, search_path, catalog))
                .collect(),
            None => vec![match pg_tree::parse(sql, lexing, bound) {
                Err(e) => misunderstood(e.to_string()),
                Ok(_) => misunderstood("PostgreSQL's parser could not split it".into()),
            }],
        },
    })
}

/// A statement pgveil cannot read as the server does: blocked for masked
/// roles; the catalog is refreshed after it (it may be DDL).
fn misunderstood(detail: String) -> Analysis {
    let mut analysis = Analysis::new(StatementKind::Unparsed { ddl: true });
    analysis.effects.hazard(HazardRule::Misunderstood, detail);
    analysis
}

/// Analyses one statement (as the server split it) of a string that did
/// not parse as a whole.
fn analyse_piece(
    piece: &str,
    lexing: pg_tree::LexSettings,
    search_path: &[String],
    catalog: &Catalog,
) -> Analysis {
    let Some(text) = pg_tree::text_for_sqlparser(piece, lexing) else {
        return misunderstood(
            "PostgreSQL's parser rejects it under standard_conforming_strings = off".into(),
        );
    };
    with_parsed_bound(&text, |parsed, bound| match parsed {
        Ok([statement]) => {
            let mut analysis = analyse_statement(statement, search_path, catalog);
            match pg_tree::parse(piece, lexing, bound) {
                Ok(pg) if pg.len() == 1 => {
                    builtin_type_shadow(&pg[0], search_path, &mut analysis.effects);
                    role_matching(&pg[0], &mut analysis.effects);
                    if let Some(what) = pg_agree::disagreement(statement, &pg[0].references) {
                        analysis.effects.hazard(
                            HazardRule::Misunderstood,
                            format!("PostgreSQL's parser reads a {what} that pgveil's does not"),
                        );
                    }
                }
                Ok(_) => analysis.effects.hazard(
                    HazardRule::Misunderstood,
                    "PostgreSQL's parser reads another number of statements",
                ),
                Err(e) => analysis
                    .effects
                    .hazard(HazardRule::Misunderstood, e.to_string()),
            }
            analysis
        }
        Err(ParseFailure::TooDeep(depth)) => too_deep(depth),
        _ => {
            // sqlparser cannot read it: judged by what PostgreSQL's tree
            // references.
            let pg = match pg_tree::parse(piece, lexing, bound) {
                Ok(mut pg) if pg.len() == 1 => pg.remove(0),
                Ok(_) => {
                    return misunderstood(
                        "PostgreSQL's parser reads another number of statements".into(),
                    )
                }
                Err(e) => return misunderstood(e.to_string()),
            };
            if let Some(analysis) = table_as_with_data(&text, &pg, search_path, catalog) {
                return analysis;
            }
            if let Some(table) = &pg.identity_alter {
                let mut walker = Walker::new(catalog, search_path);
                walker.identity_alter(table);
                let mut analysis = Analysis::new(StatementKind::Ddl);
                analysis.effects = walker.effects;
                return analysis;
            }
            if let Some(cursor) = &pg.fetches_cursor {
                // Its rows are the cursor's: the session substitutes the
                // plan stored at DECLARE, as for a FETCH sqlparser reads.
                return Analysis::new(StatementKind::Fetch {
                    cursor: cursor.clone(),
                });
            }
            let kind = match fallback::set_schema(piece) {
                // SET SCHEMA 'x' is search_path under another name.
                Some(schema) => StatementKind::SetSearchPath {
                    schemas: Some(vec![schema]),
                },
                None if pg.copy_from_stdin => StatementKind::CopyFrom,
                None if pg.raise_only => StatementKind::Raise,
                // Another SET or RESET (`SET role TO DEFAULT`): it may change
                // what "$user" stands for; the session reads search_path again.
                None if pg.kind == "VariableSetStmt" => {
                    StatementKind::SetSearchPath { schemas: None }
                }
                None => StatementKind::Unparsed {
                    ddl: fallback::is_ddl_keyword(piece),
                },
            };
            let mut analysis = Analysis::new(kind);
            builtin_type_shadow(&pg, search_path, &mut analysis.effects);
            role_matching(&pg, &mut analysis.effects);
            unparsed_effects(&pg, search_path, catalog, &mut analysis.effects);
            analysis.fallback = Some(fallback::from_tree(&pg, search_path, catalog));
            analysis.literal_sensitive = true;
            analysis
        }
    })
}

/// What an unparsed statement does besides the names it mentions, from
/// PostgreSQL's tree, judged as its parsed form would be: the function a
/// trigger attaches (built in or allowed), functions (re)defined (not under
/// an allowed name), a temporary relation that would shadow another, and
/// the rule of the kinds that run code pgveil cannot follow.
fn unparsed_effects(
    pg: &pg_tree::PgStatement,
    search_path: &[String],
    catalog: &Catalog,
    effects: &mut lineage::Effects,
) {
    let mut walker = Walker::new(catalog, search_path);
    if let Some((table, columns)) = &pg.copy_into {
        walker.copy_into(table, columns);
    }
    for function in &pg.references.functions {
        let _ = walker.check_function(function, None);
        // Its setting is an argument the references do not carry.
        if function.last().is_some_and(|n| n == "set_config") {
            walker.set_config_setting(None);
        }
    }
    if let Some(function) = &pg.trigger_function {
        let _ = walker.check_function(function, None);
    }
    // PostgreSQL's conversion procedures are internal functions meant for
    // exactly this; any other must be one the role may run.
    if let Some(function) = &pg.conversion_function {
        let (schema, name) = match function.as_slice() {
            [name] => (None, name.as_str()),
            [.., schema, name] => (Some(schema.as_str()), name.as_str()),
            [] => (None, ""),
        };
        match catalog.resolve_function(search_path, schema, name) {
            Some(f) if f.is_builtin() => {}
            Some(f) => {
                walker
                    .effects
                    .user_functions
                    .insert((f.schema.clone(), f.name.clone()));
            }
            None => walker.effects.hazard(
                HazardRule::UnknownName,
                format!("function {} is not in the catalog", function.join(".")),
            ),
        }
    }
    // Statistics and activity views quote stored values and other
    // sessions' statements; the walker judges their columns, the name is
    // all there is here.
    for relation in &pg.references.relations {
        let Some(name) = relation.last() else {
            continue;
        };
        if lineage::SENSITIVE_SYSTEM_RELATIONS.contains(&name.as_str())
            || name == "pg_stat_activity"
        {
            walker.effects.hazard(
                HazardRule::SensitiveCatalog,
                format!("{name} exposes raw column values or statement texts"),
            );
        }
    }
    for (schema, name) in &pg.defined_functions {
        match schema {
            Some(schema) => {
                walker
                    .effects
                    .defined_functions
                    .insert((schema.clone(), name.clone()));
            }
            None => walker.effects.defined_functions.extend(
                search_path
                    .iter()
                    .map(|schema| (schema.clone(), name.clone())),
            ),
        }
    }
    for new in &pg.new_type_names {
        let Some(name) = new.name.as_deref() else {
            continue;
        };
        let array_of = |element: &str| {
            pg.new_type_names
                .iter()
                .any(|n| n.name.as_deref() == Some(element))
        };
        let is_array = name.strip_prefix('_').is_some_and(array_of);
        if !new.temporary || new.schema.is_some() || is_array {
            continue;
        }
        let empty = pg.kind == "CreateStmt";
        temp_shadow_check(&mut walker, name, catalog, search_path, empty);
    }
    match pg.kind {
        "DoStmt" if !pg.raise_only => walker.effects.hazard(
            HazardRule::DynamicSql,
            "DO runs procedural code pgveil cannot see into",
        ),
        "RuleStmt" => walker.effects.hazard(
            HazardRule::ServerCode,
            "a rule runs its actions inside other statements, where pgveil cannot follow them",
        ),
        _ => {}
    }
    effects.absorb(&walker.effects);
}

/// `CREATE MATERIALIZED VIEW / TABLE … AS query WITH [NO] DATA` (pg_dump
/// writes `WITH NO DATA`), which sqlparser does not read: the statement
/// without that last clause, analysed as one that stores its rows (the
/// later REFRESH is judged on its own), when PostgreSQL's tree references
/// what sqlparser's does. `None`: judged as an unparsed statement.
fn table_as_with_data(
    text: &str,
    pg: &pg_tree::PgStatement,
    search_path: &[String],
    catalog: &Catalog,
) -> Option<Analysis> {
    if pg.kind != "CreateTableAsStmt" {
        return None;
    }
    let body = text.trim_end().trim_end_matches(';').trim_end();
    let lower = body.to_ascii_lowercase();
    let last: Vec<&str> = lower.split_ascii_whitespace().rev().take(3).collect();
    let clause_words = match last.as_slice() {
        ["data", "no", "with"] => 3,
        ["data", "with", ..] => 2,
        _ => return None,
    };
    let mut without = body;
    for _ in 0..clause_words {
        without = without.trim_end();
        let cut = without.rfind(|c: char| c.is_ascii_whitespace())?;
        without = &without[..cut];
    }
    let statements = parse_postgres(without).ok()?;
    let [statement] = statements.as_slice() else {
        return None;
    };
    let stores = match statement {
        Statement::CreateView(view) => view.materialized,
        Statement::CreateTable(create) => create.query.is_some(),
        _ => false,
    };
    if !stores {
        return None;
    }
    let mut analysis = analyse_statement(statement, search_path, catalog);
    if let Some(what) = pg_agree::disagreement(statement, &pg.references) {
        analysis.effects.hazard(
            HazardRule::Misunderstood,
            format!("PostgreSQL's parser reads a {what} that pgveil's does not"),
        );
    }
    Some(analysis)
}

/// A statement deeper than pgveil analyses: blocked for restricted roles;
/// passed for unrestricted ones, which need no lineage. It may be DDL for
/// all pgveil knows, so the catalog is refreshed after it.
fn too_deep(depth: usize) -> Analysis {
    let mut analysis = Analysis::new(StatementKind::Unparsed { ddl: true });
    analysis.effects.hazard(
        HazardRule::Unanalysable,
        format!(
            "statement nested too deeply for pgveil to analyse: depth {depth} > limit {}",
            depth::MAX_NESTING
        ),
    );
    analysis
}

/// Analyses one parsed statement.
pub fn analyse_statement(
    statement: &Statement,
    search_path: &[String],
    catalog: &Catalog,
) -> Analysis {
    let mut walker = Walker::new(catalog, search_path);
    let (kind, outputs) = walk_statement(&mut walker, statement, search_path, catalog);
    Analysis {
        kind,
        outputs,
        effects: walker.effects,
        literal_sensitive: walker.literal_sensitive,
        fallback: None,
    }
}

fn names(parts: &ast::ObjectName) -> String {
    parts
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(lineage::ident_name)
        .collect::<Vec<_>>()
        .join(".")
}

fn walk_statement(
    walker: &mut Walker<'_>,
    statement: &Statement,
    search_path: &[String],
    catalog: &Catalog,
) -> (StatementKind, Vec<OutputColumn>) {
    use StatementKind as K;
    match statement {
        Statement::Query(query) => {
            let outputs = walker.query(query);
            // SELECT … INTO creates a table and returns no rows.
            let creates_table =
                matches!(query.body.as_ref(), ast::SetExpr::Select(s) if s.into.is_some());
            if creates_table {
                (K::Ddl, Vec::new())
            } else {
                (K::Query, outputs)
            }
        }
        Statement::Insert(_) => (K::Insert, walker.dml(statement)),
        Statement::Update(_) => (K::Update, walker.dml(statement)),
        Statement::Delete(_) => (K::Delete, walker.dml(statement)),
        Statement::Merge(_) => (K::Merge, walker.dml(statement)),
        Statement::Copy {
            source, to, target, ..
        } => {
            if !to {
                if let ast::CopySource::Table {
                    table_name,
                    columns,
                } = source
                {
                    let columns: Vec<String> = columns.iter().map(lineage::ident_name).collect();
                    walker.copy_into(&lineage::object_name_parts(table_name), &columns);
                }
                return (K::CopyFrom, Vec::new());
            }
            let outputs = walker.copy_source(source);
            let to_client = matches!(target, ast::CopyTarget::Stdout);
            if !to_client {
                for output in &outputs {
                    for (column, flow) in &output.sources {
                        walker.effects.sinks.insert(lineage::Sink {
                            source: column.clone(),
                            flow: *flow,
                            target: None,
                            via: "COPY TO a file or program",
                        });
                    }
                }
                return (K::CopyTo { to_client }, Vec::new());
            }
            (K::CopyTo { to_client }, outputs)
        }
        Statement::Declare { stmts, .. } => match stmts.as_slice() {
            [declare] => match (&declare.for_query, declare.names.first()) {
                (Some(query), Some(name)) => (
                    K::DeclareCursor {
                        name: lineage::ident_name(name),
                    },
                    walker.query(query),
                ),
                _ => {
                    walker
                        .effects
                        .hazard(HazardRule::Unanalysable, "DECLARE form");
                    (K::Other, Vec::new())
                }
            },
            _ => {
                walker
                    .effects
                    .hazard(HazardRule::Unanalysable, "DECLARE form");
                (K::Other, Vec::new())
            }
        },
        Statement::Fetch { name, .. } => (
            K::Fetch {
                cursor: lineage::ident_name(name),
            },
            Vec::new(),
        ),
        Statement::Close { cursor } => (
            K::Close {
                cursor: match cursor {
                    ast::CloseCursor::All => None,
                    ast::CloseCursor::Specific { name } => Some(lineage::ident_name(name)),
                },
            },
            Vec::new(),
        ),
        Statement::Prepare {
            name, statement, ..
        } => {
            let (_, outputs) = walk_statement(walker, statement, search_path, catalog);
            (
                K::Prepare {
                    name: lineage::ident_name(name),
                },
                outputs,
            )
        }
        Statement::Execute {
            name,
            parameters,
            immediate,
            using,
            ..
        } => {
            if *immediate || !using.is_empty() {
                walker
                    .effects
                    .hazard(HazardRule::DynamicSql, "EXECUTE IMMEDIATE");
            }
            // Parameters flow into whatever the prepared statement writes.
            for p in parameters {
                let sources = walker.expr(p);
                for (column, flow) in sources {
                    walker.effects.sinks.insert(lineage::Sink {
                        source: column,
                        flow,
                        target: None,
                        via: "EXECUTE parameter",
                    });
                }
            }
            match name {
                Some(name) => (K::Execute { name: names(name) }, Vec::new()),
                None => {
                    walker.effects.hazard(HazardRule::DynamicSql, "EXECUTE");
                    (K::Other, Vec::new())
                }
            }
        }
        Statement::Deallocate { name, .. } => {
            let name = lineage::ident_name(name);
            (
                K::Deallocate {
                    name: (name != "all").then_some(name),
                },
                Vec::new(),
            )
        }
        Statement::Explain {
            statement,
            analyze,
            options,
            ..
        } => {
            // EXPLAIN [ANALYZE] runs or plans the statement: its filters and
            // writes count, its rows are not returned.
            let (_, outputs) = walk_statement(walker, statement, search_path, catalog);
            // ANALYZE computes every output without returning it: whether
            // it succeeds (`1/(substr(id_number, 7, 1)::int - 1)`) tells
            // something about the values, so computed outputs count as uses.
            let analyzes = *analyze
                || options.iter().flatten().any(|o| {
                    lineage::ident_name(&o.name).starts_with("analy")
                        && !o.arg.as_ref().is_some_and(|a| {
                            matches!(
                                a.to_string().to_lowercase().as_str(),
                                "false" | "off" | "0" | "'false'" | "'off'" | "'0'"
                            )
                        })
                });
            if analyzes {
                walker.use_computed_outputs(outputs.iter().map(|o| &o.sources));
            }
            (
                K::Explain,
                vec![OutputColumn {
                    name: "QUERY PLAN".into(),
                    sources: Sources::new(),
                    builtin_type: None,
                    shape: None,
                    name_known: true,
                }],
            )
        }
        Statement::Set(set) => walk_set(walker, set),
        Statement::Reset(reset) => {
            let rereads = match &reset.reset {
                ast::Reset::ALL | ast::Reset::SessionAuthorization => true,
                ast::Reset::ConfigurationParameter(name) => {
                    resolves_search_path(&names(name).to_lowercase())
                }
            };
            if rereads {
                (K::SetSearchPath { schemas: None }, Vec::new())
            } else {
                (K::Setting, Vec::new())
            }
        }
        Statement::ShowVariable { .. } => (K::Show, Vec::new()),
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => (K::Transaction, Vec::new()),
        Statement::Call(function) => {
            let _ = walker.expr(&ast::Expr::Function(function.clone()));
            (K::Call, Vec::new())
        }
        Statement::NOTIFY { .. } => (K::Notify, Vec::new()),
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => (K::Listen, Vec::new()),
        // DISCARD ALL includes RESET ALL and SET SESSION AUTHORIZATION DEFAULT.
        Statement::Discard {
            object_type: ast::DiscardObject::ALL,
        } => (K::SetSearchPath { schemas: None }, Vec::new()),
        Statement::Discard { .. } => (K::Discard, Vec::new()),
        Statement::CreateTable(create) => {
            if create.temporary {
                let bare = names(&create.name);
                let bare = bare.rsplit('.').next().unwrap_or_default();
                temp_shadow_check(walker, bare, catalog, search_path, create.query.is_none());
            }
            if let Some(query) = &create.query {
                let outputs = walker.query(query);
                for output in &outputs {
                    for (column, flow) in &output.sources {
                        walker.effects.sinks.insert(lineage::Sink {
                            source: column.clone(),
                            flow: *flow,
                            target: None,
                            via: "CREATE TABLE AS",
                        });
                    }
                }
            }
            // Defaults, checks and generated columns run later, inside
            // other roles' writes too.
            attached_functions(
                walker,
                &create.columns,
                "a column default, check or generated column",
            );
            attached_functions(walker, &create.constraints, "a table constraint");
            generated_copies(walker, create, search_path);
            (K::Ddl, Vec::new())
        }
        Statement::CreateView(view) => {
            if view.temporary {
                let bare = names(&view.name);
                let bare = bare.rsplit('.').next().unwrap_or_default();
                temp_shadow_check(walker, bare, catalog, search_path, false);
            }
            // The view is analysed again whenever it is read; here only its
            // filters count (a view is a stored oracle otherwise). A
            // materialized view stores its rows, like CREATE TABLE AS.
            let outputs = walker.query(&view.query);
            if view.materialized {
                walker.store_outputs(&outputs, "CREATE MATERIALIZED VIEW");
            }
            (K::Ddl, Vec::new())
        }
        Statement::AlterTable(alter) => {
            let parts = lineage::object_name_parts(&alter.name);
            if alter.if_exists && walker.catalog_relation(&parts).is_none() {
                walker.effects.absent.insert(parts.join("."));
                return (K::Ddl, Vec::new());
            }
            walker.alter_table(&alter.name, &alter.operations);
            for operation in &alter.operations {
                match operation {
                    ast::AlterTableOperation::RenameColumn {
                        old_column_name, ..
                    } => walker.rename(&alter.name, Some(old_column_name)),
                    ast::AlterTableOperation::RenameTable { .. } => {
                        walker.rename(&alter.name, None);
                    }
                    _ => {}
                }
            }
            (K::Ddl, Vec::new())
        }
        Statement::CreatePolicy(policy) => {
            walker.policy_conditions(
                &policy.table_name,
                &[policy.using.as_ref(), policy.with_check.as_ref()],
            );
            (K::Ddl, Vec::new())
        }
        Statement::AlterPolicy(policy) => {
            match &policy.operation {
                ast::AlterPolicyOperation::Apply {
                    using, with_check, ..
                } => walker
                    .policy_conditions(&policy.table_name, &[using.as_ref(), with_check.as_ref()]),
                ast::AlterPolicyOperation::Rename { .. } => {
                    walker.ddl_on_table(&policy.table_name, policy)
                }
            }
            (K::Ddl, Vec::new())
        }
        Statement::CreateIndex(index) => {
            walker.create_index(index);
            attached_functions(walker, &index.columns, "an index expression");
            (K::Ddl, Vec::new())
        }
        // A definition runs nothing: calls of a function that is neither
        // built in nor listed under functions.allow are refused where they
        // are made. Redefining an allowed one is refused (plan).
        Statement::CreateFunction(function) => {
            define_function(walker, &function.name, search_path);
            (K::Ddl, Vec::new())
        }
        Statement::CreateProcedure { name, .. } => {
            define_function(walker, name, search_path);
            (K::Ddl, Vec::new())
        }
        Statement::CreateAggregate(aggregate) => {
            define_function(walker, &aggregate.name, search_path);
            (K::Ddl, Vec::new())
        }
        Statement::AlterFunction(alter) => {
            define_function(walker, &alter.function.name, search_path);
            match &alter.operation {
                ast::AlterFunctionOperation::RenameTo { new_name } => {
                    let renamed = ast::ObjectName(
                        alter
                            .function
                            .name
                            .0
                            .iter()
                            .take(alter.function.name.0.len().saturating_sub(1))
                            .cloned()
                            .chain(std::iter::once(ast::ObjectNamePart::Identifier(
                                new_name.clone(),
                            )))
                            .collect(),
                    );
                    define_function(walker, &renamed, search_path);
                }
                ast::AlterFunctionOperation::SetSchema { schema_name } => {
                    let moved = format!(
                        "{}.{}",
                        names(schema_name),
                        alter
                            .function
                            .name
                            .0
                            .last()
                            .and_then(|p| p.as_ident())
                            .map(lineage::ident_name)
                            .unwrap_or_default()
                    );
                    let (schema, name) = moved.split_once('.').unwrap_or_default();
                    walker
                        .effects
                        .defined_functions
                        .insert((schema.to_owned(), name.to_owned()));
                }
                _ => {}
            }
            (K::Ddl, Vec::new())
        }
        // Each of these makes the server run a function inside statements
        // that never name it: only built-in or allowed functions.
        Statement::CreateTrigger(trigger) => {
            if let Some(body) = &trigger.exec_body {
                attach_function(walker, &body.func_desc.name);
            }
            attached_functions(walker, &trigger.condition, "a trigger condition");
            (K::Ddl, Vec::new())
        }
        Statement::CreateOperator(operator) => {
            attach_function(walker, &operator.function);
            (K::Ddl, Vec::new())
        }
        Statement::CreateDomain(domain) => {
            attached_functions(walker, &domain.default, "a domain default");
            attached_functions(walker, &domain.constraints, "a domain check");
            (K::Ddl, Vec::new())
        }
        Statement::CreateType { .. } => (K::Ddl, Vec::new()),
        Statement::CreateRule(_) => {
            walker.effects.hazard(
                HazardRule::ServerCode,
                "a rule runs its actions inside other statements, where pgveil cannot follow them",
            );
            (K::Ddl, Vec::new())
        }
        // TRUNCATE empties tables: a write that moves no value anywhere.
        Statement::Truncate(_) => (K::Delete, Vec::new()),
        Statement::Drop { .. }
        | Statement::DropFunction(_)
        | Statement::DropTrigger(_)
        | Statement::DropDomain(_)
        | Statement::DropPolicy(_)
        | Statement::DropRule(_)
        | Statement::DropOperator(_)
        | Statement::DropOperatorClass(_)
        | Statement::DropOperatorFamily(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateSequence { .. }
        | Statement::CreateExtension(_)
        | Statement::DropExtension(_)
        | Statement::CreateRole(_)
        | Statement::CreateUser(_)
        | Statement::AlterUser(_)
        | Statement::AlterDefaultPrivileges(_)
        | Statement::CreateOperatorClass(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::AlterOperator(_)
        | Statement::AlterOperatorClass(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::CreateTextSearch(_)
        | Statement::AlterTextSearch(_)
        | Statement::CreateCollation(_)
        | Statement::AlterCollation(_)
        | Statement::AlterTrigger(_)
        | Statement::AlterView(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterRole { .. }
        | Statement::AlterSchema(_)
        | Statement::AlterType(_)
        | Statement::Comment { .. }
        | Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::GrantRole(_)
        | Statement::RevokeRole(_)
        | Statement::DropProcedure { .. } => {
            // Schema changes that move no data; any function they name
            // (an operator class's support functions, say) must still be
            // one a role may run.
            attached_functions(walker, statement, "a schema object");
            (K::Ddl, Vec::new())
        }
        // A new, empty database (from template1 or template0): no data
        // moves. A copy of another database (TEMPLATE, which sqlparser
        // does not read) goes to PostgreSQL's tree and is refused there.
        Statement::CreateDatabase {
            location: None,
            managed_location: None,
            clone: None,
            ..
        } => (K::Ddl, Vec::new()),
        Statement::RefreshMaterializedView(refresh) => {
            walker.refresh_materialized_view(&refresh.name);
            (K::Ddl, Vec::new())
        }
        Statement::Lock(_) | Statement::Analyze(_) | Statement::Vacuum(_) => (K::Other, Vec::new()),
        other => {
            walker.effects.hazard(
                HazardRule::Unanalysable,
                format!(
                    "statement kind not modelled: {}",
                    first_words(&other.to_string())
                ),
            );
            (K::Other, Vec::new())
        }
    }
}

/// A function the server will run from a path pgveil never sees (a trigger,
/// an operator): it must be built in or allowed, and known to the catalog.
fn attach_function(walker: &mut Walker<'_>, name: &ast::ObjectName) {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(lineage::ident_name)
        .collect();
    let _ = walker.check_function(&parts, None);
}

/// Every function called inside `node` (defaults, checks, generated columns,
/// index expressions …) runs later without a statement naming it.
fn attached_functions<T: ast::Visit>(walker: &mut Walker<'_>, node: &T, what: &str) {
    #[derive(Default)]
    struct Calls {
        functions: Vec<Vec<String>>,
        has_query: bool,
    }
    impl ast::Visitor for Calls {
        type Break = ();
        fn pre_visit_query(&mut self, _query: &ast::Query) -> std::ops::ControlFlow<()> {
            self.has_query = true;
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &ast::Expr) -> std::ops::ControlFlow<()> {
            if let ast::Expr::Function(f) = expr {
                self.functions.push(
                    f.name
                        .0
                        .iter()
                        .filter_map(|p| p.as_ident())
                        .map(lineage::ident_name)
                        .collect(),
                );
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut calls = Calls::default();
    let _ = node.visit(&mut calls);
    for parts in calls.functions {
        let _ = walker.check_function(&parts, None);
    }
    if calls.has_query {
        walker
            .effects
            .hazard(HazardRule::Unanalysable, format!("subquery inside {what}"));
    }
}

/// A generated column copies the columns its expression reads into a new
/// column: a protected column of a table the policy names before it exists
/// would be laundered into an unprotected one.
fn generated_copies(walker: &mut Walker<'_>, create: &ast::CreateTable, search_path: &[String]) {
    let table = names(&create.name);
    let (schemas, bare): (Vec<String>, String) = match table.rsplit_once('.') {
        Some((schema, bare)) => (vec![schema.to_owned()], bare.to_owned()),
        None => (search_path.to_vec(), table.clone()),
    };
    for column in &create.columns {
        for option in &column.options {
            let ast::ColumnOption::Generated {
                generation_expr: Some(expr),
                ..
            } = &option.option
            else {
                continue;
            };
            let mut read: Vec<String> = Vec::new();
            let _ = ast::visit_expressions(expr, |e| {
                match e {
                    ast::Expr::Identifier(ident) => read.push(lineage::ident_name(ident)),
                    ast::Expr::CompoundIdentifier(idents) => {
                        if let Some(last) = idents.last() {
                            read.push(lineage::ident_name(last))
                        }
                    }
                    _ => {}
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
            for source in read {
                for schema in &schemas {
                    walker.effects.sinks.insert(lineage::Sink {
                        source: policy_view::QualifiedColumn {
                            schema: schema.clone(),
                            table: bare.clone(),
                            column: source.clone(),
                        },
                        flow: Flow::Derived,
                        target: None,
                        via: "a generated column",
                    });
                }
            }
        }
    }
}

/// Records a function a statement creates, replaces, renames or moves.
/// Unqualified, it lands in the first schema of the search_path that
/// exists: every schema of the path counts.
fn define_function(walker: &mut Walker<'_>, name: &ast::ObjectName, search_path: &[String]) {
    let full = names(name);
    let defined: Vec<(String, String)> = match full.rsplit_once('.') {
        Some((schema, bare)) => vec![(schema.to_owned(), bare.to_owned())],
        None => search_path
            .iter()
            .map(|schema| (schema.clone(), full.clone()))
            .collect(),
    };
    walker.effects.defined_functions.extend(defined);
}

/// Temporary relations are searched before the search_path, so a temporary
/// `customers` would silently replace the one pgveil's catalog resolves
/// until the session reads its temporary relations again. A new table
/// without rows (`empty`) can hold only what later writes put in it, judged
/// as writes to the relation it shadows: harmless unless that one carries
/// protected columns (plan). Rows or a definition of its own are refused.
fn temp_shadow_check(
    walker: &mut Walker<'_>,
    bare: &str,
    catalog: &Catalog,
    search_path: &[String],
    empty: bool,
) {
    let shadowed = catalog
        .resolve_relation(search_path, bare)
        .filter(|r| r.schema != "pg_temp");
    if let Some(shadowed) = shadowed {
        if empty {
            walker
                .effects
                .shadows
                .insert((shadowed.schema.clone(), shadowed.name.clone()));
            return;
        }
        walker.effects.hazard(
            HazardRule::Unanalysable,
            format!(
                "temporary {bare} would shadow {}.{}",
                shadowed.schema, shadowed.name
            ),
        );
    }
}

/// A statement that would change role memberships or role names, which
/// decide the policy rules a login matches (see
/// [`pg_tree::role_matching_change`]): a masked role with CREATEROLE, or
/// ADMIN OPTION on a role a rule shows clear text to, could otherwise make
/// itself or a new login match that rule.
fn role_matching(pg: &pg_tree::PgStatement, effects: &mut lineage::Effects) {
    if let Some(what) = pg.role_matching_change {
        effects.hazard(
            HazardRule::RoleMatching,
            format!(
                "this statement {what}, which can change the policy rules a login matches \
                 (and so what it sees in clear)"
            ),
        );
    }
}

/// The one decision point for type names (issue 11): PostgreSQL looks an
/// unqualified type name up in the session's temporary schema before
/// pg_catalog, and in every schema the search_path lists before an explicit
/// pg_catalog; every table, view, composite, enum, range, multirange and
/// domain owns a type of its name (and an array type `_name`). A temporary
/// `text` table or `int8` domain would turn `phone::text` from a copy into
/// input of the attacker's type, running its checks on the clear value, and
/// pgveil's catalog never sees temporary types. So any statement that would
/// create, rename or move such an object to the name of a pg_catalog type
/// in a place searched before pg_catalog is refused, whichever parser reads
/// it (the names come from PostgreSQL's tree).
fn builtin_type_shadow(
    pg: &pg_tree::PgStatement,
    search_path: &[String],
    effects: &mut lineage::Effects,
) {
    let catalog_at = search_path.iter().position(|s| s == "pg_catalog");
    let listed_before_catalog =
        |schema: &str| catalog_at.is_some_and(|c| search_path[..c].iter().any(|s| s == schema));
    let searched_first =
        |schema: &str| schema.starts_with("pg_temp") || listed_before_catalog(schema);
    for new in &pg.new_type_names {
        let place = match &new.schema {
            _ if new.temporary => Some("the temporary schema".to_owned()),
            Some(schema) => searched_first(schema).then(|| format!("schema {schema}")),
            None if new.may_be_temporary => {
                Some("the temporary schema (where PostgreSQL may put or find it)".to_owned())
            }
            // Created in the first schema of the path that exists.
            None => (search_path
                .first()
                .is_some_and(|s| s.starts_with("pg_temp"))
                || catalog_at.is_some_and(|c| c > 0))
            .then(|| "a schema the search_path lists before pg_catalog".to_owned()),
        };
        let Some(place) = place else { continue };
        let shadowed = match &new.name {
            Some(name) if builtins::is_builtin_type(name) => format!("the built-in type {name}"),
            Some(_) => continue,
            None => "built-in types".to_owned(),
        };
        effects.hazard(
            HazardRule::BuiltinTypeShadow,
            format!(
                "a type in {place} is found before pg_catalog's, so this would replace {shadowed} \
                 in casts; choose another name"
            ),
        );
    }
}

fn walk_set(walker: &mut Walker<'_>, set: &ast::Set) -> (StatementKind, Vec<OutputColumn>) {
    let assignments: Vec<(String, &[ast::Expr])> = match set {
        ast::Set::SingleAssignment {
            variable, values, ..
        } => vec![(names(variable), values.as_slice())],
        ast::Set::MultipleAssignments { assignments } => assignments
            .iter()
            .map(|a| (names(&a.name), std::slice::from_ref(&a.value)))
            .collect(),
        ast::Set::ParenthesizedAssignments { variables, values } => variables
            .iter()
            .map(|v| (names(v), values.as_slice()))
            .collect(),
        // The role "$user" in search_path stands for changes; SET NAMES
        // sets client_encoding.
        ast::Set::SetRole { .. }
        | ast::Set::SetSessionAuthorization(_)
        | ast::Set::SetNames { .. }
        | ast::Set::SetNamesDefault {} => {
            return (StatementKind::SetSearchPath { schemas: None }, Vec::new());
        }
        _ => Vec::new(),
    };
    for (variable, values) in assignments {
        if variable == "search_path" {
            let schemas: Vec<String> = values
                .iter()
                .flat_map(|v| match v {
                    ast::Expr::Identifier(ident) => vec![lineage::ident_name(ident)],
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s
                            .split(',')
                            .map(|p| p.trim().trim_matches('"').to_owned())
                            .collect(),
                        _ => vec![v.to_string()],
                    },
                    other => vec![other.to_string()],
                })
                .collect();
            // Allowed: the session reads the server's new value before it
            // plans the next statement.
            walker.literal_sensitive = true;
            let schemas =
                (!schemas.iter().any(|s| s.eq_ignore_ascii_case("default"))).then_some(schemas);
            return (StatementKind::SetSearchPath { schemas }, Vec::new());
        }
        if resolves_search_path(&variable) {
            return (StatementKind::SetSearchPath { schemas: None }, Vec::new());
        }
        for value in values {
            // Values are literals or names; an expression here is unusual.
            if !matches!(value, ast::Expr::Value(_) | ast::Expr::Identifier(_)) {
                let _ = walker.expr(value);
            }
        }
    }
    (StatementKind::Setting, Vec::new())
}

/// Settings that change how the server resolves unqualified names besides
/// search_path itself (the role `"$user"` stands for), or how it reads a
/// statement's text (where a string ends, how bytes form characters).
/// After a change the session reads them all again (the server reports
/// the latter only with its next ReadyForQuery, after the pipeline's next
/// statements are read).
pub(crate) fn resolves_search_path(setting: &str) -> bool {
    matches!(
        setting.trim(),
        "search_path"
            | "role"
            | "session_authorization"
            | "standard_conforming_strings"
            | "client_encoding"
            | "names"
            | "backslash_quote"
    )
}

fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
