//! Which Node belongs to which pool, where it sits in the fabric, and what it should carry. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fabbrica_crds::v1alpha1::{GpuPool, TopologySource};
use fabbrica_crds::{kueue, labels};
use k8s_openapi::api::core::v1::Taint;

use super::validate::ValidatedFactory;
use crate::health::drift;
use crate::interned::{Labels, Sym, sym};
use crate::nodes::{NodeMeta, NodeMetas, NodeName};

/// Down-links of one leaf switch per rail (a 64-port switch, half down, half up): the Nodes of one leaf group.
pub const LEAF_DOWNLINKS: usize = 32;

/// Where a Node sits in the fabric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Its scalable unit, interned: shared by the unit's Nodes.
    pub scalable_unit: Sym,
    /// Its leaf group: the rail leaves it is cabled to (`<unit>-lg<N>`), interned.
    pub leaf_group: Sym,
    /// Its position in its unit, from 0.
    pub rank: usize,
}

/// The labels and taints a Node should carry from this Factory. Held for every member at once,
/// so its strings are interned and the taints shared by the pool's members.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredNode {
    /// Every label fabbrica sets on the Node, with its value.
    pub labels: Labels,
    /// The pool's taints.
    pub taints: Arc<[Taint]>,
}

/// The result of matching the cluster's Nodes against a Factory's pools.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assignment {
    /// Nodes of each pool (matching it and nothing else), sorted.
    pub members: BTreeMap<String, Vec<NodeName>>,
    /// Nodes matching a pool and also another pool or another Factory's Node, per pool.
    pub conflicts: BTreeMap<String, Vec<NodeName>>,
    /// Fabric placement of the members that have one.
    pub placements: BTreeMap<NodeName, Placement>,
    /// Members without a scalable unit (not declared, or lacking the unit label).
    pub unplaced: Vec<NodeName>,
    /// What each member should carry.
    pub desired: BTreeMap<NodeName, DesiredNode>,
    /// Nodes carrying this Factory's label that should not any more.
    pub release: Vec<NodeName>,
}

fn matches(pool: &GpuPool, node: &NodeMeta) -> bool {
    pool.node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v.as_str()))
}

/// The pool's node selector as a label selector for the API server (`k=v,k2=v2`), selecting
/// the Nodes [`matches`] does.
pub fn label_selector(pool: &GpuPool) -> String {
    let terms: Vec<String> = pool
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    terms.join(",")
}

/// The GPU Operator's MIG layout label value for a pool.
pub fn mig_config(pool: &GpuPool) -> String {
    match pool.sharing.as_ref().and_then(|s| s.mig.as_ref()) {
        Some(mig) => format!("all-{}", mig.profile),
        None => "all-disabled".to_owned(),
    }
}

/// The pool's taints in Kubernetes form.
pub fn pool_taints(pool: &GpuPool) -> Vec<Taint> {
    let mut taints: Vec<Taint> = pool
        .taints
        .iter()
        .map(|t| Taint {
            key: t.key.clone(),
            value: t.value.clone().filter(|v| !v.is_empty()),
            effect: t.effect.as_str().to_owned(),
            time_added: None,
        })
        .collect();
    taints.sort_by(|a, b| (&a.key, &a.effect).cmp(&(&b.key, &b.effect)));
    taints
}

