//! Roles and privileges as Postgres has them, over real SCRAM logins: a read-only role reads
//! what it was granted and nothing else, whichever way it names a relation; it cannot write,
//! create, drop, flush, see others' queries or stop their sessions; an owner grants and revokes
//! (taking effect at the next statement of open sessions); roles, grants and verifiers survive
//! a restart, and no password is stored. Committed data is unchanged by everything refused.

use std::net::SocketAddr;
use std::path::Path;

use sluicedb::server::Server;
use tokio_postgres::{Client, NoTls};

use crate::support;

async fn start(dir: &Path) -> Server {
    let config = "auth = \"scram-sha-256\"\n[users]\nsluice = \"admin secret\"\n";
    support::start_with_config_file(dir, config).await
}

async fn login(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let conninfo = format!(
        "host={} port={} user={user} password='{password}' dbname=sluice",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The SQLSTATE of a failed statement or login.
fn code(error: tokio_postgres::Error) -> String {
    error
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| panic!("no SQLSTATE in {error}"))
}

async fn refused(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql} should have been refused"),
        Err(e) => code(e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_role_reads_what_it_was_granted_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let addr = server.pg_addr();
    let admin = login(addr, "sluice", "admin secret").await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE clicks (id INT, page TEXT);
             INSERT INTO clicks SELECT g, 'p' || (g % 7) FROM generate_series(1, 500) g;
             CREATE TABLE payroll (name TEXT, salary INT);
             INSERT INTO payroll VALUES ('ann', 100), ('bob', 200);
             CREATE MATERIALIZED VIEW pages AS SELECT page, count(*) AS n FROM clicks GROUP BY page;
             CREATE ROLE reader LOGIN PASSWORD 'read only';
             CREATE ROLE etl LOGIN PASSWORD 'etl pass phrase';
             CREATE ROLE locked PASSWORD 'no login';
             GRANT CREATE ON SCHEMA public TO etl;
             GRANT USAGE ON SCHEMA public TO reader;
             GRANT SELECT ON clicks, pages TO reader;",
        )
        .await
        .unwrap();
    let reader = login(addr, "reader", "read only").await.unwrap();

    // What it was granted, it reads; the superuser's numbers are its numbers.
    let count = "SELECT count(*) FROM clicks";
    assert_eq!(support::query_i64(&reader, count).await, 500);
    assert_eq!(
        support::query_i64(&reader, "SELECT sum(n) FROM pages").await,
        support::query_i64(&admin, "SELECT sum(n) FROM pages").await
    );
    // Anything else, however it is named, is 42501.
    for sql in [
        "SELECT * FROM payroll",
        "SELECT * FROM public.payroll",
        "SELECT * FROM clicks WHERE id IN (SELECT salary FROM payroll)",
        "SELECT (SELECT max(salary) FROM payroll) FROM clicks LIMIT 1",
        "SELECT * FROM clicks JOIN payroll ON true",
        "WITH p AS (SELECT * FROM payroll) SELECT * FROM p",
        "COPY payroll TO STDOUT",
        "COPY (SELECT * FROM payroll) TO STDOUT",
        "INSERT INTO clicks VALUES (0, 'x')",
        "INSERT INTO clicks SELECT 0, name FROM payroll",
        "CREATE TABLE mine (x INT)",
        "CREATE MATERIALIZED VIEW mine AS SELECT page, count(*) FROM clicks GROUP BY page",
        "DROP TABLE clicks",
        "DROP MATERIALIZED VIEW pages",
        "ALTER MATERIALIZED VIEW pages REBUILD",
        "FLUSH",
        "CREATE ROLE sneaky SUPERUSER",
        "ALTER ROLE reader SUPERUSER",
        "GRANT SELECT ON payroll TO reader",
        "DROP ROLE etl",
        "SET ROLE sluice",
        "SET SESSION AUTHORIZATION sluice",
    ] {
        assert_eq!(refused(&reader, sql).await, "42501", "{sql}");
    }
    let prepared = reader
        .prepare("SELECT * FROM payroll WHERE salary > $1")
        .await;
    let refused_prepared = match prepared {
        Ok(statement) => reader.query(&statement, &[&0i32]).await.err(),
        Err(e) => Some(e),
    };
    assert_eq!(
        code(refused_prepared.expect("prepared read of payroll refused")),
        "42501"
    );

    reader
        .batch_execute("SET ROLE reader; SET ROLE NONE; RESET ROLE")
        .await
        .unwrap();

    // The catalogs tell it the truth.
    let shown = reader.simple_query("SHOW is_superuser").await.unwrap();
    let superuser = shown.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(superuser.as_deref(), Some("off"));
    let listed: Vec<String> = reader
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(listed, ["clicks", "pages"]);
    let row = &reader
        .query(
            "SELECT has_table_privilege('clicks', 'SELECT'), \
             has_table_privilege('payroll', 'SELECT'), has_table_privilege('clicks', 'INSERT')",
            &[],
        )
        .await
        .unwrap()[0];
    let may: (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(may, (true, false, false));

    // Others' sessions: who, not what; and not to be stopped.
    admin.simple_query("SELECT 'admin was here'").await.unwrap();
    let activity = reader
        .query(
            "SELECT usename, query, pid FROM pg_stat_activity ORDER BY usename",
            &[],
        )
        .await
        .unwrap();
    let admin_row = activity
        .iter()
        .find(|r| r.get::<_, String>(0) == "sluice")
        .expect("the superuser's session is listed");
    assert_eq!(admin_row.get::<_, String>(1), "<insufficient privilege>");
    let admin_pid: i32 = admin_row.get(2);
    for stop in ["pg_cancel_backend", "pg_terminate_backend"] {
        let sql = format!("SELECT {stop}({admin_pid})");
        assert_eq!(refused(&reader, &sql).await, "42501", "{sql}");
    }
    admin
        .simple_query("SELECT 1")
        .await
        .expect("the superuser's session lives on");

    // An owner grants and revokes; an open session follows at its next statement.
    let etl = login(addr, "etl", "etl pass phrase").await.unwrap();
    etl.batch_execute("CREATE TABLE loads (n INT); INSERT INTO loads VALUES (1), (2)")
        .await
        .unwrap();
    let loads = "SELECT count(*) FROM loads";
    assert_eq!(refused(&reader, loads).await, "42501");
    etl.batch_execute("GRANT SELECT ON loads TO reader")
        .await
        .unwrap();
    assert_eq!(support::query_i64(&reader, loads).await, 2);
    etl.batch_execute("REVOKE SELECT ON loads FROM reader")
        .await
        .unwrap();
    assert_eq!(refused(&reader, loads).await, "42501");
    // UPDATE and DELETE are privileges of their own, as in Postgres: INSERT allows neither.
    etl.batch_execute(
        "CREATE TABLE accounts (id INT PRIMARY KEY, balance INT); \
         INSERT INTO accounts VALUES (1, 10), (2, 20), (3, 30); \
         GRANT SELECT, INSERT ON accounts TO reader",
    )
    .await
    .unwrap();
    let (update, delete) = (
        "UPDATE accounts SET balance = 0 WHERE id = 1",
        "DELETE FROM accounts WHERE id = 2",
    );
    reader
        .batch_execute("INSERT INTO accounts VALUES (4, 40)")
        .await
        .unwrap();
    assert_eq!(refused(&reader, update).await, "42501");
    assert_eq!(refused(&reader, delete).await, "42501");
    let may = |what: &str| {
        format!(
            "SELECT CAST(CASE WHEN has_table_privilege('accounts', '{what}') THEN 1 ELSE 0 END \
             AS BIGINT)"
        )
    };
    assert_eq!(support::query_i64(&reader, &may("UPDATE")).await, 0);
    etl.batch_execute("GRANT UPDATE ON accounts TO reader")
        .await
        .unwrap();
    assert_eq!(support::query_i64(&reader, &may("UPDATE")).await, 1);
    reader.batch_execute(update).await.unwrap();
    assert_eq!(refused(&reader, delete).await, "42501");
    etl.batch_execute("GRANT DELETE ON accounts TO reader")
        .await
        .unwrap();
    reader.batch_execute(delete).await.unwrap();
    let left = "SELECT sum(balance) FROM accounts";
    assert_eq!(support::query_i64(&reader, left).await, 70);
    let acl = "SELECT array_to_string(relacl, ',') FROM pg_class WHERE relname = 'accounts'";
    let acl = reader.simple_query(acl).await.unwrap();
    let acl = acl.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(
        acl.as_deref(),
        Some("etl=arwd/etl,reader=arwd/etl"),
        "relacl as Postgres writes it"
    );
    assert_eq!(refused(&etl, "DROP TABLE clicks").await, "42501");
    assert_eq!(refused(&etl, "SELECT count(*) FROM payroll").await, "42501");

    // Logins: NOLOGIN is 28000, a wrong password 28P01.
    assert_eq!(
        code(login(addr, "locked", "no login").await.err().unwrap()),
        "28000"
    );
    assert_eq!(
        code(login(addr, "reader", "read write").await.err().unwrap()),
        "28P01"
    );

    // A role holding privileges cannot be dropped until they are revoked.
    assert_eq!(refused(&admin, "DROP ROLE reader").await, "2BP01");
    assert_eq!(refused(&admin, "CREATE ROLE reader").await, "42710");
    assert_eq!(refused(&admin, "CREATE ROLE pg_monitor").await, "42939");
    assert_eq!(
        refused(&admin, "GRANT SELECT ON clicks TO nobody").await,
        "42704"
    );

    // HTTP takes a role's credentials too.
    let basic = support::basic_auth;
    let http = server.http_addr();
    assert_eq!(
        support::http_request(http, "/metrics", &basic("reader:read only")).0,
        200
    );
    assert_eq!(
        support::http_request(http, "/metrics", &basic("locked:no login")).0,
        401
    );

    // Everything refused changed nothing.
    assert_eq!(support::query_i64(&admin, count).await, 500);
    assert_eq!(
        support::query_i64(&admin, "SELECT sum(salary) FROM payroll").await,
        300
    );
    drop((reader, etl, admin));
    server.shutdown().await;

    // Roles, grants and owners are durable; passwords are not stored, only verifiers.
    let server = start(dir.path()).await;
    let addr = server.pg_addr();
    let reader = login(addr, "reader", "read only").await.unwrap();
    assert_eq!(support::query_i64(&reader, count).await, 500);
    assert_eq!(refused(&reader, "SELECT * FROM payroll").await, "42501");
    let etl = login(addr, "etl", "etl pass phrase").await.unwrap();
    etl.batch_execute("GRANT SELECT ON loads TO reader")
        .await
        .unwrap();
    assert_eq!(support::query_i64(&reader, loads).await, 2);
    for entry in walk(&dir.path().join("data")) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for password in ["read only", "etl pass phrase", "no login"] {
            assert!(
                !text.contains(password),
                "{password} stored in {}",
                entry.display()
            );
        }
    }
    server.shutdown().await;
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            match path.is_dir() {
                true => pending.push(path),
                false => files.push(path),
            }
        }
    }
    files
}
