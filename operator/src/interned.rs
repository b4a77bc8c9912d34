//! Label sets whose strings are held once, however many Nodes carry them.
//!
//! A gigafactory's 25,000 Nodes carry some fifty labels each, nearly all with the same few
//! hundred keys and values (the GPU product, the driver version, the pool, the scalable unit).
//! Held as `BTreeMap<String, String>`, each Node's copy of them costs about 4 KiB; interned, a
//! label costs its two pointers (16 bytes) and each distinct string is kept once, freed with its
//! last holder.

use std::collections::BTreeMap;
use std::fmt;

use internment::ArcIntern;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// A string held once for all its holders, freed with the last of them. Eight bytes.
pub type Sym = ArcIntern<String>;

/// Interns `s`.
pub fn sym(s: &str) -> Sym {
    ArcIntern::from_ref(s)
}

/// Labels, sorted by key, keys and values interned.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<[(Sym, Sym)]>);

impl Labels {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).map(|i| self.0[i].1.as_str())
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// Every label, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These labels with `more` set over them.
    pub fn with<'a>(&'a self, more: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut all: BTreeMap<&str, &str> = self.iter().collect();
        all.extend(more);
        all.into_iter().collect()
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Labels {
    /// Interns every pair; of a key given twice, the last value stays.
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Self {
        let sorted: BTreeMap<&str, &str> = pairs.into_iter().collect();
        Labels(sorted.into_iter().map(|(k, v)| (sym(k), sym(v))).collect())
    }
}

impl From<&BTreeMap<String, String>> for Labels {
    fn from(map: &BTreeMap<String, String>) -> Self {
        Labels(map.iter().map(|(k, v)| (sym(k), sym(v))).collect())
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = str;

    fn index(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no label {key} in {self:?}"))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Label keys, sorted, interned.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Keys(Box<[Sym]>);

impl Keys {
    /// Whether `key` is one of them.
    pub fn contains(&self, key: &str) -> bool {
        self.0.binary_search_by(|k| k.as_str().cmp(key)).is_ok()
    }

    /// Every key, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|k| k.as_str())
    }
}

impl<'a> FromIterator<&'a str> for Keys {
    fn from_iter<I: IntoIterator<Item = &'a str>>(keys: I) -> Self {
        let mut keys: Vec<&str> = keys.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        Keys(keys.into_iter().map(sym).collect())
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_looked_up_and_share_their_strings() {
        let a: Labels = [("zone", "hall-1"), ("pool", "train"), ("zone", "hall-2")]
            .into_iter()
            .collect();
        assert_eq!(a.keys().collect::<Vec<_>>(), ["pool", "zone"]);
        assert_eq!(a.get("zone"), Some("hall-2"));
        assert_eq!(a.get("rack"), None);
        assert_eq!(&a["pool"], "train");
        let b: Labels = [("pool", "train")].into_iter().collect();
        // One "train" for both label sets.
        assert!(std::ptr::eq(a.0[0].1.as_str(), b.0[0].1.as_str()));
        let c = b.with([("pool", "serve"), ("rack", "r1")]);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [("pool", "serve"), ("rack", "r1")]
        );
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"pool": "serve", "rack": "r1"})
        );
    }

    #[test]
    fn keys_are_a_sorted_set() {
        let keys: Keys = ["b", "a", "b"].into_iter().collect();
        assert_eq!(keys.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(keys.contains("a") && !keys.contains("c"));
    }
}
