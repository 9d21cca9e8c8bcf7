//! `connector = 'datagen'`: a seeded generator of rows, for demos, tests and benchmarks.
//!
//! Rows are made in blocks; every block of every column draws from its own ChaCha stream seeded
//! by (seed, block, column), so row `n` is the same on every machine and after every restart,
//! and a source resumed at offset `n` continues the exact sequence. Columns are built as Arrow
//! arrays directly (no JSON), then cast to the declared type.
//!
//! Per-column options, `fields.<column>.<option>`:
//! - `kind = 'sequence'`, `start` (default 1), `end` (the source ends after it);
//! - `kind = 'random'` (the default), `min`/`max` for numbers, `length` for text and bytea,
//!   `max_past` for timestamps (before the source's creation);
//! - `values = 'a,b,c'`: one of the listed values, uniformly;
//! - `kind = 'event_time'` (the default for the watermark column): starts at `start` (default
//!   the source's creation time) and advances by `step` per row (default 1 s / rows.per.second,
//!   or 1 ms), each row shifted back by up to `max_out_of_orderness`.
//!
//! Source options: `rows.per.second` (default unthrottled), `datagen.rows` (default unbounded),
//! `datagen.seed` (default 0).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use rand::distr::Alphanumeric;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;

use super::options::{parse_duration, parse_number};
use super::{Chunk, Event};
use crate::catalog::source::SourceDef;
use crate::error::{Error, Result};

/// Largest number of rows made at once.
const BLOCK_ROWS_MAX: u64 = 8_192;

#[derive(Debug, Clone)]
pub struct DatagenSettings {
    pub rows_per_second: Option<u64>,
    /// Stop after this many rows.
    pub rows: Option<u64>,
    pub seed: u64,
    fields: Vec<FieldGen>,
    schema: SchemaRef,
}

#[derive(Debug, Clone)]
enum FieldGen {
    Sequence {
        start: i64,
    },
    RandomNumber {
        min: f64,
        max: f64,
        integer: bool,
    },
    RandomText {
        length: usize,
    },
    RandomBool,
    RandomTimestamp {
        end_us: i64,
        max_past_us: i64,
    },
    OneOf(ArrayRef),
    EventTime {
        start_us: i64,
        step_us: i64,
        max_out_of_orderness_us: i64,
    },
}

