//! One test per rule: a valid base, one thing broken, the field path asserted.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::v1alpha1::{
    FabricPartition, FactorySpec, GpuQuota, GpuSharing, JupyterEnvironmentSpec, MigSharing,
    StorageMount, StorageQuota, TimeSlicing, WorkspaceSpec,
};

const FACTORY: &str = r#"
site: {name: test, country: IT, tier: aiFactory}
gpuPools:
  - name: train
    nodeSelector: {role: train}
    system: dgx-h100
    expectedNodes: 32
  - name: nb
    nodeSelector: {role: nb}
    system: dgx-h100
    expectedNodes: 4
    sharing: {mig: {profile: 1g.10gb}}
fabric:
  type: infiniband
  railsPerNode: 8
  linkSpeed: 400G
  topology: {source: nodeOrder}
  partitionKeys: {first: "0x0100", last: "0x01FF"}
storageTiers:
  - {name: scratch, role: scratch, provisioner: csi.example.com, capacity: 1Pi}
  - {name: project, role: project, provisioner: csi.example.com, capacity: 2Pi}
  - {name: datasets, role: datasets, provisioner: csi.example.com, capacity: 1Pi}
notebooks:
  images: [{name: pytorch, image: nvcr.io/nvidia/pytorch:24.10-py3}]
  profiles: [{name: small, pool: nb, gpus: 2, cpu: "8", memory: 64Gi}]
"#;

const WORKSPACE: &str = r#"
factory: test
tenant: {name: Aurora, kind: startup}
namespace: ws-aurora
gpuQuota: [{pool: train, gpus: 64}, {pool: nb, gpus: 7}]
storageQuota: [{tier: project, capacity: 10Ti}]
fabricPartition: {key: "0x0101"}
"#;

const JUPYTER: &str = r#"
image: pytorch
profile: {pool: nb, gpus: 1, cpu: "4", memory: 32Gi}
home: {tier: project, size: 50Gi}
mounts: [{tier: datasets, mountPath: /datasets, readOnly: true}]
"#;

fn factory() -> FactorySpec {
    serde_saphyr::from_str(FACTORY).unwrap()
}

fn workspace() -> WorkspaceSpec {
    serde_saphyr::from_str(WORKSPACE).unwrap()
}

fn jupyter() -> JupyterEnvironmentSpec {
    serde_saphyr::from_str(JUPYTER).unwrap()
}

fn paths(result: Result<(), Problems>) -> Vec<String> {
    result
        .expect_err("expected problems")
        .0
        .into_iter()
        .map(|p| p.path)
        .collect()
}

fn only(result: Result<(), Problems>, path: &str, mentions: &str) {
    let problems = result.expect_err("expected a problem").0;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, path);
    assert!(
        problems[0].message.contains(mentions),
        "{:?} should mention {mentions:?}",
        problems[0].message
    );
}

#[test]
fn the_base_fixtures_are_valid() {
    validate_factory(&factory()).unwrap();
    validate_workspace(&workspace(), Some(&factory()), &[]).unwrap();
    validate_jupyter(&jupyter(), &factory(), &workspace()).unwrap();
}

#[test]
fn duplicate_pool_names() {
    let mut f = factory();
    f.gpu_pools[0].name = "nb".into();
    f.gpu_pools[0].sharing = f.gpu_pools[1].sharing.clone();
    only(
        validate_factory(&f),
        "spec.gpuPools[1].name",
        "duplicate pool name",
    );
}

#[test]
fn duplicate_tier_names() {
    let mut f = factory();
    f.storage_tiers[2].name = "scratch".into();
    only(
        validate_factory(&f),
        "spec.storageTiers[2].name",
        "duplicate tier name",
    );
}

#[test]
fn mig_profile_the_gpu_does_not_support() {
    let mut f = factory();
    f.gpu_pools[1].sharing = Some(GpuSharing {
        mig: Some(MigSharing {
            profile: "1g.18gb".into(),
        }),
        time_slicing: None,
    });
    only(
        validate_factory(&f),
        "spec.gpuPools[1].sharing.mig.profile",
        "valid: 1g.10gb, 1g.20gb",
    );
}

