//! Arrow values as Postgres 15 prints them in text format: what psql shows, what node-postgres,
//! pg8000 and every driver reading text results parse, and what `COPY … TO` writes.
//!
//! Postgres' output functions decide each spelling: timestamps carry a fraction only when it is
//! not zero and are shown in the session's `TimeZone` (`2024-01-01 00:00:31+00`); floats are the
//! shortest text that reads back to the same value (`2`, `0.1`, `1e+20`, `Infinity`), or `%g`
//! with fewer digits when `extra_float_digits` is below 1; intervals read `1 year 2 mons
//! 3 days 04:05:06`; arrays `{1,2,NULL}` with Postgres' quoting; records `(1,abc)`; bytea
//! `\x…`. Values are rendered a column at a time; the binary format stays arrow-pg's.

use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike, Utc};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, AsArray, GenericBinaryArray, GenericListArray, OffsetSizeTrait,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, Time32MillisecondType,
    Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormat};
use pgwire::types::format::FormatOptions;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The session settings that change how values are spelled.
#[derive(Debug, Clone)]
pub struct TextStyle {
    /// `TimeZone`: where `timestamptz` values are shown.
    zone: Tz,
    /// `extra_float_digits`: 1 or more is the shortest exact text.
    extra_float_digits: i8,
    /// `bytea_output = 'escape'` instead of hex.
    bytea_escape: bool,
}

impl Default for TextStyle {
    fn default() -> Self {
        TextStyle::new(&FormatOptions::default())
    }
}

impl TextStyle {
    pub fn new(options: &FormatOptions) -> Self {
        TextStyle {
            zone: zone(&options.time_zone),
            extra_float_digits: options.extra_float_digits,
            bytea_escape: options.bytea_output.eq_ignore_ascii_case("escape"),
        }
    }
}

/// A `TimeZone` setting as a zone; names Arrow does not know read as UTC (SET refuses them,
/// [`known_zone`]; a startup packet may still carry one).
fn zone(name: &str) -> Tz {
    known_zone(name).unwrap_or_else(|| Tz::from_str("+00:00").expect("a fixed offset parses"))
}

/// A `TimeZone` value as a zone: an IANA name (`Europe/Paris`, `UTC`) or a fixed offset.
pub fn known_zone(name: &str) -> Option<Tz> {
    match name.trim() {
        n if n.eq_ignore_ascii_case("utc") || n.eq_ignore_ascii_case("etc/utc") => {
            Tz::from_str("+00:00").ok()
        }
        n => Tz::from_str(n).ok(),
    }
}

