//! Top-N per partition: `ROW_NUMBER()` / `RANK()` / `DENSE_RANK() OVER (PARTITION BY … ORDER
//! BY …) <= N`, and `ORDER BY … LIMIT N` (one partition, no rank column).
//!
//! Each partition keeps its rows ordered by their sort key in Arrow's row format (whose byte
//! order is the sort order, descending and null placement included), the whole row breaking
//! ties so equal keys come out in one stable order. Over an input whose rows change every row
//! is kept, since a delete can bring the N+1st back; over an append-only input only what can
//! still be in the top N is (`N` rows, or all rows tied at the Nth rank).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::{SortOptions, take_record_batch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::changes::Changes;
use crate::error::{Error, Result};

/// The rank a Top-N numbers its rows with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    /// 1, 2, 3, … (ties in the order of the whole row).
    RowNumber,
    /// Ties share a rank, the next one skips: 1, 1, 3.
    Rank,
    /// Ties share a rank, the next one follows: 1, 1, 2.
    DenseRank,
}

/// A Top-N's definition, as planned.
#[derive(Debug, Clone)]
pub struct TopNSpec {
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    pub order_by: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    pub limit: usize,
    pub rank: Rank,
    /// Whether the output has the rank as its last column (not for `ORDER BY … LIMIT`).
    pub rank_column: bool,
    /// The rows it reads.
    pub input: SchemaRef,
    /// The rows it outputs: the input's, and the rank if `rank_column`.
    pub output: SchemaRef,
    /// The input's rows change (keep every row).
    pub updating: bool,
}

impl TopNSpec {
    /// The operator as `EXPLAIN` shows it.
    pub fn describe(&self) -> String {
        let list = |exprs: Vec<String>| exprs.join(", ");
        format!(
            "TopN: partition=[{}] order=[{}] limit={} rank={} state={} output=updating",
            list(self.partition_by.iter().map(|e| e.to_string()).collect()),
            list(
                self.order_by
                    .iter()
                    .map(|(e, o)| format!("{e} {}", if o.descending { "DESC" } else { "ASC" }))
                    .collect()
            ),
            self.limit,
            match self.rank {
                Rank::RowNumber => "row_number",
                Rank::Rank => "rank",
                Rank::DenseRank => "dense_rank",
            },
            match self.updating {
                true => "every row of each partition (its input's rows change)",
                false => "the rows that can still be in each partition's top",
            }
        )
    }
}

/// Rows of one partition: (sort key, whole row) → how often.
type Partition = BTreeMap<(Box<[u8]>, Box<[u8]>), i64>;

pub struct TopN {
    spec: TopNSpec,
    partition_keys: RowConverter,
    sort_keys: RowConverter,
    rows: RowConverter,
    partitions: HashMap<Box<[u8]>, Partition>,
    bytes: usize,
}

impl TopN {
    pub fn try_new(spec: TopNSpec) -> Result<Self> {
        let types = |exprs: &mut dyn Iterator<Item = (&Arc<dyn PhysicalExpr>, SortOptions)>| {
            exprs
                .map(|(e, options)| {
                    Ok(SortField::new_with_options(
                        e.data_type(&spec.input)?,
                        options,
                    ))
                })
                .collect::<Result<Vec<_>>>()
        };
        // A constant partition when there is no PARTITION BY.
        let partition_fields = match spec.partition_by.is_empty() {
            true => vec![SortField::new(
                datafusion::arrow::datatypes::DataType::Boolean,
            )],
            false => types(
                &mut spec
                    .partition_by
                    .iter()
                    .map(|e| (e, SortOptions::default())),
            )?,
        };
        let sort_fields = types(&mut spec.order_by.iter().map(|(e, o)| (e, *o)))?;
        let row_fields = spec
            .input
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(TopN {
            partition_keys: RowConverter::new(partition_fields)?,
            sort_keys: RowConverter::new(sort_fields)?,
            rows: RowConverter::new(row_fields)?,
            spec,
            partitions: HashMap::new(),
            bytes: 0,
        })
    }

    fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        exprs
            .iter()
            .map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?))
            .collect()
    }

    /// Applies inserts and deletes (a delete of a row never held is ignored).
    pub fn push(&mut self, changes: &Changes) -> Result<()> {
        let batch = &changes.rows;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let partitions = match self.spec.partition_by.is_empty() {
            true => vec![Arc::new(datafusion::arrow::array::BooleanArray::from(vec![
                true;
                batch
                    .num_rows(
                    )
            ])) as ArrayRef],
            false => Self::evaluate(&self.spec.partition_by, batch)?,
        };
        let order: Vec<Arc<dyn PhysicalExpr>> = self
            .spec
            .order_by
            .iter()
            .map(|(e, _)| Arc::clone(e))
            .collect();
        let partitions = self.partition_keys.convert_columns(&partitions)?;
        let sort_keys = self
            .sort_keys
            .convert_columns(&Self::evaluate(&order, batch)?)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        let mut touched = Vec::new();
        for i in 0..batch.num_rows() {
            let insert = changes.inserts.value(i);
            let partition_key = partitions.row(i);
            let entry = (
                sort_keys.row(i).as_ref().into(),
                rows.row(i).as_ref().into(),
            );
            let size = partition_key.as_ref().len()
                + sort_keys.row(i).as_ref().len()
                + rows.row(i).as_ref().len()
                + 48;
            match (insert, self.partitions.get_mut(partition_key.as_ref())) {
                (true, Some(partition)) => {
                    let count = partition.entry(entry).or_insert(0);
                    if *count == 0 {
                        self.bytes += size;
                    }
                    *count += 1;
                }
                (true, None) => {
                    self.bytes += size;
                    self.partitions
                        .insert(partition_key.as_ref().into(), BTreeMap::from([(entry, 1)]));
                }
                (false, Some(partition)) => {
                    if let Some(count) = partition.get_mut(&entry) {
                        *count -= 1;
                        if *count <= 0 {
                            partition.remove(&entry);
                            self.bytes = self.bytes.saturating_sub(size);
                        }
                    }
                    if partition.is_empty() {
                        self.partitions.remove(partition_key.as_ref());
                    }
                }
                (false, None) => {}
            }
            if !self.spec.updating {
                touched.push(partition_key.as_ref().to_vec());
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for key in touched {
            self.trim(&key);
        }
        Ok(())
    }

    /// Drops what can no longer reach the top N of an append-only input's partition.
    fn trim(&mut self, key: &[u8]) {
        let Some(partition) = self.partitions.get_mut(key) else {
            return;
        };
        let kept = ranked(partition, self.spec.rank, self.spec.limit).len();
        let (mut seen, mut dropped) = (0usize, Vec::new());
        for (entry, count) in partition.iter() {
            if seen >= kept {
                dropped.push(entry.clone());
            }
            seen += *count as usize;
        }
        for entry in dropped {
            self.bytes = self
                .bytes
                .saturating_sub(key.len() + entry.0.len() + entry.1.len() + 48);
            partition.remove(&entry);
        }
    }

    /// Every partition's top rows, ranked.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        let mut chosen: Vec<&[u8]> = Vec::new();
        let mut ranks: Vec<u64> = Vec::new();
        for partition in self.partitions.values() {
            for (row, rank) in ranked(partition, self.spec.rank, self.spec.limit) {
                chosen.push(row);
                ranks.push(rank);
            }
        }
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let parser = self.rows.parser();
        let mut columns = self
            .rows
            .convert_rows(chosen.iter().map(|r| parser.parse(r)))?;
        if self.spec.rank_column {
            columns.push(Arc::new(UInt64Array::from(ranks)));
        }
        let columns = columns
            .into_iter()
            .zip(self.spec.output.fields())
            .map(|(c, f)| match c.data_type() == f.data_type() {
                true => Ok(c),
                false => Ok(datafusion::arrow::compute::cast(&c, f.data_type())?),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![RecordBatch::try_new(
            Arc::clone(&self.spec.output),
            columns,
        )?])
    }

    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    pub fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Every row held and how often, as one batch: the input's columns, then the count.
    pub fn checkpoint(&self) -> Result<Option<RecordBatch>> {
        let entries: Vec<(&[u8], i64)> = self
            .partitions
            .values()
            .flat_map(|p| p.iter().map(|((_, row), n)| (row.as_ref(), *n)))
            .collect();
        let parser = self.rows.parser();
        let mut columns = self
            .rows
            .convert_rows(entries.iter().map(|(row, _)| parser.parse(row)))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|(_, n)| *n),
        )));
        let mut fields: Vec<Field> = self
            .spec
            .input
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(
            "count",
            datafusion::arrow::datatypes::DataType::Int64,
            false,
        ));
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?))
    }

    /// Takes the rows of a checkpoint in place of the current ones.
    pub fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        let width = self.spec.input.fields().len();
        let counts = batch
            .columns()
            .get(width)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| Error::Internal("top-n state has no counts".into()))?;
        let repeated: UInt32Array = (0..batch.num_rows())
            .flat_map(|i| std::iter::repeat_n(i as u32, counts.value(i).max(0) as usize))
            .collect();
        let rows = RecordBatch::try_new(
            Arc::clone(&self.spec.input),
            batch.columns()[..width].to_vec(),
        )?;
        self.partitions.clear();
        self.bytes = 0;
        self.push(&Changes::inserts(take_record_batch(&rows, &repeated)?))
    }
}

