//! Postgres column types and the Arrow types they are stored as.
//!
//! A column's type is kept in the manifest by its canonical Postgres name (`bigint`,
//! `numeric(10,2)`, `timestamptz`), so the catalog reads like SQL and `SHOW CREATE TABLE` prints
//! it back; the Arrow type is derived from that name every time.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sqlparser::ast::{DataType as SqlType, ExactNumberInfo, TimezoneInfo};

use crate::error::{Error, Result as SluiceResult};

/// Precision and scale of `numeric` written without them (Postgres' is unbounded).
const NUMERIC_DEFAULT: (u8, i8) = (38, 10);

/// A supported column type: its canonical Postgres spelling and its Arrow type.
/// Serialized as the spelling alone.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ColumnType {
    pub pg_name: String,
    pub arrow: DataType,
}

impl ColumnType {
    /// Maps a type from `CREATE TABLE` to a stored type, or explains why it cannot be stored.
    pub fn from_sql(sql_type: &SqlType) -> SluiceResult<Self> {
        let (pg_name, arrow) = match sql_type {
            SqlType::SmallInt(_) | SqlType::Int2(_) => ("smallint".to_string(), DataType::Int16),
            SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => {
                ("integer".to_string(), DataType::Int32)
            }
            SqlType::BigInt(_) | SqlType::Int8(_) => ("bigint".to_string(), DataType::Int64),
            SqlType::Real | SqlType::Float4 => ("real".to_string(), DataType::Float32),
            SqlType::DoublePrecision | SqlType::Double(_) | SqlType::Float8 => {
                ("double precision".to_string(), DataType::Float64)
            }
            SqlType::Float(_) => ("double precision".to_string(), DataType::Float64),
            SqlType::Numeric(info) | SqlType::Decimal(info) | SqlType::Dec(info) => numeric(info)?,
            SqlType::Text | SqlType::String(_) => ("text".to_string(), DataType::Utf8),
            SqlType::Varchar(_) | SqlType::CharacterVarying(_) | SqlType::CharVarying(_) => {
                ("varchar".to_string(), DataType::Utf8)
            }
            SqlType::Boolean | SqlType::Bool => ("boolean".to_string(), DataType::Boolean),
            SqlType::Date => ("date".to_string(), DataType::Date32),
            SqlType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => (
                "timestamp".to_string(),
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            SqlType::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => (
                "timestamptz".to_string(),
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            ),
            SqlType::Bytea => ("bytea".to_string(), DataType::Binary),
            SqlType::Custom(name, modifiers) if modifiers.is_empty() => {
                return Self::from_name(&name.to_string().to_ascii_lowercase())
                    .ok_or_else(|| unsupported(sql_type));
            }
            other => return Err(unsupported(other)),
        };
        Ok(ColumnType { pg_name, arrow })
    }

    /// Parses a canonical name back, as stored in the manifest.
    pub fn from_name(pg_name: &str) -> Option<Self> {
        let arrow = match pg_name {
            "smallint" | "int2" => DataType::Int16,
            "integer" | "int" | "int4" => DataType::Int32,
            "bigint" | "int8" => DataType::Int64,
            "real" | "float4" => DataType::Float32,
            "double precision" | "float8" => DataType::Float64,
            "text" | "varchar" | "string" => DataType::Utf8,
            "boolean" | "bool" => DataType::Boolean,
            "date" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            "bytea" => DataType::Binary,
            // Stored as a duration: what a difference of timestamps is in Arrow (views only).
            "interval" => DataType::Duration(TimeUnit::Microsecond),
            other => {
                let inner = other.strip_prefix("numeric(")?.strip_suffix(')')?;
                let (precision, scale) = inner.split_once(',')?;
                DataType::Decimal128(precision.trim().parse().ok()?, scale.trim().parse().ok()?)
            }
        };
        Some(ColumnType {
            pg_name: pg_name.to_string(),
            arrow,
        })
    }

    /// The stored type for a computed column of Arrow type `arrow` (a view's output), widening
    /// types Postgres lacks (unsigned, 8-bit, views of strings) to the nearest one it has.
    pub fn storable(arrow: &DataType) -> Option<Self> {
        let name = match arrow {
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".to_string(),
            DataType::Int32 | DataType::UInt16 => "integer".to_string(),
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".to_string(),
            DataType::Float16 | DataType::Float32 => "real".to_string(),
            DataType::Float64 => "double precision".to_string(),
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "text".to_string(),
            DataType::Boolean => "boolean".to_string(),
            DataType::Date32 => "date".to_string(),
            DataType::Timestamp(_, None) => "timestamp".to_string(),
            DataType::Timestamp(_, Some(_)) => "timestamptz".to_string(),
            DataType::Binary | DataType::BinaryView | DataType::LargeBinary => "bytea".to_string(),
            DataType::Decimal128(p, s) if *s >= 0 => format!("numeric({p},{s})"),
            // A difference of timestamps.
            DataType::Duration(_) => "interval".to_string(),
            _ => return None,
        };
        ColumnType::from_name(&name)
    }

    /// Whether a watermark can be declared on a column of this type.
    pub fn is_timestamp(&self) -> bool {
        matches!(self.arrow, DataType::Timestamp(_, _))
    }
}

impl TryFrom<String> for ColumnType {
    type Error = String;

