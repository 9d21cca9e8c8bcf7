//! The `sluice_catalog` schema: the database describing itself in SQL.
//!
//! - `sources`: one row per source and partition — rows and bytes in, offsets, broker high
//!   watermark and lag, event-time watermarks, rejected, late and duplicate counts, status,
//!   last error.
//! - `rejected_rows`: every record a source could not decode, with its raw bytes and the error;
//!   committed files plus the records sources hold pending.
//! - `materialized_views`: one row per view (and per part of one) — status, rows in, late and
//!   out, watermarks, open groups and state size, backfill progress, freshness, last error.
//! - `late_rows`: every row that reached a view after its window closed, as JSON.
//! - `checkpoints`: the newest checkpoints (number, reason, duration, bytes written), the
//!   recoveries from them (how long a restart took), and rounds that failed, with the error.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::provider::scan_files_and_rows;
use crate::checkpoint::Checkpoints;
use crate::source::Sources;
use crate::source::runner::{rejected_batch, rejected_schema};
use crate::source::stats::Snapshot;
use crate::storage::compaction::FileOwner;
use crate::storage::{CheckpointRecord, DataFile, Manifest, Storage};
use crate::view::Views;
use crate::view::late::{late_batch, late_schema};
use crate::view::stats::Snapshot as ViewSnapshot;

pub const SCHEMA_NAME: &str = "sluice_catalog";

#[derive(Debug)]
pub struct SystemSchema {
    storage: Arc<Storage>,
    sources: Arc<Sources>,
    views: Arc<Views>,
    checkpoints: Arc<Checkpoints>,
}

