//! The Factory controller on a cluster without the Helm chart and without the GPU Operator: the
//! operator's own namespace does not exist (the operator creates it) and neither does the GPU
//! Operator's (the operator reports it). Everything else is done meanwhile: Nodes labelled,
//! StorageClasses and the topology ConfigMap written. Once the GPU Operator's namespace appears,
//! the Factory becomes Ready.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{Factory, condition};
use fabbrica_operator::Settings;
use fabbrica_operator::clock::SystemClock;
use fabbrica_operator::http::Readiness;
use fabbrica_operator::metrics::Metrics;
use fabbrica_tests::{client, eventually, install_crds, register_ready_node, unique_name};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;

const RUN_LABEL: &str = "test.fabbrica.io/run";
const MANAGER: &str = "fabbrica-tests";
/// The reconcile of a failed part is retried every 10 s; this leaves room for a few.
const WAIT: Duration = Duration::from_secs(60);

/// The Ready-like condition `type_` of the Factory `name`, when it has one at the current
/// generation.
async fn condition_of(
    api: &Api<Factory>,
    name: &str,
    type_: &str,
) -> anyhow::Result<Option<(String, String, String)>> {
    let factory = api.get(name).await?;
    let Some(status) = factory.status.as_ref() else {
        return Ok(None);
    };
    if status.observed_generation != factory.metadata.generation {
        return Ok(None);
    }
    Ok(condition(&status.conditions, type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone())))
}

