//! SluiceDB's SQL: the statements we add to Postgres/DataFusion SQL and how we read them.
//!
//! [`parser`] turns text into [`Statement`]s: our DDL (`CREATE TABLE … WATERMARK FOR … APPEND
//! ONLY`, `FLUSH`) is parsed by our sqlparser extension; everything else stays a sqlparser
//! statement, passed through Postgres' rewrites ([`crate::pg`]) so what psql, drivers and BI
//! tools send plans in DataFusion. [`copy`] decodes `COPY FROM STDIN` payloads.
//! Nothing here executes anything.

pub mod copy;
pub mod depth;
pub mod interval;
#[cfg(test)]
pub(crate) mod mutate;
pub mod parser;
pub mod source;
pub mod view;

pub use crate::catalog::types::{ColumnDef, arrow_schema};
use datafusion::arrow::datatypes::SchemaRef;

use crate::catalog::types::ColumnType;

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Statement {
    CreateTable(CreateTable),
    CreateSource(CreateSource),
    /// `DROP SOURCE [IF EXISTS] name, … [CASCADE | RESTRICT]`.
    DropSource {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    CreateView(CreateView),
    /// `EXPLAIN CREATE MATERIALIZED VIEW …`: the streaming plan, nothing created.
    ExplainView(CreateView),
    /// `DROP MATERIALIZED VIEW [IF EXISTS] name, … [CASCADE | RESTRICT]`.
    DropView {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// `ALTER MATERIALIZED VIEW name SET (retention = …) | RESET (retention) | REBUILD`.
    AlterView {
        name: String,
        action: AlterView,
    },
    /// `ALTER SOURCE name RESET OFFSETS TO EARLIEST | LATEST`: where its stopped partitions
    /// (offsets out of the broker's range) go on.
    ResetSourceOffsets {
        name: String,
        to: crate::source::kafka::ResetTo,
    },
    /// `SHOW MATERIALIZED VIEWS`.
    ShowViews,
    /// `SHOW CREATE MATERIALIZED VIEW name`.
    ShowCreateView(String),
    /// `SHOW SOURCES`.
    ShowSources,
    /// `SHOW CREATE SOURCE name`.
    ShowCreateSource(String),
    /// `FLUSH`: wait until every row written so far is durable and visible.
    Flush,
    /// Anything plain Postgres/DataFusion SQL can say: queries, INSERT, DROP, SHOW, COPY, SET…
    Standard(Box<sqlparser::ast::Statement>),
}

/// `CREATE TABLE name (columns…, [WATERMARK FOR col AS expr]) [APPEND ONLY]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<Watermark>,
    pub append_only: bool,
    /// `PRIMARY KEY` columns; empty: the table has no key.
    pub primary_key: Vec<String>,
}

/// `CREATE SOURCE name (columns…, [WATERMARK …]) [INCLUDE …] WITH (options) [FORMAT … ENCODE …]`.
/// `CREATE MATERIALIZED VIEW [IF NOT EXISTS] name [WITH (retention = …)] AS query
/// [EMIT ON WINDOW CLOSE] [WITH (retention = …)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateView {
    pub name: String,
    pub if_not_exists: bool,
    pub query: Box<sqlparser::ast::Query>,
    pub emit_on_close: bool,
    /// How long closed windows are kept, as written (`'30 days'`); `None` keeps them all.
    pub retention: Option<String>,
    /// How long its joins keep a row not written again, as written (`'1 hour'`, Flink's
    /// `table.exec.state.ttl`); `None` keeps rows while they exist.
    pub state_ttl: Option<String>,
}

/// What `ALTER MATERIALIZED VIEW` changes.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterView {
    /// `SET (retention = '7 days')`, or `RESET (retention)` as `None`.
    Retention(Option<String>),
    /// `REBUILD`: forget the view's state and results and compute them again from its input.
    Rebuild,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSource {
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<Watermark>,
    pub includes: Vec<Include>,
    /// `WITH (…)` as written: keys lowercased, values unquoted, in order.
    pub options: Vec<(String, String)>,
    /// `FORMAT PLAIN ENCODE JSON` as (`plain`, `json`).
    pub format: Option<(String, String)>,
    /// The `PRIMARY KEY` of a table fed by a connector (`CREATE TABLE … WITH (connector = …)`),
    /// whose records change rows by key; empty for a source.
    pub primary_key: Vec<String>,
}

/// `INCLUDE partition AS kafka_partition`: message metadata as an extra column.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Include {
    pub kind: IncludeKind,
    pub column: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncludeKind {
    Partition,
    Offset,
    Timestamp,
    Key,
}

impl IncludeKind {
    pub fn keyword(self) -> &'static str {
        match self {
            IncludeKind::Partition => "partition",
            IncludeKind::Offset => "offset",
            IncludeKind::Timestamp => "timestamp",
            IncludeKind::Key => "key",
        }
    }

    /// The column type the metadata is exposed as.
    pub fn column_type(self) -> ColumnType {
        let name = match self {
            IncludeKind::Partition => "integer",
            IncludeKind::Offset => "bigint",
            IncludeKind::Timestamp => "timestamptz",
            IncludeKind::Key => "bytea",
        };
        ColumnType::from_name(name).expect("metadata column types are known")
    }
}

/// `WATERMARK FOR column AS column - INTERVAL …`: event time and how late events may arrive.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    pub column: String,
    /// How far the watermark trails the largest event time seen.
    pub delay_ms: i64,
    /// The expression as written, for `SHOW CREATE TABLE`.
    pub expr_sql: String,
}

impl CreateTable {
    pub fn arrow_schema(&self) -> SchemaRef {
        arrow_schema(&self.columns)
    }
}

/// Column definitions and the watermark clause as `CREATE` text, in canonical form.
pub fn columns_sql(columns: &[ColumnDef], watermark: Option<&Watermark>) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let not_null = if c.nullable { "" } else { " NOT NULL" };
            format!(
                "{} {}{not_null}",
                quote_ident(&c.name),
                c.column_type.pg_name.to_uppercase()
            )
        })
        .collect();
    if let Some(w) = watermark {
        parts.push(format!(
            "WATERMARK FOR {} AS {}",
            quote_ident(&w.column),
            w.expr_sql
        ));
    }
    parts.join(", ")
}

/// Postgres folds unquoted identifiers to lowercase; quoted ones keep their case.
pub fn normalize_ident(ident: &sqlparser::ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// A string literal for SQL text: `it's` → `'it''s'`.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Quotes an identifier for SQL text when Postgres would need it.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && KEYWORDS.binary_search(&name).is_err();
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Postgres 15's keywords that are not unreserved (`pg_get_keywords()` with `catcode <> 'U'`):
/// as names they must be quoted.
const KEYWORDS: [&str; 151] = [
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_names_postgres_would() {
        assert!(
            super::KEYWORDS.is_sorted(),
            "binary search needs them sorted"
        );
        assert_eq!(super::quote_ident("events"), "events");
        assert_eq!(super::quote_ident("user"), "\"user\"");
        assert_eq!(super::quote_ident("current_date"), "\"current_date\"");
        assert_eq!(super::quote_ident("Events"), "\"Events\"");
        assert_eq!(super::quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
