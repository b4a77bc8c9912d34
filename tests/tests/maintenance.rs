//! Maintenance against the real control plane: simulated GPU Nodes (kwok), real Pods, a real
//! PodDisruptionBudget, the Eviction API, an operator killed mid-wave.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{
    Factory, GPU_DRIVER_UPGRADE_STATE, GpuSystem, JupyterEnvironment, Maintenance, MaintenanceNode,
};
use fabbrica_operator::Settings;
use fabbrica_tests::{
    InProcessOperator, client, eventually, get_until, gpu_node, install_crds, register_gpu_node,
    unique_name,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

/// The label on this file's Factories and Nodes; each test's operator reconciles only its own.
const RUN_LABEL: &str = "test.fabbrica.io/maintenance";
const MANAGER: &str = "fabbrica-tests";
const WAIT: Duration = Duration::from_secs(90);

/// This file's operator, in this process until stopped.
fn start_operator(client: &Client, run: &str) -> InProcessOperator {
    InProcessOperator::start(
        client,
        Settings {
            namespace: "default".into(),
            gpu_operator_namespace: "default".into(),
            factory_selector: Some(format!("{RUN_LABEL}={run}")),
            debounce: Duration::from_millis(100),
            reporter: "maintenance-tests".into(),
            maintenance_poll: Duration::from_millis(300),
            ..Settings::default()
        },
    )
}

/// `count` DGX H100 Nodes of `run`, Ready under kwok.
async fn create_nodes(client: &Client, run: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let api = Api::<Node>::all(client.clone());
    let names: Vec<String> = (0..count).map(|i| format!("{run}-{i:02}")).collect();
    futures::stream::iter(names.clone())
        .map(|name| {
            let api = api.clone();
            let run = run.to_owned();
            async move {
                let node = gpu_node(
                    &name,
                    GpuSystem::DgxH100,
                    0,
                    BTreeMap::from([(RUN_LABEL.to_owned(), run)]),
                )?;
                register_gpu_node(&api, &node).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(names)
}

/// A Factory whose one pool `train` holds the run's Nodes, two leaf groups of 32 per 64 Nodes.
fn factory(run: &str, nodes: u32, max_unavailable: u32) -> serde_json::Value {
    json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": run, "labels": {RUN_LABEL: run}},
        "spec": {
            "site": {"name": "test", "country": "IT", "tier": "aiFactory"},
            "gpuPools": [{
                "name": "train", "nodeSelector": {RUN_LABEL: run}, "system": "dgx-h100",
                "expectedNodes": nodes, "maintenance": {"maxUnavailable": max_unavailable},
            }],
            "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G",
                "topology": {"source": "nodeOrder", "nodesPerScalableUnit": 64}},
        },
    })
}

/// Applies the Factory and waits until its controller has placed every Node in a leaf group.
async fn factory_placed(
    client: &Client,
    run: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    Api::<Factory>::all(client.clone())
        .patch(
            run,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    let expected = body["spec"]["gpuPools"][0]["expectedNodes"]
        .as_u64()
        .unwrap_or(0) as usize;
    let nodes = Api::<Node>::all(client.clone());
    eventually("every Node is in a leaf group", WAIT, || async {
        let list = nodes
            .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
            .await?;
        let placed = list
            .items
            .iter()
            .filter(|n| n.labels().contains_key(labels::LEAF_GROUP))
            .count();
        Ok((placed == expected).then_some(()))
    })
    .await
}

async fn create_maintenance(
    client: &Client,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<()> {
    let body = json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Maintenance",
        "metadata": {"name": name},
        "spec": spec,
    });
    Api::<Maintenance>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    Ok(())
}

/// Waits until the Maintenance's status satisfies `check`, and returns it.
async fn wait_for(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&Maintenance) -> bool,
) -> anyhow::Result<Maintenance> {
    let api = Api::<Maintenance>::all(client.clone());
    get_until(
        &api,
        name,
        &format!("Maintenance {name} {what}"),
        WAIT,
        |m| check(&m).then_some(m),
    )
    .await
}

