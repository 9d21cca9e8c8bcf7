//! Postgres functions that clients call while connecting, answered the way they expect.
//!
//! SQLAlchemy (and so Superset) parses `version()` for "PostgreSQL <major>.<minor>"; DataFusion's
//! own `version()` names DataFusion, which stops the dialect from starting. psycopg looks types up
//! with `to_regtype(name)`, which answers for the types our tables can hold. SQLAlchemy's reflection
//! asks `pg_get_serial_sequence`, which is always NULL: there are no sequences. Grafana reads
//! `current_setting('server_version_num')`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::error::Error;

/// The Postgres release whose protocol and catalogs we answer like.
pub const PG_COMPAT_VERSION: &str = "15.8";

pub fn register(ctx: &SessionContext) {
    let text = format!(
        "PostgreSQL {PG_COMPAT_VERSION} (SluiceDB {}) on {}, compiled by rustc",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    let version = create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    );
    ctx.register_udf(version);
    // The value of a correlated scalar subquery (pg/subqueries.rs).
    ctx.register_udaf(super::single_value::udaf());
    // RisingWave's and Flink's name for DataFusion's HyperLogLog distinct count.
    let approx_distinct = datafusion::functions_aggregate::approx_distinct::approx_distinct_udaf();
    ctx.register_udaf(
        approx_distinct
            .as_ref()
            .clone()
            .with_aliases(["approx_count_distinct"]),
    );
    ctx.register_udf(create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
    ctx.register_udf(create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(current_setting),
    ));
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(to_regtype),
    ));
    // datafusion-pg-catalog's leaves upper-case names unquoted; Grafana's pickers quote with it.
    ctx.register_udf(create_udf(
        "quote_ident",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let names = first_as_text(args)?;
            let quoted: StringArray = names
                .iter()
                .map(|n| n.map(crate::sql::quote_ident))
                .collect();
            scalar_if_scalar(args, Arc::new(quoted))
        }),
    ));
    // datafusion-pg-catalog's spells UTF8 as "UTF-8"; psql's \l shows this name.
    ctx.register_udf(create_udf(
        "pg_encoding_to_char",
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(encoding_name),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(Format {
        signature: Signature::variadic_any(Volatility::Immutable),
    }));
    ctx.register_udf(create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(set_config),
    ));
}

/// Postgres' names of the encodings a database can have here (UTF8 only, SQL_ASCII for 0); an
/// unknown number gives an empty name, as in Postgres.
fn encoding_name(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let codes = ColumnarValue::values_to_arrays(args)?;
    let names: StringArray = datafusion::common::cast::as_int32_array(&codes[0])?
        .iter()
        .map(|code| {
            code.map(|code| match code {
                0 => "SQL_ASCII",
                6 => "UTF8",
                _ => "",
            })
        })
        .collect();
    scalar_if_scalar(args, Arc::new(names))
}

/// Postgres' `format(template, args…)`: `%s` (text, NULL as empty), `%I` (an identifier, quoted
/// when needed), `%L` (a literal, NULL as `NULL`), `%%`. Metabase's column sync builds type and
/// relation names with it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let texts = ColumnarValue::values_to_arrays(&args.args)?
            .iter()
            .map(|a| as_text(a))
            .collect::<Result<Vec<StringArray>>>()?;
        let rows = args.number_rows;
        let formatted = (0..rows)
            .map(|row| {
                let value = |i: usize| {
                    texts
                        .get(i)
                        .and_then(|t| t.is_valid(row).then(|| t.value(row)))
                };
                match value(0) {
                    None => Ok(None),
                    Some(template) => {
                        format_row(template, |i| value(i + 1), texts.len() - 1).map(Some)
                    }
                }
            })
            .collect::<Result<StringArray>>()?;
        scalar_if_scalar(&args.args, Arc::new(formatted))
    }
}

