//! The Factory controller against the real control plane: 64 Nodes of two GPU systems, a Factory
//! with a MIG pool, a time-sliced pool, fabric mapping and three storage tiers; then an operator
//! restart, an invalid edit, a valid edit and the deletion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{Factory, condition};
use fabbrica_operator::Settings;
use fabbrica_operator::clock::SystemClock;
use fabbrica_operator::http::Readiness;
use fabbrica_operator::metrics::Metrics;
use fabbrica_operator::nodes::TAINTS_ANNOTATION;
use fabbrica_tests::{client, eventually, install_crds, register_ready_node, unique_name};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;

const RUN_LABEL: &str = "test.fabbrica.io/run";
const MANAGER: &str = "fabbrica-tests";
const WAIT: Duration = Duration::from_secs(60);

/// An operator running in this process, with its own metrics.
struct Operator {
    metrics: Arc<Metrics>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<fabbrica_operator::Result<()>>,
}

impl Operator {
    fn start(client: &Client, run: &str, namespace: &str) -> Self {
        let settings = Settings {
            namespace: namespace.to_owned(),
            gpu_operator_namespace: namespace.to_owned(),
            factory_selector: Some(format!("{RUN_LABEL}={run}")),
            debounce: Duration::from_millis(200),
            ..Settings::default()
        };
        let metrics = Metrics::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(fabbrica_operator::run(
            client.clone(),
            settings,
            metrics.clone(),
            Arc::new(Readiness::default()),
            Arc::new(SystemClock),
            shutdown,
        ));
        Self {
            metrics,
            stop,
            task,
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .context("operator did not stop")???;
        Ok(())
    }
}

fn node_name(run: &str, system: &str, i: usize) -> String {
    format!("{run}-{system}-{i:02}")
}

/// 32 DGX H100 (MIG 1g.10gb: 7 instances per GPU) and 32 DGX B200 (time-sliced 4 ways), all Ready.
async fn create_nodes(client: &Client, run: &str) -> anyhow::Result<Vec<String>> {
    let api = Api::<Node>::all(client.clone());
    let specs: Vec<(String, &str, u32)> = (0..32)
        .flat_map(|i| {
            [
                (node_name(run, "h100", i), "h100", 56),
                (node_name(run, "b200", i), "b200", 32),
            ]
        })
        .collect();
    let names = specs.iter().map(|(n, _, _)| n.clone()).collect();
    futures::stream::iter(specs)
        .map(|(name, gpu, allocatable)| {
            let api = api.clone();
            async move {
                let mut node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {RUN_LABEL: run, "gpu": gpu}},
                }))?;
                if name.ends_with("-00") {
                    // A taint someone else owns, which fabbrica must keep.
                    node.spec = Some(serde_json::from_value(
                        json!({"taints": [{"key": "example.com/maintenance", "value": "soon", "effect": "PreferNoSchedule"}]}),
                    )?);
                }
                register_ready_node(&api, &node, &allocatable.to_string()).await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    Ok(names)
}

fn factory_spec(run: &str, pools: &[&str], tiers: &[(&str, &str)]) -> serde_json::Value {
    let pool = |name: &str| match name {
        "h100" => json!({
            "name": "h100", "nodeSelector": {RUN_LABEL: run, "gpu": "h100"}, "system": "dgx-h100",
            "expectedNodes": 32, "sharing": {"mig": {"profile": "1g.10gb"}},
            "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        }),
        _ => json!({
            "name": "b200", "nodeSelector": {RUN_LABEL: run, "gpu": "b200"}, "system": "dgx-b200",
            "expectedNodes": 32, "sharing": {"timeSlicing": {"replicas": 4}},
            "taints": [{"key": "fabbrica.io/shared-gpu", "effect": "NoSchedule"}],
        }),
    };
    let tiers: Vec<_> = tiers
        .iter()
        .map(|(name, role)| {
            json!({"name": name, "role": role, "provisioner": "csi.example.com", "capacity": "1Pi",
            "parameters": {"tier": name}})
        })
        .collect();
    json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": run, "labels": {RUN_LABEL: run}},
        "spec": {
            "site": {"name": "test", "country": "IT", "tier": "aiFactory"},
            "gpuPools": pools.iter().map(|p| pool(p)).collect::<Vec<_>>(),
            "fabric": {"type": "infiniband", "railsPerNode": 4, "linkSpeed": "400G",
                "topology": {"source": "nodeOrder", "nodesPerScalableUnit": 32}},
            "storageTiers": tiers,
        },
    })
}

