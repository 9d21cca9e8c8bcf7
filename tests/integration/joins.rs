//! Joins in materialized views. Regular joins (INNER, LEFT, RIGHT, FULL, multi-way, semi and
//! anti joins, a self-join with a residual condition, windows over a join, a view over a join
//! view) over an append-only table and two keyed tables get random inserts, updates, key moves
//! and deletes on every side; after every `FLUSH` each view must equal the same query run by
//! DataFusion in batch mode over the tables — through a kill -9 between a commit and the next
//! checkpoint, and for views created midway (backfilled). A join of two Kafka topics (one
//! source keeping its events, one read by the view's own reader) and a keyed table is checked
//! the same way across a kill -9.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_postgres::Client;

use crate::kafka::{create_topic, produce, producer, unique_topic, wait_read};
use crate::support::{self, kafka_target, query_i64};
use crate::views::{assert_views_running, sorted_rows, wait_for_rows};

const LEFT: &str = "SELECT o.id, o.amount, c.country FROM orders o \
                    LEFT JOIN customers c ON o.customer_id = c.id AND c.tier > 1";

/// Each view, and the query giving its rows in batch mode.
fn views() -> Vec<(&'static str, String, String)> {
    let same = |name: &'static str, query: &str| (name, query.to_string(), query.to_string());
    let windows = "SELECT w.window_start, c.country, count(*) AS n, sum(w.amount) AS total \
                   FROM TUMBLE(orders, ts, INTERVAL '1' MINUTE) AS w \
                   JOIN customers AS c ON w.customer_id = c.id GROUP BY w.window_start, c.country";
    vec![
        same(
            "by_country",
            "SELECT c.country, count(*) AS n, sum(o.amount) AS total, max(c.tier) AS top \
             FROM orders o JOIN customers c ON o.customer_id = c.id GROUP BY c.country",
        ),
        same("left_orders", LEFT),
        same(
            "right_customers",
            "SELECT c.id, c.country, o.id AS order_id FROM orders o \
             RIGHT JOIN customers c ON o.customer_id = c.id AND o.amount > 50",
        ),
        same(
            "full_payments",
            "SELECT o.id AS order_id, o.amount, p.order_id AS paid_id, p.paid \
             FROM orders o FULL JOIN payments p ON o.id = p.order_id",
        ),
        same(
            "three_way",
            "SELECT c.country, count(*) AS n, sum(p.paid) AS paid FROM orders o \
             JOIN customers c ON o.customer_id = c.id JOIN payments p ON p.order_id = o.id \
             WHERE c.tier <> 2 GROUP BY c.country",
        ),
        same(
            "paid_in_full",
            "SELECT id, amount FROM orders o WHERE EXISTS \
             (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.paid >= o.amount)",
        ),
        same(
            "unpaid",
            "SELECT id, customer_id FROM orders o WHERE NOT EXISTS \
             (SELECT 1 FROM payments p WHERE p.order_id = o.id)",
        ),
        same(
            "known_customers",
            "SELECT id, amount FROM orders WHERE customer_id IN \
             (SELECT id FROM customers WHERE country <> 'US')",
        ),
        same(
            "compatriots",
            "SELECT a.id, b.id AS other FROM customers a, customers b \
             WHERE a.country = b.country AND a.id < b.id AND a.tier + b.tier > 2",
        ),
        same("per_minute", windows),
        (
            "left_by_country",
            "SELECT country, count(*) AS n, sum(amount) AS total FROM left_orders GROUP BY country"
                .into(),
            format!(
                "SELECT country, count(*) AS n, sum(amount) AS total FROM ({LEFT}) GROUP BY country"
            ),
        ),
    ]
}

/// Every view equals its batch query; returns the rows compared.
async fn check(client: &Client, views: &[(&str, String, String)], round: usize) -> usize {
    let mut compared = 0;
    for (name, _, batch) in views {
        let streamed = sorted_rows(client, &format!("SELECT * FROM {name}")).await;
        let expected = sorted_rows(client, batch).await;
        assert_eq!(streamed, expected, "view {name} after round {round}");
        compared += expected.len();
    }
    compared
}

/// The warnings (SQLSTATE and message) the server sends while running `sql`.
async fn warnings_of(port: u16, sql: &str) -> Vec<String> {
    use futures::StreamExt;
    let url = format!("host=127.0.0.1 port={port} user=sluice dbname=sluice");
    let (client, mut connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let _ = sender.send(format!("{} {}", notice.code().code(), notice.message()));
            }
        }
    });
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let mut warnings = Vec::new();
    while let Some(warning) = receiver.recv().await {
        warnings.push(warning);
    }
    warnings
}

