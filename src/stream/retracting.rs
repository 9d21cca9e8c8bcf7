//! Aggregation over a changelog: every group's aggregates follow inserts and deletes.
//!
//! DataFusion's `GroupsAccumulator`s only add, and its retracting `Accumulator`s assume
//! retractions in arrival order (window frames), so they cannot take a delete of any row at any
//! time. The aggregates that can are kept here in their plainest exact form: `count` as a
//! count, `sum` and `avg` as a sum and a count of values (integers and decimals in i128,
//! floats in f64), `min`, `max` and `count(DISTINCT …)` as a multiset of values in Arrow's row
//! format, whose byte order is the values' sort order. A group goes when its last row goes;
//! the group of an aggregate without `GROUP BY` always stays (`count(*)` 0, `sum` NULL, as in
//! Postgres). Anything else is refused at planning ([`check`]).
//!
//! Grouped by windows assigned to changing rows ([`super::assign`]) under a watermark, groups
//! *close*: once the watermark passes a group's window end, its row is final and leaves the
//! state, and a later change to a row of that window is late — not applied, returned to the
//! caller to be counted and kept, as late rows of an append-only input are.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, ListArray,
    RecordBatch, TimestampMicrosecondArray, UInt32Array, new_null_array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, Schema, SchemaRef, TimestampMicrosecondType,
};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::changes::Changes;
use super::groups::{AggregateSpec, Inputs};
use super::moments::{CoMoments, Moments, Regression};
use crate::error::{Error, Result};

/// What one aggregate keeps per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
    /// `var_samp`/`var_pop`, or their square roots `stddev_samp`/`stddev_pop`: running
    /// moments (Welford's, which a delete runs backwards).
    Variance {
        sample: bool,
        root: bool,
    },
    /// `covar_samp`/`covar_pop` and `corr` of two arguments: running co-moments.
    Covariance {
        sample: bool,
    },
    Correlation,
    /// `regr_*(y, x)`: the same co-moments.
    Regression(Regression),
    /// `bool_and`/`bool_or`: how many values, how many true.
    BoolAnd,
    BoolOr,
}

/// How `sum` and `avg` add their argument.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    /// Integers and decimals, as i128 at this scale.
    Exact {
        scale: i8,
    },
    Float,
}

/// Refuses, with 0A000 and a hint, an aggregate this operator cannot retract.
pub fn check(spec: &AggregateSpec, input: &Schema) -> Result<()> {
    kind(spec, &arg_types(spec, input)?).map(|_| ())
}

fn arg_types(spec: &AggregateSpec, input: &Schema) -> Result<Vec<DataType>> {
    Ok(spec
        .expr
        .expressions()
        .iter()
        .map(|e| e.data_type(input))
        .collect::<datafusion::error::Result<_>>()?)
}

fn kind(spec: &AggregateSpec, args: &[DataType]) -> Result<(Kind, Option<Number>)> {
    let name = spec.expr.fun().name().to_ascii_lowercase();
    let distinct = spec.expr.is_distinct();
    let numeric = |t: &DataType| match t {
        t if t.is_integer() => Some(Number::Exact { scale: 0 }),
        DataType::Decimal128(_, s) => Some(Number::Exact { scale: *s }),
        t if t.is_floating() => Some(Number::Float),
        _ => None,
    };
    let number = args.first().and_then(numeric);
    let pair = args.len() == 2 && args.iter().all(|t| numeric(t).is_some());
    let boolean = args.first() == Some(&DataType::Boolean);
    let kind = match (name.as_str(), distinct) {
        ("count", false) => Some(Kind::Count),
        ("count", true) => Some(Kind::CountDistinct),
        ("sum", false) if number.is_some() => Some(Kind::Sum),
        ("avg" | "mean", false) if number.is_some() => Some(Kind::Avg),
        ("min", _) => Some(Kind::Min),
        ("max", _) => Some(Kind::Max),
        ("covar" | "covar_samp", false) if pair => Some(Kind::Covariance { sample: true }),
        ("covar_pop", false) if pair => Some(Kind::Covariance { sample: false }),
        ("corr", false) if pair => Some(Kind::Correlation),
        (name, false) if pair && Regression::named(name).is_some() => {
            Regression::named(name).map(Kind::Regression)
        }
        (name, false) if number.is_some() => match name {
            "stddev" | "stddev_samp" => Some(Kind::Variance {
                sample: true,
                root: true,
            }),
            "stddev_pop" => Some(Kind::Variance {
                sample: false,
                root: true,
            }),
            "var" | "var_samp" | "var_sample" | "variance" => Some(Kind::Variance {
                sample: true,
                root: false,
            }),
            "var_pop" | "var_population" => Some(Kind::Variance {
                sample: false,
                root: false,
            }),
            _ => None,
        },
        ("bool_and", _) if boolean => Some(Kind::BoolAnd),
        ("bool_or", _) if boolean => Some(Kind::BoolOr),
        _ => None,
    };
    // Moments are kept in floating point, as DataFusion and Postgres' float8 compute them.
    let (number, arity) = match kind {
        Some(Kind::Variance { .. }) => (Some(Number::Float), 1),
        Some(Kind::Covariance { .. } | Kind::Correlation | Kind::Regression(_)) => {
            (Some(Number::Float), 2)
        }
        _ => (number, 1),
    };
    match kind {
        Some(kind) if args.len() == arity => Ok((kind, number)),
        _ => Err(Error::unsupported(
            format!(
                "the aggregate {} over a relation whose rows change",
                spec.expr.name()
            ),
            Some(
                "Over an updating input (a view without windows, for one) an aggregate must \
                 follow deletes: count, sum, avg, min, max, count(DISTINCT …), stddev, \
                 stddev_pop, var_samp, var_pop, covar_samp, covar_pop, corr, the regr_* \
                 functions, bool_and and bool_or do.",
            ),
        )),
    }
}

