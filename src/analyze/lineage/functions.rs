//! Function calls and what pgveil knows of built-in functions: which run
//! SQL or touch server files, which return an argument unchanged, which are
//! set-returning, which write where other sessions can read.

use sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments, Value,
};

use super::{
    as_derived, merge_alternative, merge_into, object_name_parts, Clause, Guard, HazardRule, Sink,
    Sources, Walker,
};
use crate::analyze::builtins::{self, BuiltinCategory};

/// Extension functions that run remote SQL or expose other sessions' query
/// texts: blocked even when a policy lists their schema. Built-in functions
/// are judged by their category in `analyze::builtins` instead.
const EXTENSION_HAZARDS: &[(&str, HazardRule, &str)] = &[
    ("dblink", HazardRule::DynamicSql, "runs remote SQL"),
    (
        "pg_stat_statements",
        HazardRule::ServerFile,
        "exposes other sessions' query texts",
    ),
];
/// Functions whose arguments land somewhere other sessions can read.
const SINK_FUNCTIONS: &[&str] = &["pg_notify", "set_config"];
/// Functions whose result is one of their arguments' values unchanged.
const VALUE_PRESERVING_FUNCTIONS: &[&str] = &[
    "coalesce",
    "greatest",
    "least",
    "min",
    "max",
    "any_value",
    "first_value",
    "last_value",
    "nth_value",
    "lag",
    "lead",
];
/// Value-preserving functions that pick a value by comparing them.
const ORDERING_FUNCTIONS: &[&str] = &["greatest", "least", "min", "max"];
/// Functions whose result reveals nothing of their arguments' values. Not
/// `ntile(n)` (its buckets count to `n`) nor `rank(x)` / `dense_rank(x)`
/// WITHIN GROUP (where `x` would rank): their arguments are derived into
/// the result like any function's.
const VALUE_FREE_FUNCTIONS: &[&str] = &["count", "row_number"];
/// SQL syntax that sqlparser represents as a function call but that is not a
/// pg_proc entry.
const SYNTAX_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "row",
    "array",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_schema",
    "current_catalog",
    "grouping",
    "xmlelement",
    "xmlforest",
    "xmlconcat",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmlexists",
    "json_object",
    "json_array",
    "json_objectagg",
    "json_arrayagg",
    "json_scalar",
    "json_serialize",
    "json_query",
    "json_value",
    "json_exists",
];

/// Set-returning functions (their arguments decide the number of rows), and
/// whether each has exactly one output column.
const SET_RETURNING_FUNCTIONS: &[(&str, bool)] = &[
    ("generate_series", true),
    ("generate_subscripts", true),
    ("unnest", true),
    ("regexp_matches", true),
    ("regexp_split_to_table", true),
    ("string_to_table", true),
    ("json_array_elements", true),
    ("json_array_elements_text", true),
    ("jsonb_array_elements", true),
    ("jsonb_array_elements_text", true),
    ("json_object_keys", true),
    ("jsonb_object_keys", true),
    ("jsonb_path_query", true),
    ("pg_ls_dir", true),
    ("json_each", false),
    ("json_each_text", false),
    ("jsonb_each", false),
    ("jsonb_each_text", false),
    ("json_populate_recordset", false),
    ("jsonb_populate_recordset", false),
    ("json_to_recordset", false),
    ("jsonb_to_recordset", false),
    ("pg_options_to_table", false),
];

/// `Some(single_column)` for a known set-returning function.
pub(super) fn set_returning(name: &str) -> Option<bool> {
    SET_RETURNING_FUNCTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, single)| *single)
}

impl<'c> Walker<'c> {
    pub(super) fn function_arg(&mut self, arg: &FunctionArg) -> Sources {
        let arg_expr = match arg {
            FunctionArg::Named { arg, .. } | FunctionArg::ExprNamed { arg, .. } => arg,
            FunctionArg::Unnamed(arg) => arg,
        };
        match arg_expr {
            FunctionArgExpr::Expr(e) => self.expr(e),
            FunctionArgExpr::QualifiedWildcard(name) => {
                let parts = object_name_parts(name);
                match self.find_item(&parts) {
                    Some(item) => item.whole_row(),
                    None => self.identifier(&parts),
                }
            }
            FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => Sources::new(),
        }
    }

    /// Checks the function is known and allowed; records hazards. Returns
    /// the category of a built-in function (`None` for SQL syntax, user
    /// functions and unknown names).
    pub(crate) fn check_function(
        &mut self,
        parts: &[String],
        arg_count: Option<usize>,
    ) -> Option<BuiltinCategory> {
        self.check_call(parts, arg_count, None)
    }

