//! Who gets in, checked with the real psql: SCRAM-SHA-256 with a good and a bad password and an
//! unknown user, TLS with `sslmode=require` and `verify-full` (and SCRAM channel binding over
//! it), a server that requires TLS, and the refusal to serve the network without a password.

use std::path::Path;
use std::process::{Command, Output};

use sluicedb::config::{AwsEnv, ServeArgs};
use sluicedb::server::Server;

use crate::support;

/// A self-signed certificate for 127.0.0.1, made with the openssl command line.
fn certificate(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(status.status.success(), "openssl: {status:?}");
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

/// A server with a fresh certificate and `config` after the TLS settings; also the
/// certificate's path, for `sslrootcert`.
async fn start_with_tls(dir: &Path, config: &str) -> (Server, String) {
    let (cert, key) = certificate(dir);
    let toml = format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\"\n{config}");
    (support::start_with_config_file(dir, &toml).await, cert)
}

/// Runs `psql -c sql` with a libpq connection string and a password, off the async runtime.
async fn psql(conninfo: String, password: &str, sql: &str) -> Output {
    let password = password.to_string();
    let sql = sql.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new("psql")
            .arg(conninfo)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "psql should have been refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn tools_available() -> bool {
    support::require(
        support::tool_available("psql") && support::tool_available("openssl"),
        "psql and openssl",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_passwords_and_tls() {
    if !tools_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = start_with_tls(
        dir.path(),
        "auth = \"scram-sha-256\"\n[users]\nalice = \"wonder land\"\ngrafana = \"dashboards\"\n",
    )
    .await;
    let port = server.pg_addr().port();
    let conninfo = |user: &str, extra: &str| {
        format!("host=127.0.0.1 port={port} user={user} dbname=sluice {extra}")
    };

    // The right password, with and without TLS; over TLS the client can see it is encrypted.
    let plain = psql(
        conninfo("alice", "sslmode=disable"),
        "wonder land",
        "SELECT current_user",
    )
    .await;
    assert_eq!(ok(&plain), "alice");
    let tls = psql(
        conninfo(
            "grafana",
            &format!("sslmode=verify-full sslrootcert={cert}"),
        ),
        "dashboards",
        "SELECT 41 + 1",
    )
    .await;
    assert_eq!(ok(&tls), "42");
    let bound = psql(
        conninfo("alice", "sslmode=require channel_binding=require"),
        "wonder land",
        "SELECT 'bound'",
    )
    .await;
    assert_eq!(ok(&bound), "bound");

    // A wrong password and an unknown user fail alike, with Postgres' wording.
    let wrong = refused(
        &psql(
            conninfo("alice", "sslmode=disable"),
            "wonderland",
            "SELECT 1",
        )
        .await,
    );
    assert!(
        wrong.contains("password authentication failed for user \"alice\""),
        "{wrong}"
    );
    let unknown = refused(&psql(conninfo("mallory", "sslmode=require"), "x", "SELECT 1").await);
    assert!(
        unknown.contains("password authentication failed for user \"mallory\""),
        "{unknown}"
    );
    // HTTP asks for the same credentials, on every route but /healthz.
    let basic = support::basic_auth;
    let http = server.http_addr();
    assert_eq!(support::http_request(http, "/healthz", "").0, 200);
    assert_eq!(support::http_request(http, "/metrics", "").0, 401);
    assert_eq!(
        support::http_request(http, "/metrics", &basic("alice:wonderland")).0,
        401
    );
    assert_eq!(
        support::http_request(http, "/metrics", &basic("mallory:x")).0,
        401
    );
    let (status, metrics) = support::http_request(http, "/metrics", &basic("alice:wonder land"));
    assert_eq!(status, 200, "{metrics}");
    // Counters are per process, and other tests in it may fail logins too.
    let failed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluicedb_logins_failed_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no failed-login counter in {metrics}"));
    assert!(failed >= 2, "{failed} failed logins counted");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_refuses_plaintext() {
    if !tools_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start_with_tls(dir.path(), "tls_required = true\n").await;
    let port = server.pg_addr().port();
    let conninfo =
        |mode: &str| format!("host=127.0.0.1 port={port} user=sluice dbname=sluice sslmode={mode}");
    assert_eq!(
        ok(&psql(conninfo("require"), "", "SELECT 'tls'").await),
        "tls"
    );
    let plain = refused(&psql(conninfo("disable"), "", "SELECT 1").await);
    assert!(plain.contains("requires sslmode=require"), "{plain}");
    // The certificate's end, for alerts before it expires: openssl's `-days 1` from now.
    let metrics = support::http_get(server.http_addr(), "/metrics");
    let expiry = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("sluicedb_tls_certificate_expiry_seconds ")?
                .parse::<i64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no certificate expiry in {metrics}"));
    let in_a_day = chrono::Utc::now().timestamp() + 86_400;
    assert!(
        (expiry - in_a_day).abs() < 600,
        "expires at {expiry}, not about {in_a_day}"
    );
    server.shutdown().await;
}

#[test]
fn no_password_on_the_network_needs_consent() {
    let args = ServeArgs {
        pg_listen: Some("0.0.0.0:0".parse().unwrap()),
        ..Default::default()
    };
    let error = args.resolve(AwsEnv::default()).unwrap_err().to_string();
    assert!(
        error.contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{error}"
    );
}
