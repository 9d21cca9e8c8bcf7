//! Joins in a view's plan: where their conditions go, and their sides as branches.
//!
//! SQL's `ON` (and a `WHERE` over a comma join) reaches the plan as one condition. Before a
//! join is planned, each part of it that names one side only moves below the join onto that
//! side — when that side does not keep its unmatched rows, so no row an outer join must keep
//! is lost — which keeps fewer rows in the join's state; the equalities between the sides
//! become its keys (DataFusion's `ExtractEquijoinPredicate`); the rest stays as the condition
//! checked per matching pair. Each side is then a chain of filters and projections over one
//! relation (a branch of the view) or another join.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::DFSchemaRef;
use datafusion::common::NullEquality;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::{conjunction, split_conjunction, split_conjunction_owned};
use datafusion::logical_expr::{Expr, Filter, Join, JoinType, LogicalPlan, Operator};
use datafusion::optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery;
use datafusion::optimizer::extract_equijoin_predicate::ExtractEquijoinPredicate;
use datafusion::optimizer::{OptimizerContext, OptimizerRule};
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use super::functions::LookupRelation;
use super::{Bottom, Compiler, Node, chain};
use crate::error::{Error, Result};
use crate::stream::assign::AssignWindows;
use crate::stream::join::{Interval, JoinInput, JoinKind, JoinSide, JoinSpec};
use crate::stream::plan::{Branch, InputRelation, RelationKind, Step, ViewPart};
use crate::stream::window::WindowKind;
use datafusion::datasource::source_as_provider;

/// The plan with every join's condition placed: subquery predicates become semi and anti
/// joins, one-sided parts of conditions and filters move below the joins, a filter's other
/// parts join an inner join's condition, equalities become keys.
pub(super) fn prepare(plan: LogicalPlan) -> Result<LogicalPlan> {
    let rule = ExtractEquijoinPredicate::new();
    let config = OptimizerContext::new();
    // `[NOT] EXISTS` and `[NOT] IN (subquery)` in a filter become semi and anti joins.
    let subqueries = DecorrelatePredicateSubquery::new();
    let plan = plan
        .transform_down(|node| subqueries.rewrite(node, &config))?
        .data;
    Ok(plan
        .transform_up(|node| {
            let (mut join, above) = match node {
                LogicalPlan::Filter(filter)
                    if matches!(filter.input.as_ref(), LogicalPlan::Join(_)) =>
                {
                    let LogicalPlan::Join(join) = Arc::unwrap_or_clone(filter.input) else {
                        unreachable!("matched a join")
                    };
                    // A filter over a join may go to a side the join never null-extends.
                    let kind = join_kind(join.join_type);
                    let sided = |side: usize| kind.is_some_and(|k| !k.keeps_unmatched(1 - side));
                    let (join, rest) = push_down(join, filter.predicate, sided)?;
                    match (join.join_type, conjunction(rest)) {
                        (JoinType::Inner, Some(rest)) => (
                            Join {
                                filter: Some(match join.filter.clone() {
                                    Some(on) => on.and(rest),
                                    None => rest,
                                }),
                                ..join
                            },
                            None,
                        ),
                        (_, rest) => (join, rest),
                    }
                }
                LogicalPlan::Join(join) => (join, None),
                other => return Ok(Transformed::no(other)),
            };
            // A part of the condition may go to a side that does not keep unmatched rows.
            if let Some(condition) = join.filter.take() {
                let kind = join_kind(join.join_type);
                let sided = |side: usize| kind.is_some_and(|k| !k.keeps_unmatched(side));
                let (pushed, kept) = push_down(join, condition, sided)?;
                join = Join {
                    filter: conjunction(kept),
                    ..pushed
                };
            }
            let joined = rule.rewrite(LogicalPlan::Join(join), &config)?.data;
            Ok(Transformed::yes(match above {
                Some(predicate) => {
                    LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(joined))?)
                }
                None => joined,
            }))
        })?
        .data)
}

