//! DataFusion providers over the committed manifest: the `public` schema, its tables and sources.
//!
//! A scan reads the files named by the manifest at planning time, so one query sees one
//! committed state even while writers commit. `INSERT` plans end in [`TableSink`], which hands
//! the rows to [`Storage::append`]. A source's scan reads its retained events: committed files
//! plus the rows its runner holds pending, taken under one lock.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};

use super::source::SourceDef;
use super::table::TableDef;
use super::view::ViewDef;
use crate::error::Error;
use crate::source::options::SourceSettings;
use crate::source::{SourceHandle, Sources};
use crate::storage::{DataFile, Storage, TableState};
use crate::table::{KeyedTable, KeyedTables, Write};
use crate::view::Views;

/// The `public` schema: every table and source of the newest manifest.
#[derive(Debug)]
pub struct PublicSchema {
    storage: Arc<Storage>,
    sources: Arc<Sources>,
    views: Arc<Views>,
    keyed: Arc<KeyedTables>,
}

impl PublicSchema {
    pub fn new(
        storage: Arc<Storage>,
        sources: Arc<Sources>,
        views: Arc<Views>,
        keyed: Arc<KeyedTables>,
    ) -> Self {
        PublicSchema {
            storage,
            sources,
            views,
            keyed,
        }
    }
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        let manifest = self.storage.manifest();
        manifest
            .tables
            .keys()
            .chain(manifest.sources.keys())
            // A view's parts are read by name, but listed as the view they are part of.
            .chain(
                manifest
                    .views
                    .values()
                    .filter(|v| v.def.part_of.is_none())
                    .map(|v| &v.def.name),
            )
            .cloned()
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let manifest = self.storage.manifest();
        if let Some(state) = manifest.table(name) {
            return Ok(Some(Arc::new(StoredTable {
                storage: Arc::clone(&self.storage),
                state: state.clone(),
                keyed: self.keyed.get(&state.def).map_err(DataFusionError::from)?,
            })));
        }
        if let Some(state) = manifest.view(name) {
            return Ok(Some(Arc::new(ViewTable {
                storage: Arc::clone(&self.storage),
                def: state.def.clone(),
                views: Arc::clone(&self.views),
            })));
        }
        Ok(manifest.source(name).map(|state| {
            Arc::new(SourceTable {
                storage: Arc::clone(&self.storage),
                def: state.def.clone(),
                handle: self.sources.get(name),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.storage.manifest().has_relation(name)
    }
}

/// Committed Parquet files and in-memory rows of one schema as one scan.
pub fn scan_files_and_rows(
    storage: &Storage,
    state: &dyn Session,
    schema: &SchemaRef,
    (files, rows): (&[DataFile], Vec<RecordBatch>),
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let predicate = match conjunction(filters.iter().cloned()) {
        Some(expr) => {
            let df_schema = DFSchema::try_from(Arc::clone(schema))?;
            Some(state.create_physical_expr(expr, &df_schema)?)
        }
        None => None,
    };
    let partitions = state.config().target_partitions();
    let files = storage.scan(schema, files, projection, predicate, limit, partitions)?;
    if rows.is_empty() {
        return Ok(files);
    }
    let memory =
        MemorySourceConfig::try_new_exec(&[rows], Arc::clone(schema), projection.cloned())?;
    UnionExec::try_new(vec![files, memory])
}

/// A source as a relation: its retained events, or an error saying how to keep them.
#[derive(Debug)]
pub struct SourceTable {
    storage: Arc<Storage>,
    def: SourceDef,
    handle: Option<Arc<SourceHandle>>,
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        self.def.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !SourceSettings::from_def(&self.def).is_ok_and(|s| s.retain) {
            return Err(DataFusionError::from(Error::unsupported(
                format!("reading the events of source \"{}\"", self.def.name),
                Some(
                    "A source keeps no events unless it is created WITH (retain = 'true'); \
                     read it through a materialized view, or re-create it with retain = 'true'.",
                ),
            )));
        }
        let (files, rows) = match &self.handle {
            Some(handle) => handle
                .retained(&self.storage)
                .await
                .map_err(DataFusionError::from)?,
            None if self.def.keyed() => {
                return Err(DataFusionError::from(Error::Internal(format!(
                    "table \"{}\" is not running",
                    self.def.name
                ))));
            }
            None => (
                self.storage
                    .manifest()
                    .source(&self.def.name)
                    .map(|s| s.files.clone())
                    .unwrap_or_default(),
                Vec::new(),
            ),
        };
        let schema = self.schema();
        scan_files_and_rows(
            &self.storage,
            state,
            &schema,
            (&files, rows),
            projection,
            filters,
            limit,
        )
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::from(fed_by_connector(
            &self.def,
            "INSERT into",
        )))
    }
}

/// The error for a write to a source, or a table fed by a connector: its rows come from the
/// connector only (a write would race the records, and replaying both could not agree).
pub fn fed_by_connector(def: &SourceDef, action: &str) -> Error {
    let topic = def
        .options
        .get("topic")
        .map(String::as_str)
        .unwrap_or("its topic");
    match def.keyed() {
        true => Error::unsupported(
            format!(
                "{action} table \"{}\", whose rows come from its connector",
                def.name
            ),
            Some(&format!(
                "Its rows change with the records of {topic}: produce the change there."
            )),
        ),
        false => Error::unsupported(
            format!("{action} source \"{}\"", def.name),
            Some("A source's events come from its connector; write to a table instead."),
        ),
    }
}

/// A materialized view: its committed files plus, taken at one instant, its final rows not
/// yet committed and (in live mode) the partial results of its open windows.
#[derive(Debug)]
pub struct ViewTable {
    storage: Arc<Storage>,
    def: ViewDef,
    /// Where its running pipeline is found when it is scanned, so that a plan kept for later
    /// runs (`database::plan_cache`) reads the view as it runs then.
    views: Arc<Views>,
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.def.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters (on window_start, say) prune files and row groups by their statistics.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (files, rows) = match self.views.get(&self.def.name) {
            Some(handle) => handle.read(&self.storage).await?,
            None => (
                self.storage
                    .manifest()
                    .view(&self.def.name)
                    .map(|v| v.files.clone())
                    .unwrap_or_default(),
                Vec::new(),
            ),
        };
        let schema = self.schema();
        scan_files_and_rows(
            &self.storage,
            state,
            &schema,
            (&files, rows),
            projection,
            filters,
            limit,
        )
    }
}

/// A table as of one manifest; a keyed table as its current rows.
#[derive(Debug)]
pub struct StoredTable {
    storage: Arc<Storage>,
    state: TableState,
    keyed: Option<Arc<KeyedTable>>,
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        self.state.def.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters prune row groups by their statistics; DataFusion still applies them to rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let (files, rows) = match &self.keyed {
            Some(keyed) => (
                &[][..],
                vec![keyed.snapshot().map_err(DataFusionError::from)?],
            ),
            None => (&self.state.files[..], Vec::new()),
        };
        scan_files_and_rows(
            &self.storage,
            state,
            &schema,
            (files, rows),
            projection,
            filters,
            limit,
        )
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::from(Error::unsupported(
                format!("{insert_op}"),
                Some("Tables are append-only: use INSERT INTO … VALUES or SELECT."),
            )));
        }
        let sink = TableSink {
            storage: Arc::clone(&self.storage),
            table: self.state.def.clone(),
            keyed: self.keyed.clone(),
            schema: self.schema(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Where `INSERT` rows go: one new Parquet file per statement, committed before it returns
/// (for a keyed table, the changes the rows make to it).
#[derive(Debug)]
pub struct TableSink {
    storage: Arc<Storage>,
    table: TableDef,
    keyed: Option<Arc<KeyedTable>>,
    schema: SchemaRef,
}

impl DisplayAs for TableSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableSink: table={}", self.table.name)
    }
}

#[async_trait]
impl DataSink for TableSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        match &self.keyed {
            Some(keyed) => keyed.write(&self.storage, data, Write::Upsert).await,
            None => self.storage.append(&self.table, data).await,
        }
        .map_err(DataFusionError::from)
    }
}
