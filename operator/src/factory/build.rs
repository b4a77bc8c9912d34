//! The desired children of a Factory and the desired state of its Nodes, built at once by
//! [`build`] after discovery. Pure: no client, no clock.

use std::collections::{BTreeMap, BTreeSet};

use fabbrica_crds::labels;
use fabbrica_crds::names::storage_class_name;
use fabbrica_crds::v1alpha1::{FabricType, GpuPool, StorageTier};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Taint};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::ApiResource;
use serde::Serialize;
use serde_json::{Value, json};

use super::hostlist;

use super::placement::{Assignment, DesiredNode, assign, fabric_tree};
use super::validate::ValidatedFactory;
use crate::Settings;
use crate::interned::{Labels, Sym, sym};
use crate::nodes::{NodeFacts, NodeMeta, NodeMetas, TAINTS_ANNOTATION};
use crate::reconcile::children;

/// The topology ConfigMap's key holding JSON.
pub const TOPOLOGY_JSON: &str = "topology.json";
/// The topology ConfigMap's key holding Slurm's `topology.conf` (tree plugin).
pub const TOPOLOGY_CONF: &str = "topology.conf";

/// Everything a Factory declares, built at once: its children and the desired state of its Nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The Factory's name, which its children carry in their labels.
    pub factory: String,
    /// One StorageClass per tier.
    pub storage_classes: Vec<StorageClass>,
    /// The device-plugin and topology ConfigMaps, by namespace.
    pub config_maps: BTreeMap<String, Vec<ConfigMap>>,
    /// Where Multus is served: its NetworkAttachmentDefinition resource and one attachment per rail.
    pub network_attachments: Option<(ApiResource, Vec<Value>)>,
    /// Where the topology ConfigMap is (`namespace/name`).
    pub topology_config_map: String,
    /// Where the device-plugin ConfigMap is (`namespace/name`).
    pub device_plugin_config_map: String,
    /// The Nodes matched to pools, placed, and their labels and taints.
    pub assignment: Assignment,
}

/// Builds every child of a valid Factory and the state of its Nodes from the Node projection
/// `metas`; `multus` is the NetworkAttachmentDefinition resource when discovery found it.
pub fn build(
    factory: &ValidatedFactory,
    metas: &NodeMetas,
    settings: &Settings,
    multus: Option<&ApiResource>,
) -> Desired {
    let assignment = assign(factory, metas);
    let storage_classes = factory
        .spec
        .storage_tiers
        .iter()
        .map(|t| build_storage_class(factory, t))
        .collect();
    let device_plugin = build_device_plugin_config_map(factory, &settings.gpu_operator_namespace);
    let topology = build_topology_config_map(factory, &assignment, &settings.namespace);
    let topology_config_map = format!("{}/{}", settings.namespace, topology.name_any());
    let device_plugin_config_map = format!(
        "{}/{}",
        settings.gpu_operator_namespace,
        device_plugin.name_any()
    );
    let mut config_maps: BTreeMap<String, Vec<ConfigMap>> = BTreeMap::new();
    config_maps
        .entry(settings.gpu_operator_namespace.clone())
        .or_default()
        .push(device_plugin);
    config_maps
        .entry(settings.namespace.clone())
        .or_default()
        .push(topology);
    let network_attachments = multus.map(|resource| {
        (
            resource.clone(),
            build_network_attachments(factory, &settings.namespace),
        )
    });
    Desired {
        factory: factory.name.clone(),
        storage_classes,
        config_maps,
        network_attachments,
        topology_config_map,
        device_plugin_config_map,
        assignment,
    }
}

/// Labels every child carries: the Factory and the managed-by marker.
pub fn child_labels(factory: &ValidatedFactory) -> BTreeMap<String, String> {
    children::child_labels([(labels::FACTORY, factory.name.as_str())])
}

fn meta(
    factory: &ValidatedFactory,
    name: String,
    namespace: Option<&str>,
    extra: &[(&str, &str)],
) -> ObjectMeta {
    let labels = children::child_labels(
        [(labels::FACTORY, factory.name.as_str())]
            .into_iter()
            .chain(extra.iter().copied()),
    );
    children::child_meta(name, namespace, labels, Some(&factory.owner))
}

