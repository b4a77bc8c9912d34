//! The validation Job of one Node. Pure.

use std::collections::BTreeMap;

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{GpuPool, NodeValidation};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PodSpec, PodTemplateSpec, ResourceRequirements, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::factory::placement::pool_taints;
use crate::factory::validate::ValidatedFactory;
use crate::reconcile::children;

/// The name of a Node's validation Job: the Node's name cut to fit, and a hash of Factory, pool
/// and Node so that two long names never meet.
pub fn job_name(factory: &str, pool: &str, node: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in [factory, pool, node].join("/").bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    let stem: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("validate-{}-{hash:08x}", stem.trim_matches('-'))
}

/// The validation Job of `node` in `pool`: one Pod pinned to the Node (by name, as a DaemonSet
/// pins its Pods, so the scheduler still checks its resources), tolerating the health taints and
/// the pool's own, holding all the Node's GPUs so no tenant shares them, never retried, failed
/// after the timeout.
pub fn build_job(
    factory: &ValidatedFactory,
    pool: &GpuPool,
    validation: &NodeValidation,
    node: &str,
    gpus: u64,
    namespace: &str,
) -> Job {
    let owners = [
        (labels::FACTORY, factory.name.as_str()),
        (labels::POOL, pool.name.as_str()),
    ];
    let mut metadata = children::child_meta(
        job_name(&factory.name, &pool.name, node),
        Some(namespace),
        children::child_labels(owners),
        Some(&factory.owner),
    );
    metadata.annotations = Some(BTreeMap::from([(
        labels::VALIDATION_NODE.to_owned(),
        node.to_owned(),
    )]));
    let mut pod_labels = validation.pod_labels.clone().unwrap_or_default();
    pod_labels.extend(children::child_labels(owners));
    let mut tolerations: Vec<Toleration> = [labels::VALIDATION, labels::QUARANTINE]
        .into_iter()
        .map(|key| Toleration {
            key: Some(key.to_owned()),
            operator: Some("Exists".to_owned()),
            effect: Some("NoSchedule".to_owned()),
            ..Toleration::default()
        })
        .collect();
    tolerations.extend(pool_taints(pool).into_iter().map(|t| Toleration {
        operator: Some(if t.value.is_some() { "Equal" } else { "Exists" }.to_owned()),
        key: Some(t.key),
        value: t.value,
        effect: Some(t.effect),
        toleration_seconds: None,
    }));
    let resources = (gpus > 0).then(|| {
        let all = BTreeMap::from([(labels::GPU_RESOURCE.to_owned(), Quantity(gpus.to_string()))]);
        ResourceRequirements {
            limits: Some(all.clone()),
            requests: Some(all),
            ..ResourceRequirements::default()
        }
    });
    let pin = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".to_owned(),
            operator: "In".to_owned(),
            values: Some(vec![node.to_owned()]),
        }]),
        ..NodeSelectorTerm::default()
    };
    let container = Container {
        name: "validate".to_owned(),
        image: Some(validation.image.clone()),
        command: Some(validation.command.clone()),
        resources,
        // DCGM's diagnostics read profiling counters, which need CAP_SYS_ADMIN.
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["SYS_ADMIN".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(i64::from(validation.timeout_seconds)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    affinity: Some(Affinity {
                        node_affinity: Some(NodeAffinity {
                            required_during_scheduling_ignored_during_execution: Some(
                                NodeSelector {
                                    node_selector_terms: vec![pin],
                                },
                            ),
                            ..NodeAffinity::default()
                        }),
                        ..Affinity::default()
                    }),
                    tolerations: Some(tolerations),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factory::validate::validate;

    #[test]
    fn the_job_is_pinned_to_its_node_tolerates_the_health_taints_and_takes_every_gpu() {
        let mut factory: fabbrica_crds::v1alpha1::Factory =
            serde_saphyr::from_str(include_str!("../../tests/fixtures/factory.yaml")).unwrap();
        factory.spec.gpu_pools[0].validation = Some(NodeValidation::default());
        let validated = validate(&factory).unwrap();
        let pool = &validated.spec.gpu_pools[0];
        let job = build_job(
            &validated,
            pool,
            pool.validation.as_ref().unwrap(),
            "dgx-a-001.example.org",
            8,
            "fabbrica-system",
        );
        let name = job.metadata.name.clone().unwrap();
        assert!(
            name.starts_with("validate-dgx-a-001-example-org-"),
            "{name}"
        );
        assert!(name.len() <= 63);
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(1800));
        let pod = spec.template.spec.unwrap();
        let value = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            value["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchFields"][0]["values"][0],
            "dgx-a-001.example.org"
        );
        let tolerated: Vec<&str> = pod
            .tolerations
            .iter()
            .flatten()
            .filter_map(|t| t.key.as_deref())
            .collect();
        assert!(tolerated.contains(&labels::VALIDATION) && tolerated.contains(&labels::QUARANTINE));
        assert_eq!(
            value["containers"][0]["resources"]["limits"][labels::GPU_RESOURCE],
            "8"
        );
        assert_eq!(
            value["containers"][0]["command"][2],
            "nv-hostengine && dcgmi diag -r 2"
        );
        assert_ne!(
            job_name("f", "p", "a"),
            job_name("f", "q", "a"),
            "another pool's Job of the same Node is another Job"
        );
    }
}
