//! Decoding `COPY … FROM STDIN` payloads (Postgres text and CSV formats) into Arrow batches.
//!
//! Input arrives in arbitrary chunks; [`CopyDecoder::push`] keeps the incomplete last record and
//! returns whole batches of `batch_rows` rows. Fields are collected as text and cast to the
//! table's types with Arrow's casts; a value that does not parse is reported with its line and
//! column, as Postgres does, and nothing of that COPY is committed.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::FormatOptions;
use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};

use crate::catalog::table::TableDef;
use crate::error::{Error, Result};

/// How the payload is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: u8,
    /// The text that stands for NULL (`\N` in text format, the empty string in CSV).
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: Option<u8>,
}

impl CopyFormat {
    /// Reads both the `WITH (FORMAT csv, …)` and the legacy `CSV HEADER` spellings.
    pub fn from_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Self> {
        let mut csv = false;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) =
            (None, None, false, b'"', None);
        for option in options {
            match option {
                CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                    "csv" => csv = true,
                    "text" => csv = false,
                    other => {
                        return Err(Error::unsupported(format!("COPY format \"{other}\""), None));
                    }
                },
                CopyOption::Delimiter(c) => delimiter = Some(ascii(*c)?),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = ascii(*c)?,
                CopyOption::Escape(c) => escape = Some(ascii(*c)?),
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(Error::unsupported(format!("COPY option {other}"), None)),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Csv(csv_options) => {
                    csv = true;
                    for o in csv_options {
                        match o {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => quote = ascii(*c)?,
                            CopyLegacyCsvOption::Escape(c) => escape = Some(ascii(*c)?),
                            other => {
                                return Err(Error::unsupported(
                                    format!("COPY option {other}"),
                                    None,
                                ));
                            }
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(ascii(*c)?),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Header => header = true,
                other => return Err(Error::unsupported(format!("COPY option {other}"), None)),
            }
        }
        if header && !csv {
            return Err(Error::unsupported(
                "COPY HEADER in text format",
                Some("Use FORMAT csv with HEADER."),
            ));
        }
        Ok(CopyFormat {
            csv,
            delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
            null: null.unwrap_or_else(|| {
                if csv {
                    String::new()
                } else {
                    "\\N".to_string()
                }
            }),
            header,
            quote,
            escape,
        })
    }
}

fn ascii(c: char) -> Result<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        Error::InvalidParameter(format!(
            "COPY delimiter and quote must be one ASCII character, not {c:?}"
        ))
    })
}

/// Turns a COPY payload into batches of the table's schema.
pub struct CopyDecoder {
    format: CopyFormat,
    table: TableDef,
    schema: SchemaRef,
    columns: Vec<usize>,
    batch_rows: usize,
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no record end, and whether a CSV quote is open
    /// there: a record arriving in many chunks is scanned once, not once per chunk.
    scanned: usize,
    quoted: bool,
    builders: Vec<StringBuilder>,
    /// Input line of the first buffered row, for error messages.
    first_line: u64,
    next_line: u64,
    rows_in_batch: usize,
    header_pending: bool,
    ended: bool,
}

impl CopyDecoder {
    pub fn new(
        table: TableDef,
        columns: Vec<usize>,
        format: CopyFormat,
        batch_rows: usize,
    ) -> Self {
        let builders = columns.iter().map(|_| StringBuilder::new()).collect();
        CopyDecoder {
            header_pending: format.header,
            schema: table.schema(),
            table,
            columns,
            format,
            batch_rows,
            pending: Vec::new(),
            scanned: 0,
            quoted: false,
            builders,
            first_line: 1,
            next_line: 1,
            rows_in_batch: 0,
            ended: false,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Bytes buffered but not yet decoded.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Feeds a chunk; returns the batches it completed.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<RecordBatch>> {
        self.pending.extend_from_slice(data);
        let mut batches = Vec::new();
        let mut start = 0;
        while let Some(end) = self.record_end(start) {
            let record = self.pending[start..end].to_vec();
            start = end + 1;
            self.record(&record)?;
            if self.rows_in_batch >= self.batch_rows {
                batches.push(self.build_batch()?);
            }
        }
        self.pending.drain(..start);
        self.scanned -= start;
        Ok(batches)
    }

    /// Ends the input; returns the last, partial batch.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        if !self.pending.is_empty() {
            let record = std::mem::take(&mut self.pending);
            self.record(&record)?;
        }
        if self.rows_in_batch == 0 {
            Ok(None)
        } else {
            self.build_batch().map(Some)
        }
    }

