//! Folding a run of changelog files by key, so that compaction bounds a keyed relation's files
//! by its rows rather than by its history.
//!
//! A keyed table's or keyed source's files are changelogs: rows marked deleted or inserted
//! (the last column, [`crate::table::OP_COLUMN`]), each change of a key a delete of the row it
//! had and an insert of the row it has. Of a run of them, per key, only two rows matter to
//! what comes after: the first, if it deletes a row from before the run, and the last, if it
//! inserts. Replaying the folded run after the files before it leaves every key as replaying
//! the run did, and a view backfilling from it sees the run's net changes. A run from the
//! first file has no row before it, so its deletes go too.
//!
//! Folding takes two reads of the run: [`Fold::scan`] learns, per key, where its last row is,
//! so memory holds the keys (not the rows); [`Kept::filter`] then keeps the chosen rows, in
//! the run's order (a key's delete before its insert).

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::buffer::{BooleanBuffer, MutableBuffer};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};

/// The first pass over a run: per key, where its last row is and whether it inserts.
pub struct Fold {
    key_columns: Vec<usize>,
    keys: RowConverter,
    last: HashMap<Box<[u8]>, (usize, bool)>,
    /// The rows kept so far (the first deletes); the last inserts are added at the end.
    keep: Vec<usize>,
    rows: usize,
    from_start: bool,
}

impl Fold {
    /// A fold of changelog batches whose key is `key_columns` of `first`'s schema;
    /// `from_start` when the run starts at the relation's first file.
    pub fn new(first: &RecordBatch, key_columns: Vec<usize>, from_start: bool) -> Result<Self> {
        let schema = first.schema();
        let fields = key_columns
            .iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect();
        Ok(Fold {
            keys: RowConverter::new(fields)?,
            key_columns,
            last: HashMap::new(),
            keep: Vec::new(),
            rows: 0,
            from_start,
        })
    }

    /// Takes in the next batch of the run.
    pub fn scan(&mut self, batch: &RecordBatch) -> Result<()> {
        let inserts = ops(batch)?;
        let columns: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect();
        let keys = self.keys.convert_columns(&columns)?;
        for (i, key) in keys.iter().enumerate() {
            let (at, insert) = (self.rows + i, inserts.value(i));
            match self.last.get_mut(key.as_ref()) {
                Some(last) => *last = (at, insert),
                None => {
                    if !insert && !self.from_start {
                        self.keep.push(at);
                    }
                    self.last.insert(key.as_ref().into(), (at, insert));
                }
            }
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// What the second pass keeps.
    pub fn finish(self) -> Kept {
        let mut keep = self.keep;
        keep.extend(
            self.last
                .into_values()
                .filter(|(_, insert)| *insert)
                .map(|(at, _)| at),
        );
        let mut bits = MutableBuffer::new_null(self.rows);
        for at in keep {
            datafusion::arrow::util::bit_util::set_bit(bits.as_slice_mut(), at);
        }
        Kept {
            keep: BooleanBuffer::new(bits.into(), 0, self.rows),
            at: 0,
        }
    }
}

/// The second pass: the rows a [`Fold`] keeps, batch by batch in the same order.
pub struct Kept {
    keep: BooleanBuffer,
    at: usize,
}

impl Kept {
    /// The kept rows of the run's next batch.
    pub fn filter(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        if self.at + rows > self.keep.len() {
            return Err(Error::Internal(
                "a changelog file changed between the two reads of its fold".into(),
            ));
        }
        let mask = BooleanArray::new(self.keep.slice(self.at, rows), None);
        self.at += rows;
        Ok(filter_record_batch(batch, &mask)?)
    }
}

/// The op column of a changelog batch (its last): true for an insert.
fn ops(batch: &RecordBatch) -> Result<&BooleanArray> {
    batch
        .columns()
        .last()
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .filter(|c| c.null_count() == 0)
        .ok_or_else(|| Error::Internal("a changelog file without its op column".into()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::assert_batches_eq;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn changes(rows: &[(i64, &str, bool)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
            Field::new("_sluice_insert", DataType::Boolean, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2)))),
            ],
        )
        .unwrap()
    }

    fn fold(batches: &[RecordBatch], from_start: bool) -> Vec<RecordBatch> {
        let mut fold = Fold::new(&batches[0], vec![0], from_start).unwrap();
        for batch in batches {
            fold.scan(batch).unwrap();
        }
        let mut kept = fold.finish();
        batches.iter().map(|b| kept.filter(b).unwrap()).collect()
    }

