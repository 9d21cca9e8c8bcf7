//! Storage upkeep against the real binary: compaction of small files while readers query,
//! garbage collection after the grace period, retention of a view's old windows, and
//! `ALTER MATERIALIZED VIEW … REBUILD` of a view whose state file is gone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{self, ServerProcess};

const INSERTS: i64 = 24;
const ROWS_PER_INSERT: i64 = 50;

fn number(server: &ServerProcess, sql: &str) -> i64 {
    let out = server.psql(&["-At", "-c", sql]);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: {out}"))
}

/// Every `.parquet` file under `dir`, at any depth.
fn parquet_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.path() {
            p if p.is_dir() => parquet_files(&p),
            p if p.extension().is_some_and(|x| x == "parquet") => 1,
            _ => 0,
        })
        .sum()
}

/// Inserts [`INSERTS`] small batches into `t` (one file each) while a second connection reads
/// `count(*)` and `sum(v)` without pause: every answer must be a whole prefix of the inserts —
/// compaction may never show a row twice or not at all. Returns the number of reads.
async fn insert_while_reading(server: &ServerProcess) -> usize {
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let writer = support::connect(addr).await;
    let reader = support::connect(addr).await;
    let done = Arc::new(AtomicBool::new(false));
    let reading = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut reads = 0;
            // Reads go on after the inserts, while compaction rewrites what they wrote.
            let mut after = 0;
            while after < 40 {
                let row = reader
                    .query_one("SELECT count(*), coalesce(sum(v), 0) FROM t", &[])
                    .await
                    .unwrap();
                let (count, sum): (i64, i64) = (row.get(0), row.get(1));
                // Insert i writes ROWS_PER_INSERT rows of value i.
                let n = count / ROWS_PER_INSERT;
                assert_eq!(count % ROWS_PER_INSERT, 0, "a partial insert is visible");
                assert_eq!(
                    sum,
                    ROWS_PER_INSERT * n * (n - 1) / 2,
                    "{count} rows sum to {sum}"
                );
                reads += 1;
                if done.load(Ordering::SeqCst) {
                    after += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            reads
        })
    };
    for i in 0..INSERTS {
        writer
            .batch_execute(&format!(
                "INSERT INTO t SELECT {i} AS k, {i} AS v FROM generate_series(1, {ROWS_PER_INSERT})"
            ))
            .await
            .unwrap();
    }
    done.store(true, Ordering::SeqCst);
    reading.await.unwrap()
}

