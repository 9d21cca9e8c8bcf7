//! Session windows: per group key, rows less than `gap` apart share a window
//! `[first event time, last event time + gap)`.
//!
//! Every session owns a *slot*: a group index of one shared [`Groups`] table. A row that
//! bridges two sessions merges them; the absorbed slot is linked to the survivor (union-find)
//! and the states are combined when the session is emitted, so a merge costs nothing per row.
//! Closing rebuilds the table: states of closing sessions are merged per session and evaluated,
//! the open ones are merged into a fresh table with compact slots.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::aggregate::{Layout, WindowBounds};
use super::groups::{AggregateSpec, Groups, Inputs, Partial};
use super::state::{Decoded, StatePart};
use crate::error::Result;

#[derive(Debug, Clone, Copy)]
struct Session {
    start: i64,
    /// Last event time + gap.
    end: i64,
    slot: usize,
}

pub struct Sessions {
    gap: i64,
    key_schema: SchemaRef,
    /// Group keys to dense key ids.
    keys: Box<dyn GroupValues>,
    /// Open sessions per key id, unordered.
    sessions: Vec<Vec<Session>>,
    groups: Groups,
    /// Union-find parent of every slot.
    parent: Vec<usize>,
    key_ids: Vec<usize>,
}

impl Sessions {
    pub fn new(
        gap: i64,
        key_schema: &SchemaRef,
        aggregates: &Arc<[AggregateSpec]>,
    ) -> Result<Self> {
        Ok(Sessions {
            gap,
            key_schema: Arc::clone(key_schema),
            keys: new_group_values(Arc::clone(key_schema), &GroupOrdering::None)?,
            sessions: Vec::new(),
            groups: Groups::new(key_schema, aggregates)?,
            parent: Vec::new(),
            key_ids: Vec::new(),
        })
    }

    pub fn groups(&self) -> usize {
        self.sessions.iter().map(Vec::len).sum()
    }

    /// The earliest start of an open session.
    pub fn min_start(&self) -> Option<i64> {
        self.sessions.iter().flatten().map(|s| s.start).min()
    }

    pub fn size(&self) -> usize {
        self.keys.size() + self.groups.size() + self.parent.len() * 8
    }

    fn root(&self, mut slot: usize) -> usize {
        while self.parent[slot] != slot {
            slot = self.parent[slot];
        }
        slot
    }

    /// Adds on-time rows to their key's sessions, opening and merging sessions as needed.
    pub fn push(&mut self, inputs: &Inputs, times: &[i64]) -> Result<()> {
        self.keys.intern(&inputs.keys, &mut self.key_ids)?;
        self.sessions.resize_with(self.keys.len(), Vec::new);
        let mut slots = Vec::with_capacity(times.len());
        for (&key, &ts) in self.key_ids.iter().zip(times) {
            let sessions = &mut self.sessions[key];
            // A row joins every session it is less than `gap` away from, merging them.
            let touched: Vec<usize> = (0..sessions.len())
                .filter(|&i| sessions[i].start - self.gap < ts && ts < sessions[i].end)
                .collect();
            let slot = match touched.split_first() {
                None => {
                    let slot = self.parent.len();
                    self.parent.push(slot);
                    sessions.push(Session {
                        start: ts,
                        end: ts + self.gap,
                        slot,
                    });
                    slot
                }
                Some((&first, rest)) => {
                    let mut merged = sessions[first];
                    merged.start = merged.start.min(ts);
                    merged.end = merged.end.max(ts + self.gap);
                    for &i in rest {
                        merged.start = merged.start.min(sessions[i].start);
                        merged.end = merged.end.max(sessions[i].end);
                        self.parent[sessions[i].slot] = merged.slot;
                    }
                    sessions[first] = merged;
                    // Descending, so every swap brings in a session that stays.
                    for &i in rest.iter().rev() {
                        sessions.swap_remove(i);
                    }
                    merged.slot
                }
            };
            slots.push(slot);
        }
        self.groups.update_groups(inputs, &slots, self.parent.len())
    }

    /// Emits the sessions ending at or before `watermark`.
    pub fn close(&mut self, watermark: i64, layout: &Layout) -> Result<Vec<RecordBatch>> {
        if !self.sessions.iter().flatten().any(|s| s.end <= watermark) {
            return Ok(Vec::new());
        }
        let batch = self.rebuild(Some(watermark), layout)?;
        Ok(batch.into_iter().collect())
    }

    /// Partial results of every open session.
    pub fn snapshot(&mut self, layout: &Layout) -> Result<Vec<RecordBatch>> {
        Ok(self.rebuild(None, layout)?.into_iter().collect())
    }

