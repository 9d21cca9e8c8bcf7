//! The fast path of JSON decoding: flat objects of scalar columns, scanned byte by byte straight
//! into Arrow builders, one pass per record, no tape and no per-value dispatch through serde.
//!
//! It takes a chunk only when every record is one object whose values are plainly what their
//! columns expect: integers in range for integer columns, numbers for `double precision`,
//! strings for text, `true`/`false` for booleans, epoch-millisecond integers or timestamp text
//! for timestamps, `null` where the column allows it; keys it does not know are skipped (their
//! values checked to be JSON). Anything else — a string where a number goes, a number where text
//! goes, a nested value in a column, a key twice, a timestamp that does not parse, a lone
//! surrogate, nesting deeper than [`DEPTH_MAX`] under an unknown key, bytes that are not JSON —
//! sends the whole chunk back to arrow-json's general decoder (`decode.rs`), which decodes such
//! input its own way and isolates the records it rejects. So this path never rejects a record,
//! and a chunk it decodes gives the rows the general path gives (a fuzz target in `decode.rs`
//! holds the two to that).
//!
//! The scanner is strict RFC 8259 — numbers by the grammar, strings free of control characters
//! and of invalid UTF-8 — so it accepts nothing arrow-json would refuse. Floats are parsed from
//! their text by the standard library, correctly rounded as arrow-json's parse is.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, RecordBatch, StringArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::decode::{Record, parse_timestamp_micros};
use crate::catalog::types::ColumnDef;

/// Bytes of text a row's value is given room for at first.
const TEXT_BYTES: usize = 16;

/// Nesting an unknown key's value may have before the chunk goes the general way.
const DEPTH_MAX: usize = 32;

/// Columns a chunk's rows are built in, one per declared column.
enum Column {
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    /// Bytes, checked to be UTF-8 once per chunk when the column is finished.
    Text(BinaryBuilder),
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
            DataType::Utf8 => Column::Text(BinaryBuilder::with_capacity(rows, rows * TEXT_BYTES)),
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

    /// Appends the value at `json`'s cursor, if it is plainly of the column's type.
    fn append(&mut self, json: &mut Cursor<'_>, scratch: &mut Vec<u8>) -> Option<()> {
        match self {
            Column::Int16(b) => b.append_value(i16::try_from(json.integer()?).ok()?),
            Column::Int32(b) => b.append_value(i32::try_from(json.integer()?).ok()?),
            Column::Int64(b) => b.append_value(json.integer()?),
            Column::Float64(b) => b.append_value(json.double()?),
            Column::Boolean(b) => b.append_value(json.boolean()?),
            Column::Text(b) => {
                json.eat(b'"')?;
                b.append_value(json.string(scratch)?);
            }
            Column::Timestamp(b) => match json.eat(b'"') {
                Some(()) => b.append_value(parse_timestamp_micros(json.text(scratch)?).ok()?),
                None => b.append_value(json.integer()?.checked_mul(1_000)?),
            },
        }
        Some(())
    }

    /// The column's array; `None` if text in it is not UTF-8.
    fn finish(&mut self, data_type: &DataType) -> Option<ArrayRef> {
        Some(match self {
            Column::Int16(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Text(b) => Arc::new(StringArray::try_from_binary(b.finish()).ok()?),
            Column::Timestamp(b) => {
                let zone = match data_type {
                    DataType::Timestamp(_, zone) => zone.clone(),
                    _ => None,
                };
                Arc::new(b.finish().with_timezone_opt(zone))
            }
        })
    }
}

/// What a byte inside a string is to the scanner.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StringByte {
    Plain,
    Quote,
    Escape,
    /// A control character, which JSON strings may not hold raw.
    Control,
}

const STRING_BYTES: [StringByte; 256] = {
    let mut table = [StringByte::Plain; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = StringByte::Control;
        b += 1;
    }
    table[b'"' as usize] = StringByte::Quote;
    table[b'\\' as usize] = StringByte::Escape;
    table
};

/// Powers of ten a double holds exactly.
const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A number's text (by JSON's grammar) of at most 15 digits and no exponent, such as prices:
/// its digits and its power of ten are both exact doubles, so one division rounds the quotient
/// correctly (Clinger's fast path), as the full parse would, at a fraction of its cost.
fn short_decimal(text: &[u8]) -> Option<f64> {
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mut mantissa, mut count, mut point) = (0u64, 0usize, None);
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
                if count > 15 {
                    return None;
                }
            }
            b'.' => point = Some(count),
            _ => return None,
        }
    }
    let value = mantissa as f64 / POWERS_OF_TEN[count - point.unwrap_or(count)];
    Some(if negative { -value } else { value })
}

