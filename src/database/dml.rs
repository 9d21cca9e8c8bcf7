//! `UPDATE` and `DELETE` of a keyed table: the rows they touch are found by a query over the
//! table's current rows (DataFusion plans the `WHERE` and the new values, casts included),
//! then written as one changelog statement ([`crate::table`]), so a crash leaves all of it or
//! none. A table without a primary key only takes new rows.

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use futures::TryStreamExt;
use sqlparser::ast::{
    AssignmentTarget, Delete, FromTable, Statement as SqlStatement, TableFactor, TableWithJoins,
    Update,
};

use super::{Database, Output, ddl, privileges};
use crate::catalog::roles::{Principal, Privilege};
use crate::catalog::table::TableDef;
use crate::error::{Error, Result};
use crate::sql::parser::table_name;
use crate::sql::{Statement, normalize_ident, quote_ident};
use crate::table::{KeyedTable, Write};

pub async fn update(
    db: &Database,
    update: &Update,
    principal: &Principal,
    params: Option<ParamValues>,
) -> Result<Output> {
    if update.from.is_some()
        || update.returning.is_some()
        || update.limit.is_some()
        || !update.order_by.is_empty()
    {
        return Err(Error::unsupported(
            "UPDATE with FROM, RETURNING, ORDER BY or LIMIT",
            Some("Write UPDATE table SET column = value, … WHERE condition."),
        ));
    }
    let (def, keyed) = target(db, &update.table, Privilege::Update, principal)?;
    let query = update_query(&def, update)?;
    let found = select(db, &query, principal, params).await?;
    let width = def.primary_key.len();
    let old_keys = project(&found, 0..width)?;
    let new_rows = project(&found, width..found.num_columns())?;
    // Keys that changed lose their old row first; then every new row is written.
    let new_keys = project(&new_rows, keyed.key_columns().iter().copied())?;
    let moved = key_changed(&old_keys, &new_keys)?;
    let deletes = filter_record_batch(&old_keys, &moved)?;
    let matched = found.num_rows() as u64;
    write(
        db,
        &keyed,
        vec![(Write::Delete, deletes), (Write::Upsert, new_rows)],
    )
    .await?;
    Ok(Output::Command {
        tag: "UPDATE",
        rows: Some(matched),
    })
}

pub async fn delete(
    db: &Database,
    delete: &Delete,
    principal: &Principal,
    params: Option<ParamValues>,
) -> Result<Output> {
    let tables = match &delete.from {
        FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => tables,
    };
    let ([table], None, None, true, None) = (
        tables.as_slice(),
        &delete.using,
        &delete.returning,
        delete.order_by.is_empty(),
        &delete.limit,
    ) else {
        return Err(Error::unsupported(
            "DELETE of several tables, or with USING, RETURNING, ORDER BY or LIMIT",
            Some("Write DELETE FROM table WHERE condition."),
        ));
    };
    let (def, keyed) = target(db, table, Privilege::Delete, principal)?;
    let query = delete_query(&def, table, delete);
    let keys = select(db, &query, principal, params).await?;
    let matched = keys.num_rows() as u64;
    write(db, &keyed, vec![(Write::Delete, keys)]).await?;
    Ok(Output::Command {
        tag: "DELETE",
        rows: Some(matched),
    })
}

/// The query finding what an `UPDATE` changes: the old key, then the new row (each assigned
/// value cast to its column's type).
fn update_query(def: &TableDef, update: &Update) -> Result<String> {
    let mut values: Vec<Option<String>> = vec![None; def.columns.len()];
    for assignment in &update.assignments {
        let AssignmentTarget::ColumnName(name) = &assignment.target else {
            return Err(Error::unsupported(
                "UPDATE of a tuple of columns",
                Some("Assign each column on its own: SET a = 1, b = 2."),
            ));
        };
        let column = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(normalize_ident)
            .unwrap_or_default();
        let i = def
            .columns
            .iter()
            .position(|c| c.name == column)
            .ok_or_else(|| Error::UndefinedColumn {
                name: column.clone(),
            })?;
        if values[i]
            .replace(format!(
                "CAST(({}) AS {})",
                assignment.value, def.columns[i].column_type.pg_name
            ))
            .is_some()
        {
            return Err(Error::Syntax(format!(
                "multiple assignments to same column \"{column}\""
            )));
        }
    }
    let new_row: Vec<String> = def
        .columns
        .iter()
        .zip(values)
        .map(|(c, value)| value.unwrap_or_else(|| quote_ident(&c.name)))
        .collect();
    Ok(format!(
        "SELECT {}, {} FROM {}{}",
        key_list(def),
        new_row.join(", "),
        update.table,
        where_clause(&update.selection)
    ))
}

