//! JSON records → Arrow batches of a source's schema, with every undecodable record set aside.
//!
//! A chunk of flat objects of scalar columns goes the fast path (`flat_json.rs`: a strict
//! byte scanner straight into Arrow builders) when its every record is plain. Other chunks are decoded many records
//! at a time with arrow-json's `Decoder` (one tape for the whole chunk, one array per column),
//! which takes odd input its own way. A record that breaks the chunk — not JSON, not one
//! object, a wrong type, a NOT NULL column missing — is found by re-decoding the failing segment
//! in halves, so one bad record costs O(log n) extra decodes and never drops its neighbours.
//!
//! Timestamp columns are converted here, not by arrow-json: it reads a number in a timestamp
//! column in the column's own unit (microseconds), while producers send epoch milliseconds or
//! ISO-8601 strings, and we accept both. A chunk is first decoded with timestamps as integers
//! (epoch ms, the fast path); if that fails and decoding them as text works, the source sends
//! text and later chunks go straight to the text path.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::Decoder;

use super::Rejected;
use super::flat_json::FlatDecoder;
use crate::catalog::source::SourceDef;
use crate::error::{Result, lowercase_first};
use crate::sql::IncludeKind;

/// One message as read from the connector.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub offset: i64,
    /// The message's timestamp (epoch milliseconds), if the broker gave one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

impl<'a> Record<'a> {
    /// Records of the payloads alone, at offsets 0, 1, … (for tests and benches).
    pub fn of_payloads<P: AsRef<[u8]>>(payloads: &'a [P]) -> Vec<Record<'a>> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Record {
                offset: i as i64,
                timestamp_ms: None,
                key: None,
                payload: Some(p.as_ref()),
            })
            .collect()
    }
}

/// Decodes records of one source. Holds no rows between calls.
pub struct JsonDecoder {
    /// The declared columns as arrow-json decodes them, timestamps as text.
    text_schema: SchemaRef,
    /// The same with timestamps as integers (epoch milliseconds): the fast path while every
    /// timestamp a source sends is a number.
    numeric_schema: SchemaRef,
    /// Try the numeric schema first. Cleared once a chunk decodes cleanly only as text.
    numeric_timestamps: bool,
    /// The source's full schema: declared columns, then included metadata.
    output_schema: SchemaRef,
    includes: Vec<IncludeKind>,
    /// Position of the event-time column, whose NULLs are rejected.
    event_time: Option<usize>,
    /// A decoder kept between chunks (for the numeric schema or not), so its buffers are
    /// allocated once.
    reusable: Option<(bool, Decoder)>,
    /// The fast path, while the source's records are plain: dropped once it declined
    /// `DECLINED_MAX` chunks in a row that then decoded cleanly the general way (the source
    /// sends what it does not take).
    flat: Option<FlatDecoder>,
    declined: usize,
}

/// Clean chunks in a row the fast path may decline before a decoder stops trying it.
const DECLINED_MAX: usize = 8;

/// Rows a kept decoder takes at once; larger segments get a decoder of their own.
const REUSABLE_ROWS: usize = 16_384;

/// The rows of a chunk that decoded, and the records that did not.
pub struct Decoded {
    pub batch: RecordBatch,
    pub rejected: Vec<Rejected>,
}

impl JsonDecoder {
    pub fn new(def: &SourceDef) -> Self {
        let decode_schema = |timestamp_as: DataType| -> SchemaRef {
            let fields: Vec<Field> = def
                .columns
                .iter()
                .map(|c| {
                    let data_type = match c.column_type.arrow {
                        DataType::Timestamp(..) => timestamp_as.clone(),
                        ref other => other.clone(),
                    };
                    Field::new(&c.name, data_type, c.nullable)
                })
                .collect();
            Arc::new(Schema::new(fields))
        };
        let has_timestamps = def.columns.iter().any(|c| c.column_type.is_timestamp());
        JsonDecoder {
            text_schema: decode_schema(DataType::Utf8),
            numeric_schema: decode_schema(DataType::Int64),
            numeric_timestamps: has_timestamps,
            output_schema: def.schema(),
            includes: def.includes.iter().map(|i| i.kind).collect(),
            event_time: def
                .watermark
                .as_ref()
                .and_then(|w| def.columns.iter().position(|c| c.name == w.column)),
            reusable: None,
            flat: FlatDecoder::try_new(&def.columns),
            declined: 0,
        }
    }

