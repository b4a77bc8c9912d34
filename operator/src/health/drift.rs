//! Fabric drift: the discovered placement (labels a discovery tool such as Topograph wrote on
//! the Nodes) against the declared one. Pure.
//!
//! Discovered names are the switches' own (`leaf-07`), declared ones fabbrica's (`su001-lg0`),
//! so what is compared is the grouping: the Nodes of one declared leaf group should share one
//! discovered leaf, and no two groups the same one. Each declared group takes the discovered
//! value most of its Nodes carry; a Node on another value, or on a value a larger group took,
//! is where the cabling and the declaration disagree. Scalable units are compared the same way
//! against the discovered spine.

use std::collections::{BTreeMap, BTreeSet};

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{Topology, TopologySource};

use crate::factory::placement::Assignment;
use crate::nodes::{NodeMeta, NodeMetas};

/// Where the discovered leaf is, by default: Topograph's earlier schema, then its current one.
const LEAF_KEYS: [&str; 2] = [labels::TOPOLOGY_LEAF, labels::TOPOGRAPH_TIER_LEAF];
/// Where the discovered spine (scalable unit) is, by default.
const UNIT_KEYS: [&str; 2] = [labels::TOPOLOGY_SPINE, labels::TOPOGRAPH_TIER_SPINE];

/// The label keys of the discovered leaf and unit.
pub fn keys(topology: &Topology) -> (Vec<&str>, Vec<&str>) {
    let discovery = topology.discovery.as_ref();
    (
        pick(discovery.and_then(|d| d.leaf_label.as_ref()), LEAF_KEYS),
        pick(discovery.and_then(|d| d.unit_label.as_ref()), UNIT_KEYS),
    )
}

fn pick<'a>(configured: Option<&'a String>, defaults: [&'static str; 2]) -> Vec<&'a str> {
    configured.map_or_else(|| defaults.to_vec(), |k| vec![k.as_str()])
}

/// A Node's discovered value under the first of `keys` it carries that fabbrica did not write
/// (fabbrica writes Topograph's keys itself where no discovery tool did).
pub fn discovered<'a>(node: &'a NodeMeta, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .filter(|k| !node.owned_labels.contains(k))
        .find_map(|k| node.labels.get(k))
        .filter(|v| !v.is_empty())
}

/// What the comparison found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// Placed Nodes carrying a discovered leaf or unit.
    pub checked: usize,
    /// Nodes whose discovered leaf or unit contradicts the declaration, sorted, with what
    /// differs (`leaf`, `unit` or both).
    pub drifted: BTreeMap<String, &'static str>,
}

/// Compares the discovered placement of the assigned Nodes with the declared one; `None` when
/// the placement is the discovered one (`source: discovered`).
pub fn check(topology: &Topology, assignment: &Assignment, metas: &NodeMetas) -> Option<Drift> {
    if topology.source == TopologySource::Discovered {
        return None;
    }
    let (leaf_keys, unit_keys) = keys(topology);
    let mut leaves = Vec::new();
    let mut units = Vec::new();
    for (node, place) in &assignment.placements {
        let Some(meta) = metas.get(node) else {
            continue;
        };
        if let Some(leaf) = discovered(meta, &leaf_keys) {
            leaves.push((node.as_ref(), place.leaf_group.as_str(), leaf));
        }
        if let Some(unit) = discovered(meta, &unit_keys) {
            units.push((node.as_ref(), place.scalable_unit.as_str(), unit));
        }
    }
    let checked: BTreeSet<&str> = leaves.iter().chain(&units).map(|(n, _, _)| *n).collect();
    let mut drift = Drift {
        checked: checked.len(),
        ..Drift::default()
    };
    for node in contradicting(&leaves) {
        drift.drifted.insert(node.to_owned(), "leaf");
    }
    for node in contradicting(&units) {
        drift
            .drifted
            .entry(node.to_owned())
            .and_modify(|what| *what = "leaf and unit")
            .or_insert("unit");
    }
    Some(drift)
}

