//! Joins of relations whose rows may change: each side's rows by join key, the joined rows
//! following every insert and delete of either side.
//!
//! A regular join cannot know that a row will never match again (a row may arrive on the
//! other side at any time), so each side keeps every row it holds: in Arrow's row format, by
//! the bytes of its join key, each distinct row with how often it occurs and — for the outer
//! joins — how many rows of the other side it matches (its *degree*). An insert or delete on
//! one side looks its key up on the other side, evaluates the rest of the `ON` condition over
//! the candidate pairs in one batch, and hands on the joined rows with the same op. An outer
//! join also hands on a row with NULLs for the other side while the row matches nothing: its
//! first match deletes that row, its last match's going inserts it again (the degree says
//! when). Multi-way joins are trees of these, each node's output the input of the node above.
//!
//! Rows with a NULL in their key match nothing (unless the keys were `IS NOT DISTINCT FROM`),
//! so they are not kept; a side that keeps its unmatched rows hands them on null-extended.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;

mod side;
#[cfg(test)]
mod tests;

use self::side::{Candidates, Side, times};
use super::changes::Changes;
use super::plan::Step;
use crate::error::{Error, Result};

/// Which rows a join keeps when they match nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    /// The left side's rows that match a row of the right (`WHERE EXISTS`, `IN`).
    Semi,
    /// The left side's rows that match nothing on the right (`WHERE NOT EXISTS`).
    Anti,
}

impl JoinKind {
    /// Whether side `side` (0 left, 1 right) keeps its rows that match nothing.
    pub fn keeps_unmatched(self, side: usize) -> bool {
        matches!(
            (self, side),
            (JoinKind::Full, _) | (JoinKind::Left | JoinKind::Anti, 0) | (JoinKind::Right, 1)
        )
    }

    /// Whether it hands on matching pairs (not only the left side's rows).
    fn pairs(self) -> bool {
        !matches!(self, JoinKind::Semi | JoinKind::Anti)
    }

    /// Whether the rows of side `side` keep their match counts: they are handed on alone
    /// when they match nothing, or, in a semi join, when they match something.
    fn counts_matches(self, side: usize) -> bool {
        self.keeps_unmatched(side) || (self == JoinKind::Semi && side == 0)
    }

    pub fn name(self) -> &'static str {
        match self {
            JoinKind::Inner => "inner",
            JoinKind::Left => "left",
            JoinKind::Right => "right",
            JoinKind::Full => "full",
            JoinKind::Semi => "semi",
            JoinKind::Anti => "anti",
        }
    }
}

/// A join of two inputs, as planned.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub kind: JoinKind,
    /// The left side, then the right.
    pub sides: [JoinSide; 2],
    /// The rest of the `ON` condition, over the joined columns.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The keys were compared with `IS NOT DISTINCT FROM`: NULL keys match each other.
    pub nulls_match: bool,
    /// The joined columns: the left side's, then the right side's (only the left side's for
    /// a semi or anti join).
    pub schema: SchemaRef,
    /// Filters and projections between this join and the join above it.
    pub steps: Vec<Step>,
    /// A lookup join: the right side is a dimension whose rows, as they are when a row of
    /// the left arrives, are the rows it joins. The dimension's changes hand nothing on, and
    /// the left's rows are not kept.
    pub lookup: bool,
    /// An interval join: the condition bounds the sides' times, so a row is kept only until
    /// the other side's watermark says nothing more can match it.
    pub interval: Option<Interval>,
    /// The view's `state.ttl` (µs, Flink's idle state retention): a row not inserted again
    /// for longer is forgotten — it matches nothing more, and its delete changes nothing.
    pub idle_ttl_us: Option<i64>,
}

/// The time bounds of an interval join (an inner join of two append-only inputs whose
/// condition implies `lo <= left time - right time <= hi`, µs; a window join's are 0, 0),
/// both times carrying their side's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// The time column of each side, among its columns.
    pub time: [usize; 2],
    pub lo: i64,
    pub hi: i64,
}

impl Interval {
    /// Rows of side `side` older than this can match nothing the other side may still send,
    /// given its watermark `other`: a left row once `left + (-lo) < other`, a right row once
    /// `right + hi < other`.
    fn expiry(&self, side: usize, other: i64) -> i64 {
        match side {
            0 => other.saturating_add(self.lo),
            _ => other.saturating_sub(self.hi),
        }
    }

