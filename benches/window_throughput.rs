//! Windowed views end to end, from JSON bytes to emitted windows, on this machine's cores.
//!
//! - W1: click events, 1 000 per event-time second, up to 2 s out of order; TUMBLE 10 s GROUP
//!   BY action with count(*), sum(amount), count(DISTINCT user_id).
//! - W2: the same events; HOP 60 s sliding by 10 s GROUP BY page (1 000 pages), count(*).
//! - M1: open-window state for 1 000 000 distinct keys (one open hour window GROUP BY
//!   user_id): bytes as DataFusion's structures report them and the process' RSS growth; the
//!   time to checkpoint that state (Arrow IPC to a local file) and to recover it.
//! - Checkpoint overhead: W1 with the operator's state checkpointed to a local file every
//!   second (ten times the default interval), against W1 without.
//!
//! The pipeline is the server's: the view is planned by `Database::plan_view` (DataFusion
//! planning, our window operator) and run by its `Dataflow`, events are decoded by the
//! source decoder (arrow-json) in
//! chunks of 4 096 on decode threads (1, or 2 as a Kafka source's decode workers do on this
//! 2-core machine: one per core, each partition on one of them), and aggregated on another
//! thread, which advances the watermark (min over partitions of max event time − 2 s)
//! after every chunk. Results are checked: every event is counted once.
//!
//! The reference is DuckDB running the same queries in batch over the same events written as a
//! JSON-lines file, by `benches/duckdb_reference.py` in the same run (when `.venv` has duckdb:
//! `.venv/bin/pip install -r benches/requirements.txt`).
//!
//! `cargo bench --bench window_throughput [-- EVENTS]` (default 10 000 000).

mod support;

use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluicedb::catalog::source::SourceDef;
use sluicedb::source::decode::JsonDecoder;
use sluicedb::stream::dataflow::Dataflow;
use sluicedb::stream::plan::ViewPlan;
use support::records;

const CHUNK: usize = 4_096;
const BASE_MS: i64 = 1_767_225_600_000;
const DELAY_US: i64 = 2_000_000;
const COLUMNS: &str = "event_id BIGINT, user_id BIGINT, page VARCHAR, action VARCHAR, \
                       amount DOUBLE PRECISION, ts TIMESTAMPTZ";

const W1: &str = "SELECT window_start, window_end, action, count(*) AS events, \
                  sum(amount) AS revenue, count(DISTINCT user_id) AS users \
                  FROM TUMBLE(clicks, ts, INTERVAL '10' SECOND) \
                  GROUP BY window_start, window_end, action";
const W2: &str = "SELECT window_start, window_end, page, count(*) AS views \
                  FROM HOP(clicks, ts, INTERVAL '10' SECOND, INTERVAL '60' SECOND) \
                  GROUP BY window_start, window_end, page";
const M1: &str = "SELECT window_start, window_end, user_id, count(*) AS events, \
                  sum(amount) AS revenue FROM TUMBLE(clicks, ts, INTERVAL '1' HOUR) \
                  GROUP BY window_start, window_end, user_id";

/// Event `i`: 1 000 per second of event time, up to 2 s late; user ids drawn from `users`
/// at random, or `i % users` when `users` is negative (every user appears).
fn events(n: usize, users: i64) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let actions = ["view", "view", "click", "purchase"];
    (0..n)
        .map(|i| {
            let ts = BASE_MS + i as i64 - rng.random_range(0..2_000);
            format!(
                r#"{{"event_id":{i},"user_id":{},"page":"/page/{}","action":"{}","amount":{}.{:02},"ts":{ts}}}"#,
                match users > 0 {
                    true => rng.random_range(0..users),
                    false => i as i64 % -users,
                },
                rng.random_range(0..1_000),
                actions[rng.random_range(0..actions.len())],
                rng.random_range(0..500),
                rng.random_range(0..100),
            )
            .into_bytes()
        })
        .collect()
}

fn source_def() -> SourceDef {
    support::source_def(
        &format!(
            "CREATE SOURCE clicks ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) \
             WITH (connector = 'kafka') FORMAT PLAIN ENCODE JSON"
        ),
        &[],
    )
}

/// The view's streaming plan, made by the server's planner over a table of the same shape.
fn plan(query: &str) -> ViewPlan {
    let create = format!(
        "CREATE TABLE clicks ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) APPEND ONLY"
    );
    support::plan(&create, query, true)
}

