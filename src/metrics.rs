//! Every metric SluiceDB exports, declared in one place and rendered for `/metrics`.
//!
//! Plain atomics in Prometheus text format: the set is small and fixed, so a registry crate would
//! add more than it saves. Names are `sluicedb_<noun>_<unit>`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::source::stats::{Snapshot, Status as SourceStatus};
use crate::view::stats::{Snapshot as ViewSnapshot, Status as ViewStatus};

/// A monotonically increasing count.
pub struct Counter {
    name: &'static str,
    help: &'static str,
    value: AtomicU64,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Counter {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }

    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    value: AtomicI64,
}

impl Gauge {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Gauge {
            name,
            help,
            value: AtomicI64::new(0),
        }
    }

    pub fn add(&self, n: i64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, n: i64) {
        self.value.store(n, Ordering::Relaxed);
    }
}

pub static QUERIES: Counter = Counter::new(
    "sluicedb_queries_total",
    "Statements executed over the Postgres protocol.",
);
pub static QUERY_ERRORS: Counter = Counter::new(
    "sluicedb_query_errors_total",
    "Statements that ended in an error.",
);
pub static PLANS_REUSED: Counter = Counter::new(
    "sluicedb_plans_reused_total",
    "Queries run with a plan kept from an earlier run of the same query.",
);
pub static TABLE_ROWS_WRITTEN: Counter = Counter::new(
    "sluicedb_table_rows_written_total",
    "Rows committed to tables by INSERT and COPY.",
);
pub static CONNECTIONS_ACTIVE: Gauge = Gauge::new(
    "sluicedb_connections_active",
    "Open Postgres protocol connections.",
);
pub static CONNECTIONS_REFUSED: Counter = Counter::new(
    "sluicedb_connections_refused_total",
    "Connections refused because max_connections was reached.",
);
pub static CHECKPOINTS_COMMITTED: Counter =
    Counter::new("sluicedb_checkpoints_total", "Checkpoint rounds committed.");
pub static CHECKPOINTS_FAILED: Counter = Counter::new(
    "sluicedb_checkpoint_failures_total",
    "Checkpoint rounds that failed (see sluice_catalog.checkpoints); the previous checkpoint stays in force.",
);
pub static CHECKPOINTS_FAILING: Gauge = Gauge::new(
    "sluicedb_checkpoint_consecutive_failures",
    "Checkpoint rounds failed since the last committed one: above 0, nothing new is durable and recovery would replay more.",
);
pub static CHECKPOINT_COMMITTED_AT: Gauge = Gauge::new(
    "sluicedb_checkpoint_last_committed_seconds",
    "When the last checkpoint of this process committed, Unix seconds (0: none yet).",
);
pub static TLS_CERTIFICATE_EXPIRY: Gauge = Gauge::new(
    "sluicedb_tls_certificate_expiry_seconds",
    "When the TLS certificate (tls_cert) stops being valid, Unix seconds (0: no TLS).",
);
pub static LOGINS_FAILED: Counter = Counter::new(
    "sluicedb_logins_failed_total",
    "Postgres logins refused: a wrong password, an unknown user, or no TLS where it is required.",
);

/// Per source and partition numbers, labelled `source` and `partition`.
const SOURCE_METRICS: [(&str, &str, &str); 8] = [
    (
        "sluicedb_source_rows_total",
        "counter",
        "Rows decoded by a source partition.",
    ),
    (
        "sluicedb_source_bytes_total",
        "counter",
        "Payload bytes read by a source partition.",
    ),
    (
        "sluicedb_source_rejected_rows_total",
        "counter",
        "Records a source partition could not decode (see sluice_catalog.rejected_rows).",
    ),
    (
        "sluicedb_source_late_rows_total",
        "counter",
        "Rows behind the source watermark when they arrived.",
    ),
    (
        "sluicedb_source_offset",
        "gauge",
        "Next offset a source partition reads.",
    ),
    (
        "sluicedb_source_lag_records",
        "gauge",
        "Records the broker holds that the source has not read (high watermark - offset).",
    ),
    (
        "sluicedb_source_watermark_seconds",
        "gauge",
        "Event-time watermark of a source partition, Unix seconds.",
    ),
    (
        "sluicedb_source_partition_stopped",
        "gauge",
        "1 while a source partition is not read because its offset is out of the broker's range (see ALTER SOURCE ... RESET OFFSETS).",
    ),
];