#[test]
fn mig_and_time_slicing_together() {
    let mut f = factory();
    f.gpu_pools[1].sharing.as_mut().unwrap().time_slicing = Some(TimeSlicing { replicas: 4 });
    only(
        validate_factory(&f),
        "spec.gpuPools[1].sharing",
        "set one of them",
    );
}

#[test]
fn more_rails_than_the_system_has() {
    let mut f = factory();
    f.gpu_pools[0].system = crate::v1alpha1::GpuSystem::Gb200Nvl72;
    only(
        validate_factory(&f),
        "spec.fabric.railsPerNode",
        "valid: 1 to 4",
    );
}

#[test]
fn more_gpus_per_node_than_the_system_has() {
    let mut f = factory();
    f.gpu_pools[0].gpus_per_node = Some(16);
    only(
        validate_factory(&f),
        "spec.gpuPools[0].gpusPerNode",
        "valid: 1 to 8",
    );
}

#[test]
fn empty_node_selector() {
    let mut f = factory();
    f.gpu_pools[0].node_selector.clear();
    only(
        validate_factory(&f),
        "spec.gpuPools[0].nodeSelector",
        "every Node",
    );
}

#[test]
fn partition_range_outside_the_valid_keys() {
    let mut f = factory();
    let range = f.fabric.partition_keys.as_mut().unwrap();
    range.first = "0x0000".into();
    range.last = "0x7FFF".into();
    assert_eq!(
        paths(validate_factory(&f)),
        [
            "spec.fabric.partitionKeys.first",
            "spec.fabric.partitionKeys.last"
        ]
    );
}

#[test]
fn partition_range_upside_down() {
    let mut f = factory();
    f.fabric.partition_keys.as_mut().unwrap().first = "0x0200".into();
    only(
        validate_factory(&f),
        "spec.fabric.partitionKeys",
        "first <= last",
    );
}

#[test]
fn declared_topology_without_units() {
    let mut f = factory();
    f.fabric.topology.source = crate::v1alpha1::TopologySource::Declared;
    only(
        validate_factory(&f),
        "spec.fabric.topology.scalableUnits",
        "list them",
    );
}

#[test]
fn node_labels_topology_without_a_label() {
    let mut f = factory();
    f.fabric.topology.source = crate::v1alpha1::TopologySource::NodeLabels;
    only(
        validate_factory(&f),
        "spec.fabric.topology.scalableUnitLabel",
        "name",
    );
}

#[test]
fn notebook_profile_on_a_missing_pool() {
    let mut f = factory();
    f.notebooks.profiles[0].pool = "gone".into();
    only(
        validate_factory(&f),
        "spec.notebooks.profiles[0].pool",
        "valid: nb, train",
    );
}

#[test]
fn bad_maintenance_percentage() {
    let mut f = factory();
    f.gpu_pools[0].maintenance = Some(crate::v1alpha1::MaintenancePolicy {
        max_unavailable: IntOrString::String("150%".into()),
    });
    only(
        validate_factory(&f),
        "spec.gpuPools[0].maintenance.maxUnavailable",
        "\"100%\"",
    );
}

#[test]
fn workspaces_sharing_a_namespace() {
    let other = workspace();
    let mut w = workspace();
    w.fabric_partition = None;
    only(
        validate_workspace(&w, Some(&factory()), &[("other", &other)]),
        "spec.namespace",
        "\"other\"",
    );
}

#[test]
fn workspaces_sharing_a_partition_key() {
    let mut other = workspace();
    other.namespace = "ws-other".into();
    only(
        validate_workspace(&workspace(), Some(&factory()), &[("other", &other)]),
        "spec.fabricPartition.key",
        "0x0101",
    );
}

#[test]
fn partition_key_outside_the_valid_keys() {
    let mut w = workspace();
    w.fabric_partition = Some(FabricPartition {
        key: "0x7FFF".into(),
    });
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.fabricPartition.key",
        "0x0001 to 0x7FFE",
    );
}

