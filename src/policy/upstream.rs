//! `pgveil check --upstream`: the compiled set against a live catalog.
//! Missing relations, columns and type misfits are errors; roles that don't
//! exist are warnings (they may be created later, and until then the rule
//! simply never matches).

use std::collections::{HashMap, HashSet};

use super::compile::PolicySet;
use super::error::{PolicyError, PolicyErrors, Problem};
use crate::analyze::policy_view::{ColumnAction, QualifiedColumn};

/// The parts of the upstream catalog a policy refers to.
#[derive(Debug, Default)]
pub struct UpstreamCatalog {
    /// `(schema, relation)` of tables, views, materialized views, foreign
    /// and partitioned tables.
    pub relations: HashSet<(String, String)>,
    /// Column -> `pg_type.typname` (a domain's base type).
    pub column_types: HashMap<QualifiedColumn, String>,
    pub roles: HashSet<String>,
    pub functions: HashSet<(String, String)>,
    /// Stored generated columns and the columns their expression reads.
    pub generated: Vec<(QualifiedColumn, Vec<QualifiedColumn>)>,
}

impl UpstreamCatalog {
    pub async fn load(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let mut catalog = UpstreamCatalog::default();
        for row in client
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')",
                &[],
            )
            .await?
        {
            catalog.relations.insert((row.try_get(0)?, row.try_get(1)?));
        }
        for row in client
            .query(
                "SELECT n.nspname::text, c.relname::text, a.attname::text, \
                        COALESCE(b.typname, t.typname)::text \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 LEFT JOIN pg_catalog.pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype \
                 WHERE a.attnum > 0 AND NOT a.attisdropped \
                   AND c.relkind IN ('r', 'v', 'm', 'f', 'p')",
                &[],
            )
            .await?
        {
            catalog.column_types.insert(
                QualifiedColumn {
                    schema: row.try_get(0)?,
                    table: row.try_get(1)?,
                    column: row.try_get(2)?,
                },
                row.try_get(3)?,
            );
        }
        // A generated column's expression (pg_attrdef) depends on the
        // columns it reads (pg_depend; PostgreSQL 15 records it so).
        for row in client
            .query(
                "SELECT n.nspname::text, c.relname::text, a.attname::text, r.attname::text \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
                 JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass \
                  AND d.objid = ad.oid \
                  AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = a.attrelid \
                  AND d.refobjsubid > 0 AND d.refobjsubid <> a.attnum \
                 JOIN pg_catalog.pg_attribute r ON r.attrelid = a.attrelid AND r.attnum = d.refobjsubid \
                 WHERE a.attgenerated <> '' AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY 1, 2, 3, 4",
                &[],
            )
            .await?
        {
            let column = |i: usize| -> Result<QualifiedColumn, tokio_postgres::Error> {
                Ok(QualifiedColumn {
                    schema: row.try_get(0)?,
                    table: row.try_get(1)?,
                    column: row.try_get(i)?,
                })
            };
            let (generated, read) = (column(2)?, column(3)?);
            match catalog.generated.last_mut() {
                Some((g, reads)) if *g == generated => reads.push(read),
                _ => catalog.generated.push((generated, vec![read])),
            }
        }
        for row in client
            .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
            .await?
        {
            catalog.roles.insert(row.try_get(0)?);
        }
        for row in client
            .query(
                "SELECT n.nspname::text, p.proname::text FROM pg_catalog.pg_proc p \
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace",
                &[],
            )
            .await?
        {
            catalog.functions.insert((row.try_get(0)?, row.try_get(1)?));
        }
        Ok(catalog)
    }
}

/// Connects without TLS (a DBA's check, usually from inside the network) and
/// checks the set against the catalog.
pub async fn check_against(
    set: &PolicySet,
    url: &str,
) -> Result<PolicyErrors, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let catalog = UpstreamCatalog::load(&client).await;
    drop(client);
    let _ = driver.await;
    Ok(check_catalog(set, &catalog?))
}

/// The pure part of the upstream check.
pub fn check_catalog(set: &PolicySet, catalog: &UpstreamCatalog) -> PolicyErrors {
    let mut findings = Vec::new();
    let mut columns: Vec<_> = set.columns.iter().collect();
    columns.sort_by_key(|(_, c)| (c.location.file.clone(), c.location.line));
    for (name, column) in columns {
        let display = format!("{}.{}.{}", name.schema, name.table, name.column);
        let Some(type_name) = catalog.column_types.get(name) else {
            let missing = if catalog
                .relations
                .contains(&(name.schema.clone(), name.table.clone()))
            {
                format!("column `{display}` does not exist in the upstream database")
            } else {
                format!(
                    "table `{}.{}` of column `{display}` does not exist in the upstream database",
                    name.schema, name.table
                )
            };
            findings.push(PolicyError::new(
                column.location.clone(),
                Problem::Upstream(missing),
            ));
            continue;
        };
        let outcomes =
            std::iter::once(&column.default).chain(column.rules.iter().map(|r| &r.outcome));
        for outcome in outcomes {
            if let ColumnAction::Mask { mask_id, mask_name } = &outcome.action {
                if !set.mask(*mask_id).accepts_type(type_name) {
                    findings.push(PolicyError::new(
                        set.mask_locations[*mask_id].clone(),
                        Problem::TypeMismatch {
                            mask: mask_name.clone(),
                            column: display.clone(),
                            type_name: type_name.clone(),
                        },
                    ));
                }
            }
        }
    }
    // A stored generated column computed from a protected column is a copy
    // of (part of) its value that no rule protects: `left(id_number, 6)`
    // reaches every role in clear.
    for (generated, reads) in &catalog.generated {
        if set.columns.contains_key(generated) {
            continue;
        }
        for read in reads {
            let Some(column) = set.columns.get(read) else {
                continue;
            };
            findings.push(PolicyError::warning(
                column.location.clone(),
                Problem::Upstream(format!(
                    "generated column `{}.{}.{}` is computed from protected column `{}.{}.{}` \
                     and has no rule of its own, so every role reads it in clear: give it \
                     an entry under columns (a mask or action: deny)",
                    generated.schema,
                    generated.table,
                    generated.column,
                    read.schema,
                    read.table,
                    read.column
                )),
            ));
        }
    }
    for ((schema, table), entry) in &set.tables {
        if !catalog.relations.contains(&(schema.clone(), table.clone())) {
            findings.push(PolicyError::new(
                entry.location.clone(),
                Problem::Upstream(format!(
                    "table `{schema}.{table}` does not exist in the upstream database"
                )),
            ));
        }
    }
    for ((schema, function), location) in &set.function_locations {
        if !catalog
            .functions
            .contains(&(schema.clone(), function.clone()))
        {
            findings.push(PolicyError::warning(
                location.clone(),
                Problem::Upstream(format!(
                    "function `{schema}.{function}` does not exist in the upstream database"
                )),
            ));
        }
    }
    for (role, location) in &set.role_locations {
        if !catalog.roles.contains(role) {
            findings.push(PolicyError::warning(
                location.clone(),
                Problem::UnknownRole(role.clone()),
            ));
        }
    }
    PolicyErrors(findings)
}
