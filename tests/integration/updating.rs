//! Views over views whose rows change: a view without windows hands on inserts and deletes,
//! and the views reading it (and those reading them) follow every change. Seeded random rows
//! are inserted in random batches; after every `FLUSH` each view must equal the same query run
//! by DataFusion in batch mode over the table's rows — through a `kill -9` between a commit
//! and the next checkpoint, and for a view created over an updating view midway.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_postgres::Client;

use crate::support;
use crate::views::{assert_views_running, sorted_rows};

/// Per user: how often, how much, the dearest price.
const PER_USER: &str = "SELECT user_id, count(*) AS cnt, sum(amount) AS total, \
                        max(price) AS top FROM clicks GROUP BY user_id";

const PER_USER_PAGE: &str =
    "SELECT user_id, page, count(*) AS n FROM clicks GROUP BY user_id, page";

const TOP_USERS: &str = "SELECT * FROM (SELECT user_id, cnt, ROW_NUMBER() OVER (ORDER BY cnt \
                         DESC, user_id) AS rn FROM per_user) WHERE rn <= 3";

/// Each view, and the same query over the table's rows (`per_user` as a subquery).
fn views() -> Vec<(&'static str, String, String)> {
    let over_users = |query: &str| query.replace("FROM per_user", &format!("FROM ({PER_USER})"));
    let hist = "SELECT cnt, count(*) AS users, sum(total) AS total, min(top) AS lo, \
                max(top) AS hi, count(DISTINCT top) AS tops, avg(total) AS mean \
                FROM per_user GROUP BY cnt HAVING count(*) > 0";
    let heavy = "SELECT count(*) AS users, sum(cnt) AS clicks, min(total) AS least \
                 FROM per_user WHERE cnt >= 3";
    let totals = "SELECT count(*) AS n, sum(amount) AS total, max(price) AS top FROM clicks";
    vec![
        ("per_user", PER_USER.to_string(), PER_USER.to_string()),
        ("hist", hist.to_string(), over_users(hist)),
        ("heavy", heavy.to_string(), over_users(heavy)),
        (
            "buckets",
            "SELECT count(*) AS buckets, max(users) AS widest, sum(total) AS total FROM hist"
                .to_string(),
            format!(
                "SELECT count(*) AS buckets, max(users) AS widest, sum(total) AS total FROM ({})",
                over_users(hist)
            ),
        ),
        ("totals", totals.to_string(), totals.to_string()),
        (
            "counts",
            "SELECT DISTINCT cnt FROM per_user".to_string(),
            over_users("SELECT DISTINCT cnt FROM per_user"),
        ),
        (
            "pages",
            "SELECT DISTINCT page FROM clicks".to_string(),
            "SELECT DISTINCT page FROM clicks".to_string(),
        ),
        // Two group keys (DataFusion's multi-column group table, reused after checkpoints).
        (
            "per_user_page",
            PER_USER_PAGE.to_string(),
            PER_USER_PAGE.to_string(),
        ),
        // Top-N over updating views: a delete can bring the next row back.
        ("top_users", TOP_USERS.to_string(), over_users(TOP_USERS)),
        (
            "richest",
            "SELECT user_id, total FROM per_user ORDER BY total DESC, user_id LIMIT 3".to_string(),
            over_users("SELECT user_id, total FROM per_user ORDER BY total DESC, user_id LIMIT 3"),
        ),
        (
            "top_per_page",
            "SELECT * FROM (SELECT page, user_id, n, rank() OVER (PARTITION BY page ORDER BY n \
             DESC) AS r FROM per_user_page) WHERE r <= 2"
                .to_string(),
            format!(
                "SELECT * FROM (SELECT page, user_id, n, rank() OVER (PARTITION BY page ORDER BY \
                 n DESC) AS r FROM ({PER_USER_PAGE})) WHERE r <= 2"
            ),
        ),
    ]
}

