//! `UNION ALL` views: one view over several inputs, whose checkpoint barriers it aligns and
//! whose watermarks it takes the least of. Two Kafka sources on the real broker feed a union
//! view and a TUMBLE view over it; a table and a table with a primary key feed an aggregation
//! over their union; a source and a table feed one more; two sources that keep no events
//! (each read by the view's own reader of its topic, whose offsets the view's checkpoint
//! keeps per input) feed two more. After every round each view equals the same query run in
//! batch mode — through a kill -9 between rounds.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kafka::{create_topic, produce, producer, unique_topic, wait_read};
use crate::support::{self, kafka_target, query_i64};
use crate::views::{assert_views_running, sorted_rows, wait_for_rows};

const ALL_CLICKS: &str = "SELECT id, page, ts FROM web UNION ALL \
                          SELECT uid, upper(screen), ts FROM app WHERE uid % 5 <> 0";

/// `ALL_CLICKS` over the sources that keep no events.
fn raw_clicks() -> String {
    ALL_CLICKS
        .replace("FROM web", "FROM web_raw")
        .replace("FROM app", "FROM app_raw")
}

/// The views over sources that keep no events, and their queries over the retained sources of
/// the same topics.
fn raw_views() -> Vec<(&'static str, String, String)> {
    let per_page = "SELECT page, count(*) AS n, max(id) AS last FROM ({}) GROUP BY page";
    vec![
        ("raw_clicks", raw_clicks(), ALL_CLICKS.into()),
        (
            "raw_per_page",
            per_page.replace("{}", &raw_clicks()),
            per_page.replace("{}", ALL_CLICKS),
        ),
    ]
}

