//! The catalog of one upstream database: what `SELECT *`, unqualified names,
//! views and function calls resolve to. Loaded from `pg_catalog` over
//! pgveil's own connection, or from the JSON that `pgveil catalog dump`
//! writes. Immutable once built; a refresh builds a new one with a higher
//! generation, so cached analyses keyed on the generation never go stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::lineage::RelationLineage;

/// Schemas whose objects ship with PostgreSQL.
pub const SYSTEM_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// Why a catalog could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading the catalog from the upstream failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("catalog JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("reading catalog file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("catalog row has an unexpected {what}: {value}")]
    UnexpectedValue { what: &'static str, value: String },
}

/// What kind of relation a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    Table,
    PartitionedTable,
    View,
    MaterializedView,
    ForeignTable,
    /// Sequences are read like one-row tables (`SELECT last_value FROM s`).
    Sequence,
}

/// One column of a relation, in attnum order; dropped columns are omitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogColumn {
    pub name: String,
    pub attnum: i16,
    pub type_oid: u32,
    pub type_name: String,
}

/// A table, view or materialized view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    pub columns: Vec<CatalogColumn>,
    /// `pg_get_viewdef` text of a view or materialized view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// Direct parents (partitioned table or inheritance parent), as
    /// (schema, name): a child's rows are its parent's rows, so the
    /// parent's column rules follow them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<(String, String)>,
    /// Lineage of a view's columns, computed once per catalog generation.
    #[serde(skip)]
    pub(crate) view_lineage: OnceLock<Arc<RelationLineage>>,
}

impl Relation {
    /// A relation of a session's temporary schema, read by the session.
    pub fn temporary(
        oid: u32,
        name: String,
        kind: RelationKind,
        columns: Vec<CatalogColumn>,
        definition: Option<String>,
    ) -> Relation {
        Relation {
            oid,
            schema: "pg_temp".into(),
            name,
            kind,
            columns,
            definition,
            parents: Vec::new(),
            view_lineage: OnceLock::new(),
        }
    }

    /// True for objects that ship with PostgreSQL.
    pub fn is_system(&self) -> bool {
        SYSTEM_SCHEMAS.contains(&self.schema.as_str())
    }

    /// True when its rows are computed from a stored query we must analyse.
    pub fn has_definition(&self) -> bool {
        matches!(
            self.kind,
            RelationKind::View | RelationKind::MaterializedView
        )
    }
}

/// A function or procedure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogFunction {
    pub schema: String,
    pub name: String,
    pub language: String,
    /// `i` immutable, `s` stable, `v` volatile.
    pub volatility: String,
    /// `f` function, `p` procedure, `a` aggregate, `w` window.
    pub kind: String,
    /// The columns it yields in FROM (`SELECT * FROM f(…)`).
    #[serde(default)]
    pub result: FunctionResult,
}

/// The shape of a function's result in FROM, by PostgreSQL's rules: OUT
/// parameters name the columns, a composite return type gives its
/// attributes, any other type is one column named after the function (or
/// the FROM alias).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionResult {
    /// `record` without OUT parameters, a polymorphic type, or an older
    /// catalog dump: the call needs a column definition list.
    #[default]
    Unknown,
    /// One column of a base, domain, enum or range type.
    Scalar,
    /// OUT parameters or the attributes of a composite type.
    Columns(Vec<String>),
    /// `anyelement` taken from the first argument (`json_populate_record`).
    FirstArgumentType,
    /// Another polymorphic type (`anyelement`, `anyrange` …): its shape
    /// follows the arguments' types, which pgveil does not resolve.
    Polymorphic,
}

impl CatalogFunction {
    /// Built-in functions live in pg_catalog or information_schema.
    pub fn is_builtin(&self) -> bool {
        SYSTEM_SCHEMAS.contains(&self.schema.as_str())
    }
}

/// The serialised form, also what `catalog dump` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CatalogData {
    database: String,
    #[serde(default)]
    generation: u64,
    schemas: Vec<String>,
    relations: Vec<Relation>,
    functions: Vec<CatalogFunction>,
}

/// The catalog of one database.
#[derive(Debug)]
pub struct Catalog {
    data: CatalogData,
    relation_index: HashMap<(String, String), usize>,
    function_index: HashMap<String, Vec<usize>>,
}