fn phase(m: &Maintenance) -> Option<&str> {
    m.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn node_states(m: &Maintenance) -> Vec<MaintenanceNode> {
    m.status
        .as_ref()
        .map(|s| s.nodes.clone())
        .unwrap_or_default()
}

/// Watches the run's Nodes from now on and keeps the most of them ever out of service at once
/// (cordoned or NotReady), until stopped.
fn watch_out_of_service(
    client: &Client,
    run: &str,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicBool>,
    JoinHandle<anyhow::Result<()>>,
) {
    let most = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let api = Api::<Node>::all(client.clone());
    let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={run}"));
    let (m, s) = (most.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let mut out: HashMap<String, bool> = HashMap::new();
        let mut events = std::pin::pin!(watcher(api, config));
        while !s.load(Ordering::Relaxed) {
            let Ok(next) =
                tokio::time::timeout(Duration::from_millis(200), events.try_next()).await
            else {
                continue;
            };
            let Some(event) = next? else {
                break;
            };
            let nodes = match event {
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => vec![n],
                _ => Vec::new(),
            };
            for node in nodes {
                let cordoned = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false);
                let ready = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                out.insert(node.name_any(), cordoned || !ready);
            }
            let now = out.values().filter(|o| **o).count();
            m.fetch_max(now, Ordering::Relaxed);
        }
        Ok(())
    });
    (most, stop, task)
}

/// Plays the GPU Operator's upgrade agent: a Node asked for an upgrade reports it done a moment
/// later.
fn upgrade_agent(client: &Client, run: &str) -> JoinHandle<()> {
    let api = Api::<Node>::all(client.clone());
    let selector = format!("{RUN_LABEL}={run},{GPU_DRIVER_UPGRADE_STATE}=upgrade-required");
    tokio::spawn(async move {
        loop {
            if let Ok(list) = api.list(&ListParams::default().labels(&selector)).await {
                for node in list.items {
                    let patch =
                        json!({"metadata": {"labels": {GPU_DRIVER_UPGRADE_STATE: "upgrade-done"}}});
                    let _ = api
                        .patch(
                            &node.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// A bare Pod pinned to `node`, labelled `app=<app>`.
fn pod(name: &str, node: &str, app: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "work", "image": "registry.example/work:1"}],
            "tolerations": [{"operator": "Exists"}],
        },
    }))?)
}

async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}}))?,
        )
        .await?;
    Ok(())
}

/// Deletes the Maintenance and the Factory while the operator runs (both have finalizers), then
/// stops it and deletes the Nodes and the namespace.
async fn clean_up(
    client: &Client,
    operator: InProcessOperator,
    run: &str,
    maintenance: &str,
    nodes: &[String],
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    let maintenances = Api::<Maintenance>::all(client.clone());
    let factories = Api::<Factory>::all(client.clone());
    let _ = maintenances
        .delete(maintenance, &DeleteParams::default())
        .await;
    let _ = factories.delete(run, &DeleteParams::default()).await;
    eventually("the Maintenance and the Factory are gone", WAIT, || async {
        let gone = maintenances.get_opt(maintenance).await?.is_none()
            && factories.get_opt(run).await?.is_none();
        Ok(gone.then_some(()))
    })
    .await?;
    operator.stop().await?;
    let api = Api::<Node>::all(client.clone());
    for name in nodes {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    if let Some(namespace) = namespace {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(namespace, &DeleteParams::default())
            .await;
    }
    Ok(())
}

#[tokio::test]
async fn a_driver_upgrade_goes_by_leaf_group_within_the_budget_and_resumes_after_a_kill()
-> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let run = unique_name("mnt-waves");
    let nodes = create_nodes(&client, &run, 64).await?;
    let mut operator = start_operator(&client, &run);
    factory_placed(&client, &run, &factory(&run, 64, 8)).await?;
    // Workloads on the pool, moved by the evictions.
    let namespace = unique_name("mnt-work");
    create_namespace(&client, &namespace).await?;
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    for (i, node) in nodes.iter().enumerate().step_by(4) {
        pods.create(
            &PostParams::default(),
            &pod(&format!("work-{i}"), node, "work")?,
        )
        .await?;
    }

    let (most, stop_watch, watch) = watch_out_of_service(&client, &run);
    let agent = upgrade_agent(&client, &run);
    let name = format!("{run}-driver");
    create_maintenance(
        &client,
        &name,
        json!({
            "factory": run, "pools": ["train"],
            "action": {"type": "agentSignal", "signal": {"request": "upgrade-required"}},
            "waves": {"failureDomain": "leafGroup"},
            "nodeTimeoutSeconds": 60,
        }),
    )
    .await?;

    // Killed mid-wave, with Nodes under work, and started again.
    wait_for(&client, &name, "is mid-wave", |m| {
        m.status
            .as_ref()
            .is_some_and(|s| s.nodes_done >= 4 && s.current_wave == Some(0))
    })
    .await?;
    operator.kill().await;
    operator = start_operator(&client, &run);

    let done = wait_for(&client, &name, "succeeds", |m| {
        phase(m) == Some("Succeeded")
    })
    .await?;
    stop_watch.store(true, Ordering::Relaxed);
    watch.await??;
    agent.abort();

    let status = done.status.clone().unwrap_or_default();
    // Two waves, each one whole leaf group, the second after the first.
    let domains: Vec<Vec<String>> = status.waves.iter().map(|w| w.domains.clone()).collect();
    assert_eq!(domains.len(), 2, "{domains:?}");
    assert!(domains.iter().all(|d| d.len() == 1), "{domains:?}");
    let states = node_states(&done);
    assert_eq!(states.len(), 64);
    assert!(states.iter().all(|n| n.phase == "Done"), "{states:?}");
    let last_of_first = states
        .iter()
        .filter(|n| n.wave == 0)
        .filter_map(|n| n.since.as_ref().map(|t| t.0))
        .max()
        .context("wave 0 has finish times")?;
    assert!(
        states
            .iter()
            .filter(|n| n.wave == 1)
            .all(|n| n.started_at.as_ref().is_some_and(|t| t.0 >= last_of_first)),
        "a Node of wave 1 started before wave 0 finished"
    );
    let most = most.load(Ordering::Relaxed);
    assert!(
        most <= 8,
        "{most} Nodes of the pool were out of service at once; the budget is 8"
    );
    assert!(
        most >= 2,
        "the watch saw the maintenance work ({most} out at most)"
    );
    // Every Node is back, upgraded, and no longer carries the maintenance's label.
    let list = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
        .await?;
    for node in &list.items {
        assert_ne!(
            node.spec.as_ref().and_then(|s| s.unschedulable),
            Some(true),
            "{}",
            node.name_any()
        );
        assert!(!node.labels().contains_key(labels::MAINTENANCE));
        assert_eq!(
            node.labels()
                .get(GPU_DRIVER_UPGRADE_STATE)
                .map(String::as_str),
            Some("upgrade-done")
        );
    }
    // The workloads were evicted, not deleted behind their budgets' back: none is left on the
    // Nodes they were pinned to.
    let left = pods.list(&ListParams::default()).await?.items;
    assert!(left.is_empty(), "{} Pods were not evicted", left.len());

    clean_up(&client, operator, &run, &name, &nodes, Some(&namespace)).await
}

