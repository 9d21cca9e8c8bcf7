//! Real client libraries against an in-process server: each script in `tests/clients/` checks
//! its own results and exits non-zero on the first wrong one. psycopg, asyncpg, SQLAlchemy,
//! node-postgres and pgjdbc (the driver of Metabase, Tableau and DBeaver).

use std::process::Command;

use crate::support;

async fn run_client(program: &std::path::Path, script: &str, what: &str) {
    run_client_with(program, &[], script, what).await;
}

async fn run_client_with(program: &std::path::Path, args: &[&str], script: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let port = server.pg_addr().port().to_string();
    let script = support::root().join("tests/clients").join(script);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking({
        let program = program.to_path_buf();
        move || {
            Command::new(program)
                .args(args)
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

/// Runs a Python client script when `.venv` has `module`.
async fn run_python_client(module: &str, script: &str) {
    let python = python_with(module);
    if support::require(python.is_some(), &format!("{module} in .venv")) {
        run_client(&python.unwrap(), script, module).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg() {
    run_python_client("psycopg", "psycopg_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg() {
    run_python_client("asyncpg", "asyncpg_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy() {
    run_python_client("sqlalchemy", "sqlalchemy_client.py").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc() {
    let jar = "/usr/share/java/postgresql.jar";
    let available = std::path::Path::new(jar).exists() && support::tool_available("java");
    if support::require(
        available,
        "java and pgjdbc (Debian's libpostgresql-jdbc-java)",
    ) {
        run_client_with(
            std::path::Path::new("java"),
            &["-cp", jar],
            "JdbcClient.java",
            "JDBC",
        )
        .await;
    }
}
