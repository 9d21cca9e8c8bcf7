//! Checkpoint and restore at random points equals straight through, for the operators over
//! changelogs: the retracting aggregation (open, and closing with a watermark; every kind of
//! state it keeps) and Top-N.
//!
//! Two copies of an operator take the same random inserts and deletes (of rows present, some
//! of them repeated) in random batches; one runs straight through, the other is checkpointed
//! and restored into a new operator at random points. After every batch both must report the
//! same late rows, close the same windows with the same rows, and show the same snapshot.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::bool_and_or::bool_and_udaf;
use datafusion::functions_aggregate::correlation::corr_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::covariance::covar_pop_udaf;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::stddev::stddev_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::{AggregateUDF, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{binary, col, lit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::changes::Changes;
use super::groups::AggregateSpec;
use super::operator::ViewOperator;
use super::retracting::RetractingAggregate;
use super::top_n::{Rank, TopN, top_by_v_per_k};

/// Rows `(k, v, window_end)`.
fn input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new(
            "window_end",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]))
}

/// `SELECT k[, window_end], count(v), sum(v), min(v), max(v), count(DISTINCT v), avg(v),
/// stddev(v), covar_pop(v, v % 7), corr(v, v % 7), bool_and(v > 0) … GROUP BY k[, window_end]`,
/// closing on `window_end` when `closing`.
fn aggregation(closing: bool) -> ViewOperator {
    let input = input();
    let v = col("v", &input).unwrap();
    let v7 = binary(Arc::clone(&v), Operator::Modulo, lit(7i64), &input).unwrap();
    let positive = binary(Arc::clone(&v), Operator::Gt, lit(0i64), &input).unwrap();
    let spec =
        |udaf: Arc<AggregateUDF>, args: Vec<Arc<dyn PhysicalExpr>>, name: &str| AggregateSpec {
            expr: Arc::new(
                AggregateExprBuilder::new(udaf, args)
                    .schema(Arc::clone(&input))
                    .alias(name)
                    .build()
                    .unwrap(),
            ),
            filter: None,
        };
    let distinct_values = AggregateSpec {
        expr: Arc::new(
            AggregateExprBuilder::new(count_udaf(), vec![Arc::clone(&v)])
                .schema(Arc::clone(&input))
                .alias("values")
                .distinct()
                .build()
                .unwrap(),
        ),
        filter: None,
    };
    let one = || vec![Arc::clone(&v)];
    let pair = || vec![Arc::clone(&v), Arc::clone(&v7)];
    let specs = vec![
        spec(count_udaf(), one(), "n"),
        spec(sum_udaf(), one(), "total"),
        spec(min_udaf(), one(), "least"),
        spec(max_udaf(), one(), "most"),
        distinct_values,
        spec(avg_udaf(), one(), "mean"),
        spec(stddev_udaf(), one(), "sd"),
        spec(covar_pop_udaf(), pair(), "cv"),
        spec(corr_udaf(), pair(), "r"),
        spec(bool_and_udaf(), vec![Arc::clone(&positive)], "all_up"),
    ];
    let mut keys = vec![col("k", &input).unwrap()];
    let mut fields = vec![input.field(0).clone()];
    if closing {
        keys.push(col("window_end", &input).unwrap());
        fields.push(input.field(2).clone());
    }
    fields.extend(
        specs
            .iter()
            .map(|s| s.expr.field().as_ref().clone().with_nullable(true)),
    );
    let groups =
        RetractingAggregate::try_new(keys, specs, &input, Arc::new(Schema::new(fields)), false)
            .unwrap();
    ViewOperator::Retracting(match closing {
        true => groups.closing(2, 10),
        false => groups,
    })
}

/// The top 3 rows by `v` per `k`, over changing rows.
fn top_n(rank: Rank) -> ViewOperator {
    ViewOperator::TopN(TopN::try_new(top_by_v_per_k(input(), rank, 3, true)).unwrap())
}

/// Batches as sorted lines, so that row order does not count.
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let text = pretty_format_batches(batches).unwrap().to_string();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

fn changes(rows: &[(String, i64, i64, bool)]) -> Changes {
    Changes {
        rows: RecordBatch::try_new(
            input(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
            ],
        )
        .unwrap(),
        inserts: rows.iter().map(|r| Some(r.3)).collect(),
    }
}

/// Runs `make()`'s operator straight through and through restores, `seed`'s way.
fn straight_through_equals_restored(make: impl Fn() -> ViewOperator, seed: u64, closes: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut straight, mut restored) = (make(), make());
    let mut present: Vec<(String, i64, i64)> = Vec::new();
    let (mut restores, mut closed, mut late, mut watermark) = (0, 0, 0, 0i64);
    for step in 0..300 {
        let batch: Vec<(String, i64, i64, bool)> = (0..rng.random_range(1..10))
            .map(|_| match present.is_empty() || rng.random_bool(0.6) {
                true => {
                    let row = (
                        format!("k{}", rng.random_range(0..5)),
                        rng.random_range(-20..20i64),
                        watermark + rng.random_range(-20..60i64),
                    );
                    present.push(row.clone());
                    (row.0, row.1, row.2, true)
                }
                false => {
                    let row = present.swap_remove(rng.random_range(0..present.len()));
                    (row.0, row.1, row.2, false)
                }
            })
            .collect();
        let batch = changes(&batch);
        let late_straight = straight.push_changes(&batch).unwrap();
        assert_eq!(
            late_straight,
            restored.push_changes(&batch).unwrap(),
            "step {step}"
        );
        late += late_straight.len();
        if closes && rng.random_bool(0.3) {
            watermark += rng.random_range(0..30);
            let out = lines(&straight.advance(watermark).unwrap());
            assert_eq!(
                out,
                lines(&restored.advance(watermark).unwrap()),
                "step {step}"
            );
            closed += out.len();
        }
        if rng.random_bool(0.2) {
            let state = restored.checkpoint().unwrap();
            let at = restored.watermark();
            restored = make();
            restored
                .restore(state.as_ref(), (at != i64::MIN).then_some(at))
                .unwrap();
            restores += 1;
        }
        assert_eq!(
            lines(&straight.snapshot().unwrap()),
            lines(&restored.snapshot().unwrap()),
            "step {step}"
        );
        assert_eq!(
            straight.state_bytes(),
            restored.state_bytes(),
            "step {step}"
        );
    }
    assert!(restores > 30, "{restores} restores");
    if closes {
        assert!(closed > 30 && late > 30, "{closed} closed, {late} late");
    }
}

#[test]
fn a_retracting_aggregation_restored_at_random_points_equals_straight_through() {
    for seed in 0..4 {
        straight_through_equals_restored(|| aggregation(false), seed, false);
    }
}

#[test]
fn closing_windows_restored_at_random_points_equal_straight_through() {
    for seed in 0..4 {
        straight_through_equals_restored(|| aggregation(true), seed, true);
    }
}

#[test]
fn top_n_restored_at_random_points_equals_straight_through() {
    for (seed, rank) in [(0, Rank::RowNumber), (1, Rank::Rank), (2, Rank::DenseRank)] {
        straight_through_equals_restored(|| top_n(rank), seed, false);
    }
}