    /// The index of the newline that ends the record starting at `start`, scanning only what
    /// was not scanned before. In CSV a newline inside quotes belongs to the value.
    fn record_end(&mut self, start: usize) -> Option<usize> {
        let from = self.scanned.max(start);
        for (i, b) in self.pending[from..].iter().enumerate() {
            if self.format.csv && *b == self.format.quote {
                self.quoted = !self.quoted;
            } else if *b == b'\n' && !self.quoted {
                self.scanned = from + i + 1;
                return Some(from + i);
            }
        }
        self.scanned = self.pending.len();
        None
    }

    fn record(&mut self, record: &[u8]) -> Result<()> {
        let line = self.next_line;
        self.next_line += 1 + record.iter().filter(|b| **b == b'\n').count() as u64;
        let record = record.strip_suffix(b"\r").unwrap_or(record);
        if self.ended || (record == b"\\." && !self.format.csv) {
            self.ended = true;
            return Ok(());
        }
        if std::mem::take(&mut self.header_pending) {
            return Ok(());
        }
        let fields = if self.format.csv {
            self.csv_fields(record, line)?
        } else {
            self.text_fields(record, line)?
        };
        if fields.len() != self.columns.len() {
            let problem = if fields.len() < self.columns.len() {
                "missing data for"
            } else {
                "extra data after last expected"
            };
            return Err(Error::InvalidText {
                message: format!("{problem} column"),
                detail: Some(format!(
                    "COPY {}, line {line}: expected {} columns, found {}.",
                    self.table.name,
                    self.columns.len(),
                    fields.len()
                )),
            });
        }
        if self.rows_in_batch == 0 {
            self.first_line = line;
        }
        for (builder, field) in self.builders.iter_mut().zip(fields) {
            builder.append_option(field);
        }
        self.rows_in_batch += 1;
        Ok(())
    }

    fn text_fields(&self, record: &[u8], line: u64) -> Result<Vec<Option<String>>> {
        let text = utf8(record).ok_or_else(|| self.not_utf8(line))?;
        text.split(self.format.delimiter as char)
            .map(|raw| match raw == self.format.null {
                true => Ok(None),
                false => unescape_text(raw)
                    .map(Some)
                    .ok_or_else(|| self.not_utf8(line)),
            })
            .collect()
    }

    fn csv_fields(&self, record: &[u8], line: u64) -> Result<Vec<Option<String>>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(self.format.delimiter)
            .quote(self.format.quote)
            .escape(self.format.escape)
            .double_quote(self.format.escape.is_none())
            .from_reader(record);
        let mut fields = csv::ByteRecord::new();
        let found = reader
            .read_byte_record(&mut fields)
            .map_err(|e| Error::InvalidText {
                message: format!("invalid CSV input: {e}"),
                detail: Some(format!("COPY {}, line {line}.", self.table.name)),
            })?;
        if !found {
            return Ok(vec![None; 1]);
        }
        fields
            .iter()
            .map(|f| {
                let text = utf8(f).ok_or_else(|| self.not_utf8(line))?;
                Ok(if text == self.format.null {
                    None
                } else {
                    Some(text.to_string())
                })
            })
            .collect()
    }

    /// Bytes that are not UTF-8, or a NUL, which no Postgres text value holds.
    fn not_utf8(&self, line: u64) -> Error {
        Error::InvalidEncoding {
            message: "invalid byte sequence for encoding \"UTF8\"".into(),
            detail: Some(format!("COPY {}, line {line}.", self.table.name)),
        }
    }

    fn build_batch(&mut self) -> Result<RecordBatch> {
        let rows = std::mem::take(&mut self.rows_in_batch);
        let mut arrays: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), rows))
            .collect();
        for (builder, &index) in self.builders.iter_mut().zip(&self.columns) {
            let text = builder.finish();
            let field = self.schema.field(index);
            arrays[index] = cast_text(&text, field.data_type(), false).map_err(|_| {
                bad_value(
                    &self.table.name,
                    field.name(),
                    &field_pg_type(&self.table, index),
                    &text,
                    field.data_type(),
                    self.first_line,
                )
            })?;
        }
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(|e| match e {
            datafusion::arrow::error::ArrowError::InvalidArgumentError(m)
                if m.contains("non-nullable") =>
            {
                let column = m.split('\'').nth(1).unwrap_or_default().to_string();
                Error::NotNullViolation { column }
            }
            other => Error::Internal(other.to_string()),
        })
    }
}

/// `bytes` as text, if they are UTF-8 without a NUL.
fn utf8(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'))
}

