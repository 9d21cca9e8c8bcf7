//! The wire protocol under real clients and bad peers: prepared statements with parameters and
//! binary results, query cancel, malformed messages, and clients that vanish mid-statement.

use std::io::{Read, Write};
use std::time::Duration;

use crate::support;

#[tokio::test]
async fn extended_protocol_binds_parameters_and_returns_binary_results() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    client
        .batch_execute(
            "CREATE TABLE m (id INT NOT NULL, name VARCHAR, score DOUBLE PRECISION, at TIMESTAMP)",
        )
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO m VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    let at = chrono_like_timestamp();
    for i in 0..5i32 {
        let n = client
            .execute(&insert, &[&i, &format!("n{i}"), &(i as f64 * 1.5), &at])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    // tokio-postgres asks for binary results on typed queries.
    let rows = client
        .query(
            "SELECT id, name, score, at FROM m WHERE id >= $1 ORDER BY id",
            &[&3i32],
        )
        .await
        .unwrap();
    let got: Vec<(i32, String, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![(3, "n3".to_string(), 4.5), (4, "n4".to_string(), 6.0)]
    );
    let stamp: std::time::SystemTime = rows[0].get(3);
    assert_eq!(stamp, at);
    // Result columns carry Postgres' names, in Describe and in the simple protocol alike.
    let described = client
        .prepare("SELECT 1, count(*), max(m.score) AS best, id FROM m GROUP BY id")
        .await
        .unwrap();
    let names: Vec<&str> = described.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["?column?", "count", "best", "id"]);
    let messages = client
        .simple_query("SELECT 1, count(*) FROM m")
        .await
        .unwrap();
    let Some(tokio_postgres::SimpleQueryMessage::RowDescription(columns)) = messages.first() else {
        panic!("expected a row description first: {messages:?}")
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["?column?", "count"]);
    let error = client.query("SELECT nope FROM m", &[]).await.unwrap_err();
    assert_eq!(error.as_db_error().unwrap().code().code(), "42703");
    // The connection stays usable after an error.
    let one: i64 = client
        .query_one("SELECT count(*) FROM m", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 5);
    server.shutdown().await;
}

