//! Faults of what SluiceDB depends on, arriving as they do: the broker's topic re-created
//! (in `kafka`), the object store frozen, the object store down at start, the local disk full.
//! Each test checks what users see during the fault and that the server answers again, with
//! nothing lost, once it is over.

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
/// `/metrics` shows the checkpoints failing meanwhile, and committing again after. Killed
/// while its checkpoints hang on the frozen store, it restarts with nothing lost or doubled.
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
             rows.per.second = '100', fields.n.kind = 'sequence', retain = 'true')",
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

    // Frozen again, the server is killed while its checkpoints hang; restarted with S3 back,
    // it holds what it had committed and the source goes on from there: every tick once.
    let before = support::query_i64(&other, "SELECT count(*) FROM ticks").await;
    relay.set(Link::Frozen);
    // A checkpoint a second, each with new ticks: one is waiting on the store now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.stop("KILL");
    relay.set(Link::Up);
    server.restart();
    let client = support::connect(addr).await;
    assert_eq!(support::query_i64(&client, sum).await, 500_500);
    support::wait_for(Duration::from_secs(30), "new ticks", || async {
        let count = support::query_i64(&client, "SELECT count(*) FROM ticks").await;
        (count > before + 200).then_some(())
    })
    .await;
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM ticks",
            &[],
        )
        .await
        .unwrap();
    let (count, distinct): (i64, i64) = (row.get(0), row.get(1));
    let (min, max): (i64, i64) = (row.get(2), row.get(3));
    assert_eq!(
        (count, distinct, min),
        (max, max, 1),
        "ticks lost or doubled"
    );
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

/// A small tmpfs, unmounted when dropped; `None` where this machine cannot mount one.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output()
            .is_ok_and(|o| o.status.success());
        mounted.then_some(SmallDisk { path, _dir: dir })
    }

    /// Writes a file until the disk is full; returns it.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// The local disk full. Before, writes failed with 58030 blaming the object store, and the
/// server would not start while the disk stayed full, so not even reads were served. Now
/// writes fail with 53100 naming the data folder, reads go on, the server starts on a full
/// disk, checkpoints fail and retry, and everything resumes once there is room: the table and
/// a source's rows complete, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_53100_serves_reads_and_resumes() {
    let Some(disk) = SmallDisk::mount(24) else {
        assert!(!support::in_ci(), "CI runs as root and can mount a tmpfs");
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let data = disk.path.join("data");
    let data = data.to_str().unwrap();
    let log = disk.path.parent().unwrap().join("server.log");
    let mut server =
        ServerProcess::start(&["--storage", data, "--checkpoint-interval", "1s"], &log);
    server.psql(&[
        "-c",
        "CREATE TABLE t (v INT); INSERT INTO t SELECT value FROM generate_series(1, 1000)",
        "-c",
        "CREATE SOURCE ticks (n BIGINT) WITH (connector = 'datagen', rows.per.second = '200', \
         fields.n.kind = 'sequence', retain = 'true')",
        "-c",
        "CREATE MATERIALIZED VIEW per_ten AS SELECT n % 10 AS digit, count(*) AS c FROM ticks \
         GROUP BY 1",
    ]);
    // One query says what is wrong: every source and view, its status and error.
    let statuses = "SELECT string_agg(status || ': ' || coalesce(last_error, ''), ' | ') FROM \
                    (SELECT status, last_error FROM sluice_catalog.sources UNION ALL \
                     SELECT status, last_error FROM sluice_catalog.materialized_views) s";
    let count = |server: &ServerProcess, sql: &str| -> i64 {
        server.psql(&["-tA", "-c", sql]).trim().parse().unwrap()
    };
    let failing = |server: &ServerProcess| -> i64 {
        let metrics = server.http_get("/metrics");
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("sluicedb_checkpoint_consecutive_failures ")?
                    .parse()
                    .ok()
            })
            .unwrap()
    };
    let filler = disk.fill();

    let refused = server.psql_error("INSERT INTO t VALUES (0)");
    assert!(
        refused.contains("53100") && refused.contains(data),
        "{refused}"
    );
    assert_eq!(count(&server, "SELECT count(*) FROM t"), 1_000);
    support::wait_for(Duration::from_secs(30), "a checkpoint to fail", || async {
        (failing(&server) > 0).then_some(())
    })
    .await;
    let during = server.psql(&["-tA", "-c", statuses]);
    eprintln!("while the disk is full: {during}");
    assert_eq!(
        during.matches("retrying: checkpoints fail").count(),
        2,
        "{during}"
    );
    assert!(
        during.contains("53100") || during.contains("No space left"),
        "{during}"
    );

    // Started on the full disk, it serves reads and refuses writes.
    server.stop("KILL");
    server.restart();
    assert_eq!(count(&server, "SELECT count(*) FROM t"), 1_000);
    let refused = server.psql_error("INSERT INTO t VALUES (0)");
    assert!(refused.contains("53100"), "{refused}");

    std::fs::remove_file(filler).unwrap();
    server.psql(&["-c", "INSERT INTO t VALUES (0)"]);
    assert_eq!(count(&server, "SELECT count(*) FROM t"), 1_001);
    support::wait_for(
        Duration::from_secs(30),
        "checkpoints to commit again",
        || async { (failing(&server) == 0).then_some(()) },
    )
    .await;
    let after = server.psql(&["-tA", "-c", statuses]);
    assert_eq!(after.trim(), "running:  | running:", "{after}");
    // Every tick from the first on, none twice: what the kill lost uncommitted is read again.
    let ticks = "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM ticks";
    let row = server.psql(&["-tA", "-F", " ", "-c", ticks]);
    let numbers: Vec<i64> = row.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert!(numbers[0] > 0, "{row}");
    assert_eq!(numbers[0], numbers[1], "a tick twice: {row}");
    assert_eq!(numbers[2], 1, "{row}");
    assert_eq!(numbers[3], numbers[0], "a tick missing: {row}");
    assert!(!server.exited());
}
