//! The live connections: what each is doing, and the handles to stop it.
//!
//! `pg_stat_activity` lists them (Superset, DBeaver and pgAdmin show it; operators look for the
//! query holding things up there), `pg_cancel_backend(pid)` cancels a connection's running
//! statement like a CancelRequest does, and `pg_terminate_backend(pid)` — Superset's "stop
//! query" — also closes the connection. CancelRequests find their connection here too, by pid
//! and secret key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;

use super::cancel::CancelSignal;
use crate::catalog::roles::{Principal, Roles};
use crate::catalog::snapshot::{Snapshot, SnapshotTable};
use crate::error::Error;
use crate::sql::Statement;

/// Every live connection, by pid.
#[derive(Debug)]
pub struct Backends {
    by_pid: Mutex<HashMap<i32, Arc<Backend>>>,
    /// `max_connections`: logged-in connections beyond it are refused.
    max: usize,
    /// `superuser_reserved_connections`: the last of them are for superusers.
    reserved: usize,
}

/// Why a connection that logged in was refused (FATAL 53300).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `max_connections` are logged in.
    All,
    /// Only the slots kept for superusers are left.
    Reserved,
}

impl Full {
    /// Postgres 15's words.
    pub fn message(self) -> &'static str {
        match self {
            Full::All => "sorry, too many clients already",
            Full::Reserved => {
                "remaining connection slots are reserved for non-replication superuser connections"
            }
        }
    }
}

/// One connection.
#[derive(Debug)]
pub struct Backend {
    pid: i32,
    secret: Bytes,
    user: String,
    client: SocketAddr,
    started: DateTime<Utc>,
    signal: Arc<CancelSignal>,
    activity: Mutex<Activity>,
}

#[derive(Debug, Clone)]
struct Activity {
    application_name: String,
    /// The last statement, running if `active`.
    query: String,
    query_start: Option<DateTime<Utc>>,
    state_change: DateTime<Utc>,
    active: bool,
}

impl Backends {
    pub fn new(max_connections: usize, superuser_reserved: usize) -> Self {
        Backends {
            by_pid: Mutex::default(),
            max: max_connections,
            reserved: superuser_reserved,
        }
    }

    /// Whether `max_connections` connections are logged in.
    pub fn is_full(&self) -> bool {
        self.lock().len() >= self.max
    }

    /// Adds a connection that has logged in, unless `max_connections` are already there (or,
    /// for a role other than a superuser, all but the reserved ones).
    pub fn register(
        &self,
        pid: i32,
        secret: Bytes,
        user: String,
        superuser: bool,
        client: SocketAddr,
        signal: Arc<CancelSignal>,
    ) -> Result<Arc<Backend>, Full> {
        let now = Utc::now();
        let backend = Arc::new(Backend {
            pid,
            secret,
            user,
            client,
            started: now,
            signal,
            activity: Mutex::new(Activity {
                application_name: String::new(),
                query: String::new(),
                query_start: None,
                state_change: now,
                active: false,
            }),
        });
        let mut by_pid = self.lock();
        if by_pid.len() >= self.max {
            return Err(Full::All);
        }
        if !superuser && by_pid.len() + self.reserved >= self.max {
            return Err(Full::Reserved);
        }
        by_pid.insert(pid, Arc::clone(&backend));
        Ok(backend)
    }

    pub fn unregister(&self, pid: i32) {
        self.lock().remove(&pid);
    }