/// One aggregate's definition and per-value plumbing.
struct Aggregate {
    kind: Kind,
    number: Option<Number>,
    /// The argument's type.
    arg_type: DataType,
    /// The output's type.
    output: DataType,
    /// Values to multiset keys and back (min, max, count distinct).
    values: Option<RowConverter>,
}

/// One aggregate's state in one group.
#[derive(Debug, Clone)]
enum State {
    Count(i64),
    Sum {
        exact: i128,
        float: f64,
        values: i64,
    },
    Values(BTreeMap<Box<[u8]>, i64>),
    Moments(Moments),
    CoMoments(CoMoments),
    Booleans {
        trues: i64,
        values: i64,
    },
}

#[derive(Debug, Clone)]
struct Group {
    rows: i64,
    states: Vec<State>,
    /// When closing: the latest window end of the rows it took (`i64::MIN` otherwise).
    end: i64,
}

/// Groups that close with the watermark: where each row's window ends, and how far closed.
#[derive(Debug, Clone)]
struct Closing {
    /// The `window_end` column of the rows pushed.
    end_column: usize,
    /// The longest window's length: a window closing later starts after the watermark less
    /// it, which is the output's watermark.
    longest: i64,
    watermark: i64,
    /// Groups by the end they had when it was set, so that a watermark visits only the
    /// groups it may close (an entry whose group went or ends later since is skipped).
    by_end: BTreeMap<i64, Vec<Box<[u8]>>>,
}

/// A GROUP BY (no window) over a changelog.
pub struct RetractingAggregate {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    specs: Vec<AggregateSpec>,
    aggregates: Vec<Aggregate>,
    /// Group keys to and from the map's keys (a constant key without GROUP BY).
    key_converter: RowConverter,
    key_types: Vec<DataType>,
    groups: HashMap<Box<[u8]>, Group>,
    /// No GROUP BY: the one group stays when empty.
    global: bool,
    /// Output rows: the group keys, then the aggregates.
    schema: SchemaRef,
    /// Each group is a whole row, output as often as it occurs (no aggregates).
    multiset: bool,
    closing: Option<Closing>,
    bytes: usize,
}