impl DatagenSettings {
    pub fn from_options(def: &SourceDef, options: &BTreeMap<String, String>) -> Result<Self> {
        let rows_per_second: Option<u64> = options
            .get("rows.per.second")
            .map(|v| parse_number("rows.per.second", v))
            .transpose()?
            .filter(|r| *r > 0);
        let mut rows: Option<u64> = options
            .get("datagen.rows")
            .map(|v| parse_number("datagen.rows", v))
            .transpose()?;
        let seed = options
            .get("datagen.seed")
            .map(|v| parse_number("datagen.seed", v))
            .transpose()?
            .unwrap_or(0);
        for key in options.keys().filter_map(|k| k.strip_prefix("fields.")) {
            let column = key.rsplit_once('.').map_or(key, |(c, _)| c);
            if !def.columns.iter().any(|c| c.name == column) {
                return Err(Error::UndefinedColumn {
                    name: column.to_string(),
                });
            }
        }
        let mut fields = Vec::with_capacity(def.columns.len());
        for column in &def.columns {
            let option = |name: &str| options.get(&format!("fields.{}.{name}", column.name));
            let key = |name: &str| format!("fields.{}.{name}", column.name);
            let data_type = &column.column_type.arrow;
            let is_event_time = def
                .watermark
                .as_ref()
                .is_some_and(|w| w.column == column.name);
            let kind = match (option("kind").map(String::as_str), option("values")) {
                (_, Some(_)) => "values",
                (Some(kind), None) => kind,
                (None, None) if is_event_time => "event_time",
                (None, None) => "random",
            };
            let number = |name: &str, default: f64| -> Result<f64> {
                option(name).map_or(Ok(default), |v| {
                    v.trim().parse().map_err(|_| {
                        Error::InvalidParameter(format!(
                            "invalid value \"{v}\" for option \"{}\": expected a number",
                            key(name)
                        ))
                    })
                })
            };
            let field = match (kind, data_type) {
                ("sequence", t)
                    if t.is_integer()
                        || t.is_floating()
                        || t.is_numeric()
                        || *t == DataType::Utf8 =>
                {
                    let start = number("start", 1.0)? as i64;
                    if let Some(end) = option("end") {
                        let end: i64 = parse_number(&key("end"), end)?;
                        let count = u64::try_from(end - start + 1).unwrap_or(0);
                        rows = Some(rows.map_or(count, |r| r.min(count)));
                    }
                    FieldGen::Sequence { start }
                }
                ("random", t) if t.is_integer() || t.is_floating() || t.is_numeric() => {
                    let (min, max) = (number("min", 0.0)?, number("max", 100.0)?);
                    if min > max {
                        return Err(Error::InvalidParameter(format!(
                            "\"{}\" is greater than \"{}\"",
                            key("min"),
                            key("max")
                        )));
                    }
                    FieldGen::RandomNumber {
                        min,
                        max,
                        integer: t.is_integer(),
                    }
                }
                ("random", DataType::Utf8 | DataType::Binary) => FieldGen::RandomText {
                    length: number("length", 10.0)?.clamp(0.0, 65_536.0) as usize,
                },
                ("random", DataType::Boolean) => FieldGen::RandomBool,
                ("random", DataType::Timestamp(..) | DataType::Date32) => {
                    let max_past = option("max_past")
                        .map(|v| parse_duration(&key("max_past"), v))
                        .transpose()?
                        .unwrap_or(Duration::from_secs(86_400));
                    FieldGen::RandomTimestamp {
                        end_us: def.created_at_ms * 1_000,
                        max_past_us: max_past.as_micros() as i64,
                    }
                }
                ("values", _) => {
                    let list = option("values").map(String::as_str).unwrap_or_default();
                    let values: Vec<&str> = list.split(',').map(str::trim).collect();
                    let text: ArrayRef = Arc::new(StringArray::from(values));
                    let typed = cast(&text, data_type).ok().filter(|a| a.null_count() == 0);
                    FieldGen::OneOf(typed.ok_or_else(|| {
                        Error::InvalidParameter(format!(
                            "option \"{}\": \"{list}\" is not a list of {} values",
                            key("values"),
                            column.column_type.pg_name
                        ))
                    })?)
                }
                ("event_time", DataType::Timestamp(..)) => {
                    let start_us = match option("start") {
                        Some(v) => super::decode::parse_timestamp_micros(v).map_err(|e| {
                            Error::InvalidParameter(format!("option \"{}\": {e}", key("start")))
                        })?,
                        None => def.created_at_ms * 1_000,
                    };
                    let default_step = rows_per_second.map_or(1_000, |r| (1_000_000 / r).max(1));
                    let step_us = option("step")
                        .map(|v| parse_duration(&key("step"), v))
                        .transpose()?
                        .map_or(default_step as i64, |d| d.as_micros() as i64);
                    let max_out_of_orderness_us = option("max_out_of_orderness")
                        .map(|v| parse_duration(&key("max_out_of_orderness"), v))
                        .transpose()?
                        .map_or(0, |d| d.as_micros() as i64);
                    FieldGen::EventTime {
                        start_us,
                        step_us,
                        max_out_of_orderness_us,
                    }
                }
                (kind, _) => {
                    return Err(Error::InvalidParameter(format!(
                        "datagen kind '{kind}' cannot fill column \"{}\" of type {}",
                        column.name, column.column_type.pg_name
                    )));
                }
            };
            fields.push(field);
        }
        Ok(DatagenSettings {
            rows_per_second,
            rows,
            seed,
            fields,
            schema: def.schema(),
        })
    }

    /// Rows per block: small enough that a throttled source emits several blocks a second.
    pub fn block_rows(&self) -> u64 {
        self.rows_per_second
            .map_or(BLOCK_ROWS_MAX, |r| (r / 10).clamp(1, BLOCK_ROWS_MAX))
    }

