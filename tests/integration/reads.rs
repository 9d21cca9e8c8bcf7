//! Reads of views while they ingest: every poll sees one instant of each view.
//!
//! Events flow from a real broker into a TUMBLE view, a HOP view and a view over the TUMBLE
//! view, and COPYs flow into a table read by a fourth view, while windows close every few
//! hundred milliseconds, checkpoints commit every second and compaction runs every second.
//! A reader per view polls without pause and checks, on every poll: no group twice (a window
//! both final and live), no group lost or shrunk since the previous poll (a window neither
//! final nor live), and no more events counted than the view had read. After a FLUSH, each view
//! equals the batch aggregation of everything sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::SinkExt;
use sluicedb::config::{AwsEnv, ServeArgs};
use sluicedb::server::Server;
use tokio_postgres::SimpleQueryMessage;

use crate::kafka::{create_topic, produce, producer, unique_topic};
use crate::support::{connect, kafka_target, query_i64};

const EVENTS: i64 = 120_000;
const CHUNK: i64 = 2_000;
/// Polls (of all views together) between two chunks sent: 60 chunks make 2 400 polls on any
/// machine, each chunk closing about one tumbling and five hopping windows.
const POLLS_PER_CHUNK: u64 = 40;
/// Event time advances 5 ms per event: a 10-second window closes every 2 000 events.
const STEP_MS: i64 = 5;
const BASE_MS: i64 = 1_767_225_600_000;
const ACTIONS: [&str; 3] = ["click", "view", "purchase"];

fn action(id: i64) -> &'static str {
    ACTIONS[(id % 3) as usize]
}

/// (window start in ms, action) → events: one view's answer, or the batch computation.
type Groups = BTreeMap<(i64, String), i64>;

/// What a view is checked against, once everything is flushed.
struct Checked {
    view: &'static str,
    /// The view's groups computed from every event sent (windows of `size_ms` every
    /// `slide_ms`), or `None` for the view over a view (checked against its input in SQL).
    windows: Option<(i64, i64)>,
}

const VIEWS: [Checked; 4] = [
    Checked {
        view: "w_tumble",
        windows: Some((10_000, 10_000)),
    },
    Checked {
        view: "w_hop",
        windows: Some((10_000, 2_000)),
    },
    Checked {
        view: "w_table",
        windows: Some((10_000, 10_000)),
    },
    Checked {
        view: "w_upper",
        windows: None,
    },
];

fn expected(size_ms: i64, slide_ms: i64) -> Groups {
    let mut groups = Groups::new();
    for id in 0..EVENTS {
        let ts = BASE_MS + id * STEP_MS;
        let last = ts - ts.rem_euclid(slide_ms);
        let mut start = last;
        while start > ts - size_ms {
            *groups.entry((start, action(id).to_string())).or_default() += 1;
            start -= slide_ms;
        }
    }
    groups
}

/// The rows of `sql` (window start as epoch ms, action, count) as groups; a group seen twice
/// is an error naming it.
async fn groups(client: &tokio_postgres::Client, sql: &str) -> Result<Groups, String> {
    let mut groups = Groups::new();
    for message in client.simple_query(sql).await.map_err(|e| e.to_string())? {
        if let SimpleQueryMessage::Row(row) = message {
            let field = |i: usize| row.get(i).unwrap_or_default().to_string();
            let start: i64 = field(0).parse().map_err(|e| format!("{e}: {}", field(0)))?;
            let events: i64 = field(2).parse().map_err(|e| format!("{e}: {}", field(2)))?;
            if groups.insert((start, field(1)), events).is_some() {
                return Err(format!("group ({}, {}) appears twice", field(0), field(1)));
            }
        }
    }
    Ok(groups)
}

fn select(view: &str) -> String {
    format!(
        "SELECT CAST(extract(epoch FROM window_start) * 1000 AS BIGINT), action, events FROM {view}"
    )
}

