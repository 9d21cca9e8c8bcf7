//! Planning a Top-N view: `… ROW_NUMBER() | RANK() | DENSE_RANK() OVER (PARTITION BY … ORDER
//! BY …) AS rn … WHERE rn <= N` (the filter on the rank, above the window function, is what
//! bounds it), or `ORDER BY … LIMIT N`. Steps below it run before the operator, the rest after
//! it; its output changes (a row enters the top N, another leaves), so the view is updating.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::logical_plan::{FetchType, Limit, SkipType, Sort, Window};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, Operator};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use super::{Compiler, Node};
use crate::error::{Error, Result};
use crate::stream::plan::{InputRelation, ViewPlan};
use crate::stream::top_n::{Rank, TopNSpec};

/// Where a Top-N comes from in the query.
pub(super) enum Ranking<'p> {
    Window(&'p Window),
    Limit(&'p Limit, &'p Sort),
}

impl Compiler<'_> {
    /// The plan of a view whose chain has a Top-N at `at`.
    pub(super) fn compile_top_n(
        &self,
        plan: &LogicalPlan,
        chain: &[Node],
        at: usize,
        input: InputRelation,
        windowed: bool,
        emit_on_close: bool,
    ) -> Result<ViewPlan> {
        if windowed || emit_on_close || chain.iter().any(|n| matches!(n, Node::Aggregate(_))) {
            return Err(Error::unsupported(
                "a Top-N with an aggregation, a window table function or EMIT ON WINDOW CLOSE in \
                 one materialized view",
                Some(
                    "Aggregate in one view and rank its rows in a view over it: SELECT … FROM \
                     (SELECT …, ROW_NUMBER() OVER (PARTITION BY … ORDER BY …) AS rn FROM view) \
                     WHERE rn <= N.",
                ),
            ));
        }
        if chain[at + 1..].iter().any(|n| matches!(n, Node::TopN(_)))
            || chain[..at].iter().any(|n| matches!(n, Node::TopN(_)))
        {
            return Err(Error::unsupported(
                "two Top-Ns in one materialized view",
                Some("Create one view per ranking: a view can read another view."),
            ));
        }
        let no_flags = vec![false; input.schema.fields().len()];
        let (pre, _) = self.steps(&chain[at + 1..], no_flags.clone())?;
        let Node::TopN(ranking) = &chain[at] else {
            return Err(Error::Internal("no Top-N where one was found".into()));
        };
        let top_n = self.top_n_spec(ranking, &chain[..at], input.updating)?;
        let (post, _) = self.steps(&chain[..at], no_flags)?;
        let columns = self.columns(plan.schema())?;
        Ok(ViewPlan {
            input,
            branches: Vec::new(),
            join: None,
            logical: plan.clone(),
            pre,
            window: None,
            top_n: Some(top_n),
            post,
            columns,
            time_columns: Vec::new(),
            closes: false,
            updating: true,
            parts: Vec::new(),
        })
    }

    fn top_n_spec(&self, ranking: &Ranking, above: &[Node], updating: bool) -> Result<TopNSpec> {
        let props = self.state.execution_props();
        let ctx = PhysicalPlanningContext::default();
        let (input, output, partition_by, order_by, limit, rank, rank_column) = match ranking {
            Ranking::Limit(limit, sort) => {
                let (Ok(SkipType::Literal(0)), Ok(FetchType::Literal(Some(n)))) =
                    (limit.get_skip_type(), limit.get_fetch_type())
                else {
                    return Err(Error::unsupported(
                        "OFFSET, or a LIMIT that is not a constant, in a materialized view",
                        Some("Keep the first rows with ORDER BY … LIMIT N."),
                    ));
                };
                (
                    sort.input.schema(),
                    sort.input.schema(),
                    Vec::new(),
                    sort.expr.clone(),
                    n,
                    Rank::RowNumber,
                    false,
                )
            }
            Ranking::Window(window) => {
                let [Expr::WindowFunction(function)] = window.window_expr.as_slice() else {
                    return Err(ranking_error());
                };
                let rank = match function.fun.name().to_ascii_lowercase().as_str() {
                    "row_number" => Rank::RowNumber,
                    "rank" => Rank::Rank,
                    "dense_rank" => Rank::DenseRank,
                    _ => return Err(ranking_error()),
                };
                if function.params.order_by.is_empty() || !function.params.args.is_empty() {
                    return Err(Error::unsupported(
                        "a ranking without ORDER BY in a materialized view",
                        Some(
                            "Say what comes first: ROW_NUMBER() OVER (PARTITION BY … ORDER BY …).",
                        ),
                    ));
                }
                let rank_name = window.schema.field(window.schema.fields().len() - 1).name();
                let limit = bound(above, rank_name).ok_or_else(|| {
                    Error::unsupported(
                        "a ranking in a materialized view without a filter keeping the first N",
                        Some("Keep the top rows: SELECT * FROM (SELECT …, ROW_NUMBER() OVER (…) AS rn FROM …) WHERE rn <= 3."),
                    )
                })?;
                (
                    window.input.schema(),
                    &window.schema,
                    function.params.partition_by.clone(),
                    function.params.order_by.clone(),
                    limit,
                    rank,
                    true,
                )
            }
        };
        let physical = |e: &Expr| -> Result<Arc<dyn PhysicalExpr>> {
            Ok(create_physical_expr(e, input, props, &ctx)?)
        };
        Ok(TopNSpec {
            partition_by: partition_by.iter().map(physical).collect::<Result<_>>()?,
            order_by: order_by
                .iter()
                .map(|s| {
                    Ok((
                        physical(&s.expr)?,
                        SortOptions {
                            descending: !s.asc,
                            nulls_first: s.nulls_first,
                        },
                    ))
                })
                .collect::<Result<_>>()?,
            limit,
            rank,
            rank_column,
            input: Arc::new(input.as_arrow().clone()),
            output: Arc::new(output.as_arrow().clone()),
            updating,
        })
    }
}