/// Matches Nodes to pools and places them in the fabric.
pub fn assign(factory: &ValidatedFactory, nodes: &NodeMetas) -> Assignment {
    let spec = &factory.spec;
    let mut out = Assignment::default();
    for pool in &spec.gpu_pools {
        out.members.insert(pool.name.clone(), Vec::new());
    }
    let mut names: Vec<&NodeName> = nodes.keys().collect();
    names.sort();
    let mut member_pool: BTreeMap<NodeName, &GpuPool> = BTreeMap::new();
    for name in names {
        let node = &nodes[name];
        let pools: Vec<&GpuPool> = spec.gpu_pools.iter().filter(|p| matches(p, node)).collect();
        let claimed_elsewhere = node
            .labels
            .get(labels::FACTORY)
            .is_some_and(|f| f != factory.name);
        match pools.as_slice() {
            [pool] if !claimed_elsewhere => {
                out.members
                    .entry(pool.name.clone())
                    .or_default()
                    .push(name.clone());
                member_pool.insert(name.clone(), pool);
            }
            [] => {}
            several => {
                for pool in several {
                    out.conflicts
                        .entry(pool.name.clone())
                        .or_default()
                        .push(name.clone());
                }
            }
        }
        if !member_pool.contains_key(name)
            && node.labels.get(labels::FACTORY) == Some(factory.name.as_str())
        {
            out.release.push(name.clone());
        }
    }
    out.placements = place(factory, nodes, &member_pool);
    let rails = spec.fabric.rails_per_node.to_string();
    let nvlink_level = kueue::multi_node_nvlink(spec);
    let taints: BTreeMap<&str, Arc<[Taint]>> = spec
        .gpu_pools
        .iter()
        .map(|p| (p.name.as_str(), pool_taints(p).into()))
        .collect();
    for (name, pool) in &member_pool {
        let mut labels = BTreeMap::from([
            (labels::FACTORY.to_owned(), factory.name.clone()),
            (labels::POOL.to_owned(), pool.name.clone()),
            (labels::DEVICE_PLUGIN_CONFIG.to_owned(), pool.name.clone()),
            (labels::MIG_CONFIG.to_owned(), mig_config(pool)),
            (labels::RAILS.to_owned(), rails.clone()),
        ]);
        match out.placements.get(name) {
            Some(place) => {
                labels.insert(
                    labels::SCALABLE_UNIT.to_owned(),
                    place.scalable_unit.to_string(),
                );
                labels.insert(labels::LEAF_GROUP.to_owned(), place.leaf_group.to_string());
                let node = nodes.get(name);
                for (key, value) in [
                    (labels::TOPOGRAPH_TIER_LEAF, &place.leaf_group),
                    (labels::TOPOLOGY_LEAF, &place.leaf_group),
                    (labels::TOPOGRAPH_TIER_SPINE, &place.scalable_unit),
                    (labels::TOPOLOGY_SPINE, &place.scalable_unit),
                ] {
                    // A discovery tool's own value (Topograph's) stays: it is what the drift
                    // check compares, and writing over it would erase what was discovered.
                    if node.is_some_and(|n| drift::discovered(n, &[key]).is_some()) {
                        continue;
                    }
                    labels.insert(key.to_owned(), value.to_string());
                }
            }
            None => out.unplaced.push(name.clone()),
        }
        let domain = nvlink_domain(
            pool,
            nodes.get(name).map(AsRef::as_ref),
            out.placements.get(name),
        );
        if let Some(domain) = &domain {
            for key in [
                labels::TOPOGRAPH_ACCELERATOR_DOMAIN,
                labels::TOPOLOGY_ACCELERATOR,
            ] {
                labels.insert(key.to_owned(), domain.clone());
            }
        }
        if nvlink_level {
            // A Node whose NVLink stays inside it is a domain of its own.
            labels.insert(
                labels::NVLINK_DOMAIN.to_owned(),
                domain.unwrap_or_else(|| name.to_string()),
            );
        }
        out.desired.insert(
            name.clone(),
            DesiredNode {
                labels: Labels::from(&labels),
                taints: taints[pool.name.as_str()].clone(),
            },
        );
    }
    out
}

/// The NVLink domain of a Node of a multi-node NVLink pool: the GPU clique its feature discovery
/// reports, else its rack by position in its scalable unit (`<unit>-nvl<N>`); none on a pool whose
/// NVLink stays inside the Node, or for an unplaced Node without a clique.
fn nvlink_domain(
    pool: &GpuPool,
    node: Option<&NodeMeta>,
    place: Option<&Placement>,
) -> Option<String> {
    let per_domain = usize::try_from(kueue::nvlink_domain_nodes(pool)).unwrap_or(1);
    if per_domain <= 1 {
        return None;
    }
    node.and_then(|n| n.labels.get(labels::GPU_CLIQUE))
        .filter(|clique| !clique.is_empty())
        .map(str::to_owned)
        .or_else(|| place.map(|p| format!("{}-nvl{}", p.scalable_unit, p.rank / per_domain)))
}