/// The text of every value of `array`; `None` for NULL.
pub fn render(array: &dyn Array, style: &TextStyle) -> Result<Vec<Option<String>>, ArrowError> {
    let n = array.len();
    let each = |f: &mut dyn FnMut(usize) -> String| -> Vec<Option<String>> {
        (0..n).map(|i| array.is_valid(i).then(|| f(i))).collect()
    };
    Ok(match array.data_type() {
        DataType::Null => vec![None; n],
        DataType::Boolean => {
            let a = array.as_boolean();
            each(&mut |i| if a.value(i) { "t" } else { "f" }.to_string())
        }
        DataType::Int8 => each(&mut |i| array.as_primitive::<Int8Type>().value(i).to_string()),
        DataType::Int16 => each(&mut |i| array.as_primitive::<Int16Type>().value(i).to_string()),
        DataType::Int32 => each(&mut |i| array.as_primitive::<Int32Type>().value(i).to_string()),
        DataType::Int64 => each(&mut |i| array.as_primitive::<Int64Type>().value(i).to_string()),
        DataType::UInt8 => each(&mut |i| array.as_primitive::<UInt8Type>().value(i).to_string()),
        DataType::UInt16 => each(&mut |i| array.as_primitive::<UInt16Type>().value(i).to_string()),
        DataType::UInt32 => each(&mut |i| array.as_primitive::<UInt32Type>().value(i).to_string()),
        DataType::UInt64 => each(&mut |i| array.as_primitive::<UInt64Type>().value(i).to_string()),
        DataType::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            each(&mut |i| float4(a.value(i).to_f32(), style.extra_float_digits))
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            each(&mut |i| float4(a.value(i), style.extra_float_digits))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            each(&mut |i| float8(a.value(i), style.extra_float_digits))
        }
        DataType::Decimal128(..) => {
            let a = array.as_primitive::<Decimal128Type>();
            each(&mut |i| a.value_as_string(i))
        }
        DataType::Decimal256(..) => {
            let a = array.as_primitive::<Decimal256Type>();
            each(&mut |i| a.value_as_string(i))
        }
        DataType::Utf8 => each(&mut |i| array.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => each(&mut |i| array.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => each(&mut |i| array.as_string_view().value(i).to_string()),
        DataType::Binary => binary(array.as_binary::<i32>(), style),
        DataType::LargeBinary => binary(array.as_binary::<i64>(), style),
        DataType::BinaryView => {
            let a = array.as_binary_view();
            each(&mut |i| bytea(a.value(i), style))
        }
        DataType::FixedSizeBinary(_) => {
            let a = array.as_fixed_size_binary();
            each(&mut |i| bytea(a.value(i), style))
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            each(&mut |i| date(i64::from(a.value(i))))
        }
        DataType::Date64 => {
            let a = array.as_primitive::<Date64Type>();
            each(&mut |i| date(a.value(i).div_euclid(86_400_000)))
        }
        DataType::Time32(TimeUnit::Second) => {
            let a = array.as_primitive::<Time32SecondType>();
            each(&mut |i| time(i64::from(a.value(i)) * 1_000_000))
        }
        DataType::Time32(_) => {
            let a = array.as_primitive::<Time32MillisecondType>();
            each(&mut |i| time(i64::from(a.value(i)) * 1_000))
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            let a = array.as_primitive::<Time64NanosecondType>();
            each(&mut |i| time(round_micros(a.value(i), 1_000)))
        }
        DataType::Time64(_) => {
            let a = array.as_primitive::<Time64MicrosecondType>();
            each(&mut |i| time(a.value(i)))
        }
        DataType::Timestamp(unit, zone) => {
            let micros = micros_of(array, unit)?;
            let shown = zone.as_ref().map(|_| &style.zone);
            each(&mut |i| timestamp(micros[i], shown))
        }
        DataType::Duration(unit) => {
            let micros = durations(array, unit);
            each(&mut |i| {
                let m = micros[i];
                interval(0, m / MICROS_PER_DAY, m % MICROS_PER_DAY)
            })
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            let a = array.as_primitive::<IntervalYearMonthType>();
            each(&mut |i| interval(a.value(i), 0, 0))
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let a = array.as_primitive::<IntervalDayTimeType>();
            each(&mut |i| {
                let v = a.value(i);
                interval(0, i64::from(v.days), i64::from(v.milliseconds) * 1_000)
            })
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let a = array.as_primitive::<IntervalMonthDayNanoType>();
            each(&mut |i| {
                let v = a.value(i);
                interval(
                    v.months,
                    i64::from(v.days),
                    round_micros(v.nanoseconds, 1_000),
                )
            })
        }
        DataType::List(_) => list(array.as_list::<i32>(), style)?,
        DataType::LargeList(_) => list(array.as_list::<i64>(), style)?,
        DataType::FixedSizeList(..) => {
            let a = array.as_fixed_size_list();
            let values = render(a.values().as_ref(), style)?;
            let nested = matches!(a.value_type(), DataType::List(_) | DataType::LargeList(_));
            let size = a.value_length() as usize;
            each(&mut |i| array_text(&values[i * size..(i + 1) * size], nested))
        }
        DataType::Struct(_) => {
            let a = array.as_struct();
            let columns = a
                .columns()
                .iter()
                .map(|c| render(c.as_ref(), style))
                .collect::<Result<Vec<_>, _>>()?;
            each(&mut |i| record_text(columns.iter().map(|c| c[i].as_deref())))
        }
        DataType::Dictionary(_, value) => render(cast(array, value)?.as_ref(), style)?,
        _ => {
            let formatter = ArrayFormatter::try_new(array, &ArrowFormat::default())?;
            each(&mut |i| formatter.value(i).to_string())
        }
    })
}

fn binary<O: OffsetSizeTrait>(a: &GenericBinaryArray<O>, style: &TextStyle) -> Vec<Option<String>> {
    a.iter().map(|v| v.map(|v| bytea(v, style))).collect()
}

fn list<O: OffsetSizeTrait>(
    a: &GenericListArray<O>,
    style: &TextStyle,
) -> Result<Vec<Option<String>>, ArrowError> {
    let values = render(a.values().as_ref(), style)?;
    let nested = matches!(a.value_type(), DataType::List(_) | DataType::LargeList(_));
    let offsets = a.value_offsets();
    Ok((0..a.len())
        .map(|i| {
            a.is_valid(i).then(|| {
                let (from, to) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
                array_text(&values[from..to], nested)
            })
        })
        .collect())
}

/// `{a,b,NULL}`; elements quoted as Postgres' `array_out` does. Nested arrays go in as they are.
fn array_text(elements: &[Option<String>], nested: bool) -> String {
    let mut out = String::from("{");
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match element {
            None => out.push_str("NULL"),
            Some(e) if nested => out.push_str(e),
            Some(e) => {
                let quote = e.is_empty()
                    || e.eq_ignore_ascii_case("null")
                    || e.chars()
                        .any(|c| matches!(c, '"' | '\\' | '{' | '}' | ',') || is_pg_space(c));
                quoted(&mut out, e, quote, '\\');
            }
        }
    }
    out.push('}');
    out
}

