//! Every setting of `sluicedb serve`, with its default and unit.
//!
//! Three layers, highest first: command-line flags (and their `SLUICEDB_*` environment variables,
//! which clap reads in `main.rs`), the `sluicedb.toml` file, then the defaults below. This module
//! only merges values it is given; it never reads the environment itself, except the memory
//! the machine has, of which `memory_limit`'s default is a share ([`memory`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::error::{Error, Result};

mod memory;

pub const DEFAULT_STORAGE: &str = "./sluice-data";
pub const DEFAULT_PG_LISTEN: &str = "127.0.0.1:5480";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:5481";
pub const DEFAULT_S3_REGION: &str = "us-east-1";
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
pub const DEFAULT_SUPERUSER_RESERVED_CONNECTIONS: usize = 3;
pub const DEFAULT_MANIFESTS_RETAINED: usize = 10;
pub const DEFAULT_COPY_BATCH_ROWS: usize = 65_536;
const DEFAULT_VIEW_MAX_OPEN_GROUPS: usize = 10_000_000;
pub const DEFAULT_COPY_PENDING_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Flags of `sluicedb serve`. Every field is optional so that an unset flag falls through to
/// the config file and then to the default.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServeArgs {
    /// Where tables, manifests and views live: a local folder, or s3://bucket/prefix
    /// [default: ./sluice-data]
    #[arg(long, env = "SLUICEDB_STORAGE")]
    pub storage: Option<String>,

    /// Address of the Postgres wire protocol listener [default: 127.0.0.1:5480]
    #[arg(long, env = "SLUICEDB_PG_LISTEN")]
    pub pg_listen: Option<SocketAddr>,

    /// Address of the HTTP listener for /healthz and /metrics; with `auth` on, every route but
    /// /healthz asks for HTTP Basic credentials [default: 127.0.0.1:5481]
    #[arg(long, env = "SLUICEDB_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// S3 endpoint URL, for MinIO, SeaweedFS or another S3-compatible server
    /// [default: AWS_ENDPOINT_URL, else AWS S3]
    #[arg(long, env = "SLUICEDB_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region [default: AWS_REGION, else us-east-1]
    #[arg(long, env = "SLUICEDB_S3_REGION")]
    pub s3_region: Option<String>,

    /// S3 access key id [default: AWS_ACCESS_KEY_ID]
    #[arg(long, env = "SLUICEDB_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key [default: AWS_SECRET_ACCESS_KEY]
    #[arg(long, env = "SLUICEDB_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Allow plain http:// S3 endpoints [default: false, or AWS_ALLOW_HTTP]
    #[arg(long, env = "SLUICEDB_S3_ALLOW_HTTP")]
    pub s3_allow_http: Option<bool>,

    /// Most concurrent Postgres connections; more are refused [default: 100]
    #[arg(long, env = "SLUICEDB_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Connections of `max_connections` kept for superusers, so an administrator can still
    /// log in when clients took every other slot [default: 3]
    #[arg(long, env = "SLUICEDB_SUPERUSER_RESERVED_CONNECTIONS")]
    pub superuser_reserved_connections: Option<usize>,

    /// How long a client may take to log in, from connecting to its last authentication
    /// message, e.g. '10s' [default: 10s]
    #[arg(long, env = "SLUICEDB_AUTHENTICATION_TIMEOUT")]
    pub authentication_timeout: Option<String>,

    /// The longest a statement may run before it is cancelled (57014), for connections that do
    /// not SET statement_timeout themselves, e.g. '5 min'; 0 for no limit [default: 0]
    #[arg(long, env = "SLUICEDB_STATEMENT_TIMEOUT")]
    pub statement_timeout: Option<String>,

    /// How Postgres clients log in: 'none' (anyone who reaches the port) or 'scram-sha-256'
    /// (a password of the `[users]` table of the config file) [default: none]
    #[arg(long, env = "SLUICEDB_AUTH")]
    pub auth: Option<AuthMethod>,

    /// Users and their passwords, for `auth = "scram-sha-256"`; only in the config file, as a
    /// `[users]` table of `name = "password"` lines.
    #[arg(skip)]
    pub users: Option<BTreeMap<String, String>>,

    /// Accept `auth = none` on an address other than loopback: anyone who can reach the port
    /// can then read and change everything [default: false]
    #[arg(long, env = "SLUICEDB_ALLOW_REMOTE_WITHOUT_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub allow_remote_without_auth: Option<bool>,

    /// PEM file with the TLS certificate chain of the Postgres listener; with `tls_key`, clients
    /// may connect with sslmode=require
    #[arg(long, env = "SLUICEDB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of `tls_cert`
    #[arg(long, env = "SLUICEDB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Refuse Postgres connections that do not use TLS [default: false]
    #[arg(long, env = "SLUICEDB_TLS_REQUIRED", num_args = 0..=1, default_missing_value = "true")]
    pub tls_required: Option<bool>,

    /// How many committed manifests to keep for inspection; older ones are deleted [default: 10]
    #[arg(long, env = "SLUICEDB_MANIFESTS_RETAINED")]
    pub manifests_retained: Option<usize>,

    /// How often a checkpoint commits sources' offsets, views' state and new files together,
    /// e.g. '10s', '1 min' [default: 10s]
    #[arg(long, env = "SLUICEDB_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: Option<String>,

    /// How often small Parquet files are looked for and compacted, e.g. '1 min' [default: 1 min]
    #[arg(long, env = "SLUICEDB_COMPACTION_INTERVAL")]
    pub compaction_interval: Option<String>,

    /// The size compaction aims for: runs of smaller files are rewritten into files of about
    /// this size, e.g. '128MB' [default: 128MB]
    #[arg(long, env = "SLUICEDB_COMPACTION_TARGET_SIZE")]
    pub compaction_target_size: Option<String>,

    /// How long a file no committed manifest names (replaced by compaction, left by a failed
    /// checkpoint or write) stays before it is deleted; queries still reading it finish first,
    /// e.g. '1h' [default: 1h]
    #[arg(long, env = "SLUICEDB_GC_GRACE")]
    pub gc_grace: Option<String>,

    /// How long startup waits for an object store that does not answer before giving up,
    /// e.g. '60s' [default: 60s]
    #[arg(long, env = "SLUICEDB_STORAGE_STARTUP_TIMEOUT")]
    pub storage_startup_timeout: Option<String>,

    /// Rows per Arrow batch when decoding COPY FROM STDIN [default: 65536]
    #[arg(long, env = "SLUICEDB_COPY_BATCH_ROWS")]
    pub copy_batch_rows: Option<usize>,

    /// Most groups (window × key) a materialized view holds open; at the limit the view stops
    /// taking input, which holds its source back, until restarted with a larger one
    /// [default: 10000000]
    #[arg(long, env = "SLUICEDB_VIEW_MAX_OPEN_GROUPS")]
    pub view_max_open_groups: Option<usize>,

    /// The folder whose files sources may name in properties such as
    /// `properties.ssl.ca.location` (relative names are taken in it); without it, sources can
    /// name no files [default: none]
    #[arg(long, env = "SLUICEDB_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// Memory queries and streaming state may hold together, e.g. '512MiB', '2GB'; sorts,
    /// joins and aggregates spill to disk beyond their share, a query that still needs more
    /// fails with 53200, and a view or source whose state does not fit stalls until it does
    /// [default: a quarter of the machine's or the cgroup's memory]
    #[arg(long, env = "SLUICEDB_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,

    /// Start the demo pipeline too: a generated stream of click events, source `demo_clicks`
    /// (sql/demo_clicks.sql) [default: false]
    #[arg(long, env = "SLUICEDB_DEMO", num_args = 0..=1, default_missing_value = "true")]
    pub demo: Option<bool>,

    /// Tracing filter, as in RUST_LOG [default: info]
    #[arg(long, env = "SLUICEDB_LOG")]
    #[serde(default)]
    pub log: Option<String>,
}

