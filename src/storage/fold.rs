//! Folding a run of changelog files, so that compaction bounds a changing relation's files
//! by its rows rather than by its history.
//!
//! A keyed table's or keyed source's files, and an updating view's, are changelogs: rows
//! marked deleted or inserted (the last column, [`crate::table::OP_COLUMN`]).
//!
//! - By key ([`FoldBy::Key`]: a keyed relation, where each change of a key is a delete of the
//!   row it had and an insert of the row it has): of a run, per key, only two rows matter to
//!   what comes after — the first, if it deletes a row from before the run, and the last, if
//!   it inserts.
//! - By row ([`FoldBy::Row`]: an updating view's rows, a multiset): per distinct row, its
//!   inserts and deletes cancel out, and what is left of them (all inserts, or all deletes)
//!   stays.
//!
//! Replaying the folded run after the files before it leaves the relation as replaying the
//! run did, and a reader of the changes sees the run's net changes. A run from the first file
//! has nothing before it, so its deletes go too: it folds to the rows it leaves.
//!
//! Folding takes two reads of the run: [`Fold::scan`] learns which positions stay, so memory
//! holds the keys (or distinct rows) and positions, not the rows; [`Kept::filter`] then keeps
//! them, in the run's order (a key's delete before its insert).

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::buffer::{BooleanBuffer, MutableBuffer};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};

/// How a changelog folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoldBy {
    /// By these columns, a primary key: one row per key.
    Key(Vec<usize>),
    /// By whole rows, a multiset.
    Row,
}

/// What the first pass keeps track of.
enum Track {
    /// Per key, where its last row is and whether it inserts; and the first deletes.
    Key {
        last: HashMap<Box<[u8]>, (usize, bool)>,
        first_deletes: Vec<usize>,
    },
    /// Per distinct row, the positions of what is left of its changes, and whether they are
    /// inserts.
    Row {
        left: HashMap<Box<[u8]>, (bool, Vec<usize>)>,
    },
}

/// The first pass over a run: which positions stay.
pub struct Fold {
    columns: Vec<usize>,
    converter: RowConverter,
    track: Track,
    rows: usize,
    from_start: bool,
}

impl Fold {
    /// A fold of changelog batches of `first`'s schema; `from_start` when the run starts at
    /// the relation's first file.
    pub fn new(first: &RecordBatch, by: &FoldBy, from_start: bool) -> Result<Self> {
        let schema = first.schema();
        let (columns, track) = match by {
            FoldBy::Key(columns) => (
                columns.clone(),
                Track::Key {
                    last: HashMap::new(),
                    first_deletes: Vec::new(),
                },
            ),
            FoldBy::Row => (
                (0..schema.fields().len().saturating_sub(1)).collect(),
                Track::Row {
                    left: HashMap::new(),
                },
            ),
        };
        let fields = columns
            .iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect();
        Ok(Fold {
            converter: RowConverter::new(fields)?,
            columns,
            track,
            rows: 0,
            from_start,
        })
    }

