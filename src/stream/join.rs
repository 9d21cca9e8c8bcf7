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

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

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

    /// Whether a join of the tree keeps the rows of branch `branch` (all but a lookup
    /// join's stream).
    pub fn keeps(&self, branch: usize) -> bool {
        self.sides
            .iter()
            .enumerate()
            .any(|(s, side)| match &side.input {
                JoinInput::Branch(b) => *b == branch && !(self.lookup && s == 0),
                JoinInput::Join(inner) => inner.keeps(branch),
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
        let (name, state) = match (self.lookup, self.kind) {
            (true, _) => (
                "LookupJoin",
                "the dimension's rows by key; a row joins them as they are when it arrives",
            ),
            (false, JoinKind::Inner) => ("Join", "each side's rows by key, kept while they exist"),
            (false, JoinKind::Semi | JoinKind::Anti) => (
                "Join",
                "each side's rows by key, kept while they exist, the left's with their match \
                 counts",
            ),
            (false, _) => (
                "Join",
                "each side's rows by key, kept while they exist with their match counts",
            ),
        };
        lines.push((
            depth,
            format!(
                "{name}: type={} on=[{}]{filter} state={state}",
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

/// How often a distinct row occurs on its side, and how many rows of the other side it
/// matches (counted with their occurrences; kept for outer joins).
#[derive(Debug, Clone, Copy)]
struct Held {
    count: i64,
    matches: i64,
}

/// The distinct rows of one key, by their bytes.
type RowsOfKey = HashMap<Box<[u8]>, Held>;

/// Bytes a held row costs beyond its key and row bytes (map entries, boxes).
const ROW_OVERHEAD: usize = 64;

/// One side's rows.
struct Side {
    /// Converts the key values, in the types of the left side's keys.
    key_types: Vec<DataType>,
    keys: Option<RowConverter>,
    rows: RowConverter,
    by_key: HashMap<Box<[u8]>, RowsOfKey>,
    bytes: usize,
    distinct: usize,
}

impl Side {
    fn new(schema: &Schema, key_types: &[DataType]) -> Result<Self> {
        let keys = match key_types.is_empty() {
            true => None,
            false => Some(RowConverter::new(
                key_types
                    .iter()
                    .map(|t| SortField::new(t.clone()))
                    .collect(),
            )?),
        };
        let rows = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Ok(Side {
            key_types: key_types.to_vec(),
            keys,
            rows,
            by_key: HashMap::new(),
            bytes: 0,
            distinct: 0,
        })
    }

    /// Every row's key, and whether it can match (no NULL in it, unless NULLs match).
    fn keys(
        &self,
        exprs: &[Arc<dyn PhysicalExpr>],
        batch: &RecordBatch,
        nulls_match: bool,
    ) -> Result<(Option<Rows>, Vec<bool>)> {
        let Some(converter) = &self.keys else {
            return Ok((None, vec![true; batch.num_rows()]));
        };
        let mut columns = Vec::with_capacity(exprs.len());
        for (expr, data_type) in exprs.iter().zip(&self.key_types) {
            let column = expr.evaluate(batch)?.into_array(batch.num_rows())?;
            columns.push(match column.data_type() == data_type {
                true => column,
                false => cast(&column, data_type)?,
            });
        }
        let can_match = (0..batch.num_rows())
            .map(|row| nulls_match || columns.iter().all(|c| c.is_valid(row)))
            .collect();
        Ok((Some(converter.convert_columns(&columns)?), can_match))
    }

    fn held(&self, key: &[u8], row: &[u8]) -> Option<Held> {
        self.by_key.get(key)?.get(row).copied()
    }

    fn held_mut(&mut self, key: &[u8], row: &[u8]) -> Option<&mut Held> {
        self.by_key.get_mut(key)?.get_mut(row)
    }

    /// Adds one occurrence of a row (with `matches` if it is new).
    fn insert(&mut self, key: &[u8], row: &[u8], matches: i64) {
        let rows = match self.by_key.get_mut(key) {
            Some(rows) => rows,
            None => {
                self.bytes += key.len() + ROW_OVERHEAD;
                self.by_key.entry(key.into()).or_default()
            }
        };
        match rows.get_mut(row) {
            Some(held) => held.count += 1,
            None => {
                self.bytes += row.len() + ROW_OVERHEAD;
                self.distinct += 1;
                rows.insert(row.into(), Held { count: 1, matches });
            }
        }
    }

    /// Takes one occurrence of a row away (the caller checked it is held).
    fn remove(&mut self, key: &[u8], row: &[u8]) {
        let Some(rows) = self.by_key.get_mut(key) else {
            return;
        };
        let gone = match rows.get_mut(row) {
            Some(held) => {
                held.count -= 1;
                held.count <= 0
            }
            None => false,
        };
        if gone {
            rows.remove(row);
            self.bytes -= row.len() + ROW_OVERHEAD;
            self.distinct -= 1;
            if rows.is_empty() {
                self.by_key.remove(key);
                self.bytes -= key.len() + ROW_OVERHEAD;
            }
        }
    }

    /// Its rows as one batch (its columns, then each row's count and matches); `None` when empty.
    fn checkpoint(&self, schema: &SchemaRef) -> Result<Option<RecordBatch>> {
        if self.distinct == 0 {
            return Ok(None);
        }
        let parser = self.rows.parser();
        let held: Vec<(&Box<[u8]>, &Held)> = self.by_key.values().flatten().collect();
        let mut columns = self
            .rows
            .convert_rows(held.iter().map(|(row, _)| parser.parse(row)))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            held.iter().map(|(_, h)| h.count),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            held.iter().map(|(_, h)| h.matches),
        )));
        Ok(Some(RecordBatch::try_new(state_schema(schema), columns)?))
    }

    fn restore(
        &mut self,
        batch: &RecordBatch,
        keys: &[Arc<dyn PhysicalExpr>],
        schema: &SchemaRef,
        nulls_match: bool,
    ) -> Result<()> {
        let width = schema.fields().len();
        if batch.num_columns() != width + 2 {
            return Err(Error::Internal(format!(
                "a join side's state has {} columns, not {}",
                batch.num_columns(),
                width + 2
            )));
        }
        let rows_batch =
            RecordBatch::try_new(Arc::clone(schema), batch.columns()[..width].to_vec())?;
        let int = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .ok_or_else(|| Error::Internal("a join side's counts are not bigints".into()))
        };
        let (counts, matches) = (int(width)?, int(width + 1)?);
        let (key_rows, _) = self.keys(keys, &rows_batch, nulls_match)?;
        let rows = self.rows.convert_columns(rows_batch.columns())?;
        for i in 0..batch.num_rows() {
            let key = key_rows.as_ref().map_or(&[][..], |k| k.row(i).data());
            self.insert(key, rows.row(i).data(), matches.value(i));
            if let Some(held) = self.held_mut(key, rows.row(i).data()) {
                held.count = counts.value(i);
            }
        }
        Ok(())
    }
}

/// A side's checkpoint columns: its own, then `count` and `matches`.
fn state_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("_sluice_count", DataType::Int64, false));
    fields.push(Field::new("_sluice_matches", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// A row of output: a row of the changed side (its position in the input), a candidate of
/// the other side (its position among the candidates), or both, inserted or deleted.
struct Out {
    this: Option<u32>,
    other: Option<u32>,
    insert: bool,
}

/// A running join (and the joins below it).
pub struct Join {
    spec: JoinSpec,
    /// The columns the condition reads: the left side's, then the right side's.
    pair_schema: SchemaRef,
    sides: [Side; 2],
    children: [Option<Box<Join>>; 2],
}

impl Join {
    pub fn try_new(spec: &JoinSpec) -> Result<Self> {
        let key_types = spec.sides[0]
            .keys
            .iter()
            .map(|k| Ok(k.data_type(&spec.sides[0].schema)?))
            .collect::<Result<Vec<DataType>>>()?;
        let side = |i: usize| Side::new(&spec.sides[i].schema, &key_types);
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
        })
    }

    /// Takes changes of branch `branch`; returns the changes of the joined rows, after this
    /// join's steps (`None` when the branch is not below this join).
    pub fn push(&mut self, branch: usize, changes: &Changes) -> Result<Option<Changes>> {
        let Some(side) = (0..2).find(|&s| self.spec.sides[s].input.holds(branch)) else {
            return Ok(None);
        };
        let input = match &mut self.children[side] {
            Some(child) => match child.push(branch, changes)? {
                Some(changes) => changes,
                None => return Ok(None),
            },
            None => changes.clone(),
        };
        let mut current = self.apply(side, &input)?;
        for step in &self.spec.steps {
            current = step.apply_changes(&current)?;
        }
        Ok(Some(current))
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
        // The other side does not change while this side's changes are applied: its rows
        // with the same key are the candidates, their condition evaluated in one batch.
        let mut candidates: Vec<(u32, Box<[u8]>)> = Vec::new();
        for (i, _) in can_match.iter().enumerate().filter(|(_, can)| **can) {
            if let Some(held) = self.sides[other].by_key.get(key_of(i)) {
                candidates.extend(held.keys().map(|row| (i as u32, row.clone())));
            }
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
            while next < candidates.len() && candidates[next].0 == i as u32 {
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
            for (j, (_, other_row)) in candidates.iter().enumerate().take(next).skip(first) {
                if !matched[j] {
                    continue;
                }
                let Some(held) = self.sides[other].held_mut(key, other_row) else {
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
                (true, false) => self.sides[side].insert(key, row.data(), matches),
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
        candidates: &[(u32, Box<[u8]>)],
    ) -> Result<(Vec<ArrayRef>, Vec<bool>)> {
        let other = 1 - side;
        let converter = &self.sides[other].rows;
        let parser = converter.parser();
        let other_columns =
            converter.convert_rows(candidates.iter().map(|(_, row)| parser.parse(row)))?;
        let Some(filter) = &self.spec.filter else {
            return Ok((other_columns, vec![true; candidates.len()]));
        };
        if candidates.is_empty() {
            return Ok((other_columns, Vec::new()));
        }
        let indices = UInt32Array::from_iter_values(candidates.iter().map(|(i, _)| *i));
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
    /// watermark of the joined rows: a lookup join's is its stream's; a regular join has none
    /// (a row may match one from any time).
    pub fn advance(&mut self, inputs: &[Option<i64>]) -> Option<i64> {
        let mut sides = [None, None];
        for (s, watermark) in sides.iter_mut().enumerate() {
            *watermark = match (&self.spec.sides[s].input, &mut self.children[s]) {
                (_, Some(child)) => child.advance(inputs),
                (JoinInput::Branch(b), None) => inputs.get(*b).copied().flatten(),
                (JoinInput::Join(_), None) => None,
            };
        }
        match self.spec.lookup {
            true => sides[0],
            false => None,
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

    /// Every side's rows, two per join in [`Join::nodes`] order (`None` for an empty side).
    pub fn checkpoint(&self) -> Result<Vec<Option<RecordBatch>>> {
        let mut batches = Vec::new();
        for join in self.nodes() {
            for (side, spec) in join.sides.iter().zip(&join.spec.sides) {
                batches.push(side.checkpoint(&spec.schema)?);
            }
        }
        Ok(batches)
    }

    /// Restores a new join from what [`Join::checkpoint`] wrote.
    pub fn restore(&mut self, batches: &[Option<RecordBatch>]) -> Result<()> {
        let mut batches = batches.iter();
        self.restore_from(&mut batches)?;
        match batches.next() {
            Some(_) => Err(Error::Internal(
                "a join's state has more sides than it".into(),
            )),
            None => Ok(()),
        }
    }

    fn restore_from<'b>(
        &mut self,
        batches: &mut impl Iterator<Item = &'b Option<RecordBatch>>,
    ) -> Result<()> {
        for (side, spec) in self.sides.iter_mut().zip(&self.spec.sides) {
            let batch = batches
                .next()
                .ok_or_else(|| Error::Internal("a join's state lacks a side".into()))?;
            if let Some(batch) = batch {
                side.restore(batch, &spec.keys, &spec.schema, self.spec.nulls_match)?;
            }
        }
        for child in self.children.iter_mut().flatten() {
            child.restore_from(batches)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    use datafusion::scalar::ScalarValue;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    type Row = (Option<i64>, i64);
    /// A joined row: the left's key and value, then the right's (none for semi and anti joins).
    type Joined = Vec<Option<i64>>;

    fn side_schema(key: &str, value: &str) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(key, DataType::Int64, true),
            Field::new(value, DataType::Int64, false),
        ]))
    }

    fn column(name: &str, index: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, index))
    }

    /// `l.k = r.k` (and `l.v < r.w + 3` when `filtered`), of kind `kind`.
    fn spec(kind: JoinKind, filtered: bool) -> JoinSpec {
        let (left, right) = (side_schema("k", "v"), side_schema("rk", "w"));
        let mut fields: Vec<Field> = left
            .fields()
            .iter()
            .chain(right.fields().iter())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        if !kind.pairs() {
            fields.truncate(2);
        }
        let filter = filtered.then(|| {
            let plus: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
                column("w", 3),
                Operator::Plus,
                Arc::new(Literal::new(ScalarValue::Int64(Some(3)))),
            ));
            Arc::new(BinaryExpr::new(column("v", 1), Operator::Lt, plus)) as Arc<dyn PhysicalExpr>
        });
        JoinSpec {
            kind,
            sides: [
                JoinSide {
                    input: JoinInput::Branch(0),
                    keys: vec![column("k", 0)],
                    schema: left,
                },
                JoinSide {
                    input: JoinInput::Branch(1),
                    keys: vec![column("rk", 0)],
                    schema: right,
                },
            ],
            filter,
            nulls_match: false,
            schema: Arc::new(Schema::new(fields)),
            steps: Vec::new(),
            lookup: false,
        }
    }

    fn changes(schema: &SchemaRef, ops: &[(Row, bool)]) -> Changes {
        let keys: Vec<Option<i64>> = ops.iter().map(|((k, _), _)| *k).collect();
        let values: Vec<i64> = ops.iter().map(|((_, v), _)| *v).collect();
        Changes {
            rows: RecordBatch::try_new(
                Arc::clone(schema),
                vec![
                    Arc::new(Int64Array::from(keys)),
                    Arc::new(Int64Array::from(values)),
                ],
            )
            .unwrap(),
            inserts: ops.iter().map(|(_, insert)| Some(*insert)).collect(),
        }
    }

    /// The join of two multisets, pair by pair, as the batch query has it.
    fn batch_join(
        kind: JoinKind,
        filtered: bool,
        left: &BTreeMap<Row, i64>,
        right: &BTreeMap<Row, i64>,
    ) -> BTreeMap<Joined, i64> {
        let matches =
            |l: &Row, r: &Row| l.0.is_some() && l.0 == r.0 && (!filtered || l.1 < r.1 + 3);
        let mut out = BTreeMap::new();
        for (l, lc) in left {
            let matched = right.keys().any(|r| matches(l, r));
            match kind {
                JoinKind::Semi | JoinKind::Anti => {
                    if matched == (kind == JoinKind::Semi) {
                        *out.entry(vec![l.0, Some(l.1)]).or_insert(0) += lc;
                    }
                    continue;
                }
                _ => {}
            }
            for (r, rc) in right {
                if matches(l, r) {
                    *out.entry(vec![l.0, Some(l.1), r.0, Some(r.1)]).or_insert(0) += lc * rc;
                }
            }
            if kind.keeps_unmatched(0) && !matched {
                *out.entry(vec![l.0, Some(l.1), None, None]).or_insert(0) += lc;
            }
        }
        if kind.keeps_unmatched(1) {
            for (r, rc) in right {
                if !left.keys().any(|l| matches(l, r)) {
                    *out.entry(vec![None, None, r.0, Some(r.1)]).or_insert(0) += rc;
                }
            }
        }
        out
    }

    fn fold(result: &mut BTreeMap<Joined, i64>, changes: &Changes) {
        let value = |c: usize, row: usize| {
            let column = changes.rows.column(c).as_primitive::<Int64Type>();
            column.is_valid(row).then(|| column.value(row))
        };
        for row in 0..changes.num_rows() {
            let joined: Joined = (0..changes.rows.num_columns())
                .map(|c| value(c, row))
                .collect();
            let count = result.entry(joined.clone()).or_insert(0);
            *count += if changes.inserts.value(row) { 1 } else { -1 };
            assert!(*count >= 0, "{joined:?} deleted more often than inserted");
            if *count == 0 {
                result.remove(&joined);
            }
        }
    }

    /// Random inserts and deletes on both sides, in batches, restored from checkpoints at
    /// random points: after every batch, the changes handed on so far add up to the join of
    /// the two sides' rows.
    #[test]
    fn joined_changes_add_up_to_the_join_of_both_sides() {
        let kinds = [
            JoinKind::Inner,
            JoinKind::Left,
            JoinKind::Right,
            JoinKind::Full,
            JoinKind::Semi,
            JoinKind::Anti,
        ];
        for seed in 0..60u64 {
            let kind = kinds[seed as usize % kinds.len()];
            let filtered = seed % 12 >= 6;
            let spec = spec(kind, filtered);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut join = Join::try_new(&spec).unwrap();
            let mut sides: [BTreeMap<Row, i64>; 2] = [BTreeMap::new(), BTreeMap::new()];
            let mut result = BTreeMap::new();
            for _ in 0..150 {
                let side = rng.random_range(0..2usize);
                let mut ops = Vec::new();
                for _ in 0..rng.random_range(1..6) {
                    let held: Vec<Row> = sides[side].keys().copied().collect();
                    if !held.is_empty() && rng.random_bool(0.35) {
                        let row = held[rng.random_range(0..held.len())];
                        let count = sides[side].get_mut(&row).unwrap();
                        *count -= 1;
                        if *count == 0 {
                            sides[side].remove(&row);
                        }
                        ops.push((row, false));
                    } else {
                        let key = rng.random_range(0..5i64);
                        let row = ((key < 4).then_some(key), rng.random_range(0..6i64));
                        *sides[side].entry(row).or_insert(0) += 1;
                        ops.push((row, true));
                    }
                }
                let pushed = changes(&spec.sides[side].schema, &ops);
                let out = join.push(side, &pushed).unwrap().unwrap();
                fold(&mut result, &out);
                assert_eq!(
                    result,
                    batch_join(kind, filtered, &sides[0], &sides[1]),
                    "seed {seed}, {kind:?}"
                );
                if rng.random_bool(0.1) {
                    let state = join.checkpoint().unwrap();
                    let bytes = join.state_bytes();
                    join = Join::try_new(&spec).unwrap();
                    join.restore(&state).unwrap();
                    assert_eq!(join.state_bytes(), bytes);
                }
            }
        }
    }
}
