//! The desired children of a Workspace, built at once by [`build`] after discovery. Pure: no
//! client, no clock.

use std::collections::BTreeMap;

use fabbrica_crds::capacity::gpus_granted;
use fabbrica_crds::names::{GPU_REQUESTS, storage_class_name, storage_requests};
use fabbrica_crds::v1alpha1::StorageRole;
use fabbrica_crds::{kueue, labels};
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ApiResource;
use serde_json::{Value, json};

use super::validate::ValidatedWorkspace;
use crate::reconcile::children;

/// The ResourceQuota of a workspace's namespace.
pub const QUOTA: &str = "fabbrica-quota";
/// The LimitRange of a workspace's namespace.
pub const LIMITS: &str = "fabbrica-limits";
/// The RoleBinding that gives members the `edit` ClusterRole.
pub const MEMBERS: &str = "fabbrica-members";
/// The built-in ClusterRole members get, in their namespace only.
pub const MEMBER_ROLE: &str = "edit";
/// The RoleBinding that gives the operator itself `edit` in the workspace's namespace: the
/// notebooks' token Secrets are made there, and nowhere else may it touch a Secret.
pub const OPERATOR_BINDING: &str = "fabbrica-operator";
/// The NetworkPolicy that denies all traffic the others do not allow.
pub const DEFAULT_DENY: &str = "fabbrica-default-deny";
/// The NetworkPolicy that allows traffic between the namespace's own Pods.
pub const ALLOW_SAME_NAMESPACE: &str = "fabbrica-allow-same-namespace";
/// The NetworkPolicy that allows DNS lookups.
pub const ALLOW_DNS: &str = "fabbrica-allow-dns";
/// The LocalQueue tenants submit Kueue workloads to.
pub const LOCAL_QUEUE: &str = "default";
/// The Pod Security Admission labels of the namespace: `restricted`, latest version.
pub const POD_SECURITY: [(&str, &str); 2] = [
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
];

/// Kueue's kinds, as the API server serves them.
#[derive(Clone, Debug, PartialEq)]
pub struct KueueApis {
    /// ResourceFlavor (cluster-scoped).
    pub resource_flavor: ApiResource,
    /// ClusterQueue (cluster-scoped).
    pub cluster_queue: ApiResource,
    /// LocalQueue (namespaced).
    pub local_queue: ApiResource,
    /// Topology (cluster-scoped), where this Kueue serves it (topology-aware scheduling).
    pub topology: Option<ApiResource>,
}

/// Kueue's objects of a workspace, as JSON for a dynamic apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Queues {
    /// Where they are served.
    pub apis: KueueApis,
    /// The Factory's Topology, shared by its workspaces, where Kueue serves it.
    pub topology: Option<Value>,
    /// One ResourceFlavor per pool, shared by the factory's workspaces.
    pub flavors: Vec<Value>,
    /// The workspace's ClusterQueue.
    pub cluster_queue: Value,
    /// The LocalQueue in its namespace.
    pub local_queue: Value,
}

/// Every child of a valid Workspace, built at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The Workspace's name, which its children carry in their labels.
    pub workspace: String,
    /// The Factory's name, which the shared ResourceFlavors carry.
    pub factory: String,
    /// The tenant's namespace.
    pub namespace: Namespace,
    /// Its ResourceQuota.
    pub quota: ResourceQuota,
    /// Its LimitRange.
    pub limits: LimitRange,
    /// Its NetworkPolicies.
    pub policies: Vec<NetworkPolicy>,
    /// The members' RoleBinding; none without members.
    pub binding: Option<RoleBinding>,
    /// The operator's own RoleBinding; none when its identity is unknown (see
    /// [`build_operator_binding`]).
    pub operator_binding: Option<RoleBinding>,
    /// Kueue's objects, where Kueue is served.
    pub queues: Option<Queues>,
}