    /// The user functions a call of `[schema.]name` may run (one per
    /// schema, as `user_candidates`), without those none of whose
    /// overloads the call's arguments can reach (`call_may_run`): a
    /// citext `max(citext)` in public is no candidate for `max(id)`.
    pub(super) fn reachable_user_candidates(
        &self,
        schema: Option<&str>,
        name: &str,
        call: Option<&ast::Function>,
    ) -> Vec<&'c crate::analyze::catalog::CatalogFunction> {
        let candidates = user_candidates(self.catalog, self.search_path, schema, name);
        // Only where pg_catalog has a function of the name to run instead:
        // a call PostgreSQL could resolve to no function at all is judged
        // against every user overload, whatever pgveil makes of its types.
        let builtin = self
            .catalog
            .resolve_function(&[], Some("pg_catalog"), name)
            .is_some_and(|f| f.is_builtin());
        let Some(call) = call.filter(|_| builtin) else {
            return candidates;
        };
        candidates
            .into_iter()
            .filter(|c| {
                self.catalog
                    .functions_named(name)
                    .filter(|f| f.schema == c.schema && !f.is_builtin())
                    .any(|f| self.call_may_run(call, f))
            })
            .collect()
    }

    /// `check_function` of a call whose arguments are known: user functions
    /// it cannot run are not judged.
    pub(super) fn check_call(
        &mut self,
        parts: &[String],
        arg_count: Option<usize>,
        call: Option<&ast::Function>,
    ) -> Option<BuiltinCategory> {
        let (schema, name) = match parts {
            [name] => (None, name.as_str()),
            [schema, name] => (Some(schema.as_str()), name.as_str()),
            _ => {
                self.hazard(
                    HazardRule::UnknownName,
                    format!("function {}", parts.join(".")),
                );
                return None;
            }
        };
        for (prefix, rule, what) in EXTENSION_HAZARDS {
            if name.starts_with(prefix) {
                self.hazard(*rule, format!("{name}() {what}"));
            }
        }
        if schema.is_none() && SYNTAX_FUNCTIONS.contains(&name) {
            return None;
        }
        let mut resolved = self
            .catalog
            .resolve_function(self.search_path, schema, name);
        if resolved.is_some_and(|f| !f.is_builtin())
            && self
                .reachable_user_candidates(schema, name, call)
                .is_empty()
        {
            // No user function of the name can take these arguments: the
            // call runs pg_catalog's, when it has one.
            resolved = self
                .catalog
                .resolve_function(&[], Some("pg_catalog"), name)
                .filter(|f| f.is_builtin() && schema.is_none_or(|s| s == "pg_catalog"));
            resolved?;
        }
        match resolved {
            Some(function) if function.is_builtin() => {
                if builtins::is_volatile(&function.schema, name) {
                    self.volatile_calls += 1;
                }
                let qualified = format!("{}.{name}()", function.schema);
                let category = builtins::category(&function.schema, name, arg_count);
                match category {
                    Some(BuiltinCategory::Sql) => self.hazard(
                        HazardRule::DynamicSql,
                        format!("{qualified} runs SQL pgveil cannot see"),
                    ),
                    Some(BuiltinCategory::Server) => self.hazard(
                        HazardRule::ServerFile,
                        format!("{qualified} reads or changes server-side data"),
                    ),
                    Some(BuiltinCategory::Internal) => self.hazard(
                        HazardRule::UnlistedFunction,
                        format!("{qualified} is an internal support function, not meant for SQL"),
                    ),
                    None => self.hazard(
                        HazardRule::UnlistedFunction,
                        format!(
                            "{qualified} is not on pgveil's list of PostgreSQL 15 built-in \
                             functions"
                        ),
                    ),
                    Some(_) => {}
                }
                category
            }
            Some(function) => {
                // Its volatility is the user's to declare: assume volatile.
                self.volatile_calls += 1;
                // Every user function the call may run is judged: of the
                // schema named, or, unqualified, of any schema (PostgreSQL
                // picks an overload across the search_path by argument
                // types, which pgveil does not resolve).
                let (catalog, search_path) = (self.catalog, self.search_path);
                let name = function.name.clone();
                for candidate in self.reachable_user_candidates(schema, &name, call) {
                    let key = (candidate.schema.clone(), candidate.name.clone());
                    // Followed once per statement, however often called.
                    self.effects
                        .sealed_calls
                        .entry(key.clone())
                        .or_insert_with(|| {
                            let overloads = catalog
                                .functions_named(&name)
                                .filter(|f| f.schema == candidate.schema);
                            crate::analyze::sealed::follow_overloads(
                                catalog,
                                search_path,
                                overloads,
                            )
                        });
                    self.effects.user_functions.insert(key);
                }
                None
            }
            None => {
                self.hazard(
                    HazardRule::UnknownName,
                    format!("function {} is not in the catalog", parts.join(".")),
                );
                None
            }
        }
    }

    /// Lookups and writes may see only values the role could type itself:
    /// every column reaching their arguments is recorded for the plan.
    pub(super) fn guard_arguments(
        &mut self,
        function: &str,
        category: Option<BuiltinCategory>,
        args: &[Sources],
    ) {
        let guard = match category {
            Some(BuiltinCategory::Lookup) => Guard::Lookup,
            Some(BuiltinCategory::Write) => Guard::Write,
            _ => return,
        };
        let target = format!("{function}()");
        for sources in args {
            self.guard_sources(sources, &target, guard);
        }
    }

    /// Guards the arguments of a call of a user-defined function: a
    /// function pgveil follows (see `sealed`) may still store them. Each
    /// function the call may run is a target of its own, so that one the
    /// policy lists does not vouch for another.
    pub(super) fn guard_user_function(
        &mut self,
        parts: &[String],
        args: &[Sources],
        call: Option<&ast::Function>,
    ) {
        let (schema, name) = match parts {
            [name] => (None, name.as_str()),
            [schema, name] => (Some(schema.as_str()), name.as_str()),
            _ => return,
        };
        if schema.is_none() && SYNTAX_FUNCTIONS.contains(&name) {
            return;
        }
        let targets: Vec<String> = self
            .reachable_user_candidates(schema, name, call)
            .iter()
            .map(|f| format!("{}.{}()", f.schema, f.name))
            .collect();
        for target in &targets {
            for sources in args {
                self.guard_sources(sources, target, Guard::UserFunction);
            }
        }
    }

    pub(super) fn function(&mut self, function: &ast::Function) -> Sources {
        let parts = object_name_parts(&function.name);
        let arg_count = match &function.args {
            FunctionArguments::None => Some(0),
            FunctionArguments::List(list) => Some(list.args.len()),
            FunctionArguments::Subquery(_) => None,
        };
        let category = self.check_call(&parts, arg_count, Some(function));
        let name = parts.last().map(String::as_str).unwrap_or_default();
        let mut args: Vec<Sources> = Vec::new();
        // The shape of each argument, for a call that may build JSON.
        let mut shapes = Vec::new();
        match &function.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(query) => {
                let outputs = self.query(query);
                for out in outputs {
                    args.push(out.sources);
                }
            }
            FunctionArguments::List(list) => {
                let shaping = super::json::shapes_arguments(name);
                for (i, arg) in list.args.iter().enumerate() {
                    // normalize(x, NFC): PostgreSQL's grammar reads the
                    // form as a keyword (a string constant), never a column.
                    if i == 1 && parts.len() == 1 && name == "normalize" && is_normal_form(arg) {
                        args.push(Sources::new());
                        continue;
                    }
                    let sources = self.function_arg(arg);
                    if shaping {
                        shapes.push(self.json_argument(arg, &sources));
                    }
                    args.push(sources);
                }
                if matches!(
                    list.duplicate_treatment,
                    Some(ast::DuplicateTreatment::Distinct)
                ) {
                    // count(DISTINCT x) compares values; any other aggregate
                    // of distinct values (json_agg, array_agg …) returns
                    // them sorted, in the order of the clear values.
                    for a in &args {
                        self.use_sources(a, name == "count");
                    }
                }
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::OrderBy(items) => {
                            self.with_clause(Clause::OrderBy, |w| {
                                for item in items {
                                    let s = w.expr(&item.expr);
                                    w.use_sources(&s, false);
                                }
                            })
                        }
                        FunctionArgumentClause::Where(e) => self.predicate(e),
                        FunctionArgumentClause::Limit(e) => {
                            let s = self.expr(e);
                            self.use_sources(&s, false);
                        }
                        _ => {}
                    }
                }
            }
        }
        if !matches!(function.parameters, FunctionArguments::None) {
            self.hazard(HazardRule::Unanalysable, "parametric function call");
        }
        for item in &function.within_group {
            let s = self.expr(&item.expr);
            self.with_clause(Clause::OrderBy, |w| w.use_sources(&s, false));
        }
        if let Some(filter) = &function.filter {
            self.predicate(filter);
        }
        if let Some(over) = &function.over {
            match over {
                ast::WindowType::WindowSpec(spec) => self.window_spec(spec),
                ast::WindowType::NamedWindow(_) => {}
            }
        }
        if set_returning(name).is_some() {
            self.with_clause(Clause::RowCount, |w| {
                for a in &args {
                    w.use_sources(a, false);
                }
            });
        }
        self.guard_arguments(name, category, &args);
        self.guard_user_function(&parts, &args, Some(function));
        if category.is_some() {
            self.guard_record_input(name, &args, std::iter::empty());
        }
        if SINK_FUNCTIONS.contains(&name) {
            self.sink_function(name, &function.args, &args);
        }
        if ORDERING_FUNCTIONS.contains(&name) {
            // The result tells which argument or row is largest.
            for a in &args {
                self.use_sources(a, false);
            }
        }
        if !shapes.is_empty() {
            if let Some(shape) = self.json_call_shape(function, &parts, shapes) {
                self.made_by_call(function, shape);
            }
        }
        let mut sources = Sources::new();
        if VALUE_FREE_FUNCTIONS.contains(&name) {
            // The server still computes `count(1 / (ascii(c) - 49))`'s
            // argument, and whether that fails tells something of `c`.
            self.use_computed_outputs(args.iter());
            return sources;
        }
        if name == "nullif" {
            // NULLIF(a, b) is a or NULL after comparing a = b.
            if let Some(second) = args.get(1) {
                let second = second.clone();
                self.with_clause(self.clause, |w| w.use_sources(&second, true));
            }
            if let Some(first) = args.first() {
                let first = first.clone();
                self.use_sources(&first, true);
                return first;
            }
            return sources;
        }
        let preserving = VALUE_PRESERVING_FUNCTIONS.contains(&name);
        for a in &args {
            if preserving {
                // COALESCE(col, 'x') is col or a constant: not a pure copy.
                merge_alternative(&mut sources, a);
            } else {
                merge_into(&mut sources, a);
            }
        }
        if preserving {
            sources
        } else {
            as_derived(sources)
        }
    }

    fn sink_function(&mut self, name: &str, raw_args: &FunctionArguments, args: &[Sources]) {
        for a in args {
            for (column, flow) in a {
                self.effects.sinks.insert(Sink {
                    source: column.clone(),
                    flow: *flow,
                    target: None,
                    via: if name == "pg_notify" {
                        "pg_notify"
                    } else {
                        "set_config"
                    },
                });
            }
        }
        if name == "set_config" {
            let first = match raw_args {
                FunctionArguments::List(list) => list.args.first(),
                _ => None,
            };
            self.set_config_setting(first);
        }
    }

    /// set_config(setting, …) wherever it is called (select list, FROM):
    /// a change of search_path or of the role `"$user"` stands for is one
    /// the session would not see, so it is refused.
    pub(crate) fn set_config_setting(&mut self, first: Option<&FunctionArg>) {
        {
            // Whether it changes search_path depends on the literal.
            self.literal_sensitive = true;
            let literal = match first {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => {
                    match &v.value {
                        Value::SingleQuotedString(s) => Some(s.to_lowercase()),
                        _ => None,
                    }
                }
                _ => None,
            };
            match literal {
                Some(setting) if !crate::analyze::resolves_search_path(&setting) => {}
                _ => self.hazard(
                    HazardRule::SearchPath,
                    "set_config may change search_path or the role \"$user\" in it stands for",
                ),
            }
        }
    }
}