async fn apply_factory(
    api: &Api<Factory>,
    run: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    api.patch(
        run,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// Waits until Ready has the given status and reason at the Factory's current generation.
async fn wait_ready(
    api: &Api<Factory>,
    run: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<Factory> {
    eventually(
        &format!("Factory {run} has Ready={status} ({reason})"),
        WAIT,
        || async {
            let factory = api.get(run).await?;
            let ok = factory.status.as_ref().is_some_and(|s| {
                s.observed_generation == factory.metadata.generation
                    && condition(&s.conditions, "Ready")
                        .is_some_and(|c| c.status == status && c.reason == reason)
            });
            Ok(ok.then_some(factory))
        },
    )
    .await
}

fn fabbrica_labels(node: &Node) -> BTreeMap<String, String> {
    node.labels()
        .iter()
        .filter(|(k, _)| k.starts_with("fabbrica.io/") || k.starts_with("nvidia.com/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Taint keys, without the ones Kubernetes itself manages (`node.kubernetes.io/not-ready` on new Nodes).
fn taint_keys(node: &Node) -> Vec<String> {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten();
    taints
        .filter(|t| !t.key.starts_with("node.kubernetes.io/"))
        .map(|t| t.key.clone())
        .collect()
}

async fn run_nodes(client: &Client, run: &str) -> anyhow::Result<Vec<Node>> {
    let api = Api::<Node>::all(client.clone());
    Ok(api
        .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
        .await?
        .items)
}

async fn children(
    client: &Client,
    run: &str,
    namespace: &str,
) -> anyhow::Result<(Vec<StorageClass>, Vec<ConfigMap>)> {
    let selector = format!("{}={run}", labels::FACTORY);
    let classes = Api::<StorageClass>::all(client.clone())
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let maps = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    Ok((classes, maps))
}

#[tokio::test]
async fn factory_converges_edits_refuses_invalid_specs_and_cleans_up() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let run = unique_name("opf");
    let namespace = unique_name("fabbrica-op");
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await?;
    let names = create_nodes(&client, &run).await?;
    let factories = Api::<Factory>::all(client.clone());
    let operator = Operator::start(&client, &run, &namespace);

    // Everything as declared.
    let tiers = [
        ("scratch", "scratch"),
        ("project", "project"),
        ("datasets", "datasets"),
    ];
    apply_factory(
        &factories,
        &run,
        &factory_spec(&run, &["h100", "b200"], &tiers),
    )
    .await?;
    let factory = wait_ready(&factories, &run, "True", "AllReady").await?;
    let status = factory.status.unwrap();
    assert_eq!(
        (status.pool_count, status.gpus_ready, status.gpus_expected),
        (2, 512, 512)
    );
    let pools: BTreeMap<_, _> = status.pools.iter().map(|p| (p.name.as_str(), p)).collect();
    assert_eq!(
        (
            pools["h100"].nodes_matched,
            pools["h100"].nodes_ready,
            pools["h100"].gpus_allocatable
        ),
        (32, 32, 32 * 56)
    );
    assert_eq!(
        (
            pools["b200"].nodes_matched,
            pools["b200"].nodes_ready,
            pools["b200"].gpus_allocatable
        ),
        (32, 32, 32 * 32)
    );
    for type_ in ["PoolsReady", "FabricReady", "StorageReady"] {
        assert_eq!(
            condition(&status.conditions, type_).map(|c| c.status.as_str()),
            Some("True"),
            "{type_}"
        );
    }
    assert_eq!(
        condition(&status.conditions, "NetworkAttachments").map(|c| c.reason.as_str()),
        Some("MultusAbsent")
    );

    let nodes = run_nodes(&client, &run).await?;
    assert_eq!(nodes.len(), 64);
    for node in &nodes {
        let name = node.name_any();
        let labels = fabbrica_labels(node);
        let (pool, mig, taint) = if name.contains("-h100-") {
            ("h100", "all-1g.10gb", "nvidia.com/gpu")
        } else {
            ("b200", "all-disabled", "fabbrica.io/shared-gpu")
        };
        let index: usize = name.rsplit('-').next().unwrap().parse()?;
        // nodeOrder: all 64 sorted by name, 32 to a unit; b200 sorts before h100.
        let su = if pool == "b200" { "su001" } else { "su002" };
        let expected: BTreeMap<String, String> = [
            (labels::FACTORY, run.as_str()),
            (labels::POOL, pool),
            (labels::DEVICE_PLUGIN_CONFIG, pool),
            (labels::MIG_CONFIG, mig),
            (labels::RAILS, "4"),
            (labels::SCALABLE_UNIT, su),
            (labels::LEAF_GROUP, &format!("{su}-lg0")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(labels, expected, "labels of {name}");
        let mut want = vec![taint.to_owned()];
        if index == 0 {
            want.insert(0, "example.com/maintenance".to_owned());
        }
        assert_eq!(taint_keys(node), want, "taints of {name}");
    }
    let (classes, maps) = children(&client, &run, &namespace).await?;
    let mut class_names: Vec<String> = classes.iter().map(|c| c.name_any()).collect();
    class_names.sort();
    assert_eq!(
        class_names,
        [
            format!("{run}-datasets"),
            format!("{run}-project"),
            format!("{run}-scratch")
        ]
    );
    for class in &classes {
        assert_eq!(class.provisioner, "csi.example.com");
        assert!(class.labels().contains_key(labels::TIER));
    }
    let maps: BTreeMap<String, ConfigMap> = maps.into_iter().map(|m| (m.name_any(), m)).collect();
    let plugin = maps[&format!("{run}-device-plugin")]
        .data
        .clone()
        .unwrap_or_default();
    assert!(
        plugin["h100"].contains("migStrategy: single") && plugin["b200"].contains("replicas: 4"),
        "{plugin:?}"
    );
    let topology = maps[&format!("{run}-topology")]
        .data
        .clone()
        .unwrap_or_default();
    // The leaf group's Nodes as a Slurm hostlist, from the first B200 on.
    assert!(
        topology["topology.conf"].contains(&format!("SwitchName=su001-lg0 Nodes={run}-b200-[00-")),
        "{}",
        topology["topology.conf"]
    );
    let json: serde_json::Value = serde_json::from_str(&topology["topology.json"])?;
    assert_eq!(json["scalableUnits"].as_array().map(Vec::len), Some(2));

    // A restart with nothing changed writes nothing.
    operator.stop().await?;
    let operator = Operator::start(&client, &run, &namespace);
    eventually("the restarted operator reconciled", WAIT, || async {
        Ok((operator.metrics.reconciles_total("factory") >= 1).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        operator.metrics.writes_total(),
        0,
        "writes after a restart:\n{}",
        operator.metrics.encode()
    );

    // An invalid edit changes nothing and says why.
    let mut invalid = factory_spec(&run, &["h100", "b200"], &tiers);
    invalid["spec"]["gpuPools"][0]["sharing"]["mig"]["profile"] = json!("7g.999gb");
    invalid["spec"]["storageTiers"] = json!([]);
    apply_factory(&factories, &run, &invalid).await?;
    let factory = wait_ready(&factories, &run, "False", "InvalidSpec").await?;
    let message = condition(&factory.status.as_ref().unwrap().conditions, "Ready")
        .unwrap()
        .message
        .clone();
    assert!(
        message.contains("spec.gpuPools[0].sharing.mig.profile"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (classes, maps) = children(&client, &run, &namespace).await?;
    assert_eq!(
        (classes.len(), maps.len()),
        (3, 2),
        "children after an invalid edit"
    );
    for node in run_nodes(&client, &run).await? {
        assert!(
            node.labels().contains_key(labels::POOL),
            "{} lost its pool label",
            node.name_any()
        );
    }
    let events = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default().fields(&format!("involvedObject.name={run}")))
        .await?;
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("InvalidSpec")),
        "no InvalidSpec Event"
    );

    // A valid edit: drop a pool, rename a tier.
    let tiers = [
        ("scratch", "scratch"),
        ("home", "project"),
        ("datasets", "datasets"),
    ];
    apply_factory(&factories, &run, &factory_spec(&run, &["h100"], &tiers)).await?;
    let factory = wait_ready(&factories, &run, "True", "AllReady").await?;
    assert_eq!(
        factory
            .status
            .as_ref()
            .map(|s| (s.pool_count, s.gpus_expected)),
        Some((1, 256))
    );
    eventually("the dropped pool's Nodes are released", WAIT, || async {
        let nodes = run_nodes(&client, &run).await?;
        let released = nodes
            .iter()
            .filter(|n| n.name_any().contains("-b200-"))
            .all(|n| {
                fabbrica_labels(n).is_empty()
                    && !taint_keys(n).contains(&"fabbrica.io/shared-gpu".to_owned())
                    && !n.annotations().contains_key(TAINTS_ANNOTATION)
            });
        Ok(released.then_some(()))
    })
    .await?;
    let b0 = Api::<Node>::all(client.clone())
        .get(&node_name(&run, "b200", 0))
        .await?;
    assert_eq!(
        taint_keys(&b0),
        ["example.com/maintenance"],
        "someone else's taint survives"
    );
    let (classes, maps) = children(&client, &run, &namespace).await?;
    let mut class_names: Vec<String> = classes.iter().map(|c| c.name_any()).collect();
    class_names.sort();
    assert_eq!(
        class_names,
        [
            format!("{run}-datasets"),
            format!("{run}-home"),
            format!("{run}-scratch")
        ]
    );
    let plugin = maps
        .iter()
        .find(|m| m.name_any().ends_with("-device-plugin"))
        .and_then(|m| m.data.clone())
        .unwrap_or_default();
    assert_eq!(plugin.keys().collect::<Vec<_>>(), ["h100"]);

    // Deleting the Factory leaves no label, taint or child behind.
    factories.delete(&run, &DeleteParams::default()).await?;
    eventually("the Factory is gone", WAIT, || async {
        Ok(factories.get_opt(&run).await?.is_none().then_some(()))
    })
    .await?;
    for node in run_nodes(&client, &run).await? {
        assert!(
            fabbrica_labels(&node).is_empty(),
            "{} keeps {:?}",
            node.name_any(),
            fabbrica_labels(&node)
        );
        assert!(!node.annotations().contains_key(TAINTS_ANNOTATION));
        let taints = taint_keys(&node);
        assert!(
            !taints
                .iter()
                .any(|t| t == "nvidia.com/gpu" || t == "fabbrica.io/shared-gpu"),
            "{taints:?}"
        );
    }
    eventually("the children are garbage-collected", WAIT, || async {
        let (classes, maps) = children(&client, &run, &namespace).await?;
        Ok((classes.is_empty() && maps.is_empty()).then_some(()))
    })
    .await?;

    operator.stop().await?;
    let nodes = Api::<Node>::all(client.clone());
    for name in names {
        nodes.delete(&name, &DeleteParams::default()).await?;
    }
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await?;
    Ok(())
}