/// The operator's own namespace, for when it is missing (run without the Helm chart): marked as
/// the operator's, with no owner reference, since it outlives every Factory.
pub fn build_namespace(name: &str) -> Namespace {
    Namespace {
        metadata: children::child_meta(name, None, children::child_labels([]), None),
        ..Namespace::default()
    }
}

/// One StorageClass per tier, labelled with factory and tier.
pub fn build_storage_class(factory: &ValidatedFactory, tier: &StorageTier) -> StorageClass {
    StorageClass {
        metadata: meta(
            factory,
            storage_class_name(&factory.name, &tier.name),
            None,
            &[(labels::TIER, &tier.name)],
        ),
        provisioner: tier.provisioner.clone(),
        parameters: (!tier.parameters.is_empty()).then(|| tier.parameters.clone()),
        reclaim_policy: Some(tier.reclaim_policy.as_str().to_owned()),
        volume_binding_mode: Some("WaitForFirstConsumer".to_owned()),
        allow_volume_expansion: Some(true),
        ..StorageClass::default()
    }
}

/// The NVIDIA device-plugin configuration of one pool, as the GPU Operator reads it.
pub fn device_plugin_config(pool: &GpuPool) -> Value {
    let sharing = pool.sharing.as_ref();
    let mig = sharing.and_then(|s| s.mig.as_ref()).is_some();
    let mut config = json!({
        "version": "v1",
        "flags": {"migStrategy": if mig { "single" } else { "none" }},
    });
    if let Some(ts) = sharing.and_then(|s| s.time_slicing.as_ref()) {
        config["sharing"] = json!({
            "timeSlicing": {"resources": [{"name": labels::GPU_RESOURCE, "replicas": ts.replicas}]}
        });
    }
    config
}