/// A size such as `128MB`, `64 KiB` or `1048576` (bytes); `MB` and `MiB` both mean 2^20 bytes.
fn parse_size(key: &str, text: &str) -> Result<u64> {
    let invalid = || {
        Error::Config(format!(
            "invalid value \"{text}\" for {key}: expected a size such as '128MB' or '64KiB'"
        ))
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(1 << shift)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(invalid)
}

/// Where the data lives, parsed from `--storage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// S3 connection settings; unused for a local folder.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
}

/// How Postgres clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
pub enum AuthMethod {
    /// No password: whoever reaches the port is in.
    #[serde(rename = "none")]
    None,
    /// SCRAM-SHA-256, Postgres' password method: the password never crosses the wire.
    #[value(name = "scram-sha-256")]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
}

/// Who may connect over the Postgres protocol, and how.
#[derive(Debug, Clone)]
pub struct Access {
    pub auth: AuthMethod,
    /// User name → password, for SCRAM.
    pub users: BTreeMap<String, String>,
    /// Certificate chain and key files, when TLS is on.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub tls_required: bool,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub storage: StorageLocation,
    pub s3: S3Settings,
    pub pg_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub max_connections: usize,
    pub superuser_reserved_connections: usize,
    pub authentication_timeout: std::time::Duration,
    /// The default `statement_timeout` of every connection; `None` for no limit.
    pub statement_timeout: Option<std::time::Duration>,
    pub access: Access,
    pub manifests_retained: usize,
    pub checkpoint_interval: std::time::Duration,
    pub storage_startup_timeout: std::time::Duration,
    pub compaction_interval: std::time::Duration,
    pub compaction_target_bytes: u64,
    pub gc_grace: std::time::Duration,
    pub copy_batch_rows: usize,
    /// Bytes of COPY input buffered before they are decoded and written.
    pub copy_pending_bytes_max: usize,
    /// The size of the memory pool every query and all streaming state draw from, in bytes.
    pub memory_limit: u64,
    /// The folder sources' file properties must point into.
    pub secrets_dir: Option<PathBuf>,
    /// Open groups a view may hold before it stops taking input.
    pub view_max_open_groups: usize,
    /// Create the demo pipeline at startup.
    pub demo: bool,
    pub log: String,
    /// How Kafka sources' readers run: each in a process of its own (`main.rs` sets the
    /// `sluicedb` binary), or `None` (SluiceDB used as a library) on a thread.
    pub kafka_reader: Option<crate::source::kafka_process::ReaderProcess>,
}