/// `(a,b,)`; fields quoted as Postgres' `record_out` does (NULL is nothing at all).
fn record_text<'a>(fields: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut out = String::from("(");
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if let Some(f) = field {
            let quote = f.is_empty()
                || f.chars()
                    .any(|c| matches!(c, '"' | '\\' | '(' | ')' | ',') || is_pg_space(c));
            quoted(&mut out, f, quote, '"');
        }
    }
    out.push(')');
    out
}

/// `value`, in double quotes if `quote`, with `"` and `\` escaped by `escape` inside them.
fn quoted(out: &mut String, value: &str, quote: bool, escape: char) {
    if !quote {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push(if escape == '"' { c } else { escape });
        }
        out.push(c);
    }
    out.push('"');
}

/// C's `isspace`, which Postgres' quoting tests.
fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}')
}

fn bytea(bytes: &[u8], style: &TextStyle) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    if style.bytea_escape {
        for &b in bytes {
            match b {
                b'\\' => out.push_str("\\\\"),
                0x20..=0x7e => out.push(b as char),
                _ => {
                    let _ = write!(out, "\\{b:03o}");
                }
            }
        }
    } else {
        out.push_str("\\x");
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
    }
    out
}

/// float8 as Postgres prints it: the shortest exact digits, fixed-point for decimal exponents
/// from -4 to 14, else `1e+20`; with `extra_float_digits` < 1, `%g` of 15 + that many digits.
pub fn float8(v: f64, extra_float_digits: i8) -> String {
    float_text(
        v,
        extra_float_digits,
        15,
        || format!("{v:e}"),
        |digits| format!("{v:.digits$e}"),
    )
}

/// float4 as Postgres prints it: as [`float8`], with 6 digits where float8 has 15.
pub fn float4(v: f32, extra_float_digits: i8) -> String {
    float_text(
        f64::from(v),
        extra_float_digits,
        6,
        || format!("{v:e}"),
        |digits| format!("{v:.digits$e}"),
    )
}

fn float_text(
    v: f64,
    extra_float_digits: i8,
    type_digits: i32,
    shortest: impl Fn() -> String,
    rounded: impl Fn(usize) -> String,
) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Scientific text from Rust ("-1.25e-7"), then placed as Postgres places it.
    let (scientific, fixed_below) = match extra_float_digits {
        e if e > 0 => (shortest(), type_digits),
        e => {
            let digits = (type_digits + i32::from(e)).max(1);
            (rounded(digits as usize - 1), digits)
        }
    };
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.trim_end_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if (-4..fixed_below).contains(&exponent) {
        if exponent < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
            out.push_str(digits);
        } else {
            let whole = exponent as usize + 1;
            if digits.len() <= whole {
                out.push_str(digits);
                out.extend(std::iter::repeat_n('0', whole - digits.len()));
            } else {
                out.push_str(&digits[..whole]);
                out.push('.');
                out.push_str(&digits[whole..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exponent.abs()));
    }
    out
}

/// Nanoseconds (or another unit `per` times finer) to microseconds, rounded half away from
/// zero as Postgres rounds input beyond microseconds.
fn round_micros(value: i64, per: i64) -> i64 {
    let (quotient, rest) = (value / per, value % per);
    match rest.abs() * 2 >= per {
        true => quotient + value.signum(),
        false => quotient,
    }
}

