//! Postgres reads a quoted literal compared with a boolean as a boolean (`ix.indisprimary = 'f'`,
//! as SQLAlchemy's index reflection writes it); DataFusion refuses to compare Boolean with Utf8.
//! [`BooleanText`] runs before DataFusion's type coercion and turns such literals into booleans
//! with Postgres' spellings (`t`, `f`, `true`, `yes`, `on`, `1`, …).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct BooleanText;

impl AnalyzerRule for BooleanText {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, boolean_literal)
    }

    fn name(&self) -> &str {
        "postgres_boolean_text"
    }
}

/// Rewrites every expression of `plan` and its subqueries bottom-up with `rewrite`, which sees
/// the schema of the node's inputs; output columns keep their names. A rewrite may change an
/// expression's type (a division of decimals): every node's schema is computed again, also
/// above an unchanged node whose input changed.
pub(crate) fn rewrite_expressions(
    plan: LogicalPlan,
    rewrite: fn(Expr, &DFSchema) -> Transformed<Expr>,
) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|plan| {
        let mut schema = DFSchema::empty();
        for input in plan.inputs() {
            schema.merge(input.schema());
        }
        rewrite_node(plan, |e| Ok(rewrite(e, &schema)))
    })
    .map(|t| t.data)
}

/// Rewrites the expressions of one node bottom-up with `rewrite`, keeping its output names,
/// and computes its schema again (an input's or an expression's type may have changed).
pub(crate) fn rewrite_node(
    plan: LogicalPlan,
    mut rewrite: impl FnMut(Expr) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    let names = NamePreserver::new(&plan);
    let before = Arc::clone(plan.schema());
    let rewritten = plan.map_expressions(|expr| {
        let name = names.save(&expr);
        let rewritten = expr.transform_up(&mut rewrite)?;
        Ok(rewritten.update_data(|e| name.restore(e)))
    })?;
    let changed = rewritten.transformed;
    let plan = rewritten.data.recompute_schema()?;
    Ok(match changed || plan.schema() != &before {
        true => Transformed::yes(plan),
        false => Transformed::no(plan),
    })
}

fn boolean_literal(expr: Expr, schema: &DFSchema) -> Transformed<Expr> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Transformed::no(expr);
    };
    if !matches!(op, Operator::Eq | Operator::NotEq) {
        return Transformed::no(expr);
    }
    let is_boolean = |e: &Expr| {
        e.get_type(schema)
            .is_ok_and(|t| t == datafusion::arrow::datatypes::DataType::Boolean)
    };
    let as_boolean = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Utf8(Some(text)), _) => parse_bool(text),
        _ => None,
    };
    let (left, right) = match (as_boolean(left), as_boolean(right)) {
        (None, Some(b)) if is_boolean(left) => {
            (left.as_ref().clone(), datafusion::logical_expr::lit(b))
        }
        (Some(b), None) if is_boolean(right) => {
            (datafusion::logical_expr::lit(b), right.as_ref().clone())
        }
        _ => return Transformed::no(expr),
    };
    Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        Box::new(left),
        *op,
        Box::new(right),
    )))
}

/// Postgres' boolean input spellings (any unique prefix of true/false/yes/no, on/off, 1/0).
fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() {
        return None;
    }
    match text.as_str() {
        "1" | "on" => Some(true),
        "0" | "off" => Some(false),
        t if "true".starts_with(t) || "yes".starts_with(t) => Some(true),
        t if "false".starts_with(t) || "no".starts_with(t) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn reads_postgres_spellings() {
        for t in ["t", "TRUE", "y", "yes", "on", "1"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["f", "false", "n", "no", "off", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for other in ["", "o", "maybe", "2"] {
            assert_eq!(parse_bool(other), None, "{other}");
        }
    }
}
