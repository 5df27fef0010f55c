//! PostgreSQL's own parse tree (libpg_query), for everything where reading a
//! statement differently from the server would be a hole: where a string of
//! statements splits, what an unparsable statement references, and the
//! check that sqlparser's tree mentions what the server's tree mentions.
//!
//! The lexing settings that change where tokens end
//! (`standard_conforming_strings`) are passed to the parser exactly as the
//! server has them. `backslash_quote` is not tracked: it only decides
//! whether the server *rejects* `\'` inside a string; where the server
//! accepts the text, it reads it as with `backslash_quote = on`, which is
//! what the parser here assumes. So it can turn a statement into an error,
//! never into a different statement.

use std::collections::BTreeSet;
use std::fmt;

use serde::ser::{self, Serialize};

/// The server settings that change how statement text is lexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LexSettings {
    /// `standard_conforming_strings`: off, a backslash escapes inside
    /// every `'…'` string, as inside `E'…'`.
    pub standard_conforming_strings: bool,
}

impl Default for LexSettings {
    fn default() -> Self {
        LexSettings {
            standard_conforming_strings: true,
        }
    }
}

impl LexSettings {
    fn parser_options(self) -> pg_query::ParserOptions {
        if self.standard_conforming_strings {
            pg_query::ParserOptions::DEFAULT
        } else {
            pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS
        }
    }
}

/// What PostgreSQL's tree of one statement mentions, names folded as the
/// server folds them (quoted names as written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// `[catalog.][schema.]relation` of every RangeVar (FROM items, DML
    /// and DDL targets, CTE references).
    pub relations: BTreeSet<Vec<String>>,
    /// Every ColumnRef's fields, `*` for a star.
    pub columns: BTreeSet<Vec<String>>,
    /// Every FuncCall's name.
    pub functions: BTreeSet<Vec<String>>,
    /// Every TypeName's name (`pg_catalog.int4` for SQL-standard spellings).
    pub types: BTreeSet<Vec<String>>,
    /// The text of every String node: string constants, and names in
    /// lists (USING, column aliases, options).
    pub strings: Vec<String>,
    /// Node kinds of the tree (`SelectStmt`, `IntoClause`, …).
    pub kinds: BTreeSet<&'static str>,
    /// Names of the WITH queries the statement defines (a RangeVar may
    /// name one instead of a relation).
    pub cte_names: BTreeSet<String>,
}

/// One statement as PostgreSQL splits and reads it.
#[derive(Debug, Clone)]
pub struct PgStatement {
    /// Byte range of the statement in the string given to [`parse`].
    pub range: std::ops::Range<usize>,
    /// The statement's top node kind (`SelectStmt`, `CopyStmt`, …).
    pub kind: &'static str,
    /// A `MOVE` (a FetchStmt with `ismove`): it repositions a cursor and
    /// returns only a row count, never a row.
    pub moves_cursor: bool,
    /// The cursor a `FETCH` (not `MOVE`) reads, as PostgreSQL names it:
    /// `FETCH c`, `FETCH NEXT c` and `FETCH 5 c`, which sqlparser does not
    /// read without FROM or IN.
    pub fetches_cursor: Option<String>,
    pub references: References,
    /// Type names the statement creates or gives (see [`NewTypeName`]).
    pub new_type_names: Vec<NewTypeName>,
    /// How the statement changes which roles a login belongs to, or a
    /// role's name (see [`role_matching_change`]).
    pub role_matching_change: Option<&'static str>,
    /// The table of an `ALTER TABLE` whose every command adds, changes or
    /// drops a column's identity (see [`identity_alter`]).
    pub identity_alter: Option<Vec<String>>,
    /// How it relates to a transaction block (see [`BlockUse`]).
    pub block_use: BlockUse,
    /// A `COPY … FROM STDIN`: a write of the rows the client sends.
    pub copy_from_stdin: bool,
    /// The table a `COPY … FROM` writes into (`[schema.]name` as written)
    /// and the columns it lists (none: every column).
    pub copy_into: Option<(Vec<String>, Vec<String>)>,
    /// A `DO` block of PL/pgSQL that only raises constant messages (see
    /// [`raise_only`]).
    pub raise_only: bool,
    /// Functions, procedures and aggregates the statement creates, renames
    /// something to or moves into a schema: (schema as written, `None`: the
    /// search_path decides; name).
    pub defined_functions: Vec<(Option<String>, String)>,
    /// The function a `CREATE TRIGGER` makes the server run inside other
    /// statements' writes, as written.
    pub trigger_function: Option<Vec<String>>,
    /// The function a `CREATE CONVERSION` registers for converting text
    /// between encodings, as written.
    pub conversion_function: Option<Vec<String>>,
    /// An `ALTER DOMAIN` that makes the server check every stored value of
    /// the domain (ADD CONSTRAINT, SET NOT NULL, VALIDATE CONSTRAINT): it
    /// fails iff one violates the check.
    pub checks_domain_values: bool,
    /// The setting a `SET`/`RESET` names (`role`, `search_path` …; None for
    /// any other statement and for `RESET ALL`).
    pub setting: Option<String>,
}

/// True for a `DO` block whose PL/pgSQL body (read by PostgreSQL's own
/// PL/pgSQL parser) is one block of `RAISE level 'text' [USING option =
/// 'text', …]` statements and nothing else: no variables, parameters,
/// expressions, queries or exception handlers. Such a block reads nothing
/// and can say only what its text says (drivers' tests raise notices and
/// errors so).
fn raise_only(node: &pg_query::NodeEnum) -> bool {
    use pg_query::NodeEnum as N;
    let N::DoStmt(d) = node else { return false };
    let (mut body, mut language) = (None, None);
    for arg in &d.args {
        let Some(N::DefElem(e)) = arg.node.as_ref() else {
            return false;
        };
        let value = match e.arg.as_ref().and_then(|a| a.node.as_ref()) {
            Some(N::String(s)) => s.sval.as_str(),
            _ => return false,
        };
        match e.defname.as_str() {
            "as" => body = Some(value),
            "language" => language = Some(value),
            _ => return false,
        }
    }
    let Some(body) = body else { return false };
    if !language.is_none_or(|l| l.eq_ignore_ascii_case("plpgsql")) || body.contains("$pgveil_do") {
        return false;
    }
    let function = format!(
        "CREATE FUNCTION pgveil_do() RETURNS void LANGUAGE plpgsql AS $pgveil_do${body}$pgveil_do$"
    );
    match pg_query::parse_plpgsql(&function) {
        Ok(tree) => raises_only(&tree),
        Err(_) => false,
    }
}