/// Builds every child of a valid Workspace; `kueue` is where discovery found Kueue's kinds.
pub fn build(ws: &ValidatedWorkspace, kueue: Option<&KueueApis>) -> Desired {
    Desired {
        workspace: ws.name.clone(),
        factory: ws.spec.factory.clone(),
        namespace: build_namespace(ws),
        quota: build_resource_quota(ws),
        limits: build_limit_range(ws),
        policies: build_network_policies(ws),
        binding: build_role_binding(ws),
        operator_binding: None,
        queues: kueue.map(|apis| Queues {
            topology: apis
                .topology
                .as_ref()
                .map(|t| build_topology(ws, &t.api_version)),
            flavors: build_resource_flavors(
                ws,
                &apis.resource_flavor.api_version,
                apis.topology.is_some(),
            ),
            cluster_queue: build_cluster_queue(ws, &apis.cluster_queue.api_version),
            local_queue: build_local_queue(ws, &apis.local_queue.api_version),
            apis: apis.clone(),
        }),
    }
}

/// Labels every child carries: workspace, factory and the managed-by marker.
pub fn child_labels(ws: &ValidatedWorkspace) -> BTreeMap<String, String> {
    children::child_labels([
        (labels::WORKSPACE, ws.name.as_str()),
        (labels::FACTORY, ws.spec.factory.as_str()),
    ])
}

/// The selector of a workspace's children; the environments' children in its namespace are not.
pub fn child_selector(workspace: &str) -> String {
    format!(
        "{},!{}",
        children::child_selector(labels::WORKSPACE, workspace),
        labels::ENVIRONMENT
    )
}

fn meta(ws: &ValidatedWorkspace, name: &str, namespaced: bool) -> ObjectMeta {
    let namespace = namespaced.then_some(ws.spec.namespace.as_str());
    children::child_meta(name, namespace, child_labels(ws), Some(&ws.owner))
}

/// The tenant's namespace: labelled with workspace and factory, Pod Security `restricted`
/// enforced, the fabric partition key annotated.
pub fn build_namespace(ws: &ValidatedWorkspace) -> Namespace {
    let mut metadata = meta(ws, &ws.spec.namespace, false);
    if let Some(labels) = &mut metadata.labels {
        labels.extend(
            POD_SECURITY
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
    }
    if let Some(partition) = &ws.spec.fabric_partition {
        metadata.annotations = Some(BTreeMap::from([(
            labels::PARTITION_KEY.to_owned(),
            partition.key.clone(),
        )]));
    }
    Namespace {
        metadata,
        ..Namespace::default()
    }
}

/// The namespace's quota: GPU requests over all pools, and storage per tier's StorageClass.
///
/// A plain ResourceQuota cannot tell pools apart (Kueue's ClusterQueue does that, per pool); it
/// caps the total. A tier without a grant is capped at zero, except the datasets tier, which the
/// tenant reads without a grant of its own.
pub fn build_resource_quota(ws: &ValidatedWorkspace) -> ResourceQuota {
    // Borrowed GPUs run in the namespace too: the cap is the grant plus the borrowing limits.
    let borrowable: u64 = ws
        .spec
        .gpu_quota
        .iter()
        .map(|q| u64::from(q.borrowing_limit))
        .sum();
    let mut hard = BTreeMap::from([(
        GPU_REQUESTS.to_owned(),
        Quantity((gpus_granted(&ws.spec) + borrowable).to_string()),
    )]);
    for tier in &ws.factory.storage_tiers {
        let granted = ws
            .spec
            .storage_quota
            .iter()
            .find(|q| q.tier == tier.name)
            .map(|q| q.capacity.clone());
        let capacity = match granted {
            Some(capacity) => capacity,
            None if tier.role == StorageRole::Datasets => continue,
            None => Quantity("0".to_owned()),
        };
        hard.insert(
            storage_requests(&storage_class_name(&ws.spec.factory, &tier.name)),
            capacity,
        );
    }
    ResourceQuota {
        metadata: meta(ws, QUOTA, true),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

fn quantities(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// Defaults for containers that declare no resources, so a forgotten request neither escapes the
/// quota nor takes a whole node.
pub fn build_limit_range(ws: &ValidatedWorkspace) -> LimitRange {
    LimitRange {
        metadata: meta(ws, LIMITS, true),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default_request: Some(quantities(&[("cpu", "100m"), ("memory", "256Mi")])),
                default: Some(quantities(&[("cpu", "1"), ("memory", "1Gi")])),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

fn every_pod() -> LabelSelector {
    LabelSelector::default()
}

fn same_namespace() -> Vec<NetworkPolicyPeer> {
    vec![NetworkPolicyPeer {
        pod_selector: Some(every_pod()),
        ..NetworkPolicyPeer::default()
    }]
}

/// Default-deny for ingress and egress, then the two allowances notebooks need: traffic between
/// the namespace's own Pods, and DNS.
pub fn build_network_policies(ws: &ValidatedWorkspace) -> Vec<NetworkPolicy> {
    let policy = |name: &str, spec: NetworkPolicySpec| NetworkPolicy {
        metadata: meta(ws, name, true),
        spec: Some(spec),
    };
    let both = Some(vec!["Ingress".to_owned(), "Egress".to_owned()]);
    let dns_ports = ["UDP", "TCP"]
        .map(|protocol| NetworkPolicyPort {
            protocol: Some(protocol.to_owned()),
            port: Some(IntOrString::Int(53)),
            ..NetworkPolicyPort::default()
        })
        .to_vec();
    let dns_servers = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "k8s-app".to_owned(),
                "kube-dns".to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    vec![
        policy(
            DEFAULT_DENY,
            NetworkPolicySpec {
                pod_selector: Some(every_pod()),
                policy_types: both.clone(),
                ..NetworkPolicySpec::default()
            },
        ),
        policy(
            ALLOW_SAME_NAMESPACE,
            NetworkPolicySpec {
                pod_selector: Some(every_pod()),
                policy_types: both,
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(same_namespace()),
                    ..NetworkPolicyIngressRule::default()
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(same_namespace()),
                    ..NetworkPolicyEgressRule::default()
                }]),
            },
        ),
        policy(
            ALLOW_DNS,
            NetworkPolicySpec {
                pod_selector: Some(every_pod()),
                policy_types: Some(vec!["Egress".to_owned()]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![dns_servers]),
                    ports: Some(dns_ports),
                }]),
                ..NetworkPolicySpec::default()
            },
        ),
    ]
}