    /// The watermark of the joined rows' two time columns (the smaller one, for both): a left
    /// time is at least the left watermark, or the right one plus `lo` when a right row
    /// arrives; a right time at least the right watermark, or the left one less `hi`.
    fn watermark(&self, left: i64, right: i64) -> i64 {
        left.min(right.saturating_add(self.lo))
            .min(right.min(left.saturating_sub(self.hi)))
    }
}

/// One side of a join: its input, its key expressions (over its own columns) and its columns.
#[derive(Debug, Clone)]
pub struct JoinSide {
    pub input: JoinInput,
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub schema: SchemaRef,
}

/// What a side of a join reads: a branch of the view (an input relation and its steps), or
/// another join.
#[derive(Debug, Clone)]
pub enum JoinInput {
    Branch(usize),
    Join(Box<JoinSpec>),
}

impl JoinInput {
    /// Whether rows of branch `branch` reach this side.
    fn holds(&self, branch: usize) -> bool {
        match self {
            JoinInput::Branch(b) => *b == branch,
            JoinInput::Join(spec) => spec.sides.iter().any(|s| s.input.holds(branch)),
        }
    }
}

impl JoinSpec {
    /// Whether branch `branch` is a lookup join's dimension (whose watermark, if it has one,
    /// says nothing about the joined rows).
    pub fn is_dimension(&self, branch: usize) -> bool {
        self.sides
            .iter()
            .enumerate()
            .any(|(s, side)| match &side.input {
                JoinInput::Branch(b) => self.lookup && s == 1 && *b == branch,
                JoinInput::Join(inner) => inner.is_dimension(branch),
            })
    }

    /// This join and those below it with a state TTL.
    pub fn with_idle_ttl(self, idle_ttl_us: Option<i64>) -> JoinSpec {
        let sides = self.sides.map(|side| JoinSide {
            input: match side.input {
                JoinInput::Join(inner) => {
                    JoinInput::Join(Box::new(inner.with_idle_ttl(idle_ttl_us)))
                }
                branch => branch,
            },
            ..side
        });
        JoinSpec {
            sides,
            idle_ttl_us,
            ..self
        }
    }

    /// Whether a join of the tree keeps the rows of branch `branch` for as long as they
    /// exist (all but a lookup join's stream's, an interval join's, and those of a join with
    /// a state TTL).
    pub fn keeps_for_ever(&self, branch: usize) -> bool {
        self.sides
            .iter()
            .enumerate()
            .any(|(s, side)| match &side.input {
                JoinInput::Branch(b) => {
                    *b == branch
                        && !(self.lookup && s == 0)
                        && self.interval.is_none()
                        && self.idle_ttl_us.is_none()
                }
                JoinInput::Join(inner) => inner.keeps_for_ever(branch),
            })
    }

    /// The join's lines for `EXPLAIN`, each with its depth below this join, inputs after it.
    pub fn describe(&self, branch: &dyn Fn(usize) -> Vec<String>) -> Vec<(usize, String)> {
        let keys: Vec<String> = self.sides[0]
            .keys
            .iter()
            .zip(&self.sides[1].keys)
            .map(|(l, r)| {
                let op = if self.nulls_match {
                    "IS NOT DISTINCT FROM"
                } else {
                    "="
                };
                format!("{l} {op} {r}")
            })
            .collect();
        let mut lines: Vec<(usize, String)> = self
            .steps
            .iter()
            .rev()
            .enumerate()
            .map(|(depth, step)| (depth, step.describe()))
            .collect();
        let depth = lines.len();
        let filter = match &self.filter {
            Some(filter) => format!(" filter={filter}"),
            None => String::new(),
        };
        let bounded;
        let (name, state) = match (self.lookup, self.interval, self.kind) {
            (true, _, _) => (
                "LookupJoin",
                "the dimension's rows by key; a row joins them as they are when it arrives",
            ),
            (false, Some(interval), _) => {
                let [l, r] = interval.time;
                bounded = format!(
                    "each side's rows until the other side's watermark passes them \
                     ({} <= {}@{l} - {}@{r} <= {}), later rows late",
                    seconds(interval.lo),
                    self.sides[0].schema.field(l).name(),
                    self.sides[1].schema.field(r).name(),
                    seconds(interval.hi),
                );
                ("IntervalJoin", bounded.as_str())
            }
            (false, None, JoinKind::Inner) => {
                ("Join", "each side's rows by key, kept while they exist")
            }
            (false, None, JoinKind::Semi | JoinKind::Anti) => (
                "Join",
                "each side's rows by key, kept while they exist, the left's with their match \
                 counts",
            ),
            (false, None, _) => (
                "Join",
                "each side's rows by key, kept while they exist with their match counts",
            ),
        };
        let ttl = match self.idle_ttl_us {
            Some(ttl) => format!(", rows not written for {} forgotten", seconds(ttl)),
            None => String::new(),
        };
        lines.push((
            depth,
            format!(
                "{name}: type={} on=[{}]{filter} state={state}{ttl}",
                self.kind.name(),
                keys.join(", "),
            ),
        ));
        for side in &self.sides {
            let side_lines = match &side.input {
                JoinInput::Branch(b) => branch(*b).into_iter().enumerate().collect(),
                JoinInput::Join(spec) => spec.describe(branch),
            };
            lines.extend(side_lines.into_iter().map(|(d, l)| (depth + 1 + d, l)));
        }
        lines
    }
}

