//! One side of a join: its rows by the bytes of their join key (Arrow's row format), each
//! distinct row with how often it occurs and how many rows of the other side it matches; for
//! an interval join also by time, so rows the watermarks leave behind can go; with a state TTL
//! also in the order they were written, so rows idle for longer can be forgotten.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Error, Result};

/// How often a distinct row occurs on its side, and how many rows of the other side it
/// matches (counted with their occurrences; kept for outer joins).
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub(super) count: i64,
    pub(super) matches: i64,
    /// When it was last inserted (processing time, µs; `i64::MIN` when restored): with a
    /// state TTL, it is forgotten once idle for longer.
    written_us: i64,
}

/// Maps of join keys and rows: DataFusion's default (hashbrown, randomly seeded: the keys are
/// users' data).
type Map<K, V> = datafusion::common::HashMap<K, V>;

/// The distinct rows of one key: one inline (most keys of a dimension or an event stream
/// have one), more in a map.
pub(super) enum RowsOfKey {
    One(Box<[u8]>, Held),
    Many(Map<Box<[u8]>, Held>),
}

impl RowsOfKey {
    /// Each distinct row and what is held of it.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &Held)> {
        let (one, many) = match self {
            RowsOfKey::One(row, held) => (Some((&row[..], held)), None),
            RowsOfKey::Many(rows) => (None, Some(rows.iter().map(|(r, h)| (&r[..], h)))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    fn get(&self, row: &[u8]) -> Option<&Held> {
        match self {
            RowsOfKey::One(one, held) => (**one == *row).then_some(held),
            RowsOfKey::Many(rows) => rows.get(row),
        }
    }

    fn get_mut(&mut self, row: &[u8]) -> Option<&mut Held> {
        match self {
            RowsOfKey::One(one, held) => (**one == *row).then_some(held),
            RowsOfKey::Many(rows) => rows.get_mut(row),
        }
    }

    /// Adds a row it does not hold.
    fn insert(&mut self, row: &[u8], held: Held) {
        if let RowsOfKey::One(one, first) = self {
            let mut rows = Map::default();
            rows.insert(std::mem::take(one), *first);
            *self = RowsOfKey::Many(rows);
        }
        if let RowsOfKey::Many(rows) = self {
            rows.insert(row.into(), held);
        }
    }

    /// Removes a row; returns whether none is left.
    fn remove(&mut self, row: &[u8]) -> bool {
        match self {
            RowsOfKey::One(one, _) => **one == *row,
            RowsOfKey::Many(rows) => {
                rows.remove(row);
                rows.is_empty()
            }
        }
    }
}

/// Where each of a batch's candidate rows (of the other side) is, copied into one buffer.
#[derive(Default)]
pub(super) struct Candidates {
    /// The changed row each candidate is for, and its bytes in `bytes`.
    pub(super) rows: Vec<(u32, Range<usize>)>,
    pub(super) bytes: Vec<u8>,
}

impl Candidates {
    pub(super) fn row(&self, candidate: usize) -> &[u8] {
        &self.bytes[self.rows[candidate].1.clone()]
    }
}

/// Bytes a held row costs beyond its key and row bytes (map entries, boxes).
const ROW_OVERHEAD: usize = 64;

/// With a state TTL: how long a row may go without an insert (µs), and every insert, oldest
/// first, as when it was written with its key and row (as `expiry` holds them).
struct Idle {
    ttl_us: i64,
    inserts: VecDeque<(i64, Box<[u8]>)>,
}

/// One side's rows.
pub(super) struct Side {
    /// Converts the key values, in the types of the left side's keys.
    key_types: Vec<DataType>,
    keys: Option<RowConverter>,
    pub(super) rows: RowConverter,
    by_key: Map<Box<[u8]>, RowsOfKey>,
    /// An interval join's rows by time, earliest first, to drop them once they can match
    /// nothing more: the time, and the key's length (4 bytes), the key and the row.
    expiry: BinaryHeap<Reverse<(i64, Box<[u8]>)>>,
    idle: Option<Idle>,
    /// The time now (processing time, µs), once told.
    now_us: Option<i64>,
    pub(super) bytes: usize,
    pub(super) distinct: usize,
}

impl Side {
    pub(super) fn new(
        schema: &Schema,
        key_types: &[DataType],
        idle_ttl_us: Option<i64>,
    ) -> Result<Self> {
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
            by_key: Map::default(),
            expiry: BinaryHeap::new(),
            idle: idle_ttl_us.map(|ttl_us| Idle {
                ttl_us,
                inserts: VecDeque::new(),
            }),
            now_us: None,
            bytes: 0,
            distinct: 0,
        })
    }

