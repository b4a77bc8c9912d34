//! The path a new site takes: blueprint -> GitOps tree -> cluster -> Ready, with the
//! operator running as a separate process under the identity of the chart's
//! ServiceAccount, so every call it makes is checked against the chart's RBAC.
//! The API server's audit log then shows the RBAC is minimal, not just enough.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::Factory;
use fabbrica_tests::{
    client, fabbrica, install_crds, kubeconfig_path, kubectl, register_ready_node, repo_root, run,
    scratch_dir, tool,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const OPERATOR_USER: &str = "system:serviceaccount:fabbrica-system:fabbrica-operator";
const OVERLAY: &str = "staging";
/// Verbs RBAC checks without a request of their own: creating a RoleBinding to the
/// built-in `edit` ClusterRole needs `bind` on it, which no audited request shows.
const UNAUDITED: [(&str, &str, &str); 1] = [("bind", "rbac.authorization.k8s.io", "clusterroles")];
/// Granted for paths this run does not take: deleting a child that a spec change no longer
/// declares (the controllers' generic orphan cleanup; the run drops a storage tier, which
/// exercises it for StorageClasses), kube's event recorder patching an Event that repeats;
/// a Maintenance's finalizer, status, Pod lists and evictions (this run declares no Maintenance;
/// tests/tests/maintenance.rs does); deleting the GPU Pods a deleting workspace still has (its
/// notebooks' Pods are gone first), and writing the accounting admission policy, which the other
/// tests' operators on this control plane may have applied already; validation Jobs (this run
/// declares no validation; tests/tests/health.rs does); reading one Node, which the operator
/// does only for a Node whose write met a conflict or whose facts its watch has not brought yet.
const NOT_EXERCISED: [(&str, &str, &str); 27] = [
    ("get", "", "nodes"),
    ("create", "batch", "jobs"),
    ("delete", "batch", "jobs"),
    ("delete", "", "pods"),
    (
        "create",
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicies",
    ),
    (
        "patch",
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicies",
    ),
    (
        "create",
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
    ),
    (
        "patch",
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
    ),
    (
        "delete",
        "k8s.cni.cncf.io",
        "network-attachment-definitions",
    ),
    ("delete", "kueue.x-k8s.io", "clusterqueues"),
    ("delete", "kueue.x-k8s.io", "localqueues"),
    ("delete", "kueue.x-k8s.io", "resourceflavors"),
    ("delete", "", "configmaps"),
    ("delete", "", "limitranges"),
    ("delete", "", "persistentvolumeclaims"),
    ("delete", "", "resourcequotas"),
    ("delete", "", "services"),
    ("delete", "apps", "statefulsets"),
    ("delete", "networking.k8s.io", "networkpolicies"),
    ("delete", "rbac.authorization.k8s.io", "rolebindings"),
    ("patch", "events.k8s.io", "events"),
    ("patch", "fabbrica.io", "maintenances"),
    ("patch", "fabbrica.io", "maintenances/status"),
    ("list", "", "pods"),
    ("create", "", "pods/eviction"),
    ("list", "policy", "poddisruptionbudgets"),
    ("patch", "fabbrica.io", "jupyterenvironments"),
];

/// Whether the API server refused a request (403 Forbidden).
fn refused<T>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref status)) if status.code == 403)
}

/// (verb, API group, resource[/subresource]) a rule grants or a request used.
type Permission = (String, String, String);