/// Each view, and its query over the inputs.
fn views() -> Vec<(&'static str, String, String)> {
    let per_10s = "SELECT window_start, page, count(*) AS n FROM TUMBLE(all_clicks, ts, \
                   INTERVAL '10' SECOND) GROUP BY window_start, page";
    let scores = "SELECT k, count(*) AS n, sum(v) AS total, max(v) AS top FROM \
                  (SELECT k, v FROM plain UNION ALL SELECT k, v FROM keyed) GROUP BY k";
    vec![
        ("all_clicks", ALL_CLICKS.into(), ALL_CLICKS.into()),
        (
            "per_10s",
            per_10s.into(),
            format!(
                "SELECT date_bin(INTERVAL '10' SECOND, ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') \
                 AS window_start, page, count(*) AS n FROM ({ALL_CLICKS}) GROUP BY 1, 2"
            ),
        ),
        ("scores", scores.into(), scores.into()),
        // A source and a table: the table's barrier comes as a request while the source's
        // waits in its feed.
        (
            "mixed",
            "SELECT CAST(id % 8 AS INT) AS k FROM web UNION ALL SELECT k FROM plain".into(),
            "SELECT CAST(id % 8 AS INT) AS k FROM web UNION ALL SELECT k FROM plain".into(),
        ),
        (
            "both",
            "SELECT k FROM plain UNION SELECT k FROM keyed".into(),
            "SELECT k FROM plain UNION SELECT k FROM keyed".into(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn union_views_follow_every_input_through_a_crash() {
    let Some(kafka) = kafka_target() else { return };
    let topics = [unique_topic("web"), unique_topic("app")];
    create_topic(&kafka, &topics[0], 2).await;
    create_topic(&kafka, &topics[1], 1).await;
    let (_dir, mut server, mut client) = support::start_killable("").await;
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let source = |name: &str, columns: &str, topic: &str, retain: bool| {
        format!(
            "CREATE SOURCE {name} ({columns}, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL \
             '5' SECOND) WITH (connector = 'kafka', topic = '{topic}', \
             properties.bootstrap.server = '{kafka}', scan.startup.mode = 'earliest', \
             retain = '{retain}', source.idle_timeout = '1 hour') FORMAT PLAIN ENCODE JSON;"
        )
    };
    client
        .batch_execute(&format!(
            "{}{}{}{}CREATE TABLE plain (k INT, v BIGINT); \
             CREATE TABLE keyed (id INT PRIMARY KEY, k INT, v BIGINT);",
            source("web", "id BIGINT, page VARCHAR", &topics[0], true),
            source("app", "uid BIGINT, screen VARCHAR", &topics[1], true),
            source("web_raw", "id BIGINT, page VARCHAR", &topics[0], false),
            source("app_raw", "uid BIGINT, screen VARCHAR", &topics[1], false),
        ))
        .await
        .unwrap();
    // Refused: a branch that aggregates.
    let error = client
        .batch_execute(
            "CREATE MATERIALIZED VIEW bad AS SELECT k FROM plain \
             UNION ALL SELECT count(*) FROM keyed",
        )
        .await
        .unwrap_err();
    assert_eq!(error.as_db_error().unwrap().code().code(), "0A000");
    for (name, query, _) in views().into_iter().chain(raw_views()) {
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let explain = sorted_rows(
        &client,
        &format!("EXPLAIN CREATE MATERIALIZED VIEW x AS {ALL_CLICKS}"),
    )
    .await
    .join("\n");
    assert!(explain.contains("UnionAll: watermark=[ts]"), "{explain}");

    let producer = producer(&kafka, "5");
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let base_ms = 1_767_225_600_000i64;
    let (mut sent, mut next_id, rounds, mut compared) = (0i64, 0i64, 8, 0);
    for round in 1..=rounds {
        // Events in time order per partition, so none is late under either watermark.
        let mut web = Vec::new();
        let mut app = Vec::new();
        for _ in 0..rng.random_range(50..200) {
            next_id += 1;
            let ts = base_ms + next_id * 250;
            match rng.random_bool(0.6) {
                true => web.push((
                    (next_id % 2) as i32,
                    format!(
                        r#"{{"id": {next_id}, "page": "/p{}", "ts": {ts}}}"#,
                        rng.random_range(0..4)
                    ),
                )),
                false => app.push((
                    0,
                    format!(
                        r#"{{"uid": {next_id}, "screen": "/p{}", "ts": {ts}}}"#,
                        rng.random_range(0..4)
                    ),
                )),
            }
        }
        produce(&producer, &topics[0], &web).await;
        produce(&producer, &topics[1], &app).await;
        sent += (web.len() + app.len()) as i64;
        let rows: Vec<String> = (0..rng.random_range(1..20))
            .map(|_| {
                format!(
                    "({}, {})",
                    rng.random_range(0..8),
                    rng.random_range(-10..50)
                )
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO plain VALUES {}", rows.join(", ")))
            .await
            .unwrap();
        for _ in 0..rng.random_range(1..6) {
            let id = rng.random_range(0..30);
            let sql = match rng.random_range(0..4) {
                0 => format!("DELETE FROM keyed WHERE id = {id}"),
                _ => format!(
                    "INSERT INTO keyed VALUES ({id}, {}, {})",
                    rng.random_range(0..8),
                    rng.random_range(-10..50)
                ),
            };
            client.batch_execute(&sql).await.unwrap();
        }
        if round == rounds / 2 {
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
        }
        wait_read(&client, &["web", "app"], sent).await;
        client.batch_execute("FLUSH").await.unwrap();
        for (name, _, batch) in views() {
            let streamed = sorted_rows(&client, &format!("SELECT * FROM {name}")).await;
            let expected = sorted_rows(&client, &batch).await;
            assert_eq!(streamed, expected, "view {name} after round {round}");
            compared += expected.len();
        }
        // The views' own readers take the topics in at their own pace: each view equals its
        // query over the retained sources once it has read as far, never more.
        for (name, _, batch) in raw_views() {
            let expected = sorted_rows(&client, &batch).await;
            let what = format!("view {name} to read round {round}");
            compared += wait_for_rows(&client, name, &expected, &what).await;
        }
    }
    let late = query_i64(&client, "SELECT count(*) FROM sluice_catalog.late_rows").await;
    assert_eq!(late, 0);
    assert_views_running(&client).await;
    eprintln!(
        "union views: {rounds} rounds, {sent} events, {compared} rows compared with batch queries"
    );
}
