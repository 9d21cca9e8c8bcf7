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
    let ms = text_ms(&text, leading_field.as_ref()).ok_or_else(|| not_an_interval(expr))?;
    if !ms.is_finite() || ms < 0.0 || ms > i64::MAX as f64 {
        return Err(not_an_interval(expr));
    }
    Ok(ms.round() as i64)
}

/// Milliseconds of an interval's text as Postgres reads it: `5 m` and `5m` are minutes,
/// `1 hour 30 minutes`, `1h30m`, `00:05:00`, `1 day 02:00:00`; a number alone is in the
/// literal's field (`INTERVAL '5' SECOND`) or else seconds.
fn text_ms(text: &str, field: Option<&DateTimeField>) -> Option<f64> {
    let default_ms = match field {
        Some(field) => field_ms(field)?,
        None => 1_000.0,
    };
    let mut rest = text.trim();
    let mut total = 0.0;
    let mut parts = 0;
    while !rest.is_empty() {
        let number_len = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
            .map_or(rest.len(), |(i, _)| i);
        let (number, after) = rest.split_at(number_len);
        if let Some(clock) = after.strip_prefix(':') {
            // hh:mm[:ss[.fff]]
            let end = clock.find(char::is_whitespace).unwrap_or(clock.len());
            let (clock, after) = clock.split_at(end);
            let mut fields = clock.split(':');
            let minutes: f64 = fields.next()?.parse().ok()?;
            let seconds: f64 = fields.next().map_or(Ok(0.0), str::parse).ok()?;
            if fields.next().is_some() {
                return None;
            }
            total +=
                number.parse::<f64>().ok()? * 3_600_000.0 + minutes * 60_000.0 + seconds * 1_000.0;
            rest = after.trim_start();
        } else {
            let number: f64 = number.parse().ok()?;
            let after = after.trim_start();
            let unit_len = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            // A bare number is the whole interval, in the literal's field or seconds.
            let unit = match (unit, field) {
                ("", _) if parts == 0 && after.is_empty() => default_ms,
                ("", _) | (_, Some(_)) => return None,
                (unit, None) => unit_ms(unit)?,
            };
            total += number * unit;
            rest = after.trim_start();
        }
        parts += 1;
    }
    (parts > 0).then_some(total)
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

/// Postgres' unit words of fixed length (`m` is a minute, as in Postgres).
fn unit_ms(unit: &str) -> Option<f64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "us" | "usec" | "usecs" | "microsecond" | "microseconds" => 0.001,
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        "w" | "week" | "weeks" => 604_800_000.0,
        _ => return None,
    })
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
        // As Postgres reads them: `m` is a minute, `ms` a millisecond.
        assert_eq!(ms("INTERVAL '5 m'").unwrap(), 300_000);
        assert_eq!(ms("INTERVAL '5m'").unwrap(), 300_000);
        assert_eq!(ms("INTERVAL '250 ms'").unwrap(), 250);
        assert_eq!(ms("INTERVAL '1 hour 30 minutes'").unwrap(), 5_400_000);
        assert_eq!(ms("INTERVAL '1h30m'").unwrap(), 5_400_000);
        assert_eq!(ms("INTERVAL '00:05:00'").unwrap(), 300_000);
        assert_eq!(ms("INTERVAL '1 day 02:00:00'").unwrap(), 93_600_000);
        assert_eq!(ms("INTERVAL '5'").unwrap(), 5_000);
        assert!(ms("INTERVAL '5 parsecs'").is_err());
        assert!(ms("INTERVAL '5 minutes' SECOND").is_err());
        assert!(ms("INTERVAL '1 2'").is_err());
        assert!(ms("5").is_err());
    }
}
