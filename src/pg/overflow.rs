//! Integer arithmetic that fails on overflow, as Postgres' does (`integer out of range`,
//! 22003), instead of DataFusion's default of wrapping around: `2147483647 + 1` answered
//! `-2147483648`, a wrong number on a dashboard rather than an error.
//!
//! [`CheckedArithmetic`] is a physical optimizer rule: it switches DataFusion's own
//! `fail_on_overflow` on in every `+`, `-` and `*` of the projections and filters it finds.
//! Aggregates (`sum`) keep DataFusion's behaviour; their state is wider than their input.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::{PhysicalExpr, projection::ProjectionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;

#[derive(Debug, Default)]
pub struct CheckedArithmetic;

impl PhysicalOptimizerRule for CheckedArithmetic {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
                let mut changed = false;
                let exprs = projection
                    .expr()
                    .iter()
                    .map(|e| {
                        let checked = checked(Arc::clone(&e.expr))?;
                        changed |= checked.transformed;
                        Ok(ProjectionExpr {
                            expr: checked.data,
                            alias: e.alias.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                if changed {
                    let input = Arc::clone(projection.input());
                    return Ok(Transformed::yes(
                        Arc::new(ProjectionExec::try_new(exprs, input)?) as Arc<dyn ExecutionPlan>,
                    ));
                }
            } else if let Some(filter) = node.downcast_ref::<FilterExec>() {
                let predicate = checked(Arc::clone(filter.predicate()))?;
                if predicate.transformed {
                    let rebuilt = FilterExecBuilder::from(filter)
                        .with_predicate(predicate.data)
                        .build()?;
                    return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
                }
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "postgres_checked_arithmetic"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `expr` with every `+`, `-` and `*` failing on overflow.
fn checked(expr: Arc<dyn PhysicalExpr>) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    expr.transform_up(|e| {
        let Some(binary) = e.downcast_ref::<BinaryExpr>() else {
            return Ok(Transformed::no(e));
        };
        if !matches!(
            binary.op(),
            Operator::Plus | Operator::Minus | Operator::Multiply
        ) {
            return Ok(Transformed::no(e));
        }
        let rebuilt = BinaryExpr::new(
            Arc::clone(binary.left()),
            *binary.op(),
            Arc::clone(binary.right()),
        )
        .with_fail_on_overflow(true);
        Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn PhysicalExpr>))
    })
}
