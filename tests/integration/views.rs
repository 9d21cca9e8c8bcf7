//! Differential tests of windowed views: seeded random clickstreams, out of order within the
//! watermark delay (and, in the late variant, with rows far behind it), inserted in random
//! batches. Every view's closed windows must equal the same aggregation computed by DataFusion
//! in batch mode over the rows that were not late — and the late rows the view kept must be
//! exactly the ones this test predicts from the watermark rule, computed independently here.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support;

pub(crate) const DELAY_US: i64 = 2_000_000;
const BASE_US: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

pub(crate) struct Row {
    pub id: i64,
    pub k: &'static str,
    pub user: i64,
    pub v: Option<i64>,
    pub amount: f64,
    pub us: i64,
}

/// Rows in arrival order: mostly in time order, each up to `DELAY_US` behind the front, with
/// pauses that end sessions; `late` adds rows far behind the watermark.
pub(crate) fn generate(seed: u64, rows: usize, late: bool) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys = ["a", "b", "c", "d"];
    let mut front = BASE_US;
    (0..rows as i64)
        .map(|id| {
            front += if rng.random_bool(0.01) {
                rng.random_range(4_000_000..9_000_000)
            } else {
                rng.random_range(0..80_000)
            };
            let behind = if late && rng.random_bool(0.02) {
                rng.random_range(DELAY_US + 1..40_000_000)
            } else {
                rng.random_range(0..DELAY_US)
            };
            Row {
                id,
                k: keys[rng.random_range(0..keys.len())],
                user: rng.random_range(0..30),
                v: rng.random_bool(0.95).then(|| rng.random_range(0..100)),
                // Quarters add up exactly in any order, so sums compare exactly.
                amount: f64::from(rng.random_range(0..400)) / 4.0,
                us: front - behind,
            }
        })
        .collect()
}

/// The window shapes under test: the view's FROM clause, and which windows (start, end) hold
/// an event time.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape {
    Tumble,
    Hop,
    Cumulate,
    Session,
}

const SECOND: i64 = 1_000_000;

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Tumble => "tumble",
            Shape::Hop => "hop",
            Shape::Cumulate => "cumulate",
            Shape::Session => "session",
        }
    }

    pub(crate) fn window_clause(self, table: &str) -> String {
        match self {
            Shape::Tumble => format!("TUMBLE({table}, ts, INTERVAL '10' SECOND)"),
            Shape::Hop => format!("HOP({table}, ts, INTERVAL '5' SECOND, INTERVAL '15' SECOND)"),
            Shape::Cumulate => {
                format!("CUMULATE({table}, ts, INTERVAL '5' SECOND, INTERVAL '20' SECOND)")
            }
            Shape::Session => format!("SESSION({table}, ts, INTERVAL '3' SECOND)"),
        }
    }

    /// Whether a row at `us` is late once the watermark is `watermark`: one of its windows
    /// already closed (for sessions: it is behind the watermark).
    fn is_late(self, us: i64, watermark: i64) -> bool {
        let earliest_end = match self {
            Shape::Tumble => us.div_euclid(10 * SECOND) * 10 * SECOND + 10 * SECOND,
            // The earliest 15 s window holding `us` starts at the first 5 s boundary after
            // us - 15 s.
            Shape::Hop => {
                (us - 15 * SECOND).div_euclid(5 * SECOND) * 5 * SECOND + 5 * SECOND + 15 * SECOND
            }
            Shape::Cumulate => us.div_euclid(5 * SECOND) * 5 * SECOND + 5 * SECOND,
            Shape::Session => return us < watermark,
        };
        earliest_end <= watermark
    }

    /// The batch query: the same aggregates over the same windows, computed by DataFusion
    /// over the table, without the late rows, windows closed by `watermark` only.
    fn batch_sql(self, table: &str, view: &str, watermark: i64, aggregates: &str) -> String {
        let kept = format!("id NOT IN (SELECT id FROM excluded WHERE view = '{view}')");
        let windowed = match self {
            Shape::Tumble => format!(
                "SELECT *, us - us % 10000000 AS ws, us - us % 10000000 + 10000000 AS we \
                 FROM {table} WHERE {kept}"
            ),
            Shape::Hop => format!(
                "SELECT t.*, us - us % 5000000 - o.i * 5000000 AS ws, \
                 us - us % 5000000 - o.i * 5000000 + 15000000 AS we \
                 FROM {table} t CROSS JOIN (VALUES (0), (1), (2)) AS o(i) WHERE {kept}"
            ),
            Shape::Cumulate => format!(
                "SELECT * FROM (SELECT t.*, us - us % 20000000 AS ws, \
                 us - us % 20000000 + o.j * 5000000 AS we \
                 FROM {table} t CROSS JOIN (VALUES (1), (2), (3), (4)) AS o(j) WHERE {kept}) \
                 WHERE we > us"
            ),
            Shape::Session => format!(
                "SELECT *, min(us) OVER (PARTITION BY k, sid) AS ws, \
                 max(us) OVER (PARTITION BY k, sid) + 3000000 AS we FROM ( \
                   SELECT *, sum(fresh) OVER (PARTITION BY k ORDER BY us, id \
                     ROWS UNBOUNDED PRECEDING) AS sid FROM ( \
                     SELECT *, CASE WHEN us - lag(us) OVER (PARTITION BY k ORDER BY us, id) \
                       < 3000000 THEN 0 ELSE 1 END AS fresh \
                     FROM {table} WHERE {kept}) AS f) AS s"
            ),
        };
        format!(
            "SELECT ws, we, k, {aggregates} FROM ({windowed}) AS w \
             WHERE we <= {watermark} GROUP BY ws, we, k HAVING count(*) > 1 ORDER BY ws, we, k"
        )
    }
}

