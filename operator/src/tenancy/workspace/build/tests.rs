use std::sync::Arc;

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::Workspace;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::*;
use crate::tenancy::fixtures::{self, validated_workspace, validated_workspace_from};
use crate::tenancy::workspace::status::{gpus_used, quota_usage};
use crate::tenancy::workspace::validate::{Refusal, validate};

fn hard(quota: &ResourceQuota) -> BTreeMap<String, String> {
    quota
        .spec
        .as_ref()
        .unwrap()
        .hard
        .as_ref()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

#[test]
fn namespace_is_labelled_restricted_owned_and_carries_the_partition_key() {
    let ws = validated_workspace();
    let ns = build_namespace(&ws);
    let meta = &ns.metadata;
    assert_eq!(meta.name.as_deref(), Some("ws-aurora"));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels[labels::WORKSPACE], "aurora");
    assert_eq!(labels[labels::FACTORY], "lab");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(
        labels["pod-security.kubernetes.io/enforce-version"],
        "latest"
    );
    assert_eq!(
        meta.annotations.as_ref().unwrap()[labels::PARTITION_KEY],
        "0x0101"
    );
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Workspace", "workspace-uid", Some(true))
    );
}

#[test]
fn quota_sums_gpus_over_pools_and_caps_storage_per_class() {
    let quota = build_resource_quota(&validated_workspace());
    assert_eq!(quota.metadata.name.as_deref(), Some(QUOTA));
    assert_eq!(quota.metadata.namespace.as_deref(), Some("ws-aurora"));
    assert_eq!(
        hard(&quota),
        BTreeMap::from([
            (GPU_REQUESTS.to_owned(), "20".to_owned()),
            (
                "lab-project.storageclass.storage.k8s.io/requests.storage".to_owned(),
                "50Ti".to_owned()
            ),
            // No grant on scratch: nothing may be claimed there. Datasets are read without a grant.
            (
                "lab-scratch.storageclass.storage.k8s.io/requests.storage".to_owned(),
                "0".to_owned()
            ),
        ])
    );
}

#[test]
fn limit_range_sets_container_defaults() {
    let limits = build_limit_range(&validated_workspace());
    let item = &limits.spec.unwrap().limits[0];
    assert_eq!(item.type_, "Container");
    assert_eq!(
        item.default_request.as_ref().unwrap()["cpu"],
        Quantity("100m".into())
    );
    assert_eq!(
        item.default.as_ref().unwrap()["memory"],
        Quantity("1Gi".into())
    );
}

#[test]
fn network_policies_deny_by_default_and_allow_the_namespace_and_dns() {
    let policies = build_network_policies(&validated_workspace());
    let names: Vec<_> = policies
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, [DEFAULT_DENY, ALLOW_SAME_NAMESPACE, ALLOW_DNS]);
    let deny = policies[0].spec.as_ref().unwrap();
    assert_eq!(
        deny.policy_types.as_deref(),
        Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
    );
    assert!(deny.ingress.is_none() && deny.egress.is_none());
    let same = serde_json::to_value(&policies[1].spec).unwrap();
    assert_eq!(same["ingress"], json!([{"from": [{"podSelector": {}}]}]));
    assert_eq!(same["egress"], json!([{"to": [{"podSelector": {}}]}]));
    let dns = serde_json::to_value(&policies[2].spec).unwrap();
    assert_eq!(dns["policyTypes"], json!(["Egress"]));
    assert_eq!(
        dns["egress"][0]["ports"],
        json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
    );
    assert_eq!(
        dns["egress"][0]["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
}

#[test]
fn members_are_bound_to_edit_in_their_namespace_and_nobody_without_members() {
    let binding = build_role_binding(&validated_workspace()).unwrap();
    assert_eq!(binding.metadata.namespace.as_deref(), Some("ws-aurora"));
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("ClusterRole", MEMBER_ROLE)
    );
    let subjects: Vec<_> = binding
        .subjects
        .unwrap()
        .into_iter()
        .map(|s| (s.kind, s.name))
        .collect();
    assert_eq!(
        subjects,
        [
            ("User".to_owned(), "giulia@aurora.example".to_owned()),
            ("Group".to_owned(), "aurora:engineers".to_owned())
        ]
    );
    let mut alone = fixtures::workspace();
    alone.spec.members.clear();
    assert!(build_role_binding(&validated_workspace_from(alone)).is_none());
}

