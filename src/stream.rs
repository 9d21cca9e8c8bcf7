//! The streaming engine behind materialized views.
//!
//! ```text
//!  source runner / table commits / upstream view ──Message──► feed.rs (per relation, bounded)
//!        ──► view pipeline: pre steps ─► operator.rs: aggregate.rs (panes.rs | session.rs,
//!                                          on groups.rs) | retracting.rs | top_n.rs
//!                                         ─► post steps ─► closed rows + live snapshot
//!                                                          (+ changes.rs, if it changes)
//! ```
//! [`plan`] turns a view's query into steps and an operator, using DataFusion for planning,
//! expressions and accumulators; [`functions`] are the window table functions ([`adhoc`]: the
//! same windows over stored rows, for one-off queries); [`window`] is the window arithmetic;
//! [`changes`] are the inserts and deletes of relations whose rows change, which
//! [`retracting`] and [`top_n`] take; [`feed`] carries rows, changes and watermarks from a
//! relation to the views reading it, with back-pressure.

pub mod adhoc;
pub mod aggregate;
pub mod assign;
pub mod changes;
pub mod feed;
pub mod functions;
pub mod groups;
pub mod node;
pub mod operator;
pub mod panes;
pub mod plan;
pub mod retracting;
pub mod session;
pub mod state;
pub mod state_memory;
pub mod top_n;
pub mod window;

use datafusion::arrow::record_batch::RecordBatch;

use crate::storage::DataFile;

/// What flows from a relation to the views reading it, in order.
#[derive(Debug, Clone)]
pub enum Message {
    /// New rows.
    Batch(RecordBatch),
    /// Rows inserted and deleted (from a relation whose rows change).
    Changes(changes::Changes),
    /// A committed file of new rows (tables publish their commits this way).
    File(DataFile),
    /// No row with an earlier event time (µs) will follow.
    Watermark(i64),
    /// A checkpoint's cut: every row before it is in the checkpoint, none after it.
    Barrier(std::sync::Arc<crate::checkpoint::Barrier>),
}
