//! The malformed-input corpus (`tests/fixtures/bad-input/`, the cases whose `cases.tsv`
//! commands include `apply`) applied with `kubectl apply --server-side` on top of a good
//! Factory and Workspace of the same names while the operator runs: each is refused at
//! admission with the field named (schema, CEL, the API server's name rules), or, where the
//! schema cannot say it, accepted and reported by the operator as `Ready=False` naming the
//! field; and nothing that existed is deleted or changed (ConfigMaps, Node labels and taints,
//! the namespace, the quota, the limits, the bindings).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fabbrica_crds::v1alpha1::GpuSystem;
use fabbrica_operator::clock::SystemClock;
use fabbrica_operator::http::Readiness;
use fabbrica_operator::metrics::Metrics;
use fabbrica_operator::{Settings, run};
use fabbrica_tests::{
    client, eventually, gpu_node, install_crds, kubeconfig_path, register_gpu_node,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
/// The fixtures' names: the Factory, the Workspace and the notebook are all `bad-input`.
const NAME: &str = "bad-input";
const NAMESPACE: &str = "ws-bad-input";
/// This file's operator reconciles only the Factory carrying this label (and its tenants).
const TEST_LABEL: &str = "fabbrica.io/test-bad-input-factory";

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad-input")
}

/// `(file, field)` of every case that goes through `apply`.
fn cases() -> Vec<(String, String)> {
    let index = std::fs::read_to_string(corpus().join("cases.tsv")).expect("the index");
    index
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("file\t"))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols.len() == 5 && cols[1].split(',').any(|c| c == "apply"))
                .then(|| (cols[0].to_owned(), cols[3].to_owned()))
        })
        .collect()
}

/// Whether `out` names `field` (`spec.gpuPools[0].expectedNodes`): as written, or the way
/// server-side apply names a list-map entry by its key (`.spec.gpuPools[name="training"]
/// .expectedNodes`), or, for a name kubectl itself refuses before sending it, as the
/// resource name.
fn names_field(out: &str, field: &str) -> bool {
    if out.contains(field) {
        return true;
    }
    if field == "metadata.name" && out.contains("invalid resource name") {
        return true;
    }
    // Every part outside the brackets, in order.
    let mut rest = out;
    for part in field.split('[').map(|p| p.rsplit(']').next().unwrap_or(p)) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// `kubectl` against the test control plane: exit status and everything it printed.
fn kubectl(args: &[&str]) -> anyhow::Result<(bool, String)> {
    let output = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .context("running kubectl")?;
    Ok((
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

fn apply(file: &Path) -> anyhow::Result<(bool, String)> {
    kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=bad-input-tests",
        "-f",
        file.to_str().context("a UTF-8 path")?,
    ])
}

fn get(args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec!["get", "-o", "json"];
    all.extend_from_slice(args);
    let (ok, out) = kubectl(&all)?;
    anyhow::ensure!(ok, "kubectl get {args:?}: {out}");
    Ok(serde_json::from_str(&out)?)
}

/// The `Ready` condition of an object, when its status is of the current generation.
fn ready(args: &[&str]) -> anyhow::Result<Option<(String, String)>> {
    let object = get(args)?;
    let generation = object.pointer("/metadata/generation");
    if object.pointer("/status/observedGeneration") != generation {
        return Ok(None);
    }
    Ok(object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        }))
}

