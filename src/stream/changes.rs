//! Changelogs: rows each marked insert or delete, what an updating relation hands on.
//!
//! An update travels as the delete of the old row and the insert of the new one: two ops,
//! which every consumer handles the same way (a retracting aggregate subtracts, adds), and
//! which a multiset difference of two snapshots yields directly. [`Emitted`] is that
//! difference: an updating result remembers what it last handed on and emits only what
//! changed since.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};

/// Rows and, per row, whether it is inserted (`true`) or deleted (`false`).
#[derive(Debug, Clone)]
pub struct Changes {
    pub rows: RecordBatch,
    pub inserts: BooleanArray,
}

impl Changes {
    /// Every row of `rows` inserted (an append-only batch as a changelog).
    pub fn inserts(rows: RecordBatch) -> Self {
        let inserts = BooleanArray::from(vec![true; rows.num_rows()]);
        Changes { rows, inserts }
    }

    pub fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }

    /// The changes whose rows `mask` keeps.
    pub fn filter(&self, mask: &BooleanArray) -> Result<Self> {
        Ok(Changes {
            rows: filter_record_batch(&self.rows, mask)?,
            inserts: datafusion::arrow::compute::filter(&self.inserts, mask)?
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| Error::Internal("filtered ops are not boolean".into()))?,
        })
    }

    /// The same ops over other rows (a projection of these).
    pub fn with_rows(&self, rows: RecordBatch) -> Self {
        Changes {
            rows,
            inserts: self.inserts.clone(),
        }
    }
}

/// What an updating result last handed on: the snapshot the next one is compared with.
#[derive(Debug, Clone)]
pub struct Emitted {
    schema: SchemaRef,
    rows: Option<RecordBatch>,
}

impl Emitted {
    pub fn new(schema: SchemaRef) -> Self {
        Emitted { schema, rows: None }
    }

    /// Takes `snapshot` as handed on, without changes (a restored result, which readers of
    /// it already hold as of the same checkpoint).
    pub fn reset(&mut self, snapshot: &[RecordBatch]) -> Result<()> {
        self.rows = Some(concat_batches(&self.schema, snapshot)?);
        Ok(())
    }

    /// The changes from the last snapshot to `snapshot` (as multisets of whole rows: deletes
    /// first, then inserts), which becomes the last; `None` when nothing changed.
    pub fn diff(&mut self, snapshot: &[RecordBatch]) -> Result<Option<Changes>> {
        let next = concat_batches(&self.schema, snapshot)?;
        let previous = self
            .rows
            .replace(next.clone())
            .unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
        if previous.num_rows() == 0 && next.num_rows() == 0 {
            return Ok(None);
        }
        let fields = self
            .schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let old = converter.convert_columns(previous.columns())?;
        let new = converter.convert_columns(next.columns())?;
        let mut unmatched: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for (i, row) in old.iter().enumerate() {
            unmatched.entry(row.data()).or_default().push(i as u32);
        }
        let mut inserted = Vec::new();
        for (i, row) in new.iter().enumerate() {
            match unmatched.get_mut(row.as_ref()).and_then(Vec::pop) {
                Some(_) => {}
                None => inserted.push(i as u32),
            }
        }
        let mut deleted: Vec<u32> = unmatched.into_values().flatten().collect();
        if deleted.is_empty() && inserted.is_empty() {
            return Ok(None);
        }
        deleted.sort_unstable();
        let deletes = take_record_batch(&previous, &UInt32Array::from(deleted))?;
        let inserts = take_record_batch(&next, &UInt32Array::from(inserted))?;
        let ops = std::iter::repeat_n(false, deletes.num_rows())
            .chain(std::iter::repeat_n(true, inserts.num_rows()))
            .collect::<Vec<bool>>();
        Ok(Some(Changes {
            rows: concat_batches(&self.schema, [&deletes, &inserts])?,
            inserts: BooleanArray::from(ops),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::assert_batches_eq;

    use super::*;

    fn batch(keys: &[&str], counts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(counts.to_vec())),
            ],
        )
        .unwrap()
    }

    fn shown(changes: &Changes) -> RecordBatch {
        let mut columns = changes.rows.columns().to_vec();
        columns.push(Arc::new(changes.inserts.clone()));
        let mut fields: Vec<Field> = changes
            .rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("insert", DataType::Boolean, false));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    #[test]
    fn a_diff_deletes_what_changed_or_went_and_inserts_what_changed_or_came() {
        let first = batch(&["a", "b", "c"], &[1, 2, 3]);
        let mut emitted = Emitted::new(first.schema());
        let changes = emitted.diff(&[first]).unwrap().unwrap();
        assert_batches_eq!(
            [
                "+---+---+--------+",
                "| k | n | insert |",
                "+---+---+--------+",
                "| a | 1 | true   |",
                "| b | 2 | true   |",
                "| c | 3 | true   |",
                "+---+---+--------+",
            ],
            &[shown(&changes)]
        );
        let changes = emitted
            .diff(&[batch(&["c", "a"], &[3, 5]), batch(&["d"], &[1])])
            .unwrap()
            .unwrap();
        assert_batches_eq!(
            [
                "+---+---+--------+",
                "| k | n | insert |",
                "+---+---+--------+",
                "| a | 1 | false  |",
                "| b | 2 | false  |",
                "| a | 5 | true   |",
                "| d | 1 | true   |",
                "+---+---+--------+",
            ],
            &[shown(&changes)]
        );
        let same = [batch(&["d", "a", "c"], &[1, 5, 3])];
        assert!(emitted.diff(&same).unwrap().is_none());
    }

    #[test]
    fn duplicate_rows_are_a_multiset() {
        let mut emitted = Emitted::new(batch(&[], &[]).schema());
        emitted.reset(&[batch(&["a", "a"], &[1, 1])]).unwrap();
        let changes = emitted.diff(&[batch(&["a"], &[1])]).unwrap().unwrap();
        assert_eq!(changes.num_rows(), 1);
        assert!(!changes.inserts.value(0));
    }
}