/// The device-plugin ConfigMap: one entry per pool, named like the pool; Nodes select theirs with
/// the `nvidia.com/device-plugin.config` label.
pub fn build_device_plugin_config_map(factory: &ValidatedFactory, namespace: &str) -> ConfigMap {
    let data = factory
        .spec
        .gpu_pools
        .iter()
        .map(|pool| {
            let yaml = serde_saphyr::to_string(&device_plugin_config(pool)).unwrap_or_default();
            (pool.name.clone(), yaml)
        })
        .collect();
    ConfigMap {
        metadata: meta(
            factory,
            format!("{}-device-plugin", factory.name),
            Some(namespace),
            &[],
        ),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// `topology.json`. Its fields are in the order of their names, as a `serde_json::Value` of it
/// printed them before.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TopologyDocument<'a> {
    fabric: FabricDocument,
    factory: &'a str,
    scalable_units: Vec<UnitDocument<'a>>,
    unplaced_nodes: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FabricDocument {
    link_speed_gbps: u32,
    rails_per_node: u32,
    #[serde(rename = "type")]
    type_: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UnitDocument<'a> {
    leaf_groups: Vec<GroupDocument<'a>>,
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupDocument<'a> {
    leaf_switches: Vec<String>,
    name: &'a str,
    nodes: &'a [&'a str],
}

/// The fabric topology as JSON and as Slurm `topology.conf`. One ConfigMap holds at most 1 MiB,
/// and a gigafactory has 25,000 Nodes: the JSON is compact and `topology.conf` names each leaf
/// group's Nodes as a Slurm hostlist (`gpu-[00001-00032]`). What is left grows with the JSON's
/// list of names: 724 KB for 25,000 Nodes named like `gb200-tray-00001` (it was 1.6 MB, which the
/// API server refused), so names up to about 27 characters fit at that size.
pub fn build_topology_config_map(
    factory: &ValidatedFactory,
    assignment: &Assignment,
    namespace: &str,
) -> ConfigMap {
    let fabric = &factory.spec.fabric;
    let tree = fabric_tree(assignment);
    let rails: Vec<u32> = (0..fabric.rails_per_node).collect();
    // Serialized straight from the tree, which borrows the assignment's names: at 25,000 Nodes a
    // JSON tree built first held every name a second time.
    let document = TopologyDocument {
        fabric: FabricDocument {
            link_speed_gbps: fabric.link_speed.gbps(),
            rails_per_node: fabric.rails_per_node,
            type_: match fabric.type_ {
                FabricType::Infiniband => "infiniband",
                FabricType::Roce => "roce",
            },
        },
        factory: &factory.name,
        scalable_units: tree
            .iter()
            .map(|(unit, groups)| UnitDocument {
                leaf_groups: groups
                    .iter()
                    .map(|(group, nodes)| GroupDocument {
                        leaf_switches: rails.iter().map(|r| format!("{group}-rail{r}")).collect(),
                        name: group,
                        nodes,
                    })
                    .collect(),
                name: unit,
            })
            .collect(),
        unplaced_nodes: assignment.unplaced.iter().map(AsRef::as_ref).collect(),
    };
    let mut conf = format!(
        "# Slurm tree topology of Factory {}, written by fabbrica-operator. Each leaf group is one leaf\n# switch per rail; Slurm sees a group as one switch because every node reaches every rail leaf.\n",
        factory.name
    );
    for (unit, groups) in &tree {
        for (group, nodes) in groups {
            conf.push_str(&format!(
                "SwitchName={group} Nodes={}\n",
                hostlist::compress(nodes.iter().copied())
            ));
        }
        let names: Vec<&str> = groups.keys().copied().collect();
        conf.push_str(&format!("SwitchName={unit} Switches={}\n", names.join(",")));
    }
    if !tree.is_empty() {
        let names: Vec<&str> = tree.keys().copied().collect();
        conf.push_str(&format!(
            "SwitchName={}-spine Switches={}\n",
            factory.name,
            names.join(",")
        ));
    }
    ConfigMap {
        metadata: meta(
            factory,
            format!("{}-topology", factory.name),
            Some(namespace),
            &[],
        ),
        data: Some(BTreeMap::from([
            (
                TOPOLOGY_JSON.to_owned(),
                serde_json::to_string(&document).unwrap_or_default(),
            ),
            (TOPOLOGY_CONF.to_owned(), conf),
        ])),
        ..ConfigMap::default()
    }
}

/// One Multus NetworkAttachmentDefinition per rail (`<factory>-rail<N>`), as JSON for a dynamic apply.
pub fn build_network_attachments(factory: &ValidatedFactory, namespace: &str) -> Vec<Value> {
    let fabric = &factory.spec.fabric;
    let cni = match fabric.type_ {
        FabricType::Infiniband => "ib-sriov",
        FabricType::Roce => "sriov",
    };
    (0..fabric.rails_per_node)
        .map(|rail| {
            let name = format!("{}-rail{rail}", factory.name);
            let config = json!({
                "cniVersion": "0.3.1",
                "name": name,
                "type": cni,
                "ipam": {"type": "whereabouts", "range": format!("10.{}.0.0/16", 200 + rail)},
            });
            let metadata = meta(factory, name.clone(), Some(namespace), &[]);
            let mut metadata = serde_json::to_value(metadata).unwrap_or_default();
            metadata["annotations"] =
                json!({"k8s.v1.cni.cncf.io/resourceName": format!("nvidia.com/rail{rail}")});
            json!({
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": metadata,
                "spec": {"config": config.to_string()},
            })
        })
        .collect()
}

/// Taints as recorded in [`TAINTS_ANNOTATION`]: `key=value:Effect`, sorted, comma-separated.
pub fn taint_record(taints: &[Taint]) -> String {
    let mut items: Vec<String> = taints
        .iter()
        .map(|t| {
            format!(
                "{}={}:{}",
                t.key,
                t.value.as_deref().unwrap_or(""),
                t.effect
            )
        })
        .collect();
    items.sort();
    items.join(",")
}

/// The (key, effect) pairs of a taint record.
pub fn parse_taint_record(record: &str) -> BTreeSet<(String, String)> {
    record
        .split(',')
        .filter(|item| !item.is_empty())
        .filter_map(|item| {
            let (key_value, effect) = item.rsplit_once(':')?;
            let key = key_value.split_once('=').map_or(key_value, |(k, _)| k);
            Some((key.to_owned(), effect.to_owned()))
        })
        .collect()
}

fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key
        && a.effect == b.effect
        && a.value.as_deref().unwrap_or("") == b.value.as_deref().unwrap_or("")
}

/// What a Node needs from fabbrica.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeChange {
    /// It is as desired.
    None,
    /// Its taints must be rewritten but its current taints are not known; read it, then plan again.
    NeedsFacts,
    /// Apply this (server-side apply, forced, with a resourceVersion precondition when it carries
    /// taints).
    Apply(NodeApply),
}