/// A position in one record. Every method returns `None` for input that is not plain, and
/// leaves the position anywhere then (the chunk is declined). Strings come out as bytes: text
/// columns are checked to be UTF-8 once per chunk, and whoever takes a string otherwise checks
/// it.
struct Cursor<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.json.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_spaces(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.json[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    fn boolean(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").then_some(true),
            _ => self.literal(b"false").then_some(false),
        }
    }

    /// Digits of a number's integer part: one, or more not starting with 0.
    fn integer_digits(&mut self) -> Option<()> {
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    /// A number without fraction or exponent that fits an `i64`.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.eat(b'-').is_some();
        let first = self.peek().filter(u8::is_ascii_digit)?;
        self.at += 1;
        // Summed negative, so that i64::MIN fits.
        let mut value = -i64::from(first - b'0');
        if first != b'0' {
            while let Some(digit @ b'0'..=b'9') = self.peek() {
                value = value
                    .checked_mul(10)?
                    .checked_sub(i64::from(digit - b'0'))?;
                self.at += 1;
            }
        }
        if let Some(b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            return None;
        }
        match negative {
            true => Some(value),
            false => value.checked_neg(),
        }
    }

    /// Moves over a number by JSON's grammar and returns its text.
    fn number(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let _ = self.eat(b'-');
        self.integer_digits()?;
        if self.eat(b'.').is_some() {
            self.peek().filter(u8::is_ascii_digit)?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.peek().filter(u8::is_ascii_digit)?;
            self.digits();
        }
        self.json.get(start..self.at)
    }

    /// A finite number, correctly rounded.
    fn double(&mut self) -> Option<f64> {
        let text = self.number()?;
        short_decimal(text).or_else(|| {
            let text = std::str::from_utf8(text).ok()?;
            text.parse::<f64>().ok().filter(|v| v.is_finite())
        })
    }

    /// The rest of a string whose opening quote was eaten, unescaped (into `scratch` if it has
    /// escapes).
    fn string<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Option<&'s [u8]>
    where
        'a: 's,
    {
        let start = self.at;
        loop {
            match STRING_BYTES[usize::from(*self.json.get(self.at)?)] {
                StringByte::Plain => self.at += 1,
                StringByte::Quote => break,
                StringByte::Escape => return self.escaped(start, scratch),
                StringByte::Control => return None,
            }
        }
        self.at += 1;
        self.json.get(start..self.at - 1)
    }

    /// The rest of a string, as [`Self::string`], checked to be UTF-8.
    fn text<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Option<&'s str>
    where
        'a: 's,
    {
        std::str::from_utf8(self.string(scratch)?).ok()
    }

    /// The rest of a string from `start`, which has an escape at the cursor.
    fn escaped<'s>(&mut self, start: usize, scratch: &'s mut Vec<u8>) -> Option<&'s [u8]> {
        scratch.clear();
        scratch.extend_from_slice(&self.json[start..self.at]);
        loop {
            let from = self.at;
            loop {
                match STRING_BYTES[usize::from(*self.json.get(self.at)?)] {
                    StringByte::Plain => self.at += 1,
                    StringByte::Control => return None,
                    StringByte::Quote | StringByte::Escape => break,
                }
            }
            scratch.extend_from_slice(&self.json[from..self.at]);
            if self.eat(b'"').is_some() {
                return Some(scratch);
            }
            self.at += 1;
            let unescaped = match self.peek()? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    self.at += 1;
                    let unit = self.hex4()?;
                    let code = match unit {
                        0xD800..=0xDBFF => {
                            // Only a pair makes a character; a lone half is declined.
                            self.eat(b'\\')?;
                            self.eat(b'u')?;
                            let low = self.hex4().filter(|l| (0xDC00..=0xDFFF).contains(l))?;
                            0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return None,
                        _ => unit,
                    };
                    let c = char::from_u32(code)?;
                    scratch.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    continue;
                }
                _ => return None,
            };
            self.at += 1;
            scratch.extend_from_slice(unescaped.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.json.get(self.at..self.at + 4)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + char::from(d).to_digit(16)?;
        }
        self.at += 4;
        Some(value)
    }

    /// Moves over any JSON value, nested at most `DEPTH_MAX` deep.
    fn skip_value(&mut self, scratch: &mut Vec<u8>, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.text(scratch)?;
            }
            open @ (b'{' | b'[') => {
                if depth >= DEPTH_MAX {
                    return None;
                }
                let close = if open == b'{' { b'}' } else { b']' };
                self.at += 1;
                self.skip_spaces();
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        self.eat(b'"')?;
                        self.text(scratch)?;
                        self.skip_spaces();
                        self.eat(b':')?;
                        self.skip_spaces();
                    }
                    self.skip_value(scratch, depth + 1)?;
                    self.skip_spaces();
                    if self.eat(b',').is_none() {
                        return self.eat(close);
                    }
                    self.skip_spaces();
                }
            }
            b't' | b'f' => {
                self.boolean()?;
            }
            b'n' => self.literal(b"null").then_some(())?,
            _ => {
                self.number()?;
            }
        }
        Some(())
    }
}