/// The standard AWS variables, read by `main.rs` and used where no SluiceDB setting is given.
#[derive(Debug, Clone, Default)]
pub struct AwsEnv {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: Option<bool>,
}

impl ServeArgs {
    /// Reads a `sluicedb.toml` file whose keys are the flag names with underscores.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read \"{}\": {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| Error::Config(format!("in \"{}\": {}", path.display(), e.message())))
    }

    /// Fills every unset field of `self` from `lower`.
    pub fn or(self, lower: ServeArgs) -> ServeArgs {
        ServeArgs {
            storage: self.storage.or(lower.storage),
            pg_listen: self.pg_listen.or(lower.pg_listen),
            http_listen: self.http_listen.or(lower.http_listen),
            s3_endpoint: self.s3_endpoint.or(lower.s3_endpoint),
            s3_region: self.s3_region.or(lower.s3_region),
            s3_access_key_id: self.s3_access_key_id.or(lower.s3_access_key_id),
            s3_secret_access_key: self.s3_secret_access_key.or(lower.s3_secret_access_key),
            s3_allow_http: self.s3_allow_http.or(lower.s3_allow_http),
            max_connections: self.max_connections.or(lower.max_connections),
            superuser_reserved_connections: self
                .superuser_reserved_connections
                .or(lower.superuser_reserved_connections),
            authentication_timeout: self.authentication_timeout.or(lower.authentication_timeout),
            statement_timeout: self.statement_timeout.or(lower.statement_timeout),
            auth: self.auth.or(lower.auth),
            users: self.users.or(lower.users),
            allow_remote_without_auth: self
                .allow_remote_without_auth
                .or(lower.allow_remote_without_auth),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            tls_required: self.tls_required.or(lower.tls_required),
            manifests_retained: self.manifests_retained.or(lower.manifests_retained),
            checkpoint_interval: self.checkpoint_interval.or(lower.checkpoint_interval),
            storage_startup_timeout: self
                .storage_startup_timeout
                .or(lower.storage_startup_timeout),
            compaction_interval: self.compaction_interval.or(lower.compaction_interval),
            compaction_target_size: self.compaction_target_size.or(lower.compaction_target_size),
            gc_grace: self.gc_grace.or(lower.gc_grace),
            copy_batch_rows: self.copy_batch_rows.or(lower.copy_batch_rows),
            view_max_open_groups: self.view_max_open_groups.or(lower.view_max_open_groups),
            memory_limit: self.memory_limit.or(lower.memory_limit),
            secrets_dir: self.secrets_dir.or(lower.secrets_dir),
            demo: self.demo.or(lower.demo),
            log: self.log.or(lower.log),
        }
    }

    /// Applies defaults and validates.
    pub fn resolve(self, aws: AwsEnv) -> Result<Config> {
        let storage = parse_storage(self.storage.as_deref().unwrap_or(DEFAULT_STORAGE))?;
        let copy_batch_rows = self.copy_batch_rows.unwrap_or(DEFAULT_COPY_BATCH_ROWS);
        if copy_batch_rows == 0 {
            return Err(Error::Config("copy_batch_rows must be at least 1".into()));
        }
        let duration = |key: &str, value: &Option<String>, default: &str| {
            crate::source::options::parse_duration(key, value.as_deref().unwrap_or(default))
                .map_err(|e| Error::Config(e.to_string()))
        };
        let checkpoint_interval =
            duration("checkpoint_interval", &self.checkpoint_interval, "10s")?;
        let compaction_interval =
            duration("compaction_interval", &self.compaction_interval, "1 min")?;
        if checkpoint_interval.is_zero() || compaction_interval.is_zero() {
            return Err(Error::Config(
                "checkpoint_interval and compaction_interval must be positive".into(),
            ));
        }
        let storage_startup_timeout = duration(
            "storage_startup_timeout",
            &self.storage_startup_timeout,
            "60s",
        )?;
        let gc_grace = duration("gc_grace", &self.gc_grace, "1h")?;
        let authentication_timeout = duration(
            "authentication_timeout",
            &self.authentication_timeout,
            "10s",
        )?;
        let compaction_target_bytes = parse_size(
            "compaction_target_size",
            self.compaction_target_size.as_deref().unwrap_or("128MB"),
        )?;
        let memory_limit = match self.memory_limit.as_deref() {
            Some(size) => parse_size("memory_limit", size)?,
            None => memory::default_limit().0,
        };
        let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        // The default leaves room for one ordinary connection, however few there are.
        let superuser_reserved_connections = self.superuser_reserved_connections.unwrap_or(
            DEFAULT_SUPERUSER_RESERVED_CONNECTIONS.min(max_connections.saturating_sub(1)),
        );
        if superuser_reserved_connections >= max_connections {
            return Err(Error::Config(format!(
                "superuser_reserved_connections ({superuser_reserved_connections}) must be less \
                 than max_connections ({max_connections})"
            )));
        }
        let pg_listen = self
            .pg_listen
            .unwrap_or_else(|| parse_addr(DEFAULT_PG_LISTEN));
        let http_listen = self
            .http_listen
            .unwrap_or_else(|| parse_addr(DEFAULT_HTTP_LISTEN));
        let access = access(
            [pg_listen, http_listen],
            self.auth,
            self.users,
            self.allow_remote_without_auth.unwrap_or(false),
            (self.tls_cert, self.tls_key),
            self.tls_required.unwrap_or(false),
        )?;
        let statement_timeout = match self.statement_timeout.as_deref().map(str::trim) {
            None | Some("0") => None,
            Some(_) => Some(duration("statement_timeout", &self.statement_timeout, "")?),
        };
        Ok(Config {
            kafka_reader: None,
            access,
            authentication_timeout,
            statement_timeout: statement_timeout.filter(|t| !t.is_zero()),
            checkpoint_interval,
            storage_startup_timeout,
            compaction_interval,
            compaction_target_bytes,
            gc_grace,
            storage,
            s3: S3Settings {
                endpoint: self.s3_endpoint.or(aws.endpoint),
                region: self
                    .s3_region
                    .or(aws.region)
                    .unwrap_or_else(|| DEFAULT_S3_REGION.into()),
                access_key_id: self.s3_access_key_id.or(aws.access_key_id),
                secret_access_key: self.s3_secret_access_key.or(aws.secret_access_key),
                allow_http: self.s3_allow_http.or(aws.allow_http).unwrap_or(false),
            },
            pg_listen,
            http_listen,
            max_connections,
            superuser_reserved_connections,
            manifests_retained: self
                .manifests_retained
                .unwrap_or(DEFAULT_MANIFESTS_RETAINED)
                .max(1),
            copy_batch_rows,
            copy_pending_bytes_max: DEFAULT_COPY_PENDING_BYTES_MAX,
            memory_limit,
            secrets_dir: self.secrets_dir,
            view_max_open_groups: self
                .view_max_open_groups
                .unwrap_or(DEFAULT_VIEW_MAX_OPEN_GROUPS)
                .max(1),
            demo: self.demo.unwrap_or(false),
            log: self.log.unwrap_or_else(|| "info".into()),
        })
    }
}