    fn try_from(pg_name: String) -> Result<Self, String> {
        ColumnType::from_name(&pg_name).ok_or_else(|| format!("unknown column type \"{pg_name}\""))
    }
}

impl From<ColumnType> for String {
    fn from(column_type: ColumnType) -> String {
        column_type.pg_name
    }
}

/// How Postgres names the type of a column of Arrow type `arrow`: its SQL name, as
/// `information_schema.columns.data_type` shows it, and its `pg_type` name (`udt_name`).
pub fn pg_type_names(arrow: &DataType) -> (String, String) {
    let (data_type, udt) = match arrow {
        DataType::Boolean => ("boolean", "bool"),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => ("smallint", "int2"),
        DataType::Int32 | DataType::UInt16 => ("integer", "int4"),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("bigint", "int8"),
        DataType::Float16 | DataType::Float32 => ("real", "float4"),
        DataType::Float64 => ("double precision", "float8"),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => ("numeric", "numeric"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("text", "text"),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => ("bytea", "bytea"),
        DataType::Date32 | DataType::Date64 => ("date", "date"),
        DataType::Timestamp(_, None) => ("timestamp without time zone", "timestamp"),
        DataType::Timestamp(_, Some(_)) => ("timestamp with time zone", "timestamptz"),
        DataType::Time32(_) | DataType::Time64(_) => ("time without time zone", "time"),
        DataType::Interval(_) | DataType::Duration(_) => ("interval", "interval"),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            return (
                "ARRAY".to_string(),
                format!("_{}", pg_type_names(item.data_type()).1),
            );
        }
        DataType::Dictionary(_, value) => return pg_type_names(value),
        DataType::Struct(_) | DataType::Map(..) => ("json", "json"),
        _ => ("text", "text"),
    };
    (data_type.to_string(), udt.to_string())
}

fn numeric(info: &ExactNumberInfo) -> SluiceResult<(String, DataType)> {
    let (precision, scale) = match info {
        ExactNumberInfo::None => NUMERIC_DEFAULT,
        ExactNumberInfo::Precision(p) => (narrow_precision(*p)?, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => {
            let precision = narrow_precision(*p)?;
            let scale = i8::try_from(*s)
                .ok()
                .filter(|s| *s >= 0 && (*s as u8) <= precision);
            let scale = scale.ok_or_else(|| {
                Error::InvalidParameter(format!(
                    "numeric scale {s} must be between 0 and precision {precision}"
                ))
            })?;
            (precision, scale)
        }
    };
    Ok((
        format!("numeric({precision},{scale})"),
        DataType::Decimal128(precision, scale),
    ))
}

fn narrow_precision(precision: u64) -> SluiceResult<u8> {
    u8::try_from(precision)
        .ok()
        .filter(|p| (1..=38).contains(p))
        .ok_or_else(|| {
            Error::unsupported(
                format!("numeric precision {precision}"),
                Some("Use a precision between 1 and 38."),
            )
        })
}

fn unsupported(sql_type: &SqlType) -> Error {
    Error::unsupported(
        format!("type \"{}\"", sql_type.to_string().to_ascii_lowercase()),
        Some(
            "Supported types are smallint, integer, bigint, real, double precision, numeric, \
             text, varchar, boolean, date, timestamp, timestamptz and bytea.",
        ),
    )
}

/// A column of a table, source or view: its name, type and whether it may be NULL.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub column_type: ColumnType,
    pub nullable: bool,
}

/// The Arrow schema of a list of columns.
pub fn arrow_schema(columns: &[ColumnDef]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(&c.name, c.column_type.arrow.clone(), c.nullable))
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn column_type(sql: &str) -> SluiceResult<ColumnType> {
        let mut parser = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap();
        ColumnType::from_sql(&parser.parse_data_type().unwrap())
    }

    #[test]
    fn maps_postgres_spellings() {
        assert_eq!(column_type("int").unwrap().arrow, DataType::Int32);
        assert_eq!(
            column_type("double precision").unwrap().pg_name,
            "double precision"
        );
        assert_eq!(column_type("varchar(20)").unwrap().pg_name, "varchar");
        assert_eq!(
            column_type("numeric(10,2)").unwrap().arrow,
            DataType::Decimal128(10, 2)
        );
        let tz = column_type("timestamp with time zone").unwrap();
        assert_eq!(tz.pg_name, "timestamptz");
        assert_eq!(ColumnType::from_name(&tz.pg_name).unwrap(), tz);
        assert_eq!(
            ColumnType::from_name("numeric(10,2)").unwrap().arrow,
            DataType::Decimal128(10, 2)
        );
    }

    #[test]
    fn refuses_what_it_cannot_store() {
        let error = column_type("int[]").unwrap_err();
        assert_eq!(error.sqlstate(), "0A000");
        assert_eq!(
            column_type("numeric(50,2)").unwrap_err().sqlstate(),
            "0A000"
        );
    }
}