/// Moves the parts of `predicate` that name columns of one side only, where `sided` allows
/// that side, below the join onto it; returns the join and the other parts.
fn push_down(
    mut join: Join,
    predicate: Expr,
    sided: impl Fn(usize) -> bool,
) -> datafusion::error::Result<(Join, Vec<Expr>)> {
    let mut sides: [Vec<Expr>; 2] = [Vec::new(), Vec::new()];
    let mut kept = Vec::new();
    for part in split_conjunction_owned(predicate) {
        let columns = part.column_refs();
        let on_side = |side: usize| {
            let schema = match side {
                0 => join.left.schema(),
                _ => join.right.schema(),
            };
            sided(side)
                && !columns.is_empty()
                && columns.iter().all(|c| schema.has_column(c))
                && !part.is_volatile()
        };
        match (0..2).find(|&side| on_side(side)) {
            Some(side) => sides[side].push(part),
            None => kept.push(part),
        }
    }
    let [left, right] = sides;
    let below = |input: Arc<LogicalPlan>, parts: Vec<Expr>| match conjunction(parts) {
        Some(predicate) => Ok(Arc::new(LogicalPlan::Filter(Filter::try_new(
            predicate, input,
        )?))),
        None => Ok::<_, datafusion::error::DataFusionError>(input),
    };
    join.left = below(join.left, left)?;
    join.right = below(join.right, right)?;
    Ok((join, kept))
}

fn join_kind(join_type: JoinType) -> Option<JoinKind> {
    match join_type {
        JoinType::Inner => Some(JoinKind::Inner),
        JoinType::Left => Some(JoinKind::Left),
        JoinType::Right => Some(JoinKind::Right),
        JoinType::Full => Some(JoinKind::Full),
        JoinType::LeftSemi => Some(JoinKind::Semi),
        JoinType::LeftAnti => Some(JoinKind::Anti),
        _ => None,
    }
}

/// The joined rows as the relation the view's steps read. Their rows change when an input's
/// do or a join takes rows back when a match comes (an outer join's null-extended rows, an
/// anti join's unmatched ones) — but a lookup join's dimension changes nothing already
/// joined. `time` flags the columns that carry the watermark (a regular join has none: a row
/// may match one from any time; a lookup join's are its stream's).
pub(super) fn relation(spec: &JoinSpec, branches: &[Branch], time: &[bool]) -> InputRelation {
    let names: Vec<&str> = branches.iter().map(|b| b.input.name.as_str()).collect();
    let watermark_columns = spec
        .schema
        .fields()
        .iter()
        .zip(time)
        .filter(|(_, t)| **t)
        .map(|(f, _)| f.name().clone())
        .collect();
    InputRelation {
        name: names.join(" JOIN "),
        kind: RelationKind::Join,
        schema: Arc::clone(&spec.schema),
        watermark_columns,
        delay_us: 0,
        updating: changes(spec, branches),
        watermark_positions: Some(time.to_vec()),
    }
}

/// Whether the rows a join hands on change.
fn changes(spec: &JoinSpec, branches: &[Branch]) -> bool {
    let side = |s: usize| match &spec.sides[s].input {
        JoinInput::Branch(b) => branches[*b].input.updating,
        JoinInput::Join(inner) => changes(inner, branches),
    };
    match spec.lookup {
        true => side(0),
        false => side(0) || side(1) || !matches!(spec.kind, JoinKind::Inner | JoinKind::Semi),
    }
}

/// A side of a join as planned: its input, the columns carrying a watermark, and whether it
/// is a lookup join's dimension.
struct PlannedSide {
    input: JoinInput,
    time: Vec<bool>,
    dimension: bool,
}

