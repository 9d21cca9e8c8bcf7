//! A source's definition as the catalog keeps it, and its SQL text for `SHOW CREATE SOURCE`.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::catalog::table::TableDef;
use crate::sql::{
    ColumnDef, Include, Watermark, arrow_schema, columns_sql, quote_ident, quote_literal,
};

/// What `CREATE SOURCE` declared, with its options in canonical spelling (aliases resolved by
/// `source::options`). `id` is never reused, like a table's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceDef {
    pub id: u64,
    pub name: String,
    /// The columns decoded from each record.
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<Watermark>,
    /// Message metadata appended after the declared columns.
    pub includes: Vec<Include>,
    pub options: BTreeMap<String, String>,
    /// When the source was created; the datagen clock starts here.
    pub created_at_ms: i64,
    /// The primary key of a table fed by a connector (`CREATE TABLE … PRIMARY KEY … WITH
    /// (connector = …) FORMAT UPSERT | DEBEZIUM`): its records change rows by key, and what it
    /// keeps is a changelog ([`crate::table`]). Empty for a source of events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
}

impl SourceDef {
    /// Declared columns, then the `INCLUDE`d metadata columns.
    pub fn all_columns(&self) -> Vec<ColumnDef> {
        let mut columns = self.columns.clone();
        columns.extend(self.includes.iter().map(|i| ColumnDef {
            name: i.column.clone(),
            column_type: i.kind.column_type(),
            nullable: true,
        }));
        columns
    }

    pub fn schema(&self) -> SchemaRef {
        arrow_schema(&self.all_columns())
    }

    /// Whether this is a table fed by a connector's change records, not a source of events.
    pub fn keyed(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// The table whose rows a keyed source keeps.
    pub fn as_table(&self) -> TableDef {
        TableDef {
            id: self.id,
            name: self.name.clone(),
            columns: self.columns.clone(),
            watermark: None,
            append_only: false,
            primary_key: self.primary_key.clone(),
        }
    }

    /// The schema of the files the source keeps: its events, or a keyed source's changelog.
    pub fn stored_schema(&self) -> SchemaRef {
        match self.keyed() {
            true => crate::table::changelog_schema(&self.as_table()),
            false => self.schema(),
        }
    }

    /// The statement that creates this source again, with secrets masked.
    pub fn create_sql(&self) -> String {
        let includes: String = self
            .includes
            .iter()
            .map(|i| {
                format!(
                    " INCLUDE {} AS {}",
                    i.kind.keyword(),
                    quote_ident(&i.column)
                )
            })
            .collect();
        let options: Vec<String> = self
            .options
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret(key) { "******" } else { value };
                format!("{key} = {}", quote_literal(shown))
            })
            .collect();
        let mut columns = columns_sql(&self.columns, self.watermark.as_ref());
        if self.keyed() {
            let key: Vec<String> = self.primary_key.iter().map(|k| quote_ident(k)).collect();
            columns.push_str(&format!(", PRIMARY KEY ({})", key.join(", ")));
        }
        format!(
            "CREATE {} {} ({columns}){includes} WITH ({})",
            if self.keyed() { "TABLE" } else { "SOURCE" },
            quote_ident(&self.name),
            options.join(", ")
        )
    }
}

/// Whether an option holds a credential that must never be shown or logged.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.ends_with("jaas.config")
        || key.ends_with("ssl.key.pem")
        || key.ends_with("oauthbearer.config")
        || key.ends_with("ssl_key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets() {
        assert!(is_secret("properties.sasl.password"));
        assert!(is_secret("properties.ssl.key.password"));
        assert!(is_secret("properties.sasl.oauthbearer.client.secret"));
        assert!(!is_secret("properties.sasl.username"));
        let def = SourceDef {
            id: 1,
            name: "s".into(),
            columns: vec![],
            watermark: None,
            includes: vec![],
            options: BTreeMap::from([
                (
                    "properties.sasl.password".to_string(),
                    "hunter2".to_string(),
                ),
                ("topic".to_string(), "it's".to_string()),
            ]),
            created_at_ms: 0,
            primary_key: vec![],
        };
        let sql = def.create_sql();
        assert!(!sql.contains("hunter2"), "{sql}");
        assert!(sql.contains("topic = 'it''s'"), "{sql}");
    }
}
