//! Shared test scaffolding: servers in-process and as real processes, external tools, S3.
//!
//! External services and clients are required under `CI=true` (the test fails when one is
//! missing); on a developer machine a test that lacks one says so and returns.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluicedb::config::{AwsEnv, ServeArgs};
use sluicedb::server::Server;

/// Whether missing tools and services must fail tests.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns `false` (and says why) when `what` is unavailable outside CI; panics in CI.
pub fn require(available: bool, what: &str) -> bool {
    if !available {
        assert!(
            !in_ci(),
            "{what} is required under CI=true; run scripts/test to install it"
        );
        eprintln!("skipping: {what} is not available (scripts/test installs it)");
    }
    available
}

pub fn tool_available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python interpreter with the client libraries, as set up by scripts/setup-test-env.
pub fn python() -> Option<PathBuf> {
    let venv = root().join(".venv/bin/python");
    venv.exists().then_some(venv)
}

/// The S3 settings of the test server started by scripts/s3-server, if one is running.
pub struct S3Target {
    pub endpoint: String,
    pub bucket: String,
}

pub fn s3_target() -> Option<S3Target> {
    let endpoint = std::env::var("SLUICEDB_TEST_S3_ENDPOINT").ok()?;
    let bucket = std::env::var("SLUICEDB_TEST_S3_BUCKET").unwrap_or_else(|_| "sluice-test".into());
    Some(S3Target { endpoint, bucket })
}

/// The flags that store a server's data under a new prefix of `bucket` at `endpoint`.
pub fn s3_args(endpoint: &str, bucket: &str, name: &str) -> Vec<String> {
    vec![
        "--storage".into(),
        format!("s3://{bucket}/{}", unique_prefix(name)),
        "--s3-endpoint".into(),
        endpoint.into(),
        "--s3-allow-http".into(),
        "true".into(),
    ]
}

/// A storage prefix no other test run uses.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// An in-process server on free ports over `storage`.
pub async fn start_server(storage: &str) -> Server {
    start_configured(storage, ServeArgs::default()).await
}

/// An in-process server on free ports over `dir/data`, configured by `toml` (written to
/// `dir/sluicedb.toml`, as a user would).
pub async fn start_with_config_file(dir: &Path, toml: &str) -> Server {
    let file = dir.join("sluicedb.toml");
    std::fs::write(&file, toml).unwrap();
    let storage = dir.join("data").to_string_lossy().into_owned();
    start_configured(&storage, ServeArgs::from_toml_file(&file).unwrap()).await
}

