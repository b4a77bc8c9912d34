//! The heap the operator's Node projections hold for a gigafactory's Nodes, from dhat's heap
//! statistics: N Nodes (default 25,000) as the scale benchmark registers them (53 labels, one of
//! them the hostname) and as they look once fabbrica manages them (its labels, its taint record
//! and managed-fields entry, the pool's taint, Ready with 8 GPUs), each parsed from JSON as the
//! Node watch parses it and listed into a `NodeIndex`. Then the same Nodes not managed yet, and
//! their facts alone held as the projection holds them (by name, shared), so the two
//! projections' shares are told apart.
//!   cargo run -p fabbrica-tests --example node_heap [NODES]

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::GpuSystem;
use fabbrica_operator::FIELD_MANAGER;
use std::collections::HashMap;
use std::sync::Arc;

use fabbrica_operator::nodes::{NodeFacts, NodeIndex};
use fabbrica_operator::watched::WatchedNode;
use fabbrica_tests::{gpu_node, site_labels};
use kube::runtime::watcher::Event;
use serde_json::json;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Node `i` as the API server sends it to the Node watch, managed by fabbrica or not.
fn node_json(i: usize, managed: bool) -> anyhow::Result<String> {
    let name = format!("bench-train-{i:05}");
    let mut labels = site_labels(&name, i);
    let su = format!("su{:03}", i / 32);
    labels.insert("topology.example.com/scalable-unit".to_owned(), su.clone());
    labels.insert("bench.fabbrica.io/pool".to_owned(), "train".to_owned());
    let ours = [
        (labels::FACTORY, "bench".to_owned()),
        (labels::POOL, "train".to_owned()),
        (labels::SCALABLE_UNIT, su.clone()),
        (labels::LEAF_GROUP, format!("{su}-lg0")),
        (labels::TOPOLOGY_LEAF, format!("{su}-lg0")),
        (labels::TOPOLOGY_SPINE, su),
        (labels::RAILS, "8".to_owned()),
    ];
    if managed {
        labels.extend(ours.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    }
    let node = gpu_node(&name, GpuSystem::DgxB200, u32::try_from(i / 18)?, labels)?;
    let mut value = serde_json::to_value(&node)?;
    let owned: serde_json::Map<String, serde_json::Value> = ours
        .iter()
        .map(|(k, _)| (format!("f:{k}"), json!({})))
        .collect();
    value["metadata"]["resourceVersion"] = json!(format!("{}", 1000 + i));
    value["metadata"]["managedFields"] = json!([
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:kubernetes.io/hostname": {}}}}},
        {"manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": "v1",
         "fieldsType": "FieldsV1", "fieldsV1": {
            "f:metadata": {"f:labels": owned, "f:annotations": {"f:fabbrica.io/taints": {}}},
            "f:spec": {"f:taints": {}}}},
        {"manager": "kwok", "operation": "Update", "subresource": "status", "apiVersion": "v1",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}}}}
    ]);
    if managed {
        value["metadata"]["annotations"] =
            json!({"fabbrica.io/taints": "nvidia.com/gpu=present:NoSchedule"});
        value["spec"] = json!({"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]});
    }
    value["status"] = json!({
        "allocatable": {"cpu": "220", "memory": "2000Gi", "pods": "110", (labels::GPU_RESOURCE): "8"},
        "capacity": {"cpu": "224", "memory": "2Ti", "pods": "110", (labels::GPU_RESOURCE): "8"},
        "conditions": [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
            {"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "nodeInfo": {"kubeletVersion": "fake", "architecture": "amd64", "operatingSystem": "linux"},
    });
    Ok(value.to_string())
}

/// Heap bytes the projections of `nodes` Nodes hold once listed.
fn listed(nodes: usize, managed: bool) -> anyhow::Result<(u64, NodeIndex)> {
    let before = dhat::HeapStats::get().curr_bytes;
    let index = NodeIndex::default();
    index.apply(Event::Init);
    for i in 0..nodes {
        let node: WatchedNode = serde_json::from_str(&node_json(i, managed)?)?;
        index.apply(Event::InitApply(node));
    }
    index.apply(Event::InitDone);
    let after = dhat::HeapStats::get().curr_bytes;
    Ok(((after - before) as u64, index))
}

/// Heap bytes the facts of `nodes` managed Nodes hold, by name as the facts projection holds them.
fn facts_alone(nodes: usize) -> anyhow::Result<(u64, HashMap<String, Arc<NodeFacts>>)> {
    let before = dhat::HeapStats::get().curr_bytes;
    let mut facts = HashMap::new();
    for i in 0..nodes {
        let mut node: WatchedNode = serde_json::from_str(&node_json(i, true)?)?;
        facts.insert(format!("bench-train-{i:05}"), Arc::new(node.take_facts()));
    }
    let after = dhat::HeapStats::get().curr_bytes;
    Ok(((after - before) as u64, facts))
}

fn main() -> anyhow::Result<()> {
    let nodes: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(25_000);
    let _profiler = dhat::Profiler::builder().testing().build();
    let (managed, index) = listed(nodes, true)?;
    anyhow::ensure!(index.len() == nodes && index.synced(), "every Node listed");
    drop(index);
    let (unmanaged, index) = listed(nodes, false)?;
    drop(index);
    let (facts, held) = facts_alone(nodes)?;
    anyhow::ensure!(
        held.values().all(|f| f.gpus == 8),
        "every Node's facts read"
    );
    drop(held);
    let per = |bytes: u64| bytes as f64 / nodes as f64;
    let row = |what: &str, bytes: u64| {
        println!(
            "| {what} | {:.1} MiB | {:.0} B |",
            bytes as f64 / 1048576.0,
            per(bytes)
        );
    };
    println!("| {nodes} Nodes, 53 labels each | heap | per Node |");
    println!("|---|---|---|");
    row("both projections, every Node managed", managed);
    row("both projections, no Node managed yet", unmanaged);
    row("facts alone (name, resourceVersion, taint list)", facts);
    row(
        "selection view of a managed Node (the difference)",
        managed.saturating_sub(facts),
    );
    Ok(())
}
