//! Catalog views computed each time a query scans them (`information_schema`,
//! `pg_stat_activity`, `pg_roles`): one batch of what is there now.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// The rows of a view, as of now.
#[async_trait]
pub trait Snapshot: Debug + Send + Sync {
    fn schema(&self) -> SchemaRef;
    /// What is there now; `state` for views computed from other tables.
    async fn rows(&self, state: &dyn Session) -> Result<RecordBatch>;
}

/// A view over a [`Snapshot`].
#[derive(Debug)]
pub struct SnapshotTable<S>(pub S);

#[async_trait]
impl<S: Snapshot + 'static> TableProvider for SnapshotTable<S> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.0.rows(state).await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.0.schema(),
            projection.cloned(),
        )?)
    }
}
