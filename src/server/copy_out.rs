//! `COPY … TO STDOUT`: rows in Postgres' text or CSV format, which psql's `\copy … TO` and
//! drivers' copy-out calls read.
//!
//! Each value is first encoded by arrow-pg exactly as a text-format query result shows it
//! (`t`/`f`, `2024-05-01 12:30:15.25+00`), then escaped for the COPY format: backslash escapes
//! and `\N` in text, quoting and an empty unquoted NULL in CSV. One CopyData message per row,
//! as Postgres sends them (pgwire's `COPY n` tag counts messages); a header rides with the first.

use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, FieldInfo, Response};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use crate::error::Error;
use crate::sql::copy::CopyFormat;

/// The response that streams `rows` to the client as COPY data.
pub fn response(
    rows: SendableRecordBatchStream,
    format: CopyFormat,
    options: Arc<FormatOptions>,
) -> PgWireResult<Response> {
    let schema = rows.schema();
    let fields = Arc::new(super::encode::fields(
        &schema,
        &Format::UnifiedText,
        Some(options),
    )?);
    let columns = fields.len();
    let header = format.header.then(|| {
        let names: Vec<Option<&str>> = schema
            .fields()
            .iter()
            .map(|f| Some(f.name().as_str()))
            .collect();
        line(&names, &format)
    });
    let header = Arc::new(Mutex::new(header));
    let first = Arc::clone(&header);
    let body = rows.flat_map(move |batch| {
        let lines = batch
            .map_err(|e| PgWireError::from(Error::from(e)))
            .and_then(|batch| encode_batch(batch, &fields, &format));
        let lines: Vec<PgWireResult<String>> = match lines {
            Ok(lines) => lines.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(lines)
    });
    let body = body.map(move |line| {
        let line = line?;
        let prefix = first.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(CopyData::new(Bytes::from(
            prefix.unwrap_or_default() + &line,
        )))
    });
    // A header over no rows goes alone.
    let rest =
        futures::stream::once(
            async move { header.lock().unwrap_or_else(|e| e.into_inner()).take() },
        )
        .filter_map(|header| async move { header.map(|h| Ok(CopyData::new(Bytes::from(h)))) });
    Ok(Response::CopyOut(CopyResponse::new(
        0,
        columns,
        body.chain(rest),
    )))
}

fn encode_batch(
    batch: RecordBatch,
    fields: &Arc<Vec<FieldInfo>>,
    format: &CopyFormat,
) -> PgWireResult<Vec<String>> {
    super::encode::data_rows(fields, batch)
        .map(|row| {
            let values = text_values(&row?);
            let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
            Ok(line(&values, format))
        })
        .collect()
}

/// The text of each field of a text-format DataRow: a length (-1 for NULL), then the bytes.
fn text_values(row: &DataRow) -> Vec<Option<String>> {
    let mut data = &row.data[..];
    (0..row.field_count)
        .map(|_| {
            let len = data.get_i32();
            (len >= 0).then(|| {
                let (value, rest) = data.split_at(len as usize);
                data = rest;
                String::from_utf8_lossy(value).into_owned()
            })
        })
        .collect()
}

/// One row in the COPY format, with its line end.
fn line(values: &[Option<&str>], format: &CopyFormat) -> String {
    let delimiter = char::from(format.delimiter);
    let mut out = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        match value {
            None => out.push_str(&format.null),
            Some(value) if format.csv => csv_field(&mut out, value, format),
            Some(value) => text_field(&mut out, value, delimiter),
        }
    }
    out.push('\n');
    out
}

fn text_field(out: &mut String, value: &str, delimiter: char) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' if delimiter == '\t' => out.push_str("\\t"),
            c if c == delimiter => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

fn csv_field(out: &mut String, value: &str, format: &CopyFormat) {
    let quote = char::from(format.quote);
    let escape = format.escape.map_or(quote, char::from);
    let delimiter = char::from(format.delimiter);
    // An empty string is quoted so that it reads back as '' and not as NULL.
    let quoted = value.is_empty()
        || value == format.null
        || value
            .chars()
            .any(|c| c == delimiter || c == quote || c == '\n' || c == '\r' || c == escape);
    if !quoted {
        out.push_str(value);
        return;
    }
    out.push(quote);
    for c in value.chars() {
        if c == quote || c == escape {
            out.push(escape);
        }
        out.push(c);
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(csv: bool) -> CopyFormat {
        CopyFormat {
            csv,
            delimiter: if csv { b',' } else { b'\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: false,
            quote: b'"',
            escape: None,
        }
    }

    #[test]
    fn escapes_as_postgres_does() {
        let values = [Some("a\tb\\c\nd"), None, Some("")];
        assert_eq!(line(&values, &format(false)), "a\\tb\\\\c\\nd\t\\N\t\n");
        let values = [Some("say \"hi\", ok"), None, Some(""), Some("plain")];
        assert_eq!(
            line(&values, &format(true)),
            "\"say \"\"hi\"\", ok\",,\"\",plain\n"
        );
    }
}
