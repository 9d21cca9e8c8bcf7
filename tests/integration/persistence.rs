//! Rows survive a restart: the real `psql` copies 100 000 rows in, the server process is killed
//! (SIGKILL after FLUSH, or SIGTERM), started again, and every row reads back identical. The
//! same test runs on a local folder and on a real S3-compatible server.

use std::fmt::Write;

use crate::support::{self, ServerProcess};

const ROWS: usize = 100_000;

/// Deterministic rows covering every column type, with NULLs, escapes and negative numbers.
/// Returns the COPY text and the rows as psql prints them unaligned (`-A -t -F '|'`).
fn generate_rows() -> (String, String) {
    let mut copy = String::new();
    let mut expected = String::new();
    for i in 0..ROWS {
        let id = i as i64 * 7 - 1000;
        let name = match i % 5 {
            0 => None,
            1 => Some(format!("tab\there {i}")),
            _ => Some(format!("user-{i}")),
        };
        let amount = format!("{}.{:02}", i / 3, i % 100);
        let ok = i % 3 == 0;
        let ts = format!(
            "2024-03-{:02} {:02}:{:02}:{:02}+00",
            1 + i % 28,
            i % 24,
            i % 60,
            (i / 60) % 60
        );
        let copy_name = name
            .as_deref()
            .map_or("\\N".to_string(), |n| n.replace('\t', "\\t"));
        writeln!(
            copy,
            "{id}\t{copy_name}\t{amount}\t{}\t{ts}",
            if ok { "t" } else { "f" }
        )
        .unwrap();
        writeln!(
            expected,
            "{id}|{}|{amount}|{}|{ts}",
            name.unwrap_or_default(),
            if ok { "t" } else { "f" }
        )
        .unwrap();
    }
    (copy, expected)
}

const CREATE: &str = "CREATE TABLE events (id BIGINT NOT NULL, name TEXT, amount NUMERIC(12,2), ok BOOLEAN, \
                      ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) APPEND ONLY";
const READ_BACK: &str =
    "SELECT id, name, amount, ok, to_char(ts, '%Y-%m-%d %H:%M:%S+00') FROM events ORDER BY id";

/// Copies rows in with psql, stops the server with `signal`, restarts it, and compares.
fn copy_restart_compare(storage_args: &[&str], signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut server = ServerProcess::start(storage_args, &log);
    let (copy, expected) = generate_rows();
    let copy_file = dir.path().join("rows.tsv");
    std::fs::write(&copy_file, copy).unwrap();

    server.psql(&["-c", CREATE]);
    let out = server.psql(&[
        "-c",
        &format!("\\copy events FROM '{}'", copy_file.display()),
    ]);
    assert!(
        out.trim().is_empty() || out.contains(&format!("COPY {ROWS}")),
        "{out}"
    );
    server.psql(&["-c", "FLUSH"]);
    let before = server.psql(&["-A", "-t", "-F", "|", "-c", READ_BACK]);
    assert_eq!(before.lines().count(), ROWS);
    assert!(
        before == expected,
        "rows read before restart differ from the rows copied in"
    );

    let metrics = server.http_get("/metrics");
    assert!(
        metrics.contains(&format!("sluicedb_table_rows_written_total {ROWS}")),
        "{metrics}"
    );
    assert_eq!(server.http_get("/healthz").trim(), "ok");

    server.stop(signal);
    server.restart();
    let after = server.psql(&["-A", "-t", "-F", "|", "-c", READ_BACK]);
    assert!(
        after == expected,
        "rows read after restart differ from the rows copied in"
    );
    let create = server.psql(&["-A", "-t", "-F", "|", "-c", "SHOW CREATE TABLE events"]);
    assert!(
        create.contains("WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) APPEND ONLY"),
        "{create}"
    );
}