fn micros_of(array: &dyn Array, unit: &TimeUnit) -> Result<Vec<i64>, ArrowError> {
    let values = cast(array, &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>().values();
    Ok(match unit {
        TimeUnit::Second => values.iter().map(|v| v.saturating_mul(1_000_000)).collect(),
        TimeUnit::Millisecond => values.iter().map(|v| v.saturating_mul(1_000)).collect(),
        TimeUnit::Microsecond => values.to_vec(),
        TimeUnit::Nanosecond => values.iter().map(|v| round_micros(*v, 1_000)).collect(),
    })
}

fn durations(array: &dyn Array, unit: &TimeUnit) -> Vec<i64> {
    match unit {
        TimeUnit::Second => array
            .as_primitive::<DurationSecondType>()
            .values()
            .iter()
            .map(|v| v.saturating_mul(1_000_000))
            .collect(),
        TimeUnit::Millisecond => array
            .as_primitive::<DurationMillisecondType>()
            .values()
            .iter()
            .map(|v| v.saturating_mul(1_000))
            .collect(),
        TimeUnit::Microsecond => array
            .as_primitive::<DurationMicrosecondType>()
            .values()
            .to_vec(),
        TimeUnit::Nanosecond => array
            .as_primitive::<DurationNanosecondType>()
            .values()
            .iter()
            .map(|v| round_micros(*v, 1_000))
            .collect(),
    }
}

/// `YYYY-MM-DD`, with ` BC` for years before 1.
fn date(days: i64) -> String {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    match i32::try_from(days)
        .ok()
        .and_then(|d| epoch.checked_add_signed(chrono::Duration::days(i64::from(d))))
    {
        Some(date) => {
            let (year, era) = era(date.year());
            format!("{year:04}-{:02}-{:02}{era}", date.month(), date.day())
        }
        None => format!("{days} days after 1970-01-01"),
    }
}

/// Postgres counts years before 1 as BC: year 0 is 1 BC.
fn era(year: i32) -> (i32, &'static str) {
    match year <= 0 {
        true => (1 - year, " BC"),
        false => (year, ""),
    }
}

/// `HH:MM:SS` and a fraction only when it is not zero, trailing zeros trimmed.
fn clock(out: &mut String, hours: i64, minutes: i64, seconds: i64, micros: i64) {
    out.push_str(&format!("{hours:02}:{minutes:02}:{seconds:02}"));
    if micros != 0 {
        let fraction = format!("{micros:06}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
}

fn time(micros: i64) -> String {
    let mut out = String::new();
    let seconds = micros.div_euclid(1_000_000);
    clock(
        &mut out,
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        micros.rem_euclid(1_000_000),
    );
    out
}

/// A timestamp; with `zone`, a timestamptz shown in that zone with its offset (`+00`,
/// `+05:30`), as Postgres shows it in the session's `TimeZone`.
fn timestamp(micros: i64, zone: Option<&Tz>) -> String {
    let Some(utc) = DateTime::<Utc>::from_timestamp_micros(micros) else {
        return format!("{micros} microseconds after 1970-01-01");
    };
    let (local, offset) = match zone {
        Some(zone) => {
            let offset = zone.offset_from_utc_datetime(&utc.naive_utc()).fix();
            (utc.naive_utc() + offset, Some(offset.local_minus_utc()))
        }
        None => (utc.naive_utc(), None),
    };
    let (year, era) = era(local.year());
    let mut out = format!("{year:04}-{:02}-{:02} ", local.month(), local.day());
    clock(
        &mut out,
        i64::from(local.hour()),
        i64::from(local.minute()),
        i64::from(local.second()),
        i64::from(local.nanosecond() / 1_000),
    );
    if let Some(offset) = offset {
        let (sign, offset) = (if offset < 0 { '-' } else { '+' }, offset.abs());
        out.push_str(&format!("{sign}{:02}", offset / 3600));
        if offset % 3600 != 0 {
            out.push_str(&format!(":{:02}", offset / 60 % 60));
        }
        if offset % 60 != 0 {
            out.push_str(&format!(":{:02}", offset % 60));
        }
    }
    out.push_str(era);
    out
}

/// An interval in Postgres' default `IntervalStyle` (`postgres`): `1 year 2 mons -3 days
/// +04:05:06.5`, `00:00:00` when zero.
fn interval(months: i32, days: i64, micros: i64) -> String {
    let mut out = String::new();
    let mut negative_before = false;
    for (value, unit) in [
        (i64::from(months / 12), "year"),
        (i64::from(months % 12), "mon"),
        (days, "day"),
    ] {
        if value == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        if negative_before && value > 0 {
            out.push('+');
        }
        let plural = if value == 1 { "" } else { "s" };
        out.push_str(&format!("{value} {unit}{plural}"));
        negative_before = value < 0;
    }
    if out.is_empty() || micros != 0 {
        if !out.is_empty() {
            out.push(' ');
        }
        if micros < 0 {
            out.push('-');
        } else if negative_before {
            out.push('+');
        }
        let m = micros.unsigned_abs();
        let seconds = (m / 1_000_000) as i64;
        clock(
            &mut out,
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
            (m % 1_000_000) as i64,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, Float64Array, Int32Array, ListArray, StringArray, StructArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Int32Type};

    use super::*;

    #[test]
    fn floats_as_postgres_prints_them() {
        for (v, text) in [
            (2.0, "2"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (1e15, "1e+15"),
            (123456789012345.0, "123456789012345"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (1e100, "1e+100"),
            (-0.0, "-0"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(float8(v, 1), text, "{v}");
        }
        assert_eq!(float8(1.0 / 3.0, 0), "0.333333333333333");
        assert_eq!(float8(1e15, 0), "1e+15");
        assert_eq!(float8(2.5, -15), "2");
        assert_eq!(float4(0.1, 1), "0.1");
        assert_eq!(float4(1e6, 1), "1e+06");
        assert_eq!(float4(123456.0, 1), "123456");
        assert_eq!(float4(1.0 / 3.0, 0), "0.333333");
    }

    #[test]
    fn times_and_intervals_as_postgres_prints_them() {
        let paris = zone("Europe/Paris");
        let utc = zone("UTC");
        let t = 1_704_067_231_000_000; // 2024-01-01 00:00:31
        assert_eq!(timestamp(t, None), "2024-01-01 00:00:31");
        assert_eq!(timestamp(t + 500_000, None), "2024-01-01 00:00:31.5");
        assert_eq!(timestamp(t, Some(&utc)), "2024-01-01 00:00:31+00");
        assert_eq!(timestamp(t, Some(&paris)), "2024-01-01 01:00:31+01");
        assert_eq!(
            timestamp(t, Some(&zone("Asia/Kolkata"))),
            "2024-01-01 05:30:31+05:30"
        );
        // Year 0 is 1 BC.
        assert_eq!(
            timestamp(-62_167_219_200_000_000, None),
            "0001-01-01 00:00:00 BC"
        );
        assert_eq!(
            timestamp(-62_167_219_200_000_000 - 1, None),
            "0002-12-31 23:59:59.999999 BC"
        );
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(time(5_400_000_000), "01:30:00");
        assert_eq!(interval(0, 0, 5_400_000_000), "01:30:00");
        assert_eq!(interval(0, 1, 7_200_000_000), "1 day 02:00:00");
        assert_eq!(interval(14, 0, 0), "1 year 2 mons");
        assert_eq!(interval(0, 0, 0), "00:00:00");
        assert_eq!(interval(0, -1, 0), "-1 days");
        assert_eq!(interval(0, -1, 3_600_000_000), "-1 days +01:00:00");
        assert_eq!(interval(0, 0, -1_500_000), "-00:00:01.5");
        assert_eq!(interval(0, 3, 100 * 3_600_000_000), "3 days 100:00:00");
        assert_eq!(round_micros(1_500, 1_000), 2);
        assert_eq!(round_micros(-1_500, 1_000), -2);
    }

    #[test]
    fn arrays_and_records_quote_as_postgres_does() {
        let style = TextStyle::default();
        let ints: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2), None]),
            Some(vec![]),
            None,
        ]));
        assert_eq!(
            render(ints.as_ref(), &style).unwrap(),
            [Some("{1,2,NULL}".to_string()), Some("{}".to_string()), None]
        );
        let texts = StringArray::from(vec![
            Some("a b"),
            Some(""),
            Some("NULL"),
            Some("q\"\\"),
            Some("x"),
        ]);
        let field = Arc::new(Field::new("item", DataType::Utf8, true));
        let list = ListArray::new(
            Arc::clone(&field),
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([5]),
            Arc::new(texts.clone()),
            None,
        );
        assert_eq!(
            render(&list, &style).unwrap()[0].as_deref(),
            Some(r#"{"a b","","NULL","q\"\\",x}"#)
        );
        let record = StructArray::from(vec![
            (
                Arc::new(Field::new("a", DataType::Int32, true)),
                Arc::new(Int32Array::from(vec![Some(1)])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("b", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec![Some("x \"y\"")])) as ArrayRef,
            ),
        ]);
        assert_eq!(
            render(&record, &style).unwrap()[0].as_deref(),
            Some(r#"(1,"x ""y""")"#)
        );
        let stamps =
            TimestampMicrosecondArray::from(vec![1_704_067_231_000_000]).with_timezone("+00:00");
        assert_eq!(
            render(&stamps, &style).unwrap()[0].as_deref(),
            Some("2024-01-01 00:00:31+00")
        );
        let floats = Float64Array::from(vec![2.0]);
        assert_eq!(render(&floats, &style).unwrap()[0].as_deref(), Some("2"));
    }
}