impl RetractingAggregate {
    /// `keys` over the input, `specs` checked by [`check`], `schema` the aggregation's output;
    /// `multiset`: the keys are whole rows, each output as often as it occurs.
    pub fn try_new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        specs: Vec<AggregateSpec>,
        input: &Schema,
        schema: SchemaRef,
        multiset: bool,
    ) -> Result<Self> {
        let global = keys.is_empty();
        let key_types: Vec<DataType> = match global {
            true => vec![DataType::Boolean],
            false => keys
                .iter()
                .map(|k| k.data_type(input))
                .collect::<datafusion::error::Result<_>>()?,
        };
        let key_converter = RowConverter::new(
            key_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?;
        let aggregates = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let args = arg_types(spec, input)?;
                let (kind, number) = kind(spec, &args)?;
                let arg_type = args[0].clone();
                let values = matches!(kind, Kind::Min | Kind::Max | Kind::CountDistinct)
                    .then(|| RowConverter::new(vec![SortField::new(arg_type.clone())]))
                    .transpose()?;
                let output = schema
                    .fields()
                    .get(keys.len() + i)
                    .map(|f| f.data_type().clone())
                    .ok_or_else(|| Error::Internal("aggregate output missing".into()))?;
                Ok(Aggregate {
                    kind,
                    number,
                    arg_type,
                    output,
                    values,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut operator = RetractingAggregate {
            keys,
            specs,
            aggregates,
            key_converter,
            key_types,
            groups: HashMap::new(),
            global,
            schema,
            multiset,
            closing: None,
            bytes: 0,
        };
        if global {
            let key = operator.global_key()?;
            let group = operator.new_group();
            operator.groups.insert(key, group);
        }
        Ok(operator)
    }

    /// Groups close once the watermark passes the window end in column `end_column` of the
    /// rows pushed (a timestamp: the `window_end` windows were assigned), windows being at
    /// most `longest` long.
    pub fn closing(mut self, end_column: usize, longest: i64) -> Self {
        self.closing = Some(Closing {
            end_column,
            longest,
            watermark: i64::MIN,
            by_end: BTreeMap::new(),
        });
        self
    }

    fn global_key(&self) -> Result<Box<[u8]>> {
        let key: ArrayRef = Arc::new(BooleanArray::from(vec![true]));
        let rows = self.key_converter.convert_columns(&[key])?;
        Ok(rows.row(0).as_ref().into())
    }

    fn new_group(&self) -> Group {
        Group {
            rows: 0,
            end: i64::MIN,
            states: self
                .aggregates
                .iter()
                .map(|a| match a.kind {
                    Kind::Count => State::Count(0),
                    Kind::Sum | Kind::Avg => State::Sum {
                        exact: 0,
                        float: 0.0,
                        values: 0,
                    },
                    Kind::Min | Kind::Max | Kind::CountDistinct => State::Values(BTreeMap::new()),
                    Kind::Variance { .. } => State::Moments(Moments::default()),
                    Kind::Covariance { .. } | Kind::Correlation | Kind::Regression(_) => {
                        State::CoMoments(CoMoments::default())
                    }
                    Kind::BoolAnd | Kind::BoolOr => State::Booleans {
                        trues: 0,
                        values: 0,
                    },
                })
                .collect(),
        }
    }

    /// Applies inserts and deletes; returns the positions of the late ones (of a window
    /// closed already), which it does not apply. A delete of a row the state never held
    /// (impossible from a consistent input) is ignored rather than driving a count below zero.
    pub fn push(&mut self, changes: &Changes) -> Result<Vec<u32>> {
        let (late, ends) = self.late(changes)?;
        match late.is_empty() {
            true => self.apply(changes, ends.as_ref())?,
            false => {
                let on_time: BooleanArray = (0..changes.num_rows() as u32)
                    .map(|row| Some(late.binary_search(&row).is_err()))
                    .collect();
                let ends = ends
                    .map(|e| datafusion::arrow::compute::filter(&e, &on_time))
                    .transpose()?
                    .map(|e| e.as_primitive::<TimestampMicrosecondType>().clone());
                self.apply(&changes.filter(&on_time)?, ends.as_ref())?
            }
        }
        Ok(late)
    }

    /// When closing: the positions of changes to closed windows, and every row's window end.
    fn late(&self, changes: &Changes) -> Result<(Vec<u32>, Option<TimestampMicrosecondArray>)> {
        let Some(closing) = &self.closing else {
            return Ok((Vec::new(), None));
        };
        let ends = changes
            .rows
            .column(closing.end_column)
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| Error::Internal("a window end is not a timestamp".into()))?
            .clone();
        let late = (0..ends.len())
            .filter(|&row| ends.value(row) <= closing.watermark)
            .map(|row| row as u32)
            .collect();
        Ok((late, Some(ends)))
    }

    fn apply(&mut self, changes: &Changes, ends: Option<&TimestampMicrosecondArray>) -> Result<()> {
        let rows = changes.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let inputs = Inputs::evaluate(&changes.rows, &self.keys, &self.specs)?;
        let keys = self.key_converter.convert_columns(&inputs.keys)?;
        // Per aggregate: the values it adds, prepared once for the batch.
        let mut prepared = Vec::with_capacity(self.aggregates.len());
        for (aggregate, (args, filter)) in self.aggregates.iter().zip(&inputs.args) {
            let arg = &args[0];
            let numbers = match aggregate.number {
                Some(Number::Exact { scale }) if aggregate.kind != Kind::Count => {
                    Some(cast(arg, &DataType::Decimal128(38, scale))?)
                }
                Some(Number::Float) if aggregate.kind != Kind::Count => {
                    Some(cast(arg, &DataType::Float64)?)
                }
                _ => None,
            };
            let values = match &aggregate.values {
                Some(converter) => Some(converter.convert_columns(std::slice::from_ref(arg))?),
                None => None,
            };
            // The second argument of covariance and correlation, as floats.
            let second = args
                .get(1)
                .map(|a| cast(a, &DataType::Float64))
                .transpose()?;
            prepared.push((Arc::clone(arg), filter.clone(), numbers, values, second));
        }
        let mut missing = 0usize;
        for row in 0..rows {
            let insert = changes.inserts.value(row);
            let sign: i64 = if insert { 1 } else { -1 };
            let key = keys.row(row);
            if !insert && !self.groups.contains_key(key.as_ref()) {
                missing += 1;
                continue;
            }
            if !self.groups.contains_key(key.as_ref()) {
                let group = self.new_group();
                self.bytes += key.as_ref().len() + group_bytes(self.aggregates.len());
                self.groups.insert(key.as_ref().into(), group);
            }
            let group = self
                .groups
                .get_mut(key.as_ref())
                .ok_or_else(|| Error::Internal("group vanished".into()))?;
            group.rows += sign;
            if let (Some(ends), Some(closing)) = (ends, &mut self.closing)
                && ends.value(row) > group.end
            {
                group.end = ends.value(row);
                let due = closing.by_end.entry(group.end).or_default();
                due.push(key.as_ref().into());
            }
            for (state, (arg, filter, numbers, values, second)) in
                group.states.iter_mut().zip(&prepared)
            {
                if filter
                    .as_ref()
                    .is_some_and(|f| !f.value(row) || f.is_null(row))
                    || arg.is_null(row)
                    || second.as_ref().is_some_and(|s| s.is_null(row))
                {
                    continue;
                }
                match state {
                    State::Count(n) => *n += sign,
                    State::Sum {
                        exact,
                        float,
                        values: n,
                    } => {
                        let numbers = numbers
                            .as_ref()
                            .ok_or_else(|| Error::Internal("sum without numbers".into()))?;
                        match numbers.data_type() {
                            DataType::Float64 => {
                                *float += sign as f64
                                    * numbers
                                        .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                                        .value(row)
                            }
                            _ => {
                                let value = numbers.as_primitive::<Decimal128Type>().value(row);
                                *exact =
                                    exact.checked_add(sign as i128 * value).ok_or_else(|| {
                                        Error::NumericOutOfRange("sum out of range".into())
                                    })?;
                            }
                        }
                        *n += sign;
                    }
                    State::Moments(moments) => {
                        let x = float(numbers.as_ref(), row)?;
                        match insert {
                            true => moments.add(x),
                            false => moments.remove(x),
                        }
                    }
                    State::CoMoments(moments) => {
                        let (x, y) = (float(numbers.as_ref(), row)?, float(second.as_ref(), row)?);
                        match insert {
                            true => moments.add(x, y),
                            false => moments.remove(x, y),
                        }
                    }
                    State::Booleans { trues, values } => {
                        *values += sign;
                        if arg.as_boolean().value(row) {
                            *trues += sign;
                        }
                    }
                    State::Values(multiset) => {
                        let values = values
                            .as_ref()
                            .ok_or_else(|| Error::Internal("multiset without values".into()))?;
                        let value = values.row(row);
                        match multiset.get_mut(value.as_ref()) {
                            Some(n) => {
                                *n += sign;
                                if *n <= 0 {
                                    multiset.remove(value.as_ref());
                                    self.bytes =
                                        self.bytes.saturating_sub(value.as_ref().len() + 48);
                                }
                            }
                            None if insert => {
                                self.bytes += value.as_ref().len() + 48;
                                multiset.insert(value.as_ref().into(), 1);
                            }
                            None => missing += 1,
                        }
                    }
                }
            }
        }
        if !self.global {
            let mut freed = 0;
            let per_group = group_bytes(self.aggregates.len());
            self.groups.retain(|key, g| {
                let keep = g.rows > 0;
                if !keep {
                    freed += key.len() + per_group;
                }
                keep
            });
            self.bytes = self.bytes.saturating_sub(freed);
        }
        if missing > 0 {
            tracing::warn!(
                deletes = missing,
                "deletes of rows an aggregate never held were ignored"
            );
        }
        Ok(())
    }

    /// Every group's row: keys, then aggregates.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        self.output_rows(self.groups.iter().map(|(k, g)| (k.as_ref(), g)).collect())
    }

    /// The watermark groups were last closed at (`i64::MIN`: none, or not closing).
    pub fn watermark(&self) -> i64 {
        self.closing.as_ref().map_or(i64::MIN, |c| c.watermark)
    }

    /// Closes the groups whose windows `watermark` passed: returns their rows, now final, and
    /// forgets them.
    /// When closing, the watermark of the output's window bounds: every window it will
    /// close from now on starts after it.
    pub fn output_watermark(&self) -> Option<i64> {
        let closing = self.closing.as_ref()?;
        (closing.watermark != i64::MIN).then(|| closing.watermark.saturating_sub(closing.longest))
    }

    pub fn close(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        let Some(closing) = &mut self.closing else {
            return Ok(Vec::new());
        };
        if watermark <= closing.watermark {
            return Ok(Vec::new());
        }
        closing.watermark = watermark;
        let later = match watermark.checked_add(1) {
            Some(next) => closing.by_end.split_off(&next),
            None => BTreeMap::new(),
        };
        let due = std::mem::replace(&mut closing.by_end, later);
        let mut closed: Vec<(Box<[u8]>, Group)> = Vec::new();
        for key in due.into_values().flatten() {
            if self.groups.get(&key).is_some_and(|g| g.end <= watermark)
                && let Some(entry) = self.groups.remove_entry(&key)
            {
                closed.push(entry);
            }
        }
        for (key, group) in &closed {
            self.bytes = self.bytes.saturating_sub(
                key.len() + group_bytes(self.aggregates.len()) + group.value_bytes(),
            );
        }
        self.output_rows(closed.iter().map(|(k, g)| (k.as_ref(), g)).collect())
    }

    /// The rows of `groups`: keys, then aggregates.
    fn output_rows(&self, groups: Vec<(&[u8], &Group)>) -> Result<Vec<RecordBatch>> {
        let mut columns: Vec<ArrayRef> = Vec::new();
        if !self.global {
            let parser = self.key_converter.parser();
            let keys = self
                .key_converter
                .convert_rows(groups.iter().map(|(k, _)| parser.parse(k)))?;
            columns.extend(keys);
        }
        for (i, aggregate) in self.aggregates.iter().enumerate() {
            let states = groups.iter().map(|(_, g)| &g.states[i]);
            let column = aggregate.output(states)?;
            columns.push(column);
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        if !self.multiset || groups.iter().all(|(_, g)| g.rows == 1) {
            return Ok(vec![batch]);
        }
        let repeated: UInt32Array = groups
            .iter()
            .enumerate()
            .flat_map(|(i, (_, g))| std::iter::repeat_n(i as u32, g.rows.max(0) as usize))
            .collect();
        Ok(vec![take_record_batch(&batch, &repeated)?])
    }

    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    pub fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Every group as one batch: its keys, its row count, then per aggregate its count, its
    /// sum and count, or its values and their counts (lists).
    pub fn checkpoint(&self) -> Result<Option<RecordBatch>> {
        let groups: Vec<(&Box<[u8]>, &Group)> = self.groups.iter().collect();
        let parser = self.key_converter.parser();
        let mut columns = self
            .key_converter
            .convert_rows(groups.iter().map(|(k, _)| parser.parse(k)))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|(_, g)| g.rows),
        )));
        for (i, aggregate) in self.aggregates.iter().enumerate() {
            let states: Vec<&State> = groups.iter().map(|(_, g)| &g.states[i]).collect();
            columns.extend(aggregate.encode(&states)?);
        }
        if self.closing.is_some() {
            columns.push(Arc::new(Int64Array::from_iter_values(
                groups.iter().map(|(_, g)| g.end),
            )));
        }
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?))
    }

    /// Takes the groups of a checkpoint in place of the current ones, closed through
    /// `watermark`.
    pub fn restore(&mut self, batch: &RecordBatch, watermark: Option<i64>) -> Result<()> {
        if let (Some(closing), Some(watermark)) = (&mut self.closing, watermark) {
            closing.watermark = watermark;
        }
        let width = self.key_types.len();
        let keys = self
            .key_converter
            .convert_columns(&batch.columns()[..width.min(batch.num_columns())])?;
        let column = |i: usize| {
            batch
                .columns()
                .get(i)
                .cloned()
                .ok_or_else(|| Error::Internal("view state has too few columns".into()))
        };
        let rows = column(width)?;
        let rows = rows
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| Error::Internal("view state: row counts".into()))?;
        let mut decoded: Vec<Vec<State>> = vec![Vec::new(); batch.num_rows()];
        let mut next = width + 1;
        for aggregate in &self.aggregates {
            let width = aggregate.encoded_width();
            let encoded = (next..next + width)
                .map(column)
                .collect::<Result<Vec<_>>>()?;
            for (group, state) in aggregate.decode(&encoded)?.into_iter().enumerate() {
                decoded[group].push(state);
            }
            next += width;
        }
        let ends = match self.closing {
            Some(_) => Some(column(next)?),
            None => None,
        };
        let ends = ends
            .as_ref()
            .map(|e| {
                e.as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| Error::Internal("view state: window ends".into()))
            })
            .transpose()?;
        self.groups.clear();
        if let Some(closing) = &mut self.closing {
            closing.by_end.clear();
        }
        self.bytes = 0;
        for (i, states) in decoded.into_iter().enumerate() {
            let key: Box<[u8]> = keys.row(i).as_ref().into();
            let group = Group {
                rows: rows.value(i),
                states,
                end: ends.map_or(i64::MIN, |e| e.value(i)),
            };
            self.bytes += key.len() + group_bytes(self.aggregates.len()) + group.value_bytes();
            if let Some(closing) = &mut self.closing {
                closing
                    .by_end
                    .entry(group.end)
                    .or_default()
                    .push(key.clone());
            }
            self.groups.insert(key, group);
        }
        Ok(())
    }
}