/// An unquoted `NFC`, `NFD`, `NFKC` or `NFKD`: the Unicode normal form
/// keyword of `normalize(text, form)`.
fn is_normal_form(arg: &ast::FunctionArg) -> bool {
    let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Identifier(ident))) = arg
    else {
        return false;
    };
    ident.quote_style.is_none()
        && ["nfc", "nfd", "nfkc", "nfkd"]
            .iter()
            .any(|form| ident.value.eq_ignore_ascii_case(form))
}

/// The user functions a call of `[schema.]name` may run, one per schema:
/// none when it runs a built-in; else, qualified, the schema's; unqualified,
/// every schema's that has a user function of that name.
pub(super) fn user_candidates<'c>(
    catalog: &'c crate::analyze::catalog::Catalog,
    search_path: &[String],
    schema: Option<&str>,
    name: &str,
) -> Vec<&'c crate::analyze::catalog::CatalogFunction> {
    let resolved = catalog.resolve_function(search_path, schema, name);
    if resolved.is_none_or(|f| f.is_builtin()) {
        return Vec::new();
    }
    let mut schemas = std::collections::BTreeSet::new();
    catalog
        .functions_named(name)
        .filter(|f| !f.is_builtin() && schema.is_none_or(|s| f.schema == s))
        .filter(|f| schemas.insert(f.schema.clone()))
        .collect()
}
