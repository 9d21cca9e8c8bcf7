//! From a view's logical plan to its operator graph ([`ViewPlan`]).
//!
//! The database turns the view's SQL into a DataFusion logical plan (analyzed, types coerced);
//! this module lowers it node by node. The plan must be a chain: a scan of one relation (or of
//! a window table function over it) or a `UNION ALL` of such chains of filters and
//! projections, then filters and projections, at most one aggregation or Top-N, then filters
//! (`HAVING`) and projections. The aggregation is replaced by a [`WindowAggregateNode`] (shown
//! by `EXPLAIN`) and compiled into a streaming operator; every filter, projection, group key,
//! aggregate argument and `FILTER (WHERE …)` stays a DataFusion physical expression. Anything
//! else (sorts without limits, other window functions, `DISTINCT ON`) cannot be maintained
//! incrementally yet and is refused with 0A000 and a hint. Joins of chains are planned in
//! `joins.rs`; a join side that aggregates becomes a *part*, planned here as a view of its own.

mod adhoc;
pub mod functions;
mod joins;
mod node;
mod top_n;

use std::cell::RefCell;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, Distinct, Expr, Extension, LogicalPlan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use crate::catalog::types::{ColumnDef, ColumnType};
use crate::error::{Error, Result};
use crate::storage::Manifest;
use crate::stream::aggregate::{GroupColumn, Layout};
use crate::stream::assign::AssignWindows;
use crate::stream::groups::AggregateSpec;
use crate::stream::plan::{
    Branch, InputRelation, RelationKind, Step, ViewPart, ViewPlan, WindowPlan,
};
use crate::stream::retracting;
use crate::stream::window::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowKind, is_window_column};
use functions::WindowedRelation;
use node::WindowAggregateNode;

/// Plans a view's query against the newest catalog.
/// `plan` is the view's analyzed logical plan; `names` its output columns as Postgres names
/// them, where DataFusion's differ.
pub fn plan_view(
    state: &SessionState,
    manifest: &Manifest,
    view: &str,
    plan: LogicalPlan,
    names: Option<Vec<String>>,
    emit_on_close: bool,
) -> Result<ViewPlan> {
    let plan = joins::prepare(distinct_as_aggregate(plan)?)?;
    let parts = RefCell::new(Vec::new());
    let mut planned = Compiler {
        state,
        manifest,
        view,
        names,
        parts: &parts,
    }
    .compile(plan, emit_on_close)?;
    planned.parts = parts.into_inner();
    Ok(planned)
}

struct Compiler<'a> {
    state: &'a SessionState,
    manifest: &'a Manifest,
    /// The view planned (or the part of one): parts of it are named after it.
    view: &'a str,
    names: Option<Vec<String>>,
    /// The parts planned so far, of the view and of its parts.
    parts: &'a RefCell<Vec<ViewPart>>,
}

