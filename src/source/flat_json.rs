//! The fast path of JSON decoding: flat objects of scalar columns, parsed by serde_json straight
//! into Arrow builders, one pass per record and no tape.
//!
//! It takes a chunk only when every record is one object whose values are plainly what their
//! columns expect: integers in range for integer columns, numbers for `double precision`,
//! strings for text, `true`/`false` for booleans, epoch-millisecond integers or timestamp text
//! for timestamps, `null` where the column allows it; keys it does not know are skipped. Anything
//! else — a string where a number goes, a number where text goes, a nested value in a column, a
//! key twice, a timestamp that does not parse — sends the whole chunk back to arrow-json's
//! general decoder (`decode.rs`), which decodes such input its own way and isolates the records
//! it rejects. So this path never rejects a record, and a chunk it decodes gives the rows the
//! general path gives.
//!
//! Floats must come out bit for bit as arrow-json's correctly rounded parse makes them.
//! serde_json (without its `float_roundtrip` feature, which would rebuild the whole Arrow stack)
//! rounds once, so correctly, when a literal has at most 15 digits and no exponent; a source with
//! `double precision` columns has each record checked for other float literals first
//! ([`plain_floats`]), and a record with one is declined.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};

use super::decode::{Record, parse_timestamp_micros};
use crate::catalog::types::ColumnDef;

/// Columns a chunk's rows are built in, one per declared column.
enum Column {
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Text(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Int16 => Column::Int16(Int16Builder::new()),
            DataType::Int32 => Column::Int32(Int32Builder::new()),
            DataType::Int64 => Column::Int64(Int64Builder::new()),
            DataType::Float64 => Column::Float64(Float64Builder::new()),
            DataType::Boolean => Column::Boolean(BooleanBuilder::new()),
            DataType::Utf8 => Column::Text(StringBuilder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Column::Timestamp(TimestampMicrosecondBuilder::new())
            }
            _ => return None,
        })
    }

    fn append_null(&mut self) {
        match self {
            Column::Int16(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Boolean(b) => b.append_null(),
            Column::Text(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
        }
    }

    /// Appends an integer, if the column takes it as it is.
    fn append_integer(&mut self, v: i128) -> Option<()> {
        match self {
            Column::Int16(b) => b.append_value(i16::try_from(v).ok()?),
            Column::Int32(b) => b.append_value(i32::try_from(v).ok()?),
            Column::Int64(b) => b.append_value(i64::try_from(v).ok()?),
            // Rounded to nearest, as parsing the digits would.
            Column::Float64(b) => b.append_value(v as f64),
            Column::Timestamp(b) => b.append_value(i64::try_from(v).ok()?.checked_mul(1_000)?),
            Column::Boolean(_) | Column::Text(_) => return None,
        }
        Some(())
    }

    fn finish(&mut self, data_type: &DataType) -> ArrayRef {
        match self {
            Column::Int16(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Text(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => {
                let zone = match data_type {
                    DataType::Timestamp(_, zone) => zone.clone(),
                    _ => None,
                };
                Arc::new(b.finish().with_timezone_opt(zone))
            }
        }
    }
}

/// Whether every number in `json` outside strings is one serde_json parses exactly or rounds
/// correctly: at most 19 digits without a fraction or exponent, at most 15 digits with a
/// fraction, no exponent.
fn plain_floats(json: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    let (mut digits, mut fraction) = (0usize, false);
    for &byte in json {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'0'..=b'9' => digits += 1,
            b'.' => fraction = true,
            b'e' | b'E' if digits > 0 => return false,
            _ => {
                if digits > 19 || (fraction && digits > 15) {
                    return false;
                }
                (digits, fraction) = (0, false);
                in_string = byte == b'"';
            }
        }
    }
    digits <= 19 && !(fraction && digits > 15)
}

/// Decodes chunks of flat JSON objects into the declared columns, or declines them.
pub struct FlatDecoder {
    schema: SchemaRef,
    names: Vec<String>,
    nullable: Vec<bool>,
    columns: Vec<Column>,
    /// Some column is `double precision`: records are checked with [`plain_floats`].
    floats: bool,
}

/// Columns one record can name, each at most once (a bit per column).
const COLUMNS_MAX: usize = 64;

impl FlatDecoder {
    /// `None` when a column's type has no fast path, or there are more than 64 columns.
    pub fn try_new(columns: &[ColumnDef]) -> Option<Self> {
        if columns.len() > COLUMNS_MAX {
            return None;
        }
        let builders = columns
            .iter()
            .map(|c| Column::new(&c.column_type.arrow))
            .collect::<Option<Vec<Column>>>()?;
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(&c.name, c.column_type.arrow.clone(), c.nullable))
            .collect();
        Some(FlatDecoder {
            schema: Arc::new(Schema::new(fields)),
            names: columns.iter().map(|c| c.name.clone()).collect(),
            nullable: columns.iter().map(|c| c.nullable).collect(),
            floats: builders.iter().any(|b| matches!(b, Column::Float64(_))),
            columns: builders,
        })
    }

    /// The rows of the records at `indices` (each with a payload) in the declared columns, or
    /// `None` when any of them is not plain.
    pub fn decode(&mut self, records: &[Record<'_>], indices: &[usize]) -> Option<RecordBatch> {
        let mut plain = true;
        for &i in indices {
            let payload = records[i].payload.unwrap_or_default();
            if self.floats && !plain_floats(payload) {
                plain = false;
                break;
            }
            let mut parser = serde_json::Deserializer::from_slice(payload);
            plain = RowSeed(self).deserialize(&mut parser).is_ok() && parser.end().is_ok();
            if !plain {
                break;
            }
        }
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .zip(self.schema.fields())
            .map(|(column, field)| column.finish(field.data_type()))
            .collect();
        match plain {
            true => RecordBatch::try_new(Arc::clone(&self.schema), arrays).ok(),
            false => None,
        }
    }

    /// The column named `key`, looked for first right after `after` (producers write keys in
    /// one order).
    fn column(&self, key: &str, after: usize) -> Option<usize> {
        let n = self.names.len();
        (0..n)
            .map(|k| (after + k) % n)
            .find(|&c| self.names[c] == key)
    }
}

/// A key, as the column it names (`None`: a key of no column), looked for from column `.1`.
struct KeySeed<'a>(&'a FlatDecoder, usize);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.column(key, self.1))
    }
}