/// Microseconds as Postgres prints an interval's seconds.
fn seconds(us: i64) -> String {
    format!("{} s", us as f64 / 1e6)
}

/// A row of output: a row of the changed side (its position in the input), a candidate of
/// the other side (its position among the candidates), or both, inserted or deleted.
struct Out {
    this: Option<u32>,
    other: Option<u32>,
    insert: bool,
}

/// A join's state at a checkpoint: each side's rows and watermark, two per join.
#[derive(Debug, Default)]
pub struct JoinState {
    pub sides: Vec<Option<RecordBatch>>,
    pub watermarks: Vec<Option<i64>>,
}

/// A running join (and the joins below it).
pub struct Join {
    spec: JoinSpec,
    /// The columns the condition reads: the left side's, then the right side's.
    pair_schema: SchemaRef,
    sides: [Side; 2],
    children: [Option<Box<Join>>; 2],
    /// Each side's watermark, as far as it reached (an interval join's).
    watermarks: [Option<i64>; 2],
}

/// What a join hands on for a batch of an input: the joined changes, and the rows it took as
/// late.
pub struct Joined {
    pub changes: Changes,
    pub late: Vec<Late>,
}

/// Rows an interval join took as late: behind their side's watermark, so rows they might
/// have matched may be gone. They change nothing and are kept like other late rows.
pub struct Late {
    pub branch: usize,
    /// The rows as the join's side has them (after their branch's steps).
    pub rows: RecordBatch,
    pub time_column: usize,
    pub watermark: i64,
}

impl Join {
    pub fn try_new(spec: &JoinSpec) -> Result<Self> {
        let key_types = spec.sides[0]
            .keys
            .iter()
            .map(|k| Ok(k.data_type(&spec.sides[0].schema)?))
            .collect::<Result<Vec<DataType>>>()?;
        let side = |i: usize| Side::new(&spec.sides[i].schema, &key_types, spec.idle_ttl_us);
        let child = |i: usize| match &spec.sides[i].input {
            JoinInput::Join(inner) => Join::try_new(inner).map(|j| Some(Box::new(j))),
            JoinInput::Branch(_) => Ok(None),
        };
        let pair_schema = Schema::new(
            spec.sides
                .iter()
                .flat_map(|s| s.schema.fields().iter())
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        );
        Ok(Join {
            spec: spec.clone(),
            pair_schema: Arc::new(pair_schema),
            sides: [side(0)?, side(1)?],
            children: [child(0)?, child(1)?],
            watermarks: [None, None],
        })
    }

    /// Takes changes of branch `branch`; returns the changes of the joined rows, after this
    /// join's steps (`None` when the branch is not below this join).
    pub fn push(&mut self, branch: usize, changes: &Changes) -> Result<Option<Joined>> {
        let Some(side) = (0..2).find(|&s| self.spec.sides[s].input.holds(branch)) else {
            return Ok(None);
        };
        let (input, mut late) = match &mut self.children[side] {
            Some(child) => match child.push(branch, changes)? {
                Some(joined) => (joined.changes, joined.late),
                None => return Ok(None),
            },
            None => (changes.clone(), Vec::new()),
        };
        let input = match self.late(side, branch, input)? {
            (input, Some(behind)) => {
                late.push(behind);
                input
            }
            (input, None) => input,
        };
        let mut current = self.apply(side, &input)?;
        for step in &self.spec.steps {
            current = step.apply_changes(&current)?;
        }
        Ok(Some(Joined {
            changes: current,
            late,
        }))
    }