/// Where a chain node sits relative to the aggregation.
enum Node<'p> {
    Step(&'p LogicalPlan),
    Aggregate(&'p datafusion::logical_expr::Aggregate),
    /// A ranking window function (kept by the filter on it above), or `ORDER BY … LIMIT`.
    TopN(top_n::Ranking<'p>),
}

impl Compiler<'_> {
    fn compile(&self, plan: LogicalPlan, emit_on_close: bool) -> Result<ViewPlan> {
        let (chain, bottom) = chain(&plan)?;
        let (input, windowed, branches, join) = match bottom {
            Bottom::Scan(scan) => {
                let (input, windowed) = self.leaf(scan)?;
                (input, windowed, Vec::new(), None)
            }
            Bottom::Union(union) => {
                let (input, branches) = self.union(union)?;
                (input, None, branches, None)
            }
            Bottom::Join(join) => {
                let mut branches = Vec::new();
                let (spec, time) = self.join(join, &mut branches)?;
                let input = joins::relation(&spec, &branches, &time);
                (input, None, branches, Some(spec))
            }
        };
        let mut view = self.compile_chain(&plan, &chain, input, windowed, emit_on_close)?;
        view.branches = branches;
        view.join = join;
        Ok(view)
    }

    /// The branches of a `UNION ALL` and the relation they make together: its watermark is on
    /// the columns every branch has one on (never a table's, whose watermark a view derives
    /// from the rows it read), and its rows change if any branch's do.
    fn union(
        &self,
        union: &datafusion::logical_expr::Union,
    ) -> Result<(InputRelation, Vec<Branch>)> {
        let inside = |what: &str| {
            Error::unsupported(
                format!("{what} inside UNION ALL in a materialized view"),
                Some("Create a view per branch, then a view that is the UNION ALL of those views."),
            )
        };
        let mut branches = Vec::new();
        let mut union_flags = vec![true; union.schema.fields().len()];
        for plan in &union.inputs {
            let (nodes, bottom) = chain(plan)?;
            let Bottom::Scan(scan) = bottom else {
                return Err(inside("a UNION"));
            };
            let (input, windowed) = self.leaf(scan)?;
            if windowed.is_some() {
                return Err(inside("a window table function"));
            }
            if nodes.iter().any(|n| !matches!(n, Node::Step(_))) {
                return Err(inside("an aggregation or a Top-N"));
            }
            let flags: Vec<bool> = input
                .schema
                .fields()
                .iter()
                .map(|f| {
                    input.kind != RelationKind::Table && input.watermark_columns.contains(f.name())
                })
                .collect();
            let (steps, flags) = self.steps(&nodes, flags)?;
            for (all, this) in union_flags.iter_mut().zip(&flags) {
                *all &= *this;
            }
            branches.push(Branch { input, steps });
        }
        let names: Vec<&str> = branches.iter().map(|b| b.input.name.as_str()).collect();
        let schema = Arc::new(union.schema.as_arrow().clone());
        let watermark_columns = schema
            .fields()
            .iter()
            .zip(&union_flags)
            .filter(|(_, f)| **f)
            .map(|(field, _)| field.name().clone())
            .collect();
        let input = InputRelation {
            name: names.join(" UNION ALL "),
            kind: RelationKind::Union,
            schema,
            watermark_columns,
            delay_us: 0,
            updating: branches.iter().any(|b| b.input.updating),
            watermark_positions: None,
        };
        Ok((input, branches))
    }

    fn compile_chain(
        &self,
        plan: &LogicalPlan,
        chain: &[Node<'_>],
        input: InputRelation,
        windowed: Option<(WindowKind, String)>,
        emit_on_close: bool,
    ) -> Result<ViewPlan> {
        if let Some(at) = chain.iter().position(|n| matches!(n, Node::TopN(_))) {
            return self.compile_top_n(plan, chain, at, input, windowed.is_some(), emit_on_close);
        }
        let aggregate_at = chain.iter().position(|n| matches!(n, Node::Aggregate(_)));
        let (post_nodes, pre_nodes) = match aggregate_at {
            Some(i) => (&chain[..i], &chain[i + 1..]),
            None => (&chain[..0], chain),
        };
        if chain
            .iter()
            .filter(|n| matches!(n, Node::Aggregate(_)))
            .count()
            > 1
        {
            return Err(Error::unsupported(
                "an aggregation over an aggregation in one materialized view",
                Some("Create one view per aggregation: a view can read another view."),
            ));
        }
        // Watermark flags per column, traced from the input up through the steps.
        let mut flags = input.time_flags();
        if windowed.is_some() {
            flags.extend([false; 3]);
        }
        let mut pre = Vec::new();
        for node in pre_nodes.iter().rev() {
            let Node::Step(step) = node else { continue };
            if windowed.is_some() && matches!(step, LogicalPlan::Projection(_)) {
                return Err(Error::unsupported(
                    "a projection between a window table function and its aggregation",
                    Some(
                        "Select from the window function directly and write expressions in \
                         GROUP BY, in the aggregates, or in the view's outer SELECT.",
                    ),
                ));
            }
            if windowed.is_some() && references_window(step) {
                return Err(Error::unsupported(
                    "a filter on window bounds before the aggregation",
                    Some("Filter on window_start or window_end in HAVING."),
                ));
            }
            if let Some((compiled, traced)) = self.step(step, &flags)? {
                pre.push(compiled);
                flags = traced;
            }
        }
        // Over rows that change, windows are group keys of a retracting aggregation: rows
        // are assigned their windows first. With a watermark on the time column the windows
        // close (a change to a closed one is late); without one they stay open.
        if input.updating
            && let Some((kind, column)) = &windowed
        {
            let refuse = |what: &str, hint: &str| {
                Err(Error::unsupported(
                    format!(
                        "{what} over {} \"{}\", whose rows change",
                        input.kind.name(),
                        input.name
                    ),
                    Some(hint),
                ))
            };
            if matches!(kind, WindowKind::Session { .. }) {
                return refuse(
                    "a SESSION window",
                    "A delete can split a session: use TUMBLE, HOP or CUMULATE windows.",
                );
            }
            let Some(Node::Aggregate(aggregate)) = aggregate_at.map(|i| &chain[i]) else {
                return Err(Error::unsupported(
                    "a window table function without an aggregation",
                    Some("Aggregate over the windows: … GROUP BY window_start, window_end."),
                ));
            };
            pre.insert(
                0,
                Step::Windows(AssignWindows {
                    kind: *kind,
                    time_column: input.schema.index_of(column)?,
                    schema: Arc::new(aggregate.input.schema().as_arrow().clone()),
                }),
            );
        }
        let (window, closes) = match aggregate_at {
            Some(i) => {
                let Node::Aggregate(aggregate) = &chain[i] else {
                    unreachable!("position found an aggregate")
                };
                let (window, window_flags) = self.window(aggregate, &input, windowed.as_ref())?;
                let closes = match &window.time_column_name {
                    Some(column) => input.watermark_columns.contains(column),
                    None => false,
                };
                flags = match closes {
                    true => window_flags,
                    false => vec![false; window_flags.len()],
                };
                (Some(window), closes)
            }
            None if windowed.is_some() => {
                return Err(Error::unsupported(
                    "a window table function without an aggregation",
                    Some("Aggregate over the windows: … GROUP BY window_start, window_end."),
                ));
            }
            // Filtered and projected rows of a relation whose rows change: kept as a multiset,
            // so a delete finds the row it takes back.
            None if input.updating => {
                flags = vec![false; flags.len()];
                (Some(rows_plan(plan.schema())?), false)
            }
            None => (None, !input.watermark_columns.is_empty()),
        };
        if emit_on_close && !closes {
            return Err(Error::unsupported(
                "EMIT ON WINDOW CLOSE without a watermark on the window's time column",
                Some(
                    "Declare one on the input (WATERMARK FOR ts AS ts - INTERVAL '5' SECOND), or \
                     drop EMIT ON WINDOW CLOSE to see live, updating results.",
                ),
            ));
        }
        let (post, flags) = self.steps(post_nodes, flags)?;
        let columns = self.columns(plan.schema())?;
        let time_columns = columns
            .iter()
            .zip(&flags)
            .filter(|(_, f)| **f)
            .map(|(c, _)| c.name.clone())
            .collect();
        let logical = rewrite(plan.clone(), windowed.as_ref(), emit_on_close)?;
        let updating = window.is_some() && !closes;
        Ok(ViewPlan {
            input,
            branches: Vec::new(),
            join: None,
            logical,
            pre,
            window,
            top_n: None,
            post,
            columns,
            time_columns,
            closes,
            updating,
            parts: Vec::new(),
        })
    }

    /// The relation at the bottom of the chain, and its window when it is a window function.
    fn leaf(
        &self,
        scan: &datafusion::logical_expr::TableScan,
    ) -> Result<(InputRelation, Option<(WindowKind, String)>)> {
        let provider = source_as_provider(&scan.source)?;
        if provider.as_ref().is::<functions::LookupRelation>() {
            return Err(Error::unsupported(
                "FOR SYSTEM_TIME AS OF PROCTIME() outside a join",
                Some(
                    "Look a dimension up in a join: events e JOIN dim FOR SYSTEM_TIME AS OF PROCTIME() d ON …",
                ),
            ));
        }
        if let Some(windowed) = provider.as_ref().downcast_ref::<WindowedRelation>() {
            return Ok((
                windowed.input.clone(),
                Some((windowed.kind, windowed.time_column.clone())),
            ));
        }
        if scan
            .table_name
            .schema()
            .is_some_and(|s| s != crate::catalog::SCHEMA_NAME)
        {
            return Err(Error::unsupported(
                format!("a materialized view over {}", scan.table_name),
                Some("A view reads a table, a source or another materialized view."),
            ));
        }
        Ok((lookup(self.manifest, scan.table_name.table())?, None))
    }

    /// The filters and projections of a chain's `nodes` (top first), compiled bottom first,
    /// and the watermark flags of their output given those of their input (`flags`).
    fn steps(&self, nodes: &[Node<'_>], flags: Vec<bool>) -> Result<(Vec<Step>, Vec<bool>)> {
        let mut flags = flags;
        let mut steps = Vec::new();
        for node in nodes.iter().rev() {
            let Node::Step(step) = node else { continue };
            if let Some((compiled, traced)) = self.step(step, &flags)? {
                steps.push(compiled);
                flags = traced;
            }
        }
        Ok((steps, flags))
    }

    /// Compiles a filter or projection; `None` for nodes that only rename (aliases). Returns
    /// the watermark flags of its output columns.
    fn step(&self, node: &LogicalPlan, flags: &[bool]) -> Result<Option<(Step, Vec<bool>)>> {
        let props = self.state.execution_props();
        let ctx = PhysicalPlanningContext::default();
        match node {
            LogicalPlan::Filter(f) => {
                let predicate = create_physical_expr(&f.predicate, f.input.schema(), props, &ctx)?;
                Ok(Some((Step::Filter(predicate), flags.to_vec())))
            }
            LogicalPlan::Projection(p) => {
                let input = p.input.schema();
                let exprs = p
                    .expr
                    .iter()
                    .map(|e| create_physical_expr(e, input, props, &ctx))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                let traced = p
                    .expr
                    .iter()
                    .map(|e| match e.clone().unalias() {
                        Expr::Column(c) => input
                            .index_of_column(&c)
                            .is_ok_and(|i| flags.get(i).copied().unwrap_or(false)),
                        _ => false,
                    })
                    .collect();
                let fields: Vec<Field> = p
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect();
                Ok(Some((
                    Step::Project {
                        exprs,
                        schema: Arc::new(Schema::new(fields)),
                    },
                    traced,
                )))
            }
            _ => Ok(None),
        }
    }

    /// The window operator replacing an aggregation, and the watermark flags of its output.
    fn window(
        &self,
        aggregate: &datafusion::logical_expr::Aggregate,
        input: &InputRelation,
        windowed: Option<&(WindowKind, String)>,
    ) -> Result<(WindowPlan, Vec<bool>)> {
        let props = self.state.execution_props();
        let ctx = PhysicalPlanningContext::default();
        let input_schema = aggregate.input.schema();
        let output = aggregate.schema.as_arrow();
        let mut columns = Vec::new();
        let mut keys = Vec::new();
        let mut key_fields = Vec::new();
        // Which output columns are window bounds (time columns, once the windows close).
        let mut bounds = Vec::new();
        for (i, expr) in aggregate.group_expr.iter().enumerate() {
            if let Expr::GroupingSet(_) = expr {
                return Err(Error::unsupported(
                    "GROUPING SETS, CUBE or ROLLUP in a materialized view",
                    Some("Create one view per grouping."),
                ));
            }
            // Over rows that change, the windows are assigned before: their bounds are keys.
            let window_column = match expr {
                Expr::Column(c) if windowed.is_some() && !input.updating => match c.name.as_str() {
                    WINDOW_START => Some(GroupColumn::WindowStart),
                    WINDOW_END => Some(GroupColumn::WindowEnd),
                    WINDOW_TIME => Some(GroupColumn::WindowTime),
                    _ => None,
                },
                _ => None,
            };
            bounds.push(
                windowed.is_some() && matches!(expr, Expr::Column(c) if is_window_column(&c.name)),
            );
            match window_column {
                Some(column) => columns.push(column),
                None => {
                    if windowed.is_some() && !input.updating && expr_references_window(expr) {
                        return Err(window_expression_error(expr));
                    }
                    columns.push(GroupColumn::Key(keys.len()));
                    keys.push(create_physical_expr(expr, input_schema, props, &ctx)?);
                    key_fields.push(output.field(i).clone());
                }
            }
        }
        let groups_by_window =
            |expr: &Expr| matches!(expr, Expr::Column(c) if is_window_column(&c.name));
        if windowed.is_some()
            && !aggregate.group_expr.iter().any(groups_by_window)
            && !columns.iter().any(|c| {
                matches!(
                    c,
                    GroupColumn::WindowStart | GroupColumn::WindowEnd | GroupColumn::WindowTime
                )
            })
        {
            return Err(Error::unsupported(
                "an aggregation over a window table function that does not group by the window",
                Some("Add GROUP BY window_start, window_end."),
            ));
        }
        let physical_input = input_schema.as_arrow();
        let mut aggregates = Vec::new();
        for expr in &aggregate.aggr_expr {
            if windowed.is_some() && expr_references_window(expr) {
                return Err(window_expression_error(expr));
            }
            let lowered =
                LoweredAggregateBuilder::new(expr, input_schema, physical_input, props, &ctx)
                    .build()?;
            if !lowered.order_bys.is_empty()
                && !lowered
                    .aggregate
                    .fun()
                    .name()
                    .starts_with("approx_percentile")
            {
                return Err(Error::unsupported(
                    format!("ORDER BY inside the aggregate {expr} in a materialized view"),
                    Some(
                        "Order-sensitive aggregates cannot be maintained over out-of-order streams.",
                    ),
                ));
            }
            let spec = AggregateSpec {
                expr: lowered.aggregate,
                filter: lowered.filter,
            };
            if input.updating {
                retracting::check(&spec, physical_input)?;
            }
            aggregates.push(spec);
        }
        let (kind, time_column_name) = match windowed {
            Some((kind, column)) if !input.updating => (*kind, Some(column.clone())),
            // Windows assigned to changing rows close with the watermark on their time.
            Some((_, column)) if input.watermark_columns.contains(column) => {
                (WindowKind::Unbounded, Some(column.clone()))
            }
            _ => (WindowKind::Unbounded, None),
        };
        let closes_at = match (&time_column_name, windowed, input.updating) {
            (Some(_), Some((kind, _)), true) => {
                let longest = kind.longest().ok_or_else(|| {
                    Error::Internal(format!("{kind} windows assigned to changing rows"))
                })?;
                Some((physical_input.index_of(WINDOW_END)?, longest))
            }
            _ => None,
        };
        let time_column = time_column_name
            .as_ref()
            .map(|c| input.schema.index_of(c))
            .transpose()?;
        let flags = bounds
            .into_iter()
            .chain(aggregates.iter().map(|_| false))
            .collect();
        let layout = Layout {
            has_keys: !keys.is_empty(),
            columns,
            schema: Arc::new(output.clone()),
        };
        Ok((
            WindowPlan {
                kind,
                time_column,
                time_column_name,
                keys,
                key_schema: Arc::new(Schema::new(key_fields)),
                aggregates,
                layout,
                retracting: input.updating,
                closes_at,
                multiset: false,
                input_schema: Arc::new(physical_input.clone()),
            },
            flags,
        ))
    }

    /// The view's output columns: Postgres names, storable types, no name twice.
    fn columns(&self, schema: &DFSchemaRef) -> Result<Vec<ColumnDef>> {
        let columns: Vec<ColumnDef> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let name = self
                    .names
                    .as_ref()
                    .and_then(|n| n.get(i).cloned())
                    .unwrap_or_else(|| f.name().clone());
                let column_type = ColumnType::storable(f.data_type()).ok_or_else(|| {
                    Error::unsupported(
                        format!("column \"{name}\" of type {} in a materialized view", f.data_type()),
                        Some("Cast it to a supported type (bigint, double precision, text, timestamptz, …)."),
                    )
                })?;
                Ok(ColumnDef {
                    name,
                    column_type,
                    nullable: true,
                })
            })
            .collect::<Result<_>>()?;
        crate::sql::parser::check_unique(&columns)?;
        Ok(columns)
    }
}

/// What a chain of nodes stands on.
enum Bottom<'p> {
    Scan(&'p datafusion::logical_expr::TableScan),
    Union(&'p datafusion::logical_expr::Union),
    Join(&'p datafusion::logical_expr::Join),
}

/// The plan as a chain of nodes from the top, and the scan (or union) at its bottom.
fn chain(plan: &LogicalPlan) -> Result<(Vec<Node<'_>>, Bottom<'_>)> {
    let mut nodes = Vec::new();
    let mut node = plan;
    loop {
        let next = match node {
            LogicalPlan::TableScan(scan) => return Ok((nodes, Bottom::Scan(scan))),
            LogicalPlan::Union(union) => return Ok((nodes, Bottom::Union(union))),
            LogicalPlan::Join(join) => return Ok((nodes, Bottom::Join(join))),
            LogicalPlan::Projection(p) => {
                nodes.push(Node::Step(node));
                &p.input
            }
            LogicalPlan::Filter(f) => {
                nodes.push(Node::Step(node));
                &f.input
            }
            LogicalPlan::SubqueryAlias(a) => {
                nodes.push(Node::Step(node));
                &a.input
            }
            LogicalPlan::Aggregate(a) => {
                nodes.push(Node::Aggregate(a));
                &a.input
            }
            LogicalPlan::Window(w) => {
                nodes.push(Node::TopN(top_n::Ranking::Window(w)));
                &w.input
            }
            LogicalPlan::Limit(limit) => match limit.input.as_ref() {
                LogicalPlan::Sort(sort) if sort.fetch.is_none() => {
                    nodes.push(Node::TopN(top_n::Ranking::Limit(limit, sort)));
                    &sort.input
                }
                _ => return Err(not_incremental(node)),
            },
            other => return Err(not_incremental(other)),
        };
        node = next.as_ref();
    }
}

/// The rows of a view without aggregation over an updating input, kept as a multiset (a
/// retracting GROUP BY of every column, each row as often as it occurs).
fn rows_plan(schema: &DFSchemaRef) -> Result<WindowPlan> {
    let schema = Arc::new(schema.as_arrow().clone());
    let keys = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Arc::new(datafusion::physical_expr::expressions::Column::new(
                f.name(),
                i,
            )) as Arc<dyn PhysicalExpr>
        })
        .collect();
    Ok(WindowPlan {
        kind: WindowKind::Unbounded,
        time_column: None,
        time_column_name: None,
        keys,
        key_schema: Arc::clone(&schema),
        aggregates: Vec::new(),
        layout: Layout {
            columns: (0..schema.fields().len()).map(GroupColumn::Key).collect(),
            schema: Arc::clone(&schema),
            has_keys: true,
        },
        retracting: true,
        closes_at: None,
        multiset: true,
        input_schema: schema,
    })
}

/// `SELECT DISTINCT …` as the GROUP BY of every column it selects, which the aggregation
/// operators maintain (over an updating input too: a row goes when its last copy goes).
fn distinct_as_aggregate(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up(|node| match node {
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let keys = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let aggregate = Aggregate::try_new(input, keys, Vec::new())?;
                Ok(Transformed::yes(LogicalPlan::Aggregate(aggregate)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

fn not_incremental(node: &LogicalPlan) -> Error {
    let (what, hint) = match node {
        LogicalPlan::Sort(_) => (
            "ORDER BY without LIMIT in a materialized view",
            "Order when you query the view: SELECT … FROM view ORDER BY …; ORDER BY … LIMIT N \
             keeps the top N.",
        ),
        LogicalPlan::Limit(_) => (
            "LIMIT without ORDER BY, or OFFSET, in a materialized view",
            "Keep the top rows with ORDER BY … LIMIT N, or limit when you query the view.",
        ),
        LogicalPlan::Window(_) => (
            "a window function (OVER …) in a materialized view",
            "Use a window table function: FROM TUMBLE(rel, ts, INTERVAL '1' MINUTE) … \
             GROUP BY window_start, window_end.",
        ),
        LogicalPlan::Distinct(_) => (
            "SELECT DISTINCT ON in a materialized view",
            "GROUP BY the key and aggregate the other columns (min, max, …).",
        ),
        _ => (
            "this query in a materialized view",
            "A view reads one relation: filters, projections, one GROUP BY (optionally over \
             TUMBLE, HOP, CUMULATE or SESSION) and HAVING.",
        ),
    };
    Error::unsupported(what, Some(hint))
}

fn expr_references_window(expr: &Expr) -> bool {
    expr.column_refs().iter().any(|c| is_window_column(&c.name))
}

fn references_window(node: &LogicalPlan) -> bool {
    node.expressions().iter().any(expr_references_window)
}

fn window_expression_error(expr: &Expr) -> Error {
    Error::unsupported(
        format!("the expression {expr} over window bounds inside the aggregation"),
        Some(
            "Group by window_start and window_end as they are; compute on them in the outer SELECT.",
        ),
    )
}

/// The plan with its aggregation replaced by the streaming window node, for `EXPLAIN`.
fn rewrite(
    plan: LogicalPlan,
    windowed: Option<&(WindowKind, String)>,
    emit_on_close: bool,
) -> Result<LogicalPlan> {
    let window = windowed.cloned();
    Ok(plan
        .transform_up(|node| match node {
            LogicalPlan::Aggregate(a) => {
                let (kind, time_column) = window
                    .clone()
                    .unwrap_or((WindowKind::Unbounded, String::new()));
                let node = WindowAggregateNode {
                    input: a.input.as_ref().clone(),
                    kind,
                    time_column,
                    group_expr: a.group_expr.clone(),
                    aggr_expr: a.aggr_expr.clone(),
                    schema: Arc::clone(&a.schema),
                    emit_on_close,
                };
                Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                    node: Arc::new(node),
                })))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// The relation `name` of the newest catalog, as a view's input.
pub(crate) fn lookup(manifest: &Manifest, name: &str) -> Result<InputRelation> {
    if let Some(t) = manifest.table(name) {
        return Ok(InputRelation {
            name: name.to_string(),
            kind: RelationKind::Table,
            schema: t.def.schema(),
            watermark_columns: t.def.watermark.iter().map(|w| w.column.clone()).collect(),
            delay_us: t.def.watermark.as_ref().map_or(0, |w| w.delay_ms * 1_000),
            updating: t.def.keyed(),
            watermark_positions: None,
        });
    }
    if let Some(s) = manifest.source(name) {
        return Ok(InputRelation {
            name: name.to_string(),
            kind: RelationKind::Source,
            schema: s.def.schema(),
            watermark_columns: s.def.watermark.iter().map(|w| w.column.clone()).collect(),
            delay_us: 0,
            updating: s.def.keyed(),
            watermark_positions: None,
        });
    }
    if let Some(v) = manifest.view(name) {
        return Ok(InputRelation {
            name: name.to_string(),
            kind: RelationKind::View,
            schema: v.def.schema(),
            watermark_columns: v.def.time_columns.clone(),
            delay_us: 0,
            updating: v.def.updating,
            watermark_positions: None,
        });
    }
    Err(Error::UndefinedRelation {
        kind: "relation",
        name: name.to_string(),
    })
}
