//! The one integration-test binary: every module here shares one link.
//!
//! - `slt`: sqllogictest files over the wire protocol.
//! - `access`: SCRAM-SHA-256 logins and TLS, with the real psql.
//! - `cdc`: tables fed by upsert and Debezium topics on a real broker, against a model of
//!   their rows and batch queries for their views, through two kill -9s.
//! - `closing`: windows over a changing table closed by its watermark, against the rows each
//!   window had when it closed and the changes sent into closed windows, through a kill -9.
//! - `checkpoints`: window state checkpointed and restored at random batches == straight through.
//! - `persistence`: psql + COPY + restart, on a local folder and on a real S3 server.
//! - `hostile`: what took the server down once (statements nested too deep, planning that
//!   stalled every connection), each over a real socket against the real binary.
//! - `protocol`: cancel, malformed messages, disconnects, the extended protocol.
//! - `clients`: psycopg, asyncpg, SQLAlchemy and node-postgres scripts.
//! - `sources`: the datagen connector, exact and deterministic, across a restart.
//! - `differential`: a corpus of statements on SluiceDB and on a real PostgreSQL 15, compared
//!   name by name, type by type, byte by byte, over three protocol modes.
//! - `faults`: the object store frozen: 58030 within 20 s, other connections answered.
//! - `kafka`: Kafka sources against a real broker: exactly once, rejections, startup modes,
//!   watermarks, a broker restart, a topic re-created behind the source's back.
//! - `kafka_views`: the clickstream view over a real broker, on S3, across a SIGKILL.
//! - `crash`: 200 000 events, 20 kill -9s and crashes inside checkpoints, local and S3 (with
//!   S3 down for 30 s): the views equal the batch result of the distinct events.
//! - `maintenance`: compaction under concurrent reads (local and S3), garbage collection,
//!   retention, and REBUILD of a view whose state file is gone.
//! - `reads`: views polled without pause while they ingest (broker and COPY), windows close,
//!   checkpoints commit and compaction runs: each poll sees every group exactly once.
//! - `roles`: a read-only role, an owner's grants and revokes, over SCRAM and a restart.
//! - `unions`: UNION ALL views over two Kafka sources and over two tables, aligned and
//!   watermarked, against batch queries through a kill -9.
//! - `updating`: views over views whose rows change, against batch queries after every
//!   change, through a kill -9.
//! - `views`: windowed views against DataFusion batch results over the same seeded rows.

mod access;
mod cdc;
mod checkpoints;
mod clients;
mod closing;
mod crash;
mod differential;
mod faults;
mod hostile;
mod joins;
mod kafka;
mod kafka_views;
mod maintenance;
mod persistence;
mod protocol;
mod reads;
mod roles;
mod slt;
mod sources;
mod support;
mod unions;
mod updating;
mod views;
