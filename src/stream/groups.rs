//! Keyed aggregate state built from DataFusion's own parts: `GroupValues` interns the group
//! keys into dense indices (one integer key in our leaner [`super::compact_keys`] table), and
//! one `GroupsAccumulator` per aggregate keeps the state of every group (aggregates without one,
//! such as `count(DISTINCT text)`, run behind DataFusion's `GroupsAccumulatorAdapter`). Partial states ([`Partial`]) are the accumulators' own state
//! arrays, so panes and sessions merge exactly as DataFusion's two-phase aggregation does.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::compact_keys::compact_keys;
use crate::error::{Error, Result};

/// One aggregate of a view: DataFusion's physical aggregate and its `FILTER (WHERE …)`.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    pub expr: Arc<AggregateFunctionExpr>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// What the aggregates read from one batch of input rows.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub keys: Vec<ArrayRef>,
    /// Per aggregate: its argument values and the rows its filter keeps.
    pub args: Vec<(Vec<ArrayRef>, Option<BooleanArray>)>,
}

impl Inputs {
    /// Evaluates group keys (`keys` empty: one constant key), arguments and filters.
    pub fn evaluate(
        batch: &RecordBatch,
        keys: &[Arc<dyn PhysicalExpr>],
        aggregates: &[AggregateSpec],
    ) -> Result<Self> {
        let rows = batch.num_rows();
        let keys = match keys.is_empty() {
            true => vec![Arc::new(BooleanArray::from(vec![true; rows])) as ArrayRef],
            false => keys
                .iter()
                .map(|k| k.evaluate(batch)?.into_array(rows))
                .collect::<datafusion::error::Result<_>>()?,
        };
        let args = aggregates
            .iter()
            .map(|a| {
                let values = a
                    .expr
                    .expressions()
                    .iter()
                    .map(|e| e.evaluate(batch)?.into_array(rows))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                let filter = match &a.filter {
                    Some(f) => {
                        let mask = f.evaluate(batch)?.into_array(rows)?;
                        Some(
                            mask.as_any()
                                .downcast_ref::<BooleanArray>()
                                .ok_or_else(|| {
                                    Error::Internal("aggregate filter is not boolean".into())
                                })?
                                .clone(),
                        )
                    }
                    None => None,
                };
                Ok((values, filter))
            })
            .collect::<Result<_>>()?;
        Ok(Inputs { keys, args })
    }

    /// The rows at `indices`, in that order.
    pub fn take(&self, indices: &UInt32Array) -> Result<Self> {
        let take_all = |arrays: &[ArrayRef]| -> Result<Vec<ArrayRef>> {
            arrays
                .iter()
                .map(|a| Ok(take(a.as_ref(), indices, None)?))
                .collect()
        };
        Ok(Inputs {
            keys: take_all(&self.keys)?,
            args: self
                .args
                .iter()
                .map(|(values, filter)| {
                    let filter = match filter {
                        Some(f) => Some(
                            take(f, indices, None)?
                                .as_any()
                                .downcast_ref::<BooleanArray>()
                                .cloned()
                                .ok_or_else(|| Error::Internal("filter lost its type".into()))?,
                        ),
                        None => None,
                    };
                    Ok((take_all(values)?, filter))
                })
                .collect::<Result<_>>()?,
        })
    }
}

/// Group keys and the accumulator states of those groups, frozen: what a pane hands to the
/// windows it belongs to, and what a snapshot reads.
#[derive(Debug, Clone)]
pub struct Partial {
    pub keys: Vec<ArrayRef>,
    /// Per aggregate, its state arrays; row `i` belongs to key row `i`.
    pub states: Vec<Vec<ArrayRef>>,
}

impl Partial {
    pub fn rows(&self) -> usize {
        self.keys.first().map_or(0, |k| k.len())
    }
}

/// A table of groups: keys interned to indices, one accumulator per aggregate.
pub struct Groups {
    key_schema: SchemaRef,
    aggregates: Arc<[AggregateSpec]>,
    values: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    indices: Vec<usize>,
}