#[test]
fn the_operator_binds_itself_to_edit_in_the_workspace_namespace_only() {
    let operator = subject_of("system:serviceaccount:fabbrica-system:fabbrica-operator");
    assert_eq!(
        (
            operator.kind.as_str(),
            operator.namespace.as_deref(),
            operator.name.as_str()
        ),
        (
            "ServiceAccount",
            Some("fabbrica-system"),
            "fabbrica-operator"
        )
    );
    let binding = build_operator_binding(&validated_workspace(), &operator);
    assert_eq!(binding.metadata.name.as_deref(), Some(OPERATOR_BINDING));
    assert_eq!(binding.metadata.namespace.as_deref(), Some("ws-aurora"));
    assert_eq!(binding.role_ref.name, MEMBER_ROLE);
    assert_eq!(binding.subjects, Some(vec![operator]));
    // Anyone else the API server authenticates is a user, whatever the name looks like.
    for name in [
        "admin",
        "system:serviceaccount:no-name",
        "oidc:alice@example.org",
    ] {
        let subject = subject_of(name);
        assert_eq!(
            (subject.kind.as_str(), subject.name.as_str()),
            ("User", name)
        );
    }
}

#[test]
fn kueue_gets_a_flavor_per_pool_and_a_queue_with_the_quota_per_pool() {
    let ws = validated_workspace();
    let flavors = build_resource_flavors(&ws, "kueue.x-k8s.io/v1beta2", true);
    assert_eq!(flavors.len(), 2);
    assert_eq!(flavors[0]["spec"]["topologyName"], "lab");
    assert_eq!(flavors[0]["metadata"]["name"], "lab-interactive");
    assert_eq!(
        flavors[0]["metadata"]["ownerReferences"][0]["kind"],
        "Factory"
    );
    assert_eq!(
        flavors[0]["spec"]["nodeLabels"],
        json!({"fabbrica.io/factory": "lab", "fabbrica.io/pool": "interactive"})
    );
    assert_eq!(
        flavors[0]["spec"]["tolerations"][0],
        json!({"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"})
    );
    assert!(flavors[1]["spec"].get("tolerations").is_none());
    let queue = build_cluster_queue(&ws, "kueue.x-k8s.io/v1beta2");
    assert_eq!(queue["metadata"]["name"], "aurora");
    assert_eq!(queue["spec"]["cohortName"], "lab");
    assert_eq!(
        queue["spec"]["preemption"],
        json!({
            "reclaimWithinCohort": "Any",
            "borrowWithinCohort": {"policy": "Never"},
            "withinClusterQueue": "Never",
        })
    );
    assert!(queue["spec"].get("fairSharing").is_none());
    assert_eq!(
        queue["spec"]["namespaceSelector"]["matchLabels"]["fabbrica.io/workspace"],
        "aurora"
    );
    let group = &queue["spec"]["resourceGroups"][0];
    assert_eq!(
        group["coveredResources"],
        json!(["nvidia.com/gpu", "cpu", "memory"])
    );
    assert_eq!(
        group["flavors"][1]["resources"][0],
        json!({"name": "nvidia.com/gpu", "nominalQuota": "16", "borrowingLimit": "0"})
    );
    assert_eq!(group["flavors"][1]["name"], "lab-training");
    let local = build_local_queue(&ws, "kueue.x-k8s.io/v1beta2");
    assert_eq!(
        (
            local["metadata"]["namespace"].as_str(),
            local["spec"]["clusterQueue"].as_str()
        ),
        (Some("ws-aurora"), Some("aurora"))
    );
}

#[test]
fn borrowing_lending_weight_and_preemption_reach_the_cluster_queue() {
    let mut workspace = fixtures::workspace();
    workspace.spec.gpu_quota[1].borrowing_limit = 8;
    workspace.spec.gpu_quota[1].lending_limit = Some(4);
    workspace.spec.queue = Some(fabbrica_crds::v1alpha1::QueuePolicy {
        fair_sharing_weight: Some(3),
        reclaim_within_cohort: fabbrica_crds::v1alpha1::CohortReclaim::LowerPriority,
        within_workspace: fabbrica_crds::v1alpha1::WorkspacePreemption::LowerPriority,
    });
    let ws = validated_workspace_from(workspace);
    let queue = build_cluster_queue(&ws, "kueue.x-k8s.io/v1beta2");
    assert_eq!(
        queue["spec"]["resourceGroups"][0]["flavors"][1]["resources"][0],
        json!({"name": "nvidia.com/gpu", "nominalQuota": "16", "borrowingLimit": "8", "lendingLimit": "4"})
    );
    assert_eq!(queue["spec"]["fairSharing"], json!({"weight": "3"}));
    assert_eq!(
        queue["spec"]["preemption"]["reclaimWithinCohort"],
        "LowerPriority"
    );
    // Another tenant's work within its own quota is never preempted.
    assert_eq!(
        queue["spec"]["preemption"]["borrowWithinCohort"]["policy"],
        "Never"
    );
    // Borrowed GPUs run in the namespace, so its ResourceQuota leaves room for them.
    let quota = build_resource_quota(&ws);
    assert_eq!(
        quota.spec.unwrap().hard.unwrap()[GPU_REQUESTS],
        Quantity("28".into())
    );
}

