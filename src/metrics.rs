//! Every metric SluiceDB exports, declared in one place and rendered for `/metrics`.
//!
//! Plain atomics in Prometheus text format: the set is small and fixed, so a registry crate would
//! add more than it saves. Names are `sluicedb_<noun>_<unit>`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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
}

pub static QUERIES: Counter = Counter::new(
    "sluicedb_queries_total",
    "Statements executed over the Postgres protocol.",
);
pub static QUERY_ERRORS: Counter = Counter::new(
    "sluicedb_query_errors_total",
    "Statements that ended in an error.",
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

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = String::new();
    for counter in [
        &QUERIES,
        &QUERY_ERRORS,
        &TABLE_ROWS_WRITTEN,
        &CONNECTIONS_REFUSED,
    ] {
        let _ = writeln!(out, "# HELP {} {}", counter.name, counter.help);
        let _ = writeln!(out, "# TYPE {} counter", counter.name);
        let _ = writeln!(out, "{} {}", counter.name, counter.get());
    }
    for gauge in [&CONNECTIONS_ACTIVE] {
        let _ = writeln!(out, "# HELP {} {}", gauge.name, gauge.help);
        let _ = writeln!(out, "# TYPE {} gauge", gauge.name);
        let _ = writeln!(
            out,
            "{} {}",
            gauge.name,
            gauge.value.load(Ordering::Relaxed)
        );
    }
    out
}
