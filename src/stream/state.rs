//! The window operator's open state as one Arrow batch, for checkpoints.
//!
//! Every row is one group of one pane (or one session): `start`, `end` and `frozen` place it,
//! `k0…` are its group key, `s<aggregate>_<n>` the aggregate's state arrays — exactly what
//! DataFusion's `GroupsAccumulator::state` emits and `merge_batch` takes back, so a restored
//! operator continues as if it had never stopped. Rows of one pane are contiguous.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::groups::Partial;
use crate::error::{Error, Result};

/// Groups of one pane or of sessions, with where they sit in time.
pub struct StatePart {
    /// Per row: the pane's start (a session's start).
    pub starts: Vec<i64>,
    /// Per row: a session's end; 0 for panes.
    pub ends: Vec<i64>,
    /// A pane whose first window closed: it takes no more rows.
    pub frozen: bool,
    pub partial: Partial,
}

/// The parts as one batch; `None` when no group is open.
pub fn encode(parts: &[StatePart]) -> Result<Option<RecordBatch>> {
    let parts: Vec<&StatePart> = parts.iter().filter(|p| p.partial.rows() > 0).collect();
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    let mut fields = vec![
        Field::new("start", DataType::Int64, false),
        Field::new("end", DataType::Int64, false),
        Field::new("frozen", DataType::Boolean, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            parts.iter().flat_map(|p| p.starts.iter().copied()),
        )),
        Arc::new(Int64Array::from_iter_values(
            parts.iter().flat_map(|p| p.ends.iter().copied()),
        )),
        Arc::new(BooleanArray::from_iter(parts.iter().flat_map(|p| {
            std::iter::repeat_n(Some(p.frozen), p.partial.rows())
        }))),
    ];
    let column = |pick: &dyn Fn(&Partial) -> &ArrayRef| -> Result<ArrayRef> {
        let arrays: Vec<&dyn Array> = parts.iter().map(|p| pick(&p.partial).as_ref()).collect();
        Ok(concat(&arrays)?)
    };
    for k in 0..first.partial.keys.len() {
        let array = column(&|p| &p.keys[k])?;
        fields.push(Field::new(format!("k{k}"), array.data_type().clone(), true));
        columns.push(array);
    }
    for (a, states) in first.partial.states.iter().enumerate() {
        for n in 0..states.len() {
            let array = column(&|p| &p.states[a][n])?;
            fields.push(Field::new(
                format!("s{a}_{n}"),
                array.data_type().clone(),
                true,
            ));
            columns.push(array);
        }
    }
    Ok(Some(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?))
}

/// A decoded state batch.
pub struct Decoded {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub frozen: Vec<bool>,
    pub partial: Partial,
}

impl Decoded {
    /// Runs of rows of one pane: `(start, frozen, rows)`.
    pub fn runs(&self) -> Vec<(i64, bool, Range<usize>)> {
        let mut runs: Vec<(i64, bool, Range<usize>)> = Vec::new();
        for (i, (&start, &frozen)) in self.starts.iter().zip(&self.frozen).enumerate() {
            match runs.last_mut() {
                Some((s, f, rows)) if *s == start && *f == frozen => rows.end = i + 1,
                _ => runs.push((start, frozen, i..i + 1)),
            }
        }
        runs
    }

    /// The groups of `rows`.
    pub fn slice(&self, rows: &Range<usize>) -> Partial {
        let cut = |a: &ArrayRef| a.slice(rows.start, rows.len());
        Partial {
            keys: self.partial.keys.iter().map(cut).collect(),
            states: self
                .partial
                .states
                .iter()
                .map(|s| s.iter().map(cut).collect())
                .collect(),
        }
    }
}

/// Reads a batch written by [`encode`] for an operator with `aggregates` aggregates.
pub fn decode(batch: &RecordBatch, aggregates: usize) -> Result<Decoded> {
    let invalid = |what: &str| Error::Internal(format!("operator state is not valid: {what}"));
    let int64 = |i: usize| -> Result<Vec<i64>> {
        Ok(batch
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| invalid("start/end are not int64"))?
            .values()
            .to_vec())
    };
    let frozen = batch
        .column(2)
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| invalid("frozen is not boolean"))?
        .iter()
        .map(|f| f.unwrap_or(false))
        .collect();
    let mut keys = Vec::new();
    let mut states = vec![Vec::new(); aggregates];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()).skip(3) {
        let name = field.name();
        if name.starts_with('k') {
            keys.push(Arc::clone(column));
        } else if let Some(a) = name
            .strip_prefix('s')
            .and_then(|s| s.split_once('_'))
            .and_then(|(a, _)| a.parse::<usize>().ok())
            && a < aggregates
        {
            states[a].push(Arc::clone(column));
        } else {
            return Err(invalid(&format!(
                "unexpected column \"{name}\" (the view's aggregates changed?)"
            )));
        }
    }
    if keys.is_empty() || states.iter().any(Vec::is_empty) {
        return Err(invalid("key or aggregate state columns are missing"));
    }
    Ok(Decoded {
        starts: int64(0)?,
        ends: int64(1)?,
        frozen,
        partial: Partial { keys, states },
    })
}
