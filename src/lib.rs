//! SluiceDB: a SQL-first streaming database served over the Postgres wire protocol.
//!
//! Crate map, in the order data flows:
//! - [`config`]: every setting, its default and unit; merged from flags, env and `sluicedb.toml`.
//! - [`sql`]: our SQL dialect on top of sqlparser (`CREATE TABLE … WATERMARK FOR`, `CREATE SOURCE`,
//!   `CREATE MATERIALIZED VIEW … EMIT ON WINDOW CLOSE`, `FLUSH`),
//!   `COPY` payload decoding.
//! - [`source`]: Kafka and datagen sources: JSON decoding, watermarks, rejected and late rows.
//! - [`stream`]: materialized views' planning (DataFusion) and window operators.
//! - [`view`]: running views: their pipelines, live results, commits, late rows.
//! - [`catalog`]: tables, sources and their schemas, Postgres type names, the DataFusion
//!   providers over them, and the `sluice_catalog` schema.
//! - [`table`]: tables with a primary key: their rows by key in memory, writes as changelogs.
//! - [`storage`]: the only module that touches `object_store`: manifests, Parquet files, probes.
//! - [`database`]: one shared [`database::Database`] that executes statements.
//! - [`pg`]: Postgres compatibility: values in Postgres' text formats.
//! - [`server`]: pgwire handlers, Arrow → Postgres encoding, HTTP (`/healthz`, `/metrics`).
//! - [`metrics`]: every metric, declared in one place.
//! - [`error`]: the user-facing error enum and its SQLSTATE codes.

/// mimalloc rather than glibc's malloc, for the server, its tests and its benches alike: short
/// queries allocate and free many small objects from many threads (plans, batches, rendered
/// values), and glibc's arenas spent a quarter of a dashboard query's time in malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod catalog;
pub mod checkpoint;
pub mod config;
pub mod database;
pub mod error;
pub mod failpoint;
pub mod maintenance;
pub mod metrics;
pub mod pg;
pub mod planner;
pub mod server;
pub mod source;
pub mod sql;
pub mod storage;
pub mod stream;
pub mod table;
pub mod view;

/// The stack of every thread the server runs statements on. Statements are parsed, rewritten
/// and planned by recursive walks whose depth [`sql::depth`] bounds; a debug build needs about
/// 2 KiB a level, so 64 MiB leaves a wide margin. Only the pages a thread touches are resident.
pub const THREAD_STACK_SIZE: usize = 64 << 20;
