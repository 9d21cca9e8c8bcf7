//! `WindowAggregateNode`: the logical plan node that stands where DataFusion's `Aggregate` was,
//! so `EXPLAIN CREATE MATERIALIZED VIEW` shows the windowing in DataFusion's own plan text.

use std::cmp::Ordering;
use std::fmt;

use datafusion::common::DFSchemaRef;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use crate::stream::window::WindowKind;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowAggregateNode {
    pub input: LogicalPlan,
    pub kind: WindowKind,
    pub time_column: String,
    pub group_expr: Vec<Expr>,
    pub aggr_expr: Vec<Expr>,
    pub schema: DFSchemaRef,
    pub emit_on_close: bool,
}

impl PartialOrd for WindowAggregateNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (
            &self.input,
            &self.time_column,
            &self.group_expr,
            &self.aggr_expr,
        )
            .partial_cmp(&(
                &other.input,
                &other.time_column,
                &other.group_expr,
                &other.aggr_expr,
            ))
    }
}

impl UserDefinedLogicalNodeCore for WindowAggregateNode {
    fn name(&self) -> &str {
        "WindowAggregate"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.group_expr
            .iter()
            .chain(&self.aggr_expr)
            .cloned()
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let list = |exprs: &[Expr]| {
            exprs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "WindowAggregate: window={}{}, groupBy=[{}], aggr=[{}], emit={}",
            self.kind,
            match self.time_column.is_empty() {
                true => String::new(),
                false => format!(" on {}", self.time_column),
            },
            list(&self.group_expr),
            list(&self.aggr_expr),
            if self.emit_on_close {
                "on window close"
            } else {
                "live"
            }
        )
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let groups = self.group_expr.len();
        Ok(WindowAggregateNode {
            input: inputs.swap_remove(0),
            group_expr: exprs[..groups].to_vec(),
            aggr_expr: exprs[groups..].to_vec(),
            ..self.clone()
        })
    }
}