/// The query finding the keys a `DELETE` removes.
fn delete_query(def: &TableDef, table: &TableWithJoins, delete: &Delete) -> String {
    format!(
        "SELECT {} FROM {table}{}",
        key_list(def),
        where_clause(&delete.selection)
    )
}

/// The plan of the query an `UPDATE` or `DELETE` runs, for the types of its parameters when
/// it is prepared; `None` for other statements, or one that will fail when run.
pub async fn parameters_plan(db: &Database, statement: &SqlStatement) -> Option<LogicalPlan> {
    let query = match statement {
        SqlStatement::Update(update) => {
            let def = table_of(db, &update.table).ok()?;
            update_query(&def, update).ok()?
        }
        SqlStatement::Delete(delete) => {
            let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) =
                &delete.from;
            let table = tables.first()?;
            let def = table_of(db, table).ok()?;
            delete_query(&def, table, delete)
        }
        _ => return None,
    };
    let Some(Statement::Standard(query)) = crate::sql::parser::parse(&query).ok()?.pop() else {
        return None;
    };
    db.plan(&query).await.ok()
}

fn table_of(db: &Database, table: &TableWithJoins) -> Result<TableDef> {
    let TableFactor::Table { name, .. } = &table.relation else {
        return Err(Error::unsupported(format!("writing to {table}"), None));
    };
    ddl::table(db.storage(), &table_name(name)?)
}

/// The keyed table a statement changes, after checking the caller holds `privilege` (the
/// statement's: UPDATE or DELETE) on it; the query finding the rows needs SELECT too.
fn target(
    db: &Database,
    table: &TableWithJoins,
    privilege: Privilege,
    principal: &Principal,
) -> Result<(TableDef, std::sync::Arc<KeyedTable>)> {
    let statement = privilege.name();
    if !table.joins.is_empty() {
        return Err(Error::unsupported(format!("{statement} with a join"), None));
    }
    let def = table_of(db, table)?;
    privileges::require(&db.storage().manifest(), principal, &def.name, privilege)?;
    let keyed = db.keyed_tables().get(&def)?.ok_or_else(|| {
        Error::unsupported(
            format!(
                "{statement} on table \"{}\", which has no primary key",
                def.name
            ),
            Some(
                "Rows of a table without a PRIMARY KEY are only appended: create the table \
                 with one (CREATE TABLE t (id INT PRIMARY KEY, …)) to update or delete by key.",
            ),
        )
    })?;
    Ok((def, keyed))
}

fn key_list(def: &TableDef) -> String {
    def.primary_key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ")
}

fn where_clause(selection: &Option<sqlparser::ast::Expr>) -> String {
    match selection {
        Some(condition) => format!(" WHERE {condition}"),
        None => String::new(),
    }
}

/// Runs the query finding the rows a statement touches, as one batch.
async fn select(
    db: &Database,
    query: &str,
    principal: &Principal,
    params: Option<ParamValues>,
) -> Result<RecordBatch> {
    let Some(Statement::Standard(statement)) = crate::sql::parser::parse(query)?.pop() else {
        return Err(Error::Internal(format!("not a query: {query}")));
    };
    let statement: SqlStatement = *statement;
    let rows = db.query(&statement, params, principal).await?;
    let schema = rows.schema();
    let batches: Vec<RecordBatch> = rows.try_collect().await?;
    Ok(concat_batches(&schema, &batches)?)
}

fn project(batch: &RecordBatch, columns: impl Iterator<Item = usize>) -> Result<RecordBatch> {
    Ok(batch.project(&columns.collect::<Vec<_>>())?)
}

/// Per row, whether its key differs between `old` and `new` (same columns, same order).
fn key_changed(
    old: &RecordBatch,
    new: &RecordBatch,
) -> Result<datafusion::arrow::array::BooleanArray> {
    let converter = RowConverter::new(
        old.schema()
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )?;
    let new: Vec<_> = new
        .columns()
        .iter()
        .zip(old.columns())
        .map(|(n, o)| datafusion::arrow::compute::cast(n, o.data_type()))
        .collect::<std::result::Result<_, _>>()?;
    let old = converter.convert_columns(old.columns())?;
    let new = converter.convert_columns(&new)?;
    Ok((0..old.num_rows())
        .map(|i| Some(old.row(i) != new.row(i)))
        .collect())
}

/// Writes the deletes and upserts as one changelog statement.
async fn write(
    db: &Database,
    keyed: &std::sync::Arc<KeyedTable>,
    parts: Vec<(Write, RecordBatch)>,
) -> Result<()> {
    let parts: Vec<(Write, RecordBatch)> = parts
        .into_iter()
        .filter(|(_, batch)| batch.num_rows() > 0)
        .collect();
    keyed.write_parts(db.storage(), parts).await?;
    Ok(())
}
