//! Interval literals of DDL (`INTERVAL '5' SECOND`, `INTERVAL '1 minute'`) as milliseconds.
//!
//! Only fixed-length units are accepted: a watermark delay of "1 month" has no fixed length.

use sqlparser::ast::{DateTimeField, Expr, Interval, Value};

use crate::error::{Error, Result};

/// Milliseconds of an `INTERVAL` expression with a fixed length.
pub fn interval_ms(expr: &Expr) -> Result<i64> {
    let Expr::Interval(Interval {
        value,
        leading_field,
        last_field: None,
        ..
    }) = expr
    else {
        return Err(not_an_interval(expr));
    };
    let text = match value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            _ => return Err(not_an_interval(expr)),
        },
        _ => return Err(not_an_interval(expr)),
    };
    let mut words = text.split_whitespace();
    let (Some(number), unit) = (words.next(), words.next()) else {
        return Err(not_an_interval(expr));
    };
    if words.next().is_some() {
        return Err(not_an_interval(expr));
    }
    let number: f64 = number.parse().map_err(|_| not_an_interval(expr))?;
    let unit_ms = match (leading_field, unit) {
        (Some(field), None) => field_ms(field),
        (None, Some(unit)) => unit_word_ms(unit),
        (None, None) => Some(1_000.0),
        (Some(_), Some(_)) => None,
    }
    .ok_or_else(|| not_an_interval(expr))?;
    let ms = number * unit_ms;
    if !ms.is_finite() || ms < 0.0 || ms > i64::MAX as f64 {
        return Err(not_an_interval(expr));
    }
    Ok(ms.round() as i64)
}

fn field_ms(field: &DateTimeField) -> Option<f64> {
    match field {
        DateTimeField::Millisecond | DateTimeField::Milliseconds => Some(1.0),
        DateTimeField::Second | DateTimeField::Seconds => Some(1_000.0),
        DateTimeField::Minute | DateTimeField::Minutes => Some(60_000.0),
        DateTimeField::Hour | DateTimeField::Hours => Some(3_600_000.0),
        DateTimeField::Day | DateTimeField::Days => Some(86_400_000.0),
        _ => None,
    }
}

fn unit_word_ms(unit: &str) -> Option<f64> {
    match unit.to_ascii_lowercase().trim_end_matches('s') {
        "m" | "millisecond" | "msec" => Some(1.0),
        "second" | "sec" => Some(1_000.0),
        "minute" | "min" => Some(60_000.0),
        "hour" | "h" => Some(3_600_000.0),
        "day" | "d" => Some(86_400_000.0),
        _ => None,
    }
}

fn not_an_interval(expr: &Expr) -> Error {
    Error::unsupported(
        format!("interval {expr}"),
        Some("Write a fixed-length, non-negative interval such as INTERVAL '5' SECOND."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn ms(sql: &str) -> Result<i64> {
        let expr = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        interval_ms(&expr)
    }

    #[test]
    fn reads_fixed_intervals() {
        assert_eq!(ms("INTERVAL '5' SECOND").unwrap(), 5_000);
        assert_eq!(ms("INTERVAL '2 minutes'").unwrap(), 120_000);
        assert_eq!(ms("INTERVAL '1.5' SECOND").unwrap(), 1_500);
        assert!(ms("INTERVAL '1' MONTH").is_err());
        assert!(ms("5").is_err());
    }
}