/// The check of [`raise_only`] on libpg_query's PL/pgSQL tree (JSON).
fn raises_only(tree: &serde_json::Value) -> bool {
    use serde_json::Value;
    let only_keys = |v: &Value, keys: &[&str]| {
        v.as_object()
            .is_some_and(|o| o.keys().all(|k| keys.contains(&k.as_str())))
    };
    let [function] = tree.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return false;
    };
    let Some(function) = function.get("PLpgSQL_function") else {
        return false;
    };
    // Only the implicit `found`: no declared variables.
    let datums = function.get("datums").and_then(Value::as_array);
    let only_found = datums.is_some_and(|d| {
        d.len() == 1 && d[0].pointer("/PLpgSQL_var/refname") == Some(&Value::from("found"))
    });
    let Some(block) = function.pointer("/action/PLpgSQL_stmt_block") else {
        return false;
    };
    if !only_found
        || !only_keys(block, &["body", "lineno"])
        || !only_keys(function, &["action", "datums"])
    {
        return false;
    }
    let constant = |expr: &Value| {
        let Some(query) = expr.pointer("/PLpgSQL_expr/query").and_then(Value::as_str) else {
            return false;
        };
        // One standard string literal: quotes only at the ends, doubled inside.
        query.len() >= 2
            && query.starts_with('\'')
            && query.ends_with('\'')
            && !query[1..query.len() - 1].replace("''", "").contains('\'')
    };
    let body = block.get("body").and_then(Value::as_array);
    body.is_some_and(|statements| {
        statements.iter().all(|statement| {
            if let Some(ret) = statement.get("PLpgSQL_stmt_return") {
                // The RETURN the parser adds at the end.
                return only_keys(ret, &[]) && only_keys(statement, &["PLpgSQL_stmt_return"]);
            }
            let Some(raise) = statement.get("PLpgSQL_stmt_raise") else {
                return false;
            };
            let options = raise
                .get("options")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            only_keys(statement, &["PLpgSQL_stmt_raise"])
                && only_keys(raise, &["elog_level", "lineno", "message", "options"])
                && raise.get("message").is_some()
                && options.iter().all(|o| {
                    o.get("PLpgSQL_raise_option")
                        .and_then(|o| o.get("expr"))
                        .is_some_and(constant)
                })
        })
    })
}

/// How a statement relates to a transaction block: what decides whether it
/// runs alike as part of one simple Query of several statements (an
/// implicit transaction block) and as one Execute of an extended-protocol
/// pipeline (one transaction up to the Sync, but not a block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockUse {
    /// Runs alike either way.
    Any,
    /// `BEGIN` / `START TRANSACTION`: opens a block either way.
    Begins,
    /// `COMMIT` / `ROLLBACK` (`END`, `ABORT`): ends a block; outside one,
    /// only an implicit block ends it without a warning.
    Ends,
    /// Needs a block (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`, `DECLARE`,
    /// `LOCK`, `SET LOCAL`, `SET TRANSACTION`): an implicit block is one, a
    /// pipeline outside `BEGIN` is not.
    NeedsBlock,
    /// Runs differently or not at all in a pipeline: refuses every
    /// transaction block (VACUUM, CREATE DATABASE, `… CONCURRENTLY` …),
    /// reads from the client (`COPY FROM STDIN`), ends a transaction in a
    /// special way (`PREPARE TRANSACTION`), or has `$n` parameters (an
    /// error of another kind through Parse and Bind).
    Unsplittable,
}

/// `CURSOR_OPT_BINARY` of PostgreSQL's parsenodes.h.
const CURSOR_OPT_BINARY: i32 = 0x0001;

/// The [`BlockUse`] of one statement's tree; `kinds` are its node kinds.
fn block_use(node: &pg_query::NodeEnum, kinds: &BTreeSet<&'static str>) -> BlockUse {
    use pg_query::protobuf::{TransactionStmtKind as T, VariableSetKind};
    use pg_query::NodeEnum as N;
    if kinds.contains("ParamRef") {
        return BlockUse::Unsplittable;
    }
    match node {
        N::TransactionStmt(t) => match t.kind() {
            T::TransStmtBegin | T::TransStmtStart => BlockUse::Begins,
            T::TransStmtCommit | T::TransStmtRollback => BlockUse::Ends,
            T::TransStmtSavepoint | T::TransStmtRelease | T::TransStmtRollbackTo => {
                BlockUse::NeedsBlock
            }
            _ => BlockUse::Unsplittable,
        },
        // A BINARY cursor's FETCH answers in binary only to a simple Query.
        N::DeclareCursorStmt(d) if d.options & CURSOR_OPT_BINARY != 0 => BlockUse::Unsplittable,
        // SET CONSTRAINTS warns outside a block.
        N::DeclareCursorStmt(_) | N::LockStmt(_) | N::ConstraintsSetStmt(_) => BlockUse::NeedsBlock,
        N::VariableSetStmt(v) if v.is_local || v.kind() == VariableSetKind::VarSetMulti => {
            BlockUse::NeedsBlock
        }
        N::CopyStmt(c) if c.is_from && c.filename.is_empty() => BlockUse::Unsplittable,
        // VACUUM refuses every block. ANALYZE of several tables (or all)
        // and CALL of a procedure that commits run their own transactions
        // where no block is open: a pipeline outside BEGIN is none in
        // PostgreSQL 15, so their work would outlive a later error.
        N::VacuumStmt(_) | N::CallStmt(_) => BlockUse::Unsplittable,
        N::IndexStmt(i) if i.concurrent => BlockUse::Unsplittable,
        N::DropStmt(d) if d.concurrent => BlockUse::Unsplittable,
        // DETACH PARTITION … CONCURRENTLY; ATTACH/DETACH alike, to keep it short.
        N::AlterTableStmt(_) if kinds.contains("PartitionCmd") => BlockUse::Unsplittable,
        N::ReindexStmt(_)
        | N::ClusterStmt(_)
        | N::CreatedbStmt(_)
        | N::DropdbStmt(_)
        | N::AlterDatabaseStmt(_)
        | N::CreateTableSpaceStmt(_)
        | N::DropTableSpaceStmt(_)
        | N::AlterSystemStmt(_)
        | N::CreateSubscriptionStmt(_)
        | N::AlterSubscriptionStmt(_)
        | N::DropSubscriptionStmt(_)
        | N::DiscardStmt(_) => BlockUse::Unsplittable,
        _ => BlockUse::Any,
    }
}

/// A name the statement gives to something that owns a `pg_type` row: a
/// table's, view's or materialized view's row type, a composite, enum,
/// range, multirange, domain or base type, and the array type of each
/// (`_name`). Sequences own none in PostgreSQL 15.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTypeName {
    /// The schema as written; `None`: the search_path decides.
    pub schema: Option<String>,
    /// `None` when the statement does not say which names it creates
    /// (IMPORT FOREIGN SCHEMA).
    pub name: Option<String>,
    /// Certainly in the session's temporary schema (TEMP).
    pub temporary: bool,
    /// Unqualified, and PostgreSQL may put it in (or find it in) pg_temp:
    /// a view over a temporary table becomes temporary by itself, and a
    /// rename finds its object through the search_path, pg_temp first.
    pub may_be_temporary: bool,
}