impl Aggregate {
    /// The aggregate's value in each group, as the output type.
    fn output<'a>(&self, states: impl Iterator<Item = &'a State>) -> Result<ArrayRef> {
        let column: ArrayRef = match self.kind {
            Kind::Count => Arc::new(Int64Array::from_iter_values(states.map(|s| match s {
                State::Count(n) => *n,
                _ => 0,
            }))),
            Kind::CountDistinct => {
                Arc::new(Int64Array::from_iter_values(states.map(|s| match s {
                    State::Values(v) => v.len() as i64,
                    _ => 0,
                })))
            }
            Kind::Sum | Kind::Avg => {
                let sums: Vec<(i128, f64, i64)> = states
                    .map(|s| match s {
                        State::Sum {
                            exact,
                            float,
                            values,
                        } => (*exact, *float, *values),
                        _ => (0, 0.0, 0),
                    })
                    .collect();
                self.numbers(&sums)?
            }
            Kind::Min | Kind::Max => {
                let converter = self
                    .values
                    .as_ref()
                    .ok_or_else(|| Error::Internal("min/max without values".into()))?;
                let null = converter.convert_columns(&[new_null_array(&self.arg_type, 1)])?;
                let null = null.row(0);
                let parser = converter.parser();
                let chosen: Vec<&[u8]> = states
                    .map(|s| {
                        let State::Values(values) = s else {
                            return null.as_ref();
                        };
                        let pick = match self.kind {
                            Kind::Min => values.keys().next(),
                            _ => values.keys().next_back(),
                        };
                        pick.map_or(null.as_ref(), |k| k.as_ref())
                    })
                    .collect();
                converter
                    .convert_rows(chosen.iter().map(|b| parser.parse(b)))?
                    .remove(0)
            }
            Kind::Variance { sample, root } => Arc::new(Float64Array::from_iter(states.map(|s| {
                match s {
                    State::Moments(moments) => moments
                        .variance(sample)
                        .map(|v| if root { v.sqrt() } else { v }),
                    _ => None,
                }
            }))),
            Kind::Covariance { sample } => {
                Arc::new(Float64Array::from_iter(states.map(|s| match s {
                    State::CoMoments(moments) => moments.covariance(sample),
                    _ => None,
                })))
            }
            Kind::Correlation => Arc::new(Float64Array::from_iter(states.map(|s| match s {
                State::CoMoments(moments) => moments.correlation(),
                _ => None,
            }))),
            Kind::Regression(what) => Arc::new(Float64Array::from_iter(states.map(|s| match s {
                State::CoMoments(moments) => moments.regression(what),
                _ => None,
            }))),
            Kind::BoolAnd | Kind::BoolOr => {
                let and = self.kind == Kind::BoolAnd;
                Arc::new(BooleanArray::from_iter(states.map(|s| match s {
                    State::Booleans { trues, values } if *values > 0 => {
                        Some(if and { trues == values } else { *trues > 0 })
                    }
                    _ => None,
                })))
            }
        };
        Ok(match column.data_type() == &self.output {
            true => column,
            false => cast(&column, &self.output)?,
        })
    }

    /// `sum` (NULL without values) or `avg` of each group.
    fn numbers(&self, sums: &[(i128, f64, i64)]) -> Result<ArrayRef> {
        let avg = self.kind == Kind::Avg;
        Ok(match self.number {
            Some(Number::Float) => Arc::new(Float64Array::from_iter(sums.iter().map(
                |(_, f, n)| match (*n, avg) {
                    (0, _) => None,
                    (n, true) => Some(f / n as f64),
                    (_, false) => Some(*f),
                },
            ))),
            Some(Number::Exact { scale }) => match (avg, &self.output) {
                // Postgres' avg of integers is numeric, DataFusion's float8: the output type
                // decides.
                (true, DataType::Decimal128(_, out_scale)) => {
                    let shift = 10i128.pow((*out_scale - scale).max(0) as u32);
                    Arc::new(
                        Decimal128Array::from_iter(sums.iter().map(|(s, _, n)| {
                            (*n != 0).then(|| divide_rounded(s * shift, *n as i128))
                        }))
                        .with_precision_and_scale(38, *out_scale)?,
                    )
                }
                (true, _) => Arc::new(Float64Array::from_iter(sums.iter().map(|(s, _, n)| {
                    (*n != 0).then(|| *s as f64 / 10f64.powi(scale as i32) / *n as f64)
                }))),
                (false, _) => Arc::new(
                    Decimal128Array::from_iter(
                        sums.iter().map(|(s, _, n)| (*n != 0).then_some(*s)),
                    )
                    .with_precision_and_scale(38, scale)?,
                ),
            },
            None => return Err(Error::Internal("sum of a non-number".into())),
        })
    }

    /// Columns of the state in a checkpoint.
    fn encoded_width(&self) -> usize {
        match self.kind {
            Kind::Count => 1,
            Kind::Variance { .. } => 3,
            Kind::Covariance { .. } | Kind::Correlation | Kind::Regression(_) => 6,
            _ => 2,
        }
    }

    fn encode(&self, states: &[&State]) -> Result<Vec<ArrayRef>> {
        Ok(match self.kind {
            Kind::Count => vec![Arc::new(Int64Array::from_iter_values(states.iter().map(
                |s| match s {
                    State::Count(n) => *n,
                    _ => 0,
                },
            )))],
            Kind::Sum | Kind::Avg => {
                let (mut exact, mut float, mut counts) = (Vec::new(), Vec::new(), Vec::new());
                for state in states {
                    if let State::Sum {
                        exact: e,
                        float: f,
                        values,
                    } = state
                    {
                        exact.push(*e);
                        float.push(*f);
                        counts.push(*values);
                    }
                }
                let sums: ArrayRef = match self.number {
                    Some(Number::Float) => Arc::new(Float64Array::from(float)),
                    _ => Arc::new(Decimal128Array::from(exact)),
                };
                vec![sums, Arc::new(Int64Array::from(counts))]
            }
            Kind::Min | Kind::Max | Kind::CountDistinct => {
                let converter = self
                    .values
                    .as_ref()
                    .ok_or_else(|| Error::Internal("multiset without values".into()))?;
                let parser = converter.parser();
                let mut offsets = vec![0i32];
                let mut keys = Vec::new();
                let mut counts = Vec::new();
                for state in states {
                    if let State::Values(values) = state {
                        for (key, n) in values {
                            keys.push(key.as_ref());
                            counts.push(*n);
                        }
                    }
                    offsets.push(keys.len() as i32);
                }
                let values = converter
                    .convert_rows(keys.iter().map(|k| parser.parse(k)))?
                    .remove(0);
                let offsets = OffsetBuffer::new(offsets.into());
                let list = |values: ArrayRef| -> Result<ArrayRef> {
                    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
                    Ok(Arc::new(ListArray::try_new(
                        field,
                        offsets.clone(),
                        values,
                        None,
                    )?))
                };
                vec![list(values)?, list(Arc::new(Int64Array::from(counts)))?]
            }
            Kind::Variance { .. } => {
                let moments: Vec<Moments> = states
                    .iter()
                    .map(|s| match s {
                        State::Moments(m) => *m,
                        _ => Moments::default(),
                    })
                    .collect();
                encode_moments(&moments)
            }
            Kind::Covariance { .. } | Kind::Correlation | Kind::Regression(_) => {
                let pairs: Vec<CoMoments> = states
                    .iter()
                    .map(|s| match s {
                        State::CoMoments(m) => *m,
                        _ => CoMoments::default(),
                    })
                    .collect();
                let xs: Vec<Moments> = pairs.iter().map(|p| p.x).collect();
                let ys: Vec<Moments> = pairs.iter().map(|p| p.y).collect();
                let mut columns = encode_moments(&xs);
                columns.extend(encode_moments(&ys)[1..].iter().cloned());
                columns.push(Arc::new(Float64Array::from_iter_values(
                    pairs.iter().map(|p| p.c),
                )));
                columns
            }
            Kind::BoolAnd | Kind::BoolOr => {
                let (trues, values): (Vec<i64>, Vec<i64>) = states
                    .iter()
                    .map(|s| match s {
                        State::Booleans { trues, values } => (*trues, *values),
                        _ => (0, 0),
                    })
                    .unzip();
                vec![
                    Arc::new(Int64Array::from(trues)),
                    Arc::new(Int64Array::from(values)),
                ]
            }
        })
    }

    fn decode(&self, columns: &[ArrayRef]) -> Result<Vec<State>> {
        let bad = || Error::Internal("view state: unexpected aggregate columns".into());
        Ok(match self.kind {
            Kind::Count => {
                let counts = columns[0]
                    .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                    .ok_or_else(bad)?;
                counts.values().iter().map(|n| State::Count(*n)).collect()
            }
            Kind::Sum | Kind::Avg => {
                let counts = columns[1]
                    .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                    .ok_or_else(bad)?;
                (0..counts.len())
                    .map(|i| {
                        let (exact, float) = match self.number {
                            Some(Number::Float) => (
                                0,
                                columns[0]
                                    .as_primitive_opt::<datafusion::arrow::datatypes::Float64Type>()
                                    .ok_or_else(bad)?
                                    .value(i),
                            ),
                            _ => (
                                columns[0]
                                    .as_primitive_opt::<Decimal128Type>()
                                    .ok_or_else(bad)?
                                    .value(i),
                                0.0,
                            ),
                        };
                        Ok(State::Sum {
                            exact,
                            float,
                            values: counts.value(i),
                        })
                    })
                    .collect::<Result<_>>()?
            }
            Kind::Min | Kind::Max | Kind::CountDistinct => {
                let converter = self
                    .values
                    .as_ref()
                    .ok_or_else(|| Error::Internal("multiset without values".into()))?;
                let values = columns[0].as_list_opt::<i32>().ok_or_else(bad)?;
                let counts = columns[1].as_list_opt::<i32>().ok_or_else(bad)?;
                let rows = converter.convert_columns(&[Arc::clone(values.values())])?;
                let count_values = counts
                    .values()
                    .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                    .ok_or_else(bad)?;
                let offsets = values.value_offsets();
                (0..values.len())
                    .map(|g| {
                        let (start, end) = (offsets[g] as usize, offsets[g + 1] as usize);
                        State::Values(
                            (start..end)
                                .map(|i| (rows.row(i).as_ref().into(), count_values.value(i)))
                                .collect(),
                        )
                    })
                    .collect()
            }
            Kind::Variance { .. } => decode_moments(&columns[0], &columns[1], &columns[2])?
                .into_iter()
                .map(State::Moments)
                .collect(),
            Kind::Covariance { .. } | Kind::Correlation | Kind::Regression(_) => {
                let xs = decode_moments(&columns[0], &columns[1], &columns[2])?;
                let ys = decode_moments(&columns[0], &columns[3], &columns[4])?;
                let cs = columns[5]
                    .as_primitive_opt::<datafusion::arrow::datatypes::Float64Type>()
                    .ok_or_else(bad)?;
                xs.into_iter()
                    .zip(ys)
                    .enumerate()
                    .map(|(i, (x, y))| {
                        State::CoMoments(CoMoments {
                            x,
                            y,
                            c: cs.value(i),
                        })
                    })
                    .collect()
            }
            Kind::BoolAnd | Kind::BoolOr => {
                use datafusion::arrow::datatypes::Int64Type;
                let trues = columns[0].as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
                let values = columns[1].as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
                (0..trues.len())
                    .map(|i| State::Booleans {
                        trues: trues.value(i),
                        values: values.value(i),
                    })
                    .collect()
            }
        })
    }
}