    fn get(&self, pid: i32) -> Option<Arc<Backend>> {
        self.lock().get(&pid).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<Backend>>> {
        self.by_pid.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs `pg_stat_activity` and the functions that stop connections.
    pub fn install(self: &Arc<Self>, ctx: &SessionContext, roles: Arc<Roles>) -> Result<()> {
        for stop in [Stop::Cancel, Stop::Terminate] {
            ctx.register_udf(ScalarUDF::new_from_impl(StopBackend {
                stop,
                backends: Arc::clone(self),
                roles: Arc::clone(&roles),
                signature: Signature::exact(vec![DataType::Int64], Volatility::Volatile),
            }));
        }
        let pg_catalog = ctx
            .catalog(crate::catalog::DATABASE_NAME)
            .and_then(|catalog| catalog.schema("pg_catalog"))
            .ok_or_else(|| DataFusionError::Internal("pg_catalog missing".into()))?;
        pg_catalog.register_table(
            "pg_stat_activity".into(),
            Arc::new(SnapshotTable(ActivityTable::new(Arc::clone(self)))),
        )?;
        Ok(())
    }
}

impl Backend {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether a statement is running (or streaming its rows).
    pub fn is_running(&self) -> bool {
        self.activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .active
    }

    /// Marks `statement` running until the returned guard is dropped (after its last row).
    pub fn running(self: &Arc<Self>, statement: &Statement, application_name: &str) -> Running {
        let now = Utc::now();
        let mut activity = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        activity.application_name = application_name.to_string();
        activity.query = query_text(statement);
        activity.query_start = Some(now);
        activity.state_change = now;
        activity.active = true;
        Running(Arc::clone(self))
    }
}

/// A statement in progress; dropping it marks the connection idle.
pub struct Running(Arc<Backend>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut activity = self.0.activity.lock().unwrap_or_else(|e| e.into_inner());
        activity.active = false;
        activity.state_change = Utc::now();
    }
}

/// What `pg_stat_activity.query` shows for a statement.
fn query_text(statement: &Statement) -> String {
    match statement {
        Statement::Standard(stmt) => stmt.to_string(),
        Statement::CreateTable(_) => "CREATE TABLE".into(),
        Statement::CreateSource(_) => "CREATE SOURCE".into(),
        Statement::DropSource { .. } => "DROP SOURCE".into(),
        Statement::CreateView(_) => "CREATE MATERIALIZED VIEW".into(),
        Statement::ExplainView(_) => "EXPLAIN CREATE MATERIALIZED VIEW".into(),
        Statement::DropView { .. } => "DROP MATERIALIZED VIEW".into(),
        Statement::AlterView { .. } => "ALTER MATERIALIZED VIEW".into(),
        Statement::ResetSourceOffsets { .. } => "ALTER SOURCE".into(),
        Statement::ShowViews => "SHOW MATERIALIZED VIEWS".into(),
        Statement::ShowCreateView(_) => "SHOW CREATE MATERIALIZED VIEW".into(),
        Statement::ShowSources => "SHOW SOURCES".into(),
        Statement::ShowCreateSource(_) => "SHOW CREATE SOURCE".into(),
        Statement::Flush => "FLUSH".into(),
    }
}

#[async_trait]
impl CancelHandler for Backends {
    async fn on_cancel_request(&self, request: CancelRequest) {
        match self.get(request.pid) {
            Some(backend) if backend.secret == request.secret_key.to_bytes() => {
                tracing::info!(pid = request.pid, "cancel request");
                backend.signal.cancel();
            }
            _ => tracing::debug!(
                pid = request.pid,
                "cancel request for an unknown connection"
            ),
        }
    }
}

/// What a stop function does to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stop {
    /// `pg_cancel_backend`: its running statement, if any, stops.
    Cancel,
    /// `pg_terminate_backend`: it stops and closes.
    Terminate,
}

/// `pg_cancel_backend(pid)` and `pg_terminate_backend(pid)`: whether `pid` is a connection.
/// As in Postgres, a role may stop its own connections, a superuser any.
#[derive(Debug)]
struct StopBackend {
    stop: Stop,
    backends: Arc<Backends>,
    roles: Arc<Roles>,
    signature: Signature,
}

impl PartialEq for StopBackend {
    fn eq(&self, other: &Self) -> bool {
        self.stop == other.stop
    }
}

impl Eq for StopBackend {}

impl std::hash::Hash for StopBackend {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.stop.hash(state);
    }
}

impl StopBackend {
    /// Stops `pid` if `caller` may; whether it is a connection.
    fn stop(&self, caller: &Principal, pid: i32) -> Result<bool> {
        let Some(backend) = self.backends.get(pid) else {
            return Ok(false);
        };
        let (what, whose) = match self.stop {
            Stop::Cancel => ("cancel superuser query", "whose query is being canceled"),
            Stop::Terminate => (
                "terminate superuser process",
                "whose process is being terminated",
            ),
        };
        if !caller.superuser {
            let refused = if self.roles.principal(&backend.user).superuser {
                Some(format!("must be a superuser to {what}"))
            } else if backend.user != caller.name {
                Some(format!(
                    "must be a member of the role {whose} or member of pg_signal_backend"
                ))
            } else {
                None
            };
            if let Some(message) = refused {
                return Err(DataFusionError::from(Error::InsufficientPrivilege(message)));
            }
        }
        match self.stop {
            Stop::Cancel => backend.signal.cancel(),
            Stop::Terminate => {
                tracing::info!(pid, by = caller.name, "terminating connection on request");
                backend.signal.terminate();
            }
        }
        Ok(true)
    }
}