/// Why PostgreSQL's tree is not available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgParseError {
    /// PostgreSQL's parser rejects the text (the server will too).
    Syntax(String),
    /// Nested deeper than libpg_query builds trees (its C stack budget of
    /// 2 MB and protobuf depth of 10,000); the number is pgveil's bound.
    TooDeep(usize),
}

impl fmt::Display for PgParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgParseError::Syntax(m) => write!(f, "PostgreSQL's parser rejects it: {m}"),
            PgParseError::TooDeep(d) => write!(
                f,
                "nested too deeply for PostgreSQL's parse tree to be compared with pgveil's (depth about {d})"
            ),
        }
    }
}

/// Parses `sql` with PostgreSQL's grammar under `settings` and returns each
/// statement with its references. `nesting` is the caller's depth bound of
/// the text (see [`super::depth::nesting_bound`]), for the error message.
pub fn parse(
    sql: &str,
    settings: LexSettings,
    nesting: usize,
) -> Result<Vec<PgStatement>, PgParseError> {
    let result = match on_this_thread(|| parse_here(sql, settings)) {
        // On a stack segment grown by `stacker`, libpg_query cannot size
        // its budget (it measures the thread's own stack) and may have
        // given itself less than on the parser thread: that one decides.
        Some(Err(PgParseError::Syntax(m))) if m.contains("stack depth limit") => None,
        other => other,
    };
    let result = result.unwrap_or_else(|| {
        let sql_owned = sql.to_owned();
        on_parser_thread(move || parse_here(&sql_owned, settings)).unwrap_or_else(|| {
            Err(PgParseError::Syntax(
                "PostgreSQL's parser is unavailable".into(),
            ))
        })
    });
    match result {
        // libpg_query's own bounds (its C stack budget, protobuf depth).
        Err(PgParseError::Syntax(m))
            if m.contains("nested too deeply") || m.contains("stack depth limit") =>
        {
            Err(PgParseError::TooDeep(nesting))
        }
        other => other,
    }
}

/// Stack of the thread libpg_query runs on. libpg_query bounds its own C
/// recursion by the stack of the thread it runs on (at most 2 MB, measured
/// from the thread's own stack, so never on a stack segment grown by
/// `stacker`); decoding, walking and dropping the tree in Rust recurse as
/// deep again with bigger frames, so they get many times that.
const PARSER_STACK: usize = 256 * 1024 * 1024;

/// Stack size for threads that analyse statements (pgveil's tokio
/// workers): the parser thread's, and room for the caller's frames above
/// it. Reserved, not committed: a thread's resident stack is what its
/// deepest statement touched.
pub const ANALYSIS_THREAD_STACK: usize = PARSER_STACK + 16 * 1024 * 1024;

/// Runs `work` on the calling thread when at least the parser thread's
/// stack is left on it (pgveil's workers have [`ANALYSIS_THREAD_STACK`]),
/// which makes it exactly as safe there: handing a statement to the parser
/// thread and back costs two thread wake-ups, several times what parsing
/// an ordinary statement costs. `None`: not enough stack here, or `work`
/// panicked; the caller asks the parser thread.
fn on_this_thread<R>(work: impl FnOnce() -> R) -> Option<R> {
    if stacker::remaining_stack().is_none_or(|left| left < PARSER_STACK) {
        return None;
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok()
}

/// Runs `work` (calls into libpg_query) where libpg_query has the stack it
/// needs: on this thread when it has, else on the parser thread. `None`:
/// neither could run it.
pub(crate) fn on_postgres_stack<R: Send + 'static>(
    work: impl Fn() -> R + Send + Sync + 'static,
) -> Option<R> {
    let work = std::sync::Arc::new(work);
    let here = std::sync::Arc::clone(&work);
    on_this_thread(move || here()).or_else(|| on_parser_thread(move || work()))
}

type ParserJob = Box<dyn FnOnce() + Send>;

/// Runs `work` on the one thread that runs libpg_query; `None` if that
/// thread is gone (then nothing is admitted that needed it).
fn on_parser_thread<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    use std::sync::{mpsc, Mutex, OnceLock};
    static JOBS: OnceLock<Option<Mutex<mpsc::Sender<ParserJob>>>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<ParserJob>();
        std::thread::Builder::new()
            .name("pgveil-pg-parser".into())
            .stack_size(PARSER_STACK)
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let job: ParserJob = Box::new(move || {
        // A panic in one parse is that statement's failure, not the
        // thread's.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok();
        let _ = reply_tx.send(result);
    });
    jobs.as_ref()?.lock().ok()?.send(job).ok()?;
    reply_rx.recv().ok().flatten()
}

fn parse_here(sql: &str, settings: LexSettings) -> Result<Vec<PgStatement>, PgParseError> {
    let parsed = pg_query::parse(sql, settings.parser_options())
        .map_err(|e| PgParseError::Syntax(error_text(e)))?;
    let mut statements = Vec::with_capacity(parsed.protobuf.stmts.len());
    for raw in &parsed.protobuf.stmts {
        let start = usize::try_from(raw.stmt_location)
            .unwrap_or(0)
            .min(sql.len());
        // A length of 0 means "to the end of the string".
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => sql.len(),
            Ok(len) => start.saturating_add(len).min(sql.len()),
        };
        let mut collector = Collector::default();
        let node = raw.stmt.as_ref().and_then(|n| n.node.as_ref());
        let identity = node.and_then(identity_alter);
        let mut new_type_names = Vec::new();
        if let Some(node) = node {
            type_names_given(node, &mut new_type_names);
        }
        let kind = match node {
            Some(node) => {
                // Errors here are the collector's own (it has none).
                let _ = node.serialize(&mut collector);
                collector.top.unwrap_or("unknown")
            }
            None => "empty",
        };
        let moves_cursor = matches!(
            node,
            Some(pg_query::NodeEnum::FetchStmt(f)) if f.ismove
        );
        let fetches_cursor = match node {
            Some(pg_query::NodeEnum::FetchStmt(f)) if !f.ismove => Some(f.portalname.clone()),
            _ => None,
        };
        let identity_alter = identity.filter(|_| only_constant_options(&collector.references));
        let block_use = match node {
            Some(node) => block_use(node, &collector.references.kinds),
            None => BlockUse::Any,
        };
        let copy_from_stdin = matches!(
            node,
            Some(pg_query::NodeEnum::CopyStmt(c)) if c.is_from && !c.is_program && c.filename.is_empty()
        );
        let copy_into = match node {
            Some(pg_query::NodeEnum::CopyStmt(c)) if c.is_from => c.relation.as_ref().map(|r| {
                let mut parts: Vec<String> = Vec::new();
                parts.extend(non_empty(&r.catalogname));
                parts.extend(non_empty(&r.schemaname));
                parts.push(r.relname.clone());
                (parts, names_of(&c.attlist))
            }),
            _ => None,
        };
        let raise_only = node.is_some_and(raise_only);
        let defined_functions = node.map(functions_defined).unwrap_or_default();
        let trigger_function = match node {
            Some(pg_query::NodeEnum::CreateTrigStmt(t)) => Some(names_of(&t.funcname)),
            _ => None,
        };
        let conversion_function = match node {
            Some(pg_query::NodeEnum::CreateConversionStmt(c)) => Some(names_of(&c.func_name)),
            _ => None,
        };
        let checks_domain_values = match node {
            Some(pg_query::NodeEnum::AlterDomainStmt(d)) => match d.subtype.as_str() {
                // DEFAULT, DROP NOT NULL, DROP CONSTRAINT.
                "T" | "N" | "X" => false,
                // ADD CONSTRAINT … NOT VALID checks only later writes.
                "C" => !matches!(
                    d.def.as_ref().and_then(|n| n.node.as_ref()),
                    Some(pg_query::NodeEnum::Constraint(c)) if c.skip_validation
                ),
                _ => true,
            },
            _ => false,
        };
        let setting = match node {
            Some(pg_query::NodeEnum::VariableSetStmt(v)) if !v.name.is_empty() => {
                Some(v.name.to_ascii_lowercase())
            }
            _ => None,
        };
        statements.push(PgStatement {
            role_matching_change: node.and_then(role_matching_change),
            checks_domain_values,
            defined_functions,
            trigger_function,
            conversion_function,
            setting,
            block_use,
            copy_from_stdin,
            copy_into,
            raise_only,
            range: start..end,
            kind,
            moves_cursor,
            fetches_cursor,
            references: collector.references,
            new_type_names,
            identity_alter,
        });
    }
    Ok(statements)
}