impl Compiler<'_> {
    /// A join and the joins below it (their relations become `branches`, left to right), and
    /// which of its columns carry the watermark.
    pub(super) fn join(
        &self,
        join: &Join,
        branches: &mut Vec<Branch>,
    ) -> Result<(JoinSpec, Vec<bool>)> {
        if join.null_aware {
            return Err(Error::unsupported(
                "NOT IN (subquery) over a column that may be NULL in a materialized view",
                Some(
                    "A single NULL in the subquery would empty the view: write NOT EXISTS \
                     (SELECT … WHERE …), or add IS NOT NULL on both columns.",
                ),
            ));
        }
        let kind = join_kind(join.join_type).ok_or_else(|| {
            Error::unsupported(
                format!("a {} join in a materialized view", join.join_type),
                Some(
                    "Use INNER, LEFT, RIGHT or FULL joins, or EXISTS, NOT EXISTS or IN \
                     (subquery) on their own or joined with AND.",
                ),
            )
        })?;
        let props = self.state.execution_props();
        let ctx = PhysicalPlanningContext::default();
        let mut keys = [Vec::new(), Vec::new()];
        for (left, right) in &join.on {
            keys[0].push(create_physical_expr(left, join.left.schema(), props, &ctx)?);
            keys[1].push(create_physical_expr(
                right,
                join.right.schema(),
                props,
                &ctx,
            )?);
        }
        let [left_keys, right_keys] = keys;
        // The condition reads both sides' columns, even where the join hands on one side's.
        let pairs = join.left.schema().join(join.right.schema())?;
        let filter = join
            .filter
            .as_ref()
            .map(|f| create_physical_expr(f, &pairs, props, &ctx))
            .transpose()?;
        let left = self.join_input(&join.left, branches)?;
        let right = self.join_input(&join.right, branches)?;
        let lookup = right.dimension;
        if lookup {
            check_lookup(kind, &left, branches)?;
        }
        if left.dimension {
            return Err(Error::unsupported(
                "FOR SYSTEM_TIME AS OF PROCTIME() on the left side of a join",
                Some(
                    "Put the dimension on the right: events e JOIN dim FOR SYSTEM_TIME AS OF PROCTIME() d ON …",
                ),
            ));
        }
        let interval = match (kind, &left.input, &right.input, lookup) {
            (JoinKind::Inner, JoinInput::Branch(l), JoinInput::Branch(r), false)
                if !branches[*l].input.updating && !branches[*r].input.updating =>
            {
                interval(join, &left.time, &right.time)
            }
            _ => None,
        };
        // A lookup join's rows are its stream's, as they arrive: the stream's watermark holds.
        // An interval join's two bounded times carry one (see `Interval::watermark`).
        let width = left.time.len();
        let time = match (lookup, interval) {
            (true, _) => [left.time, vec![false; right.time.len()]].concat(),
            (false, Some(interval)) => (0..join.schema.fields().len())
                .map(|c| c == interval.time[0] || c == width + interval.time[1])
                .collect(),
            (false, None) => vec![false; join.schema.fields().len()],
        };
        let spec = JoinSpec {
            kind,
            sides: [
                JoinSide {
                    input: left.input,
                    keys: left_keys,
                    schema: Arc::new(join.left.schema().as_arrow().clone()),
                },
                JoinSide {
                    input: right.input,
                    keys: right_keys,
                    schema: Arc::new(join.right.schema().as_arrow().clone()),
                },
            ],
            filter,
            nulls_match: join.null_equality == NullEquality::NullEqualsNull,
            schema: Arc::new(join.schema.as_arrow().clone()),
            steps: Vec::new(),
            lookup,
            interval,
            idle_ttl_us: None,
        };
        Ok((spec, time))
    }

    /// One side of a join: filters and projections over a relation (a new branch), possibly
    /// a window table function's or a lookup join's dimension, or over another join.
    fn join_input(&self, plan: &LogicalPlan, branches: &mut Vec<Branch>) -> Result<PlannedSide> {
        let (nodes, bottom) = chain(plan)?;
        if nodes.iter().any(|n| !matches!(n, Node::Step(_))) {
            return self.part(plan, &nodes, branches);
        }
        match bottom {
            Bottom::Scan(scan) => {
                let provider = source_as_provider(&scan.source)?;
                let dimension = provider.as_ref().downcast_ref::<LookupRelation>();
                let (input, windowed) = match dimension {
                    Some(dimension) => (dimension.input.clone(), None),
                    None => self.leaf(scan)?,
                };
                // (A table's watermark is the one the view derives from the rows it reads.)
                let mut time: Vec<bool> = input
                    .schema
                    .fields()
                    .iter()
                    .map(|f| input.watermark_columns.contains(f.name()))
                    .collect();
                let mut steps = Vec::new();
                if let Some((kind, column)) = windowed {
                    if matches!(kind, WindowKind::Session { .. }) {
                        return Err(Error::unsupported(
                            "a SESSION window on a side of a join",
                            Some("Create a view of the sessions, then join the view."),
                        ));
                    }
                    steps.push(Step::Windows(AssignWindows {
                        kind,
                        time_column: input.schema.index_of(&column)?,
                        schema: Arc::new(scan.projected_schema.as_arrow().clone()),
                    }));
                    time = vec![false; scan.projected_schema.fields().len()];
                }
                let (side_steps, time) = self.steps(&nodes, time)?;
                steps.extend(side_steps);
                branches.push(Branch { input, steps });
                Ok(PlannedSide {
                    input: JoinInput::Branch(branches.len() - 1),
                    time,
                    dimension: dimension.is_some(),
                })
            }
            Bottom::Join(inner) => {
                let (spec, time) = self.join(inner, branches)?;
                let (steps, time) = self.steps(&nodes, time)?;
                Ok(PlannedSide {
                    input: JoinInput::Join(Box::new(JoinSpec { steps, ..spec })),
                    time,
                    dimension: false,
                })
            }
            Bottom::Union(_) => self.part(plan, &nodes, branches),
        }
    }

    /// A side that aggregates, ranks or is a `UNION ALL` runs as a view of its own, a part of
    /// the view, whose stored rows, watermark and changes the join reads as it reads any
    /// view's: the subquery from its alias down (filters moved above the alias stay with the
    /// side), or the whole side where it has none.
    fn part(
        &self,
        side: &LogicalPlan,
        nodes: &[Node<'_>],
        branches: &mut Vec<Branch>,
    ) -> Result<PlannedSide> {
        let first = nodes
            .iter()
            .position(|n| !matches!(n, Node::Step(_)))
            .unwrap_or(nodes.len());
        let aliased = nodes[..first]
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, n)| match n {
                Node::Step(plan @ LogicalPlan::SubqueryAlias(alias)) => {
                    Some((i, *plan, alias.alias.table().to_string()))
                }
                _ => None,
            });
        let (above, root, alias) = match aliased {
            Some((i, root, alias)) => (&nodes[..i], root, Some(alias)),
            None => (&[][..], side, None),
        };
        let name = {
            let parts = self.parts.borrow();
            let taken = |name: &String| parts.iter().any(|p| &p.name == name);
            match alias.as_ref().map(|a| format!("{}${a}", self.view)) {
                Some(name) if !taken(&name) => name,
                _ => format!("{}${}", self.view, parts.len() + 1),
            }
        };
        let plan = Compiler {
            view: &name,
            names: None,
            ..*self
        }
        .compile(root.clone(), false)?;
        let input = InputRelation {
            name: name.clone(),
            kind: RelationKind::View,
            schema: plan.schema(),
            watermark_columns: plan.time_columns.clone(),
            delay_us: 0,
            updating: plan.updating,
            watermark_positions: None,
        };
        // The part stores its columns in Postgres' types; the join reads the subquery's.
        let mut steps = Vec::from_iter(as_planned(&input.schema, root.schema()));
        let (above, time) = self.steps(above, input.time_flags())?;
        steps.extend(above);
        self.parts.borrow_mut().push(ViewPart { name, alias, plan });
        branches.push(Branch { input, steps });
        Ok(PlannedSide {
            input: JoinInput::Branch(branches.len() - 1),
            time,
            dimension: false,
        })
    }
}