impl Groups {
    pub fn new(key_schema: &SchemaRef, aggregates: &Arc<[AggregateSpec]>) -> Result<Self> {
        Ok(Groups {
            key_schema: Arc::clone(key_schema),
            aggregates: Arc::clone(aggregates),
            values: match key_schema.fields().len() {
                1 => compact_keys(key_schema.field(0).data_type()),
                _ => None,
            }
            .map_or_else(
                || new_group_values(Arc::clone(key_schema), &GroupOrdering::None),
                Ok,
            )?,
            accumulators: aggregates
                .iter()
                .map(|a| accumulator(&a.expr))
                .collect::<Result<_>>()?,
            indices: Vec::new(),
        })
    }

    /// A new, empty table of the same shape.
    pub fn empty_like(&self) -> Result<Self> {
        Groups::new(&self.key_schema, &self.aggregates)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Bytes held, as the group table and accumulators report them.
    pub fn size(&self) -> usize {
        self.values.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Adds rows to their groups.
    pub fn update(&mut self, inputs: &Inputs) -> Result<()> {
        self.values.intern(&inputs.keys, &mut self.indices)?;
        let total = self.values.len();
        for (accumulator, (values, filter)) in self.accumulators.iter_mut().zip(&inputs.args) {
            accumulator.update_batch(values, &self.indices, filter.as_ref(), total)?;
        }
        Ok(())
    }

    /// Adds rows to groups chosen by the caller (`groups[i]` for row `i`); used by sessions,
    /// whose groups are not keys. `total` is the number of groups after this update.
    pub fn update_groups(&mut self, inputs: &Inputs, groups: &[usize], total: usize) -> Result<()> {
        for (accumulator, (values, filter)) in self.accumulators.iter_mut().zip(&inputs.args) {
            accumulator.update_batch(values, groups, filter.as_ref(), total)?;
        }
        Ok(())
    }

    /// Merges partial states into their key's group.
    pub fn merge(&mut self, partial: &Partial) -> Result<()> {
        if partial.rows() == 0 {
            return Ok(());
        }
        self.values.intern(&partial.keys, &mut self.indices)?;
        let total = self.values.len();
        for (accumulator, states) in self.accumulators.iter_mut().zip(&partial.states) {
            accumulator.merge_batch(states, &self.indices, total)?;
        }
        Ok(())
    }

    /// Merges partial states into groups chosen by the caller.
    pub fn merge_groups(
        &mut self,
        states: &[Vec<ArrayRef>],
        groups: &[usize],
        total: usize,
    ) -> Result<()> {
        for (accumulator, states) in self.accumulators.iter_mut().zip(states) {
            accumulator.merge_batch(states, groups, total)?;
        }
        Ok(())
    }

    /// Every key, leaving the table empty and reusable. DataFusion 55's multi-column
    /// `GroupValuesColumn` keeps its hash map on `emit(EmitTo::All)`, so keys interned after it
    /// looked up groups that were gone (an index panic in the view's task); `clear_shrink`
    /// empties the map too.
    fn emit_keys(&mut self) -> Result<Vec<ArrayRef>> {
        let keys = self.values.emit(EmitTo::All)?;
        self.values.clear_shrink(0);
        Ok(keys)
    }

    /// Empties the table into its keys and partial states.
    pub fn take(&mut self) -> Result<Partial> {
        let keys = self.emit_keys()?;
        let states = self.take_states()?;
        Ok(Partial { keys, states })
    }

    /// The accumulators' states of every group, by group index; the groups stay interned.
    pub fn take_states(&mut self) -> Result<Vec<Vec<ArrayRef>>> {
        Ok(self
            .accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<datafusion::error::Result<_>>()?)
    }

    /// Keys and partial states without emptying the table (taken, then merged back: keys are
    /// interned again in the same order, so group indices do not change).
    pub fn peek(&mut self) -> Result<Partial> {
        let partial = self.take()?;
        self.merge(&partial)?;
        Ok(partial)
    }

    /// Empties the table into its keys and final aggregate values.
    pub fn finish(&mut self) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let keys = self.emit_keys()?;
        let values = self.evaluate()?;
        Ok((keys, values))
    }

    /// Final values of every group, by group index, emptying the accumulators.
    pub fn evaluate(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(self
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<datafusion::error::Result<_>>()?)
    }
}

fn accumulator(expr: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>> {
    if expr.groups_accumulator_supported() {
        return Ok(expr.create_groups_accumulator()?);
    }
    let expr = Arc::clone(expr);
    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
        expr.create_accumulator()
    })))
}
