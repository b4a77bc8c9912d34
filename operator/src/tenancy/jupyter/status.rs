//! The JupyterEnvironment's status. Pure.

use fabbrica_crds::v1alpha1::{JupyterEnvironment, JupyterEnvironmentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::build::url;
use super::validate::ValidatedEnvironment;
use crate::conditions::{reasons, types};
use crate::reconcile::conditions::{condition, merge_front, settle};

/// The notebook has a ready replica.
pub const RUNNING: &str = "Running";
/// The children are applied, the notebook is starting (or cannot be scheduled yet).
pub const PENDING: &str = "Pending";
/// The catalog or the quota refused the environment; nothing was created for it.
pub const REFUSED: &str = "Refused";

/// The status of an admitted environment whose children were applied.
pub fn build_status(
    env: &ValidatedEnvironment,
    ready_replicas: i32,
    previous: Option<&JupyterEnvironmentStatus>,
    now: &Time,
) -> JupyterEnvironmentStatus {
    let generation = env.generation;
    let profile = &env.spec.profile;
    let admitted = condition(
        types::ADMITTED,
        true,
        reasons::PROFILE_ADMITTED,
        format!(
            "{} GPUs, {} CPU, {} memory on pool {} fit the catalog and the workspace's quota",
            profile.gpus, profile.cpu.0, profile.memory.0, profile.pool
        ),
        generation,
        now,
    );
    let volumes = 1 + env.spec.mounts.len();
    let ready = condition(
        types::READY,
        true,
        reasons::CHILDREN_APPLIED,
        format!(
            "StatefulSet, Service, {volumes} volume claims, token Secret and NetworkPolicy applied"
        ),
        generation,
        now,
    );
    let running = ready_replicas > 0;
    let running_condition = if running {
        condition(
            types::RUNNING,
            true,
            reasons::REPLICA_READY,
            "the notebook server is ready",
            generation,
            now,
        )
    } else {
        let message = format!(
            "waiting for the notebook server to be scheduled on pool {} and become ready",
            profile.pool
        );
        condition(
            types::RUNNING,
            false,
            reasons::REPLICA_NOT_READY,
            message,
            generation,
            now,
        )
    };
    let conditions = vec![ready, admitted, running_condition];
    JupyterEnvironmentStatus {
        observed_generation: generation,
        conditions: settle(conditions, previous.map_or(&[], |p| &p.conditions)),
        phase: Some(if running { RUNNING } else { PENDING }.to_owned()),
        url: Some(url(&env.name, &env.namespace)),
    }
}

/// The status of an environment that was not admitted: Admitted=False and Ready=False with `reason`
/// and `message`, in `phase`; other conditions and the URL as before.
pub fn refused_status(
    reason: &str,
    message: String,
    phase: &str,
    generation: Option<i64>,
    previous: Option<&JupyterEnvironmentStatus>,
    now: &Time,
) -> JupyterEnvironmentStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.phase = Some(phase.to_owned());
    let changed = vec![
        condition(
            types::READY,
            false,
            reason,
            message.clone(),
            generation,
            now,
        ),
        condition(types::ADMITTED, false, reason, message, generation, now),
    ];
    merge_front(&mut status.conditions, changed);
    status
}

/// `status` with the condition `EvictionNotice` while a Maintenance's notice is on the
/// environment (annotation `fabbrica.io/eviction-notice`), without it otherwise.
pub fn with_eviction_notice(
    mut status: JupyterEnvironmentStatus,
    env: &JupyterEnvironment,
    now: &Time,
) -> JupyterEnvironmentStatus {
    use kube::ResourceExt;
    status
        .conditions
        .retain(|c| c.type_ != types::EVICTION_NOTICE);
    if let Some(notice) = env
        .annotations()
        .get(fabbrica_crds::labels::EVICTION_NOTICE)
    {
        let notice = condition(
            types::EVICTION_NOTICE,
            true,
            reasons::NODE_MAINTENANCE,
            notice.clone(),
            status.observed_generation,
            now,
        );
        let previous = env.status.as_ref().map_or(&[][..], |p| &p.conditions);
        status.conditions.extend(settle(vec![notice], previous));
    }
    status
}

#[cfg(test)]
mod notice_tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    #[test]
    fn a_maintenance_notice_shows_as_a_condition_while_it_is_there() {
        let now = Time(Timestamp::from_second(1_000).unwrap());
        let mut env: JupyterEnvironment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "giulia", "namespace": "ws", "annotations": {
                "fabbrica.io/eviction-notice": "Node n1 is taken out of service by Maintenance m"}},
            "spec": {"image": "pytorch", "profile": {"pool": "nb", "gpus": 1, "cpu": "1", "memory": "1Gi"},
                "home": {"tier": "project", "size": "1Gi"}},
        }))
        .unwrap();
        let status = with_eviction_notice(JupyterEnvironmentStatus::default(), &env, &now);
        let notice = &status.conditions[0];
        assert_eq!(
            (notice.type_.as_str(), notice.status.as_str()),
            ("EvictionNotice", "True")
        );
        assert!(notice.message.contains("Maintenance m"));
        env.metadata.annotations = None;
        env.status = Some(status.clone());
        assert!(
            with_eviction_notice(status, &env, &now)
                .conditions
                .is_empty()
        );
    }
}
