//! Runs every `tests/slt/**/*.slt` file over the Postgres wire protocol, each against a fresh
//! in-process server with its own data folder. Errors are checked by SQLSTATE
//! (`statement error (42P01)`) or by message. `SLT_COMPLETE=1` rewrites the expected results.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::SimpleQueryMessage;

use crate::support;

/// A tokio-postgres connection, speaking the simple query protocol as psql does.
struct PgConnection {
    client: tokio_postgres::Client,
}

#[derive(Debug)]
struct SqlError {
    sqlstate: Option<String>,
    message: String,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.sqlstate.as_deref().unwrap_or("?????"),
            self.message
        )
    }
}

impl std::error::Error for SqlError {}

impl From<tokio_postgres::Error> for SqlError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => SqlError {
                sqlstate: Some(db.code().code().to_string()),
                message: db.message().to_string(),
            },
            None => SqlError {
                sqlstate: None,
                message: e.to_string(),
            },
        }
    }
}

#[async_trait]
impl AsyncDB for PgConnection {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(description) => {
                    columns = Some(description.len())
                }
                SimpleQueryMessage::Row(row) => {
                    columns = Some(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).unwrap_or("NULL").to_string())
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(count),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sluicedb"
    }

    fn error_sql_state(err: &SqlError) -> Option<String> {
        err.sqlstate.clone()
    }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let mut files = Vec::new();
    slt_files(&support::root().join("tests/slt"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    for file in &files {
        let dir = tempfile::tempdir().unwrap();
        let server = support::start_server(dir.path().to_str().unwrap()).await;
        let addr = server.pg_addr();
        let mut runner = sqllogictest::Runner::new(move || async move {
            Ok(PgConnection {
                client: support::connect(addr).await,
            })
        });
        // SLT_COMPLETE=1 rewrites the expected results with what the server answers (as
        // DataFusion's `--complete`); read the diff before committing it.
        let result = match std::env::var("SLT_COMPLETE").is_ok_and(|v| v == "1") {
            true => runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .map_err(|e| e.to_string()),
            false => runner.run_file_async(file).await.map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            failures.push(format!("{}: {e}", file.display()));
        }
        server.shutdown().await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} slt files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("{} slt files passed", files.len());
}

/// Every example pipeline in `sql/` runs without error, statement by statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_sql_files_run() {
    let dir = support::root().join("sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no example .sql files in {}",
        dir.display()
    );
    let data = tempfile::tempdir().unwrap();
    let server = support::start_server(data.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    for file in &files {
        let sql = std::fs::read_to_string(file).unwrap();
        let messages = client
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let rows = messages
            .iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .count();
        assert!(rows > 0, "{} returned no rows", file.display());
    }
    server.shutdown().await;
}
