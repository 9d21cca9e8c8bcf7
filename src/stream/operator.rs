//! The stateful operator of a view, whichever it is: windows over an append-only input
//! ([`WindowAggregate`]), groups following inserts and deletes ([`RetractingAggregate`]), or
//! the top rows per partition ([`TopN`]). The pipeline drives each through this one type.

use datafusion::arrow::array::RecordBatch;

use super::aggregate::WindowAggregate;
use super::changes::Changes;
use super::retracting::RetractingAggregate;
use super::top_n::TopN;
use crate::error::{Error, Result};

pub enum ViewOperator {
    Window(WindowAggregate),
    Retracting(RetractingAggregate),
    TopN(TopN),
}

impl ViewOperator {
    /// Adds rows; returns the positions of late rows (not added).
    pub fn push_rows(&mut self, batch: &RecordBatch) -> Result<Vec<u32>> {
        match self {
            ViewOperator::Window(window) => window.push(batch),
            ViewOperator::Retracting(groups) => groups.push(&Changes::inserts(batch.clone())),
            ViewOperator::TopN(top) => {
                top.push(&Changes::inserts(batch.clone()))?;
                Ok(Vec::new())
            }
        }
    }

    /// Applies inserts and deletes (planning gives none to a window aggregate); returns the
    /// positions of late ones (not applied).
    pub fn push_changes(&mut self, changes: &Changes) -> Result<Vec<u32>> {
        match self {
            ViewOperator::Window(_) => Err(Error::Internal(
                "a window aggregate was given deletes".into(),
            )),
            ViewOperator::Retracting(groups) => groups.push(changes),
            ViewOperator::TopN(top) => {
                top.push(changes)?;
                Ok(Vec::new())
            }
        }
    }

    /// The watermark windows were last closed at (`i64::MIN`: none, or no windows).
    pub fn watermark(&self) -> i64 {
        match self {
            ViewOperator::Window(window) => window.watermark(),
            ViewOperator::Retracting(groups) => groups.watermark(),
            ViewOperator::TopN(_) => i64::MIN,
        }
    }

    /// Closes the windows `watermark` passed, returning their rows.
    pub fn advance(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        match self {
            ViewOperator::Window(window) => window.advance(watermark),
            ViewOperator::Retracting(groups) => groups.close(watermark),
            ViewOperator::TopN(_) => Ok(Vec::new()),
        }
    }

    /// The watermark of the output's time columns, if it has any.
    pub fn output_watermark(&self) -> Option<i64> {
        match self {
            ViewOperator::Window(window) => window.output_watermark(),
            ViewOperator::Retracting(groups) => groups.output_watermark(),
            ViewOperator::TopN(_) => None,
        }
    }

    /// The state as one batch for a checkpoint; `None` when there is none.
    pub fn checkpoint(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            ViewOperator::Window(window) => window.checkpoint(),
            ViewOperator::Retracting(groups) => groups.checkpoint(),
            ViewOperator::TopN(top) => top.checkpoint(),
        }
    }

    /// Restores a new operator to a checkpoint.
    pub fn restore(&mut self, batch: Option<&RecordBatch>, watermark: Option<i64>) -> Result<()> {
        match self {
            ViewOperator::Window(window) => window.restore(batch, watermark),
            ViewOperator::Retracting(groups) => match batch {
                Some(batch) => groups.restore(batch, watermark),
                None => {
                    groups.close(watermark.unwrap_or(i64::MIN))?;
                    Ok(())
                }
            },
            ViewOperator::TopN(top) => match batch {
                Some(batch) => top.restore(batch),
                None => Ok(()),
            },
        }
    }

    /// The current (not final) rows.
    pub fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        match self {
            ViewOperator::Window(window) => window.snapshot(),
            ViewOperator::Retracting(groups) => groups.snapshot(),
            ViewOperator::TopN(top) => top.snapshot(),
        }
    }

    pub fn open_groups(&self) -> usize {
        match self {
            ViewOperator::Window(window) => window.open_groups(),
            ViewOperator::Retracting(groups) => groups.groups(),
            ViewOperator::TopN(top) => top.partitions(),
        }
    }

    pub fn state_bytes(&self) -> usize {
        match self {
            ViewOperator::Window(window) => window.state_bytes(),
            ViewOperator::Retracting(groups) => groups.state_bytes(),
            ViewOperator::TopN(top) => top.state_bytes(),
        }
    }
}
