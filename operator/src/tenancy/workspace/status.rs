//! The Workspace's status, computed from what was applied and observed. Pure.

use fabbrica_crds::capacity::gpus_granted;
use fabbrica_crds::kueue::flavor_name;
use fabbrica_crds::labels::GPU_RESOURCE;
use fabbrica_crds::names::GPU_REQUESTS;
use fabbrica_crds::quantity;
use fabbrica_crds::v1alpha1::{PoolQueueUsage, QueueStatus, QuotaUsage, WorkspaceStatus};
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::DynamicObject;
use serde_json::Value;

use super::validate::ValidatedWorkspace;
use crate::conditions::{reasons, types};
use crate::reconcile::conditions::{condition, merge_front, ready, settle};

/// What the apply step observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The namespace's ResourceQuota as stored (its status holds what is used).
    pub quota: Option<ResourceQuota>,
    /// Whether Kueue's CRDs are served (and so its queues were applied).
    pub kueue: bool,
    /// The workspace's ClusterQueue as stored: its status is what Kueue reports.
    pub cluster_queue: Option<DynamicObject>,
    /// Subjects bound to the `edit` role.
    pub members: usize,
    /// NetworkPolicies applied.
    pub policies: usize,
}

/// Quota used and granted per resource, from a ResourceQuota: granted is its `spec.hard`, used its
/// `status.used` (0 until the quota controller has counted).
pub fn quota_usage(quota: &ResourceQuota) -> Vec<QuotaUsage> {
    let hard = quota.spec.as_ref().and_then(|s| s.hard.as_ref());
    let used = quota.status.as_ref().and_then(|s| s.used.as_ref());
    hard.into_iter()
        .flatten()
        .map(|(resource, granted)| QuotaUsage {
            resource: resource.clone(),
            used: used
                .and_then(|u| u.get(resource))
                .map_or_else(|| "0".to_owned(), |q| q.0.clone()),
            granted: granted.0.clone(),
        })
        .collect()
}

/// GPUs requested in the namespace, as the ResourceQuota reports them.
pub fn gpus_used(quota: &ResourceQuota) -> u64 {
    quota
        .status
        .as_ref()
        .and_then(|s| s.used.as_ref())
        .and_then(|u| u.get(GPU_REQUESTS))
        .and_then(quantity::value)
        .map_or(0, |v| v.max(0.0).round() as u64)
}

