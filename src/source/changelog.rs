//! Change records → rows to set or remove by key, for a table fed by a connector
//! (`FORMAT UPSERT ENCODE JSON`, `FORMAT DEBEZIUM ENCODE JSON`).
//!
//! The decoder turns each record into *writes*: rows of the table's columns (key columns only
//! for a removal) with an [`Op`], the record's offset, and for the ops that need the table's
//! current rows to be checked, the record itself. Whether a key exists is known only to the
//! runner, which applies the writes in order to the table's rows ([`crate::table`]) and
//! rejects what does not fit; everything the bytes alone decide is rejected here. Rows are
//! decoded by the same [`JsonDecoder`] as events, so a bad record costs what it costs there
//! and never takes its neighbours with it.
//!
//! Upsert: the key is the primary key as a JSON object (or a bare value for a one-column key);
//! the value is the whole row, and its key columns must equal the key; a null value removes
//! the row. Debezium: `op` `c`/`r` set `after`, `u` sets `after` over a row that must exist
//! (and moves it when `before` names another key), `d` removes `before`'s key, which must exist,
//! `t` empties the table; tombstones (null values) are skipped, and an envelope under
//! `payload` (Kafka Connect's schemas) is read the same.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, Int64Array, RecordBatch, UInt8Array, new_null_array,
};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use serde::de::IgnoredAny;

use super::Rejected;
use super::decode::{Decoded, JsonDecoder, Record};
use super::json_members::members;
use super::options::Format;
use crate::catalog::source::SourceDef;
use crate::error::{Error, Result};

/// The column of decoded writes that holds each row's [`Op`].
pub const OP_COLUMN: &str = "_sluice_op";
/// The offset of the record each write came from.
pub const OFFSET_COLUMN: &str = "_sluice_offset";
/// The record itself, for the writes the runner may still reject.
pub const RAW_COLUMN: &str = "_sluice_raw";

/// What a decoded write does to the table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Sets the row of its key (adds it, or replaces the one there).
    Upsert = 0,
    /// Removes the row of its key, if there is one (upsert's null value).
    Delete = 1,
    /// Sets the row of its key, which must exist — or, after a [`Op::Before`] of another key
    /// from the same record, moves that row to this key.
    Update = 2,
    /// The key an update's `before` names, which must exist; its row is the next write.
    Before = 3,
    /// Removes the row of its key, which must exist (Debezium's `d`).
    DeleteExisting = 4,
    /// Removes every row (Debezium's `t`).
    Truncate = 5,
}

impl Op {
    pub fn from_u8(value: u8) -> Option<Op> {
        [
            Op::Upsert,
            Op::Delete,
            Op::Update,
            Op::Before,
            Op::DeleteExisting,
            Op::Truncate,
        ]
        .into_iter()
        .find(|op| *op as u8 == value)
    }

    /// Whether the runner may still reject the write (it then needs the record).
    fn checked(self) -> bool {
        matches!(self, Op::Update | Op::Before | Op::DeleteExisting)
    }
}

/// The schema of decoded writes: the table's columns, all nullable (a removal carries its key
/// only), then [`OP_COLUMN`], [`OFFSET_COLUMN`] and [`RAW_COLUMN`].
pub fn writes_schema(def: &SourceDef) -> SchemaRef {
    let mut fields: Vec<Field> = def
        .columns
        .iter()
        .map(|c| Field::new(&c.name, c.column_type.arrow.clone(), true))
        .collect();
    fields.push(Field::new(OP_COLUMN, DataType::UInt8, false));
    fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
    fields.push(Field::new(RAW_COLUMN, DataType::Binary, true));
    Arc::new(Schema::new(fields))
}

/// Decodes the change records of one keyed source.
pub struct ChangelogDecoder {
    format: Format,
    /// Whole rows: the table's columns.
    rows: JsonDecoder,
    /// Keys: the primary key's columns.
    keys: JsonDecoder,
    key_names: Vec<String>,
    key_columns: Vec<usize>,
    /// Compares a row's key columns with a record's key.
    key_rows: RowConverter,
    schema: SchemaRef,
}

/// How an entry's bytes are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// As a whole row.
    Row,
    /// As a key.
    Key,
    /// As a key that must equal the key columns of the row just before (upsert's key).
    CheckKey,
    /// Not at all: a write without columns (truncate).
    Nothing,
}

/// One write a record asks for, before decoding.
struct Entry<'a> {
    record: usize,
    op: Op,
    via: Via,
    /// What the bytes are, for errors (`the value`, `"after"`).
    what: &'static str,
    bytes: Cow<'a, [u8]>,
}

