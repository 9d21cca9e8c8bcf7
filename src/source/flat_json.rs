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
//! Floats must come out bit for bit as arrow-json's correctly rounded parse makes them, and
//! serde_json (without its `float_roundtrip` feature, which would rebuild the whole Arrow stack)
//! may be a bit off for long literals. So a `double precision` value that is not an integer is
//! parsed again from its text by the standard library (correctly rounded): the text follows its
//! key, which serde_json hands over as a slice of the record (a key with escapes, which it
//! copies, declines the chunk when its value is such a float).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};

use super::decode::{Record, parse_timestamp_micros};
use crate::catalog::types::ColumnDef;

/// Bytes of text a row's value is given room for at first.
const TEXT_BYTES: usize = 16;

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
    /// An empty column of `rows` rows' room.
    fn new(data_type: &DataType, rows: usize) -> Option<Self> {
        Some(match data_type {
            DataType::Int16 => Column::Int16(Int16Builder::with_capacity(rows)),
            DataType::Int32 => Column::Int32(Int32Builder::with_capacity(rows)),
            DataType::Int64 => Column::Int64(Int64Builder::with_capacity(rows)),
            DataType::Float64 => Column::Float64(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Column::Boolean(BooleanBuilder::with_capacity(rows)),
            DataType::Utf8 => Column::Text(StringBuilder::with_capacity(rows, rows * TEXT_BYTES)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Column::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows))
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

/// The text of the number at the start of `json` (after its key's closing quote, spaces and
/// the colon).
fn number_text(json: &[u8]) -> Option<&str> {
    let value = json
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let end = value
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .unwrap_or(value.len());
    std::str::from_utf8(&value[..end]).ok()
}

/// A key's length and first 8 bytes, which tell most keys apart without a comparison call.
fn fingerprint(key: &[u8]) -> (usize, u64) {
    let mut head = [0u8; 8];
    let n = key.len().min(8);
    head[..n].copy_from_slice(&key[..n]);
    (key.len(), u64::from_le_bytes(head))
}

/// Decodes chunks of flat JSON objects into the declared columns, or declines them.
pub struct FlatDecoder {
    schema: SchemaRef,
    names: Vec<String>,
    nullable: Vec<bool>,
    columns: Vec<Column>,
    /// Each name's [`fingerprint`].
    fingerprints: Vec<(usize, u64)>,
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
            .map(|c| Column::new(&c.column_type.arrow, 0))
            .collect::<Option<Vec<Column>>>()?;
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(&c.name, c.column_type.arrow.clone(), c.nullable))
            .collect();
        Some(FlatDecoder {
            schema: Arc::new(Schema::new(fields)),
            names: columns.iter().map(|c| c.name.clone()).collect(),
            nullable: columns.iter().map(|c| c.nullable).collect(),
            fingerprints: columns
                .iter()
                .map(|c| fingerprint(c.name.as_bytes()))
                .collect(),
            columns: builders,
        })
    }

    /// The rows of the records at `indices` (each with a payload) in the declared columns, or
    /// `None` when any of them is not plain.
    pub fn decode(&mut self, records: &[Record<'_>], indices: &[usize]) -> Option<RecordBatch> {
        // Room for the chunk, so no column grows while it is read.
        for (column, field) in self.columns.iter_mut().zip(self.schema.fields()) {
            if let Some(sized) = Column::new(field.data_type(), indices.len()) {
                *column = sized;
            }
        }
        let mut plain = true;
        for &i in indices {
            let payload = records[i].payload.unwrap_or_default();
            let mut parser = serde_json::Deserializer::from_slice(payload);
            let row = RowSeed {
                decoder: self,
                json: payload,
            };
            plain = row.deserialize(&mut parser).is_ok() && parser.end().is_ok();
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
        let print = fingerprint(key.as_bytes());
        (0..n)
            .map(|k| (after + k) % n)
            .find(|&c| self.fingerprints[c] == print && (key.len() <= 8 || self.names[c] == key))
    }
}

/// A key, as the column it names (`None`: a key of no column), looked for from column `after`,
/// and where in the record `json` it ends (`None` for a key with escapes, which serde_json
/// copies).
struct KeySeed<'a> {
    decoder: &'a FlatDecoder,
    after: usize,
    json: &'a [u8],
}

type Key = Option<(usize, Option<usize>)>;

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Key, E> {
        let end = (key.as_ptr() as usize + key.len()).checked_sub(self.json.as_ptr() as usize);
        let end = end.filter(|&e| e < self.json.len());
        Ok(self.decoder.column(key, self.after).map(|c| (c, end)))
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(self.decoder.column(key, self.after).map(|c| (c, None)))
    }
}

/// One value, into its column.
struct ValueSeed<'a> {
    column: &'a mut Column,
    nullable: bool,
}

/// Whether the value was a number with a fraction or an exponent (whose text is parsed again).
type Fractional = bool;

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Fractional;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Fractional, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Fractional;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a plain value of the column's type")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Fractional, E> {
        self.column
            .append_integer(i128::from(v))
            .ok_or_else(|| E::custom("not plain"))?;
        Ok(false)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Fractional, E> {
        self.column
            .append_integer(i128::from(v))
            .ok_or_else(|| E::custom("not plain"))?;
        Ok(false)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Fractional, E> {
        let Column::Float64(b) = self.column else {
            return Err(E::custom("not plain"));
        };
        b.append_value(v);
        Ok(true)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Fractional, E> {
        let Column::Boolean(b) = self.column else {
            return Err(E::custom("not plain"));
        };
        b.append_value(v);
        Ok(false)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Fractional, E> {
        match self.column {
            Column::Text(b) => b.append_value(v),
            Column::Timestamp(b) => {
                let micros = parse_timestamp_micros(v).map_err(|_| E::custom("not plain"))?;
                b.append_value(micros);
            }
            _ => return Err(E::custom("not plain")),
        }
        Ok(false)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Fractional, E> {
        if !self.nullable {
            return Err(E::custom("not plain"));
        }
        self.column.append_null();
        Ok(false)
    }
}

/// One record (`json`), as a row of every column.
struct RowSeed<'a> {
    decoder: &'a mut FlatDecoder,
    json: &'a [u8],
}

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
        let (decoder, json) = (self.decoder, self.json);
        let mut seen = 0u64;
        let mut next = 0;
        loop {
            let key = KeySeed {
                decoder,
                after: next,
                json,
            };
            let Some(found) = map.next_key_seed(key)? else {
                break;
            };
            let Some((c, key_end)) = found else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if seen & (1 << c) != 0 {
                return Err(A::Error::custom("a key twice"));
            }
            seen |= 1 << c;
            next = c + 1;
            let value = ValueSeed {
                column: &mut decoder.columns[c],
                nullable: decoder.nullable[c],
            };
            // A float is parsed again from its text, after its key's closing quote.
            if map.next_value_seed(value)? {
                let text = key_end.and_then(|end| number_text(&json[end + 1..]));
                let parsed = text.and_then(|t| t.parse::<f64>().ok());
                let Column::Float64(b) = &mut decoder.columns[c] else {
                    return Err(A::Error::custom("a float outside a double column"));
                };
                match (parsed, b.values_slice_mut().last_mut()) {
                    (Some(parsed), Some(last)) => *last = parsed,
                    _ => return Err(A::Error::custom("a float whose text is not found")),
                }
            }
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
