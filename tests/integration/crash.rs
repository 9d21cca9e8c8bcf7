//! Crash tests: a seeded stream of 200 000 click events (each sent one to three times, as a
//! retrying producer would) goes to a real broker in waves; after each wave the server is
//! killed — by SIGKILL at a random moment, or by itself at a crash point inside a checkpoint
//! (`SLUICEDB_CRASH_AT`) — and restarted. At the end the TUMBLE view (over a source that
//! retains its events) and the HOP view (over one that does not, read by the view's own
//! reader) must equal the aggregation of the distinct events computed here: nothing lost,
//! nothing counted twice, no duplicate let through.
//!
//! Alongside, an upsert topic feeds a table with a primary key (seeded sets and deletes per
//! wave): at the end the table must equal the last record of each key, and the views over it
//! and a Top-N view over the TUMBLE view their batch queries.
//!
//! On a local folder, on the S3 server, and on S3 with the endpoint down for 30 s mid-run.
//! `SLUICEDB_CRASH_POINTS` sets the number of crashes (default 20; 100 for the benchmark note).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kafka::{create_topic, produce, producer, unique_topic};
use crate::support::{self, Link, ServerProcess, TcpRelay, kafka_target, s3_target};

const EVENTS: i64 = 200_000;
const PARTITIONS: i32 = 4;
const PAGES: i64 = 20;
/// Event time advances 10 ms per event, up to 3 s out of order (the watermark allows 5 s).
const BASE_MS: i64 = 1_767_225_600_000;
const COLUMNS: &str = "event_id BIGINT, page VARCHAR, amount BIGINT, ts TIMESTAMPTZ, \
                       WATERMARK FOR ts AS ts - INTERVAL '5' SECOND";

struct Event {
    id: i64,
    page: i64,
    amount: i64,
    ts_ms: i64,
}

fn events(seed: u64) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..EVENTS)
        .map(|id| Event {
            id,
            page: rng.random_range(0..PAGES),
            amount: rng.random_range(1..100),
            ts_ms: BASE_MS + id * 10 - rng.random_range(0..3_000),
        })
        .collect()
}

/// The messages of a wave: every event one to three times, repeats a few events later.
fn messages(events: &[Event], rng: &mut ChaCha8Rng) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = Vec::new();
    let mut repeats: Vec<(usize, (i32, String))> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let ts = chrono::DateTime::from_timestamp_millis(e.ts_ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let message = (
            (e.id % i64::from(PARTITIONS)) as i32,
            format!(
                r#"{{"event_id": {}, "page": "/p/{}", "amount": {}, "ts": "{ts}"}}"#,
                e.id, e.page, e.amount
            ),
        );
        for _ in 0..rng.random_range(0..3) {
            repeats.push((i + rng.random_range(0..50), message.clone()));
        }
        out.push(message);
        repeats.retain(|(at, m)| {
            let due = *at <= i;
            if due {
                out.push(m.clone());
            }
            !due
        });
    }
    out.extend(repeats.into_iter().map(|(_, m)| m));
    out
}

/// The final watermark: every partition's largest event time, minus the delay, at the least.
fn final_watermark_ms(events: &[Event]) -> i64 {
    let mut max: BTreeMap<i64, i64> = BTreeMap::new();
    for e in events {
        let m = max.entry(e.id % i64::from(PARTITIONS)).or_insert(i64::MIN);
        *m = (*m).max(e.ts_ms);
    }
    max.values().min().unwrap() - 5_000
}

/// `window_start_ms|page|count|sum` of every window ending at or before `through_ms`.
fn expected(events: &[Event], slide_ms: i64, size_ms: i64, through_ms: i64) -> Vec<String> {
    let mut windows: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for e in events {
        let last_start = e.ts_ms - e.ts_ms.rem_euclid(slide_ms);
        let mut start = last_start;
        while start > e.ts_ms - size_ms {
            if start + size_ms <= through_ms {
                let w = windows.entry((start, e.page)).or_default();
                w.0 += 1;
                w.1 += e.amount;
            }
            start -= slide_ms;
        }
    }
    let mut rows: Vec<String> = windows
        .into_iter()
        .map(|((start, page), (n, sum))| format!("{start}|/p/{page}|{n}|{sum}"))
        .collect();
    rows.sort();
    rows
}

/// The upsert topic's side: the last value of each key (`None`: deleted), records sent.
#[derive(Default)]
struct Prices {
    last: BTreeMap<String, Option<i64>>,
    sent: i64,
}

