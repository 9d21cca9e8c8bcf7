//! Real client libraries against an in-process server: each script in `tests/clients/` checks
//! its own results and exits non-zero on the first wrong one. psycopg, asyncpg, SQLAlchemy,
//! node-postgres and pgjdbc (the driver of Metabase, Tableau and DBeaver); Superset's stack
//! (SQLAlchemy 1.4 + psycopg2) and Grafana's queries against the demo pipeline; psql's
//! meta-commands and tab completion; every column type through pg8000, asyncpg, psycopg and
//! tokio-postgres.

use std::process::Command;

use crate::support;

async fn run_client(program: &std::path::Path, script: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    run_against(&server, program, &[], script, what).await;
    server.shutdown().await;
}

/// A server running the demo pipeline (`serve --demo`): a source, its table and a window view.
async fn start_demo(dir: &std::path::Path) -> sluicedb::server::Server {
    let args = sluicedb::config::ServeArgs {
        storage: Some(dir.to_string_lossy().into_owned()),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        demo: Some(true),
        ..Default::default()
    };
    let config = args.resolve(sluicedb::config::AwsEnv::default()).unwrap();
    sluicedb::server::Server::start(config).await.unwrap()
}

async fn run_against(
    server: &sluicedb::server::Server,
    program: &std::path::Path,
    args: &[&str],
    script: &str,
    what: &str,
) {
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
        let java = std::path::Path::new("java");
        run_on_demo(java, &["-cp", jar], "JdbcClient.java", "JDBC").await;
    }
}

/// Every stored type through pg8000, asyncpg (binary codecs, statement cache, pool resets) and
/// psycopg in text and binary form, in by literals, parameters and COPY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_types_round_trip() {
    let python = python_with("pg8000");
    if support::require(python.is_some(), "pg8000 in .venv") {
        run_client(&python.unwrap(), "types_client.py", "column types").await;
    }
}

/// tokio-postgres: typed parameters in, binary results and text (simple query) results out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_types() {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    use rust_decimal::Decimal;

    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path().to_str().unwrap()).await;
    let client = support::connect(server.pg_addr()).await;
    client
        .batch_execute(
            "CREATE TABLE typed (i2 SMALLINT, i4 INTEGER, i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION,
             n NUMERIC(12,3), s TEXT, b BOOLEAN, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, by BYTEA)",
        )
        .await
        .unwrap();
    let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let ts: NaiveDateTime = date.and_hms_micro_opt(12, 34, 56, 789_012).unwrap();
    let tz: DateTime<Utc> = ts.and_utc();
    let n = Decimal::new(-123_456_789_125, 3);
    let bytes = vec![0u8, 255, 16, b'\\'];
    let insert = client
        .prepare("INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
        .await
        .unwrap();
    client
        .execute(
            &insert,
            &[
                &-32768i16,
                &i32::MAX,
                &i64::MIN,
                &1.5f32,
                &0.1f64,
                &n,
                &"héllo ✓",
                &true,
                &date,
                &ts,
                &tz,
                &bytes,
            ],
        )
        .await
        .unwrap();
    let nulls: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
        &None::<i16>,
        &None::<i32>,
        &None::<i64>,
        &None::<f32>,
        &None::<f64>,
        &None::<Decimal>,
        &None::<String>,
        &None::<bool>,
        &None::<NaiveDate>,
        &None::<NaiveDateTime>,
        &None::<DateTime<Utc>>,
        &None::<Vec<u8>>,
    ];
    client.execute(&insert, &nulls).await.unwrap();

    // Binary results, typed; the prepared statement runs twice.
    let select = client
        .prepare("SELECT * FROM typed WHERE i2 IS NOT DISTINCT FROM $1")
        .await
        .unwrap();
    let row = client.query_one(&select, &[&-32768i16]).await.unwrap();
    assert_eq!(row.get::<_, i16>(0), -32768);
    assert_eq!(row.get::<_, i32>(1), i32::MAX);
    assert_eq!(row.get::<_, i64>(2), i64::MIN);
    assert_eq!(row.get::<_, f32>(3), 1.5);
    assert_eq!(row.get::<_, f64>(4), 0.1);
    assert_eq!(row.get::<_, Decimal>(5), n);
    assert_eq!(row.get::<_, String>(6), "héllo ✓");
    assert!(row.get::<_, bool>(7));
    assert_eq!(row.get::<_, NaiveDate>(8), date);
    assert_eq!(row.get::<_, NaiveDateTime>(9), ts);
    assert_eq!(row.get::<_, DateTime<Utc>>(10), tz);
    assert_eq!(row.get::<_, Vec<u8>>(11), bytes);
    let null = client.query_one(&select, &[&None::<i16>]).await.unwrap();
    assert_eq!(null.get::<_, Option<i64>>(2), None);
    assert_eq!(null.get::<_, Option<DateTime<Utc>>>(10), None);
    assert_eq!(null.get::<_, Option<Vec<u8>>>(11), None);

    // Text results, as Postgres spells them.
    let messages = client
        .simple_query("SELECT * FROM typed ORDER BY i2")
        .await
        .unwrap();
    let rows: Vec<Vec<Option<&str>>> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((0..12).map(|i| row.get(i)).collect())
            }
            _ => None,
        })
        .collect();
    let first = [
        "-32768",
        "2147483647",
        "-9223372036854775808",
        "1.5",
        "0.1",
        "-123456789.125",
        "héllo ✓",
        "t",
        "2024-02-29",
        "2024-02-29 12:34:56.789012",
        "2024-02-29 12:34:56.789012+00",
        "\\x00ff105c",
    ];
    assert_eq!(rows, vec![first.map(Some).to_vec(), vec![None; 12]]);
    server.shutdown().await;
}