/// Polls `view` until `done`, checking every answer and counting it in `polls_made`.
async fn poll(
    addr: SocketAddr,
    view: &'static str,
    done: Arc<AtomicBool>,
    polls_made: Arc<AtomicU64>,
) {
    let client = connect(addr).await;
    let rows_in =
        format!("SELECT rows_in FROM sluice_catalog.materialized_views WHERE view = '{view}'");
    let mut previous = Groups::new();
    let mut polls = 0;
    while !done.load(Ordering::Relaxed) {
        let seen = groups(&client, &select(view))
            .await
            .unwrap_or_else(|e| panic!("poll {polls} of {view}: {e}"));
        // Read after the view: the view cannot have counted rows it had not read by then.
        let read = query_i64(&client, &rows_in).await;
        let counted: i64 = seen.values().sum();
        let counted_once = match view {
            // A hop window counts each event once per window it falls in (size / slide = 5).
            "w_hop" => counted / 5,
            _ => counted,
        };
        assert!(
            counted_once <= read,
            "poll {polls} of {view}: {counted} events counted, {read} rows read"
        );
        for (group, before) in &previous {
            let now = seen.get(group).copied().unwrap_or(0);
            assert!(
                now >= *before,
                "poll {polls} of {view}: group {group:?} went from {before} to {now} events"
            );
        }
        previous = seen;
        polls += 1;
        polls_made.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits until the readers have made `chunk`'s share of polls, so reads interleave with
/// ingestion at the same rate on fast and slow machines.
async fn pace(polls_made: &AtomicU64, chunk: i64) {
    let target = (chunk as u64 + 1) * POLLS_PER_CHUNK;
    let deadline = Instant::now() + Duration::from_secs(60);
    while polls_made.load(Ordering::Relaxed) < target {
        assert!(Instant::now() < deadline, "readers stopped polling");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A server whose checkpoints and compactions run every second, so reads overlap both.
async fn busy_server(storage: &str) -> Server {
    let args = ServeArgs {
        storage: Some(storage.to_string()),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        checkpoint_interval: Some("1s".into()),
        compaction_interval: Some("1s".into()),
        ..Default::default()
    };
    Server::start(args.resolve(AwsEnv::default()).unwrap())
        .await
        .unwrap()
}

async fn copy_rows(client: &tokio_postgres::Client, polls_made: &AtomicU64) {
    for from in (0..EVENTS).step_by(CHUNK as usize) {
        let rows: String = (from..from + CHUNK)
            .map(|id| {
                let ts = chrono::DateTime::from_timestamp_millis(BASE_MS + id * STEP_MS).unwrap();
                format!(
                    "{}\t{}\n",
                    action(id),
                    ts.format("%Y-%m-%d %H:%M:%S%.3f+00")
                )
            })
            .collect();
        let sink = client
            .copy_in::<_, bytes::Bytes>("COPY readings FROM STDIN")
            .await
            .unwrap();
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from(rows)).await.unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), CHUNK as u64);
        pace(polls_made, from / CHUNK).await;
    }
}

async fn produce_events(kafka: &str, topic: &str, polls_made: &AtomicU64) {
    let producer = producer(kafka, "5");
    for from in (0..EVENTS).step_by(CHUNK as usize) {
        let events: Vec<(i32, String)> = (from..from + CHUNK)
            .map(|id| {
                let event = format!(
                    r#"{{"event_id": {id}, "action": "{}", "ts": {}}}"#,
                    action(id),
                    BASE_MS + id * STEP_MS
                );
                ((id % 4) as i32, event)
            })
            .collect();
        produce(&producer, topic, &events).await;
        pace(polls_made, from / CHUNK).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_ingestion_see_every_group_exactly_once() {
    let Some(kafka) = kafka_target() else { return };
    let topic = unique_topic("reads");
    create_topic(&kafka, &topic, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let server = busy_server(dir.path().to_str().unwrap()).await;
    let client = connect(server.pg_addr()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE clicks (event_id BIGINT, action VARCHAR, ts TIMESTAMPTZ, \
               WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) \
             WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{kafka}', \
               scan.startup.mode = 'earliest') FORMAT PLAIN ENCODE JSON;
             CREATE TABLE readings (action TEXT, ts TIMESTAMPTZ, \
               WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) APPEND ONLY;
             CREATE MATERIALIZED VIEW w_tumble AS SELECT window_start, action, count(*) AS events \
               FROM TUMBLE(clicks, ts, INTERVAL '10' SECOND) GROUP BY window_start, action;
             CREATE MATERIALIZED VIEW w_hop AS SELECT window_start, action, count(*) AS events \
               FROM HOP(clicks, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
               GROUP BY window_start, action;
             CREATE MATERIALIZED VIEW w_table AS SELECT window_start, action, count(*) AS events \
               FROM TUMBLE(readings, ts, INTERVAL '10' SECOND) GROUP BY window_start, action;
             CREATE MATERIALIZED VIEW w_upper AS SELECT window_start, action, count(*) AS events \
               FROM TUMBLE(w_tumble, window_start, INTERVAL '30' SECOND) \
               GROUP BY window_start, action;"
        ))
        .await
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let polls_made = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = VIEWS
        .iter()
        .map(|c| {
            let (done, polls_made) = (Arc::clone(&done), Arc::clone(&polls_made));
            tokio::spawn(poll(server.pg_addr(), c.view, done, polls_made))
        })
        .collect();
    let started = Instant::now();
    let copier = connect(server.pg_addr()).await;
    tokio::join!(
        produce_events(&kafka, &topic, &polls_made),
        copy_rows(&copier, &polls_made)
    );
    // Keep polling until the views have read everything (windows keep closing meanwhile).
    let deadline = Instant::now() + Duration::from_secs(120);
    for c in VIEWS.iter().filter(|c| c.view != "w_upper") {
        let sql = format!(
            "SELECT rows_in FROM sluice_catalog.materialized_views WHERE view = '{}'",
            c.view
        );
        while query_i64(&client, &sql).await < EVENTS {
            assert!(
                Instant::now() < deadline,
                "{} did not read every event",
                c.view
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    let polls = polls_made.load(Ordering::Relaxed);
    eprintln!(
        "{polls} polls of 4 views in {:.1} s of ingestion, each saw every group once",
        started.elapsed().as_secs_f64()
    );
    assert!(polls >= 2_000, "only {polls} polls");

    client.batch_execute("FLUSH").await.unwrap();
    for c in &VIEWS {
        let seen = groups(&client, &select(c.view)).await.unwrap();
        let batch = match c.windows {
            Some((size, slide)) => expected(size, slide),
            // The upper view aggregates the input view's final windows (those the watermark
            // closed), computed here in SQL from the input view as it stands.
            None => groups(
                &client,
                "SELECT CAST(extract(epoch FROM date_bin(INTERVAL '30 seconds', window_start, \
                       TIMESTAMPTZ '1970-01-01T00:00:00Z')) * 1000 AS BIGINT), action, count(*) \
                     FROM w_tumble WHERE window_start + INTERVAL '10 seconds' <= \
                       (SELECT closed_through FROM sluice_catalog.materialized_views \
                        WHERE view = 'w_tumble') \
                     GROUP BY 1, 2",
            )
            .await
            .unwrap(),
        };
        assert!(batch.len() > 10, "{}: {batch:?}", c.view);
        assert_eq!(seen, batch, "{} after FLUSH", c.view);
    }
    server.shutdown().await;
}