    /// Takes in the next batch of the run.
    pub fn scan(&mut self, batch: &RecordBatch) -> Result<()> {
        let inserts = ops(batch)?;
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect();
        let keys = self.converter.convert_columns(&columns)?;
        for (i, key) in keys.iter().enumerate() {
            let (at, insert) = (self.rows + i, inserts.value(i));
            match &mut self.track {
                Track::Key {
                    last,
                    first_deletes,
                } => match last.get_mut(key.as_ref()) {
                    Some(last) => *last = (at, insert),
                    None => {
                        if !insert {
                            first_deletes.push(at);
                        }
                        last.insert(key.as_ref().into(), (at, insert));
                    }
                },
                Track::Row { left } => {
                    let (inserts, positions) = left
                        .entry(key.as_ref().into())
                        .or_insert_with(|| (insert, Vec::new()));
                    match positions.is_empty() || *inserts == insert {
                        true => {
                            *inserts = insert;
                            positions.push(at);
                        }
                        false => {
                            positions.pop();
                        }
                    }
                }
            }
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// What the second pass keeps.
    pub fn finish(self) -> Kept {
        let from_start = self.from_start;
        let keep: Vec<usize> = match self.track {
            Track::Key {
                last,
                first_deletes,
            } => first_deletes
                .into_iter()
                .filter(|_| !from_start)
                .chain(
                    last.into_values()
                        .filter(|(_, insert)| *insert)
                        .map(|(at, _)| at),
                )
                .collect(),
            Track::Row { left } => left
                .into_values()
                .filter(|(inserts, _)| *inserts || !from_start)
                .flat_map(|(_, positions)| positions)
                .collect(),
        };
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

/// The rows a whole changelog leaves (its batches from the first, in order), without the op
/// column.
pub fn rows_left(batches: &[RecordBatch], by: &FoldBy) -> Result<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let mut fold = Fold::new(first, by, true)?;
    for batch in batches {
        fold.scan(batch)?;
    }
    let mut kept = fold.finish();
    batches
        .iter()
        .map(|batch| {
            let rows = kept.filter(batch)?;
            Ok(rows.project(&(0..rows.num_columns().saturating_sub(1)).collect::<Vec<_>>())?)
        })
        .collect()
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
        fold_by(batches, &FoldBy::Key(vec![0]), from_start)
    }

    fn fold_by(batches: &[RecordBatch], by: &FoldBy, from_start: bool) -> Vec<RecordBatch> {
        let mut fold = Fold::new(&batches[0], by, from_start).unwrap();
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

    /// The changes' rows as (id, v, insert).
    fn decoded(changes: &[RecordBatch]) -> Vec<(i64, String, bool)> {
        let mut rows = Vec::new();
        for batch in changes {
            let column = |i: usize| batch.column(i).as_any();
            let ids = column(0).downcast_ref::<Int64Array>().unwrap();
            let values = column(1).downcast_ref::<StringArray>().unwrap();
            for i in 0..batch.num_rows() {
                let insert = ops(batch).unwrap().value(i);
                rows.push((ids.value(i), values.value(i).to_string(), insert));
            }
        }
        rows
    }

    /// Rows by key after replaying `changes` over `rows`, as a keyed table does at open.
    fn replay(rows: &mut BTreeMap<i64, String>, changes: &[RecordBatch]) {
        for (id, value, insert) in decoded(changes) {
            match insert {
                true => rows.insert(id, value),
                false => rows.remove(&id),
            };
        }
    }

    /// Each row's inserts less its deletes: what a view summing the changes sees.
    fn net(changes: &[RecordBatch]) -> BTreeMap<(i64, String), i64> {
        let mut net = BTreeMap::new();
        for (id, value, insert) in decoded(changes) {
            *net.entry((id, value)).or_default() += if insert { 1 } else { -1 };
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

    /// A multiset's changes (an updating view's) folded by row net to the run's, whatever
    /// the copies: the same net changes, and from the start only the rows left.
    #[test]
    fn a_multiset_run_folds_to_its_net_changes() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for case in 0..300 {
            let mut rows: BTreeMap<(i64, String), i64> = BTreeMap::new();
            let mut batches = Vec::new();
            for _ in 0..rng.random_range(1..12) {
                let mut batch = Vec::new();
                for _ in 0..rng.random_range(1..10) {
                    let row = (
                        rng.random_range(0..3),
                        format!("v{}", rng.random_range(0..2)),
                    );
                    let held = rows.get(&row).copied().unwrap_or(0);
                    let insert = held == 0 || rng.random_bool(0.5);
                    *rows.entry(row.clone()).or_default() += if insert { 1 } else { -1 };
                    batch.push((row.0, row.1, insert));
                }
                let batch: Vec<(i64, &str, bool)> =
                    batch.iter().map(|(k, v, i)| (*k, v.as_str(), *i)).collect();
                batches.push(changes(&batch));
            }
            let at = rng.random_range(0..batches.len());
            let run = &batches[at..];
            let folded = fold_by(run, &FoldBy::Row, at == 0);
            assert_eq!(net(run), net(&folded), "case {case}: net changes");
            let kept: usize = folded.iter().map(|b| b.num_rows()).sum();
            let needed: i64 = net(run).values().map(|n| n.abs()).sum();
            assert_eq!(kept as i64, needed, "case {case}: rows kept");
            if at == 0 {
                rows.retain(|_, n| *n != 0);
                let left: BTreeMap<(i64, String), i64> = net(&folded);
                assert_eq!(left, rows, "case {case}: what the run leaves");
            }
        }
    }

    #[test]
    fn a_batch_that_changed_between_the_reads_is_an_error() {
        let run = [changes(&[(1, "a", true)])];
        let mut fold = Fold::new(&run[0], &FoldBy::Key(vec![0]), true).unwrap();
        fold.scan(&run[0]).unwrap();
        let mut kept = fold.finish();
        assert!(
            kept.filter(&changes(&[(1, "a", true), (2, "b", true)]))
                .is_err()
        );
    }
}
