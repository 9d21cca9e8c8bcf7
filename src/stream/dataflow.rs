//! A view's operators as one unit, driven the same way by the server's pipeline, the
//! checkpoint tests and the benches.
//!
//! Rows (or changes) of an input go through their branch's steps, the steps before the
//! stateful operator, and the operator; what leaves the operator — windows it closes, the
//! live rows of open ones, or the rows of a view without operator at once — goes through the
//! steps after it and comes out in the view's column types. Watermarks, barriers, readers and
//! storage stay with the caller.

use datafusion::arrow::array::{RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::max;

use super::changes::Changes;
use super::join::{Join, Joined, Late};
use super::operator::ViewOperator;
use super::plan::ViewPlan;
use crate::error::{Error, Result};

pub struct Dataflow {
    pub plan: ViewPlan,
    /// The joins of a view over joined inputs, before the steps and the operator.
    join: Option<Join>,
    operator: Option<ViewOperator>,
}

/// What one batch of input did.
pub struct Taken {
    /// The rows as the operator saw them (after the steps before it).
    pub current: RecordBatch,
    /// The positions in `current` of late rows, which changed nothing.
    pub late: Vec<u32>,
    /// The rows of a view without operator, final at once.
    pub output: Vec<RecordBatch>,
    /// Rows a join took as late (of an input, not of the operator).
    pub late_joined: Vec<Late>,
    /// The latest event time on the input's watermark column, if it has one.
    pub max_event_time: Option<i64>,
}

impl Dataflow {
    /// The plan with a new operator.
    pub fn new(plan: ViewPlan) -> Result<Self> {
        let operator = plan.operator()?;
        let join = plan.join.as_ref().map(Join::try_new).transpose()?;
        Ok(Dataflow {
            plan,
            join,
            operator,
        })
    }

    /// The joins of a view over joined inputs.
    pub fn join(&self) -> Option<&Join> {
        self.join.as_ref()
    }

    pub fn join_mut(&mut self) -> Option<&mut Join> {
        self.join.as_mut()
    }

    /// The watermark of the relation the steps before the operator read, given each input's
    /// (`None` where it has none yet): a join's, or the least of the inputs'.
    pub fn watermark(&mut self, inputs: &[Option<i64>]) -> Option<i64> {
        match &mut self.join {
            Some(join) => join.advance(inputs),
            None => inputs
                .iter()
                .copied()
                .collect::<Option<Vec<i64>>>()?
                .into_iter()
                .min(),
        }
    }

    /// Lets the joins forget the rows a state TTL lets go, as of `now_us` (processing time).
    pub fn forget_idle(&mut self, now_us: i64) {
        if let Some(join) = &mut self.join {
            join.forget_idle(now_us);
        }
    }

    /// Bytes of state held: the operator's and the joins'.
    pub fn state_bytes(&self) -> usize {
        self.operator.as_ref().map_or(0, ViewOperator::state_bytes)
            + self.join.as_ref().map_or(0, Join::state_bytes)
    }

    /// The stateful operator; `None` for a view that only filters and projects.
    pub fn operator(&self) -> Option<&ViewOperator> {
        self.operator.as_ref()
    }

    pub fn operator_mut(&mut self) -> Option<&mut ViewOperator> {
        self.operator.as_mut()
    }

    /// Takes appended rows of input `branch`.
    pub fn take_rows(&mut self, branch: usize, batch: &RecordBatch) -> Result<Taken> {
        let max_event_time = self.max_event_time(branch, batch);
        let batch = self.plan.apply_branch(branch, batch)?;
        let taken = match &mut self.join {
            Some(join) => {
                let joined = join.push(branch, &Changes::inserts(batch))?;
                self.take_joined(joined)
            }
            None => self.take_combined_rows(&batch),
        }?;
        Ok(Taken {
            max_event_time,
            ..taken
        })
    }

    /// Takes inserts and deletes of input `branch` (planning gives them only to an operator
    /// that follows deletes, or to a join).
    pub fn take_changes(&mut self, branch: usize, changes: &Changes) -> Result<Taken> {
        let max_event_time = self.max_event_time(branch, &changes.rows);
        let changes = self.plan.apply_branch_changes(branch, changes)?;
        let taken = match &mut self.join {
            Some(join) => {
                let joined = join.push(branch, &changes)?;
                self.take_joined(joined)
            }
            None => self.take_combined_changes(&changes),
        }?;
        Ok(Taken {
            max_event_time,
            ..taken
        })
    }

    /// What a join handed on: changes if its rows change, else rows; and what it took late.
    fn take_joined(&mut self, joined: Option<Joined>) -> Result<Taken> {
        let joined = joined.ok_or_else(|| Error::Internal("a branch outside the join".into()))?;
        let taken = match self.plan.input.updating {
            true => self.take_combined_changes(&joined.changes),
            false => self.take_combined_rows(&joined.changes.rows),
        }?;
        Ok(Taken {
            late_joined: joined.late,
            ..taken
        })
    }

    /// Rows of the relation the steps before the operator read.
    fn take_combined_rows(&mut self, batch: &RecordBatch) -> Result<Taken> {
        let current = self.plan.apply_pre(batch)?;
        let (late, output) = match &mut self.operator {
            Some(operator) => (operator.push_rows(&current)?, Vec::new()),
            None => (Vec::new(), self.finish(&current)?),
        };
        Ok(Taken {
            current,
            late,
            output,
            late_joined: Vec::new(),
            max_event_time: None,
        })
    }

    /// Changes of the relation the steps before the operator read.
    fn take_combined_changes(&mut self, changes: &Changes) -> Result<Taken> {
        let current = self.plan.apply_pre_changes(changes)?;
        let operator = self
            .operator
            .as_mut()
            .ok_or_else(|| Error::Internal("changes reached a view without aggregation".into()))?;
        let late = operator.push_changes(&current)?;
        Ok(Taken {
            current: current.rows,
            late,
            output: Vec::new(),
            late_joined: Vec::new(),
            max_event_time: None,
        })
    }

    /// Closes what `watermark` passed; returns its rows, final (`None`: nothing closed; the
    /// rows may be none when the steps after the operator filter them all).
    pub fn advance(&mut self, watermark: i64) -> Result<Option<Vec<RecordBatch>>> {
        let closed = match &mut self.operator {
            Some(operator) => operator.advance(watermark)?,
            None => Vec::new(),
        };
        match closed.is_empty() {
            true => Ok(None),
            false => self.finish_all(closed).map(Some),
        }
    }

    /// The rows of what is still open (none without an operator).
    pub fn live(&mut self) -> Result<Vec<RecordBatch>> {
        let snapshot = match &mut self.operator {
            Some(operator) => operator.snapshot()?,
            None => Vec::new(),
        };
        self.finish_all(snapshot)
    }

    fn finish_all(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            out.extend(self.finish(&batch)?);
        }
        Ok(out)
    }

    /// The steps after the operator, then the view's column types.
    fn finish(&self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let current = self.plan.apply_post(batch)?;
        if current.num_rows() == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![self.plan.conform(&current)?])
    }

    /// The latest time in a batch of input `branch` on the input's watermark column.
    fn max_event_time(&self, branch: usize, batch: &RecordBatch) -> Option<i64> {
        let input = self.plan.inputs()[branch];
        let column = batch
            .schema()
            .index_of(input.watermark_columns.first()?)
            .ok()?;
        let times = batch
            .column(column)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()?;
        max(times)
    }
}