impl Prices {
    /// A wave of seeded upsert records: (partition, key, value or `None` to delete).
    fn wave(&mut self, rng: &mut ChaCha8Rng) -> Vec<(i32, String, Option<String>)> {
        (0..300)
            .map(|_| {
                let n = rng.random_range(0..200);
                let sku = format!("sku-{n}");
                let price = rng.random_bool(0.8).then(|| rng.random_range(1..10_000));
                self.last.insert(sku.clone(), price);
                self.sent += 1;
                let value = price.map(|p| format!(r#"{{"sku": "{sku}", "price": {p}}}"#));
                (n % 2, format!("\"{sku}\""), value)
            })
            .collect()
    }

    fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = self
            .last
            .iter()
            .filter_map(|(sku, price)| price.map(|p| format!("{sku}|{p}")))
            .collect();
        rows.sort();
        rows
    }
}

/// Each view over the upsert table or over `tumble_10s`, and its batch query.
const KEYED_VIEWS: [(&str, &str); 3] = [
    (
        "top_prices",
        "SELECT sku, price FROM prices ORDER BY price DESC, sku LIMIT 5",
    ),
    (
        "price_totals",
        "SELECT count(*) AS n, sum(price) AS total, max(price) AS top FROM prices",
    ),
    (
        "top_pages",
        "SELECT * FROM (SELECT window_start, page, n, ROW_NUMBER() OVER (PARTITION BY \
         window_start ORDER BY n DESC, page) AS rn FROM tumble_10s) WHERE rn <= 3",
    ),
];

fn sorted(server: &ServerProcess, sql: &str) -> Vec<String> {
    let mut rows: Vec<String> = server
        .psql(&["-At", "-c", sql])
        .lines()
        .map(str::to_string)
        .collect();
    rows.sort();
    rows
}

fn view_rows(server: &ServerProcess, view: &str) -> Vec<String> {
    let mut rows = server
        .psql(&[
            "-At",
            "-c",
            &format!(
                "SELECT CAST(to_unixtime(window_start) * 1000 AS BIGINT), page, n, total \
                 FROM {view} ORDER BY window_start, page"
            ),
        ])
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>();
    rows.sort();
    rows
}

fn number(server: &ServerProcess, sql: &str) -> i64 {
    server
        .psql(&["-At", "-c", sql])
        .trim()
        .parse()
        .unwrap_or(i64::MIN)
}

/// Where two sorted row lists differ, in a line: counts and the first rows only on each side.
fn difference(actual: &[String], expected: &[String]) -> String {
    let actual_set: std::collections::BTreeSet<&String> = actual.iter().collect();
    let expected_set: std::collections::BTreeSet<&String> = expected.iter().collect();
    let extra: Vec<_> = actual_set.difference(&expected_set).take(5).collect();
    let missing: Vec<_> = expected_set.difference(&actual_set).take(5).collect();
    if extra.is_empty() && missing.is_empty() && actual.len() == expected.len() {
        return "equal".into();
    }
    format!(
        "{} rows, {} expected; {} not expected, first {extra:?}; {} missing, first {missing:?}",
        actual.len(),
        expected.len(),
        actual_set.difference(&expected_set).count(),
        expected_set.difference(&actual_set).count(),
    )
}

async fn crash_run(name: &str, storage_args: Vec<String>, outage: Option<&TcpRelay>) {
    let Some(kafka) = kafka_target() else { return };
    let crashes: usize = std::env::var("SLUICEDB_CRASH_POINTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let topic = unique_topic(&format!("crash-{name}"));
    create_topic(&kafka, &topic, PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sluicedb.log");
    let mut args: Vec<&str> = storage_args.iter().map(String::as_str).collect();
    // Compaction and garbage collection run all the time too, so crashes hit them.
    args.extend([
        "--checkpoint-interval",
        "1s",
        "--compaction-interval",
        "1s",
        "--compaction-target-size",
        "4MB",
        "--gc-grace",
        "2s",
    ]);
    let mut server = ServerProcess::start(&args, &log);
    for (source, retain) in [("kept", ", retain = 'true'"), ("raw", "")] {
        server.psql(&[
            "-c",
            &format!(
                "CREATE SOURCE {source} ({COLUMNS}) WITH (connector = 'kafka', topic = '{topic}', \
                 properties.bootstrap.server = '{kafka}', scan.startup.mode = 'earliest', \
                 dedup.key = 'event_id', dedup.ttl = '1 hour', source.idle_timeout = '1 hour'{retain}) \
                 FORMAT PLAIN ENCODE JSON"
            ),
        ]);
    }
    server.psql(&[
        "-c",
        "CREATE MATERIALIZED VIEW tumble_10s AS SELECT window_start, page, count(*) AS n, \
           sum(amount) AS total FROM TUMBLE(kept, ts, INTERVAL '10' SECOND) \
           GROUP BY window_start, page EMIT ON WINDOW CLOSE",
    ]);
    let prices_topic = unique_topic(&format!("crash-prices-{name}"));
    create_topic(&kafka, &prices_topic, 2).await;
    server.psql(&[
        "-c",
        &format!(
            "CREATE TABLE prices (sku VARCHAR PRIMARY KEY, price BIGINT) WITH (connector = \
             'kafka', topic = '{prices_topic}', properties.bootstrap.server = '{kafka}', \
             scan.startup.mode = 'earliest') FORMAT UPSERT ENCODE JSON"
        ),
    ]);
    for (view, query) in KEYED_VIEWS {
        server.psql(&["-c", &format!("CREATE MATERIALIZED VIEW {view} AS {query}")]);
    }
    let mut prices = Prices::default();
    server.psql(&[
        "-c",
        "CREATE MATERIALIZED VIEW hop_30s AS SELECT window_start, page, count(*) AS n, \
           sum(amount) AS total FROM HOP(raw, ts, INTERVAL '10' SECOND, INTERVAL '30' SECOND) \
           GROUP BY window_start, page EMIT ON WINDOW CLOSE",
    ]);
    let data = events(7);
    let producer = producer(&kafka, "5");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // A crash after every wave but the last, so every partition has new events after the
    // last restart (a partition silent since a restart holds the watermark back).
    let wave = data.len().div_ceil(crashes + 1);
    let waves: Vec<&[Event]> = data.chunks(wave).collect();
    let (mut killed, mut crashed_inside) = (0, 0);
    for (i, events) in waves.iter().enumerate() {
        let last = i == waves.len() - 1;
        // Every fourth crash is the server's own, inside a checkpoint or a compaction.
        let inside = (i % 4 == 3 && !last).then_some(match (i / 4) % 4 {
            0 => "checkpoint.written:2",
            1 => "checkpoint.committed:2",
            2 => "compaction.written:1",
            _ => "compaction.committed:1",
        });
        let messages = messages(events, &mut rng);
        crate::cdc::send(&producer, &prices_topic, &prices.wave(&mut rng)).await;
        if let Some(point) = inside.filter(|p| p.starts_with("compaction")) {
            // A compaction needs several new files in a row: the wave comes in over several
            // checkpoints, to a server that crashes in the first compaction.
            server.stop("KILL");
            server.restart_with_env(&[("SLUICEDB_CRASH_AT", point)]);
            for chunk in messages.chunks(messages.len().div_ceil(8)) {
                produce(&producer, &topic, chunk).await;
                // A checkpoint after each chunk, so each makes new files (slow S3 or not).
                let committed = |server: &ServerProcess| {
                    server
                        .try_psql(&[
                            "-At",
                            "-c",
                            "SELECT max(checkpoint) FROM sluice_catalog.checkpoints \
                             WHERE kind = 'checkpoint' AND status = 'committed'",
                        ])
                        .and_then(|n| n.trim().parse::<i64>().ok())
                };
                let mut before = None;
                let deadline = Instant::now() + Duration::from_secs(30);
                while !server.exited() && Instant::now() < deadline {
                    match (before, committed(&server)) {
                        (None, now) => before = now,
                        (Some(before), Some(now)) if now > before => break,
                        _ => {}
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        } else {
            produce(&producer, &topic, &messages).await;
        }
        if last {
            break;
        }
        if let Some(outage) = outage
            && i == crashes / 2
        {
            // The S3 endpoint goes away for 30 s while the server runs; it must wait, not skip.
            outage.set(Link::Down);
            tokio::time::sleep(Duration::from_secs(30)).await;
            outage.set(Link::Up);
            // The outage was felt: a round failed, or one waited through it.
            let felt = number(
                &server,
                "SELECT count(*) FROM sluice_catalog.checkpoints \
                 WHERE status = 'failed' OR duration_ms >= 10000",
            );
            assert!(felt > 0, "no checkpoint failed or waited while S3 was down");
            // Back: the next checkpoint commits everything taken in meanwhile.
            support::wait_for(
                Duration::from_secs(120),
                "a checkpoint after the outage",
                || {
                    let server = &server;
                    async move {
                        let ok = number(
                            server,
                            "SELECT max(checkpoint) FROM sluice_catalog.checkpoints \
                         WHERE status = 'committed' AND started_at > now() - INTERVAL '3 seconds'",
                        );
                        (ok > 0).then_some(())
                    }
                },
            )
            .await;
        }
        if let Some(point) = inside {
            if point.starts_with("checkpoint") {
                server.stop("KILL");
                server.restart_with_env(&[("SLUICEDB_CRASH_AT", point)]);
            }
            if !server.wait_exit(Duration::from_secs(60)) {
                let files = server.psql(&[
                    "-c",
                    "SELECT relation, count(*), sum(size_bytes) FROM sluice_catalog.files GROUP BY relation",
                    "-c",
                    "SELECT * FROM sluice_catalog.checkpoints ORDER BY started_at DESC LIMIT 10",
                ]);
                panic!(
                    "the server did not reach crash point {point}:\n{files}\nserver log: {}",
                    dir.keep().join("sluicedb.log").display()
                );
            }
            crashed_inside += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
            server.stop("KILL");
            killed += 1;
        }
        server.restart();
    }
    // Everything read: both views' watermarks reach the last one the data allows.
    let watermark_ms = final_watermark_ms(&data);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let reached = number(
            &server,
            "SELECT CAST(round(min(date_part('epoch', watermark)) * 1000) AS BIGINT) \
             FROM sluice_catalog.materialized_views WHERE view IN ('tumble_10s', 'hop_30s')",
        );
        let failed = server.psql(&[
            "-At",
            "-c",
            "SELECT view || ': ' || coalesce(last_error, '') FROM sluice_catalog.materialized_views \
             WHERE status = 'failed'",
        ]);
        assert!(
            failed.trim().is_empty(),
            "{failed}\nserver log: {}",
            dir.keep().join("sluicedb.log").display()
        );
        if reached >= watermark_ms {
            assert_eq!(reached, watermark_ms, "the watermark went past the data");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the views did not catch up: watermark {reached} of {watermark_ms}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    server.psql(&["-c", "FLUSH"]);
    let tumble = view_rows(&server, "tumble_10s");
    let hop = view_rows(&server, "hop_30s");
    assert!(tumble.len() > 1_000, "{} tumble windows", tumble.len());
    let context =
        format!("after {killed} kills and {crashed_inside} crashes in checkpoints and compactions");
    let expected_tumble = expected(&data, 10_000, 10_000, watermark_ms);
    let expected_hop = expected(&data, 10_000, 30_000, watermark_ms);
    if tumble != expected_tumble || hop != expected_hop {
        // Keep the server's log for the post-mortem; the rows are summarised, not dumped.
        let kept = dir.keep();
        panic!(
            "{context}:\ntumble_10s: {}\nhop_30s: {}\nserver log: {}",
            difference(&tumble, &expected_tumble),
            difference(&hop, &expected_hop),
            kept.join("sluicedb.log").display()
        );
    }
    let late = number(&server, "SELECT count(*) FROM sluice_catalog.late_rows");
    assert_eq!(late, 0);
    // The upsert table: every record read, each applied once.
    let read = "SELECT CAST(sum(current_offset) AS BIGINT) FROM sluice_catalog.sources \
                WHERE source = 'prices'";
    let deadline = Instant::now() + Duration::from_secs(120);
    while number(&server, read) < prices.sent {
        assert!(
            Instant::now() < deadline,
            "the upsert table did not read its topic"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    server.psql(&["-c", "FLUSH"]);
    assert_eq!(
        sorted(&server, "SELECT sku, price FROM prices"),
        prices.rows(),
        "{context}: the upsert table"
    );
    for (view, query) in KEYED_VIEWS {
        assert_eq!(
            sorted(&server, &format!("SELECT * FROM {view}")),
            sorted(&server, query),
            "{context}: view {view}"
        );
    }
    let recoveries = number(
        &server,
        "SELECT count(*) FROM sluice_catalog.checkpoints WHERE kind = 'recovery'",
    );
    assert!(recoveries >= 1, "no recovery recorded");
    eprintln!(
        "crash test {name}: {killed} kills, {crashed_inside} crashes inside checkpoints and compactions, {} tumble and {} hop windows equal; the upsert table ({} records, {} rows) and {} views over it and the TUMBLE view equal their batch queries",
        tumble.len(),
        hop.len(),
        prices.sent,
        prices.rows().len(),
        KEYED_VIEWS.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_change_nothing_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let storage = vec![
        "--storage".to_string(),
        dir.path().join("data").to_str().unwrap().to_string(),
    ];
    crash_run("local", storage, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_change_nothing_on_s3_even_with_s3_down_for_30_seconds() {
    let Some(s3) = s3_target() else { return };
    let target = s3.endpoint.trim_start_matches("http://").to_string();
    let outage = TcpRelay::start(target).await;
    let endpoint = format!("http://{}", outage.addr);
    crash_run(
        "s3",
        support::s3_args(&endpoint, &s3.bucket, "crash-s3"),
        Some(&outage),
    )
    .await;
}
