//! Node health and fabric drift against the real control plane: simulated GPU Nodes (kwok),
//! real validation Jobs and Pods (kwok fails a Pod labelled
//! `pod-container-running-failed.stage.kwok.x-k8s.io=true`, and completes a Job's other Pods).

use std::collections::BTreeMap;
use std::time::Duration;

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{Factory, GpuSystem, PoolStatus, QuarantineReason, condition};
use fabbrica_operator::Settings;
use fabbrica_tests::{
    InProcessOperator, client, eventually, get_until, gpu_node, install_crds, register_gpu_node,
    unique_name,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The label on this file's Factories and Nodes; each test's operator reconciles only its own.
const RUN_LABEL: &str = "test.fabbrica.io/health";
const MANAGER: &str = "fabbrica-tests";
const WAIT: Duration = Duration::from_secs(60);
/// The label that makes kwok fail a running Pod.
const FAIL_POD: &str = "pod-container-running-failed.stage.kwok.x-k8s.io";

/// This run's operator; its Jobs go in the run's own namespace.
fn start_operator(client: &Client, run: &str) -> InProcessOperator {
    InProcessOperator::start(
        client,
        Settings {
            namespace: run.to_owned(),
            gpu_operator_namespace: run.to_owned(),
            factory_selector: Some(format!("{RUN_LABEL}={run}")),
            debounce: Duration::from_millis(100),
            reporter: "health-tests".into(),
            ..Settings::default()
        },
    )
}

/// `count` DGX H100 Nodes of `run` (8 GPUs each) with `extra` labels per Node, Ready under kwok.
async fn create_nodes(
    client: &Client,
    run: &str,
    extra: &[BTreeMap<String, String>],
) -> anyhow::Result<Vec<String>> {
    let api = Api::<Node>::all(client.clone());
    let mut names = Vec::new();
    for (i, more) in extra.iter().enumerate() {
        let name = format!("{run}-{i:02}");
        let mut node_labels = BTreeMap::from([(RUN_LABEL.to_owned(), run.to_owned())]);
        node_labels.extend(more.clone());
        register_gpu_node(&api, &gpu_node(&name, GpuSystem::DgxH100, 0, node_labels)?).await?;
        names.push(name);
    }
    Ok(names)
}

/// Applies the Factory and waits until the operator has reconciled this generation of it.
async fn apply_factory(client: &Client, run: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    let body = json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": run, "labels": {RUN_LABEL: run}},
        "spec": spec,
    });
    let api = Api::<Factory>::all(client.clone());
    let applied = api
        .patch(
            run,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    let generation = applied.metadata.generation;
    eventually(
        "the operator reconciled the Factory's spec",
        WAIT,
        || async {
            let factory = api.get(run).await?;
            let seen = factory.status.and_then(|s| s.observed_generation);
            Ok((seen == generation).then_some(()))
        },
    )
    .await
}

/// A pool `train` of `nodes` Nodes whose validation Pods carry `pod_labels`.
fn validated_pool(run: &str, nodes: u32, pod_labels: serde_json::Value) -> serde_json::Value {
    json!({
        "site": {"name": "test", "country": "IT", "tier": "aiFactory"},
        "gpuPools": [{
            "name": "train", "nodeSelector": {RUN_LABEL: run}, "system": "dgx-h100",
            "expectedNodes": nodes,
            "validation": {"image": "registry.example/gpu-check:1", "command": ["gpu-check"],
                "timeoutSeconds": 120, "podLabels": pod_labels},
        }],
        "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G",
            "topology": {"source": "nodeOrder"}},
    })
}

/// Waits until the Factory's pool `train` satisfies `check`, and returns its status.
async fn pool_until(
    client: &Client,
    run: &str,
    what: &str,
    check: impl Fn(&PoolStatus) -> bool,
) -> anyhow::Result<PoolStatus> {
    let api = Api::<Factory>::all(client.clone());
    get_until(
        &api,
        run,
        &format!("pool train of {run}: {what}"),
        WAIT,
        |factory| {
            let pool = factory
                .status
                .and_then(|s| s.pools.into_iter().find(|p| p.name == "train"));
            pool.filter(|p| check(p))
        },
    )
    .await
}

/// The Node's health marks: its validation label, its quarantine label and whether it carries
/// the quarantine taint.
async fn marks(
    client: &Client,
    node: &str,
) -> anyhow::Result<(Option<String>, Option<String>, bool)> {
    let node = Api::<Node>::all(client.clone()).get(node).await?;
    let tainted = node
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .iter()
        .any(|t| t.key == labels::QUARANTINE && t.effect == "NoSchedule");
    let node_labels = node.metadata.labels.unwrap_or_default();
    Ok((
        node_labels.get(labels::VALIDATION).cloned(),
        node_labels.get(labels::QUARANTINE).cloned(),
        tainted,
    ))
}

