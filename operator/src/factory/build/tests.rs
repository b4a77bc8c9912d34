use std::collections::BTreeMap;
use std::sync::Arc;

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::Factory;
use k8s_openapi::api::core::v1::Taint;

use super::*;
use crate::factory::placement::assign;
use crate::factory::validate::validate;
use crate::interned::{Labels, sym};
use crate::nodes::{NodeMeta, NodeMetas, NodeName};

fn factory() -> ValidatedFactory {
    let factory: Factory =
        serde_saphyr::from_str(include_str!("../../../tests/fixtures/factory.yaml")).unwrap();
    validate(&factory).unwrap()
}

fn node(gpu: &str) -> NodeMeta {
    NodeMeta {
        labels: [("gpu", gpu)].into_iter().collect(),
        ..NodeMeta::default()
    }
}

fn nodes() -> NodeMetas {
    [
        ("a1", node("h100")),
        ("a2", node("h100")),
        ("b1", node("b200")),
        ("b2", node("b200")),
        ("cpu", node("none")),
    ]
    .into_iter()
    .map(|(name, meta)| (name.into(), Arc::new(meta)))
    .collect()
}

fn names(nodes: &[NodeName]) -> Vec<&str> {
    nodes.iter().map(AsRef::as_ref).collect()
}

#[test]
fn pools_select_nodes_and_unlisted_nodes_are_unplaced() {
    let assignment = assign(&factory(), &nodes());
    assert_eq!(names(&assignment.members["h100"]), ["a1", "a2"]);
    assert_eq!(names(&assignment.members["b200"]), ["b1", "b2"]);
    assert_eq!(names(&assignment.unplaced), ["b2"]);
    let a1 = &assignment.desired["a1"];
    assert_eq!(&a1.labels[labels::MIG_CONFIG], "all-1g.10gb");
    assert_eq!(&a1.labels[labels::SCALABLE_UNIT], "su01");
    assert_eq!(&a1.labels[labels::LEAF_GROUP], "su01-lg0");
    assert_eq!(&a1.labels[labels::RAILS], "8");
    assert_eq!(
        &assignment.desired["b1"].labels[labels::MIG_CONFIG],
        "all-disabled"
    );
}

#[test]
fn topographs_labels_repeat_the_placement_and_dgx_pools_have_no_nvlink_level() {
    let assignment = assign(&factory(), &nodes());
    let a1 = &assignment.desired["a1"].labels;
    assert_eq!(&a1[labels::TOPOGRAPH_TIER_LEAF], "su01-lg0");
    assert_eq!(&a1[labels::TOPOLOGY_LEAF], "su01-lg0");
    assert_eq!(&a1[labels::TOPOGRAPH_TIER_SPINE], "su01");
    assert_eq!(&a1[labels::TOPOLOGY_SPINE], "su01");
    assert!(!a1.contains_key(labels::NVLINK_DOMAIN));
    assert!(!a1.contains_key(labels::TOPOGRAPH_ACCELERATOR_DOMAIN));
}

#[test]
fn multi_node_nvlink_puts_every_node_in_an_nvlink_domain() {
    let mut factory = factory();
    factory.spec.gpu_pools[1].system = fabbrica_crds::v1alpha1::GpuSystem::Gb200Nvl72;
    let mut nodes = nodes();
    let mut tray = node("b200");
    tray.labels = tray.labels.with([(labels::GPU_CLIQUE, "uuid.3")]);
    nodes.insert("b1".into(), Arc::new(tray));
    let assignment = assign(&factory, &nodes);
    // A tray's domain is its clique, also as Topograph's accelerator domain.
    let b1 = &assignment.desired["b1"].labels;
    assert_eq!(&b1[labels::NVLINK_DOMAIN], "uuid.3");
    assert_eq!(&b1[labels::TOPOGRAPH_ACCELERATOR_DOMAIN], "uuid.3");
    assert_eq!(&b1[labels::TOPOLOGY_ACCELERATOR], "uuid.3");
    // A DGX's NVLink stays inside it: a domain of its own, and no accelerator domain.
    let a1 = &assignment.desired["a1"].labels;
    assert_eq!(&a1[labels::NVLINK_DOMAIN], "a1");
    assert!(!a1.contains_key(labels::TOPOGRAPH_ACCELERATOR_DOMAIN));
}