fn local_folder_survives(signal: &str) {
    if !support::require(support::tool_available("psql"), "psql (postgresql-client)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_restart_compare(&["--storage", data.to_str().unwrap()], signal);
}

#[test]
fn local_folder_survives_kill_after_flush() {
    local_folder_survives("KILL");
}

#[test]
fn local_folder_survives_sigterm() {
    local_folder_survives("TERM");
}

#[test]
fn s3_survives_kill_after_flush() {
    let psql = support::tool_available("psql");
    if !support::require(psql, "psql (postgresql-client)") {
        return;
    }
    let target = support::s3_target();
    if !support::require(
        target.is_some(),
        "an S3 server (SLUICEDB_TEST_S3_ENDPOINT, started by scripts/test)",
    ) {
        return;
    }
    let target = target.unwrap();
    let storage = format!(
        "s3://{}/{}",
        target.bucket,
        support::unique_prefix("persistence")
    );
    copy_restart_compare(
        &[
            "--storage",
            &storage,
            "--s3-endpoint",
            &target.endpoint,
            "--s3-allow-http",
            "true",
        ],
        "KILL",
    );
}

#[test]
fn unreachable_s3_fails_at_startup_with_a_clear_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluicedb"))
        .args([
            "serve",
            "--storage",
            "s3://nobucket/x",
            "--s3-endpoint",
            "http://127.0.0.1:9",
        ])
        .args([
            "--s3-allow-http",
            "true",
            "--storage-startup-timeout",
            "2s",
            "--pg-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("storage error"), "{stderr}");
}

/// A tmpfs of a few hundred KiB, unmounted when dropped.
struct TinyDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(TinyDisk { path, _dir: dir })
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

/// A server on a 512 KiB tmpfs and a client of it; `None` (a skip, outside CI) without root.
async fn on_a_tiny_disk() -> Option<(TinyDisk, sluicedb::server::Server, tokio_postgres::Client)> {
    let disk = TinyDisk::mount();
    if !support::require(disk.is_some(), "a tmpfs mount (needs root)") {
        return None;
    }
    let disk = disk?;
    let server = support::start_server(disk.path.to_str()?).await;
    let client = support::connect(server.pg_addr()).await;
    Some((disk, server, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_statement_not_the_server() {
    let Some((_disk, server, client)) = on_a_tiny_disk().await else {
        return;
    };
    client
        .batch_execute("CREATE TABLE big (id BIGINT, payload TEXT)")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO big VALUES (1, 'small')")
        .await
        .unwrap();
    // Hex digests barely compress: 80 000 rows of 64 characters cannot fit on a 512 KiB disk.
    let error = client
        .batch_execute(
            "INSERT INTO big SELECT value, md5(CAST(value AS VARCHAR)) || md5(CAST(value + 1 AS VARCHAR)) \
             FROM generate_series(1, 80000)",
        )
        .await
        .unwrap_err();
    let db = error
        .as_db_error()
        .expect("an ErrorResponse, not a dropped connection");
    // disk_full, not the object store's 58030 (see faults::a_full_disk_…).
    assert_eq!(db.code().code(), "53100", "{db:?}");
    // The failed statement left nothing visible, and the server still answers.
    let count: i64 = client
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
    client
        .batch_execute("INSERT INTO big VALUES (2, 'fits')")
        .await
        .unwrap();
    let count: i64 = client
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_on_a_full_disk_fails_with_53100() {
    let Some((_disk, server, client)) = on_a_tiny_disk().await else {
        return;
    };
    client
        .batch_execute(
            "CREATE TABLE t (k BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
               APPEND ONLY;
             CREATE MATERIALIZED VIEW v AS SELECT window_start, k, count(*) AS n \
               FROM TUMBLE(t, ts, INTERVAL '1' HOUR) GROUP BY window_start, k;
             INSERT INTO t SELECT value, TIMESTAMPTZ '2026-01-01 00:00:00Z' \
               FROM generate_series(1, 40000)",
        )
        .await
        .unwrap();
    // The view's open state (40 000 groups) does not fit in what the disk has left: the
    // checkpoint fails as disk_full (53100, the statement had no effect), not XX000.
    let error = client.batch_execute("FLUSH").await.unwrap_err();
    let db = error
        .as_db_error()
        .expect("an ErrorResponse, not a dropped connection");
    assert_eq!(db.code().code(), "53100", "{db:?}");
    let count: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 40_000);
    server.shutdown().await;
}
