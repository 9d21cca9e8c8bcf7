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
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;

use super::cancel::CancelSignal;
use crate::catalog::snapshot::{Snapshot, SnapshotTable};
use crate::sql::Statement;

/// Every live connection, by pid.
#[derive(Debug)]
pub struct Backends {
    by_pid: Mutex<HashMap<i32, Arc<Backend>>>,
    /// `max_connections`: logged-in connections beyond it are refused.
    max: usize,
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
    pub fn new(max_connections: usize) -> Self {
        Backends {
            by_pid: Mutex::default(),
            max: max_connections,
        }
    }

    /// Whether `max_connections` connections are logged in.
    pub fn is_full(&self) -> bool {
        self.lock().len() >= self.max
    }

    /// Adds a connection that has logged in, unless `max_connections` are already there.
    pub fn register(
        &self,
        pid: i32,
        secret: Bytes,
        user: String,
        client: SocketAddr,
        signal: Arc<CancelSignal>,
    ) -> Option<Arc<Backend>> {
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
            return None;
        }
        by_pid.insert(pid, Arc::clone(&backend));
        Some(backend)
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

    /// `pg_cancel_backend`: whether `pid` is a connection (its running statement, if any, stops).
    fn cancel(&self, pid: i32) -> bool {
        self.get(pid).inspect(|b| b.signal.cancel()).is_some()
    }

    /// `pg_terminate_backend`: whether `pid` is a connection (it stops and closes).
    fn terminate(&self, pid: i32) -> bool {
        self.get(pid)
            .inspect(|b| {
                tracing::info!(pid, "terminating connection on request");
                b.signal.terminate();
            })
            .is_some()
    }

    /// Installs `pg_stat_activity` and the functions that stop connections.
    pub fn install(self: &Arc<Self>, ctx: &SessionContext) -> Result<()> {
        for (name, stop) in [
            (
                "pg_cancel_backend",
                Backends::cancel as fn(&Backends, i32) -> bool,
            ),
            ("pg_terminate_backend", Backends::terminate),
        ] {
            let backends = Arc::clone(self);
            ctx.register_udf(create_udf(
                name,
                vec![DataType::Int64],
                DataType::Boolean,
                Volatility::Volatile,
                Arc::new(move |args: &[ColumnarValue]| {
                    let pids = ColumnarValue::values_to_arrays(args)?;
                    let stopped: BooleanArray = datafusion::common::cast::as_int64_array(&pids[0])?
                        .iter()
                        .map(|pid| {
                            pid.map(|pid| i32::try_from(pid).is_ok_and(|pid| stop(&backends, pid)))
                        })
                        .collect();
                    crate::pg::functions::scalar_if_scalar(args, Arc::new(stopped))
                }),
            ));
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

    async fn rows(&self, _state: &dyn datafusion::catalog::Session) -> Result<RecordBatch> {
        let mut backends: Vec<Arc<Backend>> = self.backends.lock().values().cloned().collect();
        backends.sort_by_key(|b| b.pid);
        let activities: Vec<Activity> = backends
            .iter()
            .map(|b| b.activity.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        let n = backends.len();
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
            text(&|i| Some(backends[i].client.ip().to_string())),
            text(&|_| None),
            int(&|i| Some(i32::from(backends[i].client.port()))),
            time(&|i| Some(backends[i].started)),
            time(&|i| {
                activities[i]
                    .active
                    .then_some(activities[i].query_start)
                    .flatten()
            }),
            time(&|i| activities[i].query_start),
            time(&|i| Some(activities[i].state_change)),
            text(&|_| None),
            text(&|_| None),
            text(&|i| {
                Some(
                    if activities[i].active {
                        "active"
                    } else {
                        "idle"
                    }
                    .to_string(),
                )
            }),
            text(&|_| None),
            text(&|_| None),
            Arc::new(datafusion::arrow::array::Int64Array::new_null(n)),
            text(&|i| Some(activities[i].query.clone())),
            text(&|_| Some("client backend".to_string())),
        ];
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}