#[test]
fn partition_key_outside_the_factory_range() {
    let mut w = workspace();
    w.fabric_partition = Some(FabricPartition {
        key: "0x0300".into(),
    });
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.fabricPartition.key",
        "0x0100 to 0x01FF",
    );
}

#[test]
fn lending_more_than_granted() {
    let mut w = workspace();
    w.gpu_quota[0].lending_limit = Some(65);
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.gpuQuota[0].lendingLimit",
        "valid: 0 to 64",
    );
    w.gpu_quota[0].lending_limit = Some(64);
    assert_eq!(validate_workspace(&w, Some(&factory()), &[]), Ok(()));
}

#[test]
fn borrowing_beyond_what_the_pool_can_hold() {
    let mut w = workspace();
    // Pool train: 32 nodes x 8 GPUs; 64 are granted.
    w.gpu_quota[0].borrowing_limit = 193;
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.gpuQuota[0].borrowingLimit",
        "valid: 0 to 192",
    );
    w.gpu_quota[0].borrowing_limit = 192;
    assert_eq!(validate_workspace(&w, Some(&factory()), &[]), Ok(()));
}

#[test]
fn fair_sharing_weight_out_of_range() {
    let mut w = workspace();
    w.queue = Some(crate::v1alpha1::QueuePolicy {
        fair_sharing_weight: Some(1001),
        ..Default::default()
    });
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.queue.fairSharingWeight",
        "valid: 0 to 1000",
    );
}

#[test]
fn quota_naming_a_missing_pool() {
    let mut w = workspace();
    w.gpu_quota.push(GpuQuota {
        pool: "gone".into(),
        gpus: 1,
        borrowing_limit: 0,
        lending_limit: None,
    });
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.gpuQuota[2].pool",
        "valid: nb, train",
    );
}

#[test]
fn quota_naming_a_missing_tier() {
    let mut w = workspace();
    w.storage_quota.push(StorageQuota {
        tier: "gone".into(),
        capacity: Quantity("1Ti".into()),
    });
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.storageQuota[1].tier",
        "valid: datasets, project, scratch",
    );
}

#[test]
fn quota_beyond_what_the_pool_can_hold() {
    let mut w = workspace();
    // 32 nodes x 8 GPUs = 256 whole GPUs.
    w.gpu_quota[0].gpus = 257;
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.gpuQuota[0].gpus",
        "more than 256",
    );
    // 4 nodes x 8 GPUs x 7 instances of 1g.10gb = 224 slices.
    let mut w = workspace();
    w.gpu_quota[1].gpus = 224;
    validate_workspace(&w, Some(&factory()), &[]).unwrap();
    w.gpu_quota[1].gpus = 225;
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.gpuQuota[1].gpus",
        "more than 224",
    );
}

#[test]
fn duplicate_quota_entries() {
    let mut w = workspace();
    w.gpu_quota.push(GpuQuota {
        pool: "train".into(),
        gpus: 1,
        borrowing_limit: 0,
        lending_limit: None,
    });
    only(
        validate_workspace(&w, Some(&factory()), &[]),
        "spec.gpuQuota[2].pool",
        "duplicate pool",
    );
}

#[test]
fn notebook_image_outside_the_catalog() {
    let mut j = jupyter();
    j.image = "tensorflow".into();
    only(
        validate_jupyter(&j, &factory(), &workspace()),
        "spec.image",
        "valid: pytorch",
    );
}

#[test]
fn notebook_profile_outside_the_catalog() {
    let mut j = jupyter();
    j.profile.memory = Quantity("128Gi".into());
    only(
        validate_jupyter(&j, &factory(), &workspace()),
        "spec.profile.memory",
        "small (up to 2 GPUs",
    );
}

#[test]
fn notebook_on_a_pool_without_profiles() {
    let mut j = jupyter();
    j.profile.pool = "train".into();
    only(
        validate_jupyter(&j, &factory(), &workspace()),
        "spec.profile.pool",
        "valid: nb",
    );
}

