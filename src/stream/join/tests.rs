//! The join operator against batch joins of the same rows.

use std::collections::BTreeMap;

use datafusion::arrow::array::{AsArray, Int64Array, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Int64Type, TimeUnit};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::scalar::ScalarValue;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

type Row = (Option<i64>, i64);
/// A joined row: the left's key and value, then the right's (none for semi and anti joins).
type JoinedRow = Vec<Option<i64>>;

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
        interval: None,
        idle_ttl_us: None,
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
) -> BTreeMap<JoinedRow, i64> {
    let matches = |l: &Row, r: &Row| l.0.is_some() && l.0 == r.0 && (!filtered || l.1 < r.1 + 3);
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

fn fold(result: &mut BTreeMap<JoinedRow, i64>, changes: &Changes) {
    let value = |c: usize, row: usize| {
        let column = cast(changes.rows.column(c), &DataType::Int64).unwrap();
        let column = column.as_primitive::<Int64Type>();
        column.is_valid(row).then(|| column.value(row))
    };
    for row in 0..changes.num_rows() {
        let joined: JoinedRow = (0..changes.rows.num_columns())
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
            fold(&mut result, &out.changes);
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

fn timed_schema(key: &str, time: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(key, DataType::Int64, true),
        Field::new(time, DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}

/// `lo <= t - rt <= hi` over the joined columns `k, t, rk, rt`, as the planner leaves the
/// bounds in the condition.
fn bounds(lo: i64, hi: i64) -> Arc<dyn PhysicalExpr> {
    let int = |name: &str, index: usize| -> Arc<dyn PhysicalExpr> {
        Arc::new(datafusion::physical_expr::expressions::CastExpr::new(
            column(name, index),
            DataType::Int64,
            None,
        ))
    };
    let literal =
        |v: i64| -> Arc<dyn PhysicalExpr> { Arc::new(Literal::new(ScalarValue::Int64(Some(v)))) };
    let difference: Arc<dyn PhysicalExpr> =
        Arc::new(BinaryExpr::new(int("t", 1), Operator::Minus, int("rt", 3)));
    let above = Arc::new(BinaryExpr::new(
        Arc::clone(&difference),
        Operator::GtEq,
        literal(lo),
    ));
    let below = Arc::new(BinaryExpr::new(difference, Operator::LtEq, literal(hi)));
    Arc::new(BinaryExpr::new(above, Operator::And, below))
}

/// Random out-of-order rows on both sides of an interval join (`-3 <= l.t - r.t <= 5`),
/// each side's watermark 4 behind its largest time: the rows handed on add up to the batch
/// join of the rows that were not behind their side's watermark when they came, rows
/// behind it come back as late, and the state holds only rows the watermarks still let
/// match.
#[test]
fn an_interval_join_forgets_what_can_no_longer_match_and_misses_nothing() {
    let (lo, hi, delay) = (-3i64, 5i64, 4i64);
    let (left, right) = (timed_schema("k", "t"), timed_schema("rk", "rt"));
    let fields: Vec<Field> = left
        .fields()
        .iter()
        .chain(right.fields().iter())
        .map(|f| f.as_ref().clone())
        .collect();
    let spec = JoinSpec {
        kind: JoinKind::Inner,
        sides: [
            JoinSide {
                input: JoinInput::Branch(0),
                keys: vec![column("k", 0)],
                schema: Arc::clone(&left),
            },
            JoinSide {
                input: JoinInput::Branch(1),
                keys: vec![column("rk", 0)],
                schema: Arc::clone(&right),
            },
        ],
        filter: Some(bounds(lo, hi)),
        nulls_match: false,
        schema: Arc::new(Schema::new(fields)),
        steps: Vec::new(),
        lookup: false,
        interval: Some(Interval {
            time: [1, 1],
            lo,
            hi,
        }),
        idle_ttl_us: None,
    };
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut join = Join::try_new(&spec).unwrap();
        let mut max = [i64::MIN, i64::MIN];
        let mut watermarks: [Option<i64>; 2] = [None, None];
        let mut kept: [Vec<(i64, i64)>; 2] = [Vec::new(), Vec::new()];
        let (mut result, mut late, mut most_state) = (BTreeMap::new(), 0usize, 0usize);
        for step in 0..200i64 {
            let side = rng.random_range(0..2usize);
            let rows: Vec<(i64, i64)> = (0..rng.random_range(1..4))
                .map(|_| (rng.random_range(0..3), step / 2 + rng.random_range(-6..3)))
                .collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&spec.sides[side].schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(TimestampMicrosecondArray::from_iter_values(
                        rows.iter().map(|r| r.1),
                    )),
                ],
            )
            .unwrap();
            let joined = join.push(side, &Changes::inserts(batch)).unwrap().unwrap();
            let expected_late = rows
                .iter()
                .filter(|r| watermarks[side].is_some_and(|w| r.1 < w))
                .count();
            let taken_late: usize = joined.late.iter().map(|l| l.rows.num_rows()).sum();
            assert_eq!(taken_late, expected_late, "seed {seed} step {step}");
            late += taken_late;
            kept[side].extend(
                rows.iter()
                    .filter(|r| watermarks[side].is_none_or(|w| r.1 >= w)),
            );
            fold(&mut result, &joined.changes);
            assert!(
                joined.changes.inserts.iter().all(|i| i == Some(true)),
                "an interval join retracted"
            );
            max[side] = max[side].max(rows.iter().map(|r| r.1).max().unwrap());
            watermarks[side] = Some(max[side] - delay);
            let output = join.advance(&watermarks);
            if let [Some(l), Some(r)] = watermarks {
                // No row handed on later can be behind the joined rows' watermark.
                assert_eq!(output, Some(l.min(r + lo).min(r.min(l - hi))));
            }
            most_state = most_state.max(join.rows());
            if rng.random_bool(0.05) {
                let state = join.checkpoint().unwrap();
                join = Join::try_new(&spec).unwrap();
                join.restore(&state).unwrap();
            }
        }
        let mut batch = BTreeMap::new();
        for l in &kept[0] {
            for r in &kept[1] {
                if l.0 == r.0 && (lo..=hi).contains(&(l.1 - r.1)) {
                    *batch
                        .entry(vec![Some(l.0), Some(l.1), Some(r.0), Some(r.1)])
                        .or_insert(0) += 1;
                }
            }
        }
        assert_eq!(result, batch, "seed {seed}");
        assert!(late > 0, "seed {seed}: no row was late");
        assert!(
            most_state < 120,
            "seed {seed}: {most_state} rows held of {} taken",
            kept[0].len() + kept[1].len()
        );
    }
}

/// Random inserts on both sides of an inner join with a state TTL, the clock moving on at
/// random and checkpoints restored at random: each insert joins exactly the rows of the other
/// side written again within the TTL before it (restored rows count from the first time the
/// join is told after the restore), as a model of each row's last write says.
#[test]
fn a_state_ttl_forgets_rows_idle_for_longer() {
    const TTL: i64 = 10;
    let spec = JoinSpec {
        idle_ttl_us: Some(TTL),
        ..spec(JoinKind::Inner, false)
    };
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut join = Join::try_new(&spec).unwrap();
        // Per side: each row's count and last write (`None`: restored, not yet told the time).
        let mut sides: [BTreeMap<Row, (i64, Option<i64>)>; 2] = [BTreeMap::new(), BTreeMap::new()];
        let (mut now, mut result, mut expected) = (0i64, BTreeMap::new(), BTreeMap::new());
        let mut forgotten = 0;
        for _ in 0..300 {
            now += rng.random_range(0..4);
            join.forget_idle(now);
            for side in &mut sides {
                let before = side.len();
                for (_, written) in side.values_mut() {
                    written.get_or_insert(now);
                }
                side.retain(|_, (_, written)| written.is_some_and(|w| w > now - TTL));
                forgotten += before - side.len();
            }
            let side = rng.random_range(0..2usize);
            let mut ops = Vec::new();
            for _ in 0..rng.random_range(1..4) {
                let row = (Some(rng.random_range(0..3i64)), rng.random_range(0..3i64));
                for (other, (count, _)) in sides[1 - side].iter().filter(|(r, _)| r.0 == row.0) {
                    let (l, r) = match side {
                        0 => (row, *other),
                        _ => (*other, row),
                    };
                    *expected
                        .entry(vec![l.0, Some(l.1), r.0, Some(r.1)])
                        .or_insert(0) += count;
                }
                let held = sides[side].entry(row).or_insert((0, None));
                *held = (held.0 + 1, Some(now));
                ops.push((row, true));
            }
            let out = join
                .push(side, &changes(&spec.sides[side].schema, &ops))
                .unwrap()
                .unwrap();
            fold(&mut result, &out.changes);
            assert_eq!(result, expected, "seed {seed} at {now}");
            let held: usize = sides.iter().map(BTreeMap::len).sum();
            assert_eq!(join.rows(), held, "seed {seed} at {now}");
            if rng.random_bool(0.05) {
                let state = join.checkpoint().unwrap();
                join = Join::try_new(&spec).unwrap();
                join.restore(&state).unwrap();
                for side in &mut sides {
                    for (_, written) in side.values_mut() {
                        *written = None;
                    }
                }
            }
        }
        assert!(
            forgotten > 20,
            "seed {seed}: only {forgotten} rows forgotten"
        );
    }
}
