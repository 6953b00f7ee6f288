//! [`IdTable`]: the call table's map from a call's id to its entry.
//!
//! A channel's call ids rise by one per call, and the calls in its table at
//! once are few, so an entry sits in the slot its id picks modulo a power
//! of two: found with a mask and one compare, where a hash map hashes the
//! id and probes a group on every insert, answer and take. The table keeps
//! at most half its slots full, and [`IdTable::slot_taken`] lets the id
//! allocator step over an id whose slot a long-running call still holds;
//! an entry that finds its slot taken anyway (an id chosen elsewhere) goes
//! to a hash map beside the slots, so any id works.

use std::collections::HashMap;

use foldhash::fast::RandomState as FastHash;

/// Slots of a table's first entry.
const MIN_SLOTS: usize = 16;

/// Entries by call id; see the [module docs](self).
#[derive(Debug)]
pub(super) struct IdTable<V> {
    /// A power of two of them, or none before the first entry.
    slots: Vec<Option<(u64, V)>>,
    /// Entries whose slot held another id when they came.
    overflow: HashMap<u64, V, FastHash>,
    /// Entries in `slots`.
    in_slots: usize,
}

impl<V> Default for IdTable<V> {
    fn default() -> Self {
        IdTable {
            slots: Vec::new(),
            overflow: HashMap::default(),
            in_slots: 0,
        }
    }
}

impl<V> IdTable<V> {
    /// The slot of `id`; the table has slots.
    #[inline]
    fn index(&self, id: u64) -> usize {
        // Only the id's low bits pick the slot.
        #[allow(clippy::cast_possible_truncation)]
        let low = id as usize;
        low & (self.slots.len() - 1)
    }

    /// Entries in the table.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.in_slots + self.overflow.len()
    }

    /// Whether `id`'s slot holds an entry (of any id): an entry of `id`
    /// would go to the overflow map.
    #[inline]
    pub(super) fn slot_taken(&self, id: u64) -> bool {
        !self.slots.is_empty() && self.slots[self.index(id)].is_some()
    }

    /// Enters `value` as `id`'s; the value it replaces, if any.
    #[inline]
    pub(super) fn insert(&mut self, id: u64, value: V) -> Option<V> {
        if (self.in_slots + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let index = self.index(id);
        match &mut self.slots[index] {
            Some((held, old)) if *held == id => Some(std::mem::replace(old, value)),
            Some(_) => self.overflow.insert(id, value),
            empty => {
                *empty = Some((id, value));
                self.in_slots += 1;
                // Entered in the overflow map while its slot was taken.
                if self.overflow.is_empty() {
                    None
                } else {
                    self.overflow.remove(&id)
                }
            }
        }
    }

    /// `id`'s entry.
    #[inline]
    pub(super) fn get(&self, id: u64) -> Option<&V> {
        if self.slots.is_empty() {
            return None;
        }
        match &self.slots[self.index(id)] {
            Some((held, value)) if *held == id => Some(value),
            _ if self.overflow.is_empty() => None,
            _ => self.overflow.get(&id),
        }
    }

    /// `id`'s entry, to change.
    #[inline]
    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        if self.slots.is_empty() {
            return None;
        }
        let index = self.index(id);
        match &mut self.slots[index] {
            Some((held, value)) if *held == id => Some(value),
            _ if self.overflow.is_empty() => None,
            _ => self.overflow.get_mut(&id),
        }
    }

    /// Takes `id`'s entry out.
    #[inline]
    pub(super) fn remove(&mut self, id: u64) -> Option<V> {
        if self.slots.is_empty() {
            return None;
        }
        let index = self.index(id);
        let slot = &mut self.slots[index];
        if slot.as_ref().is_some_and(|(held, _)| *held == id) {
            self.in_slots -= 1;
            return slot.take().map(|(_, value)| value);
        }
        if self.overflow.is_empty() {
            None
        } else {
            self.overflow.remove(&id)
        }
    }

    /// Every entry with its id, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.slots
            .iter()
            .flatten()
            .map(|(id, value)| (*id, value))
            .chain(self.overflow.iter().map(|(id, value)| (*id, value)))
    }

    /// Twice the slots (at least [`MIN_SLOTS`]), every entry inserted again:
    /// one from the overflow map goes to its slot if that is free now.
    #[cold]
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, Vec::with_capacity(len));
        self.slots.resize_with(len, || None);
        self.in_slots = 0;
        let overflow = std::mem::take(&mut self.overflow);
        for (id, value) in old.into_iter().flatten().chain(overflow) {
            self.insert(id, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// An entry of the next id the allocator gives.
        Allocated,
        /// An entry of any id (as a frame made elsewhere may carry).
        Any(u64),
        Remove(u64),
        Get(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Small ids, so that the ids of `Any`, `Remove` and `Get` meet the
        // allocated ones and each other's slots.
        prop_oneof![
            4 => Just(Op::Allocated),
            1 => (0_u64..200).prop_map(Op::Any),
            3 => (0_u64..200).prop_map(Op::Remove),
            2 => (0_u64..200).prop_map(Op::Get),
        ]
    }

    proptest! {
        /// The table answers as a `HashMap` of the same entries would,
        /// whichever ids meet in a slot.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut table = IdTable::default();
            let mut model = HashMap::new();
            let mut next_id = 1_u64;
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Allocated => {
                        while table.slot_taken(next_id) {
                            next_id += 1;
                        }
                        prop_assert_eq!(table.insert(next_id, n), model.insert(next_id, n));
                        next_id += 1;
                    }
                    Op::Any(id) => prop_assert_eq!(table.insert(id, n), model.insert(id, n)),
                    Op::Remove(id) => prop_assert_eq!(table.remove(id), model.remove(&id)),
                    Op::Get(id) => {
                        prop_assert_eq!(table.get(id), model.get(&id));
                        if let Some(value) = table.get_mut(id) {
                            *value += 1000;
                            *model.get_mut(&id).expect("in the model too") += 1000;
                        }
                    }
                }
                prop_assert_eq!(table.len(), model.len());
            }
            let mut entries: Vec<(u64, usize)> =
                table.iter().map(|(id, value)| (id, *value)).collect();
            entries.sort_unstable();
            let mut expected: Vec<(u64, usize)> = model.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(entries, expected);
        }
    }

    #[test]
    fn an_id_whose_slot_is_taken_is_kept_beside_the_slots() {
        let mut table = IdTable::default();
        assert_eq!(table.insert(1, "long-running"), None);
        let slots = table.slots.len() as u64;
        // The same slot as id 1.
        assert!(table.slot_taken(1 + slots));
        assert_eq!(table.insert(1 + slots, "made elsewhere"), None);
        assert_eq!(table.overflow.len(), 1);
        assert_eq!(table.get(1), Some(&"long-running"));
        assert_eq!(table.get(1 + slots), Some(&"made elsewhere"));
        assert_eq!(table.remove(1), Some("long-running"));
        assert_eq!(table.remove(1 + slots), Some("made elsewhere"));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn keeps_at_most_half_its_slots_full() {
        let mut table = IdTable::default();
        for id in 1..=1000_u64 {
            table.insert(id, ());
            assert!(table.in_slots * 2 <= table.slots.len());
        }
        assert_eq!(table.len(), 1000);
        assert!(table.overflow.is_empty(), "rising ids never meet in a slot");
    }
}