fn format_row<'a>(
    template: &str,
    arg: impl Fn(usize) -> Option<&'a str>,
    count: usize,
) -> Result<String> {
    let invalid = |message: String| DataFusionError::from(Error::InvalidParameter(message));
    let mut out = String::with_capacity(template.len());
    let mut next = 0;
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars.next();
        if spec == Some('%') {
            out.push('%');
            continue;
        }
        if next >= count {
            return Err(invalid("too few arguments for format()".into()));
        }
        let value = arg(next);
        next += 1;
        match spec {
            Some('s') => out.push_str(value.unwrap_or("")),
            Some('I') => out.push_str(&crate::sql::quote_ident(value.ok_or_else(|| {
                invalid("null values cannot be formatted as an SQL identifier".into())
            })?)),
            Some('L') => out.push_str(&value.map_or("NULL".to_string(), crate::sql::quote_literal)),
            other => {
                return Err(invalid(format!(
                    "unrecognized format() type specifier \"{}\"",
                    other.map_or(String::new(), String::from)
                )));
            }
        }
    }
    Ok(out)
}

/// Calls with literal arguments change the connection's setting and are replaced by their value
/// before planning (`crate::pg::settings::set_configs`); this is what is left.
fn set_config(_: &[ColumnarValue]) -> Result<ColumnarValue> {
    Err(Error::unsupported(
        "set_config with arguments that are not constants",
        Some("Use SET name = value, or set_config('name', 'value', false)."),
    )
    .into())
}

/// A setting's default. Calls with a literal name are answered per connection before planning
/// (`crate::pg::settings::bind_caller`); this answers the rest, as a new connection would.
fn current_setting(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let names = first_as_text(args)?;
    let values = names
        .iter()
        .map(|name| {
            name.map(|name| {
                crate::pg::settings::default_value(name)
                    .ok_or_else(|| Error::UnknownSetting(name.to_string()).into())
            })
            .transpose()
        })
        .collect::<Result<StringArray>>()?;
    scalar_if_scalar(args, Arc::new(values))
}

/// The first argument as text, one value per row.
fn first_as_text(args: &[ColumnarValue]) -> Result<StringArray> {
    as_text(&ColumnarValue::values_to_arrays(args)?[0])
}

fn as_text(values: &dyn Array) -> Result<StringArray> {
    let values = cast(values, &DataType::Utf8)?;
    Ok(values
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8")
        .clone())
}

/// A one-row result as a scalar when every argument was one.
pub(crate) fn scalar_if_scalar(
    args: &[ColumnarValue],
    values: Arc<dyn Array>,
) -> Result<ColumnarValue> {
    Ok(
        if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&values, 0)?)
        } else {
            ColumnarValue::Array(values)
        },
    )
}

/// `to_regtype` oids of the types tables can hold, by every name Postgres accepts for them.
const TYPE_OIDS: &[(&str, i32)] = &[
    ("bool", 16),
    ("boolean", 16),
    ("bytea", 17),
    ("int8", 20),
    ("bigint", 20),
    ("int2", 21),
    ("smallint", 21),
    ("int4", 23),
    ("int", 23),
    ("integer", 23),
    ("text", 25),
    ("float4", 700),
    ("real", 700),
    ("float8", 701),
    ("double precision", 701),
    ("varchar", 1043),
    ("character varying", 1043),
    ("date", 1082),
    ("timestamp", 1114),
    ("timestamp without time zone", 1114),
    ("timestamptz", 1184),
    ("timestamp with time zone", 1184),
    ("numeric", 1700),
    ("decimal", 1700),
];

fn to_regtype(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let names = first_as_text(args)?;
    let oids: Int32Array = names
        .iter()
        .map(|name| {
            let name = name?.trim().to_ascii_lowercase();
            let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
            TYPE_OIDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, oid)| *oid)
        })
        .collect();
    scalar_if_scalar(args, Arc::new(oids))
}

#[cfg(test)]
mod tests {
    use super::format_row;

    #[test]
    fn formats_as_postgres_does() {
        let args = ["public", "My Table", "it's"];
        let arg = |i: usize| args.get(i).copied();
        assert_eq!(format_row("%I.%I", arg, 2).unwrap(), "public.\"My Table\"");
        assert_eq!(
            format_row("%s = %L, 100%%", |i| [Some("a"), Some("it's")][i], 2).unwrap(),
            "a = 'it''s', 100%"
        );
        assert_eq!(format_row("%L|%s|", |_| None, 2).unwrap(), "NULL||");
        assert!(format_row("%s %s", arg, 1).is_err());
        assert!(format_row("%I", |_| None, 1).is_err());
    }
}