/// Checks the login settings against each other and the listen addresses (Postgres, HTTP).
fn access(
    listen: [SocketAddr; 2],
    auth: Option<AuthMethod>,
    users: Option<BTreeMap<String, String>>,
    allow_remote_without_auth: bool,
    tls: (Option<PathBuf>, Option<PathBuf>),
    tls_required: bool,
) -> Result<Access> {
    let auth = auth.unwrap_or(AuthMethod::None);
    let users = users.unwrap_or_default();
    if auth == AuthMethod::ScramSha256 && users.is_empty() {
        return Err(Error::Config(
            "auth = \"scram-sha-256\" needs at least one user: add a [users] table of \
             name = \"password\" lines to the config file"
                .into(),
        ));
    }
    if let Some((name, _)) = users.iter().find(|(_, password)| password.is_empty()) {
        return Err(Error::Config(format!(
            "user \"{name}\" has an empty password"
        )));
    }
    let remote = listen.iter().find(|address| !address.ip().is_loopback());
    if let Some(address) = remote
        && auth == AuthMethod::None
        && !allow_remote_without_auth
    {
        return Err(Error::Config(format!(
            "refusing to listen on {address} without authentication: anyone who can reach it \
             could read and change everything. Set auth = \"scram-sha-256\" with a [users] \
             table, or pass --allow-remote-without-auth"
        )));
    }
    let tls = match tls {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(Error::Config(
                "tls_cert and tls_key go together: set both or neither".into(),
            ));
        }
    };
    if tls_required && tls.is_none() {
        return Err(Error::Config(
            "tls_required needs tls_cert and tls_key".into(),
        ));
    }
    Ok(Access {
        auth,
        users,
        tls,
        tls_required,
    })
}