/// What the good Factory and Workspace made, as a person would compare it: identities,
/// labels, taints, data and specs (not resourceVersions, which status writes move).
fn children() -> anyhow::Result<Value> {
    let keep = |o: &Value| {
        json!({
            "uid": o.pointer("/metadata/uid"),
            "labels": o.pointer("/metadata/labels"),
            "ownerReferences": o.pointer("/metadata/ownerReferences"),
            "data": o.get("data"),
            "spec": o.get("spec"),
            "subjects": o.get("subjects"),
            "deletionTimestamp": o.pointer("/metadata/deletionTimestamp"),
        })
    };
    let list = |args: &[&str], prefix: &str| -> anyhow::Result<Vec<Value>> {
        Ok(get(args)?["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|o| {
                o.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .map(keep)
            .collect())
    };
    Ok(json!({
        "configMaps": list(&["configmaps", "-n", "default"], &format!("{NAME}-"))?,
        "nodes": list(&["nodes", "-l", "fabbrica.io/test-bad-input=true"], "")?,
        "namespace": keep(&get(&["namespace", NAMESPACE])?),
        "quotas": list(&["resourcequotas", "-n", NAMESPACE], "")?,
        "limits": list(&["limitranges", "-n", NAMESPACE], "")?,
        "bindings": list(&["rolebindings", "-n", NAMESPACE], "fabbrica-")?,
        "policies": list(&["networkpolicies", "-n", NAMESPACE], "")?,
    }))
}

/// Applies the good Factory and Workspace and waits until both are Ready at their generation.
async fn restore() -> anyhow::Result<()> {
    for file in ["factory.yaml", "workspace.yaml"] {
        let (ok, out) = apply(&corpus().join("base").join(file))?;
        anyhow::ensure!(ok, "the good {file} is refused: {out}");
    }
    for kind in ["factory", "workspace"] {
        eventually(&format!("the good {kind} is Ready"), WAIT, || async move {
            Ok(ready(&[kind, NAME])?.filter(|(status, _)| status == "True"))
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_objects_are_refused_and_nothing_that_exists_changes() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..2 {
        let node = gpu_node(
            &format!("{NAME}-{i}"),
            GpuSystem::DgxH100,
            0,
            [("fabbrica.io/test-bad-input".to_owned(), "true".to_owned())].into(),
        )?;
        if nodes
            .get_opt(&node.metadata.name.clone().unwrap_or_default())
            .await?
            .is_none()
        {
            register_gpu_node(&nodes, &node).await?;
        }
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(run(
        client.clone(),
        Settings {
            namespace: "default".into(),
            gpu_operator_namespace: "default".into(),
            factory_selector: Some(format!("{TEST_LABEL}={NAME}")),
            debounce: Duration::from_millis(100),
            reporter: "bad-input-tests".into(),
            ..Settings::default()
        },
        Metrics::new(),
        Arc::new(Readiness::default()),
        Arc::new(SystemClock),
        async move {
            let _ = stopped.await;
        },
    ));
    let result = exercise(&client).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), operator).await;
    for kind in ["jupyterenvironment", "workspace", "factory"] {
        let namespace = if kind == "jupyterenvironment" {
            vec!["-n", NAMESPACE, "--all"]
        } else {
            vec![NAME]
        };
        let mut args = vec!["delete", kind, "--ignore-not-found", "--wait=false"];
        args.extend(namespace);
        let _ = kubectl(&args);
    }
    // The simulated Nodes go too: the tests after this one share the control plane, and a
    // Factory whose pool selector matches them would count them.
    for i in 0..2 {
        let _ = nodes
            .delete(&format!("{NAME}-{i}"), &Default::default())
            .await;
    }
    result
}

async fn exercise(client: &kube::Client) -> anyhow::Result<()> {
    let (ok, out) = apply(&corpus().join("base/factory.yaml"))?;
    anyhow::ensure!(ok, "the good Factory is refused: {out}");
    // The label that selects this file's operator, under a manager of its own, so the
    // cases (applied without it) leave it in place.
    let factories: Api<fabbrica_crds::v1alpha1::Factory> = Api::all(client.clone());
    factories
        .patch(
            NAME,
            &PatchParams::apply("bad-input-tests-label"),
            &Patch::Apply(json!({
                "apiVersion": "fabbrica.io/v1alpha1", "kind": "Factory",
                "metadata": {"name": NAME, "labels": {TEST_LABEL: NAME}},
            })),
        )
        .await?;
    restore().await?;
    let before = children()?;
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases go through apply", cases.len());
    let mut wrong = Vec::new();
    let mut refused_at_admission = 0;
    let mut refused_by_operator = 0;
    for (file, field) in &cases {
        let (ok, out) = apply(&corpus().join(file))?;
        if !ok {
            refused_at_admission += 1;
            if !names_field(&out, field) {
                wrong.push(format!("{file}: refused without naming {field}: {out}"));
            }
        } else {
            // Admitted: the operator must refuse it on the object itself.
            let text = std::fs::read_to_string(corpus().join(file))?;
            let kind = if text.contains("kind: JupyterEnvironment") {
                "jupyterenvironment"
            } else if text.contains("kind: Workspace") {
                "workspace"
            } else {
                "factory"
            };
            let name = text
                .lines()
                .skip_while(|l| *l != "metadata:")
                .find_map(|l| l.strip_prefix("  name: "))
                .unwrap_or(NAME)
                .trim_matches('"')
                .to_owned();
            let mut args = vec![kind, name.as_str()];
            if kind == "jupyterenvironment" {
                args.extend(["-n", NAMESPACE]);
            }
            let reported = eventually(&format!("{file} is reported"), WAIT, || {
                let args = args.clone();
                async move { ready(&args) }
            })
            .await;
            match reported {
                Ok((status, message)) if status == "False" && names_field(&message, field) => {
                    refused_by_operator += 1;
                }
                Ok((status, message)) => wrong.push(format!(
                    "{file}: admitted (`{}`), then Ready={status} without naming {field}: {message}",
                    out.trim()
                )),
                Err(err) => wrong.push(format!("{file}: admitted, then {err:#}")),
            }
            if kind == "jupyterenvironment" {
                let _ = kubectl(&["delete", kind, &name, "-n", NAMESPACE, "--wait=false"]);
            }
        }
        // Nothing that existed is deleted or changed, whatever the case did.
        let now = children()?;
        if now != before {
            wrong.push(format!(
                "{file}: the children changed:\nbefore {before:#}\nafter {now:#}"
            ));
        }
        if ok {
            restore().await?;
        }
    }
    println!(
        "{} cases: {refused_at_admission} refused at admission, {refused_by_operator} reported Ready=False by the operator",
        cases.len()
    );
    anyhow::ensure!(
        wrong.is_empty(),
        "{} of {} cases went wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n\n")
    );
    Ok(())
}
