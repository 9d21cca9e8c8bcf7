//! Differential test of checkpointed window state, in process and fast: the same seeded rows
//! go through a view's window operator twice — once straight through, once checkpointed and
//! restored into a new operator at random batches (the state written to and read back from
//! real storage). Both must emit exactly the same closed windows and the same late rows.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::util::display::array_value_to_string;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluicedb::config::{AwsEnv, ServeArgs};
use sluicedb::database::Database;
use sluicedb::stream::dataflow::Dataflow;
use sluicedb::stream::plan::ViewPlan;

use crate::views::{AGGREGATES, DELAY_US, Row, Shape, generate};

/// Input batches of random sizes, as a view over the table would receive them.
fn batches(
    data: &[Row],
    seed: u64,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Vec<RecordBatch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xba7c);
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = rng.random_range(1..250).min(data.len() - at);
        let rows = &data[at..at + n];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.k))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.user))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.v))),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.amount),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.us))
                    .with_timezone("+00:00"),
            ),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.us))),
        ];
        out.push(RecordBatch::try_new(Arc::clone(schema), columns).unwrap());
        at += n;
    }
    out
}

fn lines(batch: &RecordBatch) -> Vec<String> {
    (0..batch.num_rows())
        .map(|row| {
            batch
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, row).unwrap())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// Runs the batches through the view's dataflow (as the server's pipeline does); at the
/// batches in `restore_at` the operator is checkpointed to storage and replaced by one
/// restored from it.
/// Returns the closed windows (sorted) and the number of late rows.
async fn run(
    db: &Database,
    plan: &ViewPlan,
    input: &[RecordBatch],
    restore_at: &[bool],
) -> (Vec<String>, usize) {
    let mut flow = Dataflow::new(plan.clone()).unwrap();
    let (mut closed, mut late, mut max_us) = (Vec::new(), 0, i64::MIN);
    for (i, batch) in input.iter().enumerate() {
        late += flow.take_rows(0, batch).unwrap().late.len();
        let us = batch
            .column(6)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        max_us = max_us.max(us.values().iter().copied().max().unwrap());
        for out in flow.advance(max_us - DELAY_US).unwrap().unwrap_or_default() {
            closed.extend(lines(&out));
        }
        if restore_at[i] {
            // Live readers peek at open windows between checkpoints; that must not disturb them.
            flow.live().unwrap();
            let operator = flow.operator_mut().unwrap();
            let watermark = operator.watermark();
            let state = operator.checkpoint().unwrap();
            let file = match &state {
                Some(batch) => Some(
                    db.storage()
                        .write_state_file(i as u64, "differential", batch)
                        .await
                        .unwrap(),
                ),
                None => None,
            };
            let read = match &file {
                Some(file) => Some(
                    db.storage()
                        .read_state_file(file, "test", None)
                        .await
                        .unwrap(),
                ),
                None => None,
            };
            flow = Dataflow::new(plan.clone()).unwrap();
            let operator = flow.operator_mut().unwrap();
            operator.restore(read.as_ref(), Some(watermark)).unwrap();
        }
    }
    for out in flow.advance(i64::MAX).unwrap().unwrap_or_default() {
        closed.extend(lines(&out));
    }
    closed.sort();
    (closed, late)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_state_continues_exactly_like_the_state_it_was_taken_from() {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        storage: Some(dir.path().to_str().unwrap().to_string()),
        ..Default::default()
    };
    let db = Database::open(args.resolve(AwsEnv::default()).unwrap())
        .await
        .unwrap();
    db.execute_script(
        "CREATE TABLE clicks (id BIGINT, k TEXT, user_id BIGINT, v BIGINT, amount DOUBLE, \
           ts TIMESTAMPTZ, us BIGINT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) APPEND ONLY;",
    )
    .await
    .unwrap();
    let schema = db
        .session()
        .table("clicks")
        .await
        .unwrap()
        .schema()
        .inner()
        .clone();
    let shapes = [Shape::Tumble, Shape::Hop, Shape::Cumulate, Shape::Session];
    let mut restores = 0;
    for shape in shapes {
        let query = sluicedb::sql::view::parse_query(&format!(
            "SELECT window_start, window_end, k, {AGGREGATES} FROM {} \
             GROUP BY window_start, window_end, k",
            shape.window_clause("clicks")
        ))
        .unwrap();
        let plan = db.plan_view("v", &query, false).await.unwrap();
        for seed in 0..12u64 {
            let data = generate(seed, 3_000, seed % 3 == 0);
            let input = batches(&data, seed, &schema);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let never = vec![false; input.len()];
            let sometimes: Vec<bool> = (0..input.len()).map(|_| rng.random_bool(0.15)).collect();
            let always = vec![true; input.len()];
            restores += sometimes.iter().filter(|r| **r).count() + always.len();
            let straight = run(&db, &plan, &input, &never).await;
            assert!(
                !straight.0.is_empty(),
                "{shape:?} seed {seed}: no window closed"
            );
            for (name, restore_at) in [("sometimes", &sometimes), ("always", &always)] {
                let restored = run(&db, &plan, &input, restore_at).await;
                assert_eq!(
                    straight.1, restored.1,
                    "{shape:?} seed {seed} ({name}): late rows differ"
                );
                assert_eq!(
                    straight.0, restored.0,
                    "{shape:?} seed {seed} ({name}): closed windows differ"
                );
            }
        }
    }
    assert!(restores > 1_000, "only {restores} restores");
    db.shutdown().await;
}