fn parse_addr(text: &str) -> SocketAddr {
    text.parse().expect("default listen addresses are valid")
}

/// `s3://bucket/prefix` or a local path (optionally `file://`).
pub fn parse_storage(text: &str) -> Result<StorageLocation> {
    if let Some(rest) = text.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Config(format!("storage \"{text}\" names no bucket")));
        }
        return Ok(StorageLocation::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        });
    }
    if text.contains("://") && !text.starts_with("file://") {
        return Err(Error::Config(format!(
            "storage \"{text}\" is neither a local folder nor s3://bucket/prefix"
        )));
    }
    Ok(StorageLocation::Local(PathBuf::from(
        text.trim_start_matches("file://"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let flags = ServeArgs {
            pg_listen: Some("127.0.0.1:6000".parse().unwrap()),
            ..Default::default()
        };
        let file: ServeArgs =
            toml::from_str("pg_listen = \"127.0.0.1:7000\"\nstorage = \"s3://b/p/q\"").unwrap();
        let config = flags.or(file).resolve(AwsEnv::default()).unwrap();
        assert_eq!(config.pg_listen.port(), 6000);
        assert_eq!(config.http_listen.port(), 5481);
        assert_eq!(
            config.storage,
            StorageLocation::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
    }

    #[test]
    fn rejects_unknown_keys_and_schemes() {
        assert!(toml::from_str::<ServeArgs>("pg_port = 1").is_err());
        assert!(parse_storage("gs://bucket").is_err());
        assert!(parse_storage("s3:///x").is_err());
    }

    #[test]
    fn no_auth_stays_on_loopback_unless_allowed() {
        let resolve = |toml_text: &str| {
            toml::from_str::<ServeArgs>(toml_text)
                .unwrap()
                .resolve(AwsEnv::default())
        };
        assert!(resolve("").is_ok());
        let open = resolve("pg_listen = \"0.0.0.0:5480\"").unwrap_err();
        assert!(
            open.to_string().contains("without authentication"),
            "{open}"
        );
        assert!(resolve("pg_listen = \"0.0.0.0:5480\"\nallow_remote_without_auth = true").is_ok());
        let reserved = resolve("max_connections = 3\nsuperuser_reserved_connections = 3");
        assert!(
            reserved
                .unwrap_err()
                .to_string()
                .contains("less than max_connections")
        );
        let few = resolve("max_connections = 2").unwrap();
        assert_eq!(
            few.superuser_reserved_connections, 1,
            "the default leaves one slot"
        );
        let metrics_open = resolve("http_listen = \"0.0.0.0:5481\"").unwrap_err();
        assert!(
            metrics_open.to_string().contains("0.0.0.0:5481"),
            "{metrics_open}"
        );
        let scram = "pg_listen = \"0.0.0.0:5480\"\nauth = \"scram-sha-256\"";
        assert!(resolve(scram).is_err(), "scram without users");
        let config = resolve(&format!("{scram}\n[users]\ngrafana = \"s3cret\"")).unwrap();
        assert_eq!(config.access.auth, AuthMethod::ScramSha256);
        assert_eq!(config.access.users["grafana"], "s3cret");
        assert!(resolve("tls_cert = \"a.pem\"").is_err(), "cert without key");
        assert!(
            resolve("tls_required = true").is_err(),
            "required without cert"
        );
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("k", "128MB").unwrap(), 128 << 20);
        assert_eq!(parse_size("k", "64 KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("k", "4096").unwrap(), 4096);
        for bad in ["", "0", "12 parsecs", "-1MB", "99999999999999GB"] {
            assert!(parse_size("k", bad).is_err(), "{bad}");
        }
    }
}
