//! The rules of a Maintenance: on its own, and against the Factory it names.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Problem, Problems, duplicates, listing};
use crate::v1alpha1::{ActionType, FactorySpec, FailureDomain, GpuPool, MaintenanceSpec};

/// Longest Maintenance name: it is written as a Node label value.
pub const MAX_NAME: usize = 63;
/// Longest notice before evictions, in seconds (a day).
pub const MAX_NOTICE_SECONDS: u32 = 86_400;

/// Validates a Maintenance named `name`, against its Factory's spec when it exists (pools it
/// names must be the Factory's).
pub fn validate_maintenance(
    name: &str,
    spec: &MaintenanceSpec,
    factory: Option<&FactorySpec>,
) -> Result<(), Problems> {
    let mut p = Vec::new();
    if name.len() > MAX_NAME {
        p.push(Problem::new(
            "metadata.name",
            format!(
                "{} characters; a Maintenance's name is written as a Node label value: valid: at most {MAX_NAME}",
                name.len()
            ),
        ));
    }
    if spec.factory.is_empty() {
        p.push(Problem::new(
            "spec.factory",
            "empty; name the Factory whose Nodes are maintained",
        ));
    }
    duplicates(
        spec.pools.iter().map(String::as_str),
        |i| format!("spec.pools[{i}]"),
        "pool",
        &mut p,
    );
    if let Some(factory) = factory {
        let pools: Vec<&str> = factory.gpu_pools.iter().map(|x| x.name.as_str()).collect();
        for (i, pool) in spec.pools.iter().enumerate() {
            if !pools.contains(&pool.as_str()) {
                p.push(Problem::new(
                    format!("spec.pools[{i}]"),
                    format!(
                        "no pool {pool:?} in Factory {:?}; {}",
                        spec.factory,
                        listing(pools.iter().copied())
                    ),
                ));
            }
        }
    }
    for key in spec.node_selector.keys().filter(|k| k.is_empty()) {
        p.push(Problem::new(
            "spec.nodeSelector",
            format!("label key {key:?} is empty; valid: a label key such as example.com/rack"),
        ));
    }
    let action = &spec.action;
    if let Some(signal) = &action.signal {
        if action.type_ != ActionType::AgentSignal {
            p.push(Problem::new(
                "spec.action.signal",
                "signal is only read with type agentSignal",
            ));
        }
        if signal.label.is_empty() {
            p.push(Problem::new(
                "spec.action.signal.label",
                "empty; name the Node label the agent reports on",
            ));
        }
        if signal.done == signal.failed {
            p.push(Problem::new(
                "spec.action.signal.failed",
                format!(
                    "{:?} is also the done value; valid: a value other than done",
                    signal.failed
                ),
            ));
        }
        if let Some(request) = &signal.request
            && (request == &signal.done || request == &signal.failed)
        {
            p.push(Problem::new(
                "spec.action.signal.request",
                format!(
                    "{request:?} is also an outcome; the request would read as the agent's answer: valid: a value other than done and failed"
                ),
            ));
        }
    }
    let waves = &spec.waves;
    if waves.failure_domain == FailureDomain::Label
        && waves.domain_label.as_deref().unwrap_or("").is_empty()
    {
        p.push(Problem::new(
            "spec.waves.domainLabel",
            "failureDomain is label but no label is named; set domainLabel (a rack label, for instance)",
        ));
    }
    if spec.node_timeout_seconds == 0 {
        p.push(Problem::new(
            "spec.nodeTimeoutSeconds",
            "0; valid: 1 to 604800 seconds",
        ));
    }
    if spec.failure_threshold == 0 {
        p.push(Problem::new(
            "spec.failureThreshold",
            "0 would pause before any Node; valid: 1 or more",
        ));
    }
    if spec.notice_seconds > MAX_NOTICE_SECONDS {
        p.push(Problem::new(
            "spec.noticeSeconds",
            format!(
                "{} seconds; valid: 0 to {MAX_NOTICE_SECONDS}",
                spec.notice_seconds
            ),
        ));
    }
    Problems(p).into_result()
}