/// Every view equals its batch query over the table.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_updating_views_follow_every_change_through_a_crash() {
    let (dir, mut server, mut client) = support::start_killable_with(
        "CREATE TABLE clicks (user_id INT, amount BIGINT, price NUMERIC(10,2), page TEXT)",
        &[
            "--compaction-interval",
            "1s",
            "--compaction-target-size",
            "1MB",
        ],
    )
    .await;
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let mut views = views();
    // `hist` and `buckets` (over `hist`) are created midway, over a view holding rows by then.
    let later: Vec<_> = views
        .extract_if(.., |v| v.0 == "hist" || v.0 == "buckets")
        .collect();
    for (name, query, _) in &views {
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    // An aggregate without GROUP BY has its row before any input, as in Postgres.
    client.batch_execute("FLUSH").await.unwrap();
    check(&client, &views, 0).await;

    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let (mut compared, rounds) = (0, 24);
    for round in 1..=rounds {
        let rows: Vec<String> = (0..rng.random_range(1..40))
            .map(|_| {
                let price = match rng.random_bool(0.9) {
                    true => format!(
                        "{}.{:02}",
                        rng.random_range(0..50),
                        rng.random_range(0..100)
                    ),
                    false => "NULL".into(),
                };
                format!(
                    "({}, {}, {price}, 'p{}')",
                    rng.random_range(0..25),
                    rng.random_range(-20..100),
                    rng.random_range(0..5)
                )
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO clicks VALUES {}", rows.join(", ")))
            .await
            .unwrap();
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
            // Committed rows no checkpoint has reached: the views take them in after the
            // restart, from their last checkpoint, with nothing counted twice.
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
        }
        client.batch_execute("FLUSH").await.unwrap();
        compared += check(&client, &views, round).await;
    }
    assert_views_running(&client).await;

    // Each view's files hold its rows as a changelog, which compaction folded meanwhile: with
    // every view's state lost, the views fail to start and still show their rows as of the
    // last checkpoint.
    let folds = number(
        &client,
        "SELECT count(*) FROM sluice_catalog.checkpoints \
         WHERE kind = 'compaction' AND reason LIKE 'materialized view %'",
    )
    .await;
    server.stop("KILL");
    let mut lost = 0;
    for checkpoint in std::fs::read_dir(dir.path().join("data/state")).unwrap() {
        for file in std::fs::read_dir(checkpoint.unwrap().path()).unwrap() {
            let file = file.unwrap();
            if file.file_name().to_string_lossy().starts_with("view_") {
                std::fs::remove_file(file.path()).unwrap();
                lost += 1;
            }
        }
    }
    assert!(
        lost >= views.len() - 2,
        "{lost} state files of {} views",
        views.len()
    );
    server.restart();
    client = support::connect(addr).await;
    let running = number(
        &client,
        "SELECT count(*) FROM sluice_catalog.materialized_views WHERE status <> 'failed'",
    )
    .await;
    assert_eq!(running, 0, "views running without their state");
    compared += check(&client, &views, rounds + 1).await;
    assert!(folds > 0, "no compaction of a view's files");
    eprintln!(
        "updating views: {rounds} rounds, {} views, {compared} rows compared with batch queries; \
         {folds} compactions folded views' changelog files, which the views read back failed",
        views.len()
    );
}

/// What cannot follow deletes is refused when the view is created, with a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_follow_deletes_is_refused_with_0a000() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    client
        .batch_execute(
            "CREATE TABLE t (k INT, v BIGINT, ts TIMESTAMPTZ); \
             CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n, max(ts) AS ts \
             FROM t GROUP BY k",
        )
        .await
        .unwrap();
    for query in [
        "SELECT window_start, count(*) FROM SESSION(per_k, ts, INTERVAL '1' MINUTE) \
         GROUP BY window_start",
        "SELECT window_start, count(*) FROM TUMBLE(per_k, ts, INTERVAL '1' MINUTE) \
         GROUP BY window_start EMIT ON WINDOW CLOSE",
        "SELECT n, median(k) FROM per_k GROUP BY n",
        "SELECT n, sum(DISTINCT k) FROM per_k GROUP BY n",
    ] {
        let error = client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW bad AS {query}"))
            .await
            .unwrap_err();
        let error = error.as_db_error().unwrap();
        assert_eq!(error.code().code(), "0A000", "{query}: {error:?}");
        assert!(error.hint().is_some(), "{query}: {error:?}");
    }
    let explain = sorted_rows(
        &client,
        "EXPLAIN CREATE MATERIALIZED VIEW h AS SELECT n, count(*) FROM per_k GROUP BY n",
    )
    .await
    .join("\n");
    assert!(explain.contains("output=updating"), "{explain}");
    assert!(explain.contains("RetractingAggregate"), "{explain}");
    assert!(explain.contains("(updating)"), "{explain}");
    server.shutdown().await;
}