impl ScalarUDFImpl for StopBackend {
    fn name(&self) -> &str {
        match self.stop {
            Stop::Cancel => "pg_cancel_backend",
            Stop::Terminate => "pg_terminate_backend",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let caller = Principal::of(&args.config_options);
        let pids = ColumnarValue::values_to_arrays(&args.args)?;
        let stopped = datafusion::common::cast::as_int64_array(&pids[0])?
            .iter()
            .map(|pid| {
                pid.map(|pid| match i32::try_from(pid) {
                    Ok(pid) => self.stop(&caller, pid),
                    Err(_) => Ok(false),
                })
                .transpose()
            })
            .collect::<Result<BooleanArray>>()?;
        crate::pg::functions::scalar_if_scalar(&args.args, Arc::new(stopped))
    }
}

/// `pg_stat_activity`, one row per connection.
#[derive(Debug)]
struct ActivityTable {
    schema: SchemaRef,
    backends: Arc<Backends>,
}

impl ActivityTable {
    /// With Postgres 15's columns.
    fn new(backends: Arc<Backends>) -> Self {
        let time = || DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("datid", DataType::Int32, true),
            Field::new("datname", DataType::Utf8, true),
            Field::new("pid", DataType::Int32, true),
            Field::new("leader_pid", DataType::Int32, true),
            Field::new("usesysid", DataType::Int32, true),
            Field::new("usename", DataType::Utf8, true),
            Field::new("application_name", DataType::Utf8, true),
            Field::new("client_addr", DataType::Utf8, true),
            Field::new("client_hostname", DataType::Utf8, true),
            Field::new("client_port", DataType::Int32, true),
            Field::new("backend_start", time(), true),
            Field::new("xact_start", time(), true),
            Field::new("query_start", time(), true),
            Field::new("state_change", time(), true),
            Field::new("wait_event_type", DataType::Utf8, true),
            Field::new("wait_event", DataType::Utf8, true),
            Field::new("state", DataType::Utf8, true),
            Field::new("backend_xid", DataType::Utf8, true),
            Field::new("backend_xmin", DataType::Utf8, true),
            Field::new("query_id", DataType::Int64, true),
            Field::new("query", DataType::Utf8, true),
            Field::new("backend_type", DataType::Utf8, true),
        ]));
        ActivityTable { schema, backends }
    }
}

#[async_trait]
impl Snapshot for ActivityTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// As in Postgres, a role other than a superuser sees only who and where of others'
    /// connections: what they run reads `<insufficient privilege>`.
    async fn rows(&self, state: &dyn datafusion::catalog::Session) -> Result<RecordBatch> {
        let caller = Principal::of(state.config().options());
        let mut backends: Vec<Arc<Backend>> = self.backends.lock().values().cloned().collect();
        backends.sort_by_key(|b| b.pid);
        let activities: Vec<Activity> = backends
            .iter()
            .map(|b| b.activity.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        let n = backends.len();
        let visible: Vec<bool> = backends
            .iter()
            .map(|b| caller.superuser || b.user == caller.name)
            .collect();
        let shown = |i: usize| visible[i];
        let text = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
            Arc::new((0..n).map(f).collect::<StringArray>())
        };
        let int = |f: &dyn Fn(usize) -> Option<i32>| -> ArrayRef {
            Arc::new((0..n).map(f).collect::<Int32Array>())
        };
        let time = |f: &dyn Fn(usize) -> Option<DateTime<Utc>>| -> ArrayRef {
            Arc::new(
                (0..n)
                    .map(|i| f(i).map(|t| t.timestamp_micros()))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("+00:00"),
            )
        };
        let columns = vec![
            int(&|_| None),
            text(&|_| Some(crate::catalog::DATABASE_NAME.to_string())),
            int(&|i| Some(backends[i].pid)),
            int(&|_| None),
            int(&|_| None),
            text(&|i| Some(backends[i].user.clone())),
            text(&|i| Some(activities[i].application_name.clone())),
            text(&|i| shown(i).then(|| backends[i].client.ip().to_string())),
            text(&|_| None),
            int(&|i| shown(i).then(|| i32::from(backends[i].client.port()))),
            time(&|i| shown(i).then_some(backends[i].started)),
            time(&|i| {
                (shown(i) && activities[i].active)
                    .then_some(activities[i].query_start)
                    .flatten()
            }),
            time(&|i| shown(i).then_some(activities[i].query_start).flatten()),
            time(&|i| shown(i).then_some(activities[i].state_change)),
            text(&|_| None),
            text(&|_| None),
            text(&|i| {
                shown(i).then(|| {
                    match activities[i].active {
                        true => "active",
                        false => "idle",
                    }
                    .to_string()
                })
            }),
            text(&|_| None),
            text(&|_| None),
            Arc::new(datafusion::arrow::array::Int64Array::new_null(n)),
            text(&|i| {
                Some(match shown(i) {
                    true => activities[i].query.clone(),
                    false => "<insufficient privilege>".to_string(),
                })
            }),
            text(&|_| Some("client backend".to_string())),
        ];
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}
