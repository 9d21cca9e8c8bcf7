//! Late rows of windows: which rows of a batch are late (behind the first window of their pane
//! that the watermark closed) and what closed windows count, against a model, for tumbling and
//! hopping windows, with batches spanning many panes and rows without event time.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::col;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const S: i64 = 1_000_000;

/// `SELECT window_start, window_end, count(v) FROM <kind>(t, ts) GROUP BY window_start,
/// window_end` over rows `(ts, v)`.
fn count_per_window(kind: WindowKind) -> WindowAggregate {
    let input = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("v", DataType::Int64, false),
    ]));
    let count = AggregateSpec {
        expr: Arc::new(
            AggregateExprBuilder::new(count_udaf(), vec![col("v", &input).unwrap()])
                .schema(Arc::clone(&input))
                .alias("n")
                .build()
                .unwrap(),
        ),
        filter: None,
    };
    let time = DataType::Timestamp(TimeUnit::Microsecond, None);
    let layout = Layout {
        columns: vec![GroupColumn::WindowStart, GroupColumn::WindowEnd],
        schema: Arc::new(Schema::new(vec![
            Field::new("window_start", time.clone(), false),
            Field::new("window_end", time, false),
            Field::new("n", DataType::Int64, false),
        ])),
        has_keys: false,
    };
    let no_keys = Arc::new(Schema::empty());
    WindowAggregate::new(kind, Some(0), Vec::new(), no_keys, vec![count], layout).unwrap()
}

/// Adds the counts of closed windows to `emitted`, by window.
fn tally(closed: &RecordBatch, emitted: &mut BTreeMap<(i64, i64), i64>) {
    let starts = closed.column(0).as_primitive::<TimestampMicrosecondType>();
    let ends = closed.column(1).as_primitive::<TimestampMicrosecondType>();
    let counts = closed.column(2).as_primitive::<Int64Type>();
    for r in 0..closed.num_rows() {
        *emitted.entry((starts.value(r), ends.value(r))).or_default() += counts.value(r);
    }
}

#[test]
fn late_rows_and_window_counts_follow_the_model() {
    // (kind, window size, slide): a row is late once the first window holding it is closed,
    // the one ending at the end of its slide.
    for (kind, size, slide) in [
        (WindowKind::Tumble { size: 10 * S }, 10 * S, 10 * S),
        (
            WindowKind::Hop {
                slide: 10 * S,
                size: 30 * S,
            },
            30 * S,
            10 * S,
        ),
    ] {
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut operator = count_per_window(kind);
            let mut watermark = i64::MIN;
            let mut expected: BTreeMap<(i64, i64), i64> = BTreeMap::new();
            let mut emitted: BTreeMap<(i64, i64), i64> = BTreeMap::new();
            for round in 0..30i64 {
                // In half seconds: batches over 40 s, or over 10 s from a whole second, which
                // may start and end exactly on pane bounds.
                let (from, span) = match rng.random_bool(0.5) {
                    true => (round * 5 - 60, 80),
                    false => (2 * (round * 2 - 30 + rng.random_range(0..20)), 20),
                };
                let times: Vec<Option<i64>> = (0..rng.random_range(1..300))
                    .map(|_| {
                        rng.random_bool(0.97)
                            .then(|| (from + rng.random_range(0..=span)) * S / 2)
                    })
                    .collect();
                let batch = RecordBatch::try_new(
                    Arc::new(Schema::new(vec![
                        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                        Field::new("v", DataType::Int64, false),
                    ])),
                    vec![
                        Arc::new(TimestampMicrosecondArray::from(times.clone())),
                        Arc::new(Int64Array::from(vec![1; times.len()])),
                    ],
                )
                .unwrap();
                let model_late: Vec<u32> = times
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| {
                        t.is_none_or(|t| t.div_euclid(slide) * slide + slide <= watermark)
                    })
                    .map(|(i, _)| i as u32)
                    .collect();
                assert_eq!(
                    operator.push(&batch).unwrap(),
                    model_late,
                    "seed {seed} round {round}"
                );
                for (i, t) in times.iter().enumerate() {
                    let Some(t) = t.filter(|_| model_late.binary_search(&(i as u32)).is_err())
                    else {
                        continue;
                    };
                    let mut start = t.div_euclid(slide) * slide;
                    while start > t - size {
                        *expected.entry((start, start + size)).or_default() += 1;
                        start -= slide;
                    }
                }
                watermark = watermark.max((round * 5 - 30) * S / 2);
                for closed in operator.advance(watermark).unwrap() {
                    tally(&closed, &mut emitted);
                    let ends = closed.column(1).as_primitive::<TimestampMicrosecondType>();
                    assert!(ends.values().iter().all(|&end| end <= watermark));
                }
            }
            for closed in operator.advance(i64::MAX).unwrap() {
                tally(&closed, &mut emitted);
            }
            assert_eq!(emitted, expected, "{kind} seed {seed}");
        }
    }
}