/// The bytes a group costs besides its key and its multisets' values.
fn group_bytes(aggregates: usize) -> usize {
    64 + 32 * aggregates
}

impl Group {
    /// The bytes of its multisets' values.
    fn value_bytes(&self) -> usize {
        self.states
            .iter()
            .map(|state| match state {
                State::Values(values) => values.keys().map(|k| k.len() + 48).sum(),
                _ => 0,
            })
            .sum()
    }
}

/// One f64 of `numbers` (an aggregate's argument cast for moments).
fn float(numbers: Option<&ArrayRef>, row: usize) -> Result<f64> {
    let numbers = numbers.ok_or_else(|| Error::Internal("moments without numbers".into()))?;
    Ok(numbers
        .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
        .value(row))
}

/// Moments as three checkpoint columns: counts, means, sums of squared deviations.
fn encode_moments(moments: &[Moments]) -> Vec<ArrayRef> {
    vec![
        Arc::new(Int64Array::from_iter_values(moments.iter().map(|m| m.n))),
        Arc::new(Float64Array::from_iter_values(
            moments.iter().map(|m| m.mean),
        )),
        Arc::new(Float64Array::from_iter_values(moments.iter().map(|m| m.m2))),
    ]
}

fn decode_moments(ns: &ArrayRef, means: &ArrayRef, m2s: &ArrayRef) -> Result<Vec<Moments>> {
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    let bad = || Error::Internal("view state: moments".into());
    let ns = ns.as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
    let means = means.as_primitive_opt::<Float64Type>().ok_or_else(bad)?;
    let m2s = m2s.as_primitive_opt::<Float64Type>().ok_or_else(bad)?;
    Ok((0..ns.len())
        .map(|i| Moments {
            n: ns.value(i),
            mean: means.value(i),
            m2: m2s.value(i),
        })
        .collect())
}

