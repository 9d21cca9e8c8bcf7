//! Postgres compatibility: how SluiceDB looks to tools that expect PostgreSQL 15.
//!
//! - [`casts`]: casts of fractional numbers to integers round, as in Postgres.
//! - [`literals`]: integer literals typed `integer` where they fit, as Postgres types them.
//! - [`settings`]: session settings (SET/SHOW/RESET, per-connection values bound into
//!   statements), the registry `pg_settings` and `current_setting` read.
//! - [`overflow`]: integer `+`, `-`, `*` fail on overflow (22003) instead of wrapping.
//! - [`text`]: Arrow values in Postgres' text output format (results and `COPY … TO`).

pub mod casts;
pub mod literals;
pub mod overflow;
pub mod settings;
pub mod text;
