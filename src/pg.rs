//! Postgres compatibility: how SluiceDB looks to tools that expect PostgreSQL 15.
//!
//! - [`arrays`]: text read as arrays in Postgres' syntax (`'{a,"b c",NULL}'::text[]`).
//! - [`casts`]: casts of fractional numbers to integers round, as in Postgres.
//! - [`function_signatures`]: `pg_get_function_result`/`_arguments` from `pg_proc` (psql's `\df`).
//! - [`literals`]: integer literals typed `integer` where they fit, as Postgres types them.
//! - [`settings`]: session settings (SET/SHOW/RESET, per-connection values bound into
//!   statements), the registry `pg_settings` and `current_setting` read.
//! - [`subqueries`]: `ARRAY(SELECT …)` and catalog lookups as subqueries DataFusion decorrelates.
//! - [`overflow`]: integer `+`, `-`, `*` fail on overflow (22003) instead of wrapping.
//! - [`text`]: Arrow values in Postgres' text output format (results and `COPY … TO`).

pub mod arrays;
pub mod casts;
pub mod function_signatures;
pub mod literals;
pub mod overflow;
pub mod settings;
pub mod subqueries;
pub mod text;