    #[test]
    fn a_run_keeps_each_keys_first_delete_and_last_insert() {
        let run = [
            // 1 existed before the run and changes twice; 2 comes and goes; 3 goes.
            changes(&[(1, "a", false), (1, "b", true), (2, "x", true)]),
            changes(&[(1, "b", false), (1, "c", true), (2, "x", false)]),
            changes(&[(3, "old", false), (4, "new", true)]),
        ];
        assert_batches_eq!(
            [
                "+----+-----+----------------+",
                "| id | v   | _sluice_insert |",
                "+----+-----+----------------+",
                "| 1  | a   | false          |",
                "| 1  | c   | true           |",
                "| 3  | old | false          |",
                "| 4  | new | true           |",
                "+----+-----+----------------+",
            ],
            &fold(&run, false)
        );
        // From the first file nothing was there before: only the rows that stay remain.
        assert_batches_eq!(
            [
                "+----+-----+----------------+",
                "| id | v   | _sluice_insert |",
                "+----+-----+----------------+",
                "| 1  | c   | true           |",
                "| 4  | new | true           |",
                "+----+-----+----------------+",
            ],
            &fold(&run, true)
        );
    }

    /// Rows by key after replaying `changes` over `rows`, as a keyed table does at open.
    fn replay(rows: &mut BTreeMap<i64, String>, changes: &[RecordBatch]) {
        for batch in changes {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let values = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..batch.num_rows() {
                match ops(batch).unwrap().value(i) {
                    true => rows.insert(ids.value(i), values.value(i).to_string()),
                    false => rows.remove(&ids.value(i)),
                };
            }
        }
    }

    /// Each row's inserts less its deletes: what a view summing the changes sees.
    fn net(changes: &[RecordBatch]) -> BTreeMap<(i64, String), i64> {
        let mut net = BTreeMap::new();
        for batch in changes {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let values = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..batch.num_rows() {
                let sign = if ops(batch).unwrap().value(i) { 1 } else { -1 };
                *net.entry((ids.value(i), values.value(i).to_string()))
                    .or_default() += sign;
            }
        }
        net.retain(|_, n| *n != 0);
        net
    }

    #[test]
    fn a_folded_run_replays_and_nets_as_the_run_does() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..300 {
            // A keyed table's changelog, written as KeyedTable writes it.
            let mut rows: BTreeMap<i64, String> = BTreeMap::new();
            let mut batches = Vec::new();
            for _ in 0..rng.random_range(1..12) {
                let mut batch = Vec::new();
                for _ in 0..rng.random_range(1..10) {
                    let key = rng.random_range(0..6);
                    let old = rows.remove(&key);
                    if let Some(old) = &old {
                        batch.push((key, old.clone(), false));
                    }
                    if rng.random_bool(0.7) {
                        let new = format!("v{}", rng.random_range(0..4));
                        batch.push((key, new.clone(), true));
                        rows.insert(key, new);
                    }
                }
                let batch: Vec<(i64, &str, bool)> =
                    batch.iter().map(|(k, v, i)| (*k, v.as_str(), *i)).collect();
                batches.push(changes(&batch));
            }
            let at = rng.random_range(0..batches.len());
            let (before, run) = batches.split_at(at);
            let folded = fold(run, at == 0);
            let (mut straight, mut via_fold) = (BTreeMap::new(), BTreeMap::new());
            replay(&mut straight, &batches);
            replay(&mut via_fold, before);
            replay(&mut via_fold, &folded);
            assert_eq!(straight, via_fold, "case {case}: replay");
            assert_eq!(straight, rows, "case {case}: the model");
            assert_eq!(net(run), net(&folded), "case {case}: net changes");
            let kept: usize = folded.iter().map(|b| b.num_rows()).sum();
            assert!(kept <= 2 * 6, "case {case}: {kept} rows kept of 6 keys");
        }
    }

    #[test]
    fn a_batch_that_changed_between_the_reads_is_an_error() {
        let run = [changes(&[(1, "a", true)])];
        let mut fold = Fold::new(&run[0], vec![0], true).unwrap();
        fold.scan(&run[0]).unwrap();
        let mut kept = fold.finish();
        assert!(
            kept.filter(&changes(&[(1, "a", true), (2, "b", true)]))
                .is_err()
        );
    }
}
