//! DataFusion providers over the committed manifest: the `public` schema and its tables.
//!
//! A scan reads the files named by the manifest at planning time, so one query sees one
//! committed state even while writers commit. `INSERT` plans end in [`TableSink`], which hands
//! the rows to [`Storage::append`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};

use super::table::TableDef;
use crate::error::Error;
use crate::storage::{Storage, TableState};

/// The `public` schema: every table of the newest manifest.
#[derive(Debug)]
pub struct PublicSchema {
    storage: Arc<Storage>,
}

impl PublicSchema {
    pub fn new(storage: Arc<Storage>) -> Self {
        PublicSchema { storage }
    }
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        self.storage.manifest().tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let manifest = self.storage.manifest();
        Ok(manifest.table(name).map(|state| {
            Arc::new(StoredTable {
                storage: Arc::clone(&self.storage),
                state: state.clone(),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.storage.manifest().table(name).is_some()
    }
}

/// A table as of one manifest.
#[derive(Debug)]
pub struct StoredTable {
    storage: Arc<Storage>,
    state: TableState,
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
        let predicate = match conjunction(filters.iter().cloned()) {
            Some(expr) => {
                let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
                Some(state.create_physical_expr(expr, &df_schema)?)
            }
            None => None,
        };
        let partitions = state.config().target_partitions();
        self.storage.scan(
            &schema,
            &self.state.files,
            projection,
            predicate,
            limit,
            partitions,
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
            schema: self.schema(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Where `INSERT` rows go: one new Parquet file per statement, committed before it returns.
#[derive(Debug)]
pub struct TableSink {
    storage: Arc<Storage>,
    table: TableDef,
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
        self.storage
            .append(&self.table, data)
            .await
            .map_err(DataFusionError::from)
    }
}