fn field_pg_type(table: &TableDef, index: usize) -> String {
    table.columns[index].column_type.pg_name.clone()
}

/// Text fields as `to`; with `safe`, a value that does not parse becomes NULL.
fn cast_text(
    text: &dyn Array,
    to: &datafusion::arrow::datatypes::DataType,
    safe: bool,
) -> datafusion::arrow::error::Result<ArrayRef> {
    if matches!(to, datafusion::arrow::datatypes::DataType::Binary) {
        return crate::pg::bytea::parse_array(text, safe);
    }
    let options = CastOptions {
        safe,
        format_options: FormatOptions::default(),
    };
    cast_with_options(text, to, &options)
}

/// The error for the first value of `text` that does not parse as `to`.
fn bad_value(
    table: &str,
    column: &str,
    pg_type: &str,
    text: &dyn Array,
    to: &datafusion::arrow::datatypes::DataType,
    first_line: u64,
) -> Error {
    let strings = text
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>();
    let failed = cast_text(text, to, true)
        .ok()
        .and_then(|cast| (0..text.len()).find(|i| text.is_valid(*i) && cast.is_null(*i)));
    let (row, value) = match (failed, strings) {
        (Some(row), Some(strings)) => (row, strings.value(row).to_string()),
        _ => (0, String::new()),
    };
    let integer = matches!(pg_type, "smallint" | "integer" | "bigint");
    if integer && value.trim().parse::<i128>().is_ok() {
        return Error::NumericOutOfRange(format!(
            "value \"{value}\" is out of range for type {pg_type}"
        ));
    }
    let message = format!("invalid input syntax for type {pg_type}: \"{value}\"");
    let detail = Some(format!(
        "COPY {table}, line {}, column {column}.",
        first_line + row as u64
    ));
    if pg_type.starts_with("timestamp") || pg_type == "date" {
        Error::InvalidDatetime { message, detail }
    } else {
        Error::InvalidText { message, detail }
    }
}