/// The rows of a partition in the top `limit` by `rank`, each with its rank (a row held twice
/// counts twice).
fn ranked(partition: &Partition, rank: Rank, limit: usize) -> Vec<(&[u8], u64)> {
    let mut out = Vec::new();
    let (mut position, mut dense, mut previous): (u64, u64, Option<&[u8]>) = (0, 0, None);
    let mut current_rank = 0;
    for ((key, row), count) in partition {
        for _ in 0..*count {
            position += 1;
            let new_key = previous != Some(key.as_ref());
            if new_key {
                dense += 1;
                current_rank = position;
            }
            previous = Some(key.as_ref());
            let value = match rank {
                Rank::RowNumber => position,
                Rank::Rank => current_rank,
                Rank::DenseRank => dense,
            };
            if value > limit as u64 {
                return out;
            }
            out.push((row.as_ref(), value));
        }
    }
    out
}

/// Tests' Top-N: the first `limit` rows by `v` descending per `k` of `input`, ranked in an
/// added `rn` column.
#[cfg(test)]
pub(super) fn top_by_v_per_k(
    input: SchemaRef,
    rank: Rank,
    limit: usize,
    updating: bool,
) -> TopNSpec {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::physical_expr::expressions::col;
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("rn", DataType::UInt64, false));
    TopNSpec {
        partition_by: vec![col("k", &input).unwrap()],
        order_by: vec![(
            col("v", &input).unwrap(),
            SortOptions {
                descending: true,
                nulls_first: false,
            },
        )],
        limit,
        rank,
        rank_column: true,
        output: Arc::new(Schema::new(fields)),
        input,
        updating,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::assert_batches_sorted_eq;

    use super::*;

    fn spec(rank: Rank, updating: bool) -> TopNSpec {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        top_by_v_per_k(input, rank, 2, updating)
    }

    fn rows(spec: &TopNSpec, k: &[&str], v: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::clone(&spec.input),
            vec![
                Arc::new(StringArray::from(k.to_vec())),
                Arc::new(Int64Array::from(v.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_delete_brings_the_next_row_back() {
        let spec = spec(Rank::RowNumber, true);
        let mut top = TopN::try_new(spec.clone()).unwrap();
        top.push(&Changes::inserts(rows(
            &spec,
            &["a", "a", "a", "b"],
            &[5, 9, 7, 1],
        )))
        .unwrap();
        assert_batches_sorted_eq!(
            [
                "+---+---+----+",
                "| k | v | rn |",
                "+---+---+----+",
                "| a | 7 | 2  |",
                "| a | 9 | 1  |",
                "| b | 1 | 1  |",
                "+---+---+----+",
            ],
            &top.snapshot().unwrap()
        );
        let delete = rows(&spec, &["a"], &[9]);
        top.push(&Changes {
            inserts: vec![false].into(),
            rows: delete,
        })
        .unwrap();
        let restored = {
            let mut again = TopN::try_new(spec.clone()).unwrap();
            again.restore(&top.checkpoint().unwrap().unwrap()).unwrap();
            again.snapshot().unwrap()
        };
        for snapshot in [top.snapshot().unwrap(), restored] {
            assert_batches_sorted_eq!(
                [
                    "+---+---+----+",
                    "| k | v | rn |",
                    "+---+---+----+",
                    "| a | 5 | 2  |",
                    "| a | 7 | 1  |",
                    "| b | 1 | 1  |",
                    "+---+---+----+",
                ],
                &snapshot
            );
        }
    }

    #[test]
    fn ranks_share_ties_and_append_only_input_keeps_only_the_top() {
        let spec = spec(Rank::Rank, false);
        let mut top = TopN::try_new(spec.clone()).unwrap();
        top.push(&Changes::inserts(rows(&spec, &["a"; 5], &[3, 9, 9, 1, 2])))
            .unwrap();
        assert_batches_sorted_eq!(
            [
                "+---+---+----+",
                "| k | v | rn |",
                "+---+---+----+",
                "| a | 9 | 1  |",
                "| a | 9 | 1  |",
                "+---+---+----+",
            ],
            &top.snapshot().unwrap()
        );
        // Only the two rows that can still be in the top two are kept.
        let held = top.checkpoint().unwrap().unwrap();
        assert_eq!(held.num_rows(), 1, "one distinct row, twice");
    }
}