/// `a / b` rounded half away from zero, as Postgres rounds numerics.
fn divide_rounded(a: i128, b: i128) -> i128 {
    let (q, r) = (a / b, a % b);
    match (2 * r.abs() >= b.abs(), (a < 0) != (b < 0)) {
        (true, true) => q - 1,
        (true, false) => q + 1,
        (false, _) => q,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;
    use datafusion::assert_batches_eq;
    use datafusion::functions_aggregate::average::avg_udaf;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    use super::*;

    fn operator() -> (RetractingAggregate, SchemaRef) {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let v = col("v", &input).unwrap();
        let spec = |udaf, name: &str, distinct: bool| {
            let mut builder = AggregateExprBuilder::new(udaf, vec![Arc::clone(&v)])
                .schema(Arc::clone(&input))
                .alias(name);
            if distinct {
                builder = builder.distinct();
            }
            AggregateSpec {
                expr: Arc::new(builder.build().unwrap()),
                filter: None,
            }
        };
        let specs = vec![
            spec(count_udaf(), "n", false),
            spec(sum_udaf(), "total", false),
            spec(min_udaf(), "least", false),
            spec(max_udaf(), "most", false),
            spec(count_udaf(), "values", true),
            spec(avg_udaf(), "mean", false),
        ];
        let mut fields = vec![Field::new("k", DataType::Utf8, true)];
        fields.extend(
            specs
                .iter()
                .map(|s| s.expr.field().as_ref().clone().with_nullable(true)),
        );
        let output = Arc::new(Schema::new(fields));
        let keys = vec![col("k", &input).unwrap()];
        let op =
            RetractingAggregate::try_new(keys, specs, &input, Arc::clone(&output), false).unwrap();
        (op, input)
    }

    fn changes(input: &SchemaRef, rows: &[(&str, Option<i64>, bool)]) -> Changes {
        Changes {
            rows: RecordBatch::try_new(
                Arc::clone(input),
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
                ],
            )
            .unwrap(),
            inserts: rows.iter().map(|r| Some(r.2)).collect(),
        }
    }

    #[test]
    fn deletes_take_rows_back_from_every_aggregate_and_groups_go_when_empty() {
        let (mut op, input) = operator();
        op.push(&changes(
            &input,
            &[
                ("a", Some(1), true),
                ("a", Some(5), true),
                ("b", Some(2), true),
                ("a", Some(5), true),
                ("a", None, true),
            ],
        ))
        .unwrap();
        op.push(&changes(
            &input,
            &[("a", Some(5), false), ("b", Some(2), false)],
        ))
        .unwrap();
        let expected = [
            "+---+---+-------+-------+------+--------+------+",
            "| k | n | total | least | most | values | mean |",
            "+---+---+-------+-------+------+--------+------+",
            "| a | 2 | 6     | 1     | 5    | 2      | 3.0  |",
            "+---+---+-------+-------+------+--------+------+",
        ];
        assert_batches_eq!(expected, &op.snapshot().unwrap());
        let (mut restored, _) = operator();
        restored
            .restore(&op.checkpoint().unwrap().unwrap(), None)
            .unwrap();
        assert_batches_eq!(expected, &restored.snapshot().unwrap());
        // The max goes back to 1 once both 5s went.
        restored
            .push(&changes(&input, &[("a", Some(5), false)]))
            .unwrap();
        let snapshot = restored.snapshot().unwrap();
        assert_eq!(
            datafusion::arrow::util::display::array_value_to_string(snapshot[0].column(4), 0)
                .unwrap(),
            "1"
        );
    }
}

