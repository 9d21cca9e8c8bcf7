//! Integer literals typed as Postgres types them: `1` is `integer` (int4) where it fits, as
//! `-2147483648` does; past that `bigint`, and past that `numeric`. DataFusion reads every
//! integer literal as `bigint`, so `SELECT 1` described int8 and node-postgres returned the
//! string '1', and `ARRAY[1, 2]` was an int8[]. [`IntegerLiterals`] runs before type coercion, which then widens an int4
//! literal wherever it meets a bigint (`big > 5`) as Postgres does. `1.5` is numeric
//! (`parse_float_as_decimal`; see [`super::numeric`]), `1e3` too, at scale 0.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{
    BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, Values,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{AnalyzerRule, OptimizerConfig, OptimizerRule};

use crate::error::Error;

#[derive(Debug, Default)]
pub struct IntegerLiterals;

impl AnalyzerRule for IntegerLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        // A recursive query's work table was typed from its literals when it was planned, and
        // INSERT's VALUES were typed as the table's columns: both stay as they are.
        let typed = plan.exists(|p| {
            Ok(matches!(
                p,
                LogicalPlan::RecursiveQuery(_) | LogicalPlan::Dml(_)
            ))
        })?;
        if typed {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|plan| match plan {
            // LIMIT and OFFSET must stay bigint; DDL, DML targets and scans hold no literals
            // a client sees.
            LogicalPlan::Limit(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::TableScan(_)
            | LogicalPlan::Extension(_) => Ok(Transformed::no(plan)),
            // VALUES types its columns from its rows: typed again from the new literals.
            LogicalPlan::Values(Values { ref values, .. }) => {
                let mut changed = false;
                let narrowed = values
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(|e| {
                                let t = e.clone().transform_up(narrow_and_fold)?;
                                changed |= t.transformed;
                                Ok(t.data)
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect::<Result<Vec<_>>>()?;
                match changed {
                    true => Ok(Transformed::yes(
                        LogicalPlanBuilder::values(narrowed)?.build()?,
                    )),
                    false => Ok(Transformed::no(plan)),
                }
            }
            // Typed again also when only an input changed (a UNION of `SELECT 1`s).
            plan => super::coercion::rewrite_node(plan, narrow_and_fold),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "postgres_integer_literals"
    }
}

/// Drops the aliases [`IntegerLiterals`] and type coercion leave on an aggregate once
/// simplification made them name the expression they wrap (`count(DISTINCT g % 7) AS
/// count(DISTINCT g % 7)`). Optimizer rules look for a bare aggregate function: behind such an
/// alias, `count(DISTINCT …)` was not rewritten into a GROUP BY that can spill, and failed with
/// 53200 where it could have run. Runs right after `simplify_expressions`.
#[derive(Debug, Default)]
pub struct BareAggregates;

impl OptimizerRule for BareAggregates {
    fn name(&self) -> &str {
        "postgres_bare_aggregates"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(mut aggregate) = plan else {
            return Ok(Transformed::no(plan));
        };
        let mut changed = false;
        for expr in &mut aggregate.aggr_expr {
            if let Expr::Alias(alias) = expr
                && alias.relation.is_none()
                && alias.expr.schema_name().to_string() == alias.name
            {
                *expr = alias.expr.as_ref().clone();
                changed = true;
            }
        }
        let plan = LogicalPlan::Aggregate(aggregate);
        Ok(match changed {
            true => Transformed::yes(plan),
            false => Transformed::no(plan),
        })
    }
}

fn narrow_and_fold(expr: Expr) -> Result<Transformed<Expr>> {
    let narrowed = int4(expr);
    match fold(&narrowed.data)? {
        Some(folded) => Ok(Transformed::yes(folded)),
        None => Ok(narrowed),
    }
}

/// `+`, `-` or `*` of two integer literals, computed here as Postgres computes it: an error
/// on overflow. (DataFusion folds constants itself, wrapping around: `2147483647 + 1` was
/// `-2147483648`; [`crate::pg::overflow`] covers arithmetic on columns.)
fn fold(expr: &Expr) -> Result<Option<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return Ok(None);
    };
    let (Expr::Literal(left, _), Expr::Literal(right, _)) = (left.as_ref(), right.as_ref()) else {
        return Ok(None);
    };
    let apply = |a: i64, b: i64| match op {
        Operator::Plus => Some(a.checked_add(b)),
        Operator::Minus => Some(a.checked_sub(b)),
        Operator::Multiply => Some(a.checked_mul(b)),
        _ => None,
    };
    let value = match (left, right) {
        (ScalarValue::Int32(Some(a)), ScalarValue::Int32(Some(b))) => {
            match apply(i64::from(*a), i64::from(*b)) {
                None => return Ok(None),
                Some(v) => match v.and_then(|v| i32::try_from(v).ok()) {
                    Some(v) => ScalarValue::Int32(Some(v)),
                    None => return Err(out_of_range("integer")),
                },
            }
        }
        (
            ScalarValue::Int32(Some(_)) | ScalarValue::Int64(Some(_)),
            ScalarValue::Int32(Some(_)) | ScalarValue::Int64(Some(_)),
        ) => {
            let wide = |v: &ScalarValue| match v {
                ScalarValue::Int32(Some(v)) => i64::from(*v),
                ScalarValue::Int64(Some(v)) => *v,
                _ => 0,
            };
            match apply(wide(left), wide(right)) {
                None => return Ok(None),
                Some(Some(v)) => ScalarValue::Int64(Some(v)),
                Some(None) => return Err(out_of_range("bigint")),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(Expr::Literal(value, None)))
}

fn out_of_range(type_name: &str) -> DataFusionError {
    DataFusionError::from(Error::NumericOutOfRange(format!(
        "{type_name} out of range"
    )))
}

/// A bigint literal that fits in an int4, as an int4 (a negated one too: Postgres folds the
/// sign into the constant, so `-2147483648` is an integer).
fn int4(expr: Expr) -> Transformed<Expr> {
    let narrow = |v: i64| i32::try_from(v).ok();
    match &expr {
        // Past bigint, Postgres reads an integer as numeric (DataFusion: an unsigned bigint).
        Expr::Literal(ScalarValue::UInt64(Some(v)), metadata) => Transformed::yes(Expr::Literal(
            ScalarValue::Decimal128(Some(i128::from(*v)), 20, 0),
            metadata.clone(),
        )),
        Expr::Literal(ScalarValue::Decimal128(Some(v), precision, scale), metadata)
            if *scale < 0 =>
        {
            match whole_decimal(*v, *precision, *scale) {
                Some(value) => Transformed::yes(Expr::Literal(value, metadata.clone())),
                None => Transformed::no(expr),
            }
        }
        Expr::Literal(ScalarValue::Int64(Some(v)), metadata) => match narrow(*v) {
            Some(v) => {
                Transformed::yes(Expr::Literal(ScalarValue::Int32(Some(v)), metadata.clone()))
            }
            None => Transformed::no(expr),
        },
        Expr::Negative(inner) => match inner.as_ref() {
            Expr::Literal(ScalarValue::Int64(Some(v)), metadata) => {
                match v.checked_neg().and_then(narrow) {
                    Some(v) => Transformed::yes(Expr::Literal(
                        ScalarValue::Int32(Some(v)),
                        metadata.clone(),
                    )),
                    None => Transformed::no(expr),
                }
            }
            _ => Transformed::no(expr),
        },
        _ => Transformed::no(expr),
    }
}

/// `1e3` parses as 1 at scale -3; Postgres' numeric 1000 has scale 0, as clients expect
/// (arrow-pg cannot send a negative scale).
fn whole_decimal(value: i128, precision: u8, scale: i8) -> Option<ScalarValue> {
    let zeros = u32::from(scale.unsigned_abs());
    let precision = precision.checked_add(u8::try_from(zeros).ok()?)?;
    let value = value.checked_mul(10_i128.checked_pow(zeros)?)?;
    (precision <= datafusion::arrow::datatypes::DECIMAL128_MAX_PRECISION)
        .then_some(ScalarValue::Decimal128(Some(value), precision, 0))
}