/// Every aggregate the issue names, over columns with NULLs, with and without FILTER, and
/// numeric arithmetic over them (division at Postgres' scale, numeric literals, ceil).
pub(crate) const AGGREGATES: &str = "count(*) AS n, count(v) AS nv, sum(v) AS sv, min(v) AS lo, max(v) AS hi, \
     avg(v) AS mean, count(DISTINCT user_id) AS users, approx_count_distinct(user_id) AS approx_users, \
     sum(amount) AS revenue, count(*) FILTER (WHERE v > 50) AS big, \
     sum(amount) FILTER (WHERE k = 'a') AS revenue_a, \
     sum(CAST(amount AS NUMERIC(8, 2)) * 2) / count(*) AS twice_mean_amount, \
     ceil(sum(CAST(amount AS NUMERIC(8, 2)) * 1.5) / 7) AS scaled";

/// The view's columns in the batch query's order.
const COLUMNS: &str = "ws, we, k, n, nv, sv, lo, hi, mean, users, approx_users, revenue, big, \
     revenue_a, twice_mean_amount, scaled";

pub(crate) async fn rows(client: &Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// [`rows`], sorted.
pub(crate) async fn sorted_rows(client: &Client, sql: &str) -> Vec<String> {
    let mut rows = rows(client, sql).await;
    rows.sort();
    rows
}

/// Waits until view `name` (flushed each time) has the rows `expected`; returns how many.
pub(crate) async fn wait_for_rows(
    client: &Client,
    name: &str,
    expected: &[String],
    what: &str,
) -> usize {
    let streamed =
        crate::support::wait_for(std::time::Duration::from_secs(60), what, || async move {
            client.batch_execute("FLUSH").await.unwrap();
            let streamed = sorted_rows(client, &format!("SELECT * FROM {name}")).await;
            (streamed == expected).then_some(streamed)
        })
        .await;
    streamed.len()
}

/// Every materialized view runs, none failed or stalled.
pub(crate) async fn assert_views_running(client: &Client) {
    let status = sorted_rows(
        client,
        "SELECT view, status, coalesce(last_error, '') FROM sluice_catalog.materialized_views",
    )
    .await;
    assert!(status.iter().all(|s| s.contains("|running|")), "{status:?}");
}

async fn insert_in_batches(client: &Client, table: &str, data: &[Row], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut at = 0;
    while at < data.len() {
        let n = rng.random_range(1..250).min(data.len() - at);
        let values: Vec<String> = data[at..at + n]
            .iter()
            .map(|r| {
                let ts = chrono::DateTime::from_timestamp_micros(r.us)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S%.6fZ");
                let v = r.v.map_or("NULL".to_string(), |v| v.to_string());
                format!(
                    "({}, '{}', {}, {v}, {}, '{ts}', {})",
                    r.id, r.k, r.user, r.amount, r.us
                )
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(", ")))
            .await
            .unwrap();
        at += n;
    }
}

/// The ids this test predicts late for a view: replay the batches, the watermark moving to
/// (largest event time − delay) after each one, as a view over a table sees it.
fn predicted_late(shape: Shape, data: &[Row], seed: u64) -> (BTreeSet<i64>, i64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let (mut at, mut max_us, mut watermark) = (0, i64::MIN, i64::MIN);
    let mut late = BTreeSet::new();
    while at < data.len() {
        let n = rng.random_range(1..250).min(data.len() - at);
        for r in &data[at..at + n] {
            if shape.is_late(r.us, watermark) {
                late.insert(r.id);
            }
            max_us = max_us.max(r.us);
        }
        watermark = watermark.max(max_us - DELAY_US);
        at += n;
    }
    (late, watermark)
}

async fn check(seed: u64, late: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    let table = "clicks";
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id BIGINT, k TEXT, user_id BIGINT, v BIGINT, amount DOUBLE, \
               ts TIMESTAMPTZ, us BIGINT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) APPEND ONLY;
             CREATE TABLE excluded (view TEXT, id BIGINT) APPEND ONLY;"
        ))
        .await
        .unwrap();
    let shapes = [Shape::Tumble, Shape::Hop, Shape::Cumulate, Shape::Session];
    for shape in shapes {
        client
            .batch_execute(&format!(
                "CREATE MATERIALIZED VIEW v_{name} AS \
                 SELECT CAST(window_start AS BIGINT) AS ws, CAST(window_end AS BIGINT) AS we, k, \
                 {AGGREGATES}, approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS median \
                 FROM {from} GROUP BY window_start, window_end, k HAVING count(*) > 1 \
                 EMIT ON WINDOW CLOSE",
                name = shape.name(),
                from = shape.window_clause(table),
            ))
            .await
            .unwrap();
    }
    let data = generate(seed, 6_000, late);
    insert_in_batches(&client, table, &data, seed).await;
    client.batch_execute("FLUSH").await.unwrap();
    for shape in shapes {
        let view = format!("v_{}", shape.name());
        let (expected_late, watermark) = predicted_late(shape, &data, seed);
        let kept_late: BTreeSet<i64> = rows(
            &client,
            &format!("SELECT \"row\" FROM sluice_catalog.late_rows WHERE view = '{view}'"),
        )
        .await
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(r).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
        assert_eq!(kept_late, expected_late, "seed {seed}: late rows of {view}");
        assert_eq!(
            late,
            !expected_late.is_empty(),
            "seed {seed}: {view} should see late rows"
        );
        if !expected_late.is_empty() {
            let values: Vec<String> = expected_late
                .iter()
                .map(|id| format!("('{view}', {id})"))
                .collect();
            client
                .batch_execute(&format!(
                    "INSERT INTO excluded VALUES {}",
                    values.join(", ")
                ))
                .await
                .unwrap();
        }
        let streamed = rows(
            &client,
            &format!("SELECT {COLUMNS} FROM {view} ORDER BY ws, we, k"),
        )
        .await;
        let batch = rows(
            &client,
            &shape.batch_sql(table, &view, watermark, AGGREGATES),
        )
        .await;
        assert!(
            batch.len() > 20,
            "seed {seed}: {view}: too few windows to compare"
        );
        assert_eq!(
            streamed, batch,
            "seed {seed}: {view} differs from the batch result"
        );
        // The t-digest merges partial digests, so its median is close, not identical.
        let median = "approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY v)";
        let streamed = rows(
            &client,
            &format!("SELECT median FROM {view} ORDER BY ws, we, k"),
        )
        .await;
        let batch = rows(&client, &shape.batch_sql(table, &view, watermark, median)).await;
        assert_eq!(streamed.len(), batch.len());
        for (s, b) in streamed.iter().zip(&batch) {
            let b = b.rsplit('|').next().unwrap();
            let close = match (s.parse::<f64>(), b.parse::<f64>()) {
                (Ok(s), Ok(b)) => (s - b).abs() <= 10.0,
                _ => s == b,
            };
            assert!(close, "seed {seed}: {view} median {s} vs {b}");
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_equal_batch_results() {
    for seed in [1, 2, 3] {
        check(seed, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_equal_batch_results_with_late_rows() {
    for seed in [4, 5] {
        check(seed, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_at_its_state_limit_stalls_instead_of_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let args = sluicedb::config::ServeArgs {
        storage: Some(dir.path().to_str().unwrap().to_string()),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        view_max_open_groups: Some(5),
        ..Default::default()
    };
    let server =
        sluicedb::server::Server::start(args.resolve(sluicedb::config::AwsEnv::default()).unwrap())
            .await
            .unwrap();
    let client = support::connect(server.pg_addr()).await;
    client
        .batch_execute(
            "CREATE TABLE t (k BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) APPEND ONLY;
             CREATE MATERIALIZED VIEW per_key AS SELECT window_start, k, count(*) AS n
               FROM TUMBLE(t, ts, INTERVAL '1' HOUR) GROUP BY window_start, k;
             INSERT INTO t SELECT value, TIMESTAMPTZ '2026-01-01T00:00:00Z' FROM generate_series(1, 8);
             FLUSH;
             INSERT INTO t VALUES (100, '2026-01-01T00:00:01Z');
             FLUSH;",
        )
        .await
        .unwrap();
    let status = rows(
        &client,
        "SELECT status, rows_in, open_groups, last_error FROM sluice_catalog.materialized_views",
    )
    .await;
    assert!(
        status[0].starts_with("stalled|8|8|8 open groups reached"),
        "{status:?}"
    );
    // Nothing was dropped: the table has every row, the view shows what it took in.
    assert_eq!(rows(&client, "SELECT count(*) FROM t").await, vec!["9"]);
    assert_eq!(rows(&client, "SELECT sum(n) FROM per_key").await, vec!["8"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_answers_over_the_extended_protocol_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    client
        .batch_execute(
            "CREATE TABLE t (k TEXT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) APPEND ONLY",
        )
        .await
        .unwrap();
    // tokio-postgres' query() prepares: Parse, Describe, Bind, Execute.
    let rows = client
        .query(
            "EXPLAIN CREATE MATERIALIZED VIEW v AS SELECT window_start, k, count(*) AS n \
             FROM HOP(t, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE) GROUP BY window_start, k",
            &[],
        )
        .await
        .unwrap();
    let kinds: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(kinds, ["logical_plan", "streaming_plan"]);
    let streaming: String = rows[1].get(1);
    assert!(
        streaming.contains("WindowAggregate: window=hop(slide=10s, size=60s, pane=10s)"),
        "{streaming}"
    );
    let logical: String = rows[0].get(1);
    assert!(logical.contains("WindowAggregate"), "{logical}");
    server.shutdown().await;
}

/// `sluicedb_plans_reused_total` as the server's metrics show it now.
fn plans_reused(server: &sluicedb::server::Server) -> u64 {
    let metrics = support::http_get(server.http_addr(), "/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluicedb_plans_reused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sluicedb_plans_reused_total in {metrics}"))
}

/// A dashboard sends one query again and again, and its plan is kept (`database::plan_cache`).
/// The kept plan must answer as a new plan would: the rows the view holds at each run (while
/// it ingests, with no commit in between), a re-created view's new columns, each run's
/// `now()` and parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_plan_answers_as_a_new_plan_would() {
    const ROWS: i64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE ids (id BIGINT) WITH (connector = 'datagen', rows.per.second = '5000',
               datagen.rows = '{ROWS}', fields.id.kind = 'sequence');
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(id) AS s FROM ids"
        ))
        .await
        .unwrap();
    let reused_before = plans_reused(&server);
    let query = "SELECT n, s FROM totals";
    let prepared = client.prepare(query).await.unwrap();
    // Every run, by either protocol, sees a count no smaller than the last one's, and a sum
    // of the ids 1..=n: the view's rows at that instant, not those of the run that planned.
    let (mut last, mut seen) = (0i64, std::collections::BTreeSet::new());
    while last < ROWS {
        let simple = rows(&client, query).await;
        let extended = client.query(&prepared, &[]).await.unwrap();
        let runs = simple.iter().map(|r| {
            let (n, s) = r.split_once('|').unwrap();
            (n.parse::<i64>().unwrap_or(0), s.parse::<i64>().unwrap_or(0))
        });
        let runs = runs.chain(extended.iter().map(|r| {
            let (n, s): (i64, Option<i64>) = (r.get(0), r.get(1));
            (n, s.unwrap_or(0))
        }));
        for (n, s) in runs.collect::<Vec<_>>() {
            assert!(n >= last, "the count went back from {last} to {n}");
            assert_eq!(s, n * (n + 1) / 2, "the sum of {n} ids");
            last = n;
            seen.insert(n);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen.len() >= 5, "the count was only ever {seen:?}");
    let reused = plans_reused(&server) - reused_before;
    assert!(reused >= 5, "{reused} runs reused a plan");

    // Each run's own now(), and its own parameters.
    let now = "SELECT CAST(now() AS TEXT), n FROM totals";
    let first = rows(&client, now).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_ne!(first, rows(&client, now).await);
    let over = client
        .prepare("SELECT count(*) FROM totals WHERE n > $1")
        .await
        .unwrap();
    for (bound, expected) in [(ROWS - 1, 1i64), (ROWS, 0)] {
        let row = client.query_one(&over, &[&bound]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), expected, "n > {bound}");
    }

    // The same text over a view of that name re-created with other columns.
    let all = "SELECT * FROM totals";
    assert_eq!(rows(&client, all).await.len(), 1);
    client
        .batch_execute(
            "DROP MATERIALIZED VIEW totals;
             CREATE MATERIALIZED VIEW totals AS SELECT id % 3 AS r, count(*) AS n FROM ids GROUP BY id % 3",
        )
        .await
        .unwrap();
    let columns = client.prepare(all).await.unwrap();
    let names: Vec<&str> = columns.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["r", "n"]);
    server.shutdown().await;
}

/// `ORDER BY … LIMIT n` over a view whose rows are partly in files and partly in memory (the
/// windows closed since the last checkpoint, the open ones): the TopK's order is offered to
/// both (`database::sort_into_union`), and the answer must be the first n rows of all of them,
/// in either direction, with NULLs where the query puts them. Checked against the view's rows
/// read whole and ordered here, once with rows in memory and again after they are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_by_limit_over_files_and_live_rows_takes_the_first_rows_of_all() {
    const ROWS: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE clicks (ts TIMESTAMPTZ, action VARCHAR, amount DOUBLE PRECISION,
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'datagen', rows.per.second = '15000', datagen.rows = '{ROWS}',
               fields.ts.kind = 'event_time', fields.ts.start = '2026-01-01T00:00:00Z',
               fields.ts.step = '1ms', fields.action.values = 'view,click,buy,share');
             CREATE MATERIALIZED VIEW clicks_1s AS SELECT window_start, action, count(*) AS events,
               max(CASE WHEN action = 'buy' THEN amount END) AS buy
             FROM TUMBLE(clicks, ts, INTERVAL '1' SECOND) GROUP BY window_start, action"
        ))
        .await
        .unwrap();
    // Some windows committed to files while the source still runs, the rest left in memory.
    let counted = "SELECT CAST(coalesce(sum(events), 0) AS BIGINT) FROM clicks_1s";
    while rows(&client, counted).await[0].parse::<i64>().unwrap() < ROWS / 3 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client.batch_execute("FLUSH").await.unwrap();
    while rows(&client, counted).await[0] != ROWS.to_string() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let plan = rows(
        &client,
        "EXPLAIN SELECT * FROM clicks_1s ORDER BY window_start DESC, action LIMIT 10",
    )
    .await
    .join("\n");
    assert!(
        plan.contains("reverse_row_groups=true") && plan.contains("output_ordering="),
        "the order was not offered to the view's files and rows:\n{plan}"
    );
    for committed in [false, true] {
        if committed {
            client.batch_execute("FLUSH").await.unwrap();
        }
        let mut all = clicks(&client, "SELECT window_start, action, buy FROM clicks_1s").await;
        assert_eq!(all.len(), 240, "60 windows of 4 actions");
        // Newest windows first (the rows in memory), then oldest first (the files).
        all.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
        let sql = "SELECT window_start, action, buy FROM clicks_1s
                   ORDER BY window_start DESC, action LIMIT 10";
        assert_eq!(clicks(&client, sql).await, all[..10], "{sql} ({committed})");
        all.sort_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
        let sql = "SELECT window_start, action, buy FROM clicks_1s
                   ORDER BY window_start, action DESC LIMIT 10";
        assert_eq!(clicks(&client, sql).await, all[..10], "{sql} ({committed})");
        // A nullable key, NULLs first: every window's three NULLs lead, then the largest.
        all.sort_by(|x, y| {
            let by_buy = match (x.2, y.2) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (Some(a), Some(b)) => b.total_cmp(&a),
            };
            by_buy.then(y.0.cmp(&x.0)).then(x.1.cmp(&y.1))
        });
        for n in [7, 185] {
            let sql = format!(
                "SELECT window_start, action, buy FROM clicks_1s
                 ORDER BY buy DESC NULLS FIRST, window_start DESC, action LIMIT {n}"
            );
            assert_eq!(clicks(&client, &sql).await, all[..n], "{sql} ({committed})");
        }
    }
    server.shutdown().await;
}

/// Rows of (window_start as text, action, buy) from `sql`.
async fn clicks(client: &Client, sql: &str) -> Vec<(String, String, Option<f64>)> {
    rows(client, sql)
        .await
        .iter()
        .map(|r| {
            let f: Vec<&str> = r.split('|').collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().ok())
        })
        .collect()
}
