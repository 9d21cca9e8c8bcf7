//! A view's operator graph, as planned ([`crate::planner`]) and as the engine runs it: the
//! relations it reads (one, or the branches of a `UNION ALL`), the steps before its operator
//! (filters, projections, window assignment), the operator (window aggregate, retracting
//! aggregate or Top-N), the steps after it, and its output columns. Every expression is a
//! DataFusion physical expression; [`super::dataflow::Dataflow`] runs rows through them the
//! same way in the server's pipeline, the checkpoint tests and the benches.
//!
//! DataFusion's own streaming operators are not used downstream of the source: its record
//! batch streams have no place for watermarks, and its `FilterExec` holds rows back to fill
//! batches, which would delay live results.

use std::fmt::Write as _;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;

use super::aggregate::{Layout, WindowAggregate};
use super::assign::AssignWindows;
use super::changes::Changes;
use super::groups::AggregateSpec;
use super::join::JoinSpec;
use super::operator::ViewOperator;
use super::retracting::RetractingAggregate;
use super::top_n::{TopN, TopNSpec};
use super::window::WindowKind;
use crate::catalog::types::{ColumnDef, arrow_schema};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    Source,
    View,
    /// The branches of a `UNION ALL`, each over one of the others.
    Union,
    /// The joined rows of the branches (a tree of joins over them).
    Join,
}

impl InputRelation {
    /// Whether each column carries the watermark.
    pub fn time_flags(&self) -> Vec<bool> {
        match &self.watermark_positions {
            Some(flags) => flags.clone(),
            None => self
                .schema
                .fields()
                .iter()
                .map(|f| self.watermark_columns.contains(f.name()))
                .collect(),
        }
    }
}

impl RelationKind {
    pub fn name(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::Source => "source",
            RelationKind::View => "materialized view",
            RelationKind::Union => "union",
            RelationKind::Join => "join",
        }
    }
}

/// The relation a view reads, as the catalog describes it.
#[derive(Debug, Clone)]
pub struct InputRelation {
    pub name: String,
    pub kind: RelationKind,
    pub schema: SchemaRef,
    /// Columns a watermark is known for: a table's or source's `WATERMARK FOR` column, a view's
    /// window bounds.
    pub watermark_columns: Vec<String>,
    /// The same by position, where names do not say it (a join's sides may share names).
    pub watermark_positions: Option<Vec<bool>>,
    /// How far a table's watermark trails its largest event time (sources and views publish
    /// their own watermark).
    pub delay_us: i64,
    /// Whether its rows change (a keyed table, a view whose rows are never final): it hands
    /// on inserts and deletes, not only new rows.
    pub updating: bool,
}

/// A filter or projection, as DataFusion physical expressions.
#[derive(Debug, Clone)]
pub enum Step {
    Filter(Arc<dyn PhysicalExpr>),
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
    /// Rows of a relation whose rows change, into the windows grouped over.
    Windows(AssignWindows),
}

/// The rows a filter keeps.
fn mask(predicate: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
    let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    mask.as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| Error::Internal("filter is not boolean".into()))
}

impl Step {
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        match self {
            Step::Filter(predicate) => Ok(filter_record_batch(batch, &mask(predicate, batch)?)?),
            Step::Project { .. } => self.project(batch),
            Step::Windows(assign) => assign.apply(batch),
        }
    }

    /// The step over a changelog: a filter keeps rows with their ops, a projection maps rows.
    pub(super) fn apply_changes(&self, changes: &Changes) -> Result<Changes> {
        match self {
            Step::Filter(predicate) => changes.filter(&mask(predicate, &changes.rows)?),
            Step::Project { .. } => Ok(changes.with_rows(self.project(&changes.rows)?)),
            Step::Windows(assign) => assign.apply_changes(changes),
        }
    }

    fn project(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        match self {
            Step::Filter(_) | Step::Windows(_) => Ok(batch.clone()),
            Step::Project { exprs, schema } => {
                let columns = exprs
                    .iter()
                    .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
                    .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
                Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
            }
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Step::Filter(p) => format!("Filter: {p}"),
            Step::Project { exprs, schema } => {
                let items: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(e, f)| format!("{e} AS {}", f.name()))
                    .collect();
                format!("Project: {}", items.join(", "))
            }
            Step::Windows(assign) => format!("AssignWindows: {}", assign.kind),
        }
    }
}

/// The window aggregation of a view: how to build its operator.
#[derive(Debug, Clone)]
pub struct WindowPlan {
    pub kind: WindowKind,
    /// The event-time column in the input batches; `None` for running totals.
    pub time_column: Option<usize>,
    pub time_column_name: Option<String>,
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub key_schema: SchemaRef,
    pub aggregates: Vec<AggregateSpec>,
    pub layout: Layout,
    /// The input follows deletes: groups without windows that retract.
    pub retracting: bool,
    /// Retracting over windows assigned to changing rows, closed by the watermark: the
    /// `window_end` column of the aggregation's input, and the longest window's length.
    pub closes_at: Option<(usize, i64)>,
    /// No aggregation: each group (a whole row) is output as often as it occurs.
    pub multiset: bool,
    /// The rows the aggregation reads (after the steps before it).
    pub input_schema: SchemaRef,
}

