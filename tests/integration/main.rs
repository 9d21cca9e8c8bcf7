//! The one integration-test binary: every module here shares one link.
//!
//! - `slt`: sqllogictest files over the wire protocol.
//! - `persistence`: psql + COPY + restart, on a local folder and on a real S3 server.
//! - `protocol`: cancel, malformed messages, disconnects, the extended protocol.
//! - `clients`: psycopg, asyncpg, SQLAlchemy and node-postgres scripts.
//! - `sources`: the datagen connector, exact and deterministic, across a restart.
//! - `kafka`: Kafka sources against a real broker: exactly once, rejections, startup modes,
//!   watermarks, a broker restart.
//! - `kafka_views`: the clickstream view over a real broker, on S3, across a SIGKILL.
//! - `views`: windowed views against DataFusion batch results over the same seeded rows.

mod clients;
mod kafka;
mod kafka_views;
mod persistence;
mod protocol;
mod slt;
mod sources;
mod support;
mod views;
