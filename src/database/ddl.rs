//! Statements that change or describe the catalog: CREATE/DROP TABLE and SOURCE, and SHOW.
//!
//! Each change is one manifest commit, so it is all-or-nothing and visible to every session once
//! it returns.

use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use sqlparser::ast::{Ident, ObjectName, ShowCreateObject, Statement as SqlStatement};

use super::Output;
use crate::catalog::source::SourceDef;
use crate::catalog::table::TableDef;
use crate::error::{Error, Result};
use crate::source::Sources;
use crate::source::kafka;
use crate::source::options::{Connector, SourceSettings, canonical_options};
use crate::sql::parser::{check_unique, table_name};
use crate::sql::{CreateSource, CreateTable, Statement, normalize_ident};
use crate::storage::{SourceState, Storage, TableState};

pub async fn create_table(storage: &Storage, create: CreateTable) -> Result<Output> {
    let done = Output::Command {
        tag: "CREATE TABLE",
        rows: None,
    };
    // IF NOT EXISTS on an existing table changes nothing, so it commits nothing.
    if create.if_not_exists && storage.manifest().has_relation(&create.name) {
        return Ok(done);
    }
    storage
        .commit(move |m| {
            if m.has_relation(&create.name) {
                return match create.if_not_exists {
                    true => Ok(()),
                    false => Err(Error::DuplicateRelation {
                        kind: "relation",
                        name: create.name,
                    }),
                };
            }
            let def = TableDef::new(m.next_table_id, create);
            m.next_table_id += 1;
            m.tables.insert(
                def.name.clone(),
                TableState {
                    def,
                    files: Vec::new(),
                },
            );
            Ok(())
        })
        .await?;
    Ok(done)
}

pub async fn drop_tables(
    storage: &Storage,
    names: &[ObjectName],
    if_exists: bool,
) -> Result<Output> {
    let names: Vec<String> = names.iter().map(table_name).collect::<Result<_>>()?;
    let mut dropped = Vec::new();
    storage
        .commit(|m| {
            for name in &names {
                match m.tables.remove(name) {
                    Some(state) => dropped.push(state),
                    None if if_exists => {}
                    None => {
                        return Err(Error::UndefinedRelation {
                            kind: "table",
                            name: name.clone(),
                        });
                    }
                }
            }
            Ok(())
        })
        .await?;
    for state in &dropped {
        storage.delete_files(&state.files).await;
    }
    Ok(Output::Command {
        tag: "DROP TABLE",
        rows: None,
    })
}

