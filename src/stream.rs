//! The streaming engine behind materialized views.
//!
//! ```text
//!  source runner / table commits / upstream view ──Message──► feed.rs (per relation, bounded)
//!        ──► view pipeline: pre steps ─► operator.rs: aggregate.rs (panes.rs | session.rs,
//!                                          on groups.rs) | retracting.rs | top_n.rs
//!                                         ─► post steps ─► closed rows + live snapshot
//!                                                          (+ changes.rs, if it changes)
//! ```
//! [`plan`] is a view's operator graph — steps and an operator, as DataFusion expressions and
//! accumulators — which [`crate::planner`] makes from its query; [`window`] is the window
//! arithmetic, [`assign`] the windows of rows that change; [`barrier`] the checkpoint marker;
//! [`changes`] are the inserts and deletes of relations whose rows change, which
//! [`retracting`] and [`top_n`] take; [`feed`] carries rows, changes and watermarks from a
//! relation to the views reading it, with back-pressure.

pub mod aggregate;
pub mod assign;
pub mod barrier;
pub mod changes;
pub mod compact_keys;
pub mod dataflow;
pub mod feed;
pub mod groups;
pub mod join;
pub mod moments;
pub mod operator;
pub mod panes;
pub mod plan;
pub mod retracting;
pub mod session;
pub mod state;
pub mod state_memory;
pub mod top_n;
pub mod window;

#[cfg(test)]
mod restore_tests;

use datafusion::arrow::record_batch::RecordBatch;

/// What flows from a relation to the views reading it, in order.
#[derive(Debug, Clone)]
pub enum Message {
    /// New rows.
    Batch(RecordBatch),
    /// Rows inserted and deleted (from a relation whose rows change).
    Changes(changes::Changes),
    /// No row with an earlier event time (µs) will follow.
    Watermark(i64),
    /// A checkpoint's cut: every row before it is in the checkpoint, none after it.
    Barrier(std::sync::Arc<barrier::Barrier>),
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The engine stands alone: no code under `stream/` may reach into SQL, storage,
    /// connectors, the server or the checkpoint coordinator (the catalog's column types and
    /// errors are shared vocabulary). Planning lives in `crate::planner`, the coordinator
    /// behind `barrier::Barrier`'s round.
    #[test]
    fn the_engine_imports_no_sql_storage_or_connector_module() {
        const FORBIDDEN: &[&str] = &[
            "crate::sql",
            "crate::storage",
            "crate::source",
            "crate::pg",
            "crate::server",
            "crate::database",
            "crate::checkpoint",
            "crate::view",
            "crate::table",
            "crate::planner",
            "crate::maintenance",
            "sqlparser",
            "rdkafka",
            "object_store",
            "pgwire",
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![root.join("stream.rs")];
        let mut dirs = vec![root.join("stream")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                match path.is_dir() {
                    true => dirs.push(path),
                    false => files.push(path),
                }
            }
        }
        let mut found = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            // The engine's code; its tests may use whatever they need.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                let catalog =
                    code.contains("crate::catalog") && !code.contains("crate::catalog::types");
                if catalog || FORBIDDEN.iter().any(|f| code.contains(f)) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(files.len() > 10, "{files:?}");
        assert!(
            found.is_empty(),
            "the engine reaches out:\n{}",
            found.join("\n")
        );
    }
}