/// A projection casting rows of `stored` to the types `planned` has, where any differ.
fn as_planned(stored: &SchemaRef, planned: &DFSchemaRef) -> Option<Step> {
    if stored
        .fields()
        .iter()
        .zip(planned.fields())
        .all(|(s, p)| s.data_type() == p.data_type())
    {
        return None;
    }
    let exprs = stored
        .fields()
        .iter()
        .zip(planned.fields())
        .enumerate()
        .map(|(i, (s, p))| {
            let column = Arc::new(Column::new(s.name(), i)) as Arc<dyn PhysicalExpr>;
            match s.data_type() == p.data_type() {
                true => column,
                false => Arc::new(CastExpr::new(column, p.data_type().clone(), None)),
            }
        })
        .collect();
    Some(Step::Project {
        exprs,
        schema: Arc::new(planned.as_arrow().clone()),
    })
}

/// A lookup join joins rows of a stream as they arrive: an inner or left join, its stream a
/// relation whose rows are never taken back (a delete could not find what its row joined).
fn check_lookup(kind: JoinKind, stream: &PlannedSide, branches: &[Branch]) -> Result<()> {
    if !matches!(kind, JoinKind::Inner | JoinKind::Left) {
        return Err(Error::unsupported(
            format!("a {} lookup join", kind.name().to_uppercase()),
            Some("A lookup join is an INNER or LEFT join of a stream with its dimension."),
        ));
    }
    let updating = match &stream.input {
        JoinInput::Branch(b) => branches[*b].input.updating,
        JoinInput::Join(inner) => changes(inner, branches),
    };
    if updating {
        return Err(Error::unsupported(
            "a lookup join (FOR SYSTEM_TIME AS OF PROCTIME()) of rows that change",
            Some(
                "Look up rows of an append-only source, table or view; join rows that change with a regular join.",
            ),
        ));
    }
    Ok(())
}