async fn start_configured(storage: &str, file: ServeArgs) -> Server {
    let args = ServeArgs {
        storage: Some(storage.to_string()),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let mut config = args.or(file).resolve(AwsEnv::default()).unwrap();
    // Kafka readers in processes of their own, as the binary runs them.
    config.kafka_reader = Some(sluicedb::source::kafka_process::ReaderProcess {
        binary: env!("CARGO_BIN_EXE_sluicedb").into(),
        log: "error".into(),
    });
    Server::start(config).await.unwrap()
}

/// An `Authorization` header line with HTTP Basic `user:password` credentials.
pub fn basic_auth(credentials: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    format!("Authorization: Basic {encoded}\r\n")
}

/// A connected tokio-postgres client whose connection task runs in the background.
pub async fn connect(addr: SocketAddr) -> tokio_postgres::Client {
    let url = format!(
        "host={} port={} user=sluice dbname=sluice",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sluicedb serve` as a real process, stopped (SIGKILL) when dropped.
pub struct ServerProcess {
    child: Child,
    pub pg_port: u16,
    pub http_port: u16,
    args: Vec<String>,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts the binary with `extra` flags and waits for `/healthz`.
    pub fn start(extra: &[&str], log: &Path) -> Self {
        let mut process = Self::spawn(extra, log);
        process.wait_ready();
        process
    }

    /// Waits until `/healthz` answers (panics if the process exits or takes over a minute).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "sluicedb exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if self.healthy() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "sluicedb did not start: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Sends `signal` (`KILL`, `TERM`, `INT`) and waits for the process to end.
    pub fn stop(&mut self, signal: &str) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "sluicedb did not stop on SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the same command again, on the same ports and storage.
    pub fn restart(&mut self) {
        self.restart_with_env(&[]);
    }

    /// Starts the same command again with extra environment variables.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.child = spawn(&self.args, &self.log, env);
        self.wait_ready();
    }

    /// Waits up to `timeout` for the process to end by itself; whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The body of an HTTP GET on the server's HTTP port.
    pub fn http_get(&self, path: &str) -> String {
        http_get(([127, 0, 0, 1], self.http_port).into(), path)
    }

    /// Runs psql with `args` against this server; returns stdout, panicking on failure.
    pub fn psql(&self, args: &[&str]) -> String {
        let output = self.psql_output(args);
        assert!(
            output.status.success(),
            "psql {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `sql`, which must fail; returns psql's error with its SQLSTATE (`ERROR:  22023: …`).
    pub fn psql_error(&self, sql: &str) -> String {
        let output = self.psql_output(&["-v", "VERBOSITY=verbose", "-c", sql]);
        assert!(!output.status.success(), "{sql} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Runs psql with `args`; stdout, or `None` if it failed (the server may be gone).
    pub fn try_psql(&self, args: &[&str]) -> Option<String> {
        let output = self.psql_output(args);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The resident memory of the process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The most resident memory the process has had, in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    fn status_bytes(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// Whether `/healthz` answers: the database is open (while it opens, the Postgres port
    /// answers 57P03 and the HTTP port nothing).
    pub fn healthy(&self) -> bool {
        let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = socket.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let mut answer = [0u8; 12];
        socket.read_exact(&mut answer).is_ok() && answer.starts_with(b"HTTP/1.")
    }

    /// Starts the binary with `extra` flags without waiting for it to be ready.
    pub fn spawn(extra: &[&str], log: &Path) -> Self {
        let (pg_port, http_port) = (free_port(), free_port());
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--pg-listen".into(),
            format!("127.0.0.1:{pg_port}"),
            "--http-listen".into(),
            format!("127.0.0.1:{http_port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        ServerProcess {
            child: spawn(&args, log, &[]),
            pg_port,
            http_port,
            args,
            log: log.into(),
        }
    }

    /// CPU time the process has used (user and system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        // SAFETY: sysconf only reads a configuration value.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    fn psql_output(&self, args: &[&str]) -> std::process::Output {
        Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.pg_port.to_string(),
                "-U",
                "sluice",
                "-d",
                "sluice",
            ])
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .output()
            .unwrap()
    }
}

/// The binary on a new folder (so a test can kill it) with `ddl` run, and a connection.
pub async fn start_killable(
    ddl: &str,
) -> (tempfile::TempDir, ServerProcess, tokio_postgres::Client) {
    start_killable_with(ddl, &[]).await
}

/// [`start_killable`] with `args` added to the command line.
pub async fn start_killable_with(
    ddl: &str,
    args: &[&str],
) -> (tempfile::TempDir, ServerProcess, tokio_postgres::Client) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut all = vec!["--storage", data.to_str().unwrap()];
    all.extend(args);
    let server = ServerProcess::start(&all, &dir.path().join("server.log"));
    let client = connect(([127, 0, 0, 1], server.pg_port).into()).await;
    client.batch_execute(ddl).await.unwrap();
    (dir, server, client)
}

/// The body of an HTTP GET (blocking; small answers such as /metrics).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    http_request(addr, path, "").1
}

/// The status code and body of an HTTP GET with `headers` (each ending in CRLF).
pub fn http_request(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(response);
    (status, body)
}

fn spawn(args: &[String], log: &Path, env: &[(&str, &str)]) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_sluicedb"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "sluice")
        .env("AWS_SECRET_ACCESS_KEY", "sluice")
        .envs(env.iter().copied())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap()
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bootstrap address of the broker started by scripts/kafka-server, if one is running.
pub fn kafka_target() -> Option<String> {
    let target = std::env::var("SLUICEDB_TEST_KAFKA").ok();
    require(target.is_some(), "a Kafka broker (SLUICEDB_TEST_KAFKA)").then(|| target.unwrap())
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One `bigint` (or NULL as -1) from a query returning a single value.
pub async fn query_i64(client: &tokio_postgres::Client, sql: &str) -> i64 {
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get::<_, Option<i64>>(0).unwrap_or(-1)
}

/// What a [`TcpRelay`] does with the bytes it relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Link {
    Up,
    /// Every connection refused and cut: the server is gone.
    Down,
    /// Connections accepted and held, nothing relayed: the server is stopped (SIGSTOP).
    Frozen,
}

/// A TCP relay to a server (the S3 server, the broker) that a test can cut or freeze.
pub struct TcpRelay {
    pub addr: SocketAddr,
    link: Arc<std::sync::atomic::AtomicU8>,
}

impl TcpRelay {
    pub async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let link = Arc::new(std::sync::atomic::AtomicU8::new(Link::Up as u8));
        let state = Arc::clone(&link);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if load(&state) == Link::Down {
                    continue; // dropped: the connection closes at once
                }
                let (target, state) = (target.clone(), Arc::clone(&state));
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = pump(client_read, server_write, &state) => {}
                        _ = pump(server_read, client_write, &state) => {}
                    }
                });
            }
        });
        TcpRelay { addr, link }
    }

    pub fn set(&self, link: Link) {
        self.link
            .store(link as u8, std::sync::atomic::Ordering::SeqCst);
    }
}

fn load(link: &std::sync::atomic::AtomicU8) -> Link {
    match link.load(std::sync::atomic::Ordering::SeqCst) {
        0 => Link::Up,
        1 => Link::Down,
        _ => Link::Frozen,
    }
}

/// Copies one direction while the link is up, holds the bytes while it is frozen, and ends
/// (cutting the connection) once it is down.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: &std::sync::atomic::AtomicU8,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let down = || async {
        while load(link) != Link::Down {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = down() => return,
        };
        while load(link) == Link::Frozen {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if load(link) == Link::Down || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