/// Generation numbers are process-wide so two loads never share one.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl Catalog {
    /// This catalog plus one session's temporary relations (schema
    /// `pg_temp`), which pgveil's own catalog connection cannot see.
    pub fn with_session_relations(&self, extra: &[Relation]) -> Catalog {
        let mut relations = self.data.relations.clone();
        relations.extend(extra.iter().cloned());
        let mut schemas = self.data.schemas.clone();
        if !schemas.iter().any(|s| s == "pg_temp") {
            schemas.push("pg_temp".into());
        }
        Catalog::new(
            self.data.database.clone(),
            schemas,
            relations,
            self.data.functions.clone(),
        )
    }

    /// Builds a catalog and its lookup indexes; assigns a fresh generation.
    pub fn new(
        database: String,
        schemas: Vec<String>,
        relations: Vec<Relation>,
        functions: Vec<CatalogFunction>,
    ) -> Catalog {
        Catalog::from_data(CatalogData {
            database,
            generation: 0,
            schemas,
            relations,
            functions,
        })
    }

    fn from_data(mut data: CatalogData) -> Catalog {
        data.generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        let relation_index = data
            .relations
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.schema.clone(), r.name.clone()), i))
            .collect();
        let mut function_index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, f) in data.functions.iter().enumerate() {
            function_index.entry(f.name.clone()).or_default().push(i);
        }
        Catalog {
            data,
            relation_index,
            function_index,
        }
    }

    /// Parses the JSON written by `catalog dump`.
    pub fn from_json(json: &str) -> Result<Catalog, CatalogError> {
        Ok(Catalog::from_data(serde_json::from_str(json)?))
    }

    /// Reads a catalog JSON file.
    pub fn from_file(path: &str) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::File {
            path: path.to_owned(),
            source,
        })?;
        Catalog::from_json(&text)
    }

    /// The JSON `catalog dump` writes.
    pub fn to_json(&self) -> Result<String, CatalogError> {
        Ok(serde_json::to_string_pretty(&self.data)?)
    }

    pub fn database(&self) -> &str {
        &self.data.database
    }

    /// Changes whenever the catalog is rebuilt; part of every cache key.
    pub fn generation(&self) -> u64 {
        self.data.generation
    }

    pub fn schemas(&self) -> &[String] {
        &self.data.schemas
    }

    pub fn relations(&self) -> &[Relation] {
        &self.data.relations
    }

    pub fn functions(&self) -> &[CatalogFunction] {
        &self.data.functions
    }

    pub fn relation(&self, schema: &str, name: &str) -> Option<&Relation> {
        self.relation_index
            .get(&(schema.to_owned(), name.to_owned()))
            .and_then(|&i| self.data.relations.get(i))
    }

    /// Resolves an unqualified relation name the way PostgreSQL does:
    /// pg_catalog first (unless listed explicitly), then the search_path.
    pub fn resolve_relation(&self, search_path: &[String], name: &str) -> Option<&Relation> {
        let implicit_catalog = !search_path.iter().any(|s| s == "pg_catalog");
        let implicit = implicit_catalog.then_some("pg_catalog");
        implicit
            .into_iter()
            .chain(search_path.iter().map(String::as_str))
            .find_map(|schema| self.relation(schema, name))
    }

    /// All functions with this name, in any schema.
    pub fn functions_named<'a>(
        &'a self,
        name: &str,
    ) -> impl Iterator<Item = &'a CatalogFunction> + 'a {
        self.function_index
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.data.functions.get(i))
    }

    /// Resolves a function call: explicit schema, else pg_catalog, else the
    /// search_path.
    pub fn resolve_function(
        &self,
        search_path: &[String],
        schema: Option<&str>,
        name: &str,
    ) -> Option<&CatalogFunction> {
        match schema {
            Some(schema) => self.functions_named(name).find(|f| f.schema == schema),
            None => std::iter::once("pg_catalog")
                .chain(search_path.iter().map(String::as_str))
                .find_map(|schema| self.functions_named(name).find(|f| f.schema == schema)),
        }
    }

    /// Reads the catalog of the database `client` is connected to.
    pub async fn load(client: &tokio_postgres::Client) -> Result<Catalog, CatalogError> {
        let database: String = client
            .query_one("SELECT current_database()::text", &[])
            .await?
            .try_get(0)?;
        let schemas = client
            .query(
                "SELECT nspname::text FROM pg_catalog.pg_namespace ORDER BY nspname",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<Vec<String>, _>>()?;
        let relation_rows = client
            .query(
                "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, \
                        CASE WHEN c.relkind IN ('v','m') THEN pg_catalog.pg_get_viewdef(c.oid) END \
                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                  WHERE c.relkind IN ('r','p','v','m','f','S') \
                    AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%' \
                  ORDER BY c.oid",
                &[],
            )
            .await?;
        let column_rows = client
            .query(
                "SELECT a.attrelid, a.attname::text, a.attnum, a.atttypid, t.typname::text \
                   FROM pg_catalog.pg_attribute a \
                   JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                   JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                  WHERE c.relkind IN ('r','p','v','m','f','S') AND a.attnum > 0 AND NOT a.attisdropped \
                  ORDER BY a.attrelid, a.attnum",
                &[],
            )
            .await?;
        let parent_rows = client
            .query(
                "SELECT i.inhrelid, pn.nspname::text, p.relname::text \
                   FROM pg_catalog.pg_inherits i \
                   JOIN pg_catalog.pg_class p ON p.oid = i.inhparent \
                   JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace \
                  ORDER BY i.inhrelid, i.inhseqno",
                &[],
            )
            .await?;
        let function_rows = client
            .query(
                "SELECT n.nspname::text, p.proname::text, l.lanname::text, \
                        p.provolatile::text, p.prokind::text, \
                        rt.typtype::text, rt.typname::text, \
                        CASE WHEN p.proargmodes && ARRAY['o','b','t']::\"char\"[] THEN \
                          ARRAY(SELECT coalesce(nullif(p.proargnames[i], ''), 'column' || i) \
                                  FROM generate_subscripts(p.proargmodes, 1) i \
                                 WHERE p.proargmodes[i] IN ('o','b','t') ORDER BY i) \
                        WHEN rt.typrelid <> 0 THEN \
                          ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a \
                                 WHERE a.attrelid = rt.typrelid AND a.attnum > 0 \
                                   AND NOT a.attisdropped ORDER BY a.attnum) END, \
                        coalesce(p.proargtypes[0] = p.prorettype, false) \
                   FROM pg_catalog.pg_proc p \
                   JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                   JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
                   JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype \
                  ORDER BY n.nspname, p.proname",
                &[],
            )
            .await?;

        let mut columns_by_relation: HashMap<u32, Vec<CatalogColumn>> = HashMap::new();
        for row in &column_rows {
            let relid: u32 = row.try_get(0)?;
            columns_by_relation
                .entry(relid)
                .or_default()
                .push(CatalogColumn {
                    name: row.try_get(1)?,
                    attnum: row.try_get(2)?,
                    type_oid: row.try_get(3)?,
                    type_name: row.try_get(4)?,
                });
        }
        let mut parents_by_relation: HashMap<u32, Vec<(String, String)>> = HashMap::new();
        for row in &parent_rows {
            let child: u32 = row.try_get(0)?;
            parents_by_relation
                .entry(child)
                .or_default()
                .push((row.try_get(1)?, row.try_get(2)?));
        }
        let mut relations = Vec::with_capacity(relation_rows.len());
        for row in &relation_rows {
            let oid: u32 = row.try_get(0)?;
            let relkind: String = row.try_get(3)?;
            let kind = match relkind.as_str() {
                "r" => RelationKind::Table,
                "p" => RelationKind::PartitionedTable,
                "v" => RelationKind::View,
                "m" => RelationKind::MaterializedView,
                "f" => RelationKind::ForeignTable,
                "S" => RelationKind::Sequence,
                _ => {
                    return Err(CatalogError::UnexpectedValue {
                        what: "relkind",
                        value: relkind,
                    })
                }
            };
            relations.push(Relation {
                oid,
                schema: row.try_get(1)?,
                name: row.try_get(2)?,
                kind,
                columns: columns_by_relation.remove(&oid).unwrap_or_default(),
                definition: row.try_get(4)?,
                parents: parents_by_relation.remove(&oid).unwrap_or_default(),
                view_lineage: OnceLock::new(),
            });
        }
        let functions = function_rows
            .iter()
            .map(|row| {
                Ok(CatalogFunction {
                    schema: row.try_get(0)?,
                    name: row.try_get(1)?,
                    language: row.try_get(2)?,
                    volatility: row.try_get(3)?,
                    kind: row.try_get(4)?,
                    result: function_result(
                        row.try_get(5)?,
                        row.try_get(6)?,
                        row.try_get(7)?,
                        row.try_get(8)?,
                    ),
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        Ok(Catalog::new(database, schemas, relations, functions))
    }
}

/// The FROM shape of a function from its return type (`typtype`, `typname`),
/// its OUT columns or composite attributes, and whether its first argument
/// has the return type.
fn function_result(
    typtype: String,
    typname: String,
    columns: Option<Vec<String>>,
    returns_first_argument: bool,
) -> FunctionResult {
    match (columns, typtype.as_str()) {
        (Some(columns), _) if !columns.is_empty() => FunctionResult::Columns(columns),
        (_, "p") if typname == "anyelement" && returns_first_argument => {
            FunctionResult::FirstArgumentType
        }
        (_, "p") if typname.starts_with("any") => FunctionResult::Polymorphic,
        // `void` is a pseudo-type that still yields one (NULL) column.
        (_, "b" | "e" | "r" | "m") => FunctionResult::Scalar,
        (_, "p") if typname == "void" => FunctionResult::Scalar,
        _ => FunctionResult::Unknown,
    }
}

/// Catalogs per database, refreshed after `ttl` or on `invalidate`.
///
/// The cache itself does no I/O: the session asks `get`, and when it returns
/// `None` loads a catalog over its catalog connection and calls `insert`.
#[derive(Debug)]
pub struct CatalogCache {
    ttl: Duration,
    entries: DashMap<String, CachedCatalog>,
}

#[derive(Debug, Clone)]
struct CachedCatalog {
    catalog: Arc<Catalog>,
    loaded_at: Instant,
}

impl CatalogCache {
    pub fn new(ttl: Duration) -> CatalogCache {
        CatalogCache {
            ttl,
            entries: DashMap::new(),
        }
    }

    /// The cached catalog of `database`, unless it is missing or expired.
    pub fn get(&self, database: &str) -> Option<Arc<Catalog>> {
        let entry = self.entries.get(database)?;
        (entry.loaded_at.elapsed() < self.ttl).then(|| Arc::clone(&entry.catalog))
    }

    pub fn insert(&self, catalog: Catalog) -> Arc<Catalog> {
        let catalog = Arc::new(catalog);
        self.entries.insert(
            catalog.database().to_owned(),
            CachedCatalog {
                catalog: Arc::clone(&catalog),
                loaded_at: Instant::now(),
            },
        );
        catalog
    }

    /// Forgets every database's catalog (SIGHUP).
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Forgets `database`'s catalog; the session calls it after DDL passed.
    pub fn invalidate(&self, database: &str) {
        self.entries.remove(database);
    }

    /// The cached catalog, or a fresh one from `client` (connected to
    /// `database`) when missing or expired.
    pub async fn get_or_load(
        &self,
        database: &str,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<Catalog>, CatalogError> {
        if let Some(catalog) = self.get(database) {
            return Ok(catalog);
        }
        let catalog = Catalog::load(client).await?;
        Ok(self.insert(catalog))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        Catalog::new(
            "bank".into(),
            vec!["public".into()],
            vec![Relation {
                oid: 1,
                schema: "public".into(),
                name: "t".into(),
                kind: RelationKind::Table,
                columns: vec![CatalogColumn {
                    name: "a".into(),
                    attnum: 1,
                    type_oid: 25,
                    type_name: "text".into(),
                }],
                definition: None,
                parents: Vec::new(),
                view_lineage: OnceLock::new(),
            }],
            vec![CatalogFunction {
                schema: "public".into(),
                name: "f".into(),
                language: "sql".into(),
                volatility: "v".into(),
                kind: "f".into(),
                result: FunctionResult::Scalar,
            }],
        )
    }

    #[test]
    fn json_round_trip_gets_a_new_generation() {
        let catalog = sample();
        let json = match catalog.to_json() {
            Ok(j) => j,
            Err(e) => panic!("{e}"),
        };
        let again = match Catalog::from_json(&json) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_ne!(again.generation(), catalog.generation());
        assert!(again.resolve_relation(&["public".into()], "t").is_some());
        assert!(again
            .resolve_function(&["public".into()], None, "f")
            .is_some());
    }

    #[test]
    fn cache_invalidates_per_database() {
        let cache = CatalogCache::new(Duration::from_secs(60));
        cache.insert(sample());
        assert!(cache.get("bank").is_some());
        cache.invalidate("bank");
        assert!(cache.get("bank").is_none());
        let expired = CatalogCache::new(Duration::ZERO);
        expired.insert(sample());
        assert!(expired.get("bank").is_none());
    }
}