/// Policy rules match a login by its role and every role it is a member
/// of, by name. A statement that adds a membership (`GRANT role TO …`,
/// `CREATE ROLE … IN ROLE / ROLE / ADMIN / USER`, `ALTER GROUP … ADD USER`)
/// or renames a role can make a rule that shows clear text match a login
/// it did not match: what it does, `None` for anything else. Removing a
/// membership or a role, or creating a role that belongs to nothing, is not
/// such a change.
pub fn role_matching_change(node: &pg_query::NodeEnum) -> Option<&'static str> {
    use pg_query::NodeEnum as N;
    let adds_members = |options: &[pg_query::protobuf::Node]| {
        options.iter().any(|o| {
            matches!(
                o.node.as_ref(),
                Some(N::DefElem(d))
                    if matches!(d.defname.as_str(), "addroleto" | "rolemembers" | "adminmembers")
            )
        })
    };
    match node {
        N::GrantRoleStmt(g) if g.is_grant => Some("grants a role membership"),
        N::CreateRoleStmt(c) if adds_members(&c.options) => {
            Some("creates a role with role memberships")
        }
        // ALTER GROUP … ADD USER (action +1; DROP USER is -1).
        N::AlterRoleStmt(a) if a.action > 0 && adds_members(&a.options) => {
            Some("adds members to a role")
        }
        N::RenameStmt(r) if r.rename_type == pg_query::protobuf::ObjectType::ObjectRole as i32 => {
            Some("renames a role")
        }
        _ => None,
    }
}