fn granted(rbac_yaml: &str) -> anyhow::Result<BTreeSet<Permission>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(rbac_yaml)?;
    let mut out = BTreeSet::new();
    for doc in docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
    {
        for rule in doc["rules"].as_array().into_iter().flatten() {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        assert!(
                            verb != "*" && resource != "*" && group != "*",
                            "wildcard in the chart's RBAC: {rule}"
                        );
                        out.insert((verb, group.clone(), resource.clone()));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// What the operator's identity asked for, and what it was refused, from the audit log.
fn used(audit_log: &Path) -> anyhow::Result<(BTreeSet<Permission>, Vec<String>)> {
    let mut used = BTreeSet::new();
    let mut forbidden = Vec::new();
    for line in std::fs::read_to_string(audit_log)?.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if event["user"]["username"] != OPERATOR_USER {
            continue;
        }
        let Some(resource) = event["objectRef"]["resource"].as_str() else {
            continue;
        };
        let resource = match event["objectRef"]["subresource"].as_str() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        };
        let group = event["objectRef"]["apiGroup"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let verb = event["verb"].as_str().unwrap_or_default().to_owned();
        if event["responseStatus"]["code"] == 403 {
            forbidden.push(format!(
                "{verb} {group}/{resource}: {}",
                event["responseStatus"]["message"]
            ));
        }
        // A server-side apply that creates its object is authorized as `create` too.
        if verb == "patch" && event["responseStatus"]["code"] == 201 {
            used.insert(("create".to_owned(), group.clone(), resource.clone()));
        }
        used.insert((verb, group, resource));
    }
    Ok((used, forbidden))
}

/// Multus's and Kueue's CRDs, served for the length of the test: the other tests share the
/// control plane and expect neither.
struct IntegrationCrds(std::path::PathBuf);

impl IntegrationCrds {
    fn install() -> anyhow::Result<Self> {
        let file = repo_root().join("tests/fixtures/integration-crds.yaml");
        let path = file.to_str().expect("a UTF-8 path");
        kubectl(&["apply", "--server-side", "-f", path])?;
        kubectl(&["wait", "--for=condition=Established", "-f", path])?;
        Ok(Self(file))
    }
}

impl Drop for IntegrationCrds {
    fn drop(&mut self) {
        let path = self.0.to_str().unwrap_or_default();
        let _ = kubectl(&["delete", "--ignore-not-found", "--wait=true", "-f", path]);
    }
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_operator(state: &Path, log: &Path) -> anyhow::Result<Operator> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "fabbrica-operator",
            "--bin",
            "fabbrica-operator",
        ])
        .current_dir(repo_root())
        .status()?;
    anyhow::ensure!(status.success(), "building fabbrica-operator failed");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(repo_root().join("target/debug/fabbrica-operator"))
        .args([
            "--kubeconfig",
            state.join("operator.kubeconfig").to_str().unwrap(),
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args([
            "--factory-selector",
            &format!("fabbrica.io/environment={OVERLAY}"),
        ])
        .env("FABBRICA_GPU_OPERATOR_NAMESPACE", "fabbrica-system")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    Ok(Operator(child))
}

fn node_api(client: &kube::Client) -> Api<Node> {
    Api::all(client.clone())
}

/// Ready Nodes with GPUs, labelled to match the pool's selector.
async fn create_nodes(
    client: &kube::Client,
    factory: &Factory,
    run: &str,
) -> anyhow::Result<Vec<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut names = Vec::new();
    for pool in &factory.spec.gpu_pools {
        let gpus = fabbrica_crds::validation::gpus_per_node(pool).to_string();
        for i in 0..pool.expected_nodes {
            names.push((
                format!("{run}-{}-{i:03}", pool.name),
                pool.node_selector.clone(),
                gpus.clone(),
            ));
        }
    }
    let created: Vec<String> = names.iter().map(|(n, _, _)| n.clone()).collect();
    futures::stream::iter(names)
        .map(|(name, selector, gpus)| {
            let nodes = nodes.clone();
            async move {
                let mut labels = selector;
                labels.insert("fabbrica-tests/run".into(), run.to_owned());
                let node: Node =
                    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?;
                register_ready_node(&nodes, &node, &gpus).await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    Ok(created)
}

#[tokio::test]
async fn a_rendered_site_becomes_ready_under_the_charts_least_privilege_rbac() -> anyhow::Result<()>
{
    let client = client().await?;
    let state = kubeconfig_path()
        .parent()
        .expect("the kubeconfig is in the state folder")
        .to_path_buf();
    let scratch = scratch_dir("e2e")?;

    // 1. Render the site and build the overlay.
    let site = scratch.join("site");
    assert_eq!(
        fabbrica(&[
            "blueprint",
            "render",
            "--example",
            "ai-factory",
            "--out",
            site.to_str().unwrap()
        ])?,
        ExitCode::SUCCESS
    );
    // The site's sync (Factory, Workspaces), then the notebooks' beneath it.
    let overlay = site.join("gitops/overlays").join(OVERLAY);
    let notebooks = overlay.join("notebooks");
    let mut docs: Vec<Value> =
        serde_saphyr::from_multiple(&kubectl(&["kustomize", overlay.to_str().unwrap()])?)?;
    docs.extend(serde_saphyr::from_multiple::<Value>(&kubectl(&[
        "kustomize",
        notebooks.to_str().unwrap(),
    ])?)?);
    let factory: Factory = serde_json::from_value(
        docs.iter()
            .find(|d| d["kind"] == "Factory")
            .cloned()
            .expect("the overlay has a Factory"),
    )?;
    let factory_name = factory.metadata.name.clone().unwrap_or_default();

    // 2. CRDs (fabbrica's, Multus's and Kueue's), then the chart's identity and RBAC, as an
    // administrator would install them.
    install_crds(&client).await?;
    let integrations = IntegrationCrds::install()?;
    let _ = kubectl(&["create", "namespace", "fabbrica-system"]);
    let helm = tool("helm")?;
    let (ok, rbac, err) = run(
        &helm,
        &[
            "template",
            "fabbrica-operator",
            "charts/fabbrica-operator",
            "--namespace",
            "fabbrica-system",
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ],
    )?;
    assert!(ok, "helm template failed: {err}");
    let rbac_file = scratch.join("rbac.yaml");
    std::fs::write(&rbac_file, &rbac)?;
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        rbac_file.to_str().unwrap(),
    ])?;
    let grants = granted(&rbac)?;

    // 3. Nodes for the site's pools, then the operator under the chart's identity.
    let audit = state.join("audit.log");
    let audit_start = std::fs::metadata(&audit).map(|m| m.len()).unwrap_or(0);
    let run_id = fabbrica_tests::unique_name("e2e");
    let mut nodes = create_nodes(&client, &factory, &run_id).await?;
    let operator_log = scratch.join("operator.log");
    let operator = start_operator(&state, &operator_log)?;

    // 4. Sync as a GitOps tool would, and wait for Ready: the site first; the notebooks, whose
    // namespaces the operator makes for their Workspaces, once those are Ready.
    let sync = |dir: &std::path::Path| {
        kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            dir.to_str().unwrap(),
        ])
    };
    sync(&overlay)?;
    let wait_for =
        |condition: &str, what: &str, namespace: Option<&str>| -> anyhow::Result<String> {
            let condition = format!("--for={condition}");
            let mut args = vec!["wait", &condition, "--timeout=180s", what];
            if let Some(ns) = namespace {
                args.extend(["-n", ns]);
            }
            kubectl(&args).map_err(|e| {
                let log = std::fs::read_to_string(&operator_log).unwrap_or_default();
                let tail: Vec<_> = log.lines().rev().take(30).collect();
                e.context(format!(
                    "operator log (last lines, newest first):\n{}",
                    tail.join("\n")
                ))
            })
        };
    let wait = |what: &str, namespace: Option<&str>| wait_for("condition=Ready", what, namespace);
    wait(&format!("factory/{factory_name}"), None)?;
    wait_for(
        "condition=NetworkAttachments",
        &format!("factory/{factory_name}"),
        None,
    )?;
    for doc in docs.iter().filter(|d| d["kind"] == "Workspace") {
        let workspace = format!(
            "workspace/{}",
            doc["metadata"]["name"].as_str().unwrap_or_default()
        );
        wait(&workspace, None)?;
        wait_for("condition=QueueReady", &workspace, None)?;
    }
    sync(&notebooks)?;
    for doc in docs.iter().filter(|d| d["kind"] == "JupyterEnvironment") {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        wait(
            &format!("jupyterenvironment/{name}"),
            doc["metadata"]["namespace"].as_str(),
        )?;
    }

    // 4b. The notebooks run: each environment's Pod is scheduled onto a Node of its pool (the
    // pool's taints tolerated), goes Running, and its Service has a ready endpoint.
    let environments: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "JupyterEnvironment")
        .collect();
    assert!(
        !environments.is_empty(),
        "the site renders starter notebooks"
    );
    for doc in &environments {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = doc["metadata"]["namespace"].as_str().unwrap_or_default();
        let pool = doc["spec"]["profile"]["pool"].as_str().unwrap_or_default();
        wait_for(
            "condition=Running",
            &format!("jupyterenvironment/{name}"),
            Some(namespace),
        )?;
        let pod = Api::<Pod>::namespaced(client.clone(), namespace)
            .get(&format!("{name}-0"))
            .await?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        assert_eq!(phase, Some("Running"), "{namespace}/{name}-0");
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let node = node_api(&client)
            .get(node_name.as_deref().unwrap_or_default())
            .await?;
        assert_eq!(
            node.labels()
                .get(fabbrica_crds::labels::POOL)
                .map(String::as_str),
            Some(pool),
            "{namespace}/{name}-0 runs on {node_name:?}, not on pool {pool}"
        );
        fabbrica_tests::eventually(
            "the notebook's Service has a ready endpoint",
            Duration::from_secs(60),
            || async {
                let slices = Api::<EndpointSlice>::namespaced(client.clone(), namespace)
                    .list(
                        &ListParams::default()
                            .labels(&format!("kubernetes.io/service-name={name}")),
                    )
                    .await?;
                let ready = slices
                    .items
                    .iter()
                    .flat_map(|s| &s.endpoints)
                    .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true));
                Ok(ready.then_some(()))
            },
        )
        .await?;
    }

    // 4c. A notebook asking for more GPUs than its workspace holds on the pool never gets a
    // Pod, and says why.
    let first = environments[0];
    let namespace = first["metadata"]["namespace"].as_str().unwrap_or_default();
    let pool = first["spec"]["profile"]["pool"]
        .as_str()
        .unwrap_or_default();
    let granted = docs
        .iter()
        .filter(|d| d["kind"] == "Workspace" && d["spec"]["namespace"] == namespace)
        .flat_map(|d| {
            d["spec"]["gpuQuota"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|q| q["pool"] == pool)
        .and_then(|q| q["gpus"].as_u64())
        .expect("the starter notebook's workspace has a quota on its pool");
    let mut greedy = (*first).clone();
    greedy["metadata"] = json!({"name": "over-quota", "namespace": namespace});
    greedy["spec"]["profile"]["gpus"] = json!(granted + 1);
    let greedy_file = scratch.join("over-quota.yaml");
    std::fs::write(&greedy_file, serde_json::to_string(&greedy)?)?;
    kubectl(&[
        "apply",
        "--server-side",
        "-f",
        greedy_file.to_str().unwrap(),
    ])?;
    wait_for(
        "jsonpath={.status.conditions[?(@.type==\"Admitted\")].status}=False",
        "jupyterenvironment/over-quota",
        Some(namespace),
    )?;
    let status = kubectl(&[
        "get",
        "jupyterenvironment",
        "over-quota",
        "-n",
        namespace,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Admitted\")].message}",
    ])?;
    assert!(
        status.contains("exceed the workspace's quota"),
        "the refused notebook does not say why: {status}"
    );
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    let names: Vec<_> = pods.items.iter().map(|p| p.name_any()).collect();
    assert!(
        !names.iter().any(|n| n.starts_with("over-quota")),
        "the over-quota notebook got a Pod: {names:?}"
    );

    // 5. A change of plan: the archive tier goes, so its StorageClass must go too.
    let tiers = factory.spec.storage_tiers.len();
    let last = factory
        .spec
        .storage_tiers
        .last()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    kubectl(&[
        "patch",
        "factory",
        &factory_name,
        "--type=json",
        "-p",
        &format!(
            r#"[{{"op": "remove", "path": "/spec/storageTiers/{}"}}]"#,
            tiers - 1
        ),
    ])?;
    let class = format!("{factory_name}-{last}");
    fabbrica_tests::eventually(
        "the dropped tier's StorageClass is deleted",
        Duration::from_secs(60),
        || async {
            Ok(kubectl(&["get", "storageclass", &class])
                .is_err()
                .then_some(()))
        },
    )
    .await?;

    // 5b. A Node joins a pool of the Ready site: the operator reads that Node alone (a GET, not
    // a list of the pool) and makes it a member, labelled and tainted.
    let pool = &factory.spec.gpu_pools[0];
    let joiner = format!("{run_id}-joiner");
    let spare: Node = serde_json::from_value(json!({"metadata": {"name": joiner,
        "labels": {"fabbrica-tests/run": run_id}}}))?;
    let gpus = fabbrica_crds::validation::gpus_per_node(pool).to_string();
    register_ready_node(&node_api(&client), &spare, &gpus).await?;
    nodes.push(joiner.clone());
    node_api(&client)
        .patch(
            &joiner,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": pool.node_selector}})),
        )
        .await?;
    fabbrica_tests::eventually(
        "the Node that joined the pool is a member, labelled and tainted",
        Duration::from_secs(60),
        || async {
            let node = node_api(&client).get(&joiner).await?;
            let member = node.labels().get(labels::FACTORY) == Some(&factory_name);
            let tainted = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| pool.taints.iter().any(|p| p.key == t.key)));
            Ok((member && (tainted || pool.taints.is_empty())).then_some(()))
        },
    )
    .await?;

    // 6. Tear down while the operator runs: deleting a Workspace makes the operator delete its
    // notebooks first; the Factory's finalizer releases the Nodes.
    kubectl(&[
        "delete",
        "workspaces",
        "--all",
        "--wait=true",
        "--timeout=180s",
    ])?;
    kubectl(&[
        "delete",
        "factory",
        &factory_name,
        "--wait=true",
        "--timeout=180s",
    ])?;
    // Everything the Workspaces made went with them: their namespaces, and so every notebook,
    // claim, quota and binding in them.
    for doc in docs.iter().filter(|d| d["kind"] == "Workspace") {
        let namespace = doc["spec"]["namespace"].as_str().unwrap_or_default();
        fabbrica_tests::eventually(
            "the workspace's namespace is deleted",
            Duration::from_secs(120),
            || async {
                Ok(Api::<Namespace>::all(client.clone())
                    .get_opt(namespace)
                    .await?
                    .is_none()
                    .then_some(()))
            },
        )
        .await?;
    }
    drop(operator);
    drop(integrations);
    for name in &nodes {
        node_api(&client)
            .delete(name, &DeleteParams::default())
            .await?;
    }

    // 7. The audit log: nothing refused, and every permission granted was needed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut log = std::fs::File::open(&audit)?;
    std::io::Seek::seek(&mut log, std::io::SeekFrom::Start(audit_start))?;
    let window = scratch.join("audit-window.log");
    std::io::copy(&mut log, &mut std::fs::File::create(&window)?)?;
    let (used, forbidden) = used(&window)?;
    assert!(
        forbidden.is_empty(),
        "the operator was refused:\n{}",
        forbidden.join("\n")
    );
    let unused: Vec<_> = grants
        .iter()
        .filter(|p| {
            let key = (p.0.as_str(), p.1.as_str(), p.2.as_str());
            !used.contains(*p) && !UNAUDITED.contains(&key) && !NOT_EXERCISED.contains(&key)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants permissions the operator never used: {unused:?}\nused: {used:?}"
    );

    // 8. Least privilege for Secrets: outside the namespaces it made for workspaces, the
    // operator's identity may not read a Secret it did not make, nor list any.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let name = fabbrica_tests::unique_name("not-the-operators");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"password": "only for the administrator"},
    }))?;
    secrets.create(&Default::default(), &secret).await?;
    let kubeconfig = kube::config::Kubeconfig::read_from(state.join("operator.kubeconfig"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let as_operator = kube::Client::try_from(config)?;
    let get = Api::<Secret>::namespaced(as_operator.clone(), "default")
        .get(&name)
        .await;
    assert!(
        refused(get),
        "the operator's identity read a Secret it did not make"
    );
    let list = Api::<Secret>::all(as_operator.clone())
        .list_metadata(&ListParams::default())
        .await;
    assert!(
        refused(list),
        "the operator's identity may list Secrets cluster-wide"
    );
    let own = Api::<Secret>::namespaced(as_operator, "fabbrica-system")
        .list_metadata(&ListParams::default())
        .await;
    assert!(
        refused(own),
        "the operator's identity may list Secrets of its own namespace"
    );
    secrets.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}
