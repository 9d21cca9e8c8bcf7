//! Window assignment as a step: each row repeated once per window holding its event time, with
//! `window_start`, `window_end` and `window_time` appended — the rows a window table function
//! gives a batch query.
//!
//! The window operator ([`super::aggregate`]) assigns panes itself and closes them with the
//! watermark; over rows that change, a view groups the assigned rows by their window instead
//! (a retracting aggregation keyed on the window), so an update that moves a row's time takes
//! it out of one window and into another.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;

use super::changes::Changes;
use super::window::WindowKind;
use crate::error::{Error, Result};

/// Where a batch's rows fall: `kind`'s windows over the event time in column `time_column`.
#[derive(Debug, Clone)]
pub struct AssignWindows {
    pub kind: WindowKind,
    pub time_column: usize,
    /// The input's columns, then `window_start`, `window_end`, `window_time`.
    pub schema: SchemaRef,
}

impl AssignWindows {
    /// Each row once per window holding it (none for a NULL time), with the window's bounds.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        Ok(self.assign(batch)?.0)
    }

    /// The same over a changelog: a row's op goes with each of its copies.
    pub fn apply_changes(&self, changes: &Changes) -> Result<Changes> {
        let (rows, indices) = self.assign(&changes.rows)?;
        let inserts = take(&changes.inserts, &indices, None)?;
        let inserts = inserts
            .as_any()
            .downcast_ref::<datafusion::arrow::array::BooleanArray>()
            .cloned()
            .ok_or_else(|| Error::Internal("changelog ops are not boolean".into()))?;
        Ok(Changes { rows, inserts })
    }

    fn assign(&self, batch: &RecordBatch) -> Result<(RecordBatch, UInt32Array)> {
        let times = batch
            .column(self.time_column)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| Error::Internal("a window's time column is not a timestamp".into()))?;
        let (mut indices, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let pane = self.kind.pane_start(times.value(row));
            for (start, end) in self.kind.windows_of_pane(pane) {
                indices.push(row as u32);
                starts.push(start);
                ends.push(end);
            }
        }
        let indices = UInt32Array::from(indices);
        let mut columns = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
        let timezone = times.timezone().map(Arc::<str>::from);
        let bound = |values: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone_opt(timezone.clone()))
        };
        let window_time: Vec<i64> = ends.iter().map(|e| e - 1).collect();
        columns.extend([bound(starts), bound(ends), bound(window_time)]);
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        Ok((batch, indices))
    }
}
