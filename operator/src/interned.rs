//! Label sets whose strings are held once, however many Nodes carry them.
//!
//! A gigafactory's 25,000 Nodes carry some fifty labels each, nearly all with the same few
//! hundred keys and values (the GPU product, the driver version, the pool, the scalable unit).
//! Held as `BTreeMap<String, String>`, each Node's copy of them costs about 4 KiB. Here each
//! distinct string is kept once, and so is each distinct set of the labels Nodes share: the Nodes
//! of one pool in one rack or leaf carry the same set, so a Node's labels cost a pointer to that
//! set and its own few labels (its hostname), not fifty pairs of pointers. All of it is freed
//! with its last holder.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::Peekable;
use std::ops::Deref;

use internment::ArcIntern;
use k8s_openapi::api::core::v1::Taint;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// A string held once for all its holders, freed with the last of them. Eight bytes.
pub type Sym = ArcIntern<String>;

/// Interns `s`.
pub fn sym(s: &str) -> Sym {
    ArcIntern::from_ref(s)
}

/// Label keys whose value is the Node's own (the kubelet sets its hostname on every Node): kept
/// beside the shared set, so that Nodes alike but for them share one.
const PER_NODE_KEYS: [&str; 1] = ["kubernetes.io/hostname"];

/// Label pairs sorted by key.
type Pairs = Box<[(Sym, Sym)]>;

/// Labels, sorted by key, keys and values interned, and the set of them Nodes share interned
/// whole. Sixteen bytes and, for a Node's hostname, one small allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    /// Every label but the per-Node ones.
    shared: ArcIntern<Pairs>,
    /// The labels of [`PER_NODE_KEYS`].
    own: Pairs,
}

impl Default for Labels {
    fn default() -> Self {
        Labels::from_sorted(std::iter::empty())
    }
}

impl Labels {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        find(&self.own, key).or_else(|| find(&self.shared, key))
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every label, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        Merge {
            a: self.shared.iter().peekable(),
            b: self.own.iter().peekable(),
        }
        .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.shared.len() + self.own.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// These labels with `more` set over them.
    pub fn with<'a>(&'a self, more: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut all: BTreeMap<&str, &str> = self.iter().collect();
        all.extend(more);
        Labels::from_sorted(all.into_iter())
    }

    /// Labels from pairs sorted by key, each key once.
    fn from_sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let (own, shared): (Vec<_>, Vec<_>) = pairs
            .map(|(k, v)| (sym(k), sym(v)))
            .partition(|(k, _)| PER_NODE_KEYS.contains(&k.as_str()));
        Labels {
            shared: ArcIntern::new(shared.into_boxed_slice()),
            own: own.into_boxed_slice(),
        }
    }
}

/// The value of `key` among `pairs`, sorted by key.
fn find<'a>(pairs: &'a [(Sym, Sym)], key: &str) -> Option<&'a str> {
    pairs
        .binary_search_by(|(k, _)| k.as_str().cmp(key))
        .ok()
        .map(|i| pairs[i].1.as_str())
}

/// Two sequences of pairs sorted by key, merged in key order.
struct Merge<I: Iterator> {
    a: Peekable<I>,
    b: Peekable<I>,
}

impl<'a, I: Iterator<Item = &'a (Sym, Sym)>> Iterator for Merge<I> {
    type Item = &'a (Sym, Sym);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) if b.0.as_str() < a.0.as_str() => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Labels {
    /// Interns every pair; of a key given twice, the last value stays.
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Self {
        let sorted: BTreeMap<&str, &str> = pairs.into_iter().collect();
        Labels::from_sorted(sorted.into_iter())
    }
}

impl From<&BTreeMap<String, String>> for Labels {
    fn from(map: &BTreeMap<String, String>) -> Self {
        Labels::from_sorted(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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

/// Label keys, sorted, interned, the set interned whole: every Node fabbrica labels has the
/// same keys of its own. Eight bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Keys(ArcIntern<Box<[Sym]>>);

impl Default for Keys {
    fn default() -> Self {
        Keys(ArcIntern::new(Box::default()))
    }
}

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
        Keys(ArcIntern::new(keys.into_iter().map(sym).collect()))
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A Node's taints, the list interned whole: the Nodes of a pool carry the same ones. Eight bytes;
/// reads as a slice.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Taints(ArcIntern<TaintList>);

/// A taint list that can be interned: equal lists hash alike (by key, value and effect).
#[derive(PartialEq)]
struct TaintList(Vec<Taint>);

impl Eq for TaintList {}

impl Hash for TaintList {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for taint in &self.0 {
            (&taint.key, &taint.value, &taint.effect).hash(state);
        }
    }
}

impl Default for Taints {
    fn default() -> Self {
        Taints::from(Vec::new())
    }
}

impl From<Vec<Taint>> for Taints {
    fn from(taints: Vec<Taint>) -> Self {
        Taints(ArcIntern::new(TaintList(taints)))
    }
}

impl Deref for Taints {
    type Target = [Taint];

    fn deref(&self) -> &[Taint] {
        &self.0.0
    }
}

impl fmt::Debug for Taints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
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
        assert!(std::ptr::eq(a.shared[0].1.as_str(), b.shared[0].1.as_str()));
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
    fn nodes_alike_but_for_their_hostname_share_one_label_set() {
        let node = |host| -> Labels {
            [
                ("nvidia.com/gpu.product", "NVIDIA-B200"),
                ("kubernetes.io/hostname", host),
                ("kubernetes.io/arch", "amd64"),
                ("zone", "hall-1"),
            ]
            .into_iter()
            .collect()
        };
        let (a, b) = (node("gpu-1"), node("gpu-2"));
        assert!(std::ptr::eq(&**a.shared, &**b.shared), "one shared set");
        assert_ne!(a, b);
        assert_eq!(a, node("gpu-1"));
        // The hostname is merged back in key order wherever it is read.
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            [
                "kubernetes.io/arch",
                "kubernetes.io/hostname",
                "nvidia.com/gpu.product",
                "zone"
            ]
        );
        assert_eq!(a.get("kubernetes.io/hostname"), Some("gpu-1"));
        assert_eq!(a.len(), 4);
        let moved = a.with([("kubernetes.io/hostname", "gpu-2")]);
        assert_eq!(moved, b);
        let only_host: Labels = [("kubernetes.io/hostname", "h")].into_iter().collect();
        assert_eq!(
            only_host.iter().collect::<Vec<_>>(),
            [("kubernetes.io/hostname", "h")]
        );
        assert!(Labels::default().is_empty());
    }

    #[test]
    fn equal_taint_lists_are_one() {
        let taint = |key: &str| Taint {
            key: key.into(),
            value: Some("present".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let a = Taints::from(vec![taint("nvidia.com/gpu"), taint("fabbrica.io/pool")]);
        let b = Taints::from(vec![taint("nvidia.com/gpu"), taint("fabbrica.io/pool")]);
        assert!(std::ptr::eq(&*a, &*b), "one list for both");
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].key, "fabbrica.io/pool");
        assert_ne!(a, Taints::from(vec![taint("nvidia.com/gpu")]));
        assert!(Taints::default().is_empty());
    }

    #[test]
    fn keys_are_a_sorted_set() {
        let keys: Keys = ["b", "a", "b"].into_iter().collect();
        assert_eq!(keys.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(keys.contains("a") && !keys.contains("c"));
        let again: Keys = ["a", "b"].into_iter().collect();
        assert!(std::ptr::eq(&**keys.0, &**again.0), "one set for both");
    }
}