/// Undoes the backslash escapes of Postgres' text format. `\xNN` and `\ooo` are bytes, as in
/// Postgres: `caf\xc3\xa9` is `café`; `None` if the bytes are not UTF-8 or hold a NUL.
fn unescape_text(raw: &str) -> Option<String> {
    if !raw.contains('\\') {
        return Some(raw.to_string());
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let push = |out: &mut Vec<u8>, c: char| {
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            push(&mut out, c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push(0x08),
            Some('f') => out.push(0x0c),
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('v') => out.push(0x0b),
            Some('x') => {
                let hex: String = std::iter::from_fn(|| chars.next_if(char::is_ascii_hexdigit))
                    .take(2)
                    .collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.push(b'x'),
                }
            }
            Some(d @ '0'..='7') => {
                let mut value = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.next_if(|c| ('0'..='7').contains(c)) {
                        Some(next) => value = value * 8 + next.to_digit(8).unwrap_or(0),
                        None => break,
                    }
                }
                // Postgres keeps the low byte of an octal escape past \377.
                out.push((value & 0xff) as u8);
            }
            Some(other) => push(&mut out, other),
            None => out.push(b'\\'),
        }
    }
    utf8(&out).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Statement, parser::parse};
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    fn table() -> TableDef {
        let Some(Statement::CreateTable(c)) =
            parse("CREATE TABLE t (id INT NOT NULL, name TEXT, ok BOOLEAN, at TIMESTAMPTZ)")
                .unwrap()
                .pop()
        else {
            panic!()
        };
        TableDef::new(1, c)
    }

    fn decode(format: CopyFormat, chunks: &[&str]) -> Result<Vec<RecordBatch>> {
        let mut decoder = CopyDecoder::new(table(), vec![0, 1, 2, 3], format, 2);
        let mut batches = Vec::new();
        for chunk in chunks {
            batches.extend(decoder.push(chunk.as_bytes())?);
        }
        batches.extend(decoder.finish()?);
        Ok(batches)
    }

    fn text() -> CopyFormat {
        CopyFormat::from_options(&[], &[]).unwrap()
    }

    #[test]
    fn decodes_text_format_across_chunk_boundaries() {
        let batches = decode(
            text(),
            &[
                "1\ta\\tb\tt\t2024-01-01 10:00:00+00\n2\t\\N\tf",
                "\t2024-01-01T10:00:01Z\n3\tc\ttrue\t\\N\n\\.\n",
            ],
        )
        .unwrap();
        let shown = pretty_format_batches(&batches).unwrap().to_string();
        let lines: Vec<String> = shown
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            lines[3], "| 1 | a b | true | 2024-01-01T10:00:00Z |",
            "{shown}"
        );
        assert_eq!(
            lines[4], "| 2 | | false | 2024-01-01T10:00:01Z |",
            "{shown}"
        );
        assert_eq!(lines[5], "| 3 | c | true | |", "{shown}");
        let names = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(0), "a\tb");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    }

    #[test]
    fn decodes_csv_with_header_and_quoted_newlines() {
        let csv = CopyFormat {
            header: true,
            ..CopyFormat::from_options(&[CopyOption::Format("csv".into())], &[]).unwrap()
        };
        let batches = decode(
            csv,
            &["id,name,ok,at\n1,\"x,\n", "y\",t,\n2,,f,2024-01-01\n"],
        )
        .unwrap();
        let names = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(names.value(0), "x,\ny");
        assert!(batches[0].column(1).is_null(1));
    }

    #[test]
    fn reports_bad_values_with_line_and_column() {
        let error = decode(text(), &["1\ta\tt\t\\N\nzz\tb\tt\t\\N\n"]).unwrap_err();
        assert_eq!(error.sqlstate(), "22P02");
        assert_eq!(
            error.to_string(),
            "invalid input syntax for type integer: \"zz\""
        );
        assert_eq!(error.detail().unwrap(), "COPY t, line 2, column id.");
        let error = decode(text(), &["\\N\ta\tt\t\\N\n"]).unwrap_err();
        assert_eq!(error.sqlstate(), "23502");
        assert_eq!(decode(text(), &["1\ta\n"]).unwrap_err().sqlstate(), "22P02");
    }

    #[test]
    fn escapes_are_bytes_of_utf8_text() {
        assert_eq!(unescape_text(r"caf\xc3\xa9").as_deref(), Some("café"));
        assert_eq!(unescape_text(r"caf\303\251").as_deref(), Some("café"));
        assert_eq!(unescape_text(r"\101\tb\\").as_deref(), Some("A\tb\\"));
        assert_eq!(unescape_text(r"\xzz").as_deref(), Some("xzz"));
        assert_eq!(unescape_text(r"ab\000c"), None, "a NUL");
        assert_eq!(unescape_text(r"ab\x00c"), None, "a NUL");
        assert_eq!(unescape_text(r"\xff"), None);
        // Postgres: 22021 invalid byte sequence for encoding "UTF8".
        let error = decode(text(), &["1\tcaf\\xe9\tt\t\\N\n"]).unwrap_err();
        assert_eq!(error.sqlstate(), "22021");
        let error = decode(text(), &["1\tab\\000c\tt\t\\N\n"]).unwrap_err();
        assert_eq!(error.sqlstate(), "22021");
        let error = decode(text(), &["99999999999\tx\tt\t\\N\n"]).unwrap_err();
        assert_eq!(error.sqlstate(), "22003");
    }

    /// Fuzz target: COPY input decodes to the same rows, or fails with the same error,
    /// whatever CopyData chunks it arrives in, and never panics.
    #[test]
    fn fuzz_copy_chunking() {
        let csv = || {
            let option = sqlparser::ast::CopyOption::Format(sqlparser::ast::Ident::new("csv"));
            CopyFormat::from_options(&[option], &[]).unwrap()
        };
        bolero::check!()
            .with_type::<(bool, Vec<u8>, Vec<u8>)>()
            .for_each(|(is_csv, input, cuts)| {
                let format = || if *is_csv { csv() } else { text() };
                let run = |pieces: Vec<&[u8]>| -> std::result::Result<String, String> {
                    let mut decoder = CopyDecoder::new(table(), vec![0, 1, 2, 3], format(), 3);
                    let mut batches = Vec::new();
                    for piece in pieces {
                        batches.extend(decoder.push(piece).map_err(|e| e.to_string())?);
                    }
                    batches.extend(decoder.finish().map_err(|e| e.to_string())?);
                    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    let shown = pretty_format_batches(&batches).map_err(|e| e.to_string())?;
                    Ok(format!("{rows} rows\n{shown}"))
                };
                let whole = run(vec![input.as_slice()]);
                let mut pieces = Vec::new();
                let mut rest = input.as_slice();
                for &cut in cuts {
                    let n = usize::from(cut).min(rest.len());
                    let (piece, after) = rest.split_at(n);
                    pieces.push(piece);
                    rest = after;
                }
                pieces.push(rest);
                let chunked = run(pieces);
                match (&whole, &chunked) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b),
                    (Err(a), Err(b)) => assert_eq!(a, b),
                    _ => panic!("whole: {whole:?}\nchunked: {chunked:?}"),
                }
            });
    }
}