/// The names of String nodes, as written.
fn names_of(items: &[pg_query::protobuf::Node]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i.node.as_ref() {
            Some(pg_query::NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

/// Every function, procedure or aggregate name `node` creates, renames an
/// object to, or moves into a schema (see [`PgStatement::defined_functions`]).
fn functions_defined(node: &pg_query::NodeEnum) -> Vec<(Option<String>, String)> {
    use pg_query::protobuf::ObjectType as O;
    use pg_query::NodeEnum as N;
    let routine = |object: i32| {
        [
            O::ObjectFunction,
            O::ObjectProcedure,
            O::ObjectRoutine,
            O::ObjectAggregate,
        ]
        .iter()
        .any(|o| *o as i32 == object)
    };
    let object_name =
        |object: Option<&pg_query::protobuf::Node>| match object.and_then(|o| o.node.as_ref()) {
            Some(N::ObjectWithArgs(o)) => qualified(&o.objname),
            Some(N::List(list)) => qualified(&list.items),
            _ => (None, None),
        };
    let mut out = Vec::new();
    match node {
        N::CreateFunctionStmt(f) => {
            if let (schema, Some(name)) = qualified(&f.funcname) {
                out.push((schema, name));
            }
        }
        N::DefineStmt(d) if d.kind == O::ObjectAggregate as i32 => {
            if let (schema, Some(name)) = qualified(&d.defnames) {
                out.push((schema, name));
            }
        }
        N::RenameStmt(r) if routine(r.rename_type) => {
            let (schema, _) = object_name(r.object.as_deref());
            out.push((schema, r.newname.clone()));
        }
        N::AlterObjectSchemaStmt(m) if routine(m.object_type) => {
            if let (_, Some(name)) = object_name(m.object.as_deref()) {
                out.push((Some(m.newschema.clone()), name));
            }
        }
        _ => {}
    }
    out
}

/// Every type name `node` creates, renames an object to, or moves into a
/// schema, with the array names PostgreSQL derives (and a range's
/// multirange). One place for all of them, from PostgreSQL's own tree, so
/// that a statement sqlparser cannot read is judged the same way.
fn type_names_given(node: &pg_query::NodeEnum, out: &mut Vec<NewTypeName>) {
    use pg_query::protobuf::ObjectType as O;
    use pg_query::NodeEnum as N;
    let owns_type = |object: i32| {
        [
            O::ObjectTable,
            O::ObjectView,
            O::ObjectMatview,
            O::ObjectForeignTable,
            O::ObjectType,
            O::ObjectDomain,
        ]
        .iter()
        .any(|o| *o as i32 == object)
    };
    match node {
        N::CreateStmt(create) => relation_type(create.relation.as_ref(), false, out),
        N::CreateForeignTableStmt(create) => relation_type(
            create.base_stmt.as_ref().and_then(|b| b.relation.as_ref()),
            false,
            out,
        ),
        N::ViewStmt(view) => relation_type(view.view.as_ref(), true, out),
        N::CreateTableAsStmt(create) => relation_type(
            create.into.as_ref().and_then(|i| i.rel.as_ref()),
            false,
            out,
        ),
        N::SelectStmt(select) => select_into(select, out),
        N::ExplainStmt(explain) => {
            if let Some(inner) = explain.query.as_ref().and_then(|q| q.node.as_ref()) {
                type_names_given(inner, out);
            }
        }
        N::CompositeTypeStmt(composite) => relation_type(composite.typevar.as_ref(), false, out),
        N::CreateEnumStmt(e) => named_type(&e.type_name, out),
        N::CreateDomainStmt(d) => named_type(&d.domainname, out),
        N::DefineStmt(d) if d.kind == O::ObjectType as i32 => named_type(&d.defnames, out),
        N::CreateRangeStmt(range) => {
            named_type(&range.type_name, out);
            // Its multirange: named by the statement, or derived from the
            // range's name as PostgreSQL derives it.
            let given = range.params.iter().find_map(|p| match p.node.as_ref() {
                Some(N::DefElem(d)) if d.defname == "multirange_type_name" => {
                    match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                        Some(N::TypeName(t)) => Some(t.names.clone()),
                        Some(N::String(s)) => Some(vec![pg_query::protobuf::Node {
                            node: Some(N::String(s.clone())),
                        }]),
                        _ => None,
                    }
                }
                _ => None,
            });
            match given {
                Some(names) => named_type(&names, out),
                None => {
                    let (schema, name) = qualified(&range.type_name);
                    if let Some(name) = name {
                        let multirange = match name.find("range") {
                            Some(at) => format!("{}multirange{}", &name[..at], &name[at + 5..]),
                            None => format!("{name}_multirange"),
                        };
                        push_with_array(schema, multirange, false, false, out);
                    }
                }
            }
        }
        N::RenameStmt(rename) if owns_type(rename.rename_type) => {
            let schema = match &rename.relation {
                Some(relation) => non_empty(&relation.schemaname),
                None => match rename.object.as_ref().and_then(|o| o.node.as_ref()) {
                    Some(N::List(list)) => qualified(&list.items).0,
                    _ => None,
                },
            };
            let may_be_temporary = schema.is_none();
            push_with_array(schema, rename.newname.clone(), false, may_be_temporary, out);
        }
        N::AlterObjectSchemaStmt(moved) if owns_type(moved.object_type) => {
            let name = match &moved.relation {
                Some(relation) => Some(relation.relname.clone()),
                None => match moved.object.as_ref().and_then(|o| o.node.as_ref()) {
                    Some(N::List(list)) => qualified(&list.items).1,
                    _ => None,
                },
            };
            if let Some(name) = name {
                push_with_array(Some(moved.newschema.clone()), name, false, false, out);
            }
        }
        N::CreateSchemaStmt(schema) => {
            let mut inner = Vec::new();
            for element in &schema.schema_elts {
                if let Some(node) = element.node.as_ref() {
                    type_names_given(node, &mut inner);
                }
            }
            for mut new in inner {
                if new.schema.is_none() {
                    new.schema = Some(schema.schemaname.clone());
                    new.may_be_temporary = false;
                }
                out.push(new);
            }
        }
        // An extension's script may create any type, in its schema.
        N::CreateExtensionStmt(extension) => out.push(NewTypeName {
            schema: extension
                .options
                .iter()
                .find_map(|o| match o.node.as_ref() {
                    Some(N::DefElem(d)) if d.defname == "schema" => {
                        match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                            Some(N::String(s)) => Some(s.sval.clone()),
                            _ => None,
                        }
                    }
                    _ => None,
                }),
            name: None,
            temporary: false,
            may_be_temporary: false,
        }),
        N::ImportForeignSchemaStmt(import) => out.push(NewTypeName {
            schema: Some(import.local_schema.clone()),
            name: None,
            temporary: false,
            may_be_temporary: false,
        }),
        _ => {}
    }
}

/// SELECT … INTO: the clause sits on the leftmost SELECT of a set
/// operation.
fn select_into(select: &pg_query::protobuf::SelectStmt, out: &mut Vec<NewTypeName>) {
    relation_type(
        select.into_clause.as_ref().and_then(|i| i.rel.as_ref()),
        false,
        out,
    );
    for side in [&select.larg, &select.rarg].into_iter().flatten() {
        select_into(side, out);
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// `[catalog.][schema.]name` of a list of String nodes.
fn qualified(items: &[pg_query::protobuf::Node]) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = items
        .iter()
        .filter_map(|i| match i.node.as_ref() {
            Some(pg_query::NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [] => (None, None),
        [name] => (None, Some((*name).to_owned())),
        [.., schema, name] => (Some((*schema).to_owned()), Some((*name).to_owned())),
    }
}

fn relation_type(
    relation: Option<&pg_query::protobuf::RangeVar>,
    may_be_temporary: bool,
    out: &mut Vec<NewTypeName>,
) {
    if let Some(relation) = relation {
        let schema = non_empty(&relation.schemaname);
        let may_be_temporary = may_be_temporary && schema.is_none();
        let temporary = relation.relpersistence == "t";
        push_with_array(
            schema,
            relation.relname.clone(),
            temporary,
            may_be_temporary,
            out,
        );
    }
}

fn named_type(items: &[pg_query::protobuf::Node], out: &mut Vec<NewTypeName>) {
    if let (schema, Some(name)) = qualified(items) {
        push_with_array(schema, name, false, false, out);
    }
}

fn push_with_array(
    schema: Option<String>,
    name: String,
    temporary: bool,
    may_be_temporary: bool,
    out: &mut Vec<NewTypeName>,
) {
    for name in [format!("_{name}"), name] {
        out.push(NewTypeName {
            schema: schema.clone(),
            name: Some(name),
            temporary,
            may_be_temporary,
        });
    }
}

/// `ALTER TABLE t ALTER COLUMN c ADD GENERATED … AS IDENTITY (…)`, `SET
/// GENERATED …`, `RESTART`, `DROP IDENTITY` (pg_dump writes the first, with
/// `SEQUENCE NAME`, which sqlparser does not read): the table's name when
/// every command is one of those. They attach, change or drop a sequence
/// that fills future inserts; no stored value is read or moved.
fn identity_alter(node: &pg_query::NodeEnum) -> Option<Vec<String>> {
    use pg_query::protobuf::{AlterTableType, ObjectType};
    let pg_query::NodeEnum::AlterTableStmt(alter) = node else {
        return None;
    };
    if alter.objtype != ObjectType::ObjectTable as i32 || alter.cmds.is_empty() {
        return None;
    }
    let identity = [
        AlterTableType::AtAddIdentity as i32,
        AlterTableType::AtSetIdentity as i32,
        AlterTableType::AtDropIdentity as i32,
    ];
    let all_identity = alter.cmds.iter().all(|cmd| {
        matches!(&cmd.node, Some(pg_query::NodeEnum::AlterTableCmd(c)) if identity.contains(&c.subtype))
    });
    if !all_identity {
        return None;
    }
    let relation = alter.relation.as_ref()?;
    let name: Vec<String> = [
        &relation.catalogname,
        &relation.schemaname,
        &relation.relname,
    ]
    .into_iter()
    .filter(|p| !p.is_empty())
    .cloned()
    .collect();
    Some(name)
}

/// Sequence options are constants and integer types: nothing that names a
/// column, calls a function or converts through a user-defined type.
fn only_constant_options(refs: &References) -> bool {
    const NODES: &[&str] = &[
        "AlterTableStmt",
        "AlterTableCmd",
        "RangeVar",
        "Constraint",
        "DefElem",
        "List",
        "String",
        "Integer",
        "Float",
        "Boolean",
        "TypeName",
        "Node",
    ];
    let integer_type = |t: &Vec<String>| {
        matches!(
            t.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
            ["pg_catalog", "int2" | "int4" | "int8"]
                | ["smallint" | "integer" | "bigint" | "int2" | "int4" | "int8"]
        )
    };
    refs.columns.is_empty()
        && refs.functions.is_empty()
        && refs.types.iter().all(integer_type)
        && refs.kinds.iter().all(|k| NODES.contains(k))
}

fn error_text(e: pg_query::Error) -> String {
    match e {
        pg_query::Error::Parse(m) | pg_query::Error::Scan(m) | pg_query::Error::Split(m) => m,
        other => other.to_string(),
    }
}

/// Text sqlparser lexes (it knows only `standard_conforming_strings = on`)
/// into the statements the server reads from `sql` under `settings`. With
/// the setting off and a backslash in the text, PostgreSQL's own parser
/// reads it under the setting and its deparser spells it back, writing
/// `E'…'` wherever a string holds a backslash: text that reads alike under
/// either setting. `None`: the parser rejects the text.
pub fn text_for_sqlparser(sql: &str, settings: LexSettings) -> Option<std::borrow::Cow<'_, str>> {
    if settings.standard_conforming_strings || !sql.contains('\\') {
        return Some(std::borrow::Cow::Borrowed(sql));
    }
    let sql_owned = sql.to_owned();
    let text = on_parser_thread(move || {
        pg_query::parse(&sql_owned, settings.parser_options())
            .ok()?
            .deparse(Default::default())
            .ok()
    })??;
    Some(std::borrow::Cow::Owned(text))
}

/// Walks a tree through its `serde::Serialize` implementation: every
/// struct of every field is visited, so no node kind can be missed when
/// libpg_query adds one.
#[derive(Default)]
struct Collector {
    references: References,
    /// The first struct seen: the statement's node kind.
    top: Option<&'static str>,
}

#[derive(Debug)]
struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tree walk failed")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Never
    }
}

/// Which fields of a struct of interest are captured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Capture {
    None,
    RangeVar,
    ColumnRef,
    FuncCall,
    TypeName,
    StringNode,
    Cte,
}

