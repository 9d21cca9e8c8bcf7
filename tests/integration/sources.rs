//! The datagen connector end to end: a bounded, seeded source retained as Parquet, checked
//! against the sequence it must produce, its determinism, and a restart that neither loses
//! nor repeats rows. Needs no broker.

use std::time::Duration;

use crate::support::{connect, query_i64, start_server, wait_for};

const COLUMNS: &str = "event_id BIGINT, user_id INT, action VARCHAR, amount NUMERIC(10,2), \
     ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND";

fn options(rows: u64, seed: u64) -> String {
    format!(
        "WITH (connector = 'datagen', datagen.rows = '{rows}', datagen.seed = '{seed}', retain = 'true', \
         fields.event_id.kind = 'sequence', fields.event_id.start = '1', \
         fields.user_id.min = '1', fields.user_id.max = '50', \
         fields.action.values = 'click,view,purchase', \
         fields.amount.min = '0', fields.amount.max = '100', \
         fields.ts.start = '2026-01-01T00:00:00Z', fields.ts.step = '10ms', \
         fields.ts.max_out_of_orderness = '1s')"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bounded_datagen_source_is_exact_deterministic_and_survives_restart() {
    const ROWS: i64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap();
    let server = start_server(storage).await;
    let client = connect(server.pg_addr()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE gen_a ({COLUMNS}) {}; CREATE SOURCE gen_b ({COLUMNS}) {}; \
             CREATE SOURCE gen_c ({COLUMNS}) {}",
            options(ROWS as u64, 7),
            options(ROWS as u64, 7),
            options(ROWS as u64, 8)
        ))
        .await
        .unwrap();
    let finished = "SELECT count(*) FROM sluice_catalog.sources WHERE status = 'finished'";
    wait_for(
        Duration::from_secs(60),
        "the generators to finish",
        || async { (query_i64(&client, finished).await == 3).then_some(()) },
    )
    .await;
    client.batch_execute("FLUSH").await.unwrap();

    let row = client
        .query_one(
            "SELECT count(*), CAST(sum(event_id) AS BIGINT), min(user_id), max(user_id), \
                    count(DISTINCT action), CAST(min(amount) >= 0 AND max(amount) <= 100 AS BOOLEAN), \
                    count(*) FILTER (WHERE ts_ms > due_ms OR ts_ms < due_ms - 1000) \
             FROM (SELECT *, CAST(round(extract(epoch FROM ts) * 1000) AS BIGINT) AS ts_ms, \
                          1767225600000 + (event_id - 1) * 10 AS due_ms FROM gen_a)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), ROWS);
    assert_eq!(
        row.get::<_, i64>(1),
        ROWS * (ROWS + 1) / 2,
        "a sequence 1..=ROWS"
    );
    assert_eq!((row.get::<_, i32>(2), row.get::<_, i32>(3)), (1, 50));
    assert_eq!(row.get::<_, i64>(4), 3);
    assert!(row.get::<_, bool>(5));
    assert_eq!(
        row.get::<_, i64>(6),
        0,
        "event time within the out-of-orderness bound"
    );

    let differing = |a: &'static str, b: &'static str| {
        let client = &client;
        async move {
            query_i64(
                client,
                &format!(
                    "SELECT count(*) FROM (SELECT user_id, action, amount, ts FROM {a} \
                     EXCEPT SELECT user_id, action, amount, ts FROM {b})"
                ),
            )
            .await
        }
    };
    assert_eq!(
        differing("gen_a", "gen_b").await,
        0,
        "the same seed, the same rows"
    );
    assert!(
        differing("gen_a", "gen_c").await > ROWS / 2,
        "another seed, other rows"
    );

    // A restart resumes at the committed offset: a finished source makes no more rows.
    let watermark = "SELECT CAST(count(*) AS BIGINT) FROM sluice_catalog.sources \
                     WHERE source = 'gen_a' AND source_watermark IS NOT NULL";
    assert_eq!(query_i64(&client, watermark).await, 1);
    drop(client);
    server.shutdown().await;
    let server = start_server(storage).await;
    let client = connect(server.pg_addr()).await;
    wait_for(
        Duration::from_secs(30),
        "the generators to finish again",
        || async { (query_i64(&client, finished).await == 3).then_some(()) },
    )
    .await;
    client.batch_execute("FLUSH").await.unwrap();
    let row = client
        .query_one("SELECT count(*), count(DISTINCT event_id) FROM gen_a", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (ROWS, ROWS));
    client
        .batch_execute("DROP SOURCE gen_a, gen_b; DROP SOURCE IF EXISTS gen_c, nope")
        .await
        .unwrap();
    assert_eq!(
        query_i64(&client, "SELECT count(*) FROM sluice_catalog.sources").await,
        0
    );
    server.shutdown().await;
}
