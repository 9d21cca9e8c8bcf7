//! Text as `bytea` the way Postgres reads it: `'\x00ff'` is two bytes, not six characters.
//!
//! Arrow's cast from text to binary keeps the UTF-8 bytes, so psql's `INSERT … VALUES
//! ('\xdeadbeef')` and a `COPY` of Postgres' own text output would store the spelling instead of
//! the bytes. Postgres accepts two input forms: hex (`\x` then pairs of hex digits, whitespace
//! between pairs allowed) and the older escape form (bytes as they are, `\\` for a backslash,
//! `\ooo` for an octal byte). [`ByteaText`] replaces every text-to-binary cast in a plan with
//! [`parse_array`]; COPY calls it directly.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, BinaryBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarUDF, Volatility, create_udf,
};
use datafusion::optimizer::AnalyzerRule;

/// One value in Postgres' bytea input syntax.
pub fn parse(text: &str) -> std::result::Result<Vec<u8>, String> {
    match text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("\\X"))
    {
        Some(hex) => parse_hex(hex),
        None => parse_escaped(text),
    }
}

fn parse_hex(hex: &str) -> std::result::Result<Vec<u8>, String> {
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("invalid hexadecimal digit: \"{}\"", c as char))
    };
    let mut bytes = Vec::with_capacity(hex.len() / 2);
    let mut chars = hex.bytes().filter(|c| !c.is_ascii_whitespace());
    while let Some(high) = chars.next() {
        let low = chars
            .next()
            .ok_or("invalid hexadecimal data: odd number of digits")?;
        bytes.push(digit(high)? << 4 | digit(low)?);
    }
    Ok(bytes)
}

fn parse_escaped(text: &str) -> std::result::Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match &bytes[i..] {
            [b'\\', b'\\', ..] => {
                out.push(b'\\');
                i += 2;
            }
            [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] => {
                out.push((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
                i += 4;
            }
            [b'\\', ..] => return Err("invalid input syntax for type bytea".to_string()),
            [byte, ..] => {
                out.push(*byte);
                i += 1;
            }
            [] => unreachable!("i < len"),
        }
    }
    Ok(out)
}

/// Parses every value of a text array; with `safe`, a value that does not parse becomes NULL
/// (to find which one failed), otherwise it is an error.
pub fn parse_array(text: &dyn Array, safe: bool) -> std::result::Result<ArrayRef, ArrowError> {
    let text = cast(text, &DataType::Utf8)?;
    let text = text
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .ok_or_else(|| ArrowError::CastError("bytea input is not text".into()))?;
    let mut out = BinaryBuilder::with_capacity(text.len(), text.value_data().len() / 2);
    for value in text {
        match value.map(parse) {
            None => out.append_null(),
            Some(Ok(bytes)) => out.append_value(bytes),
            Some(Err(_)) if safe => out.append_null(),
            Some(Err(message)) => return Err(ArrowError::CastError(message)),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `parse_array` as a function a plan can call.
static BYTEA_IN: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
    Arc::new(create_udf(
        "bytea_in",
        vec![DataType::Utf8],
        DataType::Binary,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let array = match &args[0] {
                ColumnarValue::Array(array) => Arc::clone(array),
                ColumnarValue::Scalar(scalar) => scalar.to_array()?,
            };
            let parsed = parse_array(&array, false)?;
            Ok(match &args[0] {
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(
                    datafusion::scalar::ScalarValue::try_from_array(&parsed, 0)?,
                ),
                ColumnarValue::Array(_) => ColumnarValue::Array(parsed),
            })
        }),
    ))
});

/// Runs after type coercion, so implicit casts (text compared with a bytea column, a text value
/// inserted into one) are rewritten as well as written ones.
#[derive(Debug, Default)]
pub struct ByteaText;

impl AnalyzerRule for ByteaText {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        super::coercion::rewrite_expressions(plan, bytea_cast)
    }

    fn name(&self) -> &str {
        "postgres_bytea_text"
    }
}

fn bytea_cast(expr: Expr, schema: &DFSchema) -> Transformed<Expr> {
    let Expr::Cast(Cast { expr: input, field }) = &expr else {
        return Transformed::no(expr);
    };
    let data_type = field.data_type();
    let is_text = input
        .get_type(schema)
        .is_ok_and(|t| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View));
    if !is_text
        || !matches!(
            data_type,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        )
    {
        return Transformed::no(expr);
    }
    let text = input.as_ref().clone().cast_to(&DataType::Utf8, schema);
    let Ok(text) = text else {
        return Transformed::no(expr);
    };
    let parsed = Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(&BYTEA_IN), vec![text]));
    Transformed::yes(match data_type {
        DataType::Binary => parsed,
        other => Expr::Cast(Cast::new(Box::new(parsed), other.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_hex_and_escape_forms() {
        assert_eq!(parse("\\x00ff10").unwrap(), vec![0x00, 0xff, 0x10]);
        assert_eq!(
            parse("\\XDE AD\nbe ef").unwrap(),
            vec![0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(parse("\\x").unwrap(), Vec::<u8>::new());
        assert_eq!(parse("abc").unwrap(), b"abc".to_vec());
        assert_eq!(
            parse("a\\\\b\\001\\377").unwrap(),
            vec![b'a', b'\\', b'b', 1, 255]
        );
        assert_eq!(parse("héllo").unwrap(), "héllo".as_bytes().to_vec());
    }

    #[test]
    fn refuses_what_postgres_refuses() {
        assert_eq!(
            parse("\\x0g").unwrap_err(),
            "invalid hexadecimal digit: \"g\""
        );
        assert_eq!(
            parse("\\x012").unwrap_err(),
            "invalid hexadecimal data: odd number of digits"
        );
        for bad in ["\\", "a\\b", "\\400", "\\01"] {
            assert_eq!(
                parse(bad).unwrap_err(),
                "invalid input syntax for type bytea",
                "{bad}"
            );
        }
    }
}