struct StructWalk<'a> {
    collector: &'a mut Collector,
    capture: Capture,
    parts: [String; 3],
    names: Vec<String>,
}

impl<'a> ser::Serializer for &'a mut Collector {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = StructWalk<'a>;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Never> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        // `Node::AStar(AStar)` and the like: a star in a ColumnRef.
        if variant == "AStar" {
            self.references.kinds.insert("A_Star");
        }
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<StructWalk<'a>, Never> {
        if self.top.is_none() {
            self.top = Some(name);
        }
        self.references.kinds.insert(name);
        let capture = match name {
            "RangeVar" => Capture::RangeVar,
            "ColumnRef" => Capture::ColumnRef,
            "FuncCall" => Capture::FuncCall,
            "TypeName" => Capture::TypeName,
            "String" => Capture::StringNode,
            "CommonTableExpr" => Capture::Cte,
            _ => Capture::None,
        };
        Ok(StructWalk {
            collector: self,
            capture,
            parts: Default::default(),
            names: Vec::new(),
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }
}

impl ser::SerializeSeq for &mut Collector {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Collector {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Collector {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for &mut Collector {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeMap for &mut Collector {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Never> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Collector {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

/// Reads a plain string field.
struct StrValue(Option<String>);

impl StrValue {
    fn of<T: ?Sized + Serialize>(value: &T) -> Option<String> {
        let mut v = StrValue(None);
        let _ = value.serialize(ser_str::Reader(&mut v.0));
        v.0
    }
}

mod ser_str {
    //! A serializer that reads one `&str` and ignores anything else.
    use super::Never;
    use serde::ser::{self, Impossible, Serialize};

    pub(super) struct Reader<'a>(pub(super) &'a mut Option<String>);

    macro_rules! ignore {
        ($($f:ident: $t:ty),*) => {
            $(fn $f(self, _: $t) -> Result<(), Never> { Ok(()) })*
        };
    }