#[test]
fn queue_status_is_read_from_the_cluster_queue() {
    let ws = validated_workspace();
    let cq: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": "aurora"},
        "status": {
            "admittedWorkloads": 2,
            "pendingWorkloads": 1,
            "flavorsUsage": [
                {"name": "lab-training", "resources": [
                    {"name": "cpu", "total": "2"},
                    {"name": "nvidia.com/gpu", "total": "24", "borrowed": "8"},
                ]},
            ],
        },
    }))
    .unwrap();
    let status = crate::tenancy::workspace::status::queue_status(&ws, &cq);
    assert_eq!(
        (status.admitted_workloads, status.pending_workloads),
        (2, 1)
    );
    let pools: Vec<_> = status
        .pools
        .iter()
        .map(|p| (p.pool.as_str(), p.gpus_in_use, p.gpus_borrowed))
        .collect();
    assert_eq!(pools, [("interactive", 0, 0), ("training", 24, 8)]);
}

#[test]
fn quota_status_reports_zero_used_until_counted() {
    let mut quota = build_resource_quota(&validated_workspace());
    assert_eq!(gpus_used(&quota), 0);
    let usage = quota_usage(&quota);
    assert!(usage.iter().all(|u| u.used == "0"));
    assert!(
        usage
            .iter()
            .any(|u| u.resource == GPU_REQUESTS && u.granted == "20")
    );
    quota.status = Some(k8s_openapi::api::core::v1::ResourceQuotaStatus {
        used: Some(BTreeMap::from([(
            GPU_REQUESTS.to_owned(),
            Quantity("3".into()),
        )])),
        ..Default::default()
    });
    assert_eq!(gpus_used(&quota), 3);
}

#[test]
fn a_later_workspace_cannot_take_an_earlier_ones_namespace_or_partition() {
    let first: Workspace = fixtures::parse(&fixtures::WORKSPACE.replace(
        "generation: 3",
        "generation: 3, creationTimestamp: \"2025-01-01T00:00:00Z\"",
    ));
    let mut second = first.clone();
    second.metadata.name = Some("zephyr".into());
    second.metadata.uid = Some("other-uid".into());
    second.metadata.creation_timestamp =
        fixtures::parse::<Workspace>(&fixtures::WORKSPACE.replace(
            "generation: 3",
            "creationTimestamp: \"2025-02-01T00:00:00Z\"",
        ))
        .metadata
        .creation_timestamp;
    let all = [Arc::new(first.clone()), Arc::new(second.clone())];
    let factory = fixtures::factory();
    assert!(validate(&first, Some(&factory), &all).is_ok());
    let Err(Refusal::Invalid(problems)) = validate(&second, Some(&factory), &all) else {
        panic!("the newcomer must be refused")
    };
    let paths: Vec<_> = problems.0.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["spec.namespace", "spec.fabricPartition.key"]);
    assert_eq!(
        validate(&first, None, &all),
        Err(Refusal::FactoryMissing("lab".into()))
    );
}

#[test]
fn the_build_returns_every_child_and_queues_only_where_kueue_is_served() {
    let ws = validated_workspace();
    let without = build(&ws, None);
    assert_eq!(without.namespace, build_namespace(&ws));
    assert_eq!(without.quota, build_resource_quota(&ws));
    assert_eq!(without.policies.len(), 3);
    assert_eq!(without.binding, build_role_binding(&ws));
    assert!(without.queues.is_none());
    let api = |kind: &str| {
        ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            KUEUE_GROUP,
            "v1beta1",
            kind,
        ))
    };
    let kueue = KueueApis {
        resource_flavor: api("ResourceFlavor"),
        cluster_queue: api("ClusterQueue"),
        local_queue: api("LocalQueue"),
        topology: None,
    };
    let queues = build(&ws, Some(&kueue)).queues.unwrap();
    assert_eq!(
        queues.flavors,
        build_resource_flavors(&ws, "kueue.x-k8s.io/v1beta1", false)
    );
    assert!(queues.topology.is_none());
    assert_eq!(queues.cluster_queue["spec"]["cohort"], "lab");
    assert_eq!(queues.local_queue["spec"]["clusterQueue"], json!(ws.name));
    assert_eq!(queues.apis, kueue);
}