#[tokio::test]
async fn a_missing_namespace_blocks_nothing_else_and_is_reported_until_it_exists()
-> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let run = unique_name("opns");
    // Neither namespace exists: the operator's own is created by it, the GPU Operator's is not.
    let own = unique_name("fabbrica-own");
    let gpu_operator = unique_name("gpu-operator");
    let namespaces = Api::<Namespace>::all(client.clone());
    assert!(namespaces.get_opt(&own).await?.is_none());
    assert!(namespaces.get_opt(&gpu_operator).await?.is_none());

    let nodes = Api::<Node>::all(client.clone());
    let node_names: Vec<String> = (0..2).map(|i| format!("{run}-h100-{i}")).collect();
    for name in &node_names {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {RUN_LABEL: run, "gpu": "h100"}},
        }))?;
        register_ready_node(&nodes, &node, "8").await?;
    }

    let settings = Settings {
        namespace: own.clone(),
        gpu_operator_namespace: gpu_operator.clone(),
        factory_selector: Some(format!("{RUN_LABEL}={run}")),
        debounce: Duration::from_millis(200),
        reporter: "missing-namespaces-tests".into(),
        ..Settings::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let operator = tokio::spawn(fabbrica_operator::run(
        client.clone(),
        settings,
        Metrics::new(),
        Arc::new(Readiness::default()),
        Arc::new(SystemClock),
        async move {
            let _ = stopped.await;
        },
    ));

    let factories = Api::<Factory>::all(client.clone());
    let factory = json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": run, "labels": {RUN_LABEL: run}},
        "spec": {
            "site": {"name": "test", "country": "IT", "tier": "aiFactory"},
            "gpuPools": [{"name": "h100", "nodeSelector": {RUN_LABEL: run, "gpu": "h100"},
                "system": "dgx-h100", "expectedNodes": 2}],
            "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G",
                "topology": {"source": "nodeOrder", "nodesPerScalableUnit": 32}},
            "storageTiers": [{"name": "scratch", "role": "scratch",
                "provisioner": "csi.example.com", "capacity": "1Pi"}],
        },
    });
    factories
        .patch(
            &run,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&factory),
        )
        .await?;

    // The GPU Operator's namespace is missing: reported on the Factory, with the fix.
    let (_, _, message) = eventually(
        "the Factory reports the GPU Operator's namespace as missing",
        WAIT,
        || async {
            let plugin = condition_of(&factories, &run, "DevicePluginConfig").await?;
            Ok(plugin
                .filter(|(status, reason, _)| status == "False" && reason == "NamespaceMissing"))
        },
    )
    .await?;
    assert!(
        message.contains(&format!("namespace {gpu_operator} does not exist"))
            && message.contains("install the NVIDIA GPU Operator"),
        "{message}"
    );
    let (status, reason, ready_message) = condition_of(&factories, &run, "Ready")
        .await?
        .context("the Factory has a Ready condition")?;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NamespaceMissing")
    );
    assert!(
        ready_message.contains("DevicePluginConfig"),
        "{ready_message}"
    );

    // Everything else is done meanwhile.
    eventually("the pool's Nodes are labelled", WAIT, || async {
        let labelled = nodes
            .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
            .await?
            .items
            .iter()
            .filter(|n| n.labels().get(labels::POOL).map(String::as_str) == Some("h100"))
            .count();
        Ok((labelled == node_names.len()).then_some(()))
    })
    .await?;
    let class = Api::<StorageClass>::all(client.clone())
        .get_opt(&format!("{run}-scratch"))
        .await?;
    assert!(class.is_some(), "the StorageClass is written");
    let created = namespaces
        .get_opt(&own)
        .await?
        .context("the operator created its own namespace")?;
    assert_eq!(
        created.labels().get(labels::MANAGED_BY).map(String::as_str),
        Some(labels::MANAGER)
    );
    assert!(
        created.owner_references().is_empty(),
        "the operator's namespace outlives every Factory"
    );
    let topology = Api::<ConfigMap>::namespaced(client.clone(), &own)
        .get_opt(&format!("{run}-topology"))
        .await?;
    assert!(topology.is_some(), "the topology ConfigMap is written");
    for (type_, want) in [("StorageReady", "True"), ("FabricReady", "True")] {
        let got = condition_of(&factories, &run, type_).await?;
        assert_eq!(got.map(|c| c.0).as_deref(), Some(want), "{type_}");
    }
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), &gpu_operator)
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "nothing is written in the missing namespace"
    );

    // The failure's Event is a sentence, not a debug dump.
    let note = eventually("a ReconcileFailed Event", WAIT, || async {
        let events = Api::<Event>::namespaced(client.clone(), "default")
            .list(&ListParams::default().fields(&format!("involvedObject.name={run}")))
            .await?;
        Ok(events
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ReconcileFailed"))
            .and_then(|e| e.message))
    })
    .await?;
    assert!(note.contains(&gpu_operator), "{note}");
    for dump in ["Status {", "ErrorResponse", "ApiError"] {
        assert!(!note.contains(dump), "{note}");
    }

    // Once the GPU Operator's namespace exists, the retry writes the ConfigMap there.
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": gpu_operator}}))?,
        )
        .await?;
    eventually("the Factory is Ready", WAIT, || async {
        let ready = condition_of(&factories, &run, "Ready").await?;
        Ok(ready.filter(|(status, reason, _)| status == "True" && reason == "AllReady"))
    })
    .await?;
    let plugin = Api::<ConfigMap>::namespaced(client.clone(), &gpu_operator)
        .get_opt(&format!("{run}-device-plugin"))
        .await?;
    assert!(plugin.is_some(), "the device-plugin ConfigMap is written");

    // Clean up: the Factory first (its finalizer releases the Nodes), then the rest.
    factories.delete(&run, &DeleteParams::default()).await?;
    eventually("the Factory is gone", WAIT, || async {
        Ok(factories.get_opt(&run).await?.is_none().then_some(()))
    })
    .await?;
    let _ = stop.send(());
    tokio::time::timeout(WAIT, operator)
        .await
        .context("operator did not stop")???;
    for name in &node_names {
        nodes.delete(name, &DeleteParams::default()).await?;
    }
    for namespace in [&own, &gpu_operator] {
        namespaces
            .delete(namespace, &DeleteParams::default())
            .await?;
    }
    Ok(())
}