    /// Every open session with its merged state, for a checkpoint. The state is compacted
    /// first (one slot per session), as closing would.
    pub fn checkpoint(&mut self, layout: &Layout) -> Result<Vec<StatePart>> {
        self.rebuild(Some(i64::MIN), layout)?;
        let key_values = self.keys.emit(EmitTo::All)?;
        self.keys.intern(&key_values, &mut self.key_ids)?;
        let states = self.groups.take_states()?;
        let slots: Vec<usize> = (0..self.parent.len()).collect();
        self.groups.merge_groups(&states, &slots, slots.len())?;
        let (mut starts, mut ends, mut key_rows, mut slot_rows) = (vec![], vec![], vec![], vec![]);
        for (key, sessions) in self.sessions.iter().enumerate() {
            for s in sessions {
                starts.push(s.start);
                ends.push(s.end);
                key_rows.push(key as u32);
                slot_rows.push(s.slot as u32);
            }
        }
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![StatePart {
            starts,
            ends,
            frozen: false,
            partial: Partial {
                keys: take_arrays(&key_values, &key_rows)?,
                states: take_states(&states, &slot_rows)?,
            },
        }])
    }

    /// Puts back the sessions of a checkpoint (into an empty operator).
    pub fn restore(&mut self, state: &Decoded) -> Result<()> {
        self.keys.intern(&state.partial.keys, &mut self.key_ids)?;
        self.sessions.resize_with(self.keys.len(), Vec::new);
        for (slot, (&key, (&start, &end))) in self
            .key_ids
            .iter()
            .zip(state.starts.iter().zip(&state.ends))
            .enumerate()
        {
            self.sessions[key].push(Session { start, end, slot });
        }
        let slots: Vec<usize> = (0..state.starts.len()).collect();
        self.parent = slots.clone();
        self.groups
            .merge_groups(&state.partial.states, &slots, slots.len())
    }

    /// Evaluates the sessions ending at or before `watermark` (all of them, without closing
    /// any, when `None`) and rebuilds the state of the sessions kept open.
    fn rebuild(&mut self, watermark: Option<i64>, layout: &Layout) -> Result<Option<RecordBatch>> {
        let key_values = self.keys.emit(EmitTo::All)?;
        let states = self.groups.take_states()?;
        // Per slot: the session (output row) and the open slot it goes to.
        let mut out_slots: Vec<u32> = Vec::new();
        let mut out_groups: Vec<usize> = Vec::new();
        let mut out_keys: Vec<u32> = Vec::new();
        let mut bounds = WindowBounds::default();
        let mut kept_slots: Vec<u32> = Vec::new();
        let mut kept_groups: Vec<usize> = Vec::new();
        let mut kept_keys: Vec<u32> = Vec::new();
        let mut kept_sessions: Vec<Vec<Session>> = Vec::new();
        let mut out_index = vec![usize::MAX; self.parent.len()];
        let mut kept_index = vec![usize::MAX; self.parent.len()];
        for (key, sessions) in self.sessions.iter().enumerate() {
            let mut kept = Vec::new();
            for s in sessions {
                let emit = watermark.is_none_or(|w| s.end <= w);
                if emit {
                    out_index[s.slot] = bounds.starts.len();
                    bounds.starts.push(s.start);
                    bounds.ends.push(s.end);
                    out_keys.push(key as u32);
                }
                if watermark.is_none() || !emit {
                    kept_index[s.slot] = kept_groups_len(&kept_sessions, &kept);
                    kept.push(*s);
                }
            }
            if !kept.is_empty() {
                kept_keys.push(key as u32);
                kept_sessions.push(kept);
            }
        }
        for slot in 0..self.parent.len() {
            let root = self.root(slot);
            if out_index[root] != usize::MAX {
                out_slots.push(slot as u32);
                out_groups.push(out_index[root]);
            }
            if kept_index[root] != usize::MAX {
                kept_slots.push(slot as u32);
                kept_groups.push(kept_index[root]);
            }
        }
        let out = match bounds.starts.is_empty() {
            true => None,
            false => {
                let mut emitted = self.groups.empty_like()?;
                emitted.merge_groups(
                    &take_states(&states, &out_slots)?,
                    &out_groups,
                    bounds.starts.len(),
                )?;
                let values = emitted.evaluate()?;
                let keys = take_arrays(&key_values, &out_keys)?;
                Some(layout.batch(&bounds, &keys, values)?)
            }
        };
        // The kept sessions get compact slots 0.. and their keys compact ids 0.. .
        let mut groups = self.groups.empty_like()?;
        let kept_total: usize = kept_sessions.iter().map(Vec::len).sum();
        groups.merge_groups(
            &take_states(&states, &kept_slots)?,
            &kept_groups,
            kept_total,
        )?;
        let mut keys = new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?;
        keys.intern(&take_arrays(&key_values, &kept_keys)?, &mut self.key_ids)?;
        let mut next = 0;
        for sessions in &mut kept_sessions {
            for s in sessions.iter_mut() {
                s.slot = next;
                next += 1;
            }
        }
        self.parent = (0..kept_total).collect();
        self.sessions = kept_sessions;
        self.groups = groups;
        self.keys = keys;
        Ok(out)
    }
}

/// The compact slot the next kept session gets.
fn kept_groups_len(done: &[Vec<Session>], current: &[Session]) -> usize {
    done.iter().map(Vec::len).sum::<usize>() + current.len()
}

fn take_arrays(arrays: &[ArrayRef], rows: &[u32]) -> Result<Vec<ArrayRef>> {
    let indices = UInt32Array::from(rows.to_vec());
    arrays
        .iter()
        .map(|a| Ok(take(a.as_ref(), &indices, None)?))
        .collect()
}

fn take_states(states: &[Vec<ArrayRef>], rows: &[u32]) -> Result<Vec<Vec<ArrayRef>>> {
    states.iter().map(|s| take_arrays(s, rows)).collect()
}