/// One value, into its column.
struct ValueSeed<'a> {
    column: &'a mut Column,
    nullable: bool,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a plain value of the column's type")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.column
            .append_integer(i128::from(v))
            .ok_or_else(|| E::custom("not plain"))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.column
            .append_integer(i128::from(v))
            .ok_or_else(|| E::custom("not plain"))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        let Column::Float64(b) = self.column else {
            return Err(E::custom("not plain"));
        };
        b.append_value(v);
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        let Column::Boolean(b) = self.column else {
            return Err(E::custom("not plain"));
        };
        b.append_value(v);
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        match self.column {
            Column::Text(b) => b.append_value(v),
            Column::Timestamp(b) => {
                let micros = parse_timestamp_micros(v).map_err(|_| E::custom("not plain"))?;
                b.append_value(micros);
            }
            _ => return Err(E::custom("not plain")),
        }
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        if !self.nullable {
            return Err(E::custom("not plain"));
        }
        self.column.append_null();
        Ok(())
    }
}

/// One record, as a row of every column.
struct RowSeed<'a>(&'a mut FlatDecoder);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let decoder = self.0;
        let mut seen = 0u64;
        let mut next = 0;
        while let Some(found) = map.next_key_seed(KeySeed(decoder, next))? {
            let Some(c) = found else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if seen & (1 << c) != 0 {
                return Err(A::Error::custom("a key twice"));
            }
            seen |= 1 << c;
            next = c + 1;
            map.next_value_seed(ValueSeed {
                column: &mut decoder.columns[c],
                nullable: decoder.nullable[c],
            })?;
        }
        // Columns the record leaves out are NULL, where they may be.
        for (c, column) in decoder.columns.iter_mut().enumerate() {
            if seen & (1 << c) == 0 {
                if !decoder.nullable[c] {
                    return Err(A::Error::custom("a NOT NULL column missing"));
                }
                column.append_null();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