/// The Nodes of `(node, declared group, discovered value)` whose discovered value is not their
/// group's: the value most of the group carries (the smallest on a tie), unless a larger group
/// (the first by name on a tie) took that value.
fn contradicting<'a>(nodes: &[(&'a str, &'a str, &'a str)]) -> Vec<&'a str> {
    let mut groups: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for (_, group, value) in nodes {
        *groups.entry(group).or_default().entry(value).or_default() += 1;
    }
    // Each group's value and how many of its Nodes carry it.
    let mut majority: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for (group, values) in &groups {
        if let Some((value, count)) = values
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        {
            majority.insert(group, (value, *count));
        }
    }
    // Each discovered value goes to the group with most Nodes on it.
    let mut owner: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for (group, (value, count)) in &majority {
        let entry = owner.entry(value).or_insert((group, *count));
        if *count > entry.1 {
            *entry = (group, *count);
        }
    }
    nodes
        .iter()
        .filter(|(_, group, value)| {
            let own = majority.get(group).map(|(v, _)| *v);
            own != Some(*value) || owner.get(value).map(|(g, _)| *g) != Some(*group)
        })
        .map(|(node, _, _)| *node)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::factory::placement::Placement;

    fn setup(nodes: &[(&str, &str, &str, Option<&str>)]) -> (Topology, Assignment, NodeMetas) {
        let topology: Topology = serde_saphyr::from_str("{source: nodeOrder}").unwrap();
        let mut assignment = Assignment::default();
        let mut metas = NodeMetas::new();
        for (i, (name, unit, group, leaf)) in nodes.iter().enumerate() {
            assignment.placements.insert(
                (*name).into(),
                Placement {
                    scalable_unit: crate::interned::sym(unit),
                    leaf_group: crate::interned::sym(group),
                    rank: i,
                },
            );
            let mut meta = NodeMeta::default();
            if let Some(leaf) = leaf {
                meta.labels = meta.labels.with([(labels::TOPOLOGY_LEAF, *leaf)]);
            }
            metas.insert((*name).into(), Arc::new(meta));
        }
        (topology, assignment, metas)
    }

    #[test]
    fn a_node_cabled_to_another_leaf_than_its_group_is_named() {
        let (topology, assignment, metas) = setup(&[
            ("n1", "su1", "su1-lg0", Some("leaf-a")),
            ("n2", "su1", "su1-lg0", Some("leaf-a")),
            ("n3", "su1", "su1-lg0", Some("leaf-b")),
            ("n4", "su1", "su1-lg1", Some("leaf-b")),
            ("n5", "su1", "su1-lg1", Some("leaf-b")),
            ("n6", "su1", "su1-lg1", None),
        ]);
        let drift = check(&topology, &assignment, &metas).unwrap();
        assert_eq!(drift.checked, 5);
        assert_eq!(drift.drifted, BTreeMap::from([("n3".to_owned(), "leaf")]));
    }

    #[test]
    fn two_declared_groups_on_one_discovered_leaf_name_the_smaller_one() {
        let (topology, assignment, metas) = setup(&[
            ("n1", "su1", "su1-lg0", Some("leaf-a")),
            ("n2", "su1", "su1-lg0", Some("leaf-a")),
            ("n3", "su1", "su1-lg1", Some("leaf-a")),
        ]);
        let drift = check(&topology, &assignment, &metas).unwrap();
        assert_eq!(drift.drifted.keys().collect::<Vec<_>>(), ["n3"]);
    }

    #[test]
    fn labels_fabbrica_wrote_itself_are_not_discovered() {
        let (topology, assignment, mut metas) = setup(&[
            ("n1", "su1", "su1-lg0", Some("leaf-a")),
            ("n2", "su1", "su1-lg0", Some("leaf-b")),
        ]);
        let mut own = (*metas["n2"]).clone();
        own.owned_labels = [labels::TOPOLOGY_LEAF].into_iter().collect();
        metas.insert("n2".into(), Arc::new(own));
        let drift = check(&topology, &assignment, &metas).unwrap();
        assert_eq!(drift.checked, 1);
        assert!(drift.drifted.is_empty());
    }

    #[test]
    fn a_configured_key_replaces_topographs_and_discovered_placement_is_not_compared() {
        let (mut topology, assignment, mut metas) = setup(&[
            ("n1", "su1", "su1-lg0", None),
            ("n2", "su1", "su1-lg0", None),
        ]);
        topology.discovery = serde_saphyr::from_str("{unitLabel: example.com/pod}").unwrap();
        for (node, unit) in [("n1", "pod-1"), ("n2", "pod-2")] {
            let mut meta = (*metas[node]).clone();
            meta.labels = meta.labels.with([("example.com/pod", unit)]);
            metas.insert(node.into(), Arc::new(meta));
        }
        let drift = check(&topology, &assignment, &metas).unwrap();
        assert_eq!(drift.drifted, BTreeMap::from([("n2".to_owned(), "unit")]));
        topology.source = TopologySource::Discovered;
        assert_eq!(check(&topology, &assignment, &metas), None);
    }
}
