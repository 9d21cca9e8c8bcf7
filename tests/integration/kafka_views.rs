//! The clickstream view against a real broker, stored on the real S3-compatible server:
//! closed windows equal DataFusion's batch aggregation of the retained events, survive a
//! SIGKILL after FLUSH (they are in Parquet on S3), and the view keeps going on new input.

use std::time::{Duration, Instant};

use crate::kafka::{CLICK_COLUMNS, click, create_topic, produce, producer, unique_topic};
use crate::support::{self, ServerProcess, kafka_target, s3_target};

const VIEW: &str = "CREATE MATERIALIZED VIEW clicks_10s AS
SELECT window_start, window_end, action,
       count(*) AS events, sum(amount) AS revenue, count(DISTINCT user_id) AS users
FROM TUMBLE(clicks, ts, INTERVAL '10' SECOND)
WHERE action <> 'bot'
GROUP BY window_start, window_end, action";

/// The closed windows of the view, and the same windows computed in batch from the source's
/// retained events, both as psql text.
fn closed_windows(server: &ServerProcess) -> (String, String) {
    let closed_through = server.psql(&[
        "-At",
        "-c",
        "SELECT closed_through FROM sluice_catalog.materialized_views WHERE view = 'clicks_10s'",
    ]);
    let closed_through = closed_through.trim();
    assert!(!closed_through.is_empty(), "no window closed yet");
    let streamed = server.psql(&[
        "-At",
        "-c",
        &format!(
            "SELECT window_start, action, events, revenue, users FROM clicks_10s \
             WHERE window_end <= '{closed_through}' ORDER BY window_start, action"
        ),
    ]);
    let batch = server.psql(&[
        "-At",
        "-c",
        &format!(
            "SELECT window_start, action, count(*), sum(amount), count(DISTINCT user_id) FROM ( \
               SELECT *, date_bin(INTERVAL '10 seconds', ts, TIMESTAMPTZ '1970-01-01T00:00:00Z') \
                 AS window_start FROM clicks WHERE action <> 'bot') AS w \
             WHERE window_start + INTERVAL '10 seconds' <= TIMESTAMPTZ '{closed_through}' \
             GROUP BY window_start, action ORDER BY window_start, action"
        ),
    ]);
    (streamed, batch)
}

