//! A cast of a fractional number to an integer rounds, as in Postgres (`3.7::int` is 4,
//! `-2.5::int` is -3), where DataFusion truncates (3, -2): a wrong number in any report that
//! casts an average or a ratio. [`RoundingCasts`] runs after type coercion and puts `round()`
//! (half away from zero, Postgres' rule for numeric, exact on decimals) under every such cast.
//! A double is rounded the same way, where Postgres rounds a float8 half to even: SluiceDB's
//! doubles often stand for Postgres numerics (`avg(int)`), which round away.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result};
use datafusion::config::ConfigOptions;
use datafusion::functions::math::round;
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, LogicalPlan, TryCast};
use datafusion::optimizer::AnalyzerRule;

use crate::pg::coercion::rewrite_expressions;

#[derive(Debug, Default)]
pub struct RoundingCasts;

impl AnalyzerRule for RoundingCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, rounded)
    }

    fn name(&self) -> &str {
        "postgres_rounding_casts"
    }
}

fn rounded(expr: Expr, schema: &DFSchema) -> Transformed<Expr> {
    let inner = match &expr {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
            if field.data_type().is_integer() =>
        {
            expr.as_ref()
        }
        _ => return Transformed::no(expr),
    };
    // Already rounded (a plan is analyzed at Describe and again to run).
    if matches!(inner, Expr::ScalarFunction(f) if f.name() == "round") {
        return Transformed::no(expr);
    }
    let Ok(from) = inner.get_type(schema) else {
        return Transformed::no(expr);
    };
    let argument = match from {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => inner.clone(),
        DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale) if scale > 0 => {
            inner.clone()
        }
        _ => return Transformed::no(expr),
    };
    let rounded = Box::new(round().call(vec![argument]));
    Transformed::yes(match expr {
        Expr::TryCast(TryCast { field, .. }) => Expr::TryCast(TryCast {
            expr: rounded,
            field,
        }),
        Expr::Cast(Cast { field, .. }) => Expr::Cast(Cast {
            expr: rounded,
            field,
        }),
        other => other,
    })
}
