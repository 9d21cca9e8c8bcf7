//! Pane state for tumbling, hopping, cumulating and unbounded windows (see [`super::window`]).
//!
//! Each open pane is a [`Groups`] table taking rows. When the first window holding a pane
//! closes, the pane is frozen into a [`Partial`] (keys and accumulator states) that every later
//! window holding it merges; it is dropped once its last window closed. A tumbling window is a
//! single pane, so it is finished directly, without a merge.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::SchemaRef;

use super::aggregate::{Layout, WindowBounds};
use super::groups::{AggregateSpec, Groups, Inputs, Partial};
use super::state::{Decoded, StatePart};
use super::window::WindowKind;
use crate::error::Result;

pub struct Panes {
    kind: WindowKind,
    key_schema: SchemaRef,
    aggregates: Arc<[AggregateSpec]>,
    open: BTreeMap<i64, Groups>,
    frozen: BTreeMap<i64, Partial>,
}

impl Panes {
    pub fn new(kind: WindowKind, key_schema: SchemaRef, aggregates: Arc<[AggregateSpec]>) -> Self {
        Panes {
            kind,
            key_schema,
            aggregates,
            open: BTreeMap::new(),
            frozen: BTreeMap::new(),
        }
    }

    pub fn groups(&self) -> usize {
        self.open.values().map(Groups::len).sum::<usize>()
            + self.frozen.values().map(Partial::rows).sum::<usize>()
    }

    pub fn size(&self) -> usize {
        let frozen: usize = self
            .frozen
            .values()
            .flat_map(|p| p.keys.iter().chain(p.states.iter().flatten()))
            .map(|a| a.get_array_memory_size())
            .sum();
        self.open.values().map(Groups::size).sum::<usize>() + frozen
    }

    /// Adds on-time rows, each to the pane of its event time.
    pub fn push(&mut self, inputs: &Inputs, times: &[i64]) -> Result<()> {
        let first = self.kind.pane_start(times[0]);
        let end = first.saturating_add(self.kind.pane());
        if times.iter().all(|&t| first <= t && t < end) {
            return self.pane(first)?.update(inputs);
        }
        let panes: Vec<i64> = times.iter().map(|&t| self.kind.pane_start(t)).collect();
        // Rows of a batch usually span a few panes: split them by pane, in pane order.
        let mut by_pane: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, p) in panes.iter().enumerate() {
            by_pane.entry(*p).or_default().push(i as u32);
        }
        for (pane, rows) in by_pane {
            let taken = inputs.take(&UInt32Array::from(rows))?;
            self.pane(pane)?.update(&taken)?;
        }
        Ok(())
    }

    fn pane(&mut self, start: i64) -> Result<&mut Groups> {
        Ok(match self.open.entry(start) {
            Entry::Occupied(pane) => pane.into_mut(),
            Entry::Vacant(pane) => pane.insert(Groups::new(&self.key_schema, &self.aggregates)?),
        })
    }

    /// Removes and returns the open panes whose first window ends at or before `to` (a prefix:
    /// the first window end grows with the pane start).
    fn take_closing(&mut self, to: i64) -> BTreeMap<i64, Groups> {
        let kind = self.kind;
        match self.open.keys().find(|&&p| kind.first_end(p) > to).copied() {
            Some(first_kept) => {
                let kept = self.open.split_off(&first_kept);
                std::mem::replace(&mut self.open, kept)
            }
            None => std::mem::take(&mut self.open),
        }
    }

    /// Emits every window ending in `(from, to]` and drops panes no open window needs.
    pub fn close(&mut self, from: i64, to: i64, layout: &Layout) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let closing = self.take_closing(to);
        if let WindowKind::Tumble { size } = self.kind {
            for (start, mut groups) in closing {
                let (keys, values) = groups.finish()?;
                let mut bounds = WindowBounds::default();
                bounds.repeat((start, start + size), keys[0].len());
                out.push(layout.batch(&bounds, &keys, values)?);
            }
            return Ok(out);
        }
        // Freeze the panes whose first window closes now: they take no more rows.
        for (start, mut groups) in closing {
            self.frozen.insert(start, groups.take()?);
        }
        let closing: BTreeSet<(i64, i64)> = self
            .frozen
            .keys()
            .flat_map(|&p| self.kind.windows_of_pane(p))
            .filter(|&(_, end)| from < end && end <= to)
            .map(|(start, end)| (end, start))
            .collect();
        for (end, start) in closing {
            if let Some(batch) = self.window(start, end, layout, false)? {
                out.push(batch);
            }
        }
        let kind = self.kind;
        self.frozen.retain(|&p, _| kind.last_end(p) > to);
        Ok(out)
    }

    /// The window `[start, end)` merged from its panes (open ones peeked when `peek_open`).
    fn window(
        &mut self,
        start: i64,
        end: i64,
        layout: &Layout,
        peek_open: bool,
    ) -> Result<Option<RecordBatch>> {
        let mut groups = Groups::new(&self.key_schema, &self.aggregates)?;
        for (_, partial) in self.frozen.range(start..end) {
            groups.merge(partial)?;
        }
        if peek_open {
            for (_, pane) in self.open.range_mut(start..end) {
                groups.merge(&pane.peek()?)?;
            }
        }
        if groups.is_empty() {
            return Ok(None);
        }
        let (keys, values) = groups.finish()?;
        let mut bounds = WindowBounds::default();
        bounds.repeat((start, end), keys[0].len());
        Ok(Some(layout.batch(&bounds, &keys, values)?))
    }

    /// Every pane's groups, for a checkpoint (open panes are peeked, not disturbed).
    pub fn checkpoint(&mut self) -> Result<Vec<StatePart>> {
        let mut parts = Vec::with_capacity(self.open.len() + self.frozen.len());
        for (&start, pane) in &mut self.open {
            parts.push(pane_part(start, false, pane.peek()?));
        }
        for (&start, partial) in &self.frozen {
            parts.push(pane_part(start, true, partial.clone()));
        }
        Ok(parts)
    }

    /// Puts back the panes of a checkpoint.
    pub fn restore(&mut self, state: &Decoded) -> Result<()> {
        for (start, frozen, rows) in state.runs() {
            let partial = state.slice(&rows);
            match frozen {
                true => {
                    self.frozen.insert(start, partial);
                }
                false => self.pane(start)?.merge(&partial)?,
            }
        }
        Ok(())
    }

    /// Partial results of every window not closed at `watermark` that holds rows.
    pub fn snapshot(&mut self, watermark: i64, layout: &Layout) -> Result<Vec<RecordBatch>> {
        let windows: BTreeSet<(i64, i64)> = self
            .open
            .keys()
            .chain(self.frozen.keys())
            .flat_map(|&p| self.kind.windows_of_pane(p))
            .filter(|&(_, end)| end > watermark)
            .collect();
        let mut out = Vec::new();
        for (start, end) in windows {
            out.extend(self.window(start, end, layout, true)?);
        }
        Ok(out)
    }
}

fn pane_part(start: i64, frozen: bool, partial: Partial) -> StatePart {
    let rows = partial.rows();
    StatePart {
        starts: vec![start; rows],
        ends: vec![0; rows],
        frozen,
        partial,
    }
}