    /// An interval join's side takes only rows at or after its watermark, with a time: the
    /// rows on time, and those behind the watermark (rows without a time match nothing).
    fn late(
        &self,
        side: usize,
        branch: usize,
        changes: Changes,
    ) -> Result<(Changes, Option<Late>)> {
        let Some(interval) = &self.spec.interval else {
            return Ok((changes, None));
        };
        let column = interval.time[side];
        let times = times(&changes.rows, column)?;
        let watermark = self.watermarks[side].unwrap_or(i64::MIN);
        let on_time: BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| t >= watermark)))
            .collect();
        let behind: BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| t < watermark)))
            .collect();
        let late = match behind.true_count() {
            0 => None,
            _ => Some(Late {
                branch,
                rows: filter_record_batch(&changes.rows, &behind)?,
                time_column: column,
                watermark,
            }),
        };
        match on_time.true_count() == changes.num_rows() {
            true => Ok((changes, late)),
            false => Ok((changes.filter(&on_time)?, late)),
        }
    }

    /// Changes of side `side` as changes of the joined rows, applied to the side's rows.
    fn apply(&mut self, side: usize, changes: &Changes) -> Result<Changes> {
        if self.spec.lookup && side == 1 {
            return self.apply_dimension(changes);
        }
        let other = 1 - side;
        let spec = &self.spec;
        let batch = &changes.rows;
        let (keys, can_match) =
            self.sides[side].keys(&spec.sides[side].keys, batch, spec.nulls_match)?;
        let key_of = |i: usize| keys.as_ref().map_or(&[][..], |k| k.row(i).data());
        let rows = self.sides[side].rows.convert_columns(batch.columns())?;
        let times = match &spec.interval {
            Some(interval) => Some(times(batch, interval.time[side])?),
            None => None,
        };
        // The other side does not change while this side's changes are applied: its rows
        // with the same key are the candidates, their condition evaluated in one batch.
        let mut candidates = Candidates::default();
        for (i, _) in can_match.iter().enumerate().filter(|(_, can)| **can) {
            self.sides[other].candidates(key_of(i), i as u32, &mut candidates);
        }
        let (other_columns, matched) = self.candidates(side, batch, &candidates)?;
        let keeps_this = spec.kind.keeps_unmatched(side);
        let counts_other = spec.kind.counts_matches(other);
        let pairs = spec.kind.pairs();
        // A semi join hands on a left row with its first match, the others when they lose
        // their last.
        let first_match_inserts = spec.kind == JoinKind::Semi;
        let mut out = Vec::new();
        let mut next = 0;
        for (i, can_match) in can_match.into_iter().enumerate() {
            let insert = changes.inserts.value(i);
            let row = rows.row(i);
            let first = next;
            while next < candidates.rows.len() && candidates.rows[next].0 == i as u32 {
                next += 1;
            }
            if !can_match {
                if keeps_this {
                    out.push(Out {
                        this: Some(i as u32),
                        other: None,
                        insert,
                    });
                }
                continue;
            }
            let key = key_of(i);
            // A delete of a row the side does not hold (impossible from a consistent input)
            // changes nothing rather than driving a count below zero.
            if !insert && self.sides[side].held(key, row.data()).is_none() {
                continue;
            }
            let sign = if insert { 1 } else { -1 };
            let mut matches = 0;
            for (j, _) in matched
                .iter()
                .enumerate()
                .take(next)
                .skip(first)
                .filter(|(_, m)| **m)
            {
                let Some(held) = self.sides[other].held_mut(key, candidates.row(j)) else {
                    continue;
                };
                matches += held.count;
                let j = Some(j as u32);
                if pairs {
                    for _ in 0..held.count {
                        out.push(Out {
                            this: Some(i as u32),
                            other: j,
                            insert,
                        });
                    }
                }
                if counts_other {
                    let before = held.matches;
                    held.matches += sign;
                    // The other row's null-extended copies (or, in an anti join, the row)
                    // go with its first match and come back when its last goes; a semi
                    // join's row comes with its first match and goes with its last.
                    let flipped = match insert {
                        true => before == 0,
                        false => held.matches == 0,
                    };
                    if flipped {
                        for _ in 0..held.count {
                            out.push(Out {
                                this: None,
                                other: j,
                                insert: insert == first_match_inserts,
                            });
                        }
                    }
                }
            }
            let handed_alone = match spec.kind {
                JoinKind::Semi => side == 0 && matches > 0,
                _ => keeps_this && matches == 0,
            };
            if handed_alone {
                out.push(Out {
                    this: Some(i as u32),
                    other: None,
                    insert,
                });
            }
            match (insert, spec.lookup) {
                (_, true) => {}
                (true, false) => {
                    self.sides[side].insert(key, row.data(), matches);
                    if let Some(times) = &times {
                        self.sides[side].expire_at(times.value(i), key, row.data());
                    }
                }
                (false, false) => self.sides[side].remove(key, row.data()),
            }
        }
        self.output(side, batch, &other_columns, &out)
    }

    /// A lookup join's dimension changes: its rows do, nothing joined before does.
    fn apply_dimension(&mut self, changes: &Changes) -> Result<Changes> {
        let spec = &self.spec.sides[1];
        let side = &mut self.sides[1];
        let batch = &changes.rows;
        let (keys, can_match) = side.keys(&spec.keys, batch, self.spec.nulls_match)?;
        let rows = side.rows.convert_columns(batch.columns())?;
        for (i, can_match) in can_match.into_iter().enumerate() {
            if !can_match {
                continue;
            }
            let key = keys.as_ref().map_or(&[][..], |k| k.row(i).data());
            let row = rows.row(i);
            match changes.inserts.value(i) {
                true => side.insert(key, row.data(), 0),
                false if side.held(key, row.data()).is_some() => side.remove(key, row.data()),
                false => {}
            }
        }
        Ok(Changes::inserts(RecordBatch::new_empty(Arc::clone(
            &self.spec.schema,
        ))))
    }

    /// The other side's columns of the candidates, and which candidates meet the rest of
    /// the condition.
    fn candidates(
        &self,
        side: usize,
        batch: &RecordBatch,
        candidates: &Candidates,
    ) -> Result<(Vec<ArrayRef>, Vec<bool>)> {
        let other = 1 - side;
        let converter = &self.sides[other].rows;
        let parser = converter.parser();
        let other_columns = converter
            .convert_rows((0..candidates.rows.len()).map(|j| parser.parse(candidates.row(j))))?;
        let Some(filter) = &self.spec.filter else {
            return Ok((other_columns, vec![true; candidates.rows.len()]));
        };
        if candidates.rows.is_empty() {
            return Ok((other_columns, Vec::new()));
        }
        let indices = UInt32Array::from_iter_values(candidates.rows.iter().map(|(i, _)| *i));
        let this_columns = batch
            .columns()
            .iter()
            .map(|c| Ok(take(c, &indices, None)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let joined = self.pairs(side, this_columns, other_columns.clone(), &self.pair_schema)?;
        let mask = filter.evaluate(&joined)?.into_array(joined.num_rows())?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::Internal("a join condition is not boolean".into()))?;
        let matched = (0..mask.len())
            .map(|i| mask.is_valid(i) && mask.value(i))
            .collect();
        Ok((other_columns, matched))
    }

    /// One side's and the other side's columns as one batch, left first.
    fn pairs(
        &self,
        side: usize,
        this: Vec<ArrayRef>,
        other: Vec<ArrayRef>,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let columns = match side {
            0 => [this, other].concat(),
            _ => [other, this].concat(),
        };
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }

    fn output(
        &self,
        side: usize,
        batch: &RecordBatch,
        other_columns: &[ArrayRef],
        out: &[Out],
    ) -> Result<Changes> {
        let other = 1 - side;
        let pick = |columns: &[ArrayRef], indices: UInt32Array, schema: &SchemaRef| {
            match columns.first().is_none_or(|c| c.is_empty()) {
                // No candidate: the other side's columns are all NULL.
                true => Ok(schema
                    .fields()
                    .iter()
                    .map(|f| new_null_array(f.data_type(), indices.len()))
                    .collect()),
                false => columns
                    .iter()
                    .map(|c| Ok(take(c, &indices, None)?))
                    .collect::<Result<Vec<ArrayRef>>>(),
            }
        };
        let inserts = out.iter().map(|o| Some(o.insert)).collect();
        let this = || {
            pick(
                batch.columns(),
                out.iter().map(|o| o.this).collect(),
                &self.spec.sides[side].schema,
            )
        };
        let others = || {
            pick(
                other_columns,
                out.iter().map(|o| o.other).collect(),
                &self.spec.sides[other].schema,
            )
        };
        let schema = Arc::clone(&self.spec.schema);
        let rows = match (self.spec.kind.pairs(), side) {
            (true, _) => self.pairs(side, this()?, others()?, &schema)?,
            // A semi or anti join hands on rows of its left side only.
            (false, 0) => RecordBatch::try_new(schema, this()?)?,
            (false, _) => RecordBatch::try_new(schema, others()?)?,
        };
        Ok(Changes { rows, inserts })
    }

    /// Takes the inputs' watermarks (by branch; `None` where there is none yet); returns the
    /// watermark of the joined rows: a lookup join's is its stream's, an interval join's
    /// follows from both sides' and its bounds (and it drops the rows they leave behind); a
    /// regular join has none (a row may match one from any time).
    pub fn advance(&mut self, inputs: &[Option<i64>]) -> Option<i64> {
        let mut sides = [None, None];
        for (s, watermark) in sides.iter_mut().enumerate() {
            *watermark = match (&self.spec.sides[s].input, &mut self.children[s]) {
                (_, Some(child)) => child.advance(inputs),
                (JoinInput::Branch(b), None) => inputs.get(*b).copied().flatten(),
                (JoinInput::Join(_), None) => None,
            };
        }
        if let Some(interval) = self.spec.interval {
            for (side, watermark) in sides.iter().enumerate() {
                let kept = &mut self.watermarks[side];
                *kept = (*kept).max(*watermark);
            }
            // Each side keeps what the other side's watermark still lets match.
            for side in 0..2 {
                if let Some(other) = self.watermarks[1 - side] {
                    self.sides[side].expire_before(interval.expiry(side, other));
                }
            }
            let [left, right] = self.watermarks;
            return Some(interval.watermark(left?, right?));
        }
        match self.spec.lookup {
            true => sides[0],
            false => None,
        }
    }

    /// Forgets the rows of this join and those below it that a state TTL lets go, as of
    /// `now_us` (processing time).
    pub fn forget_idle(&mut self, now_us: i64) {
        for side in &mut self.sides {
            side.forget_idle(now_us);
        }
        for child in self.children.iter_mut().flatten() {
            child.forget_idle(now_us);
        }
    }

    /// Rows held by this join and those below it.
    pub fn rows(&self) -> usize {
        self.nodes()
            .iter()
            .map(|j| j.sides[0].distinct + j.sides[1].distinct)
            .sum()
    }

    /// Bytes held by this join and those below it.
    pub fn state_bytes(&self) -> usize {
        self.nodes()
            .iter()
            .map(|j| j.sides[0].bytes + j.sides[1].bytes)
            .sum()
    }

    /// This join and the joins below it, this one first, then the left's, then the right's.
    fn nodes(&self) -> Vec<&Join> {
        let mut nodes = vec![self];
        for child in self.children.iter().flatten() {
            nodes.extend(child.nodes());
        }
        nodes
    }

    /// Every side's rows and watermark, two per join in [`Join::nodes`] order (`None` for
    /// an empty side, or no watermark).
    pub fn checkpoint(&self) -> Result<JoinState> {
        let mut state = JoinState::default();
        for join in self.nodes() {
            for (s, (side, spec)) in join.sides.iter().zip(&join.spec.sides).enumerate() {
                state.sides.push(side.checkpoint(&spec.schema)?);
                state.watermarks.push(join.watermarks[s]);
            }
        }
        Ok(state)
    }

    /// Restores a new join from what [`Join::checkpoint`] wrote.
    pub fn restore(&mut self, state: &JoinState) -> Result<()> {
        let mut sides = state.sides.iter();
        let mut watermarks = state.watermarks.iter();
        self.restore_from(&mut sides, &mut watermarks)?;
        match sides.next() {
            Some(_) => Err(Error::Internal(
                "a join's state has more sides than it".into(),
            )),
            None => Ok(()),
        }
    }

    fn restore_from<'b>(
        &mut self,
        sides: &mut impl Iterator<Item = &'b Option<RecordBatch>>,
        watermarks: &mut impl Iterator<Item = &'b Option<i64>>,
    ) -> Result<()> {
        let times = [0, 1].map(|s| self.spec.interval.map(|i| i.time[s]));
        for (s, (side, spec)) in self.sides.iter_mut().zip(&self.spec.sides).enumerate() {
            let batch = sides
                .next()
                .ok_or_else(|| Error::Internal("a join's state lacks a side".into()))?;
            if let Some(batch) = batch {
                side.restore(
                    batch,
                    &spec.keys,
                    &spec.schema,
                    self.spec.nulls_match,
                    times[s],
                )?;
            }
            self.watermarks[s] = watermarks.next().copied().flatten();
        }
        for child in self.children.iter_mut().flatten() {
            child.restore_from(sides, watermarks)?;
        }
        Ok(())
    }
}