#[cfg(test)]
mod closing_tests {
    use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray};
    use datafusion::assert_batches_sorted_eq;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    use super::*;

    /// `SELECT k, window_end, count(*), sum(v) … GROUP BY k, window_end`, closing on the end.
    fn operator() -> (RetractingAggregate, SchemaRef) {
        let time = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None);
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
            Field::new("window_end", time.clone(), true),
        ]));
        let spec = |udaf, name: &str| AggregateSpec {
            expr: Arc::new(
                AggregateExprBuilder::new(udaf, vec![col("v", &input).unwrap()])
                    .schema(Arc::clone(&input))
                    .alias(name)
                    .build()
                    .unwrap(),
            ),
            filter: None,
        };
        let specs = vec![spec(count_udaf(), "n"), spec(sum_udaf(), "total")];
        let output = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("window_end", time, true),
            Field::new("n", DataType::Int64, true),
            Field::new("total", DataType::Int64, true),
        ]));
        let keys = vec![
            col("k", &input).unwrap(),
            col("window_end", &input).unwrap(),
        ];
        let op = RetractingAggregate::try_new(keys, specs, &input, output, false)
            .unwrap()
            .closing(2, 10);
        (op, input)
    }

    fn changes(input: &SchemaRef, rows: &[(&str, i64, i64, bool)]) -> Changes {
        Changes {
            rows: RecordBatch::try_new(
                Arc::clone(input),
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                    Arc::new(TimestampMicrosecondArray::from_iter_values(
                        rows.iter().map(|r| r.2),
                    )),
                ],
            )
            .unwrap(),
            inserts: rows.iter().map(|r| Some(r.3)).collect(),
        }
    }

    #[test]
    fn groups_close_with_the_watermark_and_later_changes_to_them_are_late() {
        let (mut op, input) = operator();
        let rows = [
            ("a", 1, 10, true),
            ("a", 2, 10, true),
            ("b", 5, 20, true),
            ("a", 7, 20, true),
        ];
        assert!(op.push(&changes(&input, &rows)).unwrap().is_empty());
        op.push(&changes(&input, &[("a", 2, 10, false)])).unwrap();
        assert_batches_sorted_eq!(
            [
                "+---+----------------------------+---+-------+",
                "| k | window_end                 | n | total |",
                "+---+----------------------------+---+-------+",
                "| a | 1970-01-01T00:00:00.000010 | 1 | 1     |",
                "+---+----------------------------+---+-------+",
            ],
            &op.close(10).unwrap()
        );
        assert_eq!(op.groups(), 2);
        // A move out of the closed window into an open one: the delete is late; so is a row
        // of a window that closed before it ever had one.
        let moved = [("a", 1, 10, false), ("a", 1, 20, true), ("c", 3, 5, true)];
        assert_eq!(op.push(&changes(&input, &moved)).unwrap(), vec![0, 2]);
        // Closing again at the same watermark closes nothing; the state survives a restore.
        assert!(op.close(10).unwrap().is_empty());
        let (mut restored, _) = operator();
        restored
            .restore(&op.checkpoint().unwrap().unwrap(), Some(op.watermark()))
            .unwrap();
        assert_eq!(restored.state_bytes(), op.state_bytes());
        let late = restored.push(&changes(&input, &[("z", 1, 9, true)]));
        assert_eq!(late.unwrap(), vec![0]);
        let expected = [
            "+---+----------------------------+---+-------+",
            "| k | window_end                 | n | total |",
            "+---+----------------------------+---+-------+",
            "| a | 1970-01-01T00:00:00.000020 | 2 | 8     |",
            "| b | 1970-01-01T00:00:00.000020 | 1 | 5     |",
            "+---+----------------------------+---+-------+",
        ];
        assert_batches_sorted_eq!(expected, &restored.close(20).unwrap());
        assert_eq!((restored.groups(), restored.state_bytes()), (0, 0));
    }
}
