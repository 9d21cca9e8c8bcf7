//! Window table functions in a one-off query (`SELECT window_start, count(*) FROM TUMBLE(t, ts,
//! INTERVAL '10' SECOND) GROUP BY 1`), as users explore data before they create a view: the
//! relation's stored rows, each repeated once per window it falls in, with the window's bounds.
//!
//! This is a plain DataFusion plan over the relation as queries read it (committed files and
//! live rows): `date_bin` gives a row's last window start, and a hop or cumulate window is one
//! branch of a UNION ALL per window a row can fall in. Session windows depend on the rows
//! around each one and are refused here; a view computes them.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Column, ScalarValue};
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions::datetime::date_bin;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit};

use crate::error::{Error, Result};
use crate::stream::window::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowKind, is_window_column};

/// Branches a hop or cumulate window may take per row at most: past it a one-off query would
/// multiply its input too much.
const WINDOWS_PER_ROW_MAX: i64 = 1_000;

/// `input` with the window columns of `kind` over `time_column`, shaped as `schema` (the
/// input's columns, its own window columns renamed `input_…`, then the new bounds).
pub fn windowed(
    input: LogicalPlan,
    time_column: &str,
    kind: WindowKind,
    schema: &SchemaRef,
) -> Result<LogicalPlan> {
    let time_type = schema
        .field_with_name(WINDOW_START)
        .map(|f| f.data_type().clone())
        .map_err(|e| Error::Internal(e.to_string()))?;
    let origin = lit(ScalarValue::new_zero(&time_type)?);
    let bin = |width_us: i64| bin(width_us, time_column, origin.clone());
    // (start, end) of each window a row may fall in; a branch keeps the rows inside its window.
    let branches: Vec<(Expr, Expr)> = match kind {
        WindowKind::Tumble { size } => {
            let start = bin(size);
            vec![(start.clone(), start + interval(size))]
        }
        WindowKind::Hop { slide, size } => {
            let windows = (size + slide - 1) / slide;
            check_windows(windows)?;
            (0..windows)
                .map(|k| {
                    let start = bin(slide) - interval(k * slide);
                    (start.clone(), start + interval(size))
                })
                .collect()
        }
        WindowKind::Cumulate { step, size } => {
            let windows = size / step;
            check_windows(windows)?;
            (1..=windows)
                .map(|j| {
                    let start = bin(size);
                    (start.clone(), start + interval(j * step))
                })
                .collect()
        }
        // A view's running totals: no window table function makes one.
        WindowKind::Unbounded => {
            return Err(Error::Internal(
                "a window table function without windows".into(),
            ));
        }
        WindowKind::Session { .. } => {
            return Err(Error::unsupported(
                "SESSION windows in a one-off query",
                Some(
                    "Session windows depend on the rows around each one; compute them in a \
                     CREATE MATERIALIZED VIEW, or use TUMBLE or HOP here.",
                ),
            ));
        }
    };
    let input_columns: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .map(|c| match is_window_column(&c.name) {
            true => {
                let name = format!("input_{}", c.name);
                Expr::Column(c).alias(name)
            }
            false => {
                let name = c.name.clone();
                Expr::Column(c).alias(name)
            }
        })
        .collect();
    let mut plan: Option<LogicalPlanBuilder> = None;
    for (start, end) in branches {
        let time = Expr::Column(Column::from_name(time_column));
        // The bounds are never NULL (a row without time falls in no window), which the
        // relation's schema says; coalesce tells DataFusion so.
        let bound = |e: Expr| coalesce(vec![cast(e, time_type.clone()), origin.clone()]);
        let mut columns = input_columns.clone();
        columns.push(bound(start.clone()).alias(WINDOW_START));
        columns.push(bound(end.clone()).alias(WINDOW_END));
        columns.push(
            bound(end.clone() - lit(ScalarValue::new_interval_mdn(0, 0, 1_000))).alias(WINDOW_TIME),
        );
        let branch = LogicalPlanBuilder::from(input.clone())
            .filter(time.clone().gt_eq(start).and(time.lt(end)))?
            .project(columns)?
            .build()?;
        plan = Some(match plan {
            None => LogicalPlanBuilder::from(branch),
            Some(plan) => plan.union(branch)?,
        });
    }
    let plan = plan
        .ok_or_else(|| Error::Internal("a window kind without windows".into()))?
        .build()?;
    // A sanity check that the plan has the relation's shape.
    if plan.schema().fields().len() != schema.fields().len() {
        return Err(Error::Internal(format!(
            "windowed relation has {} columns, expected {}",
            plan.schema().fields().len(),
            schema.fields().len()
        )));
    }
    Ok(plan)
}

fn check_windows(windows: i64) -> Result<()> {
    match windows <= WINDOWS_PER_ROW_MAX {
        true => Ok(()),
        false => Err(Error::unsupported(
            format!("a one-off window query with {windows} windows per row"),
            Some("Use a larger slide or step, or a materialized view."),
        )),
    }
}

/// The start of the `width`-µs bin `time_column` falls in, counted from `origin` (1970-01-01).
fn bin(width_us: i64, time_column: &str, origin: Expr) -> Expr {
    date_bin().call(vec![
        interval(width_us),
        col(Column::from_name(time_column)),
        origin,
    ])
}

fn interval(us: i64) -> Expr {
    lit(ScalarValue::new_interval_mdn(0, 0, us * 1_000))
}
