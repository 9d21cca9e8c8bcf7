//! Deduplication by key (`dedup.key`, `dedup.ttl`), for producers that retry.
//!
//! A row whose key was seen within the TTL is dropped and counted. Time is event time when
//! the source has a watermark column (so a replay after a crash decides exactly as the first
//! run did), else the time the row arrived. A key is forgotten once the newest time seen is a
//! TTL past it. The keys are checkpointed with the source's offsets, so a crash lets no
//! duplicate through and drops no first occurrence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    Array, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Error, Result};

/// `dedup.key` and `dedup.ttl` of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupSettings {
    pub key: String,
    pub ttl: Duration,
}

/// Forgetting expired keys is amortised: it runs after this many new keys.
const EXPIRE_EVERY: usize = 65_536;

/// The keys seen within the TTL and when.
#[derive(Debug)]
pub struct Deduplicator {
    column: usize,
    time_column: Option<usize>,
    ttl_us: i64,
    seen: HashMap<String, i64>,
    /// Bytes of the keys' text in `seen`.
    key_bytes: usize,
    newest: i64,
    added_since_expiry: usize,
}

impl Deduplicator {
    pub fn new(column: usize, time_column: Option<usize>, ttl: Duration) -> Self {
        Deduplicator {
            column,
            time_column,
            ttl_us: i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX),
            seen: HashMap::new(),
            key_bytes: 0,
            newest: i64::MIN,
            added_since_expiry: 0,
        }
    }

    /// The rows of `batch` that are not repeats, and how many were dropped. Rows with a NULL
    /// key are kept: they identify nothing.
    pub fn filter(&mut self, batch: &RecordBatch) -> Result<(RecordBatch, usize)> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok((batch.clone(), 0));
        }
        let keys = cast(batch.column(self.column), &DataType::Utf8)?;
        let keys = keys
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Internal("dedup key did not cast to text".into()))?;
        let now = chrono::Utc::now().timestamp_micros();
        let times = self.time_column.and_then(|c| {
            batch
                .column(c)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .cloned()
        });
        let mut keep = Vec::with_capacity(rows);
        let mut dropped = 0;
        for i in 0..rows {
            let time = match &times {
                Some(t) if t.is_valid(i) => t.value(i),
                _ => now,
            };
            self.newest = self.newest.max(time);
            if !keys.is_valid(i) {
                keep.push(true);
                continue;
            }
            let key = keys.value(i);
            let repeat = self
                .seen
                .get(key)
                .is_some_and(|&first| time.abs_diff(first) < self.ttl_us as u64);
            if repeat {
                dropped += 1;
                keep.push(false);
            } else {
                self.remember(key, time);
                self.added_since_expiry += 1;
                keep.push(true);
            }
        }
        if self.added_since_expiry >= EXPIRE_EVERY {
            self.expire();
        }
        if dropped == 0 {
            return Ok((batch.clone(), 0));
        }
        let kept = filter_record_batch(batch, &BooleanArray::from(keep))?;
        Ok((kept, dropped))
    }

    fn remember(&mut self, key: &str, time: i64) {
        if self.seen.insert(key.to_string(), time).is_none() {
            self.key_bytes += key.len();
        }
    }

    fn expire(&mut self) {
        let horizon = self.newest.saturating_sub(self.ttl_us);
        let mut forgotten = 0;
        self.seen.retain(|key, &mut time| {
            let keep = time >= horizon;
            if !keep {
                forgotten += key.len();
            }
            keep
        });
        self.key_bytes -= forgotten;
        self.added_since_expiry = 0;
    }

    /// Bytes the keys hold: the table's slots and the keys' text.
    pub fn size(&self) -> usize {
        let slot = std::mem::size_of::<(String, i64)>() + 1;
        self.seen.capacity() * slot + self.key_bytes
    }

    /// The keys as a batch `(key, time)`, for a checkpoint.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("time", DataType::Int64, false),
        ]));
        let keys = StringArray::from_iter_values(self.seen.keys());
        let times = Int64Array::from_iter_values(self.seen.values().copied());
        Ok(RecordBatch::try_new(
            schema,
            vec![Arc::new(keys), Arc::new(times)],
        )?)
    }

    /// Takes back the keys of a checkpoint.
    pub fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        let invalid =
            || Error::Internal("deduplication state is not (key text, time int64)".into());
        let keys = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(invalid)?;
        let times = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(invalid)?;
        for (key, time) in keys.iter().zip(times.values()) {
            if let Some(key) = key {
                self.remember(key, *time);
                self.newest = self.newest.max(*time);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::ArrayRef;

    fn batch(ids: &[&str], times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
                false,
            ),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids.to_vec())),
            Arc::new(TimestampMicrosecondArray::from(times.to_vec())),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn drops_repeats_within_the_ttl_and_survives_a_checkpoint() {
        let hour = 3_600_000_000;
        let mut d = Deduplicator::new(0, Some(1), Duration::from_secs(3600));
        let (kept, dropped) = d.filter(&batch(&["a", "b", "a"], &[0, 1, 2])).unwrap();
        assert_eq!((kept.num_rows(), dropped), (2, 1));
        assert!(d.size() >= 2);
        let mut restored = Deduplicator::new(0, Some(1), Duration::from_secs(3600));
        restored.restore(&d.to_batch().unwrap()).unwrap();
        // "b" again within the hour is a repeat; "a" two hours later is new.
        let (kept, dropped) = restored
            .filter(&batch(&["b", "a", "c"], &[10, 2 * hour, 3]))
            .unwrap();
        assert_eq!((kept.num_rows(), dropped), (2, 1));
    }
}