/// The most Nodes of `pool` out of service at once: its `maintenance.maxUnavailable`, a count or
/// a percentage of its expected Nodes rounded up (as for PodDisruptionBudgets and DaemonSets, so
/// `"10%"` of 4 Nodes is 1); 1 when the pool declares none. `0` or `"0%"` forbids maintenance.
pub fn max_unavailable(pool: &GpuPool) -> u32 {
    match pool.maintenance.as_ref().map(|m| &m.max_unavailable) {
        None => 1,
        Some(IntOrString::Int(n)) => u32::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(text)) => text
            .strip_suffix('%')
            .and_then(|n| n.parse::<u32>().ok())
            .map(|percent| (pool.expected_nodes * percent.min(100)).div_ceil(100))
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACTORY: &str = r#"
site: {name: test, country: IT, tier: aiFactory}
gpuPools:
  - {name: train, nodeSelector: {role: train}, system: dgx-h100, expectedNodes: 64, maintenance: {maxUnavailable: 8}}
  - {name: nb, nodeSelector: {role: nb}, system: dgx-h100, expectedNodes: 4, maintenance: {maxUnavailable: "10%"}}
  - {name: plain, nodeSelector: {role: plain}, system: dgx-h100, expectedNodes: 4}
fabric: {type: infiniband, railsPerNode: 8, linkSpeed: 400G, topology: {source: nodeOrder}}
"#;

    fn factory() -> FactorySpec {
        serde_saphyr::from_str(FACTORY).unwrap()
    }

    fn spec(yaml: &str) -> MaintenanceSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn paths(result: Result<(), Problems>) -> Vec<String> {
        result
            .expect_err("expected problems")
            .0
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    #[test]
    fn a_driver_upgrade_of_one_pool_is_valid_with_the_gpu_operator_defaults() {
        let spec = spec("{factory: f, pools: [train], action: {type: agentSignal}}");
        assert_eq!(
            validate_maintenance("upgrade", &spec, Some(&factory())),
            Ok(())
        );
        assert_eq!(spec.waves.failure_domain, FailureDomain::LeafGroup);
        assert_eq!(spec.node_timeout_seconds, 3600);
        assert_eq!(spec.failure_threshold, 1);
    }

    #[test]
    fn pools_outside_the_factory_are_named_with_the_valid_ones() {
        let spec = spec("{factory: f, pools: [train, gpu, train], action: {type: drain}}");
        let problems = validate_maintenance("m", &spec, Some(&factory()))
            .unwrap_err()
            .0;
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["spec.pools[2]", "spec.pools[1]"]);
        assert!(
            problems[1].message.contains("valid: train, nb, plain"),
            "{problems:?}"
        );
    }

    #[test]
    fn every_problem_of_a_spec_comes_at_once_with_its_path() {
        let spec = spec(
            r#"{factory: "", action: {type: drain, signal: {done: x, failed: x, request: x}},
               waves: {failureDomain: label}, nodeTimeoutSeconds: 0, failureThreshold: 0,
               noticeSeconds: 90000}"#,
        );
        let name = "m".repeat(64);
        assert_eq!(
            paths(validate_maintenance(&name, &spec, None)),
            [
                "metadata.name",
                "spec.factory",
                "spec.action.signal",
                "spec.action.signal.failed",
                "spec.action.signal.request",
                "spec.waves.domainLabel",
                "spec.nodeTimeoutSeconds",
                "spec.failureThreshold",
                "spec.noticeSeconds",
            ]
        );
    }

    #[test]
    fn the_budget_is_a_count_or_a_percentage_rounded_up_and_one_by_default() {
        let factory = factory();
        let budgets: Vec<u32> = factory.gpu_pools.iter().map(max_unavailable).collect();
        assert_eq!(budgets, [8, 1, 1]);
        let mut pool = factory.gpu_pools[0].clone();
        pool.maintenance.as_mut().unwrap().max_unavailable = IntOrString::String("25%".into());
        assert_eq!(max_unavailable(&pool), 16);
        pool.maintenance.as_mut().unwrap().max_unavailable = IntOrString::String("0%".into());
        assert_eq!(max_unavailable(&pool), 0);
    }
}
