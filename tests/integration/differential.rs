//! SluiceDB against a real PostgreSQL 15 (started by scripts/postgres-server) as the oracle of
//! Postgres behaviour: `tests/differential/corpus.sql` runs on both through libpq over the
//! simple protocol and the extended protocol with text and with binary results, and every
//! column name, type OID, value byte and error SQLSTATE must match, but for the differences
//! `tests/differential/accepted.txt` lists with a reason. A difference not listed fails the test,
//! and so does a listed one that no longer occurs (the list only shrinks).

use std::process::Command;

use crate::support::{self, python, require, root, start_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_as_postgres_does() {
    let postgres = std::env::var("SLUICEDB_TEST_POSTGRES").ok();
    if !require(
        postgres.is_some(),
        "a PostgreSQL server (SLUICEDB_TEST_POSTGRES)",
    ) {
        return;
    }
    let Some(python) = python() else {
        require(false, "the test venv (.venv)");
        return;
    };
    let postgres = postgres.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path().to_str().unwrap()).await;
    // The corpus' table is made on both servers; a PostgreSQL left from an earlier run drops it.
    let reset = Command::new("psql")
        .args([&postgres, "-qc", "DROP TABLE IF EXISTS diff_t"])
        .output()
        .unwrap();
    assert!(reset.status.success(), "{reset:?}");
    // The same user and database names on both, so current_user and friends compare.
    let ours = format!(
        "postgresql://postgres@{}:{}/sluice",
        server.pg_addr().ip(),
        server.pg_addr().port()
    );
    let differential = root().join("tests/differential");
    let run = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(support::root().join("tests/clients/differential.py"))
            .arg(&ours)
            .arg(&postgres)
            .arg(differential.join("corpus.sql"))
            .arg(differential.join("accepted.txt"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    eprintln!("{}", report.lines().last().unwrap_or_default());
    assert!(
        run.status.success(),
        "SluiceDB answered differently from PostgreSQL:\n{report}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    server.shutdown().await;
}