/// Workloads and GPUs in use per pool, from the ClusterQueue's status (Kueue's report): admitted
/// and pending workloads, and per pool flavor the GPUs admitted workloads use
/// (`flavorsUsage[].resources[].total`) and of those the borrowed ones.
pub fn queue_status(ws: &ValidatedWorkspace, cluster_queue: &DynamicObject) -> QueueStatus {
    let status = &cluster_queue.data["status"];
    let count = |field: &str| status[field].as_u64().unwrap_or(0);
    let gpus = |usage: &Value, field: &str| {
        usage["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == GPU_RESOURCE)
            .and_then(|r| match &r[field] {
                Value::String(q) => quantity::value(&Quantity(q.clone())),
                Value::Number(n) => n.as_f64(),
                _ => None,
            })
            .map_or(0, |v| v.max(0.0).round() as u64)
    };
    let usage = status["flavorsUsage"].as_array();
    let pools = ws
        .spec
        .gpu_quota
        .iter()
        .map(|q| {
            let flavor = flavor_name(&ws.spec.factory, &q.pool);
            let used = usage
                .into_iter()
                .flatten()
                .find(|u| u["name"] == flavor.as_str());
            PoolQueueUsage {
                pool: q.pool.clone(),
                gpus_in_use: used.map_or(0, |u| gpus(u, "total")),
                gpus_borrowed: used.map_or(0, |u| gpus(u, "borrowed")),
            }
        })
        .collect();
    QueueStatus {
        admitted_workloads: count("admittedWorkloads"),
        pending_workloads: count("pendingWorkloads"),
        pools,
    }
}

/// Kueue's `Active` condition of a ClusterQueue, when it reports one that is not True: the
/// reason and message.
fn inactive(cluster_queue: &DynamicObject) -> Option<(String, String)> {
    cluster_queue.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Active" && c["status"] != "True")
        .map(|c| {
            (
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// The status of a workspace whose children were applied.
pub fn build_status(
    ws: &ValidatedWorkspace,
    observed: &Observed,
    previous: Option<&WorkspaceStatus>,
    now: &Time,
) -> WorkspaceStatus {
    let generation = ws.generation;
    let namespace = condition(
        types::NAMESPACE_READY,
        true,
        reasons::NAMESPACE_APPLIED,
        format!(
            "namespace {} with Pod Security restricted",
            ws.spec.namespace
        ),
        generation,
        now,
    );
    let quota_usage = observed.quota.as_ref().map(quota_usage).unwrap_or_default();
    let granted = gpus_granted(&ws.spec);
    let used = observed.quota.as_ref().map_or(0, gpus_used);
    let quota = condition(
        types::QUOTA_READY,
        observed.quota.is_some(),
        if observed.quota.is_some() {
            reasons::QUOTA_APPLIED
        } else {
            reasons::NOT_APPLIED
        },
        format!(
            "{granted} GPUs and {} storage classes under quota, container defaults set",
            ws.factory.storage_tiers.len()
        ),
        generation,
        now,
    );
    let access = condition(
        types::ACCESS_READY,
        true,
        reasons::ACCESS_APPLIED,
        format!(
            "{} NetworkPolicies (default deny); {} members with role edit",
            observed.policies, observed.members
        ),
        generation,
        now,
    );
    let inactive = observed.cluster_queue.as_ref().and_then(inactive);
    let queue = if let Some((reason, message)) = inactive {
        condition(
            types::QUEUE_READY,
            false,
            reasons::QUEUE_INACTIVE,
            format!(
                "Kueue reports ClusterQueue {} inactive ({reason}): {message}",
                ws.name
            ),
            generation,
            now,
        )
    } else if observed.kueue {
        let message = format!(
            "ClusterQueue {} with {} pool flavors, LocalQueue {}",
            ws.name,
            ws.spec.gpu_quota.len(),
            super::build::LOCAL_QUEUE
        );
        condition(
            types::QUEUE_READY,
            true,
            reasons::QUEUES_APPLIED,
            message,
            generation,
            now,
        )
    } else {
        let message = "Kueue's CRDs (kueue.x-k8s.io) are not served; the ResourceQuota caps GPUs over all pools";
        condition(
            types::QUEUE_READY,
            false,
            reasons::KUEUE_ABSENT,
            message,
            generation,
            now,
        )
    };
    let ready = ready(
        &[&namespace, &quota, &access],
        format!("{used} of {granted} GPUs in use"),
        generation,
        now,
    );
    let conditions = vec![ready, namespace, quota, access, queue];
    WorkspaceStatus {
        observed_generation: generation,
        conditions: settle(conditions, previous.map_or(&[], |p| &p.conditions)),
        gpus_used: used,
        gpus_granted: granted,
        quota: quota_usage,
        queue: observed
            .cluster_queue
            .as_ref()
            .map(|cq| queue_status(ws, cq)),
        // The allocation controller's, applied under its own field manager.
        allocation: None,
    }
}

/// The status of a workspace that was not built: everything as before, Ready=False with `reason`,
/// and the condition of type `also` (when given) with the same reason.
pub fn refused_status(
    reason: &str,
    message: String,
    also: Option<&str>,
    generation: Option<i64>,
    previous: Option<&WorkspaceStatus>,
    now: &Time,
) -> WorkspaceStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let mut changed: Vec<Condition> = vec![condition(
        types::READY,
        false,
        reason,
        message.clone(),
        generation,
        now,
    )];
    if let Some(type_) = also {
        changed.push(condition(type_, false, reason, message, generation, now));
    }
    merge_front(&mut status.conditions, changed);
    status
}