pub async fn create_source(
    storage: &Storage,
    sources: &Sources,
    create: CreateSource,
) -> Result<Output> {
    let done = Output::Command {
        tag: "CREATE SOURCE",
        rows: None,
    };
    if create.if_not_exists && storage.manifest().has_relation(&create.name) {
        return Ok(done);
    }
    let mut def = SourceDef {
        id: 0,
        options: canonical_options(&create)?,
        name: create.name,
        columns: create.columns,
        watermark: create.watermark,
        includes: create.includes,
        created_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    check_unique(&def.all_columns())?;
    let settings = SourceSettings::from_def(&def)?;
    if let Connector::Kafka(kafka) = &settings.connector {
        kafka::check_topic(&def.name, kafka).await?;
    }
    let if_not_exists = create.if_not_exists;
    let mut created = None;
    storage
        .commit(|m| {
            if m.has_relation(&def.name) {
                return match if_not_exists {
                    true => Ok(()),
                    false => Err(Error::DuplicateRelation {
                        kind: "relation",
                        name: def.name.clone(),
                    }),
                };
            }
            def.id = m.next_table_id;
            m.next_table_id += 1;
            m.sources.insert(
                def.name.clone(),
                SourceState {
                    def: def.clone(),
                    files: Vec::new(),
                    offsets: Default::default(),
                },
            );
            created = Some(def.clone());
            Ok(())
        })
        .await?;
    if let Some(def) = created {
        tracing::info!(source = %def.name, connector = def.options.get("connector").map(String::as_str).unwrap_or_default(), "source created");
        sources.start(def);
    }
    Ok(done)
}

pub async fn drop_sources(
    storage: &Storage,
    sources: &Sources,
    names: &[String],
    if_exists: bool,
) -> Result<Output> {
    let mut dropped = Vec::new();
    storage
        .commit(|m| {
            for name in names {
                match m.sources.remove(name) {
                    Some(state) => dropped.push(state),
                    None if if_exists => {}
                    None => {
                        return Err(Error::UndefinedRelation {
                            kind: "source",
                            name: name.clone(),
                        });
                    }
                }
            }
            Ok(())
        })
        .await?;
    for state in &dropped {
        sources.remove(&state.def.name);
        storage.delete_files(&state.files).await;
        tracing::info!(source = %state.def.name, "source dropped");
    }
    Ok(Output::Command {
        tag: "DROP SOURCE",
        rows: None,
    })
}

/// `SHOW SOURCES` and `SHOW CREATE SOURCE` as plans, like [`show`].
pub fn show_sources(storage: &Storage, statement: &Statement) -> Result<Option<LogicalPlan>> {
    let manifest = storage.manifest();
    match statement {
        Statement::ShowSources => rows_plan(
            &["name", "connector"],
            manifest
                .sources
                .values()
                .map(|s| {
                    let connector = s.def.options.get("connector").cloned().unwrap_or_default();
                    vec![s.def.name.clone(), connector]
                })
                .collect(),
        )
        .map(Some),
        Statement::ShowCreateSource(name) => {
            let state = manifest
                .source(name)
                .ok_or_else(|| Error::UndefinedRelation {
                    kind: "source",
                    name: name.clone(),
                })?;
            rows_plan(
                &["name", "create_sql"],
                vec![vec![name.clone(), state.def.create_sql()]],
            )
            .map(Some)
        }
        _ => Ok(None),
    }
}

/// The definition of an existing table.
pub fn table(storage: &Storage, name: &str) -> Result<TableDef> {
    storage
        .manifest()
        .table(name)
        .map(|state| state.def.clone())
        .ok_or_else(|| Error::UndefinedRelation {
            kind: "relation",
            name: name.to_string(),
        })
}

/// Positions of the named columns (all columns when none are named).
pub fn column_indices(table: &TableDef, columns: &[Ident]) -> Result<Vec<usize>> {
    if columns.is_empty() {
        return Ok((0..table.columns.len()).collect());
    }
    columns
        .iter()
        .map(|ident| {
            let name = normalize_ident(ident);
            table
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or(Error::UndefinedColumn { name })
        })
        .collect()
}

/// `SHOW TABLES`, `SHOW CREATE TABLE` and `DESCRIBE` of our relations as plans over in-memory rows, so they describe and
/// execute like any query. `None` for every other statement.
pub fn show(storage: &Storage, stmt: &SqlStatement) -> Result<Option<LogicalPlan>> {
    let manifest = storage.manifest();
    let (columns, rows): (&[&str], Vec<Vec<String>>) = match stmt {
        SqlStatement::ShowTables { .. } => (
            &["name"],
            manifest
                .tables
                .keys()
                .map(|name| vec![name.clone()])
                .collect(),
        ),
        SqlStatement::ExplainTable { table_name: t, .. } => {
            // Our relations list their Postgres types; anything else is DataFusion's to describe.
            let Ok(name) = table_name(t) else {
                return Ok(None);
            };
            let columns = match (manifest.table(&name), manifest.source(&name)) {
                (Some(table), _) => table.def.columns.clone(),
                (None, Some(source)) => source.def.all_columns(),
                (None, None) => return Ok(None),
            };
            (
                &["column_name", "data_type", "is_nullable"],
                columns
                    .iter()
                    .map(|c| {
                        let nullable = if c.nullable { "YES" } else { "NO" };
                        vec![
                            c.name.clone(),
                            c.column_type.pg_name.clone(),
                            nullable.into(),
                        ]
                    })
                    .collect(),
            )
        }
        SqlStatement::ShowCreate {
            obj_type: ShowCreateObject::Table,
            obj_name,
        } => {
            let name = table_name(obj_name)?;
            let def = table(storage, &name)?;
            (&["name", "create_sql"], vec![vec![name, def.create_sql()]])
        }
        _ => return Ok(None),
    };
    rows_plan(columns, rows).map(Some)
}

/// A plan over in-memory text rows, so answers describe and execute like any query.
fn rows_plan(columns: &[&str], rows: Vec<Vec<String>>) -> Result<LogicalPlan> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays = (0..columns.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r[i]))) as _)
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let table = MemTable::try_new(schema, vec![vec![batch]])?;
    Ok(LogicalPlanBuilder::scan("show", provider_as_source(Arc::new(table)), None)?.build()?)
}
