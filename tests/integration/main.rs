//! The one integration-test binary: every module here shares one link.
//!
//! - `slt`: sqllogictest files over the wire protocol.
//! - `persistence`: psql + COPY + restart, on a local folder and on a real S3 server.
//! - `protocol`: cancel, malformed messages, disconnects, the extended protocol.
//! - `clients`: psycopg, asyncpg, SQLAlchemy and node-postgres scripts.

mod clients;
mod persistence;
mod protocol;
mod slt;
mod support;
