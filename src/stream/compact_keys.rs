//! Group keys of one integer column, in 4 bytes per slot of hash table plus the key itself.
//!
//! DataFusion's `GroupValuesPrimitive` keeps `(group index, hash)` — 16 bytes — per slot of its
//! table, which at a million groups is over half of a count+sum view's state. Views keep their
//! open groups for as long as a window is open, so here a slot holds only the group's index
//! (u32), and a key's hash is computed again from the key when the table grows (an integer
//! hashes in a few instructions). Used for every single-column integer, date and timestamp key
//! (`Groups::new`); other keys keep DataFusion's tables.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, NullBufferBuilder, PrimitiveArray,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::Result;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::GroupValues;

/// An empty slot.
const EMPTY: u32 = u32::MAX;

/// Keys of one integer column: `values[g]` is group `g`'s key.
pub struct CompactKeys<T: ArrowPrimitiveType> {
    data_type: DataType,
    /// Open addressing, linear probing; a power of two long, at most 7/8 full.
    slots: Vec<u32>,
    values: Vec<T::Native>,
    null_group: Option<usize>,
}

/// Whether a key of `data_type` gets a [`CompactKeys`] table, and that table.
pub fn compact_keys(data_type: &DataType) -> Option<Box<dyn GroupValues>> {
    fn boxed<T: ArrowPrimitiveType>(d: &DataType) -> Option<Box<dyn GroupValues>>
    where
        T::Native: Into<i128>,
    {
        Some(Box::new(CompactKeys::<T>::new(d.clone())))
    }
    match data_type {
        DataType::Int8 => boxed::<Int8Type>(data_type),
        DataType::Int16 => boxed::<Int16Type>(data_type),
        DataType::Int32 => boxed::<Int32Type>(data_type),
        DataType::Int64 => boxed::<Int64Type>(data_type),
        DataType::UInt8 => boxed::<UInt8Type>(data_type),
        DataType::UInt16 => boxed::<UInt16Type>(data_type),
        DataType::UInt32 => boxed::<UInt32Type>(data_type),
        DataType::UInt64 => boxed::<UInt64Type>(data_type),
        DataType::Date32 => boxed::<Date32Type>(data_type),
        DataType::Date64 => boxed::<Date64Type>(data_type),
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => boxed::<TimestampSecondType>(data_type),
            TimeUnit::Millisecond => boxed::<TimestampMillisecondType>(data_type),
            TimeUnit::Microsecond => boxed::<TimestampMicrosecondType>(data_type),
            TimeUnit::Nanosecond => boxed::<TimestampNanosecondType>(data_type),
        },
        _ => None,
    }
}

/// A key's hash: its bits mixed (the finaliser of SplitMix64), so that keys in runs spread.
fn hash(key: i128) -> u64 {
    let mut h = (key as u64) ^ ((key >> 64) as u64).rotate_left(32);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl<T: ArrowPrimitiveType> CompactKeys<T>
where
    T::Native: Into<i128>,
{
    fn new(data_type: DataType) -> Self {
        CompactKeys {
            data_type,
            slots: vec![EMPTY; 16],
            values: Vec::new(),
            null_group: None,
        }
    }

    /// The slot of `key`: the one holding its group, or the empty one it would go into.
    fn slot(&self, key: T::Native) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = hash(key.into()) as usize & mask;
        loop {
            let group = self.slots[at];
            if group == EMPTY || self.values[group as usize].into() == key.into() {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    /// Doubles the table and puts every key's group back.
    fn grow(&mut self) {
        let len = self.slots.len() * 2;
        self.slots = vec![EMPTY; len];
        self.rebuild();
    }

    /// Puts every key's group into the (empty) slots.
    fn rebuild(&mut self) {
        self.slots.fill(EMPTY);
        for (group, &key) in self.values.iter().enumerate() {
            if Some(group) != self.null_group {
                let at = self.slot(key);
                self.slots[at] = group as u32;
            }
        }
    }
}

impl<T: ArrowPrimitiveType> GroupValues for CompactKeys<T>
where
    T::Native: Into<i128>,
{
    fn intern(&mut self, cols: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        let keys = cols[0].as_primitive::<T>();
        groups.clear();
        groups.reserve(keys.len());
        for (row, &key) in keys.values().iter().enumerate() {
            if keys.is_null(row) {
                let next = self.values.len();
                groups.push(*self.null_group.get_or_insert_with(|| {
                    self.values.push(T::Native::default());
                    next
                }));
                continue;
            }
            let mut at = self.slot(key);
            if self.slots[at] == EMPTY {
                // Past 7/8 full the table doubles first (a group index must fit a slot).
                if (self.values.len() + 1) * 8 > self.slots.len() * 7 {
                    self.grow();
                    at = self.slot(key);
                }
                let group = u32::try_from(self.values.len())
                    .ok()
                    .filter(|&g| g != EMPTY)
                    .ok_or_else(|| {
                        datafusion::error::DataFusionError::ResourcesExhausted(
                            "more than 4 294 967 294 groups in one window".into(),
                        )
                    })?;
                self.slots[at] = group;
                self.values.push(key);
            }
            groups.push(self.slots[at] as usize);
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.slots.capacity() * size_of::<u32>() + self.values.capacity() * size_of::<T::Native>()
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = match emit_to {
            EmitTo::All => self.values.len(),
            EmitTo::First(n) => n.min(self.values.len()),
        };
        let rest = self.values.split_off(n);
        let values = std::mem::replace(&mut self.values, rest);
        let null = self.null_group.filter(|&g| g < n);
        self.null_group = self.null_group.and_then(|g| g.checked_sub(n));
        let nulls = null.map(|g| {
            let mut nulls = NullBufferBuilder::new(values.len());
            nulls.append_n_non_nulls(g);
            nulls.append_null();
            nulls.append_n_non_nulls(values.len() - g - 1);
            nulls.finish()
        });
        self.rebuild();
        let array = PrimitiveArray::<T>::new(values.into(), nulls.flatten())
            .with_data_type(self.data_type.clone());
        Ok(vec![Arc::new(array)])
    }

    fn clear_shrink(&mut self, num_rows: usize) {
        self.values.clear();
        self.values.shrink_to(num_rows);
        self.null_group = None;
        self.slots = vec![EMPTY; (num_rows * 8 / 7 + 1).next_power_of_two().max(16)];
    }
}

#[cfg(test)]
mod tests;