fn place(
    factory: &ValidatedFactory,
    nodes: &NodeMetas,
    members: &BTreeMap<NodeName, &GpuPool>,
) -> BTreeMap<NodeName, Placement> {
    let topology = &factory.spec.fabric.topology;
    // Each member's unit, its position in that unit and, where discovered, its leaf.
    let mut units: BTreeMap<NodeName, (String, usize, Option<String>)> = BTreeMap::new();
    match topology.source {
        TopologySource::Declared => {
            for unit in &topology.scalable_units {
                for (i, node) in unit.nodes.iter().enumerate() {
                    if let Some((node, _)) = members.get_key_value(node.as_str()) {
                        units.insert(node.clone(), (unit.name.clone(), i, None));
                    }
                }
            }
        }
        TopologySource::NodeOrder => {
            let per_unit = usize::try_from(topology.nodes_per_scalable_unit.max(1)).unwrap_or(32);
            for (i, node) in members.keys().enumerate() {
                units.insert(
                    node.clone(),
                    (format!("su{:03}", i / per_unit + 1), i % per_unit, None),
                );
            }
        }
        TopologySource::NodeLabels => {
            let key = topology.scalable_unit_label.as_deref().unwrap_or_default();
            let mut rank: BTreeMap<&str, usize> = BTreeMap::new();
            for node in members.keys() {
                if let Some(unit) = nodes.get(node).and_then(|n| n.labels.get(key)) {
                    let i = rank.entry(unit).or_default();
                    units.insert(node.clone(), (unit.to_owned(), *i, None));
                    *i += 1;
                }
            }
        }
        TopologySource::Discovered => {
            let (leaf_keys, unit_keys) = drift::keys(topology);
            let mut rank: BTreeMap<String, usize> = BTreeMap::new();
            for node in members.keys() {
                let Some(meta) = nodes.get(node) else {
                    continue;
                };
                let (Some(unit), Some(leaf)) = (
                    drift::discovered(meta, &unit_keys),
                    drift::discovered(meta, &leaf_keys),
                ) else {
                    continue;
                };
                let i = rank.entry(unit.to_owned()).or_default();
                units.insert(node.clone(), (unit.to_owned(), *i, Some(leaf.to_owned())));
                *i += 1;
            }
        }
    }
    units
        .into_iter()
        .map(|(node, (unit, i, leaf))| {
            let leaf_group = leaf.unwrap_or_else(|| format!("{unit}-lg{}", i / LEAF_DOWNLINKS));
            (
                node,
                Placement {
                    scalable_unit: sym(&unit),
                    leaf_group: sym(&leaf_group),
                    rank: i,
                },
            )
        })
        .collect()
}

/// Scalable units, their leaf groups and their Nodes, sorted.
pub fn fabric_tree(assignment: &Assignment) -> BTreeMap<&str, BTreeMap<&str, Vec<&str>>> {
    let mut tree: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for (node, place) in &assignment.placements {
        tree.entry(place.scalable_unit.as_str())
            .or_default()
            .entry(place.leaf_group.as_str())
            .or_default()
            .push(node.as_ref());
    }
    tree
}

/// The keys of every label fabbrica may set on a Node.
pub fn managed_label_keys() -> BTreeSet<&'static str> {
    BTreeSet::from([
        labels::FACTORY,
        labels::POOL,
        labels::DEVICE_PLUGIN_CONFIG,
        labels::MIG_CONFIG,
        labels::RAILS,
        labels::SCALABLE_UNIT,
        labels::LEAF_GROUP,
        labels::NVLINK_DOMAIN,
        labels::TOPOGRAPH_TIER_LEAF,
        labels::TOPOGRAPH_TIER_SPINE,
        labels::TOPOGRAPH_ACCELERATOR_DOMAIN,
        labels::TOPOLOGY_LEAF,
        labels::TOPOLOGY_SPINE,
        labels::TOPOLOGY_ACCELERATOR,
    ])
}
