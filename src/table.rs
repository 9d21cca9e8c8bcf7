//! Tables with a primary key: one row per key, which INSERT overwrites (RisingWave's default,
//! not Postgres' 23505), UPDATE changes and DELETE removes.
//!
//! Each keyed table's current rows live in memory, so a write knows the row it replaces. A
//! write is stored as a *changelog file*: the table's columns plus [`OP_COLUMN`] (false: a row
//! as it was, true: as it is now), written and committed through the manifest like an append,
//! so views over the table take those files in order as inserts and deletes, and opening the
//! database replays them. Queries read the rows in memory. Writes to one table run one at a
//! time (a statement computes its changes against the rows the one before it left).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt8Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::catalog::source::SourceDef;
use crate::catalog::table::TableDef;
use crate::error::{Error, Result};
use crate::source::changelog::{Op, op_of};
use crate::storage::DataFile;
use crate::storage::Storage;
use crate::stream::changes::Changes;
use crate::stream::state_memory::{StateMemory, StatePools};

/// The column of a keyed table's files that says whether a row is inserted or deleted.
pub const OP_COLUMN: &str = "_sluice_insert";

/// The schema of a keyed table's changelog files.
pub fn changelog_schema(table: &TableDef) -> SchemaRef {
    with_op_column(&table.schema())
}