/// The members' RoleBinding to the built-in `edit` ClusterRole; none without members.
pub fn build_role_binding(ws: &ValidatedWorkspace) -> Option<RoleBinding> {
    let mut members = ws.spec.members.clone();
    members.sort();
    members.dedup();
    let subjects: Vec<Subject> = members
        .iter()
        .map(|m| Subject {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: m.kind.as_str().to_owned(),
            name: m.name.clone(),
            namespace: None,
        })
        .collect();
    (!subjects.is_empty()).then(|| RoleBinding {
        metadata: meta(ws, MEMBERS, true),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: MEMBER_ROLE.to_owned(),
        },
        subjects: Some(subjects),
    })
}

/// The operator's own RoleBinding to the built-in `edit` ClusterRole in the workspace's
/// namespace, for `operator`, the identity the API server knows it by. Its cluster-wide role
/// holds no Secret permission at all: it may make a notebook's token Secret only in a namespace
/// it made for a workspace.
pub fn build_operator_binding(ws: &ValidatedWorkspace, operator: &Subject) -> RoleBinding {
    RoleBinding {
        metadata: meta(ws, OPERATOR_BINDING, true),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: MEMBER_ROLE.to_owned(),
        },
        subjects: Some(vec![operator.clone()]),
    }
}

/// The RBAC subject of the user name the API server authenticates a request as: a service
/// account (`system:serviceaccount:<namespace>:<name>`) or a user.
pub fn subject_of(username: &str) -> Subject {
    match username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, name)) => Subject {
            api_group: None,
            kind: "ServiceAccount".to_owned(),
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
        },
        None => Subject {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "User".to_owned(),
            name: username.to_owned(),
            namespace: None,
        },
    }
}

/// The Kueue API group.
pub const KUEUE_GROUP: &str = kueue::GROUP;

/// CPU and memory are not what fabbrica grants (the ResourceQuota does not cap them either), but
/// Kueue admits a workload only when its ClusterQueue covers every resource it requests, and the
/// namespace's LimitRange gives every container a CPU and memory request. The queue covers both
/// with a quota no pool reaches, so GPUs alone decide admission.
pub const UNMETERED_CPU: &str = "1M";
/// See [`UNMETERED_CPU`]. (1 PiB per queue, so a cohort of thousands of queues stays far from
/// Kueue's 64-bit sums.)
pub const UNMETERED_MEMORY: &str = "1Pi";