    impl ser::Serializer for Reader<'_> {
        type Ok = ();
        type Error = Never;
        type SerializeSeq = Impossible<(), Never>;
        type SerializeTuple = Impossible<(), Never>;
        type SerializeTupleStruct = Impossible<(), Never>;
        type SerializeTupleVariant = Impossible<(), Never>;
        type SerializeMap = Impossible<(), Never>;
        type SerializeStruct = Impossible<(), Never>;
        type SerializeStructVariant = Impossible<(), Never>;
        ignore!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
            serialize_u64: u64, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
            serialize_bytes: &[u8], serialize_unit_struct: &'static str);
        fn serialize_str(self, v: &str) -> Result<(), Never> {
            *self.0 = Some(v.to_owned());
            Ok(())
        }
        fn serialize_none(self) -> Result<(), Never> {
            Ok(())
        }
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), Never> {
            Err(Never)
        }
        fn serialize_unit(self) -> Result<(), Never> {
            Ok(())
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
        ) -> Result<(), Never> {
            Ok(())
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<(), Never> {
            Err(Never)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), Never> {
            Err(Never)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Never> {
            Err(Never)
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Never> {
            Err(Never)
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Never> {
            Err(Never)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Never> {
            Err(Never)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Never> {
            Err(Never)
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, Never> {
            Err(Never)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Never> {
            Err(Never)
        }
    }
}

impl ser::SerializeStruct for StructWalk<'_> {
    type Ok = ();
    type Error = Never;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        match (self.capture, key) {
            (Capture::RangeVar, "catalogname") => {
                self.parts[0] = StrValue::of(value).unwrap_or_default()
            }
            (Capture::RangeVar, "schemaname") => {
                self.parts[1] = StrValue::of(value).unwrap_or_default()
            }
            (Capture::RangeVar, "relname") => {
                self.parts[2] = StrValue::of(value).unwrap_or_default()
            }
            (Capture::StringNode, "sval") | (Capture::Cte, "ctename") => {
                self.parts[0] = StrValue::of(value).unwrap_or_default()
            }
            (Capture::ColumnRef, "fields")
            | (Capture::FuncCall, "funcname")
            | (Capture::TypeName, "names") => {
                // The name parts are String (or A_Star) nodes: walk them on
                // their own so their text lands here, not in `strings`.
                let mut inner = Collector::default();
                let _ = value.serialize(&mut inner);
                self.names = inner.references.strings;
                if inner.references.kinds.contains("A_Star") {
                    self.names.push("*".to_owned());
                }
                return Ok(());
            }
            _ => {}
        }
        value.serialize(&mut *self.collector)
    }

    fn end(self) -> Result<(), Never> {
        let refs = &mut self.collector.references;
        match self.capture {
            Capture::RangeVar => {
                let name: Vec<String> = self.parts.into_iter().filter(|p| !p.is_empty()).collect();
                refs.relations.insert(name);
            }
            Capture::ColumnRef => {
                refs.columns.insert(self.names);
            }
            Capture::FuncCall => {
                refs.functions.insert(self.names);
            }
            Capture::TypeName => {
                refs.types.insert(self.names);
            }
            Capture::StringNode => {
                let [value, ..] = self.parts;
                refs.strings.push(value);
            }
            Capture::Cte => {
                let [name, ..] = self.parts;
                refs.cte_names.insert(name);
            }
            Capture::None => {}
        }
        Ok(())
    }
}

/// For a lone `COPY table [(columns)] …`: `SELECT columns FROM table`,
/// which the server's Parse resolves as the COPY would (a utility
/// statement's Parse resolves nothing), so a missing table or column gets
/// the server's own error. `None` for anything else.
pub fn name_probe(sql: &str, settings: LexSettings) -> Option<String> {
    let sql_owned = sql.to_owned();
    on_parser_thread(move || {
        let parsed = pg_query::parse(&sql_owned, settings.parser_options()).ok()?;
        let [raw] = parsed.protobuf.stmts.as_slice() else {
            return None;
        };
        let Some(pg_query::NodeEnum::CopyStmt(copy)) = raw.stmt.as_ref()?.node.as_ref() else {
            return None;
        };
        let rel = copy.relation.as_ref()?;
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut table: Vec<String> = [&rel.catalogname, &rel.schemaname, &rel.relname]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| quote(p))
            .collect();
        if table.is_empty() {
            return None;
        }
        let mut columns = Vec::new();
        for a in &copy.attlist {
            match a.node.as_ref() {
                Some(pg_query::NodeEnum::String(s)) => columns.push(quote(&s.sval)),
                _ => return None,
            }
        }
        let table = std::mem::take(&mut table).join(".");
        Some(format!("SELECT {} FROM {table}", columns.join(", ")))
    })
    .flatten()
}

/// The statements of `sql` as the server splits them, each with its own
/// text and [`BlockUse`]. `None` when PostgreSQL's parser rejects the string
/// (the server then runs none of it).
pub fn split_with_block_use(
    sql: &str,
    settings: LexSettings,
    nesting: usize,
) -> Option<Vec<(&str, BlockUse)>> {
    let statements = parse(sql, settings, nesting).ok()?;
    statements
        .iter()
        .map(|s| sql.get(s.range.clone()).map(|text| (text, s.block_use)))
        .collect()
}

/// The statements of `sql` as the server splits them, each with its own
/// text. `None` when PostgreSQL's parser rejects the string.
pub fn split(sql: &str, settings: LexSettings, nesting: usize) -> Option<Vec<&str>> {
    let statements = parse(sql, settings, nesting).ok()?;
    statements
        .iter()
        .map(|s| sql.get(s.range.clone()))
        .collect::<Option<Vec<&str>>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(sql: &str) -> References {
        let mut statements = parse(sql, LexSettings::default(), 10).unwrap();
        statements.remove(0).references
    }

    fn v(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn references_come_from_every_node() {
        let r = refs(
            "INSERT INTO audit.log (note) SELECT upper(c.full_name)::varchar(10) \
             FROM public.customers c JOIN \"Év\" USING (id) WHERE c.id_number = 'x' \
             AND cast(t.* AS text) IS NOT NULL",
        );
        assert!(r.relations.contains(&v(&["audit", "log"])));
        assert!(r.relations.contains(&v(&["public", "customers"])));
        assert!(r.relations.contains(&v(&["Év"])));
        assert!(r.columns.contains(&v(&["c", "full_name"])));
        assert!(r.columns.contains(&v(&["c", "id_number"])));
        assert!(r.columns.contains(&v(&["t", "*"])));
        assert!(r.functions.contains(&v(&["upper"])));
        assert!(r.types.contains(&v(&["pg_catalog", "varchar"])));
        assert!(r.types.contains(&v(&["text"])));
        assert!(r.strings.contains(&"x".to_string()));
        assert!(r.kinds.contains("InsertStmt"));
    }

    /// (schema, name, temporary, may_be_temporary) of every type name.
    fn given(sql: &str) -> Vec<(Option<String>, Option<String>, bool, bool)> {
        let mut statements = parse(sql, LexSettings::default(), 10).unwrap();
        statements
            .remove(0)
            .new_type_names
            .into_iter()
            .map(|n| (n.schema, n.name, n.temporary, n.may_be_temporary))
            .collect()
    }

    fn names(sql: &str) -> Vec<String> {
        given(sql).into_iter().filter_map(|g| g.1).collect()
    }

    #[test]
    fn every_statement_that_names_a_type_is_seen() {
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            given("CREATE TEMP TABLE text (a int)"),
            vec![
                (None, s("_text"), true, false),
                (None, s("text"), true, false)
            ]
        );
        assert_eq!(
            names("SELECT 1 AS a INTO TEMP int8 UNION SELECT 2"),
            ["_int8", "int8"]
        );
        assert_eq!(
            names("EXPLAIN ANALYZE CREATE TABLE pg_temp.b AS SELECT 1"),
            ["_b", "b"]
        );
        assert!(given("CREATE VIEW v AS SELECT 1").iter().all(|g| g.3));
        assert!(given("CREATE VIEW public.v AS SELECT 1")
            .iter()
            .all(|g| !g.3));
        assert_eq!(
            names("CREATE TYPE pg_temp.int4range AS RANGE (subtype = int4)"),
            [
                "_int4range",
                "int4range",
                "_int4multirange",
                "int4multirange"
            ]
        );
        assert_eq!(
            names("CREATE TYPE r AS RANGE (subtype = int4, multirange_type_name = pg_temp.m)"),
            ["_r", "r", "_m", "m"]
        );
        assert_eq!(
            names("CREATE TYPE floatish AS RANGE (subtype = float8)")[3],
            "floatish_multirange"
        );
        assert_eq!(
            names("ALTER TYPE pg_temp.x RENAME TO text"),
            ["_text", "text"]
        );
        assert_eq!(
            given("ALTER TYPE pg_temp.x RENAME TO text")[0].0,
            s("pg_temp")
        );
        assert!(given("ALTER TABLE x RENAME TO y").iter().all(|g| g.3));
        assert!(given("ALTER TABLE x RENAME COLUMN a TO text").is_empty());
        assert!(given("ALTER SEQUENCE x RENAME TO text").is_empty());
        assert_eq!(given("ALTER DOMAIN d SET SCHEMA s")[1].0, s("s"));
        assert_eq!(names("CREATE TYPE pg_temp.t"), ["_t", "t"]);
        assert_eq!(names("CREATE DOMAIN pg_temp.d AS int"), ["_d", "d"]);
        assert_eq!(names("CREATE TYPE e AS ENUM ('a')"), ["_e", "e"]);
        assert_eq!(given("CREATE SCHEMA s CREATE TABLE t (a int)")[0].0, s("s"));
        assert_eq!(
            given("IMPORT FOREIGN SCHEMA r FROM SERVER f INTO pg_temp")[0].1,
            None
        );
        assert!(given("SELECT 1").is_empty());
    }

    #[test]
    fn text_without_statements_parses_to_none() {
        for sql in ["", " \n\x0b", "-- c", ";"] {
            let parsed = parse(sql, LexSettings::default(), 10);
            assert!(
                parsed.is_ok_and(|p| p.iter().all(|s| s.kind == "empty")),
                "{sql:?}"
            );
        }
    }

    #[test]
    fn move_is_told_from_fetch() {
        let moves = |sql: &str| parse(sql, LexSettings::default(), 10).unwrap()[0].moves_cursor;
        assert!(moves("MOVE ABSOLUTE 3 FROM c"));
        assert!(moves("move forward 5 \"__asyncpg_portal_1__\""));
        assert!(!moves("FETCH ABSOLUTE 3 FROM c"));
        assert!(!moves("SELECT 1"));
    }

    #[test]
    fn unicode_escapes_are_read_as_the_server_reads_them() {
        let r = refs("SELECT U&\"\\0069d_number\" FROM customers");
        assert!(r.columns.contains(&v(&["id_number"])), "{r:?}");
    }

    #[test]
    fn splits_where_the_server_splits() {
        let sql = "SELECT 1 --\r; SELECT id_number FROM customers; SELECT ';' /* ; */";
        let pieces = split(sql, LexSettings::default(), 10).unwrap();
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        assert_eq!(pieces[1].trim(), "SELECT id_number FROM customers");
        // Rejected strings are not split at all.
        assert!(split("SELECT 1; SELEKT 2", LexSettings::default(), 10).is_none());
    }

    #[test]
    fn strings_end_where_the_setting_ends_them() {
        let on = LexSettings::default();
        let off = LexSettings {
            standard_conforming_strings: false,
        };
        // On: two constants. Off: one constant, a column, a comment.
        let hidden = "SELECT '\\', ' , id_number FROM customers --'";
        let on_refs = &parse(hidden, on, 10).unwrap()[0].references;
        assert!(on_refs.columns.is_empty(), "{on_refs:?}");
        let off_refs = &parse(hidden, off, 10).unwrap()[0].references;
        assert!(
            off_refs.columns.contains(&v(&["id_number"])),
            "{off_refs:?}"
        );
        // The text handed to sqlparser spells the strings so that they end
        // where the server ends them under either setting.
        let text = text_for_sqlparser(hidden, off).unwrap();
        assert_eq!(&parse(&text, on, 10).unwrap()[0].references, off_refs);
        assert_eq!(&parse(&text, off, 10).unwrap()[0].references, off_refs);
        // Several strings, continuation lines, and strings without one.
        let many = "SELECT 'a', 'b\\'', 'c'\n'd\\'' , 'e' FROM t";
        let text = text_for_sqlparser(many, off).unwrap();
        assert_eq!(
            parse(&text, on, 10).unwrap()[0].references,
            parse(many, off, 10).unwrap()[0].references
        );
        assert_eq!(text_for_sqlparser("SELECT N'\\'", off), None);
        assert_eq!(text_for_sqlparser(hidden, on).unwrap(), hidden);
    }

    #[test]
    fn deep_statements_parse_on_a_sized_stack() {
        // The caller's stack does not matter: libpg_query runs on its own.
        for (terms, ok) in [(2_000, true), (100_000, false)] {
            let sql = format!("SELECT 0{}", "+1".repeat(terms));
            let handle = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || parse(&sql, LexSettings::default(), terms).map(|s| s.len()))
                .unwrap();
            let result = handle.join().unwrap();
            assert_eq!(result.is_ok(), ok, "{terms}: {result:?}");
            if !ok {
                assert_eq!(result, Err(PgParseError::TooDeep(terms)));
            }
        }
    }
}

#[cfg(test)]
mod raise_only_tests {
    use super::*;

    fn raise_only_do(sql: &str) -> bool {
        parse(sql, LexSettings::default(), 10).unwrap()[0].raise_only
    }

    #[test]
    fn only_constant_raises_are_raise_only() {
        assert!(raise_only_do(
            "DO $$ BEGIN RAISE NOTICE 'catch me!'; END; $$ LANGUAGE plpgsql"
        ));
        assert!(raise_only_do(
            "DO language plpgsql $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '42P05', HINT = 'it''s'; END $$"
        ));
        assert!(raise_only_do(
            "do $$ begin raise warning 'a'; raise notice 'b'; end $$"
        ));
        for sql in [
            "DO $$ DECLARE i int := 1; BEGIN RAISE NOTICE '%', i; END $$",
            "DO $$ BEGIN RAISE NOTICE '%', (SELECT mobile FROM customers LIMIT 1); END $$",
            "DO $$ BEGIN RAISE NOTICE 'x' USING DETAIL = (SELECT mobile FROM customers LIMIT 1); END $$",
            "DO $$ BEGIN RAISE NOTICE 'x' USING DETAIL = 'a' || current_user; END $$",
            "DO $$ BEGIN PERFORM 1; END $$",
            "DO $$ BEGIN RAISE NOTICE 'a'; EXCEPTION WHEN others THEN NULL; END $$",
            "DO $$ BEGIN EXECUTE 'SELECT 1'; END $$",
            "DO $$ BEGIN RAISE NOTICE 'a'; END $$ LANGUAGE sql",
            "DO $$ BEGIN RAISE NOTICE 'a $pgveil_do$'; END $$",
            "DO $$ BEGIN RAISE NOTICE 'a'; RETURN; END $$",
        ] {
            assert!(!raise_only_do(sql), "{sql}");
        }
    }
}

#[cfg(test)]
mod block_use_tests {
    use super::*;

    #[test]
    fn statements_are_classed_by_how_they_run_in_a_pipeline() {
        let uses = |sql: &str| -> Vec<BlockUse> {
            split_with_block_use(sql, LexSettings::default(), 10)
                .unwrap()
                .into_iter()
                .map(|(_, u)| u)
                .collect()
        };
        use BlockUse::*;
        assert_eq!(
            uses("BEGIN; CREATE TABLE t (a int); INSERT INTO t VALUES (1); COMMIT"),
            [Begins, Any, Any, Ends]
        );
        assert_eq!(
            uses("SAVEPOINT x; ROLLBACK TO x; RELEASE x; DECLARE c CURSOR FOR SELECT 1; LOCK t; SET LOCAL a.b = 1"),
            [NeedsBlock; 6]
        );
        for sql in [
            "VACUUM t",
            "CREATE DATABASE d",
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "DROP INDEX CONCURRENTLY i",
            "COPY t FROM STDIN",
            "SELECT $1",
            "PREPARE TRANSACTION 'x'",
            "ALTER SYSTEM SET work_mem = '1MB'",
        ] {
            assert_eq!(uses(sql), [Unsplittable], "{sql}");
        }
        assert_eq!(
            uses("COPY t TO STDOUT; SET search_path = a; SELECT '$1'"),
            [Any; 3]
        );
    }
}
