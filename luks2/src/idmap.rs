//! [`IdMap`]: the keyslots, tokens, segments and digests of the metadata, each keyed by its
//! decimal id and kept in id order (how the JSON lists them).
//!
//! A sorted `Vec` rather than a `BTreeMap`: there are at most 32 of each, and PID 1 links
//! this crate. Four `BTreeMap` instantiations cost it about 15 KiB of code; these are a few
//! hundred bytes each.

/// Values keyed by `u32` id, in id order; the `BTreeMap` methods this crate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap<T>(Vec<(u32, T)>);

impl<T> Default for IdMap<T> {
    fn default() -> Self {
        IdMap(Vec::new())
    }
}

impl<T> IdMap<T> {
    pub fn new() -> Self {
        IdMap::default()
    }

    fn find(&self, id: u32) -> Result<usize, usize> {
        self.0.binary_search_by_key(&id, |(k, _)| *k)
    }

    pub fn get(&self, id: &u32) -> Option<&T> {
        let i = self.find(*id).ok()?;
        self.0.get(i).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, id: &u32) -> Option<&mut T> {
        let i = self.find(*id).ok()?;
        self.0.get_mut(i).map(|(_, v)| v)
    }

    pub fn contains_key(&self, id: &u32) -> bool {
        self.find(*id).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, id: u32, value: T) -> Option<T> {
        match self.find(id) {
            Ok(i) => self
                .0
                .get_mut(i)
                .map(|slot| std::mem::replace(&mut slot.1, value)),
            Err(i) => {
                self.0.insert(i, (id, value));
                None
            }
        }
    }

    pub fn remove(&mut self, id: &u32) -> Option<T> {
        let i = self.find(*id).ok()?;
        Some(self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u32, &T)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &u32> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

impl<T> FromIterator<(u32, T)> for IdMap<T> {
    fn from_iter<I: IntoIterator<Item = (u32, T)>>(iter: I) -> Self {
        let mut map = IdMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<T, const N: usize> From<[(u32, T); N]> for IdMap<T> {
    fn from(items: [(u32, T); N]) -> Self {
        items.into_iter().collect()
    }
}

impl<'a, T> IntoIterator for &'a IdMap<T> {
    type Item = (&'a u32, &'a T);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (u32, T)>, fn(&'a (u32, T)) -> (&'a u32, &'a T)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_sorted_map() {
        let mut m: IdMap<&str> = [(3, "c"), (1, "a")].into();
        assert_eq!(m.insert(2, "b"), None);
        assert_eq!(m.insert(3, "C"), Some("c"));
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(m.get(&3), Some(&"C"));
        assert!(m.contains_key(&1) && !m.contains_key(&4));
        assert_eq!(m.remove(&1), Some("a"));
        assert_eq!(m.remove(&1), None);
        *m.get_mut(&2).unwrap() = "B";
        assert_eq!(
            (&m).into_iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            [(2, "B"), (3, "C")]
        );
        assert_eq!(m.len(), 2);
        assert!(!m.is_empty());
        for v in m.values_mut() {
            *v = "x";
        }
        assert!(m.values().all(|v| *v == "x"));
    }
}