/// The bounds `lo <= l - r <= hi` an inner join's condition puts on a time column of each side
/// (both carrying a watermark, `time`), from comparisons (`l.ts >= r.ts - INTERVAL '1' MINUTE`,
/// `l.ts BETWEEN r.ts AND r.ts + INTERVAL '10' MINUTE`) and key equalities (`l.window_start =
/// r.window_start`, a window join); `None` unless both bounds are found, for one pair.
fn interval(join: &Join, left_time: &[bool], right_time: &[bool]) -> Option<Interval> {
    let schemas = [join.left.schema(), join.right.schema()];
    let times = [left_time, right_time];
    // A side's time column plus a constant (µs).
    let term = |expr: &Expr| -> Option<(usize, usize, i64)> {
        let (column, offset) = offset_column(expr)?;
        (0..2).find_map(|side| {
            let index = schemas[side].index_of_column(column).ok()?;
            let timestamp = matches!(
                schemas[side].field(index).data_type(),
                DataType::Timestamp(TimeUnit::Microsecond, _)
            );
            (timestamp && times[side].get(index).copied().unwrap_or(false))
                .then_some((side, index, offset))
        })
    };
    let mut pair: Option<(usize, usize)> = None;
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    // `a op b`, both terms of sides: a bound on `l - r` for the first pair of columns found.
    let mut bound = |a: &Expr, op: Operator, b: &Expr| {
        let (Some(a), Some(b)) = (term(a), term(b)) else {
            return;
        };
        let (l, r, op, k) = match (a.0, b.0) {
            // l + oa op r + ob  ⟺  l - r op ob - oa
            (0, 1) => (a.1, b.1, op, b.2.saturating_sub(a.2)),
            // r + oa op l + ob  ⟺  l - r (op swapped) oa - ob
            (1, 0) => match op.swap() {
                Some(swapped) => (b.1, a.1, swapped, a.2.saturating_sub(b.2)),
                None => return,
            },
            _ => return,
        };
        if pair.is_some_and(|p| p != (l, r)) {
            return;
        }
        pair = Some((l, r));
        match op {
            Operator::Gt | Operator::GtEq => lo = lo.max(k),
            Operator::Lt | Operator::LtEq => hi = hi.min(k),
            Operator::Eq => {
                lo = lo.max(k);
                hi = hi.min(k);
            }
            _ => {}
        }
    };
    for (l, r) in &join.on {
        bound(l, Operator::Eq, r);
    }
    for part in join.filter.iter().flat_map(split_conjunction) {
        match part {
            Expr::BinaryExpr(b) => bound(&b.left, b.op, &b.right),
            Expr::Between(between) if !between.negated => {
                bound(&between.expr, Operator::GtEq, &between.low);
                bound(&between.expr, Operator::LtEq, &between.high);
            }
            _ => {}
        }
    }
    let (l, r) = pair?;
    (lo > i64::MIN && hi < i64::MAX && lo <= hi).then_some(Interval {
        time: [l, r],
        lo,
        hi,
    })
}

/// `column`, `column + interval` or `column - interval` (casts aside): the column and the
/// constant in µs.
fn offset_column(expr: &Expr) -> Option<(&datafusion::common::Column, i64)> {
    match expr {
        Expr::Column(column) => Some((column, 0)),
        Expr::Cast(cast) => offset_column(&cast.expr),
        Expr::TryCast(cast) => offset_column(&cast.expr),
        Expr::BinaryExpr(b) if matches!(b.op, Operator::Plus | Operator::Minus) => {
            let (column, offset) = offset_column(&b.left)?;
            let constant = interval_us(&b.right)?;
            Some((
                column,
                match b.op {
                    Operator::Plus => offset.checked_add(constant)?,
                    _ => offset.checked_sub(constant)?,
                },
            ))
        }
        _ => None,
    }
}

/// A fixed-length interval literal in µs.
fn interval_us(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            i64::from(v.days)
                .checked_mul(86_400_000_000)?
                .checked_add(v.nanoseconds / 1_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => i64::from(v.days)
            .checked_mul(86_400_000_000)?
            .checked_add(i64::from(v.milliseconds) * 1_000),
        Expr::Cast(cast) => interval_us(&cast.expr),
        _ => None,
    }
}
