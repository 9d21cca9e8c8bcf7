//! What exists: tables, sources and views as DataFusion sees them, and the providers that read
//! them (committed files, pending rows, live view snapshots). How they look to Postgres tools
//! (`pg_catalog`, `information_schema`) is [`crate::pg`]'s.
//!
//! The committed manifest is the catalog's only source of truth; [`provider::PublicSchema`]
//! answers DataFusion (and through it `pg_catalog` and `information_schema`) from the newest
//! manifest on every lookup, so a table appears to every session the moment its `CREATE` commits.

pub mod provider;
pub mod roles;
pub mod snapshot;
pub mod source;
pub mod system;
pub mod table;
pub mod types;
pub mod view;

/// The catalog and schema names clients see (`current_database()`, `current_schema()`).
pub const DATABASE_NAME: &str = "sluice";
pub const SCHEMA_NAME: &str = "public";