/// The schema of changelog files of rows of `schema` (a keyed table's, an updating view's):
/// its columns and [`OP_COLUMN`].
pub fn with_op_column(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// A changelog file's batch of `changes`.
pub fn changelog_batch(changes: &Changes) -> Result<RecordBatch> {
    let mut columns = changes.rows.columns().to_vec();
    columns.push(Arc::new(changes.inserts.clone()));
    Ok(RecordBatch::try_new(
        with_op_column(&changes.rows.schema()),
        columns,
    )?)
}

/// A batch of a changelog file as changes to rows of `schema` (the table's).
pub fn changes_of(batch: &RecordBatch, schema: &SchemaRef) -> Result<Changes> {
    let width = schema.fields().len();
    let ops = batch
        .columns()
        .get(width)
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .ok_or_else(|| Error::Internal("a keyed table's file has no op column".into()))?
        .clone();
    let rows = RecordBatch::try_new(Arc::clone(schema), batch.columns()[..width].to_vec())?;
    Ok(Changes { rows, inserts: ops })
}

/// Every keyed table's current rows, by table name.
#[derive(Debug)]
pub struct KeyedTables {
    tables: Mutex<HashMap<String, Arc<KeyedTable>>>,
    /// Where their rows are held (streaming state's share of `--memory-limit`).
    memory: StatePools,
}

impl KeyedTables {
    fn tables(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<KeyedTable>>> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads every keyed table of the newest manifest by replaying its files.
    pub async fn open(storage: &Storage, memory: StatePools) -> Result<Self> {
        let tables = KeyedTables {
            tables: Mutex::default(),
            memory,
        };
        let manifest = storage.manifest();
        for state in manifest.tables.values().filter(|t| t.def.keyed()) {
            let table = KeyedTable::try_new(state.def.clone(), &tables.memory)?;
            table.replay(storage, &state.files).await?;
            tables
                .tables()
                .insert(state.def.name.clone(), Arc::new(table));
        }
        Ok(tables)
    }

    /// The rows of table `def` if it is keyed: those replayed at open, or none yet for a
    /// table created since (a table dropped and created again under its name is another).
    pub fn get(&self, def: &TableDef) -> Result<Option<Arc<KeyedTable>>> {
        if !def.keyed() {
            return Ok(None);
        }
        let mut tables = self.tables();
        if let Some(table) = tables.get(&def.name).filter(|t| t.def.id == def.id) {
            return Ok(Some(Arc::clone(table)));
        }
        let table = Arc::new(KeyedTable::try_new(def.clone(), &self.memory)?);
        tables.insert(def.name.clone(), Arc::clone(&table));
        Ok(Some(table))
    }

    pub fn remove(&self, name: &str) {
        self.tables().remove(name);
    }
}

/// How a write gives its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Whole rows: each replaces the row of its key, or is added.
    Upsert,
    /// Key columns only: each removes the row of its key, if there is one.
    Delete,
}

/// One keyed table: its rows by key, in Arrow's row format.
#[derive(Debug)]
pub struct KeyedTable {
    def: TableDef,
    schema: SchemaRef,
    key_columns: Vec<usize>,
    rows: RowConverter,
    keys: RowConverter,
    current: Mutex<Current>,
    /// Held by the write under way, with the rows' share of the memory pool.
    writing: tokio::sync::Mutex<StateMemory>,
}

/// The rows by key, and the bytes they take.
#[derive(Debug, Default)]
struct Current {
    rows: Rows,
    bytes: usize,
}

impl Current {
    /// Sets (`None`: removes) the row of `key`, adding the rows that changed to `images`: the
    /// row it had (deleted), the row it has now (inserted); nothing if it stays the same.
    fn change(
        &mut self,
        key: Box<[u8]>,
        row: Option<Box<[u8]>>,
        images: &mut Vec<(Box<[u8]>, bool)>,
    ) {
        let old = self.rows.get(&key);
        if old == row.as_ref() {
            return;
        }
        if let Some(old) = old {
            images.push((old.clone(), false));
        }
        if let Some(row) = &row {
            images.push((row.clone(), true));
        }
        self.set(key, row);
    }

    /// Sets (or, with `None`, removes) the row of `key`.
    fn set(&mut self, key: Box<[u8]>, row: Option<Box<[u8]>>) {
        let size = |key: &[u8], row: &[u8]| key.len() + row.len() + ROW_OVERHEAD_BYTES;
        let added = row.as_ref().map_or(0, |r| size(&key, r));
        let old = match row {
            Some(row) => self.rows.insert(key.clone(), row),
            None => self.rows.remove(&key),
        };
        let removed = old.as_ref().map_or(0, |r| size(&key, r));
        self.bytes = (self.bytes + added).saturating_sub(removed);
    }
}

/// What a row costs besides its bytes: the map entry and two boxes.
const ROW_OVERHEAD_BYTES: usize = 64;

/// The rows a write changed so far, by key (`None`: deleted), over the table's rows.
type Overlay = HashMap<Box<[u8]>, Option<Box<[u8]>>>;

/// Rows by key, both in Arrow's row format.
type Rows = HashMap<Box<[u8]>, Box<[u8]>>;

impl KeyedTable {
    /// The rows of a table fed by a connector (a keyed source), empty until replayed.
    pub fn for_source(def: &SourceDef, memory: &StatePools) -> Result<Self> {
        KeyedTable::try_new(def.as_table(), memory)
    }

    fn try_new(def: TableDef, memory: &StatePools) -> Result<Self> {
        let schema = def.schema();
        let key_columns = def.key_columns()?;
        let sort_fields = |columns: &mut dyn Iterator<Item = usize>| {
            columns
                .map(|i| SortField::new(schema.field(i).data_type().clone()))
                .collect::<Vec<_>>()
        };
        let rows = RowConverter::new(sort_fields(&mut (0..schema.fields().len())))?;
        let keys = RowConverter::new(sort_fields(&mut key_columns.iter().copied()))?;
        Ok(KeyedTable {
            schema,
            key_columns,
            rows,
            keys,
            current: Mutex::new(Current::default()),
            writing: tokio::sync::Mutex::new(StateMemory::new(
                memory,
                format!("table {}", def.name),
            )),
            def,
        })
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The columns of the primary key, in key order.
    pub fn key_columns(&self) -> &[usize] {
        &self.key_columns
    }

    /// The current rows.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let current = self.current();
        let parser = self.rows.parser();
        let columns = self
            .rows
            .convert_rows(current.rows.values().map(|row| parser.parse(row)))?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Applies the changelog `files` in order (opening the database).
    pub async fn replay(&self, storage: &Storage, files: &[DataFile]) -> Result<()> {
        for file in files {
            for batch in storage.read_file(file).await? {
                self.apply(&changes_of(&batch, &self.schema)?)?;
            }
        }
        let bytes = self.current().bytes;
        self.writing.lock().await.hold(bytes);
        Ok(())
    }

    /// Holds the rows' bytes in the memory pool; true if it is full.
    pub async fn account(&self) -> bool {
        let bytes = self.current().bytes;
        let mut memory = self.writing.lock().await;
        memory.hold(bytes);
        memory.exhausted()
    }

    /// Why a source feeding this table waits (its rows fill its share of the memory pool).
    pub async fn stall_message(&self) -> String {
        self.writing.lock().await.stall_message(
            &format!("the rows of table \"{}\"", self.def.name),
            "table",
            "Raise --memory-limit, or delete rows upstream.",
        )
    }

    /// Applies a connector's decoded writes ([`crate::source::changelog`]) in order; returns the
    /// changelog rows they made and the writes rejected (every write of a record goes with
    /// it): an update or delete of a key the table does not hold.
    pub fn apply_writes(&self, writes: &RecordBatch) -> Result<Applied> {
        let width = self.schema.fields().len();
        let column = |i: usize| writes.column(i).as_any();
        let (Some(ops), Some(offsets)) = (
            column(width).downcast_ref::<UInt8Array>(),
            column(width + 1).downcast_ref::<Int64Array>(),
        ) else {
            return Err(Error::Internal("writes without their op column".into()));
        };
        let rows = self.rows.convert_columns(&writes.columns()[..width])?;
        let keys = self.key_rows(writes)?;
        let mut current = self.current();
        let mut images: Vec<(Box<[u8]>, bool)> = Vec::new();
        let mut rejected = Vec::new();
        let mut skip = None;
        let mut before: Option<(i64, Box<[u8]>)> = None;
        for i in 0..writes.num_rows() {
            let offset = offsets.value(i);
            if skip == Some(offset) {
                continue;
            }
            let key: Box<[u8]> = keys.row(i).as_ref().into();
            let row: Box<[u8]> = rows.row(i).as_ref().into();
            let exists = current.rows.contains_key(&key);
            let mut reject = |why: &str| {
                rejected.push((i, format!("{why}: no row has its key")));
                skip = Some(offset);
            };
            match op_of(ops, i)? {
                Op::Upsert => current.change(key, Some(row), &mut images),
                Op::Delete => current.change(key, None, &mut images),
                Op::Before if !exists => reject("an update of a row never seen"),
                Op::Before => before = Some((offset, key)),
                Op::Update => match before.take().filter(|(o, k)| *o == offset && *k != key) {
                    Some((_, old)) => {
                        current.change(old, None, &mut images);
                        current.change(key, Some(row), &mut images);
                    }
                    None if !exists => reject("an update of a row never seen"),
                    None => current.change(key, Some(row), &mut images),
                },
                Op::DeleteExisting if !exists => reject("a delete of a row never seen"),
                Op::DeleteExisting => current.change(key, None, &mut images),
                Op::Truncate => {
                    let keys: Vec<Box<[u8]>> = current.rows.keys().cloned().collect();
                    for key in keys {
                        current.change(key, None, &mut images);
                    }
                }
            }
        }
        drop(current);
        Ok(Applied {
            changes: self.changelog(&images)?,
            rejected,
        })
    }

    /// Changelog rows of `images` (rows in the row format, and whether each is inserted).
    fn changelog(&self, images: &[(Box<[u8]>, bool)]) -> Result<RecordBatch> {
        let parser = self.rows.parser();
        let mut columns = self
            .rows
            .convert_rows(images.iter().map(|(row, _)| parser.parse(row)))?;
        columns.push(Arc::new(BooleanArray::from(
            images.iter().map(|(_, insert)| *insert).collect::<Vec<_>>(),
        )));
        Ok(RecordBatch::try_new(changelog_schema(&self.def), columns)?)
    }

    /// Applies changes read back from the table's files.
    fn apply(&self, changes: &Changes) -> Result<()> {
        let keys = self.key_rows(&changes.rows)?;
        let rows = self.rows.convert_columns(changes.rows.columns())?;
        let mut current = self.current();
        for i in 0..changes.num_rows() {
            let key: Box<[u8]> = keys.row(i).as_ref().into();
            let row = changes
                .inserts
                .value(i)
                .then(|| rows.row(i).as_ref().into());
            current.set(key, row);
        }
        Ok(())
    }

    /// `batch`'s columns as the table's types (a query's timestamps or decimals may differ).
    fn conform(&self, batch: &RecordBatch, write: Write) -> Result<RecordBatch> {
        let types: Vec<&DataType> = match write {
            Write::Upsert => self.schema.fields().iter().map(|f| f.data_type()).collect(),
            Write::Delete => self
                .key_columns
                .iter()
                .map(|i| self.schema.field(*i).data_type())
                .collect(),
        };
        if batch.num_columns() != types.len() {
            return Err(Error::Internal(format!(
                "a write of {} columns to table \"{}\"",
                batch.num_columns(),
                self.def.name
            )));
        }
        let columns = batch
            .columns()
            .iter()
            .zip(types)
            .map(|(c, t)| match c.data_type() == t {
                true => Ok(Arc::clone(c)),
                false => Ok(datafusion::arrow::compute::cast(c, t)?),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    fn key_rows(&self, batch: &RecordBatch) -> Result<datafusion::arrow::row::Rows> {
        let columns: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|i| Arc::clone(batch.column(*i)))
            .collect();
        Ok(self.keys.convert_columns(&columns)?)
    }

    /// Writes `input` (whole rows for an upsert, key columns for a delete) as one changelog
    /// file, committed before it returns; returns the number of rows given. A key given twice
    /// takes the last.
    pub async fn write(
        self: &Arc<Self>,
        storage: &Storage,
        input: SendableRecordBatchStream,
        write: Write,
    ) -> Result<u64> {
        let parts = input.map(move |batch| Ok((write, batch?)));
        self.write_stream(storage, parts.boxed(), write == Write::Upsert)
            .await
    }

    /// Writes several parts (deletes, then upserts, say) as one changelog file.
    pub async fn write_parts(
        self: &Arc<Self>,
        storage: &Storage,
        parts: Vec<(Write, RecordBatch)>,
    ) -> Result<u64> {
        let grows = parts.iter().any(|(write, _)| *write == Write::Upsert);
        let parts = futures::stream::iter(parts.into_iter().map(Ok));
        self.write_stream(storage, parts.boxed(), grows).await
    }

    async fn write_stream(
        self: &Arc<Self>,
        storage: &Storage,
        parts: futures::stream::BoxStream<'static, datafusion::error::Result<(Write, RecordBatch)>>,
        grows: bool,
    ) -> Result<u64> {
        let mut memory = self.writing.lock().await;
        // A write that may add rows waits for none: it fails, as a query out of memory does;
        // deletes always run, since they give memory back.
        if grows && memory.exhausted() {
            return Err(Error::ResourcesExhausted(memory.stall_message(
                &format!("the rows of table \"{}\"", self.def.name),
                "table",
                "Raise --memory-limit, or delete rows.",
            )));
        }
        let overlay = Arc::new(Mutex::new(Overlay::new()));
        let given = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let schema = changelog_schema(&self.def);
        let changelog = {
            let (overlay, given) = (Arc::clone(&overlay), Arc::clone(&given));
            let table = Arc::clone(self);
            parts.map(move |part| {
                let (write, batch) = part?;
                given.fetch_add(
                    batch.num_rows() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                let mut overlay = overlay.lock().unwrap_or_else(|e| e.into_inner());
                table
                    .changes(&batch, write, &mut overlay)
                    .map_err(datafusion::error::DataFusionError::from)
            })
        };
        let changelog = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            changelog,
        ));
        storage
            .append_changelog(&self.def, schema, changelog)
            .await?;
        let overlay = std::mem::take(&mut *overlay.lock().unwrap_or_else(|e| e.into_inner()));
        let mut current = self.current();
        for (key, row) in overlay {
            current.set(key, row);
        }
        memory.hold(current.bytes);
        Ok(given.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The changelog rows of one batch of a write: for each row in turn, the row its key
    /// had (deleted) and the row it has now (inserted); nothing where nothing changes.
    fn changes(
        &self,
        batch: &RecordBatch,
        write: Write,
        overlay: &mut Overlay,
    ) -> Result<RecordBatch> {
        let batch = &self.conform(batch, write)?;
        for (position, i) in self.key_columns.iter().enumerate() {
            let column = match write {
                Write::Upsert => batch.column(*i),
                Write::Delete => batch.column(position),
            };
            if column.null_count() > 0 {
                return Err(Error::NotNullViolation {
                    column: self.def.primary_key[position].clone(),
                });
            }
        }
        let keys = match write {
            Write::Upsert => self.key_rows(batch)?,
            Write::Delete => self.keys.convert_columns(batch.columns())?,
        };
        let rows = match write {
            Write::Upsert => Some(self.rows.convert_columns(batch.columns())?),
            Write::Delete => None,
        };
        let current = self.current();
        let mut images: Vec<(Box<[u8]>, bool)> = Vec::new();
        for i in 0..batch.num_rows() {
            let key = keys.row(i);
            let before: Option<Box<[u8]>> = match overlay.get(key.as_ref()) {
                Some(row) => row.clone(),
                None => current.rows.get(key.as_ref()).cloned(),
            };
            let after: Option<Box<[u8]>> = rows.as_ref().map(|r| r.row(i).as_ref().into());
            if before == after {
                continue;
            }
            if let Some(before) = before {
                images.push((before, false));
            }
            if let Some(after) = &after {
                images.push((after.clone(), true));
            }
            overlay.insert(key.as_ref().into(), after);
        }
        drop(current);
        self.changelog(&images)
    }
}

/// What a connector's writes did: the changelog rows, and the writes rejected with why.
#[derive(Debug)]
pub struct Applied {
    pub changes: RecordBatch,
    pub rejected: Vec<(usize, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::changelog::ChangelogDecoder;
    use crate::source::decode::Record;
    use crate::source::options::Format;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::memory_pool::{MemoryPool, UnboundedMemoryPool};

    /// Debezium's changes to `o (id, status)`, applied in order: what the table holds after
    /// each, the changelog they made, and the rejected writes.
    #[test]
    fn debezium_writes_change_rows_and_updates_of_unknown_keys_are_rejected() {
        let def = crate::source::changelog::parsed_def(
            "CREATE TABLE o (id BIGINT PRIMARY KEY, status VARCHAR) WITH (connector = 'kafka')",
        );
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let table = KeyedTable::for_source(&def, &StatePools::new(&pool)).unwrap();
        let mut decoder = ChangelogDecoder::new(&def, Format::Debezium).unwrap();
        let messages = [
            r#"{"op": "c", "after": {"id": 1, "status": "new"}}"#,
            r#"{"op": "c", "after": {"id": 2, "status": "new"}}"#,
            r#"{"op": "u", "before": {"id": 1}, "after": {"id": 3, "status": "moved"}}"#,
            r#"{"op": "u", "after": {"id": 9, "status": "never seen"}}"#,
            r#"{"op": "u", "before": {"id": 8}, "after": {"id": 2, "status": "from 8"}}"#,
            r#"{"op": "d", "before": {"id": 1}}"#,
            r#"{"op": "u", "after": {"id": 2, "status": "paid"}}"#,
            r#"{"op": "r", "after": {"id": 2, "status": "paid"}}"#,
        ];
        let records: Vec<Record<'_>> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| Record {
                offset: i as i64,
                timestamp_ms: None,
                key: None,
                payload: Some(m.as_bytes()),
            })
            .collect();
        let writes = decoder.decode(0, &records).unwrap();
        assert!(writes.rejected.is_empty(), "{:?}", writes.rejected);
        let applied = table.apply_writes(&writes.batch).unwrap();
        let changes = pretty_format_batches(&[applied.changes])
            .unwrap()
            .to_string();
        assert_eq!(
            changes,
            [
                "+----+--------+----------------+",
                "| id | status | _sluice_insert |",
                "+----+--------+----------------+",
                "| 1  | new    | true           |",
                "| 2  | new    | true           |",
                "| 1  | new    | false          |",
                "| 3  | moved  | true           |",
                "| 2  | new    | false          |",
                "| 2  | paid   | true           |",
                "+----+--------+----------------+",
            ]
            .join("\n")
        );
        let rejected: Vec<(usize, &str)> = applied
            .rejected
            .iter()
            .map(|(row, e)| (*row, e.as_str()))
            .collect();
        // Rows of the writes: the update of 9, the move from 8 (its second write is skipped),
        // the delete of 1 (moved away).
        assert_eq!(
            rejected,
            [
                (4, "an update of a row never seen: no row has its key"),
                (5, "an update of a row never seen: no row has its key"),
                (7, "a delete of a row never seen: no row has its key"),
            ]
        );
        let rows = pretty_format_batches(&[table.snapshot().unwrap()])
            .unwrap()
            .to_string();
        let mut lines: Vec<&str> = rows
            .lines()
            .skip(3)
            .filter(|l| l.starts_with("| "))
            .collect();
        lines.sort();
        assert_eq!(lines, ["| 2  | paid   |", "| 3  | moved  |"]);
    }
}