#[tokio::test]
async fn a_pdb_holds_the_wave_and_tenants_are_told_before_eviction() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let run = unique_name("mnt-pdb");
    let nodes = create_nodes(&client, &run, 4).await?;
    let operator = start_operator(&client, &run);
    factory_placed(&client, &run, &factory(&run, 4, 1)).await?;
    let namespace = unique_name("mnt-tenant");
    create_namespace(&client, &namespace).await?;
    // The first Node runs a notebook's Pod whose budget allows no disruption at all.
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    let mut trainer = pod("trainer", &nodes[0], "trainer")?;
    trainer
        .metadata
        .labels
        .get_or_insert_default()
        .insert(labels::ENVIRONMENT.to_owned(), "notebook".to_owned());
    pods.create(&PostParams::default(), &trainer).await?;
    let environments = Api::<JupyterEnvironment>::namespaced(client.clone(), &namespace);
    environments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "fabbrica.io/v1alpha1", "kind": "JupyterEnvironment",
                "metadata": {"name": "notebook"},
                "spec": {"image": "pytorch", "profile": {"pool": "train", "gpus": 1, "cpu": "1", "memory": "1Gi"},
                    "home": {"tier": "project", "size": "1Gi"}},
            }))?,
        )
        .await?;
    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace);
    pdbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "trainer"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "trainer"}}},
        }))?,
    )
    .await?;

    let name = format!("{run}-hw");
    create_maintenance(
        &client,
        &name,
        json!({"factory": run, "action": {"type": "drain"}, "waves": {"failureDomain": "node"},
            "noticeSeconds": 1}),
    )
    .await?;

    // The wave is held at the first Node, and the status says by what.
    let held = wait_for(&client, &name, "is held by the PodDisruptionBudget", |m| {
        node_states(m).iter().any(|n| {
            n.phase == "Draining"
                && n.message
                    .as_deref()
                    .is_some_and(|m| m.contains("disruption budget"))
        })
    })
    .await?;
    let status = held.status.clone().unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains(&nodes[0]) && m.contains("trainer")),
        "{:?}",
        status.message
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = Api::<Maintenance>::all(client.clone()).get(&name).await?;
    let started: Vec<String> = node_states(&held)
        .into_iter()
        .filter(|n| n.phase != "Pending")
        .map(|n| n.name)
        .collect();
    assert_eq!(
        started,
        [nodes[0].clone()],
        "budget 1: no other Node is taken while one is held"
    );
    assert!(
        pods.get_opt("trainer").await?.is_some(),
        "the Pod is not evicted against its budget"
    );
    // The tenant was told, in its namespace, before the eviction was tried.
    let events = Api::<Event>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await?
        .items;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("MaintenanceNotice")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("trainer")
                && e.note.as_deref().is_some_and(|n| n.contains(&name))),
        "no notice Event about Pod trainer: {events:?}"
    );

    // The notebook whose Pod is held is told why, by the Maintenance, until its Node is released.
    let notebook = environments.get("notebook").await?;
    let notice = notebook
        .annotations()
        .get(labels::EVICTION_NOTICE)
        .cloned()
        .unwrap_or_default();
    assert!(
        notice.contains(&nodes[0]) && notice.contains(&name),
        "{notice:?}"
    );

    // Budget lifted: the Pod is evicted, the Node drained, and it waits for the hardware work.
    pdbs.delete("trainer", &DeleteParams::default()).await?;
    wait_for(&client, &name, "has the first Node drained", |m| {
        node_states(m)
            .iter()
            .any(|n| n.name == nodes[0] && n.phase == "Working")
    })
    .await?;
    // The technician says the work is done: the Node is released and the next one taken.
    let patch = json!({"metadata": {"labels": {labels::MAINTENANCE_DONE: name}}});
    Api::<Node>::all(client.clone())
        .patch(&nodes[0], &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_for(&client, &name, "moves to the next Node", |m| {
        let states = node_states(m);
        states
            .iter()
            .any(|n| n.name == nodes[0] && n.phase == "Done")
            && states
                .iter()
                .any(|n| n.name == nodes[1] && n.phase != "Pending")
    })
    .await?;
    let first = Api::<Node>::all(client.clone()).get(&nodes[0]).await?;
    assert_ne!(
        first.spec.as_ref().and_then(|s| s.unschedulable),
        Some(true)
    );
    assert!(!first.labels().contains_key(labels::MAINTENANCE_DONE));
    let notebook = environments.get("notebook").await?;
    assert!(
        !notebook.annotations().contains_key(labels::EVICTION_NOTICE),
        "the notice is gone with the released Node"
    );

    // Cancelled: the Node under work is released, the rest skipped.
    let patch = json!({"spec": {"cancel": true}});
    Api::<Maintenance>::all(client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let cancelled = wait_for(&client, &name, "is cancelled", |m| {
        phase(m) == Some("Cancelled")
    })
    .await?;
    let skipped = node_states(&cancelled)
        .iter()
        .filter(|n| n.phase == "Skipped")
        .count();
    assert_eq!(skipped, 2);
    eventually("every Node is schedulable again", WAIT, || async {
        let list = Api::<Node>::all(client.clone())
            .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
            .await?;
        let cordoned = list
            .items
            .iter()
            .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true))
            .count();
        Ok((cordoned == 0).then_some(()))
    })
    .await?;
    // Cancel cannot be undone.
    let undo = json!({"spec": {"cancel": false}});
    let refused = Api::<Maintenance>::all(client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&undo))
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("cancel")),
        "{refused:?}"
    );

    clean_up(&client, operator, &run, &name, &nodes, Some(&namespace)).await
}

