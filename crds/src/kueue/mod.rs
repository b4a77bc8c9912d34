//! Kueue's view of a Factory: one `Topology` whose levels follow the fabric, and one
//! `ResourceFlavor` per GPU pool that names it. The operator (where Kueue is served) and
//! `fabbrica blueprint render` (the GitOps tree) write these same objects from these builders.
//!
//! The levels, from the top down: the scalable unit, the leaf group, the NVLink domain where a
//! pool's GPU system has multi-node NVLink (a GB200 NVL72 rack), and the Node
//! (`kubernetes.io/hostname`, which Kueue needs to replace a failed Node). Each level is a Node
//! label the Factory controller writes from the same placement (see [`crate::labels`]), so a
//! PodSet that asks for `kueue.x-k8s.io/podset-required-topology: fabbrica.io/leaf-group` lands
//! under one leaf group.

use std::collections::BTreeMap;

pub mod multikueue;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::catalog;
use crate::labels;
use crate::v1alpha1::{FactorySpec, GpuPool};

/// The Kueue API group.
pub const GROUP: &str = "kueue.x-k8s.io";
/// The version a GitOps tree is written in: the one current Kueue releases serve and store
/// (the operator uses whichever version the cluster's Kueue prefers).
pub const API_VERSION: &str = "kueue.x-k8s.io/v1beta2";
/// The Node label of Kueue's lowest topology level.
pub const HOSTNAME: &str = "kubernetes.io/hostname";
/// The annotation by which a PodSet asks for one domain of a level.
pub const REQUIRED_TOPOLOGY: &str = "kueue.x-k8s.io/podset-required-topology";
/// The annotation by which a PodSet asks for as few domains of a level as possible.
pub const PREFERRED_TOPOLOGY: &str = "kueue.x-k8s.io/podset-preferred-topology";
/// The label that names a workload's LocalQueue.
pub const QUEUE_NAME: &str = "kueue.x-k8s.io/queue-name";

/// The Factory's Topology: named like the Factory.
pub fn topology_name(factory: &str) -> String {
    factory.to_owned()
}

/// The ResourceFlavor of a pool, shared by the Factory's workspaces: `<factory>-<pool>`.
pub fn flavor_name(factory: &str, pool: &str) -> String {
    format!("{factory}-{pool}")
}

/// Nodes per NVLink domain of a pool's GPU system (1 where NVLink stays inside the Node).
pub fn nvlink_domain_nodes(pool: &GpuPool) -> u32 {
    catalog::system(pool.system).nvlink_domain_nodes.max(1)
}

/// Whether any pool's GPU system has multi-node NVLink, which gives the Topology its NVLink level.
pub fn multi_node_nvlink(spec: &FactorySpec) -> bool {
    spec.gpu_pools.iter().any(|p| nvlink_domain_nodes(p) > 1)
}

/// The Node labels of the Topology's levels, from the top down.
pub fn topology_levels(spec: &FactorySpec) -> Vec<&'static str> {
    let mut levels = vec![labels::SCALABLE_UNIT, labels::LEAF_GROUP];
    if multi_node_nvlink(spec) {
        levels.push(labels::NVLINK_DOMAIN);
    }
    levels.push(HOSTNAME);
    levels
}