/// One Node write, kept as data until it is sent: a JSON body per Node, held for every Node of a
/// gigafactory at once, would cost tens of MiB. The labels are the [`DesiredNode`]'s, read when
/// the body is built.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeApply {
    /// The value of [`TAINTS_ANNOTATION`], when fabbrica taints the Node.
    pub taint_record: Option<Sym>,
    /// The whole `spec.taints` list and the resourceVersion it was built from, when fabbrica owns
    /// or takes the list.
    pub taints: Option<(String, Vec<Taint>)>,
}

impl NodeApply {
    /// The server-side apply body for the Node `name`, desired as `desired` (`None`: released).
    pub fn body(&self, name: &str, desired: Option<&DesiredNode>) -> Value {
        // A released Node's apply carries an empty label map, which takes every label back.
        let labels = desired.map_or_else(|| json!({}), |d| json!(d.labels));
        let mut metadata = json!({"name": name, "labels": labels});
        if let Some(record) = &self.taint_record {
            metadata["annotations"] = json!({TAINTS_ANNOTATION: record.as_str()});
        }
        let mut body = json!({"apiVersion": "v1", "kind": "Node", "metadata": metadata});
        if let Some((resource_version, taints)) = &self.taints {
            body["metadata"]["resourceVersion"] = json!(resource_version);
            body["spec"] = json!({"taints": taints});
        }
        body
    }

    /// The facts of a Node after this write, given the facts it was planned from and the
    /// resourceVersion the write returned: the taints are the list written, if the write carried
    /// one; readiness and GPUs are status, which a write of labels and taints does not touch.
    pub fn written(&self, facts: NodeFacts, resource_version: String) -> NodeFacts {
        let taints = match &self.taints {
            Some((_, taints)) => taints.clone().into(),
            None => facts.taints,
        };
        NodeFacts {
            resource_version,
            taints,
            ..facts
        }
    }
}

/// Plans one Node: labels by server-side apply, taints by rewriting the atomic `spec.taints` list.
/// `desired` is `None` for a Node to release.
///
/// `spec.taints` is an atomic list, so whoever applies it owns all of it. fabbrica therefore applies
/// the whole list, built from the Node's current taints minus the ones it recorded as its own plus
/// the desired ones, under the resourceVersion it read them at (a concurrent change makes the write
/// fail and the reconcile retry). Once fabbrica owns the list it always sends it, because an apply
/// that left it out would delete every taint on the Node.
pub fn plan_node(
    desired: Option<&DesiredNode>,
    meta: &NodeMeta,
    facts: Option<&NodeFacts>,
) -> NodeChange {
    let no_labels = Labels::default();
    let (labels, wanted): (&Labels, &[Taint]) =
        desired.map_or((&no_labels, &[]), |d| (&d.labels, &d.taints));
    let labels_in_sync = meta.owned_labels.iter().eq(labels.keys())
        && labels.iter().all(|(k, v)| meta.labels.get(k) == Some(v));
    let record = (!wanted.is_empty()).then(|| sym(&taint_record(wanted)));
    let record_in_sync = meta.taint_record == record && meta.owns_taint_record == record.is_some();
    let taints_present = match facts {
        _ if wanted.is_empty() => true,
        Some(facts) => wanted
            .iter()
            .all(|d| facts.taints.iter().any(|t| same_taint(t, d))),
        None => false,
    };
    if labels_in_sync && record_in_sync && taints_present {
        return NodeChange::None;
    }
    let previous = meta
        .taint_record
        .as_ref()
        .map(|r| parse_taint_record(r))
        .unwrap_or_default();
    let taints = if meta.owns_taints || !wanted.is_empty() || !previous.is_empty() {
        let Some(facts) = facts else {
            return NodeChange::NeedsFacts;
        };
        let replaced: BTreeSet<(String, String)> = wanted
            .iter()
            .map(|t| (t.key.clone(), t.effect.clone()))
            .chain(previous)
            .collect();
        let mut taints: Vec<Taint> = facts
            .taints
            .iter()
            .filter(|t| !replaced.contains(&(t.key.clone(), t.effect.clone())))
            .cloned()
            .collect();
        taints.extend(wanted.iter().cloned());
        Some((facts.resource_version.clone(), taints))
    } else {
        None
    };
    NodeChange::Apply(NodeApply {
        taint_record: record,
        taints,
    })
}

#[cfg(test)]
mod tests;