async fn compaction_run(storage: Vec<String>, local: Option<&Path>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sluicedb.log");
    let mut args: Vec<&str> = storage.iter().map(String::as_str).collect();
    args.extend([
        "--compaction-interval",
        "1s",
        "--compaction-target-size",
        "1MB",
        "--gc-grace",
        "2s",
    ]);
    let mut server = ServerProcess::start(&args, &log);
    server.psql(&["-c", "CREATE TABLE t (k BIGINT, v BIGINT)"]);
    let reads = insert_while_reading(&server).await;
    assert!(reads > 40, "{reads} reads");
    let files = "SELECT count(*) FROM sluice_catalog.files WHERE relation = 'table t'";
    support::wait_for(Duration::from_secs(60), "compaction of t", || {
        let server = &server;
        async move { (number(server, files) < INSERTS / 2).then_some(()) }
    })
    .await;
    let compactions = number(
        &server,
        "SELECT count(*) FROM sluice_catalog.checkpoints \
         WHERE kind = 'compaction' AND reason = 'table t' AND status = 'committed'",
    );
    assert!(compactions >= 1);
    let expected = format!(
        "{}|{}",
        INSERTS * ROWS_PER_INSERT,
        ROWS_PER_INSERT * INSERTS * (INSERTS - 1) / 2
    );
    let query = "SELECT count(*), sum(v) FROM t";
    assert_eq!(server.psql(&["-At", "-c", query]).trim(), expected);
    if let Some(data) = local {
        // The replaced files go once the grace period is over; the named ones stay.
        let named = number(&server, files) as usize;
        support::wait_for(Duration::from_secs(30), "garbage collection", || async {
            (parquet_files(&data.join("tables")) == named).then_some(())
        })
        .await;
    }
    server.stop("KILL");
    server.restart();
    assert_eq!(server.psql(&["-At", "-c", query]).trim(), expected);
    if let Some(data) = local {
        // A dropped table's files go the same way, after the grace period.
        server.psql(&["-c", "DROP TABLE t"]);
        support::wait_for(
            Duration::from_secs(30),
            "the dropped table's files",
            || async { (parquet_files(&data.join("tables")) == 0).then_some(()) },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_on_a_local_folder_loses_and_doubles_nothing_and_old_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let storage = vec!["--storage".into(), data.to_str().unwrap().to_string()];
    compaction_run(storage, Some(&data)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_on_s3_loses_and_doubles_nothing() {
    let s3 = support::s3_target();
    if !support::require(s3.is_some(), "an S3 server (scripts/s3-server)") {
        return;
    }
    let s3 = s3.unwrap();
    let storage = vec![
        "--storage".into(),
        format!(
            "s3://{}/{}",
            s3.bucket,
            support::unique_prefix("compaction")
        ),
        "--s3-endpoint".into(),
        s3.endpoint,
        "--s3-allow-http".into(),
        "true".into(),
    ];
    compaction_run(storage, None).await;
}

const EVENTS: &str = "CREATE TABLE ev (k TEXT, ts TIMESTAMPTZ, \
                      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) APPEND ONLY";
const PER_MINUTE: &str = "SELECT window_start, k, count(*) AS n \
                          FROM TUMBLE(ev, ts, INTERVAL '1' MINUTE) GROUP BY window_start, k";

#[test]
fn retention_drops_files_of_old_windows_and_alter_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(
        &[
            "--storage",
            data.to_str().unwrap(),
            "--compaction-interval",
            "1s",
        ],
        &dir.path().join("sluicedb.log"),
    );
    server.psql(&["-c", EVENTS]);
    // Options are checked: unknown ones, bad durations, a view without windows.
    for (sql, code) in [
        (
            format!("CREATE MATERIALIZED VIEW x WITH (ttl = '1 day') AS {PER_MINUTE}"),
            "22023",
        ),
        (
            format!("CREATE MATERIALIZED VIEW x WITH (retention = 'forever') AS {PER_MINUTE}"),
            "22023",
        ),
        (
            "CREATE MATERIALIZED VIEW x WITH (retention = '1 day') AS SELECT k, count(*) FROM ev GROUP BY k"
                .to_string(),
            "0A000",
        ),
        (
            "ALTER MATERIALIZED VIEW nope SET (retention = '1 day')".to_string(),
            "42P01",
        ),
    ] {
        let error = server.psql_error(&sql);
        assert!(error.contains(code), "{sql}: {error}");
    }
    server.psql(&[
        "-c",
        &format!("CREATE MATERIALIZED VIEW per_minute AS {PER_MINUTE}"),
    ]);
    // Windows of 2020 in one checkpoint, windows of the last hour in the next.
    server.psql(&[
        "-c",
        "INSERT INTO ev VALUES ('a', '2020-01-01 00:00:10Z'), ('b', '2020-01-01 00:01:10Z'), \
         ('a', '2020-01-01 00:05:00Z')",
        "-c",
        "FLUSH",
        "-c",
        "INSERT INTO ev SELECT 'c', now() - INTERVAL '50' MINUTE \
         UNION ALL SELECT 'c', now() - INTERVAL '40' MINUTE UNION ALL SELECT 'c', now()",
        "-c",
        "FLUSH",
    ]);
    // 2020: the windows of 00:00 and 00:01 closed in the first checkpoint; that of 00:05
    // closed with the recent rows, in the second, whose file holds recent windows too.
    let windows = "SELECT count(*) FROM per_minute";
    let old = "SELECT count(*) FROM per_minute WHERE window_start < '2021-01-01'";
    assert_eq!(number(&server, old), 3);
    assert_eq!(number(&server, windows), 6);
    server.psql(&[
        "-c",
        "ALTER MATERIALIZED VIEW per_minute SET (retention = '30 days')",
    ]);
    let shown = server.psql(&["-At", "-c", "SHOW CREATE MATERIALIZED VIEW per_minute"]);
    assert!(shown.contains("WITH (retention = '30 days')"), "{shown}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while number(&server, old) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "old windows still there"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Whole files go: the second file, with 00:05 and the last hour's windows, stays.
    assert_eq!(number(&server, old), 1);
    assert_eq!(number(&server, windows), 4);
    let dropped = number(
        &server,
        "SELECT sum(files) FROM sluice_catalog.checkpoints \
         WHERE kind = 'retention' AND reason = 'materialized view per_minute'",
    );
    assert!(dropped >= 1);
    server.psql(&["-c", "ALTER MATERIALIZED VIEW per_minute RESET (retention)"]);
    let shown = server.psql(&["-At", "-c", "SHOW CREATE MATERIALIZED VIEW per_minute"]);
    assert!(!shown.contains("retention"), "{shown}");
}

#[test]
fn a_view_whose_state_file_is_gone_fails_alone_and_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(
        &["--storage", data.to_str().unwrap()],
        &dir.path().join("sluicedb.log"),
    );
    server.psql(&["-c", EVENTS]);
    server.psql(&[
        "-c",
        &format!("CREATE MATERIALIZED VIEW per_minute AS {PER_MINUTE}"),
    ]);
    server.psql(&[
        "-c",
        "CREATE MATERIALIZED VIEW totals AS SELECT window_start, count(*) AS n \
         FROM TUMBLE(ev, ts, INTERVAL '1' HOUR) GROUP BY window_start",
        "-c",
        "CREATE MATERIALIZED VIEW per_key AS SELECT k, count(*) AS n FROM ev GROUP BY k",
    ]);
    server.psql(&[
        "-c",
        "INSERT INTO ev SELECT CASE WHEN i % 3 = 0 THEN 'a' ELSE 'b' END, \
         TIMESTAMPTZ '2026-01-01 00:00:00Z' + CAST(i * 7 || ' seconds' AS INTERVAL) \
         FROM generate_series(1, 100) AS s(i)",
        "-c",
        "FLUSH",
    ]);
    let expected_sql = "SELECT date_bin(INTERVAL '1' MINUTE, ts, TIMESTAMPTZ '1970-01-01 00:00:00Z'), k, count(*) \
                        FROM ev GROUP BY 1, 2 ORDER BY 1, 2";
    let view_sql = "SELECT window_start, k, n FROM per_minute ORDER BY 1, 2";
    let expected = server.psql(&["-At", "-c", expected_sql]);
    assert_eq!(server.psql(&["-At", "-c", view_sql]), expected);
    server.stop("KILL");
    // Lose the open-window state of per_minute, and per_key's.
    let mut removed = Vec::new();
    for checkpoint in std::fs::read_dir(data.join("state")).unwrap().flatten() {
        for file in std::fs::read_dir(checkpoint.path()).unwrap().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.contains("per_minute") || name.contains("per_key") {
                std::fs::remove_file(file.path()).unwrap();
                removed.push(file.file_name().to_string_lossy().into_owned());
            }
        }
    }
    removed.sort();
    assert_eq!(
        removed.len(),
        2,
        "the state files of per_key and per_minute: {removed:?}"
    );
    server.restart();
    let status = server.psql(&[
        "-At",
        "-c",
        "SELECT view, status, last_error FROM sluice_catalog.materialized_views ORDER BY view",
    ]);
    assert!(status.contains("per_minute|failed|"), "{status}");
    assert!(
        removed.iter().all(|file| status.contains(file.as_str())),
        "the errors name the files: {status}"
    );
    assert!(status.contains("totals|running|"), "{status}");
    // per_key's rows change (no windows): its files are their changelog, so the failed view
    // still shows its rows as of its last checkpoint.
    assert!(status.contains("per_key|failed|"), "{status}");
    assert_eq!(
        server.psql(&["-At", "-c", "SELECT k, n FROM per_key ORDER BY k"]),
        server.psql(&[
            "-At",
            "-c",
            "SELECT k, count(*) FROM ev GROUP BY k ORDER BY k"
        ])
    );
    // totals resumed with its one open hour window, before any new input.
    let open = "SELECT open_groups FROM sluice_catalog.materialized_views WHERE view = 'totals'";
    assert_eq!(number(&server, open), 1);
    server.psql(&[
        "-c",
        "ALTER MATERIALIZED VIEW per_minute REBUILD",
        "-c",
        "FLUSH",
    ]);
    assert_eq!(server.psql(&["-At", "-c", view_sql]), expected);
    let error = server.psql_error("ALTER MATERIALIZED VIEW per_minute REORGANIZE");
    assert!(error.contains("42601"), "{error}");
}