/// Runs a client script against a server running the demo pipeline.
async fn run_on_demo(program: &std::path::Path, args: &[&str], script: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_demo(dir.path()).await;
    run_against(&server, program, args, script, what).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_queries() {
    let python = python_with("psycopg");
    if support::require(python.is_some(), "psycopg in .venv") {
        run_on_demo(&python.unwrap(), &[], "grafana_client.py", "Grafana").await;
    }
}

/// examples/grafana's dashboard: every panel's SQL against the demo pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_example_dashboard() {
    let python = python_with("psycopg");
    if support::require(python.is_some(), "psycopg in .venv") {
        run_on_demo(
            &python.unwrap(),
            &[],
            "grafana_dashboard.py",
            "Grafana dashboard",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superset_stack() {
    // Superset pins SQLAlchemy 1.4 and psycopg2; scripts/setup-test-env puts them in their own venv.
    let python = support::root().join(".venv-superset/bin/python");
    if support::require(
        python.exists(),
        ".venv-superset (SQLAlchemy 1.4 + psycopg2)",
    ) {
        run_on_demo(&python, &[], "superset_client.py", "Superset").await;
    }
}

/// psql's tab completion and \timing, typed into psql on a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_tab_completion() {
    let python = python_with("pty");
    if support::require(
        python.is_some() && support::tool_available("psql"),
        "psql and python",
    ) {
        run_on_demo(
            &python.unwrap(),
            &[],
            "psql_completion.py",
            "psql completion",
        )
        .await;
    }
}

/// psql's meta-commands over the demo pipeline, and \copy both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands() {
    if !support::require(support::tool_available("psql"), "psql") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start_demo(dir.path()).await;
    let port = server.pg_addr().port().to_string();
    let csv_in = dir.path().join("in.csv");
    let csv_out = dir.path().join("out.csv");
    std::fs::write(&csv_in, "id,name\n1,a\n2,\"b, with comma\"\n").unwrap();
    let copy_in = format!(
        "\\copy psql_t (id, name) FROM '{}' CSV HEADER",
        csv_in.display()
    );
    let copy_out = format!(
        "\\copy (SELECT id, name FROM psql_t ORDER BY id) TO '{}' CSV HEADER",
        csv_out.display()
    );
    let psql = |command: String| {
        let port = port.clone();
        async move {
            let commands: Vec<String> = command.split('\n').map(str::to_string).collect();
            let output = tokio::task::spawn_blocking(move || {
                let mut psql = Command::new("psql");
                psql.args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "sluice",
                    "-d",
                    "sluice",
                ])
                .args(["-X", "-v", "ON_ERROR_STOP=1"]);
                for command in commands {
                    psql.args(["-c", &command]);
                }
                psql.output().unwrap()
            })
            .await
            .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                output.status.success(),
                "{command}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            stdout
        }
    };
    psql("CREATE TABLE psql_t (id INT NOT NULL, name TEXT)".into()).await;
    // Each meta-command with what its answer must show.
    let expectations: [(&str, &[&str]); 15] = [
        ("\\l", &["sluice", "UTF8"]),
        ("\\dn", &["public", "sluice_catalog"]),
        ("\\dn+", &["Access privileges", "public", "sluice_catalog"]),
        ("\\dt", &["demo_clicks", "psql_t", "table"]),
        // sluice_catalog is not on the search path: its views are listed by name only.
        (
            "\\dv sluice_catalog.*",
            &["sluice_catalog", "materialized_views", "view"],
        ),
        ("\\dm", &["demo_clicks_10s", "materialized view"]),
        (
            "\\d psql_t",
            &["Table \"public.psql_t\"", "integer", "not null", "text"],
        ),
        (
            "\\d demo_clicks_10s",
            &[
                "Materialized view \"public.demo_clicks_10s\"",
                "timestamp with time zone",
                "bigint",
            ],
        ),
        (
            "\\d+ demo_clicks_10s",
            &["View definition:", "tumble(demo_clicks, ts"],
        ),
        ("\\d+ psql_t", &["Storage", "plain", "extended"]),
        ("\\du", &["sluice", "Superuser", "Member of"]),
        (
            "\\df abs",
            &["pg_catalog | abs", "double precision", "func"],
        ),
        ("\\dT", &["List of data types"]),
        ("\\dp psql_t", &["Access privileges", "psql_t", "Policies"]),
        ("\\dx", &["plpgsql"]),
    ];
    for (command, expected) in expectations {
        let out = psql(command.to_string()).await;
        for needle in expected {
            assert!(out.contains(needle), "{command} lacks {needle:?}:\n{out}");
        }
    }
    let dv = psql("\\dv".into()).await;
    assert!(
        !dv.contains("demo_clicks_10s"),
        "a materialized view is not a view:\n{dv}"
    );
    let expanded = psql("\\x on\nSELECT 1 AS one".into()).await;
    assert!(expanded.contains("one | 1"), "{expanded}");
    assert!(psql(copy_in).await.contains("COPY 2"));
    assert!(psql(copy_out).await.contains("COPY 2"));
    assert_eq!(
        std::fs::read_to_string(&csv_out).unwrap(),
        "id,name\n1,a\n2,\"b, with comma\"\n"
    );
    server.shutdown().await;
}