#[tokio::test]
async fn an_invalid_maintenance_is_refused_with_field_paths_and_touches_nothing()
-> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let run = unique_name("mnt-bad");
    let nodes = create_nodes(&client, &run, 2).await?;
    let operator = start_operator(&client, &run);
    factory_placed(&client, &run, &factory(&run, 2, 1)).await?;
    // The API server refuses what the schema says.
    let bad = Api::<Maintenance>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "fabbrica.io/v1alpha1", "kind": "Maintenance",
                "metadata": {"name": format!("{run}-schema")},
                "spec": {"factory": run, "action": {"type": "drain", "signal": {}},
                    "waves": {"failureDomain": "label"}},
            }))?,
        )
        .await;
    let message = match bad {
        Err(kube::Error::Api(status)) => status.message,
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    };
    assert!(
        message.contains("spec.action.signal") && message.contains("spec.waves.domainLabel"),
        "{message}"
    );
    // The operator refuses what needs the Factory: a pool it does not have.
    let name = format!("{run}-pool");
    create_maintenance(
        &client,
        &name,
        json!({"factory": run, "pools": ["nope"], "action": {"type": "drain"}}),
    )
    .await?;
    let refused = wait_for(&client, &name, "is refused", |m| {
        phase(m) == Some("Invalid")
    })
    .await?;
    let ready = refused
        .status
        .as_ref()
        .and_then(|s| fabbrica_crds::v1alpha1::condition(&s.conditions, "Ready").cloned())
        .context("Ready is set")?;
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains("spec.pools[0]") && ready.message.contains("valid: train"),
        "{}",
        ready.message
    );
    let list = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
        .await?;
    assert!(
        list.items
            .iter()
            .all(|n| n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true))
    );
    clean_up(&client, operator, &run, &name, &nodes, None).await
}
