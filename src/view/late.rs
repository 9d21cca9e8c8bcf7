//! Late rows: rows that reached a view after their window had closed. They are not added to
//! any window (closed windows are final) but kept, whole, in `sluice_catalog.late_rows`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::LineDelimitedWriter;

use crate::error::Result;

/// A late row as `sluice_catalog.late_rows` shows it.
#[derive(Debug, Clone)]
pub struct LateRow {
    pub view: String,
    pub input: String,
    pub row_json: String,
    pub event_time_us: Option<i64>,
    pub watermark_us: i64,
    pub received_at_us: i64,
}

/// The rows at `indices` of `batch` as late rows, each row as one JSON object.
pub fn late_rows(
    view: &str,
    input: &str,
    batch: &RecordBatch,
    indices: &[u32],
    time_column: Option<usize>,
    watermark_us: i64,
) -> Result<Vec<LateRow>> {
    let taken = take_record_batch(batch, &UInt32Array::from(indices.to_vec()))?;
    let mut writer = LineDelimitedWriter::new(Vec::new());
    writer.write(&taken)?;
    writer.finish()?;
    let text = String::from_utf8_lossy(&writer.into_inner()).into_owned();
    let times = time_column.and_then(|c| {
        taken
            .column(c)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .cloned()
    });
    let received_at_us = chrono::Utc::now().timestamp_micros();
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, line)| LateRow {
            view: view.to_string(),
            input: input.to_string(),
            row_json: line.to_string(),
            event_time_us: times
                .as_ref()
                .and_then(|t| (!t.is_null(i)).then(|| t.value(i))),
            watermark_us,
            received_at_us,
        })
        .collect())
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

/// The schema of `sluice_catalog.late_rows`.
pub fn late_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("view", DataType::Utf8, false),
        Field::new("input", DataType::Utf8, false),
        Field::new("row", DataType::Utf8, false),
        Field::new("event_time", timestamp(), true),
        Field::new("watermark", timestamp(), false),
        Field::new("received_at", timestamp(), false),
    ]))
}

pub fn late_batch(rows: &[LateRow]) -> Result<RecordBatch> {
    let time = |values: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(values).with_timezone("+00:00"))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.view))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.input))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.row_json),
        )),
        time(rows.iter().map(|r| r.event_time_us).collect()),
        time(rows.iter().map(|r| Some(r.watermark_us)).collect()),
        time(rows.iter().map(|r| Some(r.received_at_us)).collect()),
    ];
    Ok(RecordBatch::try_new(late_schema(), columns)?)
}