/// Writes an operator's checkpoint as an Arrow IPC file, as a view does; returns its size.
fn write_state(batch: &RecordBatch, path: &std::path::Path) -> usize {
    let mut bytes = Vec::new();
    let mut writer = FileWriter::try_new(&mut bytes, &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    std::fs::write(path, &bytes).unwrap();
    bytes.len()
}

fn read_state(path: &std::path::Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let batches: Vec<RecordBatch> = FileReader::try_new(file, None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// What one run measured.
struct Run {
    events_per_second: f64,
    /// The sum of the view's first aggregate column (the event count) over every window.
    counted: i64,
    windows: usize,
    /// Time spent writing checkpoints, and how many.
    checkpointing: Duration,
    checkpoints: u32,
}

/// Runs the events through decode threads and the window operator, checkpointing its state
/// every `checkpoint_every` if given.
fn run(
    plan: &ViewPlan,
    payloads: &[Vec<u8>],
    decoders: usize,
    checkpoint_every: Option<Duration>,
) -> Run {
    let state_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (sender, receiver) = sync_channel::<(usize, RecordBatch)>(8 * decoders);
    let (mut checkpointing, mut checkpoints) = (Duration::ZERO, 0);
    let (counted, windows) = std::thread::scope(|scope| {
        for d in 0..decoders {
            let sender = sender.clone();
            scope.spawn(move || {
                let mut decoder = JsonDecoder::new(&source_def());
                // Partition `d` takes every `decoders`-th chunk.
                for (c, chunk) in payloads.chunks(CHUNK).enumerate() {
                    if c % decoders != d {
                        continue;
                    }
                    let records = records(chunk);
                    let decoded = decoder.decode(d as i32, &records).unwrap();
                    assert!(decoded.rejected.is_empty());
                    sender.send((d, decoded.batch)).unwrap();
                }
            });
        }
        drop(sender);
        let mut flow = Dataflow::new(plan.clone()).unwrap();
        let mut partition_max = vec![i64::MIN; decoders];
        let (mut counted, mut windows) = (0i64, 0usize);
        let mut emit = |batches: Option<Vec<RecordBatch>>| {
            for batch in batches.unwrap_or_default() {
                windows += batch.num_rows();
                let counts = batch.column(3).as_primitive::<Int64Type>();
                counted += counts.iter().flatten().sum::<i64>();
            }
        };
        let mut last_checkpoint = Instant::now();
        for (partition, batch) in receiver {
            if let Some(every) = checkpoint_every
                && last_checkpoint.elapsed() >= every
            {
                let started = Instant::now();
                if let Some(state) = flow.operator_mut().unwrap().checkpoint().unwrap() {
                    write_state(&state, &state_dir.path().join("state.arrow"));
                }
                checkpointing += started.elapsed();
                checkpoints += 1;
                last_checkpoint = Instant::now();
            }
            let taken = flow.take_rows(0, &batch).unwrap();
            assert!(taken.late.is_empty(), "no event is behind the watermark");
            let max = taken.max_event_time.unwrap();
            partition_max[partition] = partition_max[partition].max(max);
            let watermark = *partition_max.iter().min().unwrap();
            if watermark > i64::MIN {
                emit(flow.advance(watermark - DELAY_US).unwrap());
            }
        }
        emit(flow.advance(i64::MAX).unwrap());
        (counted, windows)
    });
    Run {
        events_per_second: payloads.len() as f64 / started.elapsed().as_secs_f64(),
        counted,
        windows,
        checkpointing,
        checkpoints,
    }
}

/// The aggregating thread's own rate: the view over batches decoded beforehand.
fn aggregate_only(plan: &ViewPlan, payloads: &[Vec<u8>]) -> f64 {
    let mut decoder = JsonDecoder::new(&source_def());
    let batches: Vec<RecordBatch> = payloads
        .chunks(CHUNK)
        .map(|chunk| decoder.decode(0, &records(chunk)).unwrap().batch)
        .collect();
    let mut flow = Dataflow::new(plan.clone()).unwrap();
    let started = Instant::now();
    let mut max = i64::MIN;
    for batch in &batches {
        max = max.max(flow.take_rows(0, batch).unwrap().max_event_time.unwrap());
        flow.advance(max - DELAY_US).unwrap();
    }
    flow.advance(i64::MAX).unwrap();
    payloads.len() as f64 / started.elapsed().as_secs_f64()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Open-window state for `keys` distinct keys: bytes reported by the group tables and
/// accumulators, and the growth of the process' resident memory.
fn memory(keys: usize) {
    let plan = plan(M1);
    let payloads = events(keys * 2, -(keys as i64));
    let mut flow = Dataflow::new(plan.clone()).unwrap();
    let mut decoder = JsonDecoder::new(&source_def());
    let before = rss_bytes();
    for chunk in payloads.chunks(CHUNK) {
        let records = records(chunk);
        flow.take_rows(0, &decoder.decode(0, &records).unwrap().batch)
            .unwrap();
    }
    let after = rss_bytes();
    let operator = flow.operator_mut().unwrap();
    println!(
        "M1 open state, {} distinct keys (count, sum): {:.0} MB reported by the group tables \
         and accumulators, {:.0} B per group (target 64); RSS +{:.0} MB (the allocator reuses \
         what earlier runs freed)",
        operator.open_groups(),
        operator.state_bytes() as f64 / 1e6,
        operator.state_bytes() as f64 / operator.open_groups() as f64,
        after.saturating_sub(before) as f64 / 1e6
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.arrow");
    let started = Instant::now();
    let state = operator.checkpoint().unwrap().unwrap();
    let bytes = write_state(&state, &path);
    let checkpointed = started.elapsed();
    let started = Instant::now();
    let mut restored = plan.window.as_ref().unwrap().operator().unwrap();
    restored
        .restore(Some(&read_state(&path)), Some(operator.watermark()))
        .unwrap();
    let recovered = started.elapsed();
    assert_eq!(restored.open_groups(), operator.open_groups());
    println!(
        "M1 checkpoint of {} keys: {:.0} MB Arrow IPC written in {:.2} s; recovered (read + restore) in {:.2} s",
        restored.open_groups(),
        bytes as f64 / 1e6,
        checkpointed.as_secs_f64(),
        recovered.as_secs_f64()
    );
}

/// W1 on two decode threads, with and without a checkpoint of the operator every second; the
/// time each checkpoint takes gives the overhead at the default interval (10 s), which a run
/// of a few seconds cannot show directly.
fn checkpoint_overhead(payloads: &[Vec<u8>]) {
    let plan = plan(W1);
    let best = |every: Option<Duration>| {
        (0..3)
            .map(|_| run(&plan, payloads, 2, every))
            .inspect(|r| assert_eq!(r.counted, payloads.len() as i64))
            .max_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second))
            .unwrap()
    };
    let without = best(None);
    let with = best(Some(Duration::from_secs(1)));
    let each = with.checkpointing / with.checkpoints.max(1);
    println!(
        "W1 with a checkpoint every 1 s (10x the default): {:.2} M events/s against {:.2} without: {:.1} % overhead; \
         {} checkpoints of {:.0} ms each, so {:.1} % of the time at the default 10 s",
        with.events_per_second / 1e6,
        without.events_per_second / 1e6,
        (1.0 - with.events_per_second / without.events_per_second) * 100.0,
        with.checkpoints,
        each.as_secs_f64() * 1e3,
        each.as_secs_f64() / 10.0 * 100.0
    );
}

fn main() {
    let n = support::size_arg(10_000_000);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("{n} JSON click events, {cores} cores");
    let payloads = events(n, 100_000);
    // Each view's best rate on every decode thread there is, against DuckDB's, also on every core.
    let mut ours = Vec::new();
    for (name, query, target) in [
        ("W1 tumble 10 s by action", W1, 1.0),
        ("W2 hop 60 s/10 s by page", W2, 2.0),
    ] {
        let plan = plan(query);
        // One decode thread, and one per core as a Kafka source's workers run.
        let many = cores.max(2);
        for decoders in [1, many] {
            let mut best = 0.0f64;
            for _ in 0..3 {
                let Run {
                    events_per_second: rate,
                    counted,
                    windows,
                    ..
                } = run(&plan, &payloads, decoders, None);
                let expected = match name.starts_with("W1") {
                    true => n as i64,
                    // Every event is in 6 hopping windows.
                    false => 6 * n as i64,
                };
                assert_eq!(
                    counted, expected,
                    "{name}: every event counted once per window"
                );
                assert!(windows > 0);
                best = best.max(rate);
            }
            println!(
                "{name}, {decoders} decode thread(s) + 1 aggregating: {:.2} M events/s",
                best / 1e6
            );
            if decoders == many {
                ours.push((&name[..2], best, target));
            }
        }
    }
    for (name, query) in [("W1", W1), ("W2", W2)] {
        let rate = aggregate_only(&plan(query), &payloads);
        println!(
            "{name} aggregating thread alone (decoded beforehand): {:.2} M events/s",
            rate / 1e6
        );
    }
    checkpoint_overhead(&payloads);
    memory(1_000_000);
    let duckdb = support::duckdb_reference("windows", &[("clicks", &payloads)]);
    support::print_ratios(&ours, &duckdb);
}