#[test]
fn notebook_beyond_the_workspace_quota() {
    let mut w = workspace();
    w.gpu_quota[1].gpus = 1;
    let mut j = jupyter();
    j.profile.gpus = 2;
    only(
        validate_jupyter(&j, &factory(), &w),
        "spec.profile.gpus",
        "quota of 1",
    );
}

#[test]
fn notebook_home_on_a_tier_without_quota() {
    let mut j = jupyter();
    j.home.tier = "scratch".into();
    only(
        validate_jupyter(&j, &factory(), &workspace()),
        "spec.home.tier",
        "no storage quota",
    );
}

#[test]
fn notebook_mount_on_a_missing_tier() {
    let mut j = jupyter();
    j.mounts.push(StorageMount {
        tier: "gone".into(),
        mount_path: "/gone".into(),
        read_only: false,
    });
    only(
        validate_jupyter(&j, &factory(), &workspace()),
        "spec.mounts[1].tier",
        "no storage tier",
    );
}

#[test]
fn capacity_that_is_not_a_quantity() {
    let mut f = factory();
    f.storage_tiers[0].capacity = Quantity("lots".into());
    only(
        validate_factory(&f),
        "spec.storageTiers[0].capacity",
        "not a quantity",
    );
}

fn with_allocation(allocation: &str) -> WorkspaceSpec {
    let mut ws = workspace();
    ws.allocation = Some(serde_saphyr::from_str(allocation).unwrap());
    ws
}

#[test]
fn an_allocation_within_its_modes_limits_is_valid() {
    for allocation in [
        "{mode: fast-lane, gpuHours: 50000, start: '2026-01-01', end: '2026-03-31'}",
        "{mode: playground, gpuHours: 10, start: '2026-01-15', end: '2026-02-14'}",
        "{mode: large-scale, gpuHours: 200000, start: '2026-01-01', end: '2026-12-31'}",
        "{mode: science, pools: [{pool: train, gpuHours: 9000}, {pool: nb, gpuHours: 1000}], start: '2026-07-01', end: '2026-12-31'}",
    ] {
        let ws = with_allocation(allocation);
        assert_eq!(
            validate_workspace(&ws, Some(&factory()), &[]),
            Ok(()),
            "{allocation}"
        );
    }
}

#[test]
fn gpu_hours_beyond_the_mode_are_refused_with_the_valid_range() {
    let ws = with_allocation(
        "{mode: fast-lane, gpuHours: 60000, start: '2026-01-01', end: '2026-03-31'}",
    );
    only(
        validate_workspace(&ws, Some(&factory()), &[]),
        "spec.allocation.gpuHours",
        "valid: 0 to 50000 GPU-hours",
    );
    let ws = with_allocation(
        "{mode: large-scale, gpuHours: 50000, start: '2026-01-01', end: '2026-03-31'}",
    );
    only(
        validate_workspace(&ws, Some(&factory()), &[]),
        "spec.allocation.gpuHours",
        "valid: over 50000 GPU-hours",
    );
}

#[test]
fn a_length_outside_the_mode_is_refused_with_the_valid_end_dates() {
    let ws =
        with_allocation("{mode: fast-lane, gpuHours: 100, start: '2026-01-01', end: '2026-06-30'}");
    only(
        validate_workspace(&ws, Some(&factory()), &[]),
        "spec.allocation.end",
        "valid ends: 2026-01-31 to 2026-03-31",
    );
    let ws = with_allocation(
        "{mode: large-scale, gpuHours: 60000, start: '2026-01-01', end: '2026-05-31'}",
    );
    only(
        validate_workspace(&ws, Some(&factory()), &[]),
        "spec.allocation.end",
        "2026-03-31 (3 months), 2026-06-30 (6 months), 2026-12-31 (12 months)",
    );
}