/// Per-view metrics, labelled by view: name, type, help.
const VIEW_METRICS: [(&str, &str, &str); 8] = [
    (
        "sluicedb_view_rows_in_total",
        "counter",
        "Rows a materialized view took in.",
    ),
    (
        "sluicedb_view_late_rows_total",
        "counter",
        "Rows that reached a view after their window closed (see sluice_catalog.late_rows).",
    ),
    (
        "sluicedb_view_rows_emitted_total",
        "counter",
        "Final rows (closed windows) a view produced.",
    ),
    (
        "sluicedb_view_open_groups",
        "gauge",
        "Groups (window x key) a view holds open.",
    ),
    (
        "sluicedb_view_state_bytes",
        "gauge",
        "Bytes of a view's state: open windows or groups, and its joins' rows.",
    ),
    (
        "sluicedb_view_join_rows",
        "gauge",
        "Rows a view's joins hold (distinct rows per side).",
    ),
    (
        "sluicedb_view_join_state_bytes",
        "gauge",
        "Bytes of the rows a view's joins hold.",
    ),
    (
        "sluicedb_view_watermark_seconds",
        "gauge",
        "The input watermark a view last saw, Unix seconds.",
    ),
];

/// The Prometheus text exposition of every metric.
/// What queries hold of their memory pool, and its size (`--memory-limit`), in bytes.
pub struct QueryMemory {
    pub reserved: usize,
    pub limit: u64,
}

