//! A table's definition as the catalog keeps it, and its SQL text for `SHOW CREATE TABLE`.

use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::sql::{ColumnDef, CreateTable, Watermark, arrow_schema, columns_sql, quote_ident};

/// What `CREATE TABLE` declared. The identifier `id` is unique for the life of the storage, so a
/// table dropped and created again under the same name never sees the old table's files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableDef {
    pub id: u64,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<Watermark>,
    pub append_only: bool,
    /// `PRIMARY KEY` columns: each key has one row, which INSERT overwrites and UPDATE and
    /// DELETE change. Empty: rows are only appended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
}

impl TableDef {
    pub fn new(id: u64, create: CreateTable) -> Self {
        TableDef {
            id,
            name: create.name,
            columns: create.columns,
            watermark: create.watermark,
            append_only: create.append_only,
            primary_key: create.primary_key,
        }
    }

    /// The positions of the primary key's columns, in key order.
    pub fn key_columns(&self) -> crate::error::Result<Vec<usize>> {
        let schema = self.schema();
        Ok(self
            .primary_key
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }

    pub fn schema(&self) -> SchemaRef {
        arrow_schema(&self.columns)
    }

    /// Whether its rows change by key (it has a primary key).
    pub fn keyed(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// The statement that creates this table again, in canonical form.
    pub fn create_sql(&self) -> String {
        let append_only = if self.append_only { " APPEND ONLY" } else { "" };
        let key = match self.keyed() {
            true => format!(
                ", PRIMARY KEY ({})",
                self.primary_key
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            false => String::new(),
        };
        format!(
            "CREATE TABLE {} ({}{key}){append_only}",
            quote_ident(&self.name),
            columns_sql(&self.columns, self.watermark.as_ref())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Statement, parser::parse};

    #[test]
    fn a_keyed_table_parses_back_with_its_key_not_null() {
        let sql = "CREATE TABLE c (id INT, region TEXT, name TEXT, PRIMARY KEY (region, id))";
        let Some(Statement::CreateTable(create)) = parse(sql).unwrap().pop() else {
            panic!()
        };
        let def = TableDef::new(1, create);
        assert_eq!(def.primary_key, ["region", "id"]);
        assert!(!def.columns[0].nullable && !def.columns[1].nullable && def.columns[2].nullable);
        let Some(Statement::CreateTable(again)) = parse(&def.create_sql()).unwrap().pop() else {
            panic!()
        };
        assert_eq!(TableDef::new(1, again), def);
        for bad in [
            "CREATE TABLE c (id INT PRIMARY KEY, k INT, PRIMARY KEY (k))",
            "CREATE TABLE c (id INT, PRIMARY KEY (nope))",
            "CREATE TABLE c (id INT PRIMARY KEY) APPEND ONLY",
            "CREATE TABLE c (id INT, UNIQUE (id))",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_sql_parses_back_to_the_same_table() {
        let sql = "CREATE TABLE \"Mixed\" (id BIGINT NOT NULL, price NUMERIC(10,2), at TIMESTAMPTZ, \
                   WATERMARK FOR at AS at - INTERVAL '5' SECOND) APPEND ONLY";
        let Some(Statement::CreateTable(create)) = parse(sql).unwrap().pop() else {
            panic!()
        };
        let def = TableDef::new(7, create);
        let Some(Statement::CreateTable(again)) = parse(&def.create_sql()).unwrap().pop() else {
            panic!()
        };
        assert_eq!(TableDef::new(7, again), def);
    }
}