#[test]
fn a_node_matching_two_pools_is_reported_not_labelled() {
    let mut nodes = nodes();
    nodes.insert(
        "both".into(),
        Arc::new(NodeMeta {
            labels: [("gpu", "h100")].into_iter().collect(),
            ..node("x")
        }),
    );
    let mut factory = factory();
    factory.spec.gpu_pools[1].node_selector = BTreeMap::new();
    let assignment = assign(&factory, &nodes);
    assert!(names(&assignment.conflicts["h100"]).contains(&"both"));
    assert!(!assignment.desired.contains_key("both"));
}

#[test]
fn device_plugin_config_follows_the_gpu_operator() {
    let cm = build_device_plugin_config_map(&factory(), "gpu-operator");
    let data = cm.data.unwrap();
    assert!(
        data["h100"].contains("migStrategy: single"),
        "{}",
        data["h100"]
    );
    assert!(data["b200"].contains("replicas: 4"), "{}", data["b200"]);
    assert!(
        data["b200"].contains("name: nvidia.com/gpu"),
        "{}",
        data["b200"]
    );
}

#[test]
fn topology_is_json_and_slurm() {
    let factory = factory();
    let assignment = assign(&factory, &nodes());
    let cm = build_topology_config_map(&factory, &assignment, "fabbrica-system");
    let data = cm.data.unwrap();
    assert!(
        data[TOPOLOGY_CONF].contains("SwitchName=su01-lg0 Nodes=a[1-2],b1\n"),
        "{}",
        data[TOPOLOGY_CONF]
    );
    assert!(data[TOPOLOGY_CONF].contains("SwitchName=it4lia-spine Switches=su01\n"));
    let json: serde_json::Value = serde_json::from_str(&data[TOPOLOGY_JSON]).unwrap();
    assert_eq!(
        json["scalableUnits"][0]["leafGroups"][0]["leafSwitches"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
}

#[test]
fn a_gigafactorys_topology_fits_in_one_config_map() {
    // 25,000 compute trays in scalable units of 32, named as a site names them.
    let nodes: NodeMetas = (0..25_000)
        .map(|i| {
            let su = format!("su{:03}", i / 32);
            let labels: Labels = [("gpu", "b200"), ("topology.example.com/su", su.as_str())]
                .into_iter()
                .collect();
            let meta = NodeMeta {
                labels,
                ..NodeMeta::default()
            };
            (format!("gb200-tray-{i:05}").into(), Arc::new(meta))
        })
        .collect();
    let mut factory: Factory =
        serde_saphyr::from_str(include_str!("../../../tests/fixtures/factory.yaml")).unwrap();
    factory.spec.gpu_pools.truncate(2);
    factory.spec.gpu_pools[1].expected_nodes = 25_000;
    factory.spec.fabric.topology = serde_json::from_value(serde_json::json!({
        "source": "nodeLabels", "scalableUnitLabel": "topology.example.com/su"}))
    .unwrap();
    let factory = validate(&factory).unwrap();
    let assignment = assign(&factory, &nodes);
    let cm = build_topology_config_map(&factory, &assignment, "fabbrica-system");
    let data = cm.data.unwrap();
    let json: serde_json::Value = serde_json::from_str(&data[TOPOLOGY_JSON]).unwrap();
    let placed: usize = json["scalableUnits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| u["leafGroups"].as_array().unwrap())
        .map(|g| g["nodes"].as_array().unwrap().len())
        .sum();
    assert_eq!(placed, 25_000);
    assert!(
        data[TOPOLOGY_CONF].contains("Nodes=gb200-tray-[00000-00031]\n"),
        "{}",
        &data[TOPOLOGY_CONF][..400]
    );
    // The API server refuses a ConfigMap whose data is over 1 MiB.
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(size < 1024 * 1024, "{size} bytes");
}

#[test]
fn storage_class_is_named_and_labelled_per_tier() {
    let factory = factory();
    let sc = build_storage_class(&factory, &factory.spec.storage_tiers[0]);
    assert_eq!(sc.metadata.name.as_deref(), Some("it4lia-scratch"));
    assert_eq!(
        sc.metadata.labels.as_ref().unwrap()[labels::TIER],
        "scratch"
    );
    assert_eq!(
        sc.metadata.owner_references.as_ref().unwrap()[0].controller,
        Some(true)
    );
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Taint::default()
    }
}

#[test]
fn taints_of_others_survive_and_ours_are_replaced() {
    let factory = factory();
    let assignment = assign(&factory, &nodes());
    let desired = &assignment.desired["a1"];
    let meta = NodeMeta {
        taint_record: Some(sym("old=:NoExecute")),
        ..node("h100")
    };
    let facts = NodeFacts {
        resource_version: "7".into(),
        taints: vec![taint("theirs", "NoSchedule"), taint("old", "NoExecute")].into(),
        ..NodeFacts::default()
    };
    let NodeChange::Apply(apply) = plan_node(Some(desired), &meta, Some(&facts)) else {
        panic!()
    };
    let body = apply.body("a1", Some(desired));
    assert_eq!(body["metadata"]["name"], "a1");
    assert_eq!(body["metadata"]["resourceVersion"], "7");
    let keys: Vec<&str> = body["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["theirs", "nvidia.com/gpu"]);
    assert_eq!(
        body["metadata"]["annotations"][TAINTS_ANNOTATION],
        "nvidia.com/gpu=present:NoSchedule"
    );
}

#[test]
fn a_node_in_sync_needs_no_write_and_an_unknown_one_is_read_first() {
    let factory = factory();
    let assignment = assign(&factory, &nodes());
    let desired = &assignment.desired["a1"];
    let mut meta = node("h100");
    assert_eq!(
        plan_node(Some(desired), &meta, None),
        NodeChange::NeedsFacts
    );
    meta.labels = meta.labels.with(desired.labels.iter());
    meta.owned_labels = desired.labels.keys().collect();
    meta.taint_record = Some(sym(&taint_record(&desired.taints)));
    meta.owns_taint_record = true;
    meta.owns_taints = true;
    let facts = NodeFacts {
        taints: desired.taints.to_vec().into(),
        ..NodeFacts::default()
    };
    assert_eq!(
        plan_node(Some(desired), &meta, Some(&facts)),
        NodeChange::None
    );
    // Released: labels go, our taint goes, the list is still sent because fabbrica owns it.
    let NodeChange::Apply(apply) = plan_node(None, &meta, Some(&facts)) else {
        panic!()
    };
    let body = apply.body("a1", None);
    assert_eq!(body["spec"]["taints"], serde_json::json!([]));
    assert_eq!(body["metadata"]["labels"], serde_json::json!({}));
}

#[test]
fn the_facts_a_write_leaves_make_the_next_plan_a_no_op() {
    let factory = factory();
    let assignment = assign(&factory, &nodes());
    let desired = &assignment.desired["a1"];
    let meta = node("h100");
    let facts = NodeFacts {
        resource_version: "7".into(),
        ready: true,
        gpus: 8,
        taints: vec![taint("theirs", "NoSchedule")].into(),
    };
    let NodeChange::Apply(apply) = plan_node(Some(desired), &meta, Some(&facts)) else {
        panic!()
    };
    let after = apply.written(facts.clone(), "8".into());
    assert_eq!(after.resource_version, "8");
    assert!(after.ready && after.gpus == 8, "status is not written");
    let keys: Vec<&str> = after.taints.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["theirs", "nvidia.com/gpu"]);
    // The Node as the write left it: fabbrica's labels and taint record, owned by its manager.
    let mut written = meta.clone();
    written.labels = written.labels.with(desired.labels.iter());
    written.owned_labels = desired.labels.keys().collect();
    written.taint_record = apply.taint_record.clone();
    written.owns_taint_record = true;
    written.owns_taints = true;
    assert_eq!(
        plan_node(Some(desired), &written, Some(&after)),
        NodeChange::None
    );
    // A write of labels alone leaves the taints as they were.
    let labels_only = NodeApply {
        taint_record: None,
        taints: None,
    };
    assert_eq!(labels_only.written(facts, "9".into()).taints.len(), 1);
}

#[test]
fn the_build_returns_every_child_and_attachments_only_where_multus_is_served() {
    let factory = factory();
    let settings = Settings::default();
    let without = build(&factory, &nodes(), &settings, None);
    assert_eq!(without.factory, "it4lia");
    assert_eq!(
        without.storage_classes.len(),
        factory.spec.storage_tiers.len()
    );
    let maps: Vec<String> = without.config_maps["gpu-operator"]
        .iter()
        .chain(&without.config_maps["fabbrica-system"])
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(maps, ["it4lia-device-plugin", "it4lia-topology"]);
    assert_eq!(
        without.topology_config_map,
        "fabbrica-system/it4lia-topology"
    );
    assert!(without.network_attachments.is_none());
    assert_eq!(without.assignment, assign(&factory, &nodes()));
    let gvk =
        kube::api::GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let multus = ApiResource::from_gvk(&gvk);
    let with = build(&factory, &nodes(), &settings, Some(&multus));
    let (resource, attachments) = with.network_attachments.unwrap();
    assert_eq!(resource, multus);
    assert_eq!(attachments.len(), 8, "one per rail");
}
