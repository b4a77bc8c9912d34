//! Condition types, reasons and Event reasons of Workspaces and JupyterEnvironments, in one place,
//! and the two pure helpers that make conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod types {
    pub use crate::conditions::types::READY;
    /// The workspace's namespace exists and belongs to it.
    pub const NAMESPACE_READY: &str = "NamespaceReady";
    /// The ResourceQuota and LimitRange are applied.
    pub const QUOTA_READY: &str = "QuotaReady";
    /// NetworkPolicies and the members' RoleBinding are applied.
    pub const ACCESS_READY: &str = "AccessReady";
    /// Kueue's ResourceFlavors, ClusterQueue and LocalQueue are applied; informational, not part of Ready.
    pub const QUEUE_READY: &str = "QueueReady";
    /// The environment fits the catalog and the workspace's quota.
    pub const ADMITTED: &str = "Admitted";
    /// The notebook server has a ready replica.
    pub const RUNNING: &str = "Running";
}

/// Condition reasons (CamelCase, as Kubernetes expects).
pub mod reasons {
    pub use crate::conditions::reasons::{ALL_READY, INVALID_SPEC, NOT_READY, RECONCILE_FAILED};
    /// The Factory the Workspace names does not exist.
    pub const FACTORY_MISSING: &str = "FactoryMissing";
    /// The namespace exists and belongs to something else; it is left alone.
    pub const NAMESPACE_TAKEN: &str = "NamespaceTaken";
    /// The namespace is applied.
    pub const NAMESPACE_APPLIED: &str = "NamespaceApplied";
    /// The ResourceQuota and LimitRange are applied.
    pub const QUOTA_APPLIED: &str = "QuotaApplied";
    /// NetworkPolicies and RoleBinding are applied.
    pub const ACCESS_APPLIED: &str = "AccessApplied";
    /// Kueue objects are applied.
    pub const QUEUES_APPLIED: &str = "QueuesApplied";
    /// Kueue's CRDs are not served.
    pub const KUEUE_ABSENT: &str = "KueueAbsent";
    /// Nothing was built because an earlier step stopped.
    pub const NOT_APPLIED: &str = "NotApplied";
    /// The workspace is being deleted.
    pub const DELETING: &str = "Deleting";
    /// The environment fits the catalog and the quota.
    pub const PROFILE_ADMITTED: &str = "ProfileAdmitted";
    /// The environment's profile, image or mounts break the catalog or the quota.
    pub const PROFILE_REFUSED: &str = "ProfileRefused";
    /// No Workspace has the environment's namespace.
    pub const WORKSPACE_MISSING: &str = "WorkspaceMissing";
    /// The environment's workspace is not usable (invalid, deleting or without its Factory).
    pub const WORKSPACE_NOT_READY: &str = "WorkspaceNotReady";
    /// The StatefulSet, Service, volumes, Secret and NetworkPolicy are applied.
    pub const CHILDREN_APPLIED: &str = "ChildrenApplied";
    /// The notebook server has a ready replica.
    pub const REPLICA_READY: &str = "ReplicaReady";
    /// The notebook server has no ready replica yet.
    pub const REPLICA_NOT_READY: &str = "ReplicaNotReady";
}

/// Event reasons.
pub mod events {
    pub use crate::conditions::events::{INVALID_SPEC, RECONCILE_FAILED};
    /// A JupyterEnvironment was refused; nothing was created.
    pub const PROFILE_REFUSED: &str = "ProfileRefused";
    /// A workspace's environments were deleted before its namespace.
    pub const ENVIRONMENTS_DELETED: &str = "EnvironmentsDeleted";
    /// The namespace belongs to something else.
    pub const NAMESPACE_TAKEN: &str = "NamespaceTaken";
}

/// A condition with the given outcome.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Keeps each condition's transition time when its status did not change, so that a reconcile
/// with nothing new computes exactly the stored status and writes nothing.
pub fn settle(mut conditions: Vec<Condition>, previous: &[Condition]) -> Vec<Condition> {
    for c in &mut conditions {
        if let Some(old) = previous.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    conditions
}

/// Whether the condition of this type is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    #[test]
    fn settled_conditions_keep_their_transition_time_until_the_status_flips() {
        let then = Time(Timestamp::from_second(1_000).unwrap());
        let now = Time(Timestamp::from_second(2_000).unwrap());
        let previous = vec![condition(
            types::READY,
            true,
            reasons::ALL_READY,
            "ok",
            Some(1),
            &then,
        )];
        let same = settle(
            vec![condition(
                types::READY,
                true,
                reasons::ALL_READY,
                "ok",
                Some(2),
                &now,
            )],
            &previous,
        );
        assert_eq!(same[0].last_transition_time, then);
        let flipped = settle(
            vec![condition(
                types::READY,
                false,
                reasons::NOT_READY,
                "no",
                Some(2),
                &now,
            )],
            &previous,
        );
        assert_eq!(flipped[0].last_transition_time, now);
        assert!(is_true(&previous, types::READY));
        assert!(!is_true(&flipped, types::READY));
    }
}