impl WindowPlan {
    pub fn operator(&self) -> Result<ViewOperator> {
        if self.retracting {
            let groups = RetractingAggregate::try_new(
                self.keys.clone(),
                self.aggregates.clone(),
                &self.input_schema,
                Arc::clone(&self.layout.schema),
                self.multiset,
            )?;
            return Ok(ViewOperator::Retracting(match self.closes_at {
                Some((end, longest)) => groups.closing(end, longest),
                None => groups,
            }));
        }
        Ok(ViewOperator::Window(WindowAggregate::new(
            self.kind,
            self.time_column,
            self.keys.clone(),
            Arc::clone(&self.key_schema),
            self.aggregates.clone(),
            self.layout.clone(),
        )?))
    }
}

/// A view's streaming pipeline: input → `pre` steps → window aggregation → `post` steps.
#[derive(Debug, Clone)]
pub struct ViewPlan {
    /// What the steps before the operator read: the one input, or the union of the branches.
    pub input: InputRelation,
    /// A view's branches when it reads several inputs, each an input and its steps: to the
    /// union's columns for a `UNION ALL`, to a join's side for a join; empty for one input.
    pub branches: Vec<Branch>,
    /// The joins of the branches, whose joined rows the steps before the operator read.
    pub join: Option<JoinSpec>,
    /// The logical plan with the aggregation replaced by a [`WindowAggregateNode`].
    pub logical: LogicalPlan,
    pub pre: Vec<Step>,
    pub window: Option<WindowPlan>,
    /// The top rows per partition, in place of an aggregation.
    pub top_n: Option<TopNSpec>,
    pub post: Vec<Step>,
    /// Output columns as stored and served.
    pub columns: Vec<ColumnDef>,
    /// Output columns that carry the view's watermark.
    pub time_columns: Vec<String>,
    /// Whether the input's watermark reaches the view, so windows close and rows become final.
    pub closes: bool,
    /// Whether the view's rows change (it aggregates and its windows never close): it hands
    /// on inserts and deletes to the views reading it, not only final rows.
    pub updating: bool,
    /// Subqueries that run as views of their own, which this view reads (a join's side that
    /// aggregates): inner ones first.
    pub parts: Vec<ViewPart>,
}

/// A subquery of a view that runs as a view of its own, part of the view: created, read and
/// dropped with it.
#[derive(Debug, Clone)]
pub struct ViewPart {
    /// The view's name, `$`, and the subquery's alias (or its number).
    pub name: String,
    /// The subquery's alias in the view's query, where it has one.
    pub alias: Option<String>,
    pub plan: ViewPlan,
}

/// One input of a view over several (a `UNION ALL`'s branch, a join's side) and its filters
/// and projections.
#[derive(Debug, Clone)]
pub struct Branch {
    pub input: InputRelation,
    pub steps: Vec<Step>,
}

impl ViewPlan {
    /// The relations the view reads, in branch order.
    pub fn inputs(&self) -> Vec<&InputRelation> {
        match self.branches.is_empty() {
            true => vec![&self.input],
            false => self.branches.iter().map(|b| &b.input).collect(),
        }
    }

    /// The plan with a state TTL (µs) on its joins and its parts' joins.
    pub fn with_state_ttl(self, ttl_us: Option<i64>) -> ViewPlan {
        ViewPlan {
            join: self.join.map(|join| join.with_idle_ttl(ttl_us)),
            parts: self
                .parts
                .into_iter()
                .map(|part| ViewPart {
                    plan: part.plan.with_state_ttl(ttl_us),
                    ..part
                })
                .collect(),
            ..self
        }
    }

    /// Whether its joins forget rows idle for longer than a state TTL.
    pub fn forgets_idle(&self) -> bool {
        self.join.as_ref().is_some_and(|j| j.idle_ttl_us.is_some())
    }

    /// Whether input `branch`'s watermark is one of those the view's is the least of (not
    /// a lookup join's dimension's). Such inputs are also read first when the view backfills.
    pub fn timed(&self, branch: usize) -> bool {
        !self.join.as_ref().is_some_and(|j| j.is_dimension(branch))
    }

    /// Rows of input `branch` as rows of the union (unchanged for a view of one input).
    pub(super) fn apply_branch(&self, branch: usize, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut current = batch.clone();
        for step in self.branches.get(branch).map_or(&[][..], |b| &b.steps) {
            current = step.apply(&current)?;
        }
        Ok(current)
    }

    /// Changes of input `branch` as changes of the union.
    pub(super) fn apply_branch_changes(&self, branch: usize, changes: &Changes) -> Result<Changes> {
        let mut current = changes.clone();
        for step in self.branches.get(branch).map_or(&[][..], |b| &b.steps) {
            current = step.apply_changes(&current)?;
        }
        Ok(current)
    }

