//! A materialized view's definition as the catalog keeps it.
//!
//! The query is kept as the user wrote it and planned again at every start, so a view always
//! runs with the current planner; its output columns are recorded at `CREATE` so the view
//! describes (`\d`, `information_schema`) without planning.

use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::sql::{ColumnDef, arrow_schema, quote_ident, quote_literal};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewDef {
    /// Unique for the life of the storage, like table ids.
    pub id: u64,
    pub name: String,
    /// The `AS` query, as written.
    pub query: String,
    pub emit_on_close: bool,
    /// The relation the view reads (the first, when it reads several).
    pub input: String,
    /// Every relation a view over several reads (a `UNION ALL`'s branches, a join's sides),
    /// in branch order; empty when it reads one.
    #[serde(default, alias = "union", skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<String>,
    pub columns: Vec<ColumnDef>,
    /// Output columns that carry the view's watermark (its window bounds), so views over this
    /// view can close windows on them.
    pub time_columns: Vec<String>,
    pub created_at_ms: i64,
    /// `WITH (retention = '30 days')` as written: files of windows that ended longer ago are
    /// dropped. `None` keeps everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// `WITH (state.ttl = '1 hour')` as written: its joins forget rows not written for that
    /// long. `None` keeps them while they exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_ttl: Option<String>,
    /// Its rows change (it aggregates and its windows never close): views over it receive
    /// inserts and deletes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub updating: bool,
    /// The view this one is a part of (a subquery of its query that runs as a view): it is
    /// planned from that view's query, hidden from listings, and dropped with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_of: Option<String>,
}

impl ViewDef {
    /// The relations the view reads.
    pub fn inputs(&self) -> Vec<&str> {
        match self.relations.is_empty() {
            true => vec![self.input.as_str()],
            false => self.relations.iter().map(String::as_str).collect(),
        }
    }

    /// Whether the view reads `relation`.
    pub fn reads(&self, relation: &str) -> bool {
        self.inputs().contains(&relation)
    }

    pub fn schema(&self) -> SchemaRef {
        arrow_schema(&self.columns)
    }

    /// The statement that creates this view again.
    pub fn create_sql(&self) -> String {
        let emit = if self.emit_on_close {
            " EMIT ON WINDOW CLOSE"
        } else {
            ""
        };
        let options: Vec<String> = [
            ("retention", &self.retention),
            ("state.ttl", &self.state_ttl),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some(format!("{key} = {}", quote_literal(value.as_ref()?))))
        .collect();
        let with = match options.is_empty() {
            true => String::new(),
            false => format!(" WITH ({})", options.join(", ")),
        };
        format!(
            "CREATE MATERIALIZED VIEW {}{with} AS {}{emit}",
            quote_ident(&self.name),
            self.query
        )
    }

    /// How long the view keeps closed windows, if it was given a retention.
    pub fn retention(&self) -> Option<std::time::Duration> {
        let text = self.retention.as_deref()?;
        crate::source::options::parse_duration("retention", text).ok()
    }
}