/// Debezium's envelope: only what is read of it, as the bytes of each member.
struct Envelope<'a> {
    before: Option<&'a [u8]>,
    after: Option<&'a [u8]>,
    op: Option<String>,
    /// Kafka Connect's JSON with schemas: the envelope is here.
    payload: Option<&'a [u8]>,
}

impl<'a> Envelope<'a> {
    fn parse(bytes: &'a [u8]) -> std::result::Result<Self, String> {
        let [before, after, op, payload] = members(bytes, ["before", "after", "op", "payload"])?;
        let op = op
            .map(serde_json::from_slice::<String>)
            .transpose()
            .map_err(|e| format!("\"op\" is not a string: {e}"))?;
        Ok(Envelope {
            before,
            after,
            op,
            payload,
        })
    }
}

impl ChangelogDecoder {
    pub fn new(def: &SourceDef, format: Format) -> Result<Self> {
        let key_columns = def.as_table().key_columns()?;
        let only = |columns: Vec<crate::sql::ColumnDef>| SourceDef {
            columns,
            watermark: None,
            includes: Vec::new(),
            primary_key: Vec::new(),
            ..def.clone()
        };
        let key_defs: Vec<_> = key_columns
            .iter()
            .map(|i| def.columns[*i].clone())
            .collect();
        let key_rows = RowConverter::new(
            key_defs
                .iter()
                .map(|c| SortField::new(c.column_type.arrow.clone()))
                .collect(),
        )?;
        Ok(ChangelogDecoder {
            format,
            rows: JsonDecoder::new(&only(def.columns.clone())),
            keys: JsonDecoder::new(&only(key_defs)),
            key_names: def.primary_key.clone(),
            key_columns,
            key_rows,
            schema: writes_schema(def),
        })
    }

    /// Decodes `records` (of one partition, in offset order) into writes, in order.
    pub fn decode(&mut self, partition: i32, records: &[Record<'_>]) -> Result<Decoded> {
        let mut entries = Vec::with_capacity(records.len() + records.len() / 2);
        let mut bad: HashMap<usize, String> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            let read = match self.format {
                Format::Upsert => self.upsert(i, record, &mut entries),
                Format::Debezium => debezium(i, record, &mut entries),
                Format::Json => Err("not a change record".into()),
            };
            if let Err(error) = read {
                bad.insert(i, error);
            }
        }
        let rows = self.decode_via(partition, &entries, Via::Row, &mut bad)?;
        let keys = self.decode_via(partition, &entries, Via::Key, &mut bad)?;
        self.check_keys(&entries, &rows, &keys, &mut bad)?;
        let batch = self.writes(records, &entries, &rows, &keys, &bad)?;
        let mut rejected: Vec<Rejected> = bad
            .into_iter()
            .map(|(i, error)| {
                let record = &records[i];
                Rejected {
                    partition,
                    offset: record.offset,
                    raw: record.payload.or(record.key).unwrap_or_default().to_vec(),
                    error,
                }
            })
            .collect();
        rejected.sort_by_key(|r| r.offset);
        Ok(Decoded { batch, rejected })
    }