    /// Rows `[from, to)` of the sequence; `to - from` is at most one block and the range does
    /// not cross a block boundary.
    pub fn rows_range(&self, from: u64, to: u64) -> Result<RecordBatch> {
        let block_rows = self.block_rows();
        let block = from / block_rows;
        let skip = from - block * block_rows;
        let count = (to - from) as usize;
        let mut columns = Vec::with_capacity(self.fields.len());
        for (c, (field, target)) in self.fields.iter().zip(self.schema.fields()).enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(block.wrapping_mul(0xBF58_476D_1CE4_E5B9))
                    .wrapping_add(c as u64),
            );
            let made = generate(field, &mut rng, block * block_rows, skip as usize + count);
            let made = made.slice(skip as usize, count);
            columns.push(cast(&made, target.data_type())?);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// Generates rows from `start` on, at `rows_per_second` if set, until `rows` or `stop`.
pub async fn run(
    settings: DatagenSettings,
    start: u64,
    events: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
) {
    let assigned = Event::Assigned {
        partition: 0,
        start: Some(start as i64),
    };
    if events.send(assigned).await.is_err() {
        return;
    }
    let block_rows = settings.block_rows();
    let started = tokio::time::Instant::now();
    let mut next = start;
    while !stop.load(Ordering::Relaxed) {
        let end = settings.rows.unwrap_or(u64::MAX);
        if next >= end {
            let _ = events.send(Event::Finished).await;
            return;
        }
        let to = ((next / block_rows + 1) * block_rows).min(end);
        if let Some(rate) = settings.rows_per_second {
            let due = Duration::from_secs_f64((next - start) as f64 / rate as f64);
            tokio::time::sleep_until(started + due).await;
        }
        let event = match settings.rows_range(next, to) {
            Ok(batch) => Event::Chunk(Chunk {
                partition: 0,
                bytes: batch.get_array_memory_size() as u64,
                batch,
                rejected: Vec::new(),
                next_offset: to as i64,
                row_offsets: None,
                records: to - next,
            }),
            Err(e) => {
                let _ = events.send(Event::Failed(format!("datagen: {e}"))).await;
                return;
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
        next = to;
    }
}

/// `len` values of one column for rows `first..first + len`.
fn generate(field: &FieldGen, rng: &mut ChaCha8Rng, first: u64, len: usize) -> ArrayRef {
    let rows = (first..first + len as u64).map(|r| r as i64);
    match field {
        FieldGen::Sequence { start } => {
            Arc::new(Int64Array::from_iter_values(rows.map(|r| start + r)))
        }
        FieldGen::RandomNumber { min, max, integer } => {
            if *integer {
                let (min, max) = (*min as i64, *max as i64);
                Arc::new(Int64Array::from_iter_values(
                    (0..len).map(|_| rng.random_range(min..=max)),
                ))
            } else {
                Arc::new(Float64Array::from_iter_values((0..len).map(|_| {
                    let x: f64 = rng.random();
                    min + x * (max - min)
                })))
            }
        }
        FieldGen::RandomText { length } => {
            let values: Vec<String> = (0..len)
                .map(|_| {
                    (&mut *rng)
                        .sample_iter(&Alphanumeric)
                        .take(*length)
                        .map(char::from)
                        .collect()
                })
                .collect();
            Arc::new(StringArray::from(values))
        }
        FieldGen::RandomBool => Arc::new(BooleanArray::from_iter(
            (0..len).map(|_| Some(rng.random_bool(0.5))),
        )),
        FieldGen::RandomTimestamp {
            end_us,
            max_past_us,
        } => Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                (0..len).map(|_| end_us - rng.random_range(0..=*max_past_us)),
            )
            .with_timezone("+00:00"),
        ),
        FieldGen::OneOf(values) => {
            let picks = datafusion::arrow::array::UInt32Array::from_iter_values(
                (0..len).map(|_| rng.random_range(0..values.len() as u32)),
            );
            datafusion::arrow::compute::take(values.as_ref(), &picks, None)
                .unwrap_or_else(|_| values.slice(0, 0))
        }
        FieldGen::EventTime {
            start_us,
            step_us,
            max_out_of_orderness_us,
        } => Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.map(|r| {
                let jitter = match *max_out_of_orderness_us {
                    0 => 0,
                    m => rng.random_range(0..=m),
                };
                start_us + r * step_us - jitter
            }))
            .with_timezone("+00:00"),
        ),
    }
}
