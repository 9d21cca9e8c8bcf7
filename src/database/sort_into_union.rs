//! `ORDER BY … LIMIT n` over a union: the order offered to each input, as DataFusion offers it
//! to a single one.
//!
//! A view's scan is a union of its committed files and its rows in memory (pending final rows,
//! open windows); a source's retained events are the same. DataFusion's sort pushdown
//! (`PushdownSort`) stops at a union, so a dashboard's `ORDER BY time DESC LIMIT 360` fed every
//! row to the TopK, oldest first, and each one replaced the heap's worst: most of such a
//! query's time. [`SortIntoUnion`] runs just before `PushdownSort` and, for a TopK whose input
//! is a union, offers its order to every input:
//! - rows in memory are ordered there and cut to the first n, an input that is exact;
//! - any other input answers through DataFusion's own `try_pushdown_sort`: a Parquet scan reads
//!   its row groups in the requested direction, so the TopK's dynamic filter, filled by the
//!   newest rows first, prunes the rest by their statistics.
//!
//! The TopK stays above the union; only what reaches it changes.

use std::sync::Arc;

use datafusion::arrow::compute::{concat_batches, lexsort_to_indices, take_record_batch};
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::{DataSource, DataSourceExec};
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, SortOrderPushdownResult};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SortIntoUnion;

impl PhysicalOptimizerRule for SortIntoUnion {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !config.optimizer.enable_sort_pushdown {
            return Ok(plan);
        }
        plan.transform_down(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let (Some(fetch), Some(union)) =
                (sort.fetch(), sort.input().downcast_ref::<UnionExec>())
            else {
                return Ok(Transformed::no(node));
            };
            let mut changed = false;
            let inputs = union
                .inputs()
                .iter()
                .map(|input| {
                    let offered = offer(input, sort.expr(), fetch)?;
                    changed |= offered.is_some();
                    Ok(offered.unwrap_or_else(|| Arc::clone(input)))
                })
                .collect::<Result<Vec<_>>>()?;
            if !changed {
                return Ok(Transformed::no(node));
            }
            let topk = SortExec::new(sort.expr().clone(), UnionExec::try_new(inputs)?)
                .with_fetch(Some(fetch))
                .with_preserve_partitioning(sort.preserve_partitioning());
            // The inputs were offered the order already: `PushdownSort` has nothing to add.
            Ok(Transformed::new(
                Arc::new(topk),
                true,
                TreeNodeRecursion::Jump,
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "SortIntoUnion"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `input` made to suit a TopK of `fetch` rows in `order`, or `None` if it cannot.
fn offer(
    input: &Arc<dyn ExecutionPlan>,
    order: &LexOrdering,
    fetch: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(memory) = input
        .downcast_ref::<DataSourceExec>()
        .and_then(|scan| scan.data_source().downcast_ref::<MemorySourceConfig>())
    {
        // A limit of its own picks rows in no order; cutting them otherwise is not ours to do.
        return match memory.fetch() {
            Some(_) => Ok(None),
            None => first_rows(memory, order, fetch).map(Some),
        };
    }
    Ok(match input.try_pushdown_sort(order)? {
        SortOrderPushdownResult::Exact { inner } => Some(
            inner
                .with_fetch(Some(fetch))
                .unwrap_or_else(|| Arc::new(LocalLimitExec::new(inner, fetch))),
        ),
        SortOrderPushdownResult::Inexact { inner } => Some(inner),
        SortOrderPushdownResult::Unsupported => None,
    })
}

/// The first `fetch` rows of `memory` in `order`, as one sorted partition. The rows are in
/// memory already (a view's live rows: thousands, not millions), and a partial sort of them
/// costs less than handing each to the TopK.
fn first_rows(
    memory: &MemorySourceConfig,
    order: &LexOrdering,
    fetch: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let original = memory.original_schema();
    let batches = memory
        .partitions()
        .iter()
        .flatten()
        .map(|batch| match memory.projection() {
            Some(columns) => batch.project(columns),
            None => Ok(batch.clone()),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let schema = match memory.projection() {
        Some(columns) => Arc::new(original.project(columns)?),
        None => original,
    };
    let all = concat_batches(&schema, &batches)?;
    let keys = order
        .iter()
        .map(|key: &PhysicalSortExpr| key.evaluate_to_sort_column(&all))
        .collect::<Result<Vec<_>>>()?;
    let first = take_record_batch(&all, &lexsort_to_indices(&keys, Some(fetch))?)?;
    let sorted = MemorySourceConfig::try_new(&[vec![first]], schema, None)?
        .try_with_sort_information(vec![order.clone()])?;
    Ok(DataSourceExec::from_data_source(sorted))
}