/// The validation Jobs of `node` in the run's namespace.
async fn jobs_of(client: &Client, run: &str, node: &str) -> anyhow::Result<usize> {
    let jobs = Api::<Job>::namespaced(client.clone(), run)
        .list(&ListParams::default().labels(&format!("{}={run}", labels::FACTORY)))
        .await?;
    Ok(jobs
        .items
        .iter()
        .filter(|j| {
            j.annotations()
                .get(labels::VALIDATION_NODE)
                .map(String::as_str)
                == Some(node)
        })
        .count())
}

/// Asks for a new validation run of `node`, as an administrator (or a Maintenance) does.
async fn rerun(client: &Client, node: &str) -> anyhow::Result<()> {
    let patch = json!({"metadata": {"labels": {labels::VALIDATION: null}}});
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Deletes the Factory while the operator runs (its finalizer releases the Nodes, health marks
/// included, which is checked), stops the operator, deletes the Nodes and the run's namespace
/// (and its Jobs with it).
async fn clean_up(
    client: &Client,
    operator: InProcessOperator,
    run: &str,
    nodes: &[String],
) -> anyhow::Result<()> {
    let factories = Api::<Factory>::all(client.clone());
    let _ = factories.delete(run, &DeleteParams::default()).await;
    let gone = eventually("the Factory is gone", WAIT, || async {
        Ok(factories.get_opt(run).await?.is_none().then_some(()))
    })
    .await;
    let stopped = operator.stop().await;
    if gone.is_err() || stopped.is_err() {
        // The Nodes go whatever happened, so later tests do not find them.
        let api = Api::<Node>::all(client.clone());
        for name in nodes {
            let _ = api.delete(name, &DeleteParams::default()).await;
        }
        gone?;
        stopped?;
    }
    let mut kept = Vec::new();
    for name in nodes {
        let node = Api::<Node>::all(client.clone()).get(name).await?;
        let health = [labels::VALIDATION, labels::QUARANTINE];
        let labelled = health.iter().any(|k| node.labels().contains_key(*k));
        let tainted = node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| health.contains(&t.key.as_str()));
        if labelled || tainted {
            kept.push(name.clone());
        }
    }
    let api = Api::<Node>::all(client.clone());
    for name in nodes {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    let _ = Api::<Namespace>::all(client.clone())
        .delete(run, &DeleteParams::default())
        .await;
    anyhow::ensure!(
        kept.is_empty(),
        "the deleted Factory left health marks on Nodes {kept:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_node_failing_validation_or_losing_a_gpu_is_quarantined_and_returns_after_a_passing_run()
-> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let run = unique_name("health");
    let nodes = create_nodes(&client, &run, &[BTreeMap::new(), BTreeMap::new()]).await?;
    let operator = start_operator(&client, &run);
    let result = async {
        // New Nodes take tenants only once their validation Jobs passed.
        apply_factory(&client, &run, validated_pool(&run, 2, json!({}))).await?;
        let pool = pool_until(&client, &run, "both Nodes validated and ready", |p| {
            p.nodes_ready == 2 && p.nodes_validating == 0
        })
        .await?;
        assert_eq!(pool.nodes_quarantined, 0);
        for node in &nodes {
            assert_eq!(
                marks(&client, node).await?,
                (Some("passed".into()), None, false)
            );
        }
        let (good, bad) = (&nodes[0], &nodes[1]);

        // A run that fails (kwok fails the Pod) quarantines the Node: it leaves nodesReady.
        apply_factory(
            &client,
            &run,
            validated_pool(&run, 2, json!({FAIL_POD: "true"})),
        )
        .await?;
        rerun(&client, bad).await?;
        let pool = pool_until(&client, &run, "the failing Node quarantined", |p| {
            p.nodes_quarantined == 1
        })
        .await?;
        assert_eq!(pool.nodes_ready, 1, "{pool:?}");
        assert_eq!(pool.quarantined_nodes.len(), 1);
        assert_eq!(&pool.quarantined_nodes[0].name, bad);
        assert_eq!(
            pool.quarantined_nodes[0].reason,
            QuarantineReason::ValidationFailed
        );
        assert_eq!(
            marks(&client, bad).await?,
            (
                Some("failed".into()),
                Some("validation-failed".into()),
                true
            )
        );
        let events = Api::<Event>::namespaced(client.clone(), "default");
        eventually("a Quarantined Event on the Node", WAIT, || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .iter()
                .find(|e| {
                    e.reason.as_deref() == Some("Quarantined")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                            == Some(bad.as_str())
                })
                .map(|_| ()))
        })
        .await?;
        eventually(
            "the failed Job is deleted once its result is on the Node",
            WAIT,
            || async { Ok((jobs_of(&client, &run, bad).await? == 0).then_some(())) },
        )
        .await?;

        // A passing run brings it back.
        apply_factory(&client, &run, validated_pool(&run, 2, json!({}))).await?;
        rerun(&client, bad).await?;
        let pool = pool_until(&client, &run, "the Node back after a passing run", |p| {
            p.nodes_ready == 2 && p.nodes_quarantined == 0
        })
        .await?;
        assert!(pool.quarantined_nodes.is_empty());
        assert_eq!(
            marks(&client, bad).await?,
            (Some("passed".into()), None, false)
        );

        // A Node that reports a GPU fewer is quarantined at once, without a Job.
        let status = json!({"status": {"allocatable": {labels::GPU_RESOURCE: "7"}}});
        Api::<Node>::all(client.clone())
            .patch_status(good, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        let pool = pool_until(&client, &run, "the Node short of a GPU quarantined", |p| {
            p.nodes_quarantined == 1
        })
        .await?;
        assert_eq!(pool.nodes_ready, 1);
        assert_eq!(&pool.quarantined_nodes[0].name, good);
        assert_eq!(
            pool.quarantined_nodes[0].reason,
            QuarantineReason::GpusMissing
        );
        assert_eq!(
            marks(&client, good).await?,
            (None, Some("gpus-missing".into()), true)
        );
        assert_eq!(
            jobs_of(&client, &run, good).await?,
            0,
            "no Job for a lost GPU"
        );
        anyhow::Ok(())
    }
    .await;
    clean_up(&client, operator, &run, &nodes).await?;
    result
}

#[tokio::test]
async fn nodes_whose_discovered_leaf_contradicts_the_declaration_raise_the_drift_condition()
-> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let run = unique_name("drift");
    // As Topograph labels them: three Nodes on one leaf and spine, the fourth elsewhere.
    let discovered = |leaf: &str, spine: &str| {
        BTreeMap::from([
            (labels::TOPOLOGY_LEAF.to_owned(), leaf.to_owned()),
            (labels::TOPOLOGY_SPINE.to_owned(), spine.to_owned()),
        ])
    };
    let nodes = create_nodes(
        &client,
        &run,
        &[
            discovered("leaf-a", "spine-1"),
            discovered("leaf-a", "spine-1"),
            discovered("leaf-a", "spine-1"),
            discovered("leaf-b", "spine-2"),
        ],
    )
    .await?;
    let operator = start_operator(&client, &run);
    let result = async {
        // Declared: all four in one unit, so one leaf group.
        let spec = |source: &str| {
            json!({
                "site": {"name": "test", "country": "IT", "tier": "aiFactory"},
                "gpuPools": [{"name": "train", "nodeSelector": {RUN_LABEL: &run},
                    "system": "dgx-h100", "expectedNodes": 4}],
                "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G",
                    "topology": {"source": source,
                        "scalableUnits": [{"name": "su1", "nodes": &nodes}]}},
            })
        };
        apply_factory(&client, &run, spec("declared")).await?;
        let factories = Api::<Factory>::all(client.clone());
        let message = eventually("FabricMatchesDeclaration=False", WAIT, || async {
            let factory = factories.get(&run).await?;
            let found = factory.status.as_ref().and_then(|s| {
                condition(&s.conditions, "FabricMatchesDeclaration")
                    .filter(|c| c.status == "False")
                    .map(|c| c.message.clone())
            });
            Ok(found)
        })
        .await?;
        assert!(
            message.contains(&format!("{} (leaf and unit)", nodes[3])),
            "{message}"
        );
        assert!(message.starts_with("1 of 4 Nodes"), "{message}");
        for node in &nodes[..3] {
            assert!(!message.contains(&format!("{node} (")), "{message}");
        }
        // What was discovered is not written over.
        let moved = Api::<Node>::all(client.clone()).get(&nodes[3]).await?;
        assert_eq!(
            moved
                .labels()
                .get(labels::TOPOLOGY_LEAF)
                .map(String::as_str),
            Some("leaf-b")
        );
        assert_eq!(
            moved.labels().get(labels::LEAF_GROUP).map(String::as_str),
            Some("su1-lg0")
        );

        // Taking the discovered placement as the source: the Node's leaf group is its leaf.
        apply_factory(&client, &run, spec("discovered")).await?;
        let nodes_api = Api::<Node>::all(client.clone());
        eventually(
            "the discovered leaf becomes the leaf group",
            WAIT,
            || async {
                let node = nodes_api.get(&nodes[3]).await?;
                Ok(
                    (node.labels().get(labels::LEAF_GROUP).map(String::as_str) == Some("leaf-b"))
                        .then_some(()),
                )
            },
        )
        .await?;
        eventually(
            "FabricMatchesDeclaration=True, read from the discovery labels",
            WAIT,
            || async {
                let factory = factories.get(&run).await?;
                let matched = factory.status.as_ref().is_some_and(|s| {
                    condition(&s.conditions, "FabricMatchesDeclaration")
                        .is_some_and(|c| c.status == "True" && c.reason == "PlacementDiscovered")
                });
                Ok(matched.then_some(()))
            },
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    clean_up(&client, operator, &run, &nodes).await?;
    result
}