/// A table with a primary key under random upserts, updates (of keys too) and deletes: the
/// table always equals this test's own model of it, and every view over it (aggregates,
/// filters, views over those) equals its batch query after every FLUSH — across a kill -9
/// after which the table's rows are replayed from its files. Compaction runs every second
/// meanwhile, folding the table's changelog files by key under the views reading them; a
/// burst of updates to a few keys must fold away, a view created after it backfills from the
/// folded files, and a restart replays them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_a_keyed_table_follow_inserts_updates_and_deletes() {
    use std::collections::BTreeMap;
    let (_dir, mut server, mut client) = support::start_killable_with(
        "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT, country TEXT, score BIGINT)",
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
    let by_country = "SELECT country, count(*) AS n, sum(score) AS total, min(name) AS first, \
                      max(score) AS best, count(DISTINCT name) AS names, avg(score) AS mean, \
                      round(stddev(score), 6) AS sd, round(var_pop(score), 6) AS vp, \
                      round(covar_samp(score, id), 6) AS cv, round(corr(score, id), 6) AS r, \
                      bool_and(score > 0) AS all_up, bool_or(name = 'n0') AS any_n0, \
                      regr_count(score, id) AS pairs, round(regr_slope(score, id), 6) AS slope, \
                      round(regr_intercept(score, id), 6) AS icpt, \
                      round(regr_r2(score, id), 6) AS r2, round(regr_avgx(score, id), 6) AS ax, \
                      round(regr_sxy(score, id), 4) AS sxy \
                      FROM customers GROUP BY country";
    let views: Vec<(&str, String, String)> = vec![
        ("by_country", by_country.into(), by_country.into()),
        (
            "fr",
            "SELECT id, upper(name) AS name, score * 2 AS double FROM customers \
             WHERE country = 'FR'"
                .into(),
            "SELECT id, upper(name) AS name, score * 2 AS double FROM customers \
             WHERE country = 'FR'"
                .into(),
        ),
        (
            "sizes",
            "SELECT n, count(*) AS countries FROM by_country GROUP BY n".into(),
            format!("SELECT n, count(*) AS countries FROM ({by_country}) GROUP BY n"),
        ),
        (
            "everyone",
            "SELECT count(*) AS n, sum(score) AS total FROM customers".into(),
            "SELECT count(*) AS n, sum(score) AS total FROM customers".into(),
        ),
        (
            "best",
            "SELECT * FROM (SELECT id, country, score, rank() OVER (PARTITION BY country ORDER \
             BY score DESC) AS r FROM customers) WHERE r <= 2"
                .into(),
            "SELECT * FROM (SELECT id, country, score, rank() OVER (PARTITION BY country ORDER \
             BY score DESC) AS r FROM customers) WHERE r <= 2"
                .into(),
        ),
    ];
    for (name, query, _) in &views {
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    // The model: id -> (name, country, score).
    let mut model: BTreeMap<i64, (String, String, i64)> = BTreeMap::new();
    let countries = ["FR", "DE", "US", "JP"];
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (rounds, mut statements) = (30, 0);
    for round in 1..=rounds {
        for _ in 0..rng.random_range(1..6) {
            statements += 1;
            match rng.random_range(0..10) {
                0..5 => {
                    let rows: Vec<String> = (0..rng.random_range(1..8))
                        .map(|_| {
                            let id = rng.random_range(0..40i64);
                            let row = (
                                format!("n{}", rng.random_range(0..6)),
                                countries[rng.random_range(0..countries.len())].to_string(),
                                rng.random_range(-50..100i64),
                            );
                            let sql = format!("({id}, '{}', '{}', {})", row.0, row.1, row.2);
                            model.insert(id, row);
                            sql
                        })
                        .collect();
                    client
                        .batch_execute(&format!("INSERT INTO customers VALUES {}", rows.join(", ")))
                        .await
                        .unwrap();
                }
                5..7 => {
                    let country = countries[rng.random_range(0..countries.len())];
                    let bonus = rng.random_range(1..10i64);
                    let done = client
                        .execute(
                            &format!(
                                "UPDATE customers SET score = score + {bonus} \
                                 WHERE country = '{country}'"
                            ),
                            &[],
                        )
                        .await
                        .unwrap();
                    let mut matched = 0;
                    for row in model.values_mut().filter(|r| r.1 == country) {
                        row.2 += bonus;
                        matched += 1;
                    }
                    assert_eq!(done, matched);
                }
                7 => {
                    // A key moves: the row leaves its old key (overwriting the new one's).
                    let (from, to) = (rng.random_range(0..40i64), rng.random_range(0..40i64));
                    client
                        .batch_execute(&format!("UPDATE customers SET id = {to} WHERE id = {from}"))
                        .await
                        .unwrap();
                    if let Some(row) = model.remove(&from) {
                        model.insert(to, row);
                    }
                }
                _ => {
                    let below = rng.random_range(0..40i64);
                    let done = client
                        .execute(
                            "DELETE FROM customers WHERE id < $1 AND score < 0",
                            &[&(below as i32)],
                        )
                        .await
                        .unwrap();
                    let before = model.len();
                    model.retain(|id, row| !(*id < below && row.2 < 0));
                    assert_eq!(done as usize, before - model.len());
                }
            }
        }
        if round == rounds / 2 {
            // Small files on both sides of the views' last checkpoint, for compaction to see
            // before the kill: a run merged across it would be read again after the restart.
            for at in ["checkpointed", "after"] {
                for i in 0..3 {
                    let id = 100 + i;
                    let sql = format!("INSERT INTO customers VALUES ({id}, '{at}', 'US', {i})");
                    client.batch_execute(&sql).await.unwrap();
                    model.insert(id, (at.into(), "US".into(), i));
                }
                if at == "checkpointed" {
                    client.batch_execute("FLUSH").await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
        }
        check_table(&client, &model, round).await;
        client.batch_execute("FLUSH").await.unwrap();
        check(&client, &views, round).await;
    }
    let compactions = "SELECT count(*) FROM sluice_catalog.checkpoints \
                       WHERE kind = 'compaction' AND reason = 'table customers'";
    let during = number(&client, compactions).await;

    // A burst: 200 writes of two rows each (the old row, the new) to five keys. Folded by
    // key, their files shrink to a few rows per key; merged without folding they would keep
    // all 400.
    let stored = "SELECT coalesce(sum(rows), 0) FROM sluice_catalog.files \
                  WHERE relation = 'table customers'";
    let before = number(&client, stored).await;
    for i in 0..200 {
        let id = [1, 2, 3, 4, 5][i % 5];
        client
            .batch_execute(&format!(
                "INSERT INTO customers VALUES ({id}, 'hot', 'FR', {i})"
            ))
            .await
            .unwrap();
        model.insert(id, ("hot".into(), "FR".into(), i as i64));
        if i % 50 == 49 {
            client.batch_execute("FLUSH").await.unwrap();
        }
    }
    client.batch_execute("FLUSH").await.unwrap();
    let folded = support::wait_for(Duration::from_secs(60), "the burst to fold", || {
        let client = &client;
        async move {
            // Views read on (and checkpoint) so compaction may fold what they have read.
            client.batch_execute("FLUSH").await.unwrap();
            let rows = number(client, stored).await;
            (rows < before + 100).then_some(rows)
        }
    })
    .await;
    check_table(&client, &model, rounds + 1).await;
    check(&client, &views, rounds + 1).await;
    // A view created now reads the folded files.
    let late = "SELECT country, count(*) AS n, sum(score) AS total FROM customers GROUP BY country";
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW late_by_country AS {late}"
        ))
        .await
        .unwrap();
    let mut views = views;
    views.push(("late_by_country", late.into(), late.into()));
    client.batch_execute("FLUSH").await.unwrap();
    check(&client, &views, rounds + 2).await;
    // And a restart replays them.
    server.stop("KILL");
    server.restart();
    client = support::connect(addr).await;
    check_table(&client, &model, rounds + 3).await;
    client.batch_execute("FLUSH").await.unwrap();
    check(&client, &views, rounds + 3).await;
    let after = number(&client, compactions).await;
    assert!(during >= 1, "no compaction of the table during the rounds");
    eprintln!(
        "keyed table: {rounds} rounds, {statements} statements, {} keys at the end, {} views; \
         {during} compactions during the rounds, {after} in all; the burst's 400 changelog rows \
         left the table's files at {folded} rows (from {before})",
        model.len(),
        views.len()
    );
}

/// The table's rows equal the model's.
async fn check_table(
    client: &Client,
    model: &std::collections::BTreeMap<i64, (String, String, i64)>,
    round: usize,
) {
    let table = sorted_rows(client, "SELECT id, name, country, score FROM customers").await;
    let mut expected: Vec<String> = model
        .iter()
        .map(|(id, (name, country, score))| format!("{id}|{name}|{country}|{score}"))
        .collect();
    expected.sort();
    assert_eq!(table, expected, "the table after round {round}");
}

async fn number(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}