/// `pg_stat_activity` shows every connection and its statement; `pg_cancel_backend` stops a
/// statement, `pg_terminate_backend` (Superset's "stop query") also closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_listed_cancelled_and_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let admin = support::connect(server.pg_addr()).await;
    let busy = support::connect(server.pg_addr()).await;
    let idle = support::connect(server.pg_addr()).await;
    let mut pids = Vec::new();
    for client in [&admin, &busy, &idle] {
        let row = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap();
        pids.push(row.get::<_, i32>(0));
    }
    let (admin_pid, busy_pid, idle_pid) = (pids[0], pids[1], pids[2]);
    let listed = admin
        .query(
            "SELECT pid, usename, state, query FROM pg_stat_activity ORDER BY pid",
            &[],
        )
        .await
        .unwrap();
    let listed: Vec<(i32, String, String, String)> = listed
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (pid, user, state, query) in &listed {
        assert_eq!(user, "sluice");
        if *pid == admin_pid {
            assert_eq!(state, "active");
            assert!(query.contains("pg_stat_activity"), "{query}");
        } else {
            assert_eq!(
                (state.as_str(), query.as_str()),
                ("idle", "SELECT pg_backend_pid()")
            );
        }
    }
    let long = "SELECT count(*) FROM generate_series(1, 2000000000) a";
    let slow = |client: tokio_postgres::Client| {
        tokio::spawn(async move { (client.simple_query(long).await, client) })
    };

    // Cancel: the statement stops, the connection stays.
    let running = slow(busy);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state: String = admin
        .query_one(
            "SELECT state FROM pg_stat_activity WHERE pid = $1",
            &[&busy_pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "active");
    let stop = "SELECT pg_cancel_backend($1), pg_cancel_backend(0)";
    let answers = admin
        .query_one(stop, &[&i64::from(busy_pid)])
        .await
        .unwrap();
    assert_eq!(
        (answers.get::<_, bool>(0), answers.get::<_, bool>(1)),
        (true, false)
    );
    let (result, busy) = running.await.unwrap();
    let code = result
        .unwrap_err()
        .as_db_error()
        .map(|e| e.code().code().to_string());
    assert_eq!(code.as_deref(), Some("57014"));
    assert_eq!(busy.simple_query("SELECT 1").await.unwrap().len(), 3);

    // Terminate a running statement: FATAL 57P01, then the connection is gone.
    let running = slow(busy);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let terminate = "SELECT pg_terminate_backend($1)";
    let row = admin
        .query_one(terminate, &[&i64::from(busy_pid)])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    let (result, busy) = running.await.unwrap();
    let error = result.unwrap_err();
    let code = error
        .as_db_error()
        .map(|e| (e.severity().to_string(), e.code().code().to_string()));
    assert_eq!(
        code,
        Some(("FATAL".to_string(), "57P01".to_string())),
        "{error}"
    );
    assert!(busy.simple_query("SELECT 1").await.is_err());

    // Terminate an idle connection: it is closed.
    let row = admin
        .query_one(terminate, &[&i64::from(idle_pid)])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !idle.is_closed() {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_activity", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
    server.shutdown().await;
}

fn chrono_like_timestamp() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_long_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    let cancel = client.cancel_token();
    let long = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let result = client
            .simple_query("SELECT count(*) FROM generate_series(1, 2000000000) a")
            .await;
        (result, started.elapsed(), client)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (result, elapsed, client) = long.await.unwrap();
    let error = result.unwrap_err();
    assert_eq!(
        error.as_db_error().unwrap().code().code(),
        "57014",
        "{error}"
    );
    assert!(elapsed < Duration::from_secs(30), "cancel took {elapsed:?}");
    let rows = client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(rows.len(), 3, "the connection works after a cancel");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_and_vanishing_clients_leave_the_server_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let addr = server.pg_addr();
    let setup = support::connect(addr).await;
    setup.batch_execute("CREATE TABLE k (a INT)").await.unwrap();

    // Garbage instead of a startup packet, then a startup packet with an absurd length.
    for bytes in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0][..],
    ] {
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.write_all(bytes).unwrap();
        let mut buffer = [0u8; 256];
        let _ = socket.read(&mut buffer);
    }

    // A client that starts a COPY, sends half a row and disconnects commits nothing.
    let copy_client = support::connect(addr).await;
    let sink = copy_client
        .copy_in::<_, bytes::Bytes>("COPY k FROM STDIN")
        .await
        .unwrap();
    let mut sink = Box::pin(sink);
    use futures::SinkExt;
    sink.send(bytes::Bytes::from_static(b"1\n2\n3"))
        .await
        .unwrap();
    drop(sink);
    drop(copy_client);

    // A client that disconnects while a query streams rows.
    let streaming = support::connect(addr).await;
    let query = tokio::spawn(async move {
        let _ = streaming
            .simple_query("SELECT * FROM generate_series(1, 50000000)")
            .await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    query.abort();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = support::connect(addr).await;
    client.batch_execute("FLUSH").await.unwrap();
    let count: i64 = client
        .query_one("SELECT count(*) FROM k", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "an interrupted COPY must leave no rows");
    client
        .batch_execute("INSERT INTO k VALUES (7)")
        .await
        .unwrap();
    let count: i64 = client
        .query_one("SELECT count(*) FROM k", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn copy_in_commits_all_rows_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    client
        .batch_execute("CREATE TABLE c (a INT NOT NULL, b TEXT)")
        .await
        .unwrap();
    use futures::SinkExt;

    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY c FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    let mut sink = Box::pin(sink);
    let rows: String = (0..10_000).map(|i| format!("{i},\"v,{i}\"\n")).collect();
    sink.send(bytes::Bytes::from(rows)).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 10_000);

    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY c FROM STDIN")
        .await
        .unwrap();
    let mut sink = Box::pin(sink);
    let mut rows: String = (0..100_000).map(|i| format!("{i}\tx\n")).collect();
    rows.push_str("oops\tx\n");
    sink.send(bytes::Bytes::from(rows)).await.unwrap();
    let error = sink.as_mut().finish().await.unwrap_err();
    let db = error.as_db_error().unwrap();
    assert_eq!(db.code().code(), "22P02");
    assert_eq!(db.detail(), Some("COPY c, line 100001, column a."));

    let (count, sum): (i64, i64) = {
        let row = client
            .query_one("SELECT count(*), sum(a) FROM c", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((count, sum), (10_000, (0..10_000).sum::<i64>()));

    // One record that never ends (an unclosed CSV quote) is refused at copy_pending_bytes_max
    // (64 MiB) with 54000, not buffered until the server runs out of memory.
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY c FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from_static(b"1,\"")).await.unwrap();
    let chunk = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    for _ in 0..65 {
        sink.send(chunk.clone()).await.unwrap();
    }
    let error = sink.as_mut().finish().await.unwrap_err();
    assert_eq!(error.as_db_error().unwrap().code().code(), "54000");
    let count: i64 = client
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 10_000);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_fatal_53300() {
    let dir = tempfile::tempdir().unwrap();
    let args = sluicedb::config::ServeArgs {
        storage: Some(dir.path().to_string_lossy().into_owned()),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        max_connections: Some(1),
        ..Default::default()
    };
    let config = args.resolve(sluicedb::config::AwsEnv::default()).unwrap();
    let server = sluicedb::server::Server::start(config).await.unwrap();
    let addr = server.pg_addr();
    let first = support::connect(addr).await;
    let url = format!("host={} port={} user=sluice", addr.ip(), addr.port());
    let error = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    let db = error.as_db_error().expect("a FATAL ErrorResponse");
    assert_eq!((db.code().code(), db.severity()), ("53300", "FATAL"));
    // The connection that got in still works.
    assert_eq!(first.simple_query("SELECT 1").await.unwrap().len(), 3);
    server.shutdown().await;

    // The last slots are kept for superusers, so an administrator gets in when clients took
    // the rest (a role's name gets its rights even without a password, on loopback).
    let args = sluicedb::config::ServeArgs {
        storage: Some(dir.path().to_string_lossy().into_owned()),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        max_connections: Some(3),
        superuser_reserved_connections: Some(1),
        ..Default::default()
    };
    let config = args.resolve(sluicedb::config::AwsEnv::default()).unwrap();
    let server = sluicedb::server::Server::start(config).await.unwrap();
    let addr = server.pg_addr();
    let admin = support::connect(addr).await;
    admin
        .batch_execute("CREATE ROLE dashboard LOGIN")
        .await
        .unwrap();
    let url = |user: &str| format!("host={} port={} user={user}", addr.ip(), addr.port());
    let connect = |user: &'static str| {
        let url = url(user);
        async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            Ok::<_, tokio_postgres::Error>(client)
        }
    };
    let dashboard = connect("dashboard").await.unwrap();
    let refused = |error: tokio_postgres::Error| {
        let db = error.as_db_error().expect("a FATAL ErrorResponse").clone();
        (db.code().code().to_string(), db.message().to_string())
    };
    let (code, message) = refused(connect("dashboard").await.expect_err("reserved"));
    assert_eq!(code, "53300");
    assert!(
        message.contains("reserved for non-replication superuser"),
        "{message}"
    );
    let second_admin = connect("sluice")
        .await
        .expect("a superuser takes the reserved slot");
    let (code, message) = refused(connect("sluice").await.expect_err("full"));
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("53300", "sorry, too many clients already")
    );
    for client in [&admin, &dashboard, &second_admin] {
        assert_eq!(client.simple_query("SELECT 1").await.unwrap().len(), 3);
    }
    drop((admin, dashboard, second_admin));
    server.shutdown().await;
}