/// The Factory's Kueue Topology, shared by its workspaces and owned by the Factory.
pub fn build_topology(ws: &ValidatedWorkspace, api_version: &str) -> Value {
    let factory = &ws.spec.factory;
    let labels = children::child_labels([(labels::FACTORY, factory.as_str())]);
    kueue::build_topology(
        factory,
        &ws.factory,
        api_version,
        &labels,
        Some(&ws.factory_owner),
    )
}

/// One Kueue ResourceFlavor per pool of the factory, placing admitted workloads on the pool's
/// Nodes with its tolerations, by the Factory's Topology where Kueue serves it (`topology`).
/// Owned by the Factory, since every workspace of it shares them.
pub fn build_resource_flavors(
    ws: &ValidatedWorkspace,
    api_version: &str,
    topology: bool,
) -> Vec<Value> {
    let factory = &ws.spec.factory;
    let labels = children::child_labels([(labels::FACTORY, factory.as_str())]);
    ws.factory
        .gpu_pools
        .iter()
        .map(|pool| {
            kueue::build_resource_flavor(
                factory,
                pool,
                api_version,
                topology,
                &labels,
                Some(&ws.factory_owner),
            )
        })
        .collect()
}

/// The workspace's ClusterQueue (named like the workspace), in the Factory's cohort (named like
/// the Factory): its GPU quota per pool flavor with the borrowing and lending limits, for
/// workloads from its namespace only; its fair-sharing weight; preemption that reclaims only
/// what others borrowed and never takes another tenant's work within its quota.
pub fn build_cluster_queue(ws: &ValidatedWorkspace, api_version: &str) -> Value {
    let flavors: Vec<Value> = ws
        .spec
        .gpu_quota
        .iter()
        .map(|q| {
            let mut gpus = json!({
                "name": labels::GPU_RESOURCE,
                "nominalQuota": q.gpus.to_string(),
                "borrowingLimit": q.borrowing_limit.to_string(),
            });
            if let Some(lending) = q.lending_limit {
                gpus["lendingLimit"] = json!(lending.to_string());
            }
            json!({
                "name": kueue::flavor_name(&ws.spec.factory, &q.pool),
                "resources": [
                    gpus,
                    {"name": "cpu", "nominalQuota": UNMETERED_CPU},
                    {"name": "memory", "nominalQuota": UNMETERED_MEMORY},
                ],
            })
        })
        .collect();
    let groups = if flavors.is_empty() {
        json!([])
    } else {
        json!([{"coveredResources": [labels::GPU_RESOURCE, "cpu", "memory"], "flavors": flavors}])
    };
    let policy = ws.spec.queue.clone().unwrap_or_default();
    // v1beta1 called the cohort `cohort`; v1beta2 `cohortName`.
    let cohort_field = if api_version.ends_with("/v1beta1") {
        "cohort"
    } else {
        "cohortName"
    };
    let mut spec = json!({
        "namespaceSelector": {"matchLabels": {labels::WORKSPACE: ws.name}},
        "resourceGroups": groups,
        "preemption": {
            "reclaimWithinCohort": policy.reclaim_within_cohort.as_str(),
            "borrowWithinCohort": {"policy": "Never"},
            "withinClusterQueue": policy.within_workspace.as_str(),
        },
    });
    spec[cohort_field] = json!(ws.spec.factory);
    if let Some(weight) = policy.fair_sharing_weight {
        spec["fairSharing"] = json!({"weight": weight.to_string()});
    }
    json!({
        "apiVersion": api_version,
        "kind": "ClusterQueue",
        "metadata": meta(ws, &ws.name, false),
        "spec": spec,
    })
}

/// The LocalQueue in the namespace, pointing at the workspace's ClusterQueue.
pub fn build_local_queue(ws: &ValidatedWorkspace, api_version: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "LocalQueue",
        "metadata": meta(ws, LOCAL_QUEUE, true),
        "spec": {"clusterQueue": ws.name},
    })
}

#[cfg(test)]
mod tests;