fn wait_for_events(server: &ServerProcess, events: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count: i64 = server
            .psql(&["-At", "-c", "SELECT count(*) FROM clicks"])
            .trim()
            .parse()
            .unwrap();
        if count == events {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} of {events} events arrived"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_view_over_kafka_on_s3_survives_a_kill() {
    let Some(kafka) = kafka_target() else { return };
    let s3 = s3_target();
    if !support::require(s3.is_some(), "an S3 server (started by scripts/test)") {
        return;
    }
    let s3 = s3.unwrap();
    let topic = unique_topic("view-clicks");
    create_topic(&kafka, &topic, 4).await;
    let base_ms = 1_767_225_600_000;
    // 10 events per event-time second, some of them bots, over 4 partitions.
    let batch = |from: i64, to: i64| -> Vec<(i32, String)> {
        (from..to)
            .map(|id| {
                let mut event = click(id, base_ms + id * 100);
                if id % 11 == 0 {
                    event = event.replace("\"action\": \"click\"", "\"action\": \"bot\"");
                }
                ((id % 4) as i32, event)
            })
            .collect()
    };
    let producer = producer(&kafka, "5");
    produce(&producer, &topic, &batch(0, 6_000)).await;

    let dir = tempfile::tempdir().unwrap();
    let storage = format!("s3://{}/{}", s3.bucket, support::unique_prefix("views"));
    let mut server = ServerProcess::start(
        &[
            "--storage",
            &storage,
            "--s3-endpoint",
            &s3.endpoint,
            "--s3-allow-http",
            "true",
        ],
        &dir.path().join("server.log"),
    );
    server.psql(&[
        "-c",
        &format!(
            "CREATE SOURCE clicks ({CLICK_COLUMNS}) WITH (connector = 'kafka', topic = '{topic}', \
             properties.bootstrap.server = '{kafka}', scan.startup.mode = 'earliest', \
             retain = 'true') FORMAT PLAIN ENCODE JSON"
        ),
    ]);
    server.psql(&["-c", VIEW]);
    wait_for_events(&server, 6_000);
    server.psql(&["-c", "FLUSH"]);
    let (streamed, expected) = closed_windows(&server);
    assert!(streamed.lines().count() > 100, "{streamed}");
    assert_eq!(streamed, expected);
    assert!(!streamed.contains("|bot|"));

    // Killed after FLUSH: the closed windows are in Parquet on S3 and come back as they were.
    server.stop("KILL");
    server.restart();
    let (again, _) = closed_windows(&server);
    assert!(
        again.starts_with(&streamed),
        "committed windows changed after a restart"
    );

    // The view resumes from its checkpoint (open windows included) and takes the new input.
    produce(&producer, &topic, &batch(6_000, 9_000)).await;
    wait_for_events(&server, 9_000);
    server.psql(&["-c", "FLUSH"]);
    let (streamed, expected) = closed_windows(&server);
    assert!(streamed.lines().count() > 150, "{streamed}");
    assert_eq!(streamed, expected);
    let late: i64 = server
        .psql(&["-At", "-c", "SELECT count(*) FROM sluice_catalog.late_rows"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(late, 0, "in-order events within the delay are never late");
    // The restarted view read nothing twice: only the 3 000 new events since the checkpoint.
    let metrics = server.http_get("/metrics");
    for line in [
        "sluicedb_view_rows_in_total{view=\"clicks_10s\"} 3000",
        "sluicedb_view_late_rows_total{view=\"clicks_10s\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
}

/// Non-bot events per closed window, from the events this test produced.
fn expected_events(ids: std::ops::Range<i64>, base_ms: i64, closed_through_ms: i64) -> i64 {
    ids.filter(|id| id % 33 != 0)
        .filter(|id| {
            let ts = base_ms + id * 100;
            ts - ts.rem_euclid(10_000) + 10_000 <= closed_through_ms
        })
        .count() as i64
}

fn view_number(server: &ServerProcess, sql: &str) -> i64 {
    server
        .psql(&["-At", "-c", sql])
        .trim()
        .parse()
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_a_source_that_keeps_nothing_backfills_from_the_topic() {
    let Some(kafka) = kafka_target() else { return };
    let topic = unique_topic("view-backfill");
    create_topic(&kafka, &topic, 2).await;
    let base_ms = 1_767_225_600_000;
    let batch = |from: i64, to: i64| -> Vec<(i32, String)> {
        (from..to)
            .map(|id| {
                let mut event = click(id, base_ms + id * 100);
                if id % 33 == 0 {
                    event = event.replace("\"action\": \"click\"", "\"action\": \"bot\"");
                }
                ((id % 2) as i32, event)
            })
            .collect()
    };
    let producer = producer(&kafka, "5");
    produce(&producer, &topic, &batch(0, 3_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let mut server = ServerProcess::start(
        &["--storage", storage.to_str().unwrap()],
        &dir.path().join("server.log"),
    );
    server.psql(&[
        "-c",
        &format!(
            "CREATE SOURCE clicks ({CLICK_COLUMNS}) WITH (connector = 'kafka', topic = '{topic}', \
             properties.bootstrap.server = '{kafka}', scan.startup.mode = 'earliest') \
             FORMAT PLAIN ENCODE JSON"
        ),
    ]);
    // The source reads the whole topic before the view exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    while view_number(
        &server,
        "SELECT CAST(sum(rows_in) AS BIGINT) FROM sluice_catalog.sources",
    ) < 3_000
    {
        assert!(
            Instant::now() < deadline,
            "the source did not read the topic"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.psql(&["-c", VIEW]);
    let view_rows_in = "SELECT rows_in FROM sluice_catalog.materialized_views";
    // `events` produced so far, `read` of them by this process.
    let check = |server: &ServerProcess, events: i64, read: i64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while view_number(server, view_rows_in) < read {
            assert!(Instant::now() < deadline, "the view did not backfill");
            std::thread::sleep(Duration::from_millis(200));
        }
        server.psql(&["-c", "FLUSH"]);
        let closed_through_ms = view_number(
            server,
            "SELECT CAST(to_unixtime(closed_through) * 1000 AS BIGINT) \
             FROM sluice_catalog.materialized_views",
        );
        let counted = view_number(
            server,
            &format!(
                "SELECT CAST(sum(events) AS BIGINT) FROM clicks_10s \
                 WHERE window_end <= to_timestamp_millis({closed_through_ms})"
            ),
        );
        assert_eq!(
            counted,
            expected_events(0..events, base_ms, closed_through_ms)
        );
        let duplicates = view_number(
            server,
            "SELECT count(*) FROM (SELECT window_start, action FROM clicks_10s \
             GROUP BY window_start, action HAVING count(*) > 1)",
        );
        assert_eq!(duplicates, 0, "a window was emitted twice");
        closed_through_ms
    };
    let first = check(&server, 3_000, 3_000);
    assert!(
        first > base_ms + 250_000,
        "windows closed through the topic's history"
    );

    // After a restart the view's own reader resumes at the offsets of its checkpoint.
    server.stop("KILL");
    server.restart();
    produce(&producer, &topic, &batch(3_000, 4_000)).await;
    let second = check(&server, 4_000, 1_000);
    assert!(second > first);
}
