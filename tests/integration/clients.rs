//! Real client libraries against an in-process server: each script in `tests/clients/` checks
//! its own results and exits non-zero on the first wrong one.

use std::process::Command;

use crate::support;

async fn run_client(program: &std::path::Path, script: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let port = server.pg_addr().port().to_string();
    let script = support::root().join("tests/clients").join(script);
    let output = tokio::task::spawn_blocking({
        let program = program.to_path_buf();
        move || {
            Command::new(program)
                .arg(script)
                .arg(port)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    server.shutdown().await;
    assert!(
        output.status.success(),
        "{what} client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn python_with(module: &str) -> Option<std::path::PathBuf> {
    let python = support::python()?;
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .status()
        .ok()?
        .success();
    ok.then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg() {
    let python = python_with("psycopg");
    if support::require(python.is_some(), "psycopg in .venv") {
        run_client(&python.unwrap(), "psycopg_client.py", "psycopg").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg() {
    let python = python_with("asyncpg");
    if support::require(python.is_some(), "asyncpg in .venv") {
        run_client(&python.unwrap(), "asyncpg_client.py", "asyncpg").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy() {
    let python = python_with("sqlalchemy");
    if support::require(python.is_some(), "sqlalchemy in .venv") {
        run_client(&python.unwrap(), "sqlalchemy_client.py", "SQLAlchemy").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres() {
    let installed = support::root()
        .join("tests/clients/node_modules/pg")
        .exists();
    if support::require(
        installed && support::tool_available("node"),
        "node and tests/clients/node_modules/pg",
    ) {
        run_client(
            std::path::Path::new("node"),
            "node_pg_client.js",
            "node-postgres",
        )
        .await;
    }
}