fn metadata(
    name: &str,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> Value {
    let mut meta = json!({"name": name});
    if !labels.is_empty() {
        meta["labels"] = json!(labels);
    }
    if let Some(owner) = owner {
        meta["ownerReferences"] = json!([owner]);
    }
    meta
}

/// The Factory's Topology in `api_version`, with the given labels and owner.
pub fn build_topology(
    factory: &str,
    spec: &FactorySpec,
    api_version: &str,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> Value {
    let levels: Vec<Value> = topology_levels(spec)
        .into_iter()
        .map(|label| json!({"nodeLabel": label}))
        .collect();
    json!({
        "apiVersion": api_version,
        "kind": "Topology",
        "metadata": metadata(&topology_name(factory), labels, owner),
        "spec": {"levels": levels},
    })
}

/// Tolerations for every taint of a pool, so notebooks and queued workloads can land on it.
pub fn tolerations(pool: &GpuPool) -> Vec<Toleration> {
    pool.taints
        .iter()
        .map(|taint| Toleration {
            key: Some(taint.key.clone()),
            operator: Some(
                if taint.value.is_some() {
                    "Equal"
                } else {
                    "Exists"
                }
                .to_owned(),
            ),
            value: taint.value.clone(),
            effect: Some(taint.effect.as_str().to_owned()),
            toleration_seconds: None,
        })
        .collect()
}

/// A pool's ResourceFlavor in `api_version`: admitted workloads go to the pool's Nodes (the
/// labels the Factory controller sets) with its tolerations, placed by the Factory's Topology
/// when `topology` is true (where Kueue serves `Topology`).
pub fn build_resource_flavor(
    factory: &str,
    pool: &GpuPool,
    api_version: &str,
    topology: bool,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> Value {
    let mut spec = json!({
        "nodeLabels": {labels::FACTORY: factory, labels::POOL: pool.name},
    });
    let tolerations = tolerations(pool);
    if !tolerations.is_empty() {
        spec["tolerations"] = json!(tolerations);
    }
    if topology {
        spec["topologyName"] = json!(topology_name(factory));
    }
    json!({
        "apiVersion": api_version,
        "kind": "ResourceFlavor",
        "metadata": metadata(&flavor_name(factory, &pool.name), labels, owner),
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factory(systems: &[&str]) -> FactorySpec {
        let pools: Vec<String> = systems
            .iter()
            .enumerate()
            .map(|(i, s)| format!("  - {{name: p{i}, system: {s}, expectedNodes: 4, nodeSelector: {{pool: p{i}}}}}"))
            .collect();
        let yaml = format!(
            "site: {{name: it4lia, country: IT, tier: aiFactory}}\ngpuPools:\n{}\nfabric: {{type: infiniband, railsPerNode: 4, linkSpeed: 400G, topology: {{source: nodeOrder}}}}\n",
            pools.join("\n")
        );
        serde_saphyr::from_str(&yaml).expect("a valid Factory spec")
    }

    #[test]
    fn levels_follow_the_fabric_down_to_the_node() {
        assert_eq!(
            topology_levels(&factory(&["dgx-h100"])),
            [labels::SCALABLE_UNIT, labels::LEAF_GROUP, HOSTNAME]
        );
    }

    #[test]
    fn multi_node_nvlink_adds_the_nvlink_domain_below_the_leaf_group() {
        let spec = factory(&["dgx-h100", "gb200-nvl72"]);
        assert_eq!(
            topology_levels(&spec),
            [
                labels::SCALABLE_UNIT,
                labels::LEAF_GROUP,
                labels::NVLINK_DOMAIN,
                HOSTNAME
            ]
        );
        let topology = build_topology("it4lia", &spec, API_VERSION, &BTreeMap::new(), None);
        assert_eq!(topology["metadata"]["name"], "it4lia");
        assert_eq!(
            topology["spec"]["levels"][2]["nodeLabel"],
            labels::NVLINK_DOMAIN
        );
    }

    #[test]
    fn every_flavor_names_the_topology_where_kueue_serves_it() {
        let spec = factory(&["gb200-nvl72"]);
        let pool = &spec.gpu_pools[0];
        let flavor =
            build_resource_flavor("it4lia", pool, API_VERSION, true, &BTreeMap::new(), None);
        assert_eq!(flavor["metadata"]["name"], "it4lia-p0");
        assert_eq!(flavor["spec"]["topologyName"], "it4lia");
        assert_eq!(flavor["spec"]["nodeLabels"][labels::POOL], "p0");
        let flavor =
            build_resource_flavor("it4lia", pool, API_VERSION, false, &BTreeMap::new(), None);
        assert!(flavor["spec"].get("topologyName").is_none());
    }
}