/// A random write to one of the three tables.
fn statement(rng: &mut ChaCha8Rng, next_order: &mut i64) -> String {
    let countries = ["FR", "DE", "US", "JP"];
    let customer = |rng: &mut ChaCha8Rng| match rng.random_bool(0.05) {
        true => "NULL".to_string(),
        false => rng.random_range(0..15).to_string(),
    };
    match rng.random_range(0..12) {
        0..4 => {
            let rows: Vec<String> = (0..rng.random_range(1..12))
                .map(|_| {
                    *next_order += 1;
                    format!(
                        "({}, {}, {}, TIMESTAMPTZ '2026-01-01 00:00:00+00' + INTERVAL '{}' SECOND)",
                        *next_order,
                        customer(rng),
                        rng.random_range(1..100),
                        rng.random_range(0..300)
                    )
                })
                .collect();
            format!("INSERT INTO orders VALUES {}", rows.join(", "))
        }
        4..6 => {
            let rows: Vec<String> = (0..rng.random_range(1..4))
                .map(|_| {
                    format!(
                        "({}, '{}', {})",
                        rng.random_range(0..15),
                        countries[rng.random_range(0..countries.len())],
                        rng.random_range(0..4)
                    )
                })
                .collect();
            format!("INSERT INTO customers VALUES {}", rows.join(", "))
        }
        6 => format!(
            "UPDATE customers SET tier = tier + 1 WHERE country = '{}'",
            countries[rng.random_range(0..countries.len())]
        ),
        // A key moves: its orders follow the row that has the key now.
        7 => format!(
            "UPDATE customers SET id = {} WHERE id = {}",
            rng.random_range(0..15),
            rng.random_range(0..15)
        ),
        8 => format!(
            "DELETE FROM customers WHERE id = {}",
            rng.random_range(0..15)
        ),
        9..11 => {
            let rows: Vec<String> = (0..rng.random_range(1..5))
                .map(|_| {
                    format!(
                        "({}, {})",
                        rng.random_range(0..=(*next_order).max(1)),
                        rng.random_range(0..120)
                    )
                })
                .collect();
            format!("INSERT INTO payments VALUES {}", rows.join(", "))
        }
        _ => format!(
            "DELETE FROM payments WHERE order_id % 7 = {}",
            rng.random_range(0..7)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regular_joins_follow_every_change_of_every_side_through_a_crash() {
    let (_dir, mut server, mut client) = support::start_killable_with(
        "CREATE TABLE orders (id BIGINT, customer_id INT, amount BIGINT, ts TIMESTAMPTZ); \
         CREATE TABLE customers (id INT PRIMARY KEY, country TEXT, tier INT); \
         CREATE TABLE payments (order_id BIGINT PRIMARY KEY, paid BIGINT)",
        // Checkpoints only at FLUSH, so the kill comes after writes no checkpoint holds.
        &[
            "--compaction-interval",
            "1s",
            "--compaction-target-size",
            "1MB",
            "--checkpoint-interval",
            "1h",
        ],
    )
    .await;
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let mut views = views();
    // Created midway: they backfill from joined tables holding rows by then.
    let later: Vec<_> = views
        .extract_if(.., |v| v.0 == "three_way" || v.0 == "left_by_country")
        .collect();
    for (name, query, _) in &views {
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    // The user is warned, once, that a join keeps every row of an append-only input.
    let warnings = warnings_of(
        server.pg_port,
        "CREATE MATERIALIZED VIEW kept AS SELECT o.id FROM orders o JOIN customers c \
         ON o.customer_id = c.id; CREATE MATERIALIZED VIEW bounded AS SELECT a.id \
         FROM customers a JOIN payments p ON a.id = p.order_id",
    )
    .await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("01000 the join keeps every row of \"orders\""),
        "{warnings:?}"
    );
    client
        .batch_execute("DROP MATERIALIZED VIEW kept, bounded")
        .await
        .unwrap();
    let explain = sorted_rows(
        &client,
        &format!("EXPLAIN CREATE MATERIALIZED VIEW x AS {LEFT}"),
    )
    .await
    .join("\n");
    assert!(
        explain.contains("Join: type=left on=[customer_id@1 = id@0]")
            && explain.contains("Filter: tier@2 > 1"),
        "{explain}"
    );

    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (rounds, mut statements, mut compared, mut next_order) = (30, 0, 0, 0i64);
    for round in 1..=rounds {
        for _ in 0..rng.random_range(1..6) {
            statements += 1;
            let sql = statement(&mut rng, &mut next_order);
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
        if round == rounds / 3 {
            for (name, query, _) in &later {
                client
                    .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
            views.extend(later.iter().cloned());
        }
        if round == rounds * 2 / 3 {
            // Writes after the last checkpoint: the views take them in after the restart,
            // from their restored join state, with nothing joined twice.
            tokio::time::sleep(Duration::from_secs(2)).await;
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
        }
        client.batch_execute("FLUSH").await.unwrap();
        compared += check(&client, &views, round).await;
    }
    assert_views_running(&client).await;
    let state = query_i64(
        &client,
        "SELECT CAST(min(state_bytes) AS BIGINT) FROM sluice_catalog.materialized_views \
         WHERE view IN ('left_orders', 'unpaid', 'compatriots')",
    )
    .await;
    assert!(state > 0, "join views hold no state: {state}");
    eprintln!(
        "joins: {rounds} rounds, {statements} statements, {} views, {compared} rows compared \
         with batch queries",
        views.len()
    );
}

/// Clicks joined to the impressions they came from and to the ad's campaign: two Kafka topics
/// (the impressions kept by their source, the clicks read by the view's own reader) and a
/// keyed table, through a kill -9 — each view equals its query over sources keeping every
/// event once it has read as far. An interval join of the topics (whose events come in time
/// order, so none is late) equals the batch join; a window join of two aggregating
/// subqueries equals the batch join of the windows each topic's watermark closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_of_two_topics_and_a_table_resumes_after_a_kill() {
    let Some(kafka) = kafka_target() else { return };
    let topics = [unique_topic("impressions"), unique_topic("clicks")];
    create_topic(&kafka, &topics[0], 2).await;
    create_topic(&kafka, &topics[1], 1).await;
    let (_dir, mut server, mut client) = support::start_killable("").await;
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let source = |name: &str, columns: &str, topic: &str, retain: bool| {
        format!(
            "CREATE SOURCE {name} ({columns}, ts TIMESTAMPTZ, \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'kafka', \
             topic = '{topic}', properties.bootstrap.server = '{kafka}', \
             scan.startup.mode = 'earliest', retain = '{retain}') FORMAT PLAIN ENCODE JSON;"
        )
    };
    client
        .batch_execute(&format!(
            "{}{}{}CREATE TABLE ads (id INT PRIMARY KEY, campaign TEXT);",
            source("impressions", "imp_id BIGINT, ad_id INT", &topics[0], true),
            source("clicks", "click_id BIGINT, imp_id BIGINT", &topics[1], true),
            source(
                "clicks_raw",
                "click_id BIGINT, imp_id BIGINT",
                &topics[1],
                false
            ),
        ))
        .await
        .unwrap();
    let clicked = "SELECT c.click_id, i.imp_id, i.ad_id, a.campaign FROM clicks c \
                   JOIN impressions i ON c.imp_id = i.imp_id LEFT JOIN ads a ON i.ad_id = a.id";
    let per_campaign = "SELECT a.campaign, count(*) AS clicks, count(DISTINCT i.imp_id) AS imps \
                        FROM clicks c JOIN impressions i ON c.imp_id = i.imp_id \
                        JOIN ads a ON i.ad_id = a.id GROUP BY a.campaign";
    let unclicked = "SELECT i.imp_id FROM impressions i WHERE NOT EXISTS \
                     (SELECT 1 FROM clicks c WHERE c.imp_id = i.imp_id)";
    // Within 5 s of each other: rows go once the other topic's watermark is 5 s past them.
    let attributed = "SELECT c.click_id, i.imp_id, c.ts - i.ts AS delay FROM clicks c \
                      JOIN impressions i ON c.imp_id = i.imp_id \
                      AND c.ts BETWEEN i.ts - INTERVAL '5' SECOND AND i.ts + INTERVAL '5' SECOND";
    let per_2s = |input: &str| {
        format!(
            "SELECT window_start, window_end, count(*) AS n \
             FROM TUMBLE({input}, ts, INTERVAL '2' SECOND) GROUP BY window_start, window_end"
        )
    };
    let ctr = |imps: &str, clicks: &str| {
        format!(
            "SELECT v.window_start, v.n AS imps, k.n AS clicks FROM ({imps}) v JOIN ({clicks}) k \
             ON v.window_start = k.window_start"
        )
    };
    let raw = |query: &str| query.replace("FROM clicks c", "FROM clicks_raw c");
    let views = [
        ("clicked", raw(clicked), clicked.to_string()),
        ("per_campaign", raw(per_campaign), per_campaign.to_string()),
        ("unclicked", raw(unclicked), unclicked.to_string()),
        ("attributed", raw(attributed), attributed.to_string()),
        (
            "ctr",
            ctr(&per_2s("impressions"), &per_2s("clicks_raw")),
            String::new(),
        ),
    ];
    for (name, query, _) in &views {
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let producer = producer(&kafka, "5");
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let base_ms = 1_767_225_600_000i64;
    let (rounds, mut sent, mut imps, mut clicks, mut compared) = (6, 0i64, 0i64, 0i64, 0);
    for round in 1..=rounds {
        let mut impressions = Vec::new();
        for _ in 0..rng.random_range(20..80) {
            imps += 1;
            impressions.push((
                (imps % 2) as i32,
                format!(
                    r#"{{"imp_id": {imps}, "ad_id": {}, "ts": {}}}"#,
                    rng.random_range(0..6),
                    base_ms + imps * 100
                ),
            ));
        }
        // Clicks of impressions sent before and of some not sent yet.
        let mut clicked_imps = Vec::new();
        for _ in 0..rng.random_range(10..60) {
            clicks += 1;
            clicked_imps.push((
                0,
                format!(
                    r#"{{"click_id": {clicks}, "imp_id": {}, "ts": {}}}"#,
                    rng.random_range(1..imps + 40),
                    base_ms + clicks * 150
                ),
            ));
        }
        produce(&producer, &topics[0], &impressions).await;
        produce(&producer, &topics[1], &clicked_imps).await;
        sent += (impressions.len() + clicked_imps.len()) as i64;
        let ad = rng.random_range(0..6);
        let sql = match rng.random_range(0..4) {
            0 => format!("DELETE FROM ads WHERE id = {ad}"),
            _ => format!(
                "INSERT INTO ads VALUES ({ad}, 'c{}')",
                rng.random_range(0..3)
            ),
        };
        client.batch_execute(&sql).await.unwrap();
        if round == rounds / 2 {
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
        }
        wait_read(&client, &["impressions", "clicks"], sent).await;
        // Each topic's watermark: its partitions' least latest time, less 1 s (the
        // impressions alternate over two partitions).
        let (imps_wm, clicks_wm) = (
            base_ms + (imps - 1) * 100 - 1000,
            base_ms + clicks * 150 - 1000,
        );
        let closed = |input: &str, watermark_ms: i64| {
            format!(
                "SELECT * FROM ({}) WHERE window_end <= to_timestamp({watermark_ms} / 1000.0)",
                per_2s(input)
            )
        };
        let closed_ctr = ctr(
            &closed("impressions", imps_wm),
            &closed("clicks", clicks_wm),
        );
        for (name, _, batch) in &views {
            let batch = match batch.is_empty() {
                true => &closed_ctr,
                false => batch,
            };
            let expected = sorted_rows(&client, batch).await;
            let what = format!("view {name} to read round {round}");
            compared += wait_for_rows(&client, name, &expected, &what).await;
        }
    }
    assert_views_running(&client).await;
    eprintln!(
        "joins over topics: {rounds} rounds, {sent} events, {compared} rows compared with batch \
         queries"
    );
}

/// A lookup join joins each row with the dimension as it is when the row arrives: rounds of
/// random upserts and deletes of the dimension, each followed by new events; after each round
/// the views equal the batch join of each round's events with the dimension of that round —
/// later changes rewrite nothing — through a kill -9 after writes no checkpoint holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_joins_join_the_dimension_as_it_was_when_each_row_arrived() {
    let (_dir, mut server, mut client) = support::start_killable_with(
        "CREATE TABLE events (id BIGINT, user_id INT, round INT); \
         CREATE TABLE users (id INT PRIMARY KEY, country TEXT)",
        &["--checkpoint-interval", "1h"],
    )
    .await;
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let inner = "SELECT e.id, e.user_id, u.country FROM events e \
                 JOIN users FOR SYSTEM_TIME AS OF PROCTIME() u ON e.user_id = u.id";
    let left = "SELECT e.id, u.country FROM events e \
                LEFT JOIN users FOR SYSTEM_TIME AS OF PROCTIME() AS u \
                ON e.user_id = u.id AND u.country <> 'US'";
    let per_country = "SELECT country, count(*) AS n FROM enriched GROUP BY country";
    for (name, query) in [
        ("enriched", inner),
        ("enriched_left", left),
        ("per_country", per_country),
    ] {
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    // Each round's events joined with the users of that round, in batch.
    let as_of = |query: &str, round: usize| {
        format!(
            "{} WHERE e.round = {round}",
            query.replace(" FOR SYSTEM_TIME AS OF PROCTIME()", "")
        )
    };
    let mut expected: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let (rounds, mut next_id) = (12, 0i64);
    for round in 1..=rounds {
        for _ in 0..rng.random_range(1..5) {
            let user = rng.random_range(0..10);
            let sql = match rng.random_range(0..4) {
                0 => format!("DELETE FROM users WHERE id = {user}"),
                _ => format!(
                    "INSERT INTO users VALUES ({user}, '{}')",
                    ["FR", "DE", "US"][rng.random_range(0..3)]
                ),
            };
            client.batch_execute(&sql).await.unwrap();
        }
        client.batch_execute("FLUSH").await.unwrap();
        let events: Vec<String> = (0..rng.random_range(1..20))
            .map(|_| {
                next_id += 1;
                format!("({next_id}, {}, {round})", rng.random_range(0..12))
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO events VALUES {}", events.join(", ")))
            .await
            .unwrap();
        for (kept, query) in expected.iter_mut().zip([inner, left]) {
            kept.extend(sorted_rows(&client, &as_of(query, round)).await);
            kept.sort();
        }
        if round == rounds / 2 {
            // The events are in no checkpoint: after the restart they join the dimension the
            // last checkpoint kept, which is the one they arrived to.
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
        }
        client.batch_execute("FLUSH").await.unwrap();
        for (name, kept) in ["enriched", "enriched_left"].iter().zip(&expected) {
            let streamed = sorted_rows(&client, &format!("SELECT * FROM {name}")).await;
            assert_eq!(&streamed, kept, "view {name} after round {round}");
        }
        let counted = sorted_rows(&client, "SELECT * FROM per_country").await;
        let batch = sorted_rows(
            &client,
            "SELECT country, count(*) AS n FROM enriched GROUP BY country",
        )
        .await;
        assert_eq!(counted, batch, "per_country after round {round}");
    }
    assert_views_running(&client).await;
    eprintln!(
        "lookup joins: {rounds} rounds, {next_id} events, {} and {} rows compared",
        expected[0].len(),
        expected[1].len()
    );
}

/// Interval and window joins over two tables with watermarks, fed out-of-order rows in random
/// statements (some behind their table's watermark): after every `FLUSH` the interval join
/// equals the batch join of the rows that were on time — the late ones predicted here from
/// each table's largest time before the statement — and its late rows are exactly those; a
/// TUMBLE view over it closes windows by its watermark; a window join of two windowed views,
/// and the same join of two aggregating subqueries (run as parts of the view), equal the batch
/// join of their closed windows; a LEFT join with a subquery whose counts change equals the
/// batch query. Its state stays bounded while a join without time
/// bounds over the same rows keeps them all — through a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_joins_keep_what_can_still_match_and_equal_the_batch_join() {
    const CLICKS_PER_AD: &str = "WITH k AS (SELECT ad_id, count(*) AS n FROM clicks GROUP BY ad_id) \
                                 SELECT i.imp_id, i.ad_id, k.n FROM impressions i \
                                 LEFT JOIN k ON i.ad_id = k.ad_id";
    use std::collections::BTreeSet;
    let table = |name: &str, id: &str| {
        format!(
            "CREATE TABLE {name} ({id} BIGINT, ad_id INT, ts TIMESTAMPTZ, \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) APPEND ONLY;"
        )
    };
    let (_dir, mut server, mut client) = support::start_killable_with(
        &format!(
            "{}{}",
            table("clicks", "click_id"),
            table("impressions", "imp_id")
        ),
        &["--checkpoint-interval", "1h"],
    )
    .await;
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let attributed = "SELECT c.click_id, i.imp_id, c.ad_id, c.ts AS click_ts, \
                      c.ts - i.ts AS delay FROM clicks c JOIN impressions i \
                      ON c.ad_id = i.ad_id AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '30' SECOND";
    let per_10s = |input: &str| {
        format!(
            "SELECT window_start, window_end, ad_id, count(*) AS n FROM \
             TUMBLE({input}, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, ad_id"
        )
    };
    let views = [
        ("attributed", attributed.to_string()),
        (
            "attributed_10s",
            "SELECT window_start, count(*) AS n, sum(delay) AS delays FROM \
             TUMBLE(attributed, click_ts, INTERVAL '10' SECOND) GROUP BY window_start \
             EMIT ON WINDOW CLOSE"
                .to_string(),
        ),
        ("imp_10s", per_10s("impressions")),
        ("click_10s", per_10s("clicks")),
        (
            "ctr",
            "SELECT v.window_start, v.ad_id, v.n AS views, k.n AS clicks FROM imp_10s v \
             JOIN click_10s k ON v.window_start = k.window_start AND v.ad_id = k.ad_id"
                .to_string(),
        ),
        // The window join as the issue writes it: subqueries that aggregate, each run as a
        // part of the view.
        (
            "ctr_parts",
            format!(
                "SELECT v.window_start, v.ad_id, v.n AS views, k.n AS clicks FROM ({}) v \
                 JOIN ({}) k ON v.window_start = k.window_start AND v.ad_id = k.ad_id",
                per_10s("impressions"),
                per_10s("clicks")
            ),
        ),
        // A part whose rows change (no windows), from WITH, joined by a LEFT join.
        ("clicks_per_ad", CLICKS_PER_AD.to_string()),
        // The same pairs without time bounds: a regular join, which keeps every row.
        (
            "unbounded",
            "SELECT c.click_id, i.imp_id FROM clicks c JOIN impressions i ON c.click_id = i.imp_id"
                .to_string(),
        ),
    ];
    for (name, query) in &views {
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    for (name, kind) in [
        ("attributed", "IntervalJoin"),
        ("ctr", "IntervalJoin"),
        ("ctr_parts", "IntervalJoin"),
    ] {
        let query = &views.iter().find(|v| v.0 == name).unwrap().1;
        let explain = sorted_rows(
            &client,
            &format!("EXPLAIN CREATE MATERIALIZED VIEW x AS {query}"),
        )
        .await
        .join("\n");
        assert!(explain.contains(kind), "{name}: {explain}");
    }

    let mut rng = ChaCha8Rng::seed_from_u64(26);
    let base = 1_767_225_600i64; // seconds
    // Per table: the largest time so far, the ids taken late.
    let mut largest = [i64::MIN, i64::MIN];
    let mut late: [BTreeSet<i64>; 2] = [BTreeSet::new(), BTreeSet::new()];
    let (rounds, mut next_id, mut compared) = (40, 0i64, 0usize);
    let mut state_at = Vec::new();
    for round in 1..=rounds {
        for _ in 0..rng.random_range(2..6) {
            let side = rng.random_range(0..2usize);
            let rows: Vec<(i64, i64)> = (0..rng.random_range(1..6))
                .map(|_| {
                    next_id += 1;
                    // Time moves on 8 s a round; a row is up to 12 s early or 3 s ahead.
                    (next_id, round * 8 + rng.random_range(-12..3))
                })
                .collect();
            let watermark = largest[side].saturating_sub(5);
            for (id, second) in &rows {
                if *second < watermark {
                    late[side].insert(*id);
                }
            }
            largest[side] = largest[side].max(rows.iter().map(|r| r.1).max().unwrap());
            let values: Vec<String> = rows
                .iter()
                .map(|(id, second)| {
                    format!(
                        "({id}, {}, to_timestamp({}))",
                        rng.random_range(0..3),
                        base + second
                    )
                })
                .collect();
            let table = ["clicks", "impressions"][side];
            client
                .batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(", ")))
                .await
                .unwrap();
        }
        if round == rounds / 2 {
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
        }
        client.batch_execute("FLUSH").await.unwrap();
        let on_time = |table: &str, id: &str, late: &BTreeSet<i64>| match late.is_empty() {
            true => format!("(SELECT * FROM {table})"),
            false => format!(
                "(SELECT * FROM {table} WHERE {id} NOT IN ({}))",
                late.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let batch = attributed
            .replace(
                "FROM clicks c",
                &format!("FROM {} c", on_time("clicks", "click_id", &late[0])),
            )
            .replace(
                "JOIN impressions i",
                &format!("JOIN {} i", on_time("impressions", "imp_id", &late[1])),
            );
        let streamed = sorted_rows(&client, "SELECT * FROM attributed").await;
        assert_eq!(
            streamed,
            sorted_rows(&client, &batch).await,
            "attributed after round {round}"
        );
        compared += streamed.len();
        // Its windows close with its watermark: the smaller of each table's watermark and
        // the other's shifted by the bounds (0 s and 30 s).
        let (clicks_wm, imps_wm) = (largest[0] - 5, largest[1] - 5);
        let watermark = clicks_wm.min(imps_wm).min(clicks_wm - 30);
        let bin = "date_bin(INTERVAL '10' SECOND, click_ts, TIMESTAMPTZ '1970-01-01 00:00:00+00')";
        let closed = format!(
            "SELECT * FROM (SELECT {bin} AS window_start, count(*) AS n, sum(delay) AS delays \
             FROM ({batch}) GROUP BY 1) \
             WHERE window_start + INTERVAL '10' SECOND <= to_timestamp({})",
            base + watermark
        );
        assert_eq!(
            sorted_rows(&client, "SELECT * FROM attributed_10s").await,
            sorted_rows(&client, &closed).await,
            "attributed_10s after round {round}"
        );
        // The windowed views hand on their closed windows only.
        let closed_of = |view: &str, watermark: i64| {
            format!(
                "(SELECT * FROM {view} WHERE window_end <= to_timestamp({}))",
                base + watermark
            )
        };
        let window_join = format!(
            "SELECT v.window_start, v.ad_id, v.n AS views, k.n AS clicks FROM {} v JOIN {} k \
             ON v.window_start = k.window_start AND v.ad_id = k.ad_id",
            closed_of("imp_10s", imps_wm),
            closed_of("click_10s", clicks_wm)
        );
        let expected = sorted_rows(&client, &window_join).await;
        for view in ["ctr", "ctr_parts"] {
            let streamed = sorted_rows(&client, &format!("SELECT * FROM {view}")).await;
            assert_eq!(streamed, expected, "{view} after round {round}");
            compared += streamed.len();
        }
        let streamed = sorted_rows(&client, "SELECT * FROM clicks_per_ad").await;
        assert_eq!(
            streamed,
            sorted_rows(&client, CLICKS_PER_AD).await,
            "clicks_per_ad after round {round}"
        );
        compared += streamed.len();
        let predicted = (late[0].len() + late[1].len()) as i64;
        let taken = query_i64(
            &client,
            "SELECT count(*) FROM sluice_catalog.late_rows WHERE view = 'attributed'",
        )
        .await;
        assert_eq!(taken, predicted, "late rows after round {round}");
        state_at.push(
            query_i64(
                &client,
                "SELECT CAST(join_state_bytes AS BIGINT) FROM sluice_catalog.materialized_views \
                 WHERE view = 'attributed'",
            )
            .await,
        );
    }
    assert_views_running(&client).await;
    let unbounded = query_i64(
        &client,
        "SELECT CAST(join_state_bytes AS BIGINT) FROM sluice_catalog.materialized_views \
         WHERE view = 'unbounded'",
    )
    .await;
    // /metrics says the same.
    let metrics = server.http_get("/metrics");
    let line = format!(
        "sluicedb_view_join_state_bytes{{view=\"attributed\"}} {}",
        state_at[rounds as usize - 1]
    );
    assert!(metrics.contains(&line), "{line} not in /metrics");
    let (half, last) = (state_at[rounds as usize / 2], *state_at.last().unwrap());
    let most = *state_at.iter().max().unwrap();
    eprintln!(
        "interval joins: {rounds} rounds, {next_id} rows, {} late, {compared} rows compared; \
         state bytes at round {}: {half}, at the end: {last}, at most {most}; \
         the same rows without time bounds: {unbounded}",
        late[0].len() + late[1].len(),
        rounds / 2
    );
    assert!(
        late[0].len() + late[1].len() > 5,
        "too few late rows to test them"
    );
    assert!(
        most * 4 < unbounded,
        "the interval join held {most} bytes, a join keeping every row {unbounded}"
    );
    assert!(last < half * 2, "state grew from {half} to {last} bytes");
}

/// Waits until the joins of view `view` hold `rows` rows.
async fn wait_for_join_rows(client: &Client, view: &str, rows: i64) {
    let query = format!(
        "SELECT CAST(join_rows AS BIGINT) FROM sluice_catalog.materialized_views \
         WHERE view = '{view}'"
    );
    let what = format!("view {view} to hold {rows} rows in its joins");
    support::wait_for(Duration::from_secs(30), &what, || async {
        (query_i64(client, &query).await == rows).then_some(())
    })
    .await;
}

/// `WITH (state.ttl = …)` (Flink's idle state retention) on a regular join of two append-only
/// tables: no warning at CREATE, EXPLAIN says so, the state empties once its rows are idle for
/// longer, and rows arriving later join none of the forgotten ones — while the same join
/// without it joins them all. Each view is checked against the batch join of the rows it
/// could still see; the option holds through a kill -9 (the rows read again after the
/// restart are forgotten too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_ttl_forgets_rows_idle_for_longer() {
    const JOIN: &str =
        "SELECT o.id, o.amount, p.paid FROM orders o JOIN payments p ON p.order_id = o.id";
    let (_dir, mut server, mut client) = support::start_killable_with(
        "CREATE TABLE orders (id BIGINT, amount INT) APPEND ONLY; \
         CREATE TABLE payments (order_id BIGINT, paid INT) APPEND ONLY;",
        &[],
    )
    .await;
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let warnings = warnings_of(
        server.pg_port,
        &format!("CREATE MATERIALIZED VIEW forgetting WITH (state.ttl = '3 seconds') AS {JOIN}"),
    )
    .await;
    assert!(warnings.is_empty(), "{warnings:?}");
    client
        .batch_execute(&format!("CREATE MATERIALIZED VIEW keeping AS {JOIN}"))
        .await
        .unwrap();
    let explain = sorted_rows(
        &client,
        &format!("EXPLAIN CREATE MATERIALIZED VIEW x WITH (state.ttl = '3 seconds') AS {JOIN}"),
    )
    .await
    .join("\n");
    assert!(
        explain.contains("rows not written for 3 s forgotten"),
        "{explain}"
    );
    let insert = |table: &str, ids: std::ops::RangeInclusive<i64>| {
        let values: Vec<String> = ids.map(|id| format!("({id}, {})", id * 10)).collect();
        format!("INSERT INTO {table} VALUES {};", values.join(", "))
    };
    // Orders and payments arriving together join in both views.
    client
        .batch_execute(&format!(
            "{} {} FLUSH",
            insert("orders", 1..=40),
            insert("payments", 1..=20)
        ))
        .await
        .unwrap();
    let batch = |filter: &str| format!("{JOIN} {filter}");
    for view in ["forgetting", "keeping"] {
        assert_eq!(
            sorted_rows(&client, &format!("SELECT * FROM {view}")).await,
            sorted_rows(&client, &batch("")).await,
            "{view}"
        );
    }
    // Idle for longer than the TTL: the forgetting join holds nothing, the other everything.
    wait_for_join_rows(&client, "forgetting", 0).await;
    wait_for_join_rows(&client, "keeping", 60).await;
    // Payments of orders it forgot join nothing there; a new order and its payment do.
    client
        .batch_execute(&format!(
            "{} {} FLUSH",
            insert("payments", 21..=41),
            insert("orders", 41..=41)
        ))
        .await
        .unwrap();
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM keeping").await,
        sorted_rows(&client, &batch("")).await
    );
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM forgetting").await,
        sorted_rows(&client, &batch("WHERE o.id <= 20 OR o.id = 41")).await
    );
    // Through a kill -9: orders read again after the restart are forgotten as well.
    client
        .batch_execute(&format!("{} FLUSH", insert("orders", 50..=55)))
        .await
        .unwrap();
    server.stop("KILL");
    server.restart();
    client = support::connect(addr).await;
    // Payments 21..=41, order 41 and orders 50..=55, restored or read again.
    wait_for_join_rows(&client, "forgetting", 28).await;
    wait_for_join_rows(&client, "forgetting", 0).await;
    client
        .batch_execute(&format!("{} FLUSH", insert("payments", 50..=55)))
        .await
        .unwrap();
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM keeping").await,
        sorted_rows(&client, &batch("")).await
    );
    assert_eq!(
        sorted_rows(&client, "SELECT * FROM forgetting").await,
        sorted_rows(&client, &batch("WHERE o.id <= 20 OR o.id = 41")).await
    );
    assert_views_running(&client).await;
}