pub fn render(sources: &[Snapshot], views: &[ViewSnapshot], memory: &QueryMemory) -> String {
    let mut out = String::new();
    write_metric(
        &mut out,
        "sluicedb_query_memory_bytes",
        "Memory running queries and streaming state (open windows, deduplication keys) hold of the pool.",
        "gauge",
        memory.reserved as i64,
    );
    write_metric(
        &mut out,
        "sluicedb_query_memory_limit_bytes",
        "The size of the pool queries and streaming state draw from (--memory-limit); beyond it queries spill or fail with 53200 and streams stall.",
        "gauge",
        memory.limit as i64,
    );
    let state: u64 = views.iter().map(|v| v.state_bytes).sum::<u64>()
        + sources.iter().map(|s| s.state_bytes).sum::<u64>();
    write_metric(
        &mut out,
        "sluicedb_state_memory_bytes",
        "Memory streaming state (open windows, deduplication keys) holds of the pool.",
        "gauge",
        state as i64,
    );
    write_metric(
        &mut out,
        "sluicedb_state_memory_limit_bytes",
        "The share of the pool streaming state may hold; beyond it views and sources stall.",
        "gauge",
        crate::stream::state_memory::state_limit(memory.limit) as i64,
    );
    for counter in [
        &QUERIES,
        &QUERY_ERRORS,
        &PLANS_REUSED,
        &TABLE_ROWS_WRITTEN,
        &CONNECTIONS_REFUSED,
        &LOGINS_FAILED,
        &CHECKPOINTS_COMMITTED,
        &CHECKPOINTS_FAILED,
    ] {
        write_metric(
            &mut out,
            counter.name,
            counter.help,
            "counter",
            counter.get() as i64,
        );
    }
    for gauge in [
        &CONNECTIONS_ACTIVE,
        &CHECKPOINTS_FAILING,
        &CHECKPOINT_COMMITTED_AT,
        &TLS_CERTIFICATE_EXPIRY,
    ] {
        write_metric(
            &mut out,
            gauge.name,
            gauge.help,
            "gauge",
            gauge.value.load(Ordering::Relaxed),
        );
    }
    write_states(
        &mut out,
        "sluicedb_source_status",
        "1 for a source's current status (starting, running, retrying, stalled, finished, failed), 0 for the others; see sluice_catalog.sources.last_error.",
        "source",
        sources
            .iter()
            .map(|s| (s.source.as_str(), s.status.as_str())),
        &SourceStatus::ALL.map(SourceStatus::as_str),
    );
    write_labelled(
        &mut out,
        ("sluicedb_source_errors_total", "counter"),
        "Errors a source hit: each new cause of retrying (broker down or silent, …), and failing.",
        "source",
        sources.iter().map(|s| (s.source.as_str(), s.errors)),
    );
    write_states(
        &mut out,
        "sluicedb_view_status",
        "1 for a view's current status (backfilling, running, stalled, failed), 0 for the others; see sluice_catalog.materialized_views.last_error.",
        "view",
        views.iter().map(|v| (v.view.as_str(), v.status.as_str())),
        &ViewStatus::ALL.map(ViewStatus::as_str),
    );
    write_labelled(
        &mut out,
        ("sluicedb_view_errors_total", "counter"),
        "Times a view failed.",
        "view",
        views.iter().map(|v| (v.view.as_str(), v.errors)),
    );
    for (i, (name, kind, help)) in SOURCE_METRICS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for source in sources {
            for (partition, p) in &source.partitions {
                let value = match i {
                    0 => Some(p.rows_in as f64),
                    1 => Some(p.bytes_in as f64),
                    2 => Some(p.rejected as f64),
                    3 => Some(p.late as f64),
                    4 => p.next_offset.map(|o| o as f64),
                    5 => p.lag().map(|l| l as f64),
                    6 => p.watermark_us.map(|w| w as f64 / 1e6),
                    _ => Some(if p.stopped.is_some() { 1.0 } else { 0.0 }),
                };
                if let Some(value) = value {
                    let _ = writeln!(
                        out,
                        "{name}{{source=\"{}\",partition=\"{partition}\"}} {value}",
                        escape_label(&source.source)
                    );
                }
            }
        }
    }
    write_labelled(
        &mut out,
        ("sluicedb_source_state_bytes", "gauge"),
        "Bytes of a source's deduplication keys.",
        "source",
        sources.iter().map(|s| (s.source.as_str(), s.state_bytes)),
    );
    for (i, (name, kind, help)) in VIEW_METRICS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for view in views {
            let value = match i {
                0 => Some(view.rows_in as f64),
                1 => Some(view.rows_late as f64),
                2 => Some(view.rows_out as f64),
                3 => Some(view.open_groups as f64),
                4 => Some(view.state_bytes as f64),
                5 => Some(view.join_rows as f64),
                6 => Some(view.join_state_bytes as f64),
                _ => view.watermark_us.map(|w| w as f64 / 1e6),
            };
            if let Some(value) = value {
                let _ = writeln!(
                    out,
                    "{name}{{view=\"{}\"}} {value}",
                    escape_label(&view.view)
                );
            }
        }
    }
    out
}

/// One series per object, labelled `label`.
fn write_labelled<'a>(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (object, value) in values {
        let _ = writeln!(
            out,
            "{name}{{{label}=\"{}\"}} {value}",
            escape_label(object)
        );
    }
}

/// An enumeration as Prometheus has them: a series per object and state, 1 for the current.
fn write_states<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    current: impl Iterator<Item = (&'a str, &'a str)>,
    states: &[&str],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (object, now) in current {
        for state in states {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{}\",status=\"{state}\"}} {}",
                escape_label(object),
                u8::from(*state == now)
            );
        }
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn write_metric(out: &mut String, name: &str, help: &str, kind: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}