impl SystemSchema {
    pub fn new(
        storage: Arc<Storage>,
        sources: Arc<Sources>,
        views: Arc<Views>,
        checkpoints: Arc<Checkpoints>,
    ) -> Self {
        SystemSchema {
            storage,
            sources,
            views,
            checkpoints,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum SystemTable {
    Sources,
    RejectedRows,
    MaterializedViews,
    LateRows,
    Checkpoints,
    Files,
}

const TABLES: [(&str, SystemTable); 6] = [
    ("sources", SystemTable::Sources),
    ("rejected_rows", SystemTable::RejectedRows),
    ("materialized_views", SystemTable::MaterializedViews),
    ("late_rows", SystemTable::LateRows),
    ("checkpoints", SystemTable::Checkpoints),
    ("files", SystemTable::Files),
];

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|(name, _)| name.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(TABLES.iter().find(|(n, _)| *n == name).map(|(_, table)| {
            Arc::new(SystemTableProvider {
                table: *table,
                storage: Arc::clone(&self.storage),
                sources: Arc::clone(&self.sources),
                views: Arc::clone(&self.views),
                checkpoints: Arc::clone(&self.checkpoints),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.iter().any(|(n, _)| *n == name)
    }
}

#[derive(Debug)]
struct SystemTableProvider {
    table: SystemTable,
    storage: Arc<Storage>,
    sources: Arc<Sources>,
    views: Arc<Views>,
    checkpoints: Arc<Checkpoints>,
}

#[async_trait]
impl TableProvider for SystemTableProvider {
    fn schema(&self) -> SchemaRef {
        match self.table {
            SystemTable::Sources => sources_schema(),
            SystemTable::RejectedRows => rejected_schema(),
            SystemTable::MaterializedViews => views_schema(),
            SystemTable::LateRows => late_schema(),
            SystemTable::Checkpoints => checkpoints_schema(),
            SystemTable::Files => files_schema(),
        }
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match self.table {
            SystemTable::Sources => {
                let snapshots: Vec<Snapshot> = self
                    .sources
                    .all()
                    .iter()
                    .map(|h| h.stats.snapshot())
                    .collect();
                let batch = sources_batch(&snapshots)?;
                Ok(MemorySourceConfig::try_new_exec(
                    &[vec![batch]],
                    sources_schema(),
                    projection.cloned(),
                )?)
            }
            SystemTable::RejectedRows => {
                // Lock every source's pending rows so none commits while we read the manifest.
                let mut guards = Vec::new();
                for handle in self.sources.all() {
                    guards.push(handle.lock_pending().await);
                }
                let files = self.storage.manifest().rejected_rows.clone();
                let pending: Vec<_> = guards.iter().flat_map(|g| g.rejected().to_vec()).collect();
                drop(guards);
                let rows = match pending.is_empty() {
                    true => Vec::new(),
                    false => vec![rejected_batch(&pending)?],
                };
                scan_files_and_rows(
                    &self.storage,
                    state,
                    &rejected_schema(),
                    (&files, rows),
                    projection,
                    filters,
                    limit,
                )
            }
            SystemTable::MaterializedViews => {
                let snapshots: Vec<ViewSnapshot> =
                    self.views.all().iter().map(|v| v.snapshot()).collect();
                Ok(MemorySourceConfig::try_new_exec(
                    &[vec![views_batch(&snapshots)?]],
                    views_schema(),
                    projection.cloned(),
                )?)
            }
            SystemTable::LateRows => {
                // Lock every view's pending state so none commits while we read the manifest.
                let mut guards = Vec::new();
                for handle in self.views.all() {
                    guards.push(handle.lock_shared().await);
                }
                let files = self.storage.manifest().late_rows.clone();
                let pending: Vec<_> = guards.iter().flat_map(|g| g.late.clone()).collect();
                drop(guards);
                let rows = match pending.is_empty() {
                    true => Vec::new(),
                    false => vec![late_batch(&pending)?],
                };
                scan_files_and_rows(
                    &self.storage,
                    state,
                    &late_schema(),
                    (&files, rows),
                    projection,
                    filters,
                    limit,
                )
            }
            SystemTable::Checkpoints => Ok(MemorySourceConfig::try_new_exec(
                &[vec![checkpoints_batch(&self.checkpoints.history())?]],
                checkpoints_schema(),
                projection.cloned(),
            )?),
            SystemTable::Files => Ok(MemorySourceConfig::try_new_exec(
                &[vec![files_batch(&self.storage.manifest())?]],
                files_schema(),
                projection.cloned(),
            )?),
        }
    }
}

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

fn sources_schema() -> SchemaRef {
    let field = |name: &str, data_type: DataType| Field::new(name, data_type, true);
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("connector", DataType::Utf8, false),
        field("partition", DataType::Int32),
        Field::new("status", DataType::Utf8, false),
        field("rows_in", DataType::Int64),
        field("bytes_in", DataType::Int64),
        field("current_offset", DataType::Int64),
        field("high_watermark_offset", DataType::Int64),
        field("lag", DataType::Int64),
        field("watermark", timestamptz()),
        field("source_watermark", timestamptz()),
        field("idle", DataType::Boolean),
        field("rejected_rows", DataType::Int64),
        field("late_rows", DataType::Int64),
        field("duplicate_rows", DataType::Int64),
        field("state_bytes", DataType::Int64),
        field("last_error", DataType::Utf8),
        field("last_fetch", timestamptz()),
    ]))
}

/// One row per source and partition; a source with no partition yet gets one row of NULLs.
fn sources_batch(snapshots: &[Snapshot]) -> datafusion::arrow::error::Result<RecordBatch> {
    let mut rows = Vec::new();
    for s in snapshots {
        if s.partitions.is_empty() {
            rows.push((s, None, None));
        }
        for (partition, p) in &s.partitions {
            rows.push((s, Some(*partition), Some(p)));
        }
    }
    let text = |f: &dyn Fn(&Snapshot) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(|(s, _, _)| f(s))))
    };
    let count = |f: &dyn Fn(&crate::source::stats::PartitionStats) -> Option<i64>| -> ArrayRef {
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|(_, _, p)| p.and_then(f)),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|s| Some(s.source.clone())),
        text(&|s| Some(s.connector.clone())),
        Arc::new(Int32Array::from_iter(rows.iter().map(|(_, p, _)| *p))),
        // A stopped partition says so on its row, with its reason.
        Arc::new(StringArray::from_iter(rows.iter().map(|(s, _, p)| {
            match p.is_some_and(|p| p.stopped.is_some()) {
                true => Some("stopped".to_string()),
                false => Some(s.status.as_str().to_string()),
            }
        }))),
        count(&|p| Some(p.rows_in as i64)),
        count(&|p| Some(p.bytes_in as i64)),
        count(&|p| p.next_offset),
        count(&|p| p.high_watermark),
        count(&|p| p.lag()),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                rows.iter().map(|(_, _, p)| p.and_then(|p| p.watermark_us)),
            )
            .with_timezone("+00:00"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter(rows.iter().map(|(s, _, _)| s.watermark_us))
                .with_timezone("+00:00"),
        ),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|(_, _, p)| p.map(|p| p.idle)),
        )),
        count(&|p| Some(p.rejected as i64)),
        count(&|p| Some(p.late as i64)),
        count(&|p| Some(p.duplicates as i64)),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|(s, _, _)| Some(s.state_bytes as i64)),
        )),
        Arc::new(StringArray::from_iter(rows.iter().map(|(s, _, p)| {
            p.and_then(|p| p.stopped.clone())
                .or_else(|| s.last_error.clone())
        }))),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                rows.iter().map(|(_, _, p)| p.and_then(|p| p.last_fetch_us)),
            )
            .with_timezone("+00:00"),
        ),
    ];
    RecordBatch::try_new(sources_schema(), columns)
}

