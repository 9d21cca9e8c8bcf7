//! Postgres compatibility: how SluiceDB looks to tools that expect PostgreSQL 15. Everything
//! that makes DataFusion answer as Postgres would lives here; `server/` is the wire, `sql/` our
//! own statements, `catalog/` what exists and the providers that read it.
//!
//! What tools read:
//! - [`pg_catalog`]: a layer over datafusion-pg-catalog's `pg_catalog` (materialized views,
//!   `pg_settings`, `pg_roles`, array-typed keys); [`information_schema`]: our own.
//! - [`functions`], [`introspection`], [`function_signatures`]: the functions drivers and psql
//!   call (`version()`, `format()`, visibility, descriptions, sizes, `pg_get_function_result`).
//! - [`settings`]: session settings (SET/SHOW/RESET, per-connection values bound into
//!   statements), the registry `pg_settings` and `current_setting` read.
//! - [`text`]: Arrow values in Postgres' text output format (results and `COPY … TO`).
//!
//! What tools send, rewritten in the syntax tree before planning ([`rewrite`] applies them in order):
//! - [`compat`]: expressions Postgres spells differently (`LIKE … ESCAPE`, interval arithmetic,
//!   functions in FROM, …), with [`subqueries`] (`ARRAY(SELECT …)`, correlated lookups, with
//!   the [`single_value`] aggregate) and
//!   [`sort_keys`] (subqueries in ORDER BY and select lists) as DataFusion can decorrelate them.
//! - [`driver_queries`]: whole catalog queries of drivers swapped for equivalents.
//! - [`names`]: result columns named as Postgres names them.
//!
//! Types and values, as analyzer and optimizer rules over plans:
//! - [`literals`]: integer literals typed `integer` where they fit.
//! - [`coercion`]: `bool_col = 'f'`; [`arrays`]: `'{a,"b c",NULL}'::text[]`; [`bytea`]:
//!   `'\x00ff'::bytea`; [`casts`]: fractions cast to integers round.
//! - [`overflow`]: integer `+`, `-`, `*` fail on overflow (22003) instead of wrapping.

pub mod arrays;
pub mod bytea;
pub mod bytea_functions;
pub mod casts;
pub mod coercion;
pub mod compat;
pub mod driver_queries;
pub mod function_signatures;
pub mod functions;
pub mod information_schema;
pub mod introspection;
pub mod literals;
pub mod names;
pub mod numeric;
pub mod overflow;
pub mod pg_catalog;
pub mod rewrite;
pub mod roles;
pub mod settings;
pub mod single_value;
pub mod sort_keys;
pub mod subqueries;
pub mod text;
