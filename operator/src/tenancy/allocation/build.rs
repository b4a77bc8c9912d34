//! What the allocation controller writes besides the ledger, built without IO: the closed
//! ResourceQuota, the ClusterQueue's `stopPolicy`, and the admission policy that puts the
//! accounting finalizer on every new GPU Pod of a workspace.

use std::collections::BTreeMap;

use fabbrica_crds::labels;
use fabbrica_crds::names::GPU_REQUESTS;
use fabbrica_crds::v1alpha1::RunningJobs;
use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use super::meter::POD_FINALIZER;
use super::{CLOSED_QUOTA, LEDGER_LABEL, POLICY};
use crate::reconcile::children;

/// The ResourceQuota that closes a namespace to GPU requests while its allocation is closed.
pub fn build_closed_quota(
    workspace: &str,
    namespace: &str,
    owner: Option<&OwnerReference>,
) -> ResourceQuota {
    ResourceQuota {
        metadata: children::child_meta(
            CLOSED_QUOTA,
            Some(namespace),
            children::child_labels([(LEDGER_LABEL, workspace)]),
            owner,
        ),
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([(
                GPU_REQUESTS.to_owned(),
                Quantity("0".to_owned()),
            )])),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// Kueue's `stopPolicy` for the workspace's ClusterQueue.
pub fn stop_policy(closed: bool, running_jobs: RunningJobs) -> &'static str {
    match (closed, running_jobs) {
        (false, _) => "None",
        (true, RunningJobs::Finish) => "Hold",
        (true, RunningJobs::Stop) => "HoldAndDrain",
    }
}

/// The MutatingAdmissionPolicy that adds [`POD_FINALIZER`] to every Pod asking for GPUs that is
/// created in a workspace's namespace, so that no GPU Pod can come and go unaccounted, even while
/// the operator is down; and its binding to the namespaces labelled `fabbrica.io/workspace`.
pub fn build_policy(api_version: &str) -> (Value, Value) {
    let gpu = labels::GPU_RESOURCE;
    let asks = format!(
        "has(c.resources) && ((has(c.resources.requests) && '{gpu}' in c.resources.requests) || (has(c.resources.limits) && '{gpu}' in c.resources.limits))"
    );
    let managed = children::child_labels([]);
    let policy = json!({
        "apiVersion": api_version,
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": POLICY, "labels": managed},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["pods"],
            }]},
            "matchConditions": [{
                "name": "asks-for-gpus",
                "expression": format!(
                    "object.spec.containers.exists(c, {asks}) || (has(object.spec.initContainers) && object.spec.initContainers.exists(c, {asks}))"
                ),
            }, {
                "name": "not-yet-marked",
                "expression": format!(
                    "!has(object.metadata.finalizers) || !('{POD_FINALIZER}' in object.metadata.finalizers)"
                ),
            }],
            "mutations": [{
                "patchType": "JSONPatch",
                "jsonPatch": {"expression": format!(
                    "has(object.metadata.finalizers) ? [JSONPatch{{op: \"add\", path: \"/metadata/finalizers/-\", value: \"{POD_FINALIZER}\"}}] : [JSONPatch{{op: \"add\", path: \"/metadata/finalizers\", value: [\"{POD_FINALIZER}\"]}}]"
                )},
            }],
        },
    });
    let binding = json!({
        "apiVersion": api_version,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY, "labels": managed},
        "spec": {
            "policyName": POLICY,
            "matchResources": {"namespaceSelector": {"matchExpressions": [
                {"key": labels::WORKSPACE, "operator": "Exists"},
            ]}},
        },
    });
    (policy, binding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closed_quota_refuses_every_gpu_and_is_not_the_workspaces_own() {
        let quota = build_closed_quota("aurora", "ws-aurora", None);
        let hard = quota.spec.unwrap().hard.unwrap();
        assert_eq!(hard[GPU_REQUESTS], Quantity("0".into()));
        let labels = quota.metadata.labels.unwrap();
        // The Workspace controller deletes quotas labelled with its workspace that it did not build.
        assert!(!labels.contains_key(fabbrica_crds::labels::WORKSPACE));
        assert_eq!(labels[LEDGER_LABEL], "aurora");
    }

    #[test]
    fn running_jobs_finish_under_hold_and_stop_under_hold_and_drain() {
        assert_eq!(stop_policy(false, RunningJobs::Stop), "None");
        assert_eq!(stop_policy(true, RunningJobs::Finish), "Hold");
        assert_eq!(stop_policy(true, RunningJobs::Stop), "HoldAndDrain");
    }

    #[test]
    fn the_policy_marks_gpu_pods_in_workspace_namespaces_only() {
        let (policy, binding) = build_policy("admissionregistration.k8s.io/v1");
        let conditions = policy["spec"]["matchConditions"].to_string();
        assert!(conditions.contains("nvidia.com/gpu"), "{conditions}");
        assert!(
            policy["spec"]["mutations"][0]["jsonPatch"]["expression"]
                .as_str()
                .unwrap()
                .contains(POD_FINALIZER)
        );
        assert_eq!(
            binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["key"],
            labels::WORKSPACE
        );
    }
}