    /// The view's stateful operator, new; `None` for a view that only filters and projects.
    pub fn operator(&self) -> Result<Option<ViewOperator>> {
        match (&self.window, &self.top_n) {
            (Some(window), _) => Ok(Some(window.operator()?)),
            (None, Some(top)) => Ok(Some(ViewOperator::TopN(TopN::try_new(top.clone())?))),
            (None, None) => Ok(None),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        arrow_schema(&self.columns)
    }

    /// Rows through the steps before the operator.
    pub(super) fn apply_pre(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut current = batch.clone();
        for step in &self.pre {
            current = step.apply(&current)?;
        }
        Ok(current)
    }

    /// Changes through the steps before the operator.
    pub(super) fn apply_pre_changes(&self, changes: &Changes) -> Result<Changes> {
        let mut current = changes.clone();
        for step in &self.pre {
            current = step.apply_changes(&current)?;
        }
        Ok(current)
    }

    /// The operator's rows through the steps after it.
    pub(super) fn apply_post(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut current = batch.clone();
        for step in &self.post {
            current = step.apply(&current)?;
        }
        Ok(current)
    }

    /// Casts a batch of the last step's output to the stored column types.
    pub(super) fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let schema = self.schema();
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| match c.data_type() == f.data_type() {
                true => Ok(Arc::clone(c)),
                false => Ok(cast(c, f.data_type())?),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// The streaming pipeline, one operator per line, output first (for `EXPLAIN`).
    pub fn describe(&self, view: &str, emit_on_close: bool) -> String {
        let mut lines = vec![format!(
            "ViewSink: view={view} emit={} output={} columns=[{}]",
            if emit_on_close {
                "on window close"
            } else {
                "live"
            },
            if self.updating {
                "updating"
            } else {
                "append-only"
            },
            self.columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.column_type.pg_name))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        lines.extend(self.post.iter().rev().map(Step::describe));
        if let Some(w) = &self.window {
            let keys: Vec<String> = w.keys.iter().map(|k| k.to_string()).collect();
            let aggregates: Vec<String> = w
                .aggregates
                .iter()
                .map(|a| match &a.filter {
                    Some(f) => format!("{} FILTER (WHERE {f})", a.expr.name()),
                    None => a.expr.name().to_string(),
                })
                .collect();
            let output = match (self.closes, emit_on_close) {
                (true, true) => "append-only (closed windows)",
                (true, false) => "append-only closed windows, open ones live",
                (false, _) => "updating",
            };
            lines.push(match (w.retracting, w.multiset) {
                (true, true) => format!(
                    "Rows: columns=[{}] state=each row and how often it occurs output=updating",
                    keys.join(", ")
                ),
                (true, false) => format!(
                    "RetractingAggregate: keys=[{}] aggregates=[{}] close={} state=groups with \
                     counts, sums and value multisets{} output={output}",
                    keys.join(", "),
                    aggregates.join(", "),
                    match (&w.time_column_name, self.closes) {
                        (Some(time), true) =>
                            format!("windows on watermark of {time}, later changes late"),
                        _ => "never".to_string(),
                    },
                    if self.closes { " of open windows" } else { "" },
                ),
                (false, _) => format!(
                    "WindowAggregate: window={} time={} keys=[{}] aggregates=[{}] close={} \
                     state={} output={output}",
                    w.kind,
                    w.time_column_name.as_deref().unwrap_or("-"),
                    keys.join(", "),
                    aggregates.join(", "),
                    if self.closes {
                        "on watermark"
                    } else {
                        "never (no watermark)"
                    },
                    if self.closes {
                        "partial aggregates of open windows per key"
                    } else {
                        "partial aggregates per key, kept for ever"
                    },
                ),
            });
        }
        if let Some(top) = &self.top_n {
            lines.push(top.describe());
        }
        lines.extend(self.pre.iter().rev().map(Step::describe));
        let describe_input = |input: &InputRelation| {
            format!(
                "Input: {} {} watermark=[{}]{}",
                input.kind.name(),
                input.name,
                input.watermark_columns.join(", "),
                if input.updating { " (updating)" } else { "" }
            )
        };
        let mut below: Vec<(usize, String)> = Vec::new();
        let branch_lines = |b: usize| {
            let branch = &self.branches[b];
            let mut lines: Vec<String> = branch.steps.iter().rev().map(Step::describe).collect();
            lines.push(describe_input(&branch.input));
            lines
        };
        match (&self.join, self.branches.is_empty()) {
            (Some(join), _) => below = join.describe(&branch_lines),
            (None, true) => lines.push(describe_input(&self.input)),
            (None, false) => {
                lines.push(format!(
                    "UnionAll: watermark=[{}]{}",
                    self.input.watermark_columns.join(", "),
                    if self.input.updating {
                        " (updating)"
                    } else {
                        ""
                    }
                ));
                for b in 0..self.branches.len() {
                    below.extend(branch_lines(b).into_iter().enumerate());
                }
            }
        }
        let mut out = String::new();
        for (depth, line) in lines.iter().enumerate() {
            let _ = writeln!(out, "{}{line}", "  ".repeat(depth));
        }
        let depth = lines.len();
        for (below, line) in below {
            let _ = writeln!(out, "{}{line}", "  ".repeat(depth + below));
        }
        out
    }
}