    /// The same without the fast path: the general path alone (for tests and benches
    /// comparing the two).
    pub fn general_only(mut self) -> Self {
        self.flat = None;
        self
    }

    fn decode_schema(&self, numeric: bool) -> &SchemaRef {
        match numeric {
            true => &self.numeric_schema,
            false => &self.text_schema,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Decodes `records` (of one partition, in offset order) into rows of the source's schema.
    /// Rows keep the records' order; the rejected are returned with the reason.
    pub fn decode(&mut self, partition: i32, records: &[Record<'_>]) -> Result<Decoded> {
        let mut rejected = Vec::new();
        let mut good: Vec<usize> = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            match record.payload {
                Some(_) => good.push(i),
                None => rejected.push(reject(partition, record, "the message has no value")),
            }
        }
        if let Some(flat) = &mut self.flat
            && let Some(declared) = flat.decode(records, &good)
        {
            self.declined = 0;
            let batch = self.finish(partition, records, &good, declared, &mut rejected)?;
            rejected.sort_by_key(|r| r.offset);
            return Ok(Decoded { batch, rejected });
        }
        let without_payload = rejected.len();
        let mut pieces = Vec::new();
        let numeric = self.numeric_timestamps && !good.is_empty();
        let fast = match numeric {
            true => self.try_decode(records, &good, true).ok(),
            false => None,
        };
        let decoded_numeric = fast.is_some();
        match fast {
            Some(batch) => pieces.push(batch),
            None => {
                let before = rejected.len();
                self.decode_segment(partition, records, &good, &mut pieces, &mut rejected);
                // Clean as text but not as numbers: this source sends timestamps as text.
                if numeric && rejected.len() == before {
                    self.numeric_timestamps = false;
                }
            }
        }
        // Declined by the fast path and clean here: the source sends what it does not take.
        if self.flat.is_some() && rejected.len() == without_payload {
            self.declined += 1;
            if self.declined >= DECLINED_MAX {
                self.flat = None;
            }
        }
        let declared = concat_batches(self.decode_schema(decoded_numeric), &pieces)?;
        let kept: Vec<usize> = pieces_rows(&good, &rejected, records);
        let batch = self.finish(partition, records, &kept, declared, &mut rejected)?;
        rejected.sort_by_key(|r| r.offset);
        Ok(Decoded { batch, rejected })
    }

    /// Decodes the records at `indices` (timestamps as text); on failure splits them in halves
    /// until each bad record is alone. Appends decoded pieces in order.
    fn decode_segment(
        &mut self,
        partition: i32,
        records: &[Record<'_>],
        indices: &[usize],
        pieces: &mut Vec<RecordBatch>,
        rejected: &mut Vec<Rejected>,
    ) {
        if indices.is_empty() {
            return;
        }
        match self.try_decode(records, indices, false) {
            Ok(batch) => pieces.push(batch),
            Err(error) if indices.len() == 1 => {
                rejected.push(reject(partition, &records[indices[0]], &error))
            }
            Err(_) => {
                let (left, right) = indices.split_at(indices.len() / 2);
                self.decode_segment(partition, records, left, pieces, rejected);
                self.decode_segment(partition, records, right, pieces, rejected);
            }
        }
    }

    /// Decodes the records at `indices` as one batch, timestamps as numbers or as text, or
    /// fails if any of them does not give exactly one row.
    fn try_decode(
        &mut self,
        records: &[Record<'_>],
        indices: &[usize],
        numeric: bool,
    ) -> std::result::Result<RecordBatch, String> {
        let mut decoder = match self.reusable.take() {
            Some((kind, decoder)) if kind == numeric && indices.len() < REUSABLE_ROWS => decoder,
            _ => self.new_decoder(numeric, indices.len().max(REUSABLE_ROWS))?,
        };
        for &i in indices {
            let payload = records[i].payload.unwrap_or_default();
            let before = decoder.len();
            let consumed = decoder.decode(payload).map_err(|e| describe(&e))?;
            // An object is complete at its closing brace; anything else (a bare value, two
            // objects, a truncated one) leaves the row count wrong.
            if consumed != payload.len() || decoder.len() != before + 1 {
                return Err("the message is not exactly one JSON object".into());
            }
        }
        // After a failure the decoder is mid-value; only a clean one is kept.
        let batch = match decoder.flush() {
            Ok(Some(batch)) if batch.num_rows() == indices.len() => batch,
            Ok(_) => return Err("the message is not exactly one JSON object".into()),
            Err(e) => return Err(describe(&e)),
        };
        self.reusable = Some((numeric, decoder));
        Ok(batch)
    }

    fn new_decoder(&self, numeric: bool, rows: usize) -> std::result::Result<Decoder, String> {
        ReaderBuilder::new(Arc::clone(self.decode_schema(numeric)))
            .with_batch_size(rows + 1)
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| describe(&e))
    }

    /// Converts timestamp text, rejects rows whose timestamp does not parse or whose event time
    /// is NULL, and appends the metadata columns. `kept[i]` is the record of row `i`.
    fn finish(
        &self,
        partition: i32,
        records: &[Record<'_>],
        kept: &[usize],
        declared: RecordBatch,
        rejected: &mut Vec<Rejected>,
    ) -> Result<RecordBatch> {
        let mut valid = vec![true; declared.num_rows()];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        for (c, field) in self.output_schema.fields()[..declared.num_columns()]
            .iter()
            .enumerate()
        {
            let column = declared.column(c);
            let column = match field.data_type() {
                // (The fast path gives timestamps as they are stored.)
                DataType::Timestamp(TimeUnit::Microsecond, tz)
                    if column.data_type() != field.data_type() =>
                {
                    let text = column.as_any().downcast_ref::<StringArray>();
                    let millis = column.as_any().downcast_ref::<Int64Array>();
                    let mut micros = Vec::with_capacity(column.len());
                    for row in 0..column.len() {
                        let value = match (text, millis) {
                            (Some(t), _) if t.is_valid(row) => {
                                Some(parse_timestamp_micros(t.value(row)))
                            }
                            (_, Some(m)) if m.is_valid(row) => Some(millis_to_micros(m.value(row))),
                            _ => None,
                        };
                        micros.push(match value {
                            None => None,
                            Some(Ok(v)) => Some(v),
                            Some(Err(e)) => {
                                if valid[row] {
                                    valid[row] = false;
                                    rejected.push(reject(
                                        partition,
                                        &records[kept[row]],
                                        &format!("column \"{}\": {e}", field.name()),
                                    ));
                                }
                                None
                            }
                        });
                    }
                    Arc::new(TimestampMicrosecondArray::from(micros).with_timezone_opt(tz.clone()))
                        as ArrayRef
                }
                _ => Arc::clone(column),
            };
            if self.event_time == Some(c) {
                for row in 0..column.len() {
                    if column.is_null(row) && valid[row] {
                        valid[row] = false;
                        rejected.push(reject(
                            partition,
                            &records[kept[row]],
                            &format!("event time column \"{}\" is null", field.name()),
                        ));
                    }
                }
            }
            columns.push(column);
        }
        for include in &self.includes {
            columns.push(metadata_column(*include, partition, records, kept));
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.output_schema), columns)?;
        if valid.iter().all(|v| *v) {
            return Ok(batch);
        }
        Ok(filter_record_batch(&batch, &BooleanArray::from(valid))?)
    }
}

fn concat_batches(schema: &SchemaRef, pieces: &[RecordBatch]) -> Result<RecordBatch> {
    match pieces {
        [] => Ok(RecordBatch::new_empty(Arc::clone(schema))),
        [one] => Ok(one.clone()),
        many => Ok(datafusion::arrow::compute::concat_batches(schema, many)?),
    }
}

/// The record index of each decoded row: every record with a payload that was not rejected.
fn pieces_rows(good: &[usize], rejected: &[Rejected], records: &[Record<'_>]) -> Vec<usize> {
    let bad: std::collections::HashSet<i64> = rejected.iter().map(|r| r.offset).collect();
    good.iter()
        .copied()
        .filter(|&i| !bad.contains(&records[i].offset))
        .collect()
}

fn metadata_column(
    kind: IncludeKind,
    partition: i32,
    records: &[Record<'_>],
    kept: &[usize],
) -> ArrayRef {
    let rows = kept.iter().map(|&i| &records[i]);
    match kind {
        IncludeKind::Partition => Arc::new(Int32Array::from(vec![partition; kept.len()])),
        IncludeKind::Offset => Arc::new(Int64Array::from_iter_values(rows.map(|r| r.offset))),
        IncludeKind::Timestamp => Arc::new(
            TimestampMicrosecondArray::from_iter(
                rows.map(|r| r.timestamp_ms.map(|ms| ms.saturating_mul(1_000))),
            )
            .with_timezone("+00:00"),
        ),
        IncludeKind::Key => {
            let mut builder = BinaryBuilder::new();
            for r in rows {
                builder.append_option(r.key);
            }
            Arc::new(builder.finish())
        }
    }
}

fn millis_to_micros(ms: i64) -> std::result::Result<i64, String> {
    ms.checked_mul(1_000)
        .ok_or_else(|| format!("timestamp {ms} is out of range"))
}

/// Epoch milliseconds (a whole or fractional number) or an ISO-8601 / RFC 3339 string; a string
/// without a zone is UTC.
pub fn parse_timestamp_micros(text: &str) -> std::result::Result<i64, String> {
    let trimmed = text.trim();
    if let Ok(ms) = trimmed.parse::<i64>() {
        return millis_to_micros(ms);
    }
    if let Ok(ms) = trimmed.parse::<f64>()
        && ms.is_finite()
        && ms.abs() < (i64::MAX / 1_000) as f64
    {
        return Ok((ms * 1_000.0).round() as i64);
    }
    string_to_datetime(&chrono::Utc, trimmed)
        .map(|t| t.timestamp_micros())
        .map_err(|_| {
            format!("invalid timestamp \"{trimmed}\": expected epoch milliseconds or ISO-8601")
        })
}

fn reject(partition: i32, record: &Record<'_>, error: &str) -> Rejected {
    Rejected {
        partition,
        offset: record.offset,
        raw: record.payload.map(<[u8]>::to_vec).unwrap_or_default(),
        error: error.to_string(),
    }
}

fn describe(error: &datafusion::arrow::error::ArrowError) -> String {
    let text = error.to_string();
    let text = text.strip_prefix("Json error: ").unwrap_or(&text);
    lowercase_first(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Statement, parser::parse};
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    fn decoder(sql: &str) -> JsonDecoder {
        let Some(Statement::CreateSource(c)) = parse(sql).unwrap().pop() else {
            panic!()
        };
        JsonDecoder::new(&SourceDef {
            id: 1,
            name: c.name,
            columns: c.columns,
            watermark: c.watermark,
            includes: c.includes,
            options: Default::default(),
            created_at_ms: 0,
            primary_key: Vec::new(),
        })
    }

    fn records(payloads: &[&'static str]) -> Vec<Record<'static>> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Record {
                offset: 100 + i as i64,
                timestamp_ms: Some(1_700_000_000_000),
                key: None,
                payload: Some(p.as_bytes()),
            })
            .collect()
    }

    #[test]
    fn decodes_and_sets_aside_bad_records() {
        let mut d = decoder(
            "CREATE SOURCE s (id BIGINT NOT NULL, page VARCHAR, amount DOUBLE PRECISION, ts TIMESTAMPTZ, \
             WATERMARK FOR ts AS ts) INCLUDE offset AS off WITH (connector = 'kafka')",
        );
        let input = records(&[
            r#"{"id": 1, "page": "/a", "amount": 1.5, "ts": "2026-01-01T00:00:00.123456Z", "extra": [1]}"#,
            r#"not json"#,
            r#"{"id": 2, "ts": 1767225600000}"#,
            r#"{"id": "x", "ts": 1767225600000}"#,
            r#"{"page": "/no-id", "ts": 1767225600000}"#,
            r#"{"id": 3, "ts": "yesterday"}"#,
            r#"{"id": 4}"#,
            r#"{"id": 5, "ts": 1767225600000}{"id": 6, "ts": 1767225600000}"#,
            r#"{"id": 7, "amount": 2, "ts": "2026-01-01 00:00:01"}"#,
        ]);
        let out = d.decode(3, &input).unwrap();
        let offsets: Vec<i64> = out.rejected.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            vec![101, 103, 104, 105, 106, 107],
            "{:?}",
            out.rejected
        );
        assert!(
            out.rejected
                .iter()
                .all(|r| r.partition == 3 && !r.error.is_empty())
        );
        assert_eq!(out.rejected[0].raw, b"not json");
        let batch = out.batch;
        assert_eq!(batch.num_rows(), 3);
        let ids = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values(), &[1, 2, 7]);
        let ts = batch.column(3).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_767_225_600_123_456);
        assert_eq!(ts.value(1), 1_767_225_600_000_000);
        assert_eq!(ts.value(2), 1_767_225_601_000_000);
        let off = batch.column(4).as_primitive::<Int64Type>();
        assert_eq!(off.values(), &[100, 102, 108]);
    }

    #[test]
    fn timestamps_take_the_numeric_path_until_text_arrives() {
        let mut d = decoder("CREATE SOURCE s (a INT, ts TIMESTAMP) WITH (connector = 'kafka')")
            .general_only();
        let numbers = records(&[r#"{"a": 1, "ts": 1000}"#, r#"{"a": 2, "ts": "2000"}"#]);
        let out = d.decode(0, &numbers).unwrap();
        assert!(out.rejected.is_empty() && d.numeric_timestamps);
        let ts = out
            .batch
            .column(1)
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.values(), &[1_000_000, 2_000_000]);
        // A bad record does not demote the source; text timestamps do.
        let bad = records(&[r#"{"a": 1, "ts": 1000}"#, r#"{"a": "#]);
        assert_eq!(d.decode(0, &bad).unwrap().rejected.len(), 1);
        assert!(d.numeric_timestamps);
        let text = records(&[r#"{"a": 3, "ts": "1970-01-01T00:00:03Z"}"#]);
        let out = d.decode(0, &text).unwrap();
        assert!(out.rejected.is_empty() && !d.numeric_timestamps);
        let ts = out
            .batch
            .column(1)
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 3_000_000);
        let out = d.decode(0, &numbers).unwrap();
        assert_eq!(out.batch.num_rows(), 2);
    }

    #[test]
    fn a_clean_chunk_decodes_in_one_piece() {
        let mut d = decoder("CREATE SOURCE s (a INT, b TEXT) WITH (connector = 'kafka')");
        let input = records(&[r#"{"a": 1, "b": "x"}"#, r#"{"b": "y"}"#, r#"{"a": 3}"#]);
        let out = d.decode(0, &input).unwrap();
        assert!(out.rejected.is_empty());
        assert_eq!(out.batch.num_rows(), 3);
        assert_eq!(out.batch.column(0).null_count(), 1);
    }

    /// Fuzz target: a chunk decodes to the same rows and rejections with the fast path as
    /// without it. Records are objects built of values each column may or may not take (and
    /// keys left out, repeated or unknown), such objects with bytes changed (where a
    /// hand-written scanner goes wrong), or raw bytes.
    #[test]
    fn fuzz_fast_and_general_paths_agree() {
        const VALUES: [&[&str]; 4] = [
            &[
                "1",
                "-0",
                "\"2\"",
                "1.5",
                "1e3",
                "null",
                "9223372036854775808",
                "-9223372036854775808",
                "[1]",
            ],
            &[
                "\"/a\"",
                "\"caf\\u00e9 \\/x\"",
                "\"\\ud83d\\ude00 \\\" \\\\ \\b\\f\\n\\r\\t\\u0000\"",
                "5",
                "true",
                "null",
                "{\"x\": 1}",
            ],
            &[
                "1.5",
                "2",
                "0.1",
                "-0.0",
                "1e308",
                "\"3.5\"",
                "123456789.123456789",
                "-1.5E+2",
                "0.5e-3",
                "null",
            ],
            &[
                "1767225600000",
                "\"2026-01-01T00:00:00Z\"",
                "\"2026-01-01 00:00:01\"",
                "\"yesterday\"",
                "1767225600000.5",
                "\"1767225600000\"",
                "null",
            ],
        ];
        const KEYS: [&str; 4] = ["id", "page", "amount", "ts"];
        let sql = "CREATE SOURCE s (id BIGINT NOT NULL, page VARCHAR, amount DOUBLE PRECISION, \
                   ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) INCLUDE offset AS off \
                   WITH (connector = 'kafka')";
        bolero::check!()
            .with_type::<Vec<(u8, Vec<(u8, u8)>, Vec<u8>)>>()
            .for_each(|records| {
                let payloads: Vec<Vec<u8>> = records
                    .iter()
                    .map(|(kind, members, bytes)| match kind % 3 {
                        0 => bytes.clone(),
                        kind => {
                            let members: Vec<String> = members
                                .iter()
                                .map(|&(key, value)| {
                                    let (k, v) = (usize::from(key) % 5, usize::from(value));
                                    match k {
                                        4 => {
                                            format!("\"other\": {}", VALUES[1][v % VALUES[1].len()])
                                        }
                                        _ => format!(
                                            "\"{}\": {}",
                                            KEYS[k],
                                            VALUES[k][v % VALUES[k].len()]
                                        ),
                                    }
                                })
                                .collect();
                            let mut record = format!("{{{}}}", members.join(", ")).into_bytes();
                            if kind == 2 {
                                // Bytes replaced, put in or taken out.
                                for edit in bytes.chunks_exact(3) {
                                    let at = usize::from(edit[1]) % record.len();
                                    match edit[0] % 3 {
                                        0 => record[at] = edit[2],
                                        1 => record.insert(at, edit[2]),
                                        _ if record.len() > 1 => _ = record.remove(at),
                                        _ => {}
                                    }
                                }
                            }
                            record
                        }
                    })
                    .collect();
                let errors = |d: &Decoded| -> Vec<(i64, String)> {
                    d.rejected
                        .iter()
                        .map(|r| (r.offset, r.error.clone()))
                        .collect()
                };
                let input = Record::of_payloads(&payloads);
                // The chunk, and its first records alone: one record the fast path declines
                // sends its whole chunk the general way, so the fast path is mostly held to
                // the general one record by record.
                for chunk in std::iter::once(&input[..]).chain(input.chunks(1).take(8)) {
                    let fast = decoder(sql).decode(0, chunk).unwrap();
                    let general = decoder(sql).general_only().decode(0, chunk).unwrap();
                    let shown: Vec<_> = chunk
                        .iter()
                        .map(|r| String::from_utf8_lossy(r.payload.unwrap_or_default()))
                        .collect();
                    assert_eq!(fast.batch, general.batch, "{shown:?}");
                    assert_eq!(errors(&fast), errors(&general), "{shown:?}");
                }
            });
    }

    /// Fuzz target: every record of a chunk becomes a row or a rejection, never both or
    /// neither, and no payload makes decoding panic. Payloads are valid events with bytes
    /// changed, and raw bytes.
    #[test]
    fn fuzz_json_records() {
        let valid = r#"{"id": 7, "page": "/a", "amount": 1.5, "ts": "2026-01-01T00:00:00Z"}"#;
        bolero::check!()
            .with_type::<Vec<(Vec<(u8, u8)>, Option<Vec<u8>>)>>()
            .for_each(|records| {
                let mut d = decoder(
                    "CREATE SOURCE s (id BIGINT NOT NULL, page VARCHAR, amount DOUBLE PRECISION, \
                     ts TIMESTAMPTZ, WATERMARK FOR ts AS ts) WITH (connector = 'kafka')",
                );
                let payloads: Vec<Vec<u8>> = records
                    .iter()
                    .map(|(edits, raw)| match raw {
                        Some(raw) => raw.clone(),
                        None => {
                            let mut payload = valid.as_bytes().to_vec();
                            for &(at, byte) in edits {
                                let at = usize::from(at) % payload.len();
                                payload[at] = byte;
                            }
                            payload
                        }
                    })
                    .collect();
                let input = Record::of_payloads(&payloads);
                let out = d.decode(0, &input).unwrap();
                assert_eq!(out.batch.num_rows() + out.rejected.len(), input.len());
            });
    }
}