    /// Every row's key, and whether it can match (no NULL in it, unless NULLs match).
    pub(super) fn keys(
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

    pub(super) fn held(&self, key: &[u8], row: &[u8]) -> Option<Held> {
        self.by_key.get(key)?.get(row).copied()
    }

    /// Adds the rows held with `key` to `candidates`, for changed row `changed`.
    pub(super) fn candidates(&self, key: &[u8], changed: u32, candidates: &mut Candidates) {
        if let Some(rows) = self.by_key.get(key) {
            for (row, _) in rows.iter() {
                let start = candidates.bytes.len();
                candidates.bytes.extend_from_slice(row);
                candidates
                    .rows
                    .push((changed, start..candidates.bytes.len()));
            }
        }
    }

    pub(super) fn held_mut(&mut self, key: &[u8], row: &[u8]) -> Option<&mut Held> {
        self.by_key.get_mut(key)?.get_mut(row)
    }

    /// Adds one occurrence of a row (with `matches` if it is new).
    pub(super) fn insert(&mut self, key: &[u8], row: &[u8], matches: i64) {
        let written_us = self.now_us.unwrap_or(i64::MIN);
        let new = Held {
            count: 1,
            matches,
            written_us,
        };
        if self.idle.is_some() {
            let entry = entry(key, row);
            self.bytes += entry.len() + ROW_OVERHEAD;
            if let Some(idle) = &mut self.idle {
                idle.inserts.push_back((written_us, entry));
            }
        }
        match self.by_key.get_mut(key) {
            Some(rows) => match rows.get_mut(row) {
                Some(held) => {
                    held.count += 1;
                    held.written_us = written_us;
                }
                None => {
                    rows.insert(row, new);
                    self.bytes += row.len() + ROW_OVERHEAD;
                    self.distinct += 1;
                }
            },
            None => {
                self.by_key
                    .insert(key.into(), RowsOfKey::One(row.into(), new));
                self.bytes += key.len() + row.len() + 2 * ROW_OVERHEAD;
                self.distinct += 1;
            }
        }
    }

    /// Drops a row (every occurrence) once the watermarks pass `time`.
    pub(super) fn expire_at(&mut self, time: i64, key: &[u8], row: &[u8]) {
        let entry = entry(key, row);
        self.bytes += entry.len() + ROW_OVERHEAD;
        self.expiry.push(Reverse((time, entry)));
    }

    /// Drops the rows whose time is before `before`.
    pub(super) fn expire_before(&mut self, before: i64) {
        while let Some(Reverse((time, _))) = self.expiry.peek()
            && *time < before
        {
            let Some(Reverse((_, entry))) = self.expiry.pop() else {
                break;
            };
            self.bytes -= entry.len() + ROW_OVERHEAD;
            let (key, row) = key_and_row(&entry);
            self.drop_row(key, row);
        }
    }

    /// With a state TTL, forgets the rows not inserted again for longer than it, as of
    /// `now_us` (processing time): they match nothing more, and a delete of one changes
    /// nothing. Rows restored from a checkpoint count as written when first told the time.
    pub(super) fn forget_idle(&mut self, now_us: i64) {
        let Some(idle) = &mut self.idle else {
            return;
        };
        if self.now_us.is_none() {
            for (written, _) in idle.inserts.iter_mut().filter(|(w, _)| *w == i64::MIN) {
                *written = now_us;
            }
        }
        self.now_us = Some(now_us);
        let cutoff = now_us.saturating_sub(idle.ttl_us);
        let mut forgotten = Vec::new();
        while let Some((written, _)) = idle.inserts.front()
            && *written <= cutoff
        {
            if let Some((_, entry)) = idle.inserts.pop_front() {
                forgotten.push(entry);
            }
        }
        for entry in forgotten {
            self.bytes -= entry.len() + ROW_OVERHEAD;
            let (key, row) = key_and_row(&entry);
            // Inserted again since: a later entry forgets it, if it stays idle.
            if self.held(key, row).is_some_and(|h| h.written_us <= cutoff) {
                self.drop_row(key, row);
            }
        }
    }

    /// Drops every occurrence of a row, if held.
    fn drop_row(&mut self, key: &[u8], row: &[u8]) {
        if let Some(held) = self.held_mut(key, row) {
            held.count = 1;
            self.remove(key, row);
        }
    }

    /// Takes one occurrence of a row away (the caller checked it is held).
    pub(super) fn remove(&mut self, key: &[u8], row: &[u8]) {
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
            self.bytes -= row.len() + ROW_OVERHEAD;
            self.distinct -= 1;
            if rows.remove(row) {
                self.by_key.remove(key);
                self.bytes -= key.len() + ROW_OVERHEAD;
            }
        }
    }

    /// Its rows as one batch (its columns, then each row's count and matches); `None` when empty.
    pub(super) fn checkpoint(&self, schema: &SchemaRef) -> Result<Option<RecordBatch>> {
        if self.distinct == 0 {
            return Ok(None);
        }
        let parser = self.rows.parser();
        let held: Vec<(&[u8], &Held)> = self.by_key.values().flat_map(RowsOfKey::iter).collect();
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

    pub(super) fn restore(
        &mut self,
        batch: &RecordBatch,
        keys: &[Arc<dyn PhysicalExpr>],
        schema: &SchemaRef,
        nulls_match: bool,
        time: Option<usize>,
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
        let times = time.map(|t| times(&rows_batch, t)).transpose()?;
        for i in 0..batch.num_rows() {
            let key = key_rows.as_ref().map_or(&[][..], |k| k.row(i).data());
            let row = rows.row(i);
            self.insert(key, row.data(), matches.value(i));
            if let Some(held) = self.held_mut(key, row.data()) {
                held.count = counts.value(i);
            }
            if let Some(times) = &times {
                self.expire_at(times.value(i), key, row.data());
            }
        }
        Ok(())
    }
}

/// A row as `expiry` and `idle` hold it: its key's length (4 bytes), its key and the row.
fn entry(key: &[u8], row: &[u8]) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(4 + key.len() + row.len());
    bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(row);
    bytes.into()
}

/// The key and the row of an [`entry`].
fn key_and_row(entry: &[u8]) -> (&[u8], &[u8]) {
    let (length, rest) = entry.split_at(4.min(entry.len()));
    let length = u32::from_le_bytes(length.try_into().unwrap_or_default()) as usize;
    rest.split_at(length.min(rest.len()))
}

/// The times of an interval join's side.
pub(super) fn times(batch: &RecordBatch, column: usize) -> Result<TimestampMicrosecondArray> {
    batch
        .column(column)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .cloned()
        .ok_or_else(|| Error::Internal("an interval join's time is not a timestamp".into()))
}

/// A side's checkpoint columns: its own, then `count` and `matches`.
fn state_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("_sluice_count", DataType::Int64, false));
    fields.push(Field::new("_sluice_matches", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}