fn ranking_error() -> Error {
    Error::unsupported(
        "a window function (OVER …) other than a Top-N in a materialized view",
        Some(
            "Rank with one ROW_NUMBER(), RANK() or DENSE_RANK() and keep the first N (WHERE rn <= \
             N); for time windows use FROM TUMBLE(rel, ts, INTERVAL '1' MINUTE) … GROUP BY \
             window_start, window_end.",
        ),
    )
}

/// N from a filter `rank <= N` (or `< N + 1`, or `= 1`) above the window function, following
/// the rank column through the projections that rename it.
fn bound(above: &[Node], rank: &str) -> Option<usize> {
    let mut names: HashSet<String> = HashSet::from([rank.to_string()]);
    for node in above.iter().rev() {
        let Node::Step(step) = node else { continue };
        match step {
            LogicalPlan::Projection(projection) => {
                for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
                    if let Expr::Column(c) = expr.clone().unalias()
                        && names.contains(&c.name)
                    {
                        names.insert(field.name().clone());
                    }
                }
            }
            LogicalPlan::Filter(filter) => {
                if let Some(n) = split_conjunction(&filter.predicate)
                    .into_iter()
                    .find_map(|e| comparison_bound(e, &names))
                {
                    return Some(n);
                }
            }
            _ => {}
        }
    }
    None
}

fn comparison_bound(expr: &Expr, names: &HashSet<String>) -> Option<usize> {
    let Expr::BinaryExpr(binary) = expr else {
        return None;
    };
    let (column, op, value) = match (uncast(&binary.left), uncast(&binary.right)) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, binary.op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => (c, binary.op.swap()?, v),
        _ => return None,
    };
    if !names.contains(&column.name) {
        return None;
    }
    let n = match value {
        ScalarValue::Int8(Some(n)) => i64::from(*n),
        ScalarValue::Int16(Some(n)) => i64::from(*n),
        ScalarValue::Int32(Some(n)) => i64::from(*n),
        ScalarValue::Int64(Some(n)) => *n,
        ScalarValue::UInt64(Some(n)) => i64::try_from(*n).ok()?,
        ScalarValue::UInt32(Some(n)) => i64::from(*n),
        _ => return None,
    };
    let n = match op {
        Operator::LtEq => n,
        Operator::Lt => n - 1,
        Operator::Eq if n == 1 => 1,
        _ => return None,
    };
    usize::try_from(n).ok().filter(|n| *n >= 1)
}

fn uncast(expr: &Expr) -> &Expr {
    match expr {
        Expr::Cast(cast) => uncast(&cast.expr),
        Expr::TryCast(cast) => uncast(&cast.expr),
        other => other,
    }
}