    /// An upsert record's entries: its row and key, or (null value) its key to remove.
    fn upsert<'a>(
        &self,
        i: usize,
        record: &Record<'a>,
        entries: &mut Vec<Entry<'a>>,
    ) -> std::result::Result<(), String> {
        let key = record
            .key
            .ok_or("an upsert message needs a key: the primary key as JSON")?;
        let key = self.key_object(key)?;
        let entry = |op, via, what, bytes| Entry {
            record: i,
            op,
            via,
            what,
            bytes,
        };
        match record.payload {
            None => entries.push(entry(Op::Delete, Via::Key, "the key", key)),
            Some(value) => {
                entries.push(entry(Op::Upsert, Via::Row, "the value", value.into()));
                entries.push(entry(Op::Upsert, Via::CheckKey, "the key", key));
            }
        }
        Ok(())
    }

    /// A key as a JSON object: as sent, or a bare value wrapped for a one-column key.
    fn key_object<'a>(&self, key: &'a [u8]) -> std::result::Result<Cow<'a, [u8]>, String> {
        if key.trim_ascii_start().starts_with(b"{") {
            return Ok(key.into());
        }
        let [name] = self.key_names.as_slice() else {
            return Err(format!(
                "the key must be a JSON object of the primary key columns ({})",
                self.key_names.join(", ")
            ));
        };
        // One whole value, so nothing it holds can add members to the object around it.
        serde_json::from_slice::<IgnoredAny>(key)
            .map_err(|e| format!("the key is not JSON: {e}"))?;
        let mut object = serde_json::to_vec(name).map_err(|e| e.to_string())?;
        object.insert(0, b'{');
        object.push(b':');
        object.extend_from_slice(key.trim_ascii());
        object.push(b'}');
        Ok(object.into())
    }

    /// Decodes the entries of `via` (with [`Via::CheckKey`] for keys); returns each entry's
    /// row in the batch, and marks the records of entries that did not decode as bad.
    fn decode_via(
        &mut self,
        partition: i32,
        entries: &[Entry<'_>],
        via: Via,
        bad: &mut HashMap<usize, String>,
    ) -> Result<Decoding> {
        let wanted = |e: &Entry| match via {
            Via::Key => matches!(e.via, Via::Key | Via::CheckKey),
            other => e.via == other,
        };
        let chosen: Vec<usize> = (0..entries.len())
            .filter(|&n| wanted(&entries[n]) && !bad.contains_key(&entries[n].record))
            .collect();
        let records: Vec<Record<'_>> = chosen
            .iter()
            .map(|&n| Record {
                offset: n as i64,
                timestamp_ms: None,
                key: None,
                payload: Some(&entries[n].bytes),
            })
            .collect();
        let decoder = match via {
            Via::Row => &mut self.rows,
            _ => &mut self.keys,
        };
        let decoded = decoder.decode(partition, &records)?;
        let failed: HashMap<usize, &str> = decoded
            .rejected
            .iter()
            .map(|r| (r.offset as usize, r.error.as_str()))
            .collect();
        let mut row_of = HashMap::with_capacity(chosen.len());
        for n in chosen {
            match failed.get(&n) {
                Some(error) => {
                    let entry = &entries[n];
                    bad.entry(entry.record)
                        .or_insert_with(|| format!("{}: {error}", entry.what));
                }
                None => {
                    row_of.insert(n, row_of.len());
                }
            }
        }
        Ok(Decoding {
            batch: decoded.batch,
            row_of,
        })
    }

    /// Upsert: a record whose key differs from its row's key columns is bad.
    fn check_keys(
        &self,
        entries: &[Entry<'_>],
        rows: &Decoding,
        keys: &Decoding,
        bad: &mut HashMap<usize, String>,
    ) -> Result<()> {
        if !entries.iter().any(|e| e.via == Via::CheckKey) {
            return Ok(());
        }
        let row_keys: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|i| Arc::clone(rows.batch.column(*i)))
            .collect();
        let row_keys = self.key_rows.convert_columns(&row_keys)?;
        let record_keys = self.key_rows.convert_columns(keys.batch.columns())?;
        for (n, entry) in entries.iter().enumerate() {
            if entry.via != Via::CheckKey || bad.contains_key(&entry.record) {
                continue;
            }
            // The row is the entry before, from the same record.
            let (Some(row), Some(key)) = (rows.row_of.get(&(n - 1)), keys.row_of.get(&n)) else {
                continue;
            };
            if row_keys.row(*row) != record_keys.row(*key) {
                bad.insert(
                    entry.record,
                    format!(
                        "the key does not match the primary key ({}) of the value",
                        self.key_names.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }

    /// The writes of the records that are not bad, in order.
    fn writes(
        &self,
        records: &[Record<'_>],
        entries: &[Entry<'_>],
        rows: &Decoding,
        keys: &Decoding,
        bad: &HashMap<usize, String>,
    ) -> Result<RecordBatch> {
        let width = self.schema.fields().len() - 3;
        // Sources to interleave from: rows, keys widened to the table's columns, one null row.
        let mut key_at = vec![None; width];
        for (k, i) in self.key_columns.iter().enumerate() {
            key_at[*i] = Some(k);
        }
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let (mut ops, mut offsets, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for (n, entry) in entries.iter().enumerate() {
            if bad.contains_key(&entry.record) || entry.via == Via::CheckKey {
                continue;
            }
            let pick = match entry.via {
                Via::Row => rows.row_of.get(&n).map(|r| (0, *r)),
                Via::Key => keys.row_of.get(&n).map(|r| (1, *r)),
                _ => Some((2, 0)),
            };
            let Some(pick) = pick else { continue };
            let record = &records[entry.record];
            picks.push(pick);
            ops.push(entry.op as u8);
            offsets.push(record.offset);
            raw.push(entry.op.checked().then_some(record.payload).flatten());
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(width + 3);
        for (i, field) in self.schema.fields()[..width].iter().enumerate() {
            let from_keys = match key_at[i] {
                Some(k) => Arc::clone(keys.batch.column(k)),
                None => new_null_array(field.data_type(), keys.batch.num_rows()),
            };
            let null = new_null_array(field.data_type(), 1);
            let sources: [&dyn Array; 3] = [rows.batch.column(i).as_ref(), &from_keys, &null];
            columns.push(interleave(&sources, &picks)?);
        }
        columns.push(Arc::new(UInt8Array::from(ops)));
        columns.push(Arc::new(Int64Array::from(offsets)));
        columns.push(Arc::new(BinaryArray::from(raw)));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// What one decoder made of its entries.
struct Decoding {
    batch: RecordBatch,
    /// Entry index → its row in `batch`.
    row_of: HashMap<usize, usize>,
}

/// A Debezium record's entries; none for a tombstone.
fn debezium<'a>(
    i: usize,
    record: &Record<'a>,
    entries: &mut Vec<Entry<'a>>,
) -> std::result::Result<(), String> {
    let Some(payload) = record.payload else {
        return Ok(());
    };
    let not_envelope = |e: String| format!("not a Debezium change event: {e}");
    let mut envelope = Envelope::parse(payload).map_err(not_envelope)?;
    if envelope.op.is_none()
        && let Some(inner) = envelope.payload
    {
        envelope = Envelope::parse(inner).map_err(not_envelope)?;
    }
    let image = |value: Option<&'a [u8]>, name: &str, op: &str| {
        value
            .map(Cow::Borrowed)
            .ok_or_else(|| format!("a Debezium \"{op}\" event without \"{name}\""))
    };
    let entry = |op, via, what, bytes| Entry {
        record: i,
        op,
        via,
        what,
        bytes,
    };
    match envelope.op.as_deref() {
        Some(op @ ("c" | "r")) => {
            let after = image(envelope.after, "after", op)?;
            entries.push(entry(Op::Upsert, Via::Row, "\"after\"", after));
        }
        Some("u") => {
            let after = image(envelope.after, "after", "u")?;
            if let Some(before) = envelope.before {
                let before = Cow::Borrowed(before);
                entries.push(entry(Op::Before, Via::Key, "\"before\"", before));
            }
            entries.push(entry(Op::Update, Via::Row, "\"after\"", after));
        }
        Some("d") => {
            let before = image(envelope.before, "before", "d")?;
            entries.push(entry(Op::DeleteExisting, Via::Key, "\"before\"", before));
        }
        Some("t") => entries.push(entry(Op::Truncate, Via::Nothing, "", Cow::Borrowed(&[]))),
        Some(other) => return Err(format!("unknown Debezium op \"{other}\"")),
        None => return Err("a Debezium message without \"op\"".into()),
    }
    Ok(())
}

/// A decoded write's op.
pub fn op_of(ops: &UInt8Array, row: usize) -> Result<Op> {
    Op::from_u8(ops.value(row))
        .ok_or_else(|| Error::Internal(format!("unknown write op {}", ops.value(row))))
}

/// The source a `CREATE TABLE … PRIMARY KEY … WITH (…)` statement defines (for tests).
#[cfg(test)]
pub(crate) fn parsed_def(sql: &str) -> SourceDef {
    use crate::sql::{Statement, parser::parse};
    let Some(Statement::CreateSource(c)) = parse(sql).unwrap().pop() else {
        panic!("not a CREATE TABLE … WITH: {sql}")
    };
    SourceDef {
        id: 1,
        name: c.name,
        columns: c.columns,
        watermark: None,
        includes: Vec::new(),
        options: Default::default(),
        created_at_ms: 0,
        primary_key: c.primary_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    fn decoder(sql: &str, format: Format) -> ChangelogDecoder {
        ChangelogDecoder::new(&parsed_def(sql), format).unwrap()
    }

    fn records(messages: &[(Option<&'static str>, Option<&'static str>)]) -> Vec<Record<'static>> {
        messages
            .iter()
            .enumerate()
            .map(|(i, (key, payload))| Record {
                offset: 10 + i as i64,
                timestamp_ms: None,
                key: key.map(str::as_bytes),
                payload: payload.map(str::as_bytes),
            })
            .collect()
    }

    /// The writes without the record column, and each rejected offset with its error.
    fn decode(d: &mut ChangelogDecoder, input: &[Record<'_>]) -> (String, Vec<(i64, String)>) {
        let decoded = d.decode(0, input).unwrap();
        let batch = decoded
            .batch
            .project(&(0..decoded.batch.num_columns() - 1).collect::<Vec<_>>());
        let table = pretty_format_batches(&[batch.unwrap()])
            .unwrap()
            .to_string();
        let rejected = decoded
            .rejected
            .into_iter()
            .map(|r| (r.offset, r.error))
            .collect();
        (table, rejected)
    }

    #[test]
    fn upsert_records_set_and_remove_rows_by_key() {
        let mut d = decoder(
            "CREATE TABLE p (sku VARCHAR PRIMARY KEY, price DOUBLE PRECISION) WITH (connector = 'kafka')",
            Format::Upsert,
        );
        let input = records(&[
            (Some(r#""a""#), Some(r#"{"sku": "a", "price": 1.5}"#)),
            (Some(r#"{"sku": "b"}"#), Some(r#"{"sku": "b", "price": 2}"#)),
            (Some(r#""a""#), None),
            (Some(r#""x""#), Some(r#"{"sku": "y", "price": 1}"#)),
            (None, Some(r#"{"sku": "z", "price": 1}"#)),
            (Some(r#""q""#), Some("not json")),
            (Some(r#""q", "sku": "r""#), None),
            (Some("[1]"), None),
        ]);
        let (writes, rejected) = decode(&mut d, &input);
        assert_eq!(
            writes,
            [
                "+-----+-------+------------+----------------+",
                "| sku | price | _sluice_op | _sluice_offset |",
                "+-----+-------+------------+----------------+",
                "| a   | 1.5   | 0          | 10             |",
                "| b   | 2.0   | 0          | 11             |",
                "| a   |       | 1          | 12             |",
                "+-----+-------+------------+----------------+",
            ]
            .join("\n")
        );
        let offsets: Vec<i64> = rejected.iter().map(|r| r.0).collect();
        assert_eq!(offsets, [13, 14, 15, 16, 17], "{rejected:?}");
        assert!(rejected[0].1.contains("does not match"), "{rejected:?}");
        assert!(rejected[1].1.contains("needs a key"), "{rejected:?}");
        assert!(rejected[2].1.starts_with("the value:"), "{rejected:?}");
        assert!(
            rejected[3].1.starts_with("the key is not JSON"),
            "{rejected:?}"
        );
        assert!(rejected[4].1.starts_with("the key:"), "{rejected:?}");
    }

    #[test]
    fn debezium_events_become_writes_the_runner_checks() {
        let mut d = decoder(
            "CREATE TABLE o (id BIGINT PRIMARY KEY, status VARCHAR) WITH (connector = 'kafka')",
            Format::Debezium,
        );
        let input = records(&[
            (
                None,
                Some(
                    r#"{"before": null, "after": {"id": 1, "status": "new"}, "op": "c", "source": {}}"#,
                ),
            ),
            (
                None,
                Some(r#"{"before": {"id": 1}, "after": {"id": 2, "status": "moved"}, "op": "u"}"#),
            ),
            (
                None,
                Some(r#"{"before": {"id": 2}, "after": null, "op": "d"}"#),
            ),
            (None, None),
            (
                None,
                Some(
                    r#"{"schema": {}, "payload": {"after": {"id": 3, "status": "r"}, "op": "r"}}"#,
                ),
            ),
            (None, Some(r#"{"op": "t"}"#)),
            (None, Some(r#"{"after": {"id": 4}}"#)),
            (None, Some(r#"{"op": "u", "before": null}"#)),
            (None, Some(r#"{"op": "c", "after": {"status": "no id"}}"#)),
            (None, Some(r#"{"op": "x"}"#)),
            (None, Some("not json")),
        ]);
        let (writes, rejected) = decode(&mut d, &input);
        assert_eq!(
            writes,
            [
                "+----+--------+------------+----------------+",
                "| id | status | _sluice_op | _sluice_offset |",
                "+----+--------+------------+----------------+",
                "| 1  | new    | 0          | 10             |",
                "| 1  |        | 3          | 11             |",
                "| 2  | moved  | 2          | 11             |",
                "| 2  |        | 4          | 12             |",
                "| 3  | r      | 0          | 14             |",
                "|    |        | 5          | 15             |",
                "+----+--------+------------+----------------+",
            ]
            .join("\n")
        );
        let errors: Vec<(i64, &str)> = rejected.iter().map(|(o, e)| (*o, e.as_str())).collect();
        assert_eq!(errors[0], (16, "a Debezium message without \"op\""));
        assert_eq!(errors[1], (17, "a Debezium \"u\" event without \"after\""));
        assert_eq!(errors[2].0, 18);
        assert!(errors[2].1.starts_with("\"after\":"), "{errors:?}");
        assert_eq!(errors[3], (19, "unknown Debezium op \"x\""));
        assert_eq!(errors[4].0, 20);
        assert!(
            errors[4].1.starts_with("not a Debezium change event"),
            "{errors:?}"
        );
        assert_eq!(errors.len(), 5);
    }
}

/// Fuzz target: every change record (Debezium or upsert; good ones with bytes changed and cut,
/// and raw bytes) becomes writes or a rejection — never both or neither — and no key or value
/// makes decoding panic or fail the whole chunk. `scripts/fuzz` runs it longer.
#[cfg(test)]
mod fuzz {
    use std::collections::BTreeSet;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;

    const DEBEZIUM: &[(&str, &str)] = &[
        (
            r#"{"id":1}"#,
            r#"{"before":null,"after":{"id":1,"status":"new","amount":2.5},"op":"c"}"#,
        ),
        (
            r#"{"id":1}"#,
            r#"{"before":{"id":1},"after":{"id":2,"status":"x","amount":-1e3},"op":"u"}"#,
        ),
        (
            r#"{"id":2}"#,
            r#"{"before":{"id":2,"status":"x"},"after":null,"op":"d"}"#,
        ),
        (
            "1",
            r#"{"schema":{"type":"struct"},"payload":{"after":{"id":3},"op":"r"}}"#,
        ),
    ];
    const UPSERT: &[(&str, &str)] = &[
        (r#"{"id":1}"#, r#"{"id":1,"status":"new","amount":2.5}"#),
        ("7", r#"{"id":7,"status":"\u00e9\"","amount":null}"#),
        (r#"{"id": 9}"#, r#"{"status":"no id here","id":9}"#),
    ];

    /// One record: which good one, whether the edits go to its key, the edits (position,
    /// byte), where to cut it, or raw bytes instead.
    type Input = (u8, bool, Vec<(u8, u8)>, Option<u8>, Option<Vec<u8>>);

    fn edited(good: &str, edits: &[(u8, u8)], cut: Option<u8>) -> Vec<u8> {
        let mut bytes = good.as_bytes().to_vec();
        for &(at, byte) in edits {
            let at = usize::from(at) % bytes.len();
            bytes[at] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(usize::from(cut) % (bytes.len() + 1));
        }
        bytes
    }

    #[test]
    fn fuzz_change_records() {
        let sql = "CREATE TABLE o (id BIGINT PRIMARY KEY, status VARCHAR, amount DOUBLE \
                   PRECISION) WITH (connector = 'kafka')";
        bolero::check!()
            .with_type::<(bool, Vec<Input>)>()
            .for_each(|(debezium, inputs)| {
                let (format, good) = match debezium {
                    true => (Format::Debezium, DEBEZIUM),
                    false => (Format::Upsert, UPSERT),
                };
                let mut decoder = ChangelogDecoder::new(&parsed_def(sql), format).unwrap();
                let messages: Vec<(Vec<u8>, Vec<u8>)> = inputs
                    .iter()
                    .map(|(which, on_key, edits, cut, raw)| {
                        let (key, value) = good[usize::from(*which) % good.len()];
                        match (raw, on_key) {
                            (Some(raw), _) => (key.as_bytes().to_vec(), raw.clone()),
                            (None, true) => (edited(key, edits, *cut), value.as_bytes().to_vec()),
                            (None, false) => (key.as_bytes().to_vec(), edited(value, edits, *cut)),
                        }
                    })
                    .collect();
                let records: Vec<Record<'_>> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, (key, value))| Record {
                        offset: i as i64,
                        timestamp_ms: None,
                        key: Some(key),
                        payload: Some(value),
                    })
                    .collect();
                let decoded = decoder.decode(0, &records).unwrap();
                let written: BTreeSet<i64> = decoded
                    .batch
                    .column_by_name(OFFSET_COLUMN)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied()
                    .collect();
                let rejected: BTreeSet<i64> = decoded.rejected.iter().map(|r| r.offset).collect();
                assert!(written.is_disjoint(&rejected), "{messages:?}");
                assert_eq!(
                    written.len() + rejected.len(),
                    records.len(),
                    "{messages:?}"
                );
            });
    }
}