fn views_schema() -> SchemaRef {
    let field = |name: &str, data_type: DataType| Field::new(name, data_type, true);
    Arc::new(Schema::new(vec![
        Field::new("view", DataType::Utf8, false),
        Field::new("input", DataType::Utf8, false),
        field("part_of", DataType::Utf8),
        Field::new("emit", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        field("rows_in", DataType::Int64),
        field("late_rows", DataType::Int64),
        field("rows_out", DataType::Int64),
        field("watermark", timestamptz()),
        field("closed_through", timestamptz()),
        field("open_groups", DataType::Int64),
        field("state_bytes", DataType::Int64),
        field("join_rows", DataType::Int64),
        field("join_state_bytes", DataType::Int64),
        field("backfill_rows_total", DataType::Int64),
        field("backfill_rows_done", DataType::Int64),
        field("refreshed_at", timestamptz()),
        field("last_error", DataType::Utf8),
    ]))
}

fn views_batch(views: &[ViewSnapshot]) -> datafusion::arrow::error::Result<RecordBatch> {
    let text = |f: &dyn Fn(&ViewSnapshot) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(views.iter().map(f)))
    };
    let count = |f: &dyn Fn(&ViewSnapshot) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            views.iter().map(|v| f(v) as i64),
        ))
    };
    let time = |f: &dyn Fn(&ViewSnapshot) -> Option<i64>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from_iter(views.iter().map(f)).with_timezone("+00:00"))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|v| Some(v.view.clone())),
        text(&|v| Some(v.input.clone())),
        text(&|v| v.part_of.clone()),
        text(&|v| {
            Some(
                if v.emit_on_close {
                    "on window close"
                } else {
                    "live"
                }
                .to_string(),
            )
        }),
        text(&|v| Some(v.status.as_str().to_string())),
        count(&|v| v.rows_in),
        count(&|v| v.rows_late),
        count(&|v| v.rows_out),
        time(&|v| v.watermark_us),
        time(&|v| v.closed_through_us),
        count(&|v| v.open_groups),
        count(&|v| v.state_bytes),
        count(&|v| v.join_rows),
        count(&|v| v.join_state_bytes),
        count(&|v| v.backfill_rows_total),
        count(&|v| v.backfill_rows_done),
        time(&|v| v.refreshed_at_us),
        text(&|v| v.last_error.clone()),
    ];
    RecordBatch::try_new(views_schema(), columns)
}

fn checkpoints_schema() -> SchemaRef {
    let field = |name: &str, data_type: DataType| Field::new(name, data_type, true);
    Arc::new(Schema::new(vec![
        Field::new("checkpoint", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("started_at", timestamptz(), false),
        field("duration_ms", DataType::Int64),
        field("size_bytes", DataType::Int64),
        field("state_bytes", DataType::Int64),
        field("files", DataType::Int64),
        field("error", DataType::Utf8),
    ]))
}

fn checkpoints_batch(
    rows: &[(CheckpointRecord, &'static str, Option<String>)],
) -> datafusion::arrow::error::Result<RecordBatch> {
    let count = |f: &dyn Fn(&CheckpointRecord) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(r, _, _)| f(r) as i64),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        count(&|r| r.id),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(r, _, _)| r.kind.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(r, _, _)| r.reason.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, s, _)| *s),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|(r, _, _)| r.started_at_ms * 1000),
            )
            .with_timezone("+00:00"),
        ),
        count(&|r| r.duration_ms),
        count(&|r| r.size_bytes),
        count(&|r| r.state_bytes),
        count(&|r| r.files),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|(_, _, e)| e.as_deref()),
        )),
    ];
    RecordBatch::try_new(checkpoints_schema(), columns)
}

fn files_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("relation", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("size_bytes", DataType::Int64, false),
        Field::new("windows_end", timestamptz(), true),
    ]))
}

/// Every data file the current manifest names, by relation, in order.
fn files_batch(manifest: &Manifest) -> datafusion::arrow::error::Result<RecordBatch> {
    let files: Vec<(String, &DataFile)> = FileOwner::all(manifest)
        .into_iter()
        .flat_map(|owner| {
            let files = owner.files(manifest).map(Vec::as_slice).unwrap_or_default();
            files.iter().map(move |f| (owner.to_string(), f))
        })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(files.iter().map(|(o, _)| o))),
        Arc::new(StringArray::from_iter_values(
            files.iter().map(|(_, f)| f.path.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            files.iter().map(|(_, f)| f.rows as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            files.iter().map(|(_, f)| f.size_bytes as i64),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter(files.iter().map(|(_, f)| f.windows_end))
                .with_timezone("+00:00"),
        ),
    ];
    RecordBatch::try_new(files_schema(), columns)
}
