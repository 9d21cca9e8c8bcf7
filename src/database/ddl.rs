//! Statements that change or describe the catalog: CREATE/DROP TABLE and SHOW.
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
use crate::catalog::table::TableDef;
use crate::error::{Error, Result};
use crate::sql::parser::table_name;
use crate::sql::{CreateTable, normalize_ident};
use crate::storage::{Storage, TableState};

pub async fn create_table(storage: &Storage, create: CreateTable) -> Result<Output> {
    let done = Output::Command {
        tag: "CREATE TABLE",
        rows: None,
    };
    // IF NOT EXISTS on an existing table changes nothing, so it commits nothing.
    if create.if_not_exists && storage.manifest().table(&create.name).is_some() {
        return Ok(done);
    }
    storage
        .commit(move |m| {
            if m.tables.contains_key(&create.name) {
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

/// `SHOW TABLES` and `SHOW CREATE TABLE` as plans over in-memory rows, so they describe and
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
    let plan =
        LogicalPlanBuilder::scan("show", provider_as_source(Arc::new(table)), None)?.build()?;
    Ok(Some(plan))
}