/// Decodes chunks of flat JSON objects into the declared columns, or declines them.
pub struct FlatDecoder {
    schema: SchemaRef,
    names: Vec<Name>,
    nullable: Vec<bool>,
    columns: Vec<Column>,
    /// A string with escapes, unescaped.
    scratch: Vec<u8>,
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
            names: columns.iter().map(|c| Name::new(&c.name)).collect(),
            nullable: columns.iter().map(|c| c.nullable).collect(),
            columns: builders,
            scratch: Vec::new(),
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
        let plain = indices
            .iter()
            .all(|&i| self.row(records[i].payload.unwrap_or_default()).is_some());
        if !plain {
            return None;
        }
        let arrays = self
            .columns
            .iter_mut()
            .zip(self.schema.fields())
            .map(|(column, field)| column.finish(field.data_type()))
            .collect::<Option<Vec<ArrayRef>>>()?;
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).ok()
    }

    /// One record, as a row of every column.
    fn row(&mut self, record: &[u8]) -> Option<()> {
        let mut json = Cursor {
            json: record,
            at: 0,
        };
        let mut seen = 0u64;
        let mut next = 0;
        json.skip_spaces();
        json.eat(b'{')?;
        json.skip_spaces();
        if json.eat(b'}').is_none() {
            loop {
                json.eat(b'"')?;
                // Producers write keys in one order: the next column's name is tried in place.
                let column = match self.names.get(next).is_some_and(|n| n.starts(&mut json)) {
                    true => Some(next),
                    false => {
                        // A key of no column is checked here; one that names a column is
                        // valid as the name is.
                        let key = json.string(&mut self.scratch)?;
                        let column = column_named(&self.names, key, next);
                        if column.is_none() {
                            std::str::from_utf8(key).ok()?;
                        }
                        column
                    }
                };
                json.skip_spaces();
                json.eat(b':')?;
                json.skip_spaces();
                match column {
                    Some(c) => {
                        if seen & (1 << c) != 0 {
                            return None;
                        }
                        seen |= 1 << c;
                        next = c + 1;
                        if json.literal(b"null") {
                            self.nullable[c].then(|| self.columns[c].append_null())?;
                        } else {
                            self.columns[c].append(&mut json, &mut self.scratch)?;
                        }
                    }
                    None => json.skip_value(&mut self.scratch, 0)?,
                }
                json.skip_spaces();
                if json.eat(b',').is_none() {
                    json.eat(b'}')?;
                    break;
                }
                json.skip_spaces();
            }
        }
        json.skip_spaces();
        if json.at != record.len() {
            return None;
        }
        // Columns the record leaves out are NULL, where they may be.
        for (c, column) in self.columns.iter_mut().enumerate() {
            if seen & (1 << c) == 0 {
                self.nullable[c].then(|| column.append_null())?;
            }
        }
        Some(())
    }
}

/// A column's name as keys are matched to it: by length and first 8 bytes, which tell most
/// names apart without a call to compare bytes, then by the rest.
struct Name {
    head: u64,
    name: Box<[u8]>,
    /// For a name of up to 7 bytes that a JSON key spells as they are (no quote, backslash or
    /// control character): the name and its closing quote as the first bytes of a number, and
    /// the mask of those bytes, to find the key in place with one load and compare.
    quoted: Option<(u64, u64)>,
}

impl Name {
    fn new(name: &str) -> Self {
        let bytes = name.as_bytes();
        let raw = bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
        let quoted = (raw && bytes.len() < 8).then(|| {
            let mut quoted = bytes.to_vec();
            quoted.push(b'"');
            (head(&quoted), u64::MAX >> (64 - 8 * quoted.len()))
        });
        Name {
            head: head(bytes),
            name: bytes.into(),
            quoted,
        }
    }

    /// Whether the key at `json`'s cursor (its opening quote eaten) is this name; if so, moves
    /// past its closing quote.
    fn starts(&self, json: &mut Cursor<'_>) -> bool {
        let Some((quoted, mask)) = self.quoted else {
            return false;
        };
        let Some(word) = json.json.get(json.at..json.at + 8) else {
            return false;
        };
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let found = word & mask == quoted;
        if found {
            json.at += self.name.len() + 1;
        }
        found
    }

    fn is(&self, key: &[u8]) -> bool {
        key.len() == self.name.len()
            && head(key) == self.head
            && (key.len() <= 8 || key[8..] == self.name[8..])
    }
}

/// Up to the first 8 bytes of `bytes`, as a number.
fn head(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .enumerate()
        .fold(0, |h, (i, &b)| h | u64::from(b) << (8 * i))
}

/// The column named `key`, looked for first right after `after` (producers write keys in one
/// order).
fn column_named(names: &[Name], key: &[u8], after: usize) -> Option<usize> {
    let n = names.len();
    (after..n)
        .chain(0..after.min(n))
        .find(|&c| names[c].is(key))
}

#[cfg(test)]
mod tests;
