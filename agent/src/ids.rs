//! The one id table of the agent: its processes (by exec id) and its containers (by container
//! id) are each a [`Registry`]. An id is reserved while what it names is being set up, so that
//! a second request for it fails at once, and is released again if the setup fails.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

enum Slot<T> {
    /// Being set up: the id is taken, nothing can be looked up under it yet.
    Reserved,
    Filled(Arc<T>),
}

/// Id -> entry. Cheap to clone (the clones share the table).
pub struct Registry<T> {
    slots: Arc<Mutex<HashMap<String, Slot<T>>>>,
}

impl<T> Clone for Registry<T> {
    fn clone(&self) -> Self {
        Registry {
            slots: self.slots.clone(),
        }
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            slots: Arc::default(),
        }
    }
}

/// The id is already in use (reserved or filled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken;

/// An id held for a setup in progress; released on drop unless filled.
pub struct Reservation<T> {
    registry: Registry<T>,
    id: String,
    filled: bool,
}

impl<T> Registry<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot<T>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `id` for a new entry.
    pub fn reserve(&self, id: &str) -> Result<Reservation<T>, Taken> {
        let mut slots = self.lock();
        if slots.contains_key(id) {
            return Err(Taken);
        }
        slots.insert(id.to_string(), Slot::Reserved);
        Ok(Reservation {
            registry: self.clone(),
            id: id.to_string(),
            filled: false,
        })
    }

    /// The entry filled in under `id`.
    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        match self.lock().get(id) {
            Some(Slot::Filled(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Forgets `entry` if it is still the one under `id`.
    pub fn remove_entry(&self, id: &str, entry: &Arc<T>) {
        let mut slots = self.lock();
        if matches!(slots.get(id), Some(Slot::Filled(e)) if Arc::ptr_eq(e, entry)) {
            slots.remove(id);
        }
    }

    /// Forgets whatever is under `id`.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Every entry filled in, with its id.
    pub fn all(&self) -> Vec<(String, Arc<T>)> {
        self.lock()
            .iter()
            .filter_map(|(id, s)| match s {
                Slot::Filled(e) => Some((id.clone(), e.clone())),
                Slot::Reserved => None,
            })
            .collect()
    }
}

impl<T> Reservation<T> {
    /// Registers the entry under the reserved id.
    pub fn fill(mut self, entry: Arc<T>) {
        self.registry
            .lock()
            .insert(self.id.clone(), Slot::Filled(entry));
        self.filled = true;
    }
}

impl<T> Drop for Reservation<T> {
    fn drop(&mut self) {
        if !self.filled {
            let mut slots = self.registry.lock();
            if matches!(slots.get(&self.id), Some(Slot::Reserved)) {
                slots.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_block_reuse_until_released() {
        let table = Registry::<u32>::default();
        let r = table.reserve("a").unwrap();
        assert_eq!(table.reserve("a").err(), Some(Taken));
        assert!(table.get("a").is_none());
        assert!(table.all().is_empty());
        drop(r);
        let r = table.reserve("a").unwrap();
        let entry = Arc::new(1);
        r.fill(entry.clone());
        assert_eq!(table.get("a").as_deref(), Some(&1));
        assert_eq!(table.all().len(), 1);
        assert_eq!(table.reserve("a").err(), Some(Taken));
        table.remove_entry("a", &entry);
        assert!(table.get("a").is_none());
    }

    #[test]
    fn only_the_registered_entry_is_removed() {
        let table = Registry::<u32>::default();
        let first = Arc::new(1);
        table.reserve("a").unwrap().fill(first.clone());
        table.remove("a");
        let second = Arc::new(2);
        table.reserve("a").unwrap().fill(second.clone());
        // An old handle does not remove its successor under the same id.
        table.remove_entry("a", &first);
        assert_eq!(table.get("a").as_deref(), Some(&2));
        table.remove("a");
        assert!(table.all().is_empty());
    }
}