#[test]
fn unknown_modes_and_pools_and_bad_dates_name_their_fields() {
    let ws = with_allocation("{mode: gold, gpuHours: 1, start: '2026-01-01', end: '2026-01-31'}");
    only(
        validate_workspace(&ws, Some(&factory()), &[]),
        "spec.allocation.mode",
        "valid: playground, fast-lane, large-scale, science",
    );
    let ws = with_allocation(
        "{mode: science, pools: [{pool: gpu, gpuHours: 1}], start: '2026-01-01', end: '2026-06-30'}",
    );
    only(
        validate_workspace(&ws, Some(&factory()), &[]),
        "spec.allocation.pools[0].pool",
        "valid: train, nb",
    );
    let ws =
        with_allocation("{mode: playground, gpuHours: 1, start: '2026-02-30', end: '2026-01-01'}");
    assert_eq!(
        paths(validate_workspace(&ws, Some(&factory()), &[])),
        ["spec.allocation.start"]
    );
    let ws =
        with_allocation("{mode: playground, gpuHours: 1, start: '2026-03-01', end: '2026-01-01'}");
    only(
        validate_workspace(&ws, Some(&factory()), &[]),
        "spec.allocation.end",
        "before the start",
    );
    let ws = with_allocation("{mode: playground, start: '2026-01-01', end: '2026-01-31'}");
    only(
        validate_workspace(&ws, Some(&factory()), &[]),
        "spec.allocation.gpuHours",
        "either gpuHours",
    );
}

#[test]
fn a_factory_lists_its_own_access_modes() {
    let mut factory = factory();
    factory.access_modes =
        serde_saphyr::from_str("[{id: pilot, gpuHours: {max: 100}, months: {allowed: [1]}}]")
            .unwrap();
    let ws =
        with_allocation("{mode: pilot, gpuHours: 100, start: '2026-01-01', end: '2026-01-31'}");
    assert_eq!(validate_workspace(&ws, Some(&factory), &[]), Ok(()));
    let ws =
        with_allocation("{mode: fast-lane, gpuHours: 100, start: '2026-01-01', end: '2026-01-31'}");
    only(
        validate_workspace(&ws, Some(&factory), &[]),
        "spec.allocation.mode",
        "valid: pilot",
    );
}

#[test]
fn validation_defaults_to_dcgm_diagnostics() {
    let v: crate::v1alpha1::NodeValidation = serde_saphyr::from_str("{}").unwrap();
    assert_eq!(v.image, crate::v1alpha1::DEFAULT_VALIDATION_IMAGE);
    assert!(v.command.join(" ").contains("dcgmi diag -r 2"));
    assert_eq!(v.timeout_seconds, 1800);
    let mut f = factory();
    f.gpu_pools[0].validation = Some(v);
    validate_factory(&f).unwrap();
}

#[test]
fn validation_image_command_timeout_and_pod_labels() {
    let mut f = factory();
    f.gpu_pools[1].validation = Some(crate::v1alpha1::NodeValidation {
        image: "nvcr.io/nvidia/x y".into(),
        command: vec![String::new()],
        timeout_seconds: 5,
        pod_labels: Some(
            [
                ("fabbrica.io/pool".to_owned(), "x".to_owned()),
                ("team".to_owned(), "not a value".to_owned()),
            ]
            .into(),
        ),
    });
    assert_eq!(
        paths(validate_factory(&f)),
        [
            "spec.gpuPools[1].validation.image",
            "spec.gpuPools[1].validation.command[0]",
            "spec.gpuPools[1].validation.timeoutSeconds",
            "spec.gpuPools[1].validation.podLabels",
            "spec.gpuPools[1].validation.podLabels",
        ]
    );
    f.gpu_pools[1].validation = Some(crate::v1alpha1::NodeValidation {
        command: Vec::new(),
        ..Default::default()
    });
    only(
        validate_factory(&f),
        "spec.gpuPools[1].validation.command",
        "dcgmi diag -r 2",
    );
}

#[test]
fn discovery_labels_must_be_label_keys() {
    let mut f = factory();
    f.fabric.topology.discovery = Some(crate::v1alpha1::TopologyDiscovery {
        leaf_label: Some("example.com/leaf".into()),
        unit_label: Some("not a key".into()),
    });
    only(
        validate_factory(&f),
        "spec.fabric.topology.discovery.unitLabel",
        "not a label key",
    );
}
