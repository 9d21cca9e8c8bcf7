//! Faults of what SluiceDB depends on, arriving as they do: the broker's topic re-created
//! (in `kafka`), the object store frozen, the object store down at start. Each test checks what users see during the fault and
//! that the server answers again, with nothing lost, once it is over.

use std::time::{Duration, Instant};

use crate::support::{self, Link, S3Target, ServerProcess, TcpRelay, s3_target};

/// A relay to the S3 server, a folder for the server's log, and the flags that store the
/// server's data through the relay.
async fn relayed_s3(s3: &S3Target, name: &str) -> (TcpRelay, tempfile::TempDir, Vec<String>) {
    let relay = TcpRelay::start(s3.endpoint.trim_start_matches("http://").to_string()).await;
    let args = support::s3_args(&format!("http://{}", relay.addr), &s3.bucket, name);
    (relay, tempfile::tempdir().unwrap(), args)
}

/// A frozen S3 endpoint (its server stopped, connections held open). Before, a query of
/// stored rows hung for the whole freeze, since no request timeout applied; now it fails with
/// 58030 within 20 s while other connections are answered, and answers once S3 is back.
/// `/metrics` shows the checkpoints failing meanwhile, and committing again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_object_store_fails_queries_with_58030_within_20_seconds() {
    let Some(s3) = s3_target() else { return };
    let (relay, dir, mut args) = relayed_s3(&s3, "frozen").await;
    args.extend(["--checkpoint-interval".into(), "1s".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(&args, &dir.path().join("server.log"));
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], server.http_port));
    let client = support::connect(addr).await;
    // A source whose rows every checkpoint writes.
    client
        .batch_execute(
            "CREATE TABLE t (v INT); INSERT INTO t SELECT value FROM generate_series(1, 1000); \
             FLUSH; CREATE SOURCE ticks (n BIGINT) WITH (connector = 'datagen', \
             rows.per.second = '100', retain = 'true')",
        )
        .await
        .unwrap();
    let sum = "SELECT CAST(sum(v) AS BIGINT) FROM t";
    assert_eq!(support::query_i64(&client, sum).await, 500_500);

    relay.set(Link::Frozen);
    let started = Instant::now();
    let frozen = tokio::spawn(async move {
        let error = client.simple_query(sum).await.unwrap_err();
        (error, started.elapsed())
    });
    // Meanwhile another connection is answered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let other = support::connect(addr).await;
    let answered = Instant::now();
    assert_eq!(
        support::query_i64(&other, "SELECT CAST(1 AS BIGINT)").await,
        1
    );
    assert!(answered.elapsed() < Duration::from_secs(1));
    let (error, took) = frozen.await.unwrap();
    let error = error.as_db_error().expect("a server error").clone();
    assert_eq!(error.code().code(), "58030", "{error:?}");
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    eprintln!(
        "a query on the frozen store failed after {took:?}: {}",
        error.message()
    );
    let metric = |name: &'static str| {
        let metrics = support::http_get(http, "/metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{name} not in {metrics}"))
    };
    support::wait_for(Duration::from_secs(30), "a checkpoint to fail", || async {
        (metric("sluicedb_checkpoint_consecutive_failures ") > 0).then_some(())
    })
    .await;
    assert!(metric("sluicedb_checkpoint_failures_total ") > 0);

    relay.set(Link::Up);
    support::wait_for(Duration::from_secs(30), "reads once S3 is back", || async {
        let answered = other.simple_query(sum).await.is_ok();
        answered.then_some(())
    })
    .await;
    assert_eq!(support::query_i64(&other, sum).await, 500_500);
    support::wait_for(
        Duration::from_secs(30),
        "a checkpoint to commit",
        || async { (metric("sluicedb_checkpoint_consecutive_failures ") == 0).then_some(()) },
    )
    .await;
    assert!(metric("sluicedb_checkpoints_total ") > 0);
    assert!(!server.exited());
}

/// Started while S3 is down, the server opened its ports and answered nothing: clients hung
/// in the listen queue. Now a client hears `57P03 the database system is starting up` at once,
/// as from Postgres, and the server serves once S3 is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_with_the_object_store_down_clients_hear_57p03() {
    let Some(s3) = s3_target() else { return };
    let (relay, dir, args) = relayed_s3(&s3, "down-at-start").await;
    relay.set(Link::Down);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = ServerProcess::spawn(&args, &dir.path().join("server.log"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.pg_port));
    let error = support::wait_for(
        Duration::from_secs(10),
        "an answer while starting",
        || async {
            let started = Instant::now();
            let config = format!(
                "host=127.0.0.1 port={} user=sluice dbname=sluice",
                addr.port()
            );
            let connecting = tokio_postgres::connect(&config, tokio_postgres::NoTls);
            // (Before, the connection waited in the listen queue as long as S3 was down.)
            match tokio::time::timeout(Duration::from_secs(2), connecting).await {
                Ok(Err(e)) if e.code().is_some() => Some((e, started.elapsed())),
                _ => None,
            }
        },
    )
    .await;
    let (error, took) = error;
    assert_eq!(error.code().unwrap().code(), "57P03", "{error:?}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    assert!(!server.healthy());

    relay.set(Link::Up);
    server.wait_ready();
    let client = support::connect(addr).await;
    assert_eq!(
        support::query_i64(&client, "SELECT CAST(1 AS BIGINT)").await,
        1
    );
}
