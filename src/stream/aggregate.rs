//! The window aggregation operator: rows in, watermarks in, closed windows out.
//!
//! Rows are evaluated once into group keys and aggregate arguments (DataFusion physical
//! expressions), checked against the watermark (a row whose window already closed is *late*:
//! returned to the caller, which keeps it in `sluice_catalog.late_rows`), and added to the
//! window state: [`Panes`] for tumbling, hopping, cumulating and unbounded windows, [`Sessions`]
//! for session windows. [`WindowAggregate::advance`] closes the windows the watermark passed and
//! returns their final rows; [`WindowAggregate::snapshot`] returns the partial results of the
//! windows still open, without disturbing them.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;

use super::groups::{AggregateSpec, Inputs};
use super::panes::Panes;
use super::session::Sessions;
use super::state;
use super::window::WindowKind;
use crate::error::{Error, Result};

/// What a column of the aggregate's group-by part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum GroupColumn {
    WindowStart,
    WindowEnd,
    /// Flink's `window_time`: the last instant inside the window, `window_end` − 1 µs.
    WindowTime,
    /// The `n`th group key.
    Key(usize),
}

/// Windows as parallel arrays of start and end, one per output row.
#[derive(Debug, Default)]
pub struct WindowBounds {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
}

impl WindowBounds {
    pub fn repeat(&mut self, (start, end): (i64, i64), n: usize) {
        self.starts.extend(std::iter::repeat_n(start, n));
        self.ends.extend(std::iter::repeat_n(end, n));
    }
}

/// The shape of the operator's output: the group-by columns in the query's order, then one
/// column per aggregate (the schema of DataFusion's `Aggregate` node it replaces).
#[derive(Debug, Clone)]
pub struct Layout {
    pub columns: Vec<GroupColumn>,
    pub schema: SchemaRef,
    /// False when the query groups by window only: a constant key stands in.
    pub has_keys: bool,
}

impl Layout {
    /// Output rows from windows, key values and aggregate values of equal length.
    pub fn batch(
        &self,
        bounds: &WindowBounds,
        keys: &[ArrayRef],
        values: Vec<ArrayRef>,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (i, column) in self.columns.iter().enumerate() {
            let time = |v: &[i64]| -> ArrayRef {
                let tz = match self.schema.field(i).data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(TimestampMicrosecondArray::from(v.to_vec()).with_timezone_opt(tz))
            };
            columns.push(match column {
                GroupColumn::WindowStart => time(&bounds.starts),
                GroupColumn::WindowEnd => time(&bounds.ends),
                GroupColumn::WindowTime => {
                    time(&bounds.ends.iter().map(|e| e - 1).collect::<Vec<_>>())
                }
                GroupColumn::Key(k) => Arc::clone(&keys[*k]),
            });
        }
        columns.extend(values);
        // Aggregate outputs may differ from the planned schema only in nullability.
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| {
                f.as_ref()
                    .clone()
                    .with_nullable(f.is_nullable() || c.null_count() > 0)
            })
            .collect();
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// The state of every open window.
enum State {
    Panes(Panes),
    Sessions(Sessions),
}

/// Window aggregation over one input stream.
pub struct WindowAggregate {
    kind: WindowKind,
    /// Position of the event-time column in input batches; `None` for running totals.
    time_column: Option<usize>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Arc<[AggregateSpec]>,
    layout: Layout,
    state: State,
    /// Every window ending at or before this has been emitted (or had no rows).
    watermark: i64,
}

impl WindowAggregate {
    pub fn new(
        kind: WindowKind,
        time_column: Option<usize>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        key_schema: SchemaRef,
        aggregates: Vec<AggregateSpec>,
        layout: Layout,
    ) -> Result<Self> {
        let aggregates: Arc<[AggregateSpec]> = aggregates.into();
        let key_schema = match keys.is_empty() {
            true => Arc::new(Schema::new(vec![Field::new(
                "key",
                DataType::Boolean,
                false,
            )])),
            false => key_schema,
        };
        let state = match kind {
            WindowKind::Session { gap } => {
                State::Sessions(Sessions::new(gap, &key_schema, &aggregates)?)
            }
            _ => State::Panes(Panes::new(kind, key_schema, Arc::clone(&aggregates))),
        };
        Ok(WindowAggregate {
            kind,
            time_column,
            keys,
            aggregates,
            layout,
            state,
            watermark: i64::MIN,
        })
    }

    /// The watermark windows were last closed at.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Adds a batch of rows; returns the positions of the late rows (not added).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<Vec<u32>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let times = match self.time_column {
            Some(c) => batch
                .column(c)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .cloned()
                .ok_or_else(|| Error::Internal("event-time column is not timestamp(µs)".into()))?,
            None => TimestampMicrosecondArray::from(vec![0; batch.num_rows()]),
        };
        let times = &times;
        let inputs = Inputs::evaluate(batch, &self.keys, &self.aggregates)?;
        let late = self.late_rows(times);
        if late.len() == batch.num_rows() {
            return Ok(late);
        }
        let (inputs, times) = match late.is_empty() {
            true => (inputs, times.clone()),
            false => {
                let mut late_rows = late.iter().peekable();
                let on_time: Vec<u32> = (0..batch.num_rows() as u32)
                    .filter(|i| late_rows.next_if_eq(&i).is_none())
                    .collect();
                let indices = UInt32Array::from(on_time);
                let taken = datafusion::arrow::compute::take(times, &indices, None)?;
                (
                    inputs.take(&indices)?,
                    taken
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .cloned()
                        .ok_or_else(|| Error::Internal("event times lost their type".into()))?,
                )
            }
        };
        match &mut self.state {
            State::Panes(panes) => panes.push(&inputs, times.values())?,
            State::Sessions(sessions) => sessions.push(&inputs, times.values())?,
        }
        Ok(late)
    }

    /// Positions of the late rows, in order. A row without event time is late: it cannot be
    /// placed in any window. Rows of a batch mostly share a pane or two, so a row's pane is
    /// worked out only when it is not the previous row's.
    fn late_rows(&self, times: &TimestampMicrosecondArray) -> Vec<u32> {
        let kind = self.kind;
        let mut late = Vec::new();
        // The last pane worked out, [start, end), and whether its rows are late.
        let (mut pane, mut pane_late) = ((i64::MAX, i64::MIN), false);
        for (i, ts) in times.iter().enumerate() {
            let is_late = match ts {
                None => true,
                // A session row behind the watermark could have joined a closed session.
                Some(ts) if matches!(kind, WindowKind::Session { .. }) => ts < self.watermark,
                Some(ts) => {
                    if !(pane.0 <= ts && ts < pane.1) {
                        let start = kind.pane_start(ts);
                        pane = (start, start.saturating_add(kind.pane()));
                        pane_late = kind.first_end(start) <= self.watermark;
                    }
                    pane_late
                }
            };
            if is_late {
                late.push(i as u32);
            }
        }
        late
    }

    /// Closes every window ending at or before `watermark`; returns their final rows.
    pub fn advance(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        if watermark <= self.watermark || !self.kind.closes() {
            return Ok(Vec::new());
        }
        let closed = match &mut self.state {
            State::Panes(panes) => panes.close(self.watermark, watermark, &self.layout)?,
            State::Sessions(sessions) => sessions.close(watermark, &self.layout)?,
        };
        self.watermark = watermark;
        Ok(closed)
    }

    /// The watermark of the operator's output: no window starting before it will be emitted
    /// any more. It holds for the window end and time columns too, which are later.
    pub fn output_watermark(&self) -> Option<i64> {
        match (&self.state, self.kind) {
            (_, WindowKind::Unbounded) => None,
            _ if self.watermark == i64::MIN => None,
            (State::Sessions(sessions), _) => Some(
                sessions
                    .min_start()
                    .map_or(self.watermark, |s| s.min(self.watermark)),
            ),
            (
                State::Panes(_),
                WindowKind::Tumble { size }
                | WindowKind::Hop { size, .. }
                | WindowKind::Cumulate { size, .. },
            ) => Some(self.watermark.saturating_sub(size)),
            (State::Panes(_), WindowKind::Session { .. }) => None,
        }
    }

    /// The open state as one batch, for a checkpoint; `None` when nothing is open. The
    /// operator is not disturbed.
    pub fn checkpoint(&mut self) -> Result<Option<RecordBatch>> {
        let parts = match &mut self.state {
            State::Panes(panes) => panes.checkpoint()?,
            State::Sessions(sessions) => sessions.checkpoint(&self.layout)?,
        };
        state::encode(&parts)
    }

    /// Restores a new operator to a checkpoint: its open state and the watermark it had closed
    /// windows at.
    pub fn restore(&mut self, batch: Option<&RecordBatch>, watermark: Option<i64>) -> Result<()> {
        self.watermark = watermark.unwrap_or(i64::MIN);
        let Some(batch) = batch else { return Ok(()) };
        let decoded = state::decode(batch, self.aggregates.len())?;
        match &mut self.state {
            State::Panes(panes) => panes.restore(&decoded),
            State::Sessions(sessions) => sessions.restore(&decoded),
        }
    }

    /// Partial results of the windows still open. An aggregate without windows or GROUP BY
    /// has its one row from the start, as in Postgres (`count(*)` 0, `sum` NULL).
    pub fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let rows = match &mut self.state {
            State::Panes(panes) => panes.snapshot(self.watermark, &self.layout)?,
            State::Sessions(sessions) => sessions.snapshot(&self.layout)?,
        };
        let global = self.kind == WindowKind::Unbounded && self.keys.is_empty();
        if !global || rows.iter().any(|b| b.num_rows() > 0) {
            return Ok(rows);
        }
        let columns = self
            .aggregates
            .iter()
            .map(|a| a.expr.create_accumulator()?.evaluate()?.to_array())
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(vec![RecordBatch::try_new(
            Arc::clone(&self.layout.schema),
            columns,
        )?])
    }

    /// Groups held open, over all windows.
    pub fn open_groups(&self) -> usize {
        match &self.state {
            State::Panes(panes) => panes.groups(),
            State::Sessions(sessions) => sessions.groups(),
        }
    }

    /// Bytes of open state, as DataFusion's structures report them.
    pub fn state_bytes(&self) -> usize {
        match &self.state {
            State::Panes(panes) => panes.size(),
            State::Sessions(sessions) => sessions.size(),
        }
    }
}

#[cfg(test)]
mod tests;
