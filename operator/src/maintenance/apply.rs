//! The maintenance's reads and writes: the targeted pools' Nodes, the drain of a Node through the
//! Eviction API (policy/v1, so PodDisruptionBudgets hold), and the effects a step decided.
//!
//! Node writes are JSON merge patches of the few fields the maintenance owns
//! (`spec.unschedulable`, its own label and annotation, an agent's request label), under the
//! operator's field manager. They are not server-side applies: the Factory controller applies
//! Node labels and taints under the same manager, and an apply without `spec.unschedulable`
//! would uncordon the Node.

use std::collections::{BTreeSet, HashMap};

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{JupyterEnvironment, Maintenance};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::plan::{Drain, Effect, NodeView};
use crate::reconcile::Kit;
use crate::{Error, FIELD_MANAGER, Result};

/// The annotation that marks a mirror (static) Pod, which the Eviction API cannot remove.
const MIRROR_POD: &str = "kubernetes.io/config.mirror";
/// Event reason of the notice to tenants, on each of their Pods.
pub const NOTICE: &str = "MaintenanceNotice";

/// Every Node of `factory`'s `pools`, as the maintenance reads them (one list request).
pub async fn list_nodes<'a>(
    kit: &Kit,
    factory: &str,
    pools: impl IntoIterator<Item = &'a String>,
) -> Result<HashMap<String, NodeView>> {
    let pools: Vec<&str> = pools.into_iter().map(String::as_str).collect();
    let selector = format!(
        "{}={factory},{} in ({})",
        labels::FACTORY,
        labels::POOL,
        pools.join(",")
    );
    let nodes = Api::<Node>::all(kit.client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|err| Error::request("listing", format!("Nodes {selector}"), err))?;
    Ok(nodes
        .items
        .iter()
        .map(|n| (n.name_any(), NodeView::from_node(n)))
        .collect())
}

/// The Pods on `node` that a drain must move: not those of DaemonSets (they belong on every
/// Node), not mirror Pods, not finished ones.
pub async fn pods_on(kit: &Kit, node: &str) -> Result<Vec<Pod>> {
    let pods = Api::<Pod>::all(kit.client.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(|err| Error::request("listing", format!("Pods on Node {node}"), err))?;
    Ok(pods.items.into_iter().filter(must_leave).collect())
}

/// Whether a drain must move this Pod.
pub fn must_leave(pod: &Pod) -> bool {
    let daemon = pod
        .owner_references()
        .iter()
        .any(|o| o.kind == "DaemonSet" && o.controller == Some(true));
    let mirror = pod.annotations().contains_key(MIRROR_POD);
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !daemon && !mirror && !finished
}

/// Evicts every Pod that must leave `node` through the Eviction API; what is left and, when a
/// PodDisruptionBudget refused an eviction, why.
pub async fn drain(kit: &Kit, node: &str) -> Result<Drain> {
    let mut result = Drain::default();
    for pod in pods_on(kit, node).await? {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        result.remaining += 1;
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        // kube's client retries a 429 (a PodDisruptionBudget's refusal) after the server's
        // Retry-After, for minutes; a refusal is an answer here, so the wait is cut short.
        let answer = tokio::time::timeout(EVICTION_WAIT, evict(kit, &namespace, &name)).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(_) => {
                let budgets = refusing_budgets(kit, &pod).await?;
                result.blocked.get_or_insert(format!(
                    "eviction of Pod {namespace}/{name} refused: Cannot evict pod as it would violate the pod's disruption budget ({budgets})"
                ));
                continue;
            }
        };
        match answer {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => result.remaining -= 1,
            // 429: a PodDisruptionBudget forbids it now.
            Err(kube::Error::Api(status)) if status.code == 429 => {
                let causes: Vec<String> = status
                    .details
                    .iter()
                    .flat_map(|d| d.causes.iter())
                    .map(|c| c.message.clone())
                    .filter(|m| !m.is_empty())
                    .collect();
                let why = if causes.is_empty() {
                    status.message.clone()
                } else {
                    format!("{} ({})", status.message, causes.join("; "))
                };
                result
                    .blocked
                    .get_or_insert(format!("eviction of Pod {namespace}/{name} refused: {why}"));
            }
            Err(err) => {
                return Err(Error::request(
                    "evicting",
                    format!("Pod {namespace}/{name}"),
                    err,
                ));
            }
        }
    }
    Ok(result)
}

/// How long an eviction may take before it counts as refused (kube retries refusals).
const EVICTION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The PodDisruptionBudgets of `pod`'s namespace that select it and allow no disruption now, as
/// `name (needs N healthy Pods, has M)`.
async fn refusing_budgets(kit: &Kit, pod: &Pod) -> Result<String> {
    let namespace = pod.namespace().unwrap_or_default();
    let budgets = Api::<PodDisruptionBudget>::namespaced(kit.client.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .map_err(|err| {
            Error::request(
                "listing",
                format!("PodDisruptionBudgets in namespace {namespace}"),
                err,
            )
        })?;
    let names: Vec<String> = budgets
        .items
        .iter()
        .filter(|b| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| selects(s, pod.labels()))
        })
        .filter(|b| b.status.as_ref().is_none_or(|s| s.disruptions_allowed == 0))
        .map(|b| match &b.status {
            Some(s) => format!(
                "PodDisruptionBudget {} needs {} healthy Pods and has {}",
                b.name_any(),
                s.desired_healthy,
                s.current_healthy
            ),
            None => format!("PodDisruptionBudget {}", b.name_any()),
        })
        .collect();
    Ok(if names.is_empty() {
        "a PodDisruptionBudget allows no disruption now".to_owned()
    } else {
        names.join("; ")
    })
}

/// Whether a label selector selects these labels.
pub fn selects(
    selector: &LabelSelector,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let matches = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    matches && expressions
}

/// One eviction, as a `policy/v1` Eviction.
async fn evict(kit: &Kit, namespace: &str, name: &str) -> Result<(), kube::Error> {
    let body = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    });
    let request = kube::core::Request::new(format!(
        "/api/v1/namespaces/{namespace}/pods/{name}/eviction"
    ))
    .create(
        &PostParams::default(),
        serde_json::to_vec(&body).unwrap_or_default(),
    )
    .map_err(kube::Error::BuildRequest)?;
    kit.client.request::<Value>(request).await?;
    kit.metrics.write("eviction", "create");
    Ok(())
}

fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

async fn patch_node(kit: &Kit, node: &str, patch: Value) -> Result<()> {
    Api::<Node>::all(kit.client.clone())
        .patch(node, &merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(|err| Error::request("writing", format!("Node {node}"), err))?;
    kit.metrics.write("node", "patch");
    Ok(())
}

/// Cordons `node` and labels it as held by `maintenance`; a Node someone else cordoned is left
/// as it is (and so never uncordoned by the maintenance).
pub async fn cordon(kit: &Kit, maintenance: &str, view: &NodeView) -> Result<()> {
    if view.unschedulable {
        return Ok(());
    }
    patch_node(
        kit,
        &view.name,
        json!({
            "metadata": {"labels": {labels::MAINTENANCE: maintenance}},
            "spec": {"unschedulable": true},
        }),
    )
    .await
}

/// Uncordons `node` if `maintenance` holds it, removing its label, the reboot request, a
/// done-label naming it and its validation result (so it is validated again).
pub async fn uncordon(kit: &Kit, maintenance: &str, view: &NodeView) -> Result<()> {
    if view.held_by.as_deref() != Some(maintenance) {
        return Ok(());
    }
    // A Node back from maintenance is validated again where its pool declares validation.
    let mut node_labels = json!({labels::MAINTENANCE: null, labels::VALIDATION: null});
    if view
        .labels
        .get(labels::MAINTENANCE_DONE)
        .map(String::as_str)
        == Some(maintenance)
    {
        node_labels[labels::MAINTENANCE_DONE] = Value::Null;
    }
    patch_node(
        kit,
        &view.name,
        json!({
            "metadata": {"labels": node_labels, "annotations": {labels::REBOOT_REQUESTED: null}},
            "spec": {"unschedulable": null},
        }),
    )
    .await
}

/// Tells the tenants on `node`: an Event on each of their Pods, in their namespace, before any
/// eviction.
pub async fn notify(kit: &Kit, maintenance: &Maintenance, node: &str) -> Result<()> {
    let notice = maintenance.spec.notice_seconds;
    for pod in pods_on(kit, node).await? {
        let note = format!(
            "Node {node} is taken out of service by Maintenance {} ({}); this Pod is evicted in {notice} s, respecting its PodDisruptionBudget",
            maintenance.name_any(),
            maintenance.spec.action.type_.as_str(),
        );
        if let Some(env) = pod.labels().get(labels::ENVIRONMENT) {
            let namespace = pod.namespace().unwrap_or_default();
            let patch = json!({"metadata": {"annotations": {
                labels::EVICTION_NOTICE: note.clone(),
                labels::EVICTION_NODE: node,
            }}});
            match Api::<JupyterEnvironment>::namespaced(kit.client.clone(), &namespace)
                .patch(env, &merge_params(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => kit.metrics.write("jupyterenvironment", "patch"),
                // A Pod that names no existing environment has nothing to tell.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => {
                    return Err(Error::request(
                        "writing",
                        format!("JupyterEnvironment {namespace}/{env}"),
                        err,
                    ));
                }
            }
        }
        kit.events
            .publish(&pod, EventType::Warning, NOTICE, note)
            .await;
    }
    Ok(())
}

/// Removes the eviction notice from the JupyterEnvironments told about `node`.
async fn clear_notices(kit: &Kit, node: &str) -> Result<()> {
    let envs = Api::<JupyterEnvironment>::all(kit.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|err| Error::request("listing", "JupyterEnvironments", err))?;
    for env in envs.items.iter().filter(|e| {
        e.annotations()
            .get(labels::EVICTION_NODE)
            .map(String::as_str)
            == Some(node)
    }) {
        let namespace = env.namespace().unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {
            labels::EVICTION_NOTICE: null,
            labels::EVICTION_NODE: null,
        }}});
        Api::<JupyterEnvironment>::namespaced(kit.client.clone(), &namespace)
            .patch(&env.name_any(), &merge_params(), &Patch::Merge(&patch))
            .await
            .map_err(|err| {
                Error::request(
                    "writing",
                    format!("JupyterEnvironment {namespace}/{}", env.name_any()),
                    err,
                )
            })?;
        kit.metrics.write("jupyterenvironment", "patch");
    }
    Ok(())
}

/// Carries out a step's effects in order, stopping at the first failure (so no Node is cordoned
/// after a release that did not happen). `nodes` are the views the step was made from.
pub async fn carry_out(
    kit: &Kit,
    maintenance: &Maintenance,
    effects: &[Effect],
    nodes: &HashMap<String, NodeView>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Result<()> {
    let name = maintenance.name_any();
    let view = |node: &str| {
        nodes.get(node).cloned().unwrap_or_else(|| NodeView {
            name: node.to_owned(),
            ..NodeView::default()
        })
    };
    let mut notified = BTreeSet::new();
    for effect in effects {
        match effect {
            Effect::Uncordon(node) => {
                uncordon(kit, &name, &view(node)).await?;
                clear_notices(kit, node).await?;
            }
            Effect::Cordon(node) => cordon(kit, &name, &view(node)).await?,
            Effect::Notify(node) => {
                if notified.insert(node.clone()) {
                    notify(kit, maintenance, node).await?;
                }
            }
            Effect::Signal { node, label, value } => {
                patch_node(kit, node, json!({"metadata": {"labels": {label: value}}})).await?;
            }
            Effect::RequestReboot(node) => {
                let at = now.0.to_string();
                patch_node(
                    kit,
                    node,
                    json!({"metadata": {"annotations": {labels::REBOOT_REQUESTED: at}}}),
                )
                .await?;
            }
            Effect::Event {
                warning,
                reason,
                note,
            } => {
                let type_ = if *warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                kit.events
                    .publish(maintenance, type_, reason, note.clone())
                    .await;
            }
        }
    }
    Ok(())
}

/// Uncordons every Node `maintenance` holds (found by its label), except those `keep` names: on
/// deletion of the Maintenance. Returns how many were released.
pub async fn release_all(kit: &Kit, maintenance: &str, keep: &BTreeSet<String>) -> Result<usize> {
    let selector = format!("{}={maintenance}", labels::MAINTENANCE);
    let nodes = Api::<Node>::all(kit.client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|err| Error::request("listing", format!("Nodes {selector}"), err))?;
    let mut released = 0;
    for node in &nodes.items {
        let view = NodeView::from_node(node);
        if keep.contains(&view.name) {
            continue;
        }
        uncordon(kit, maintenance, &view).await?;
        released += 1;
    }
    Ok(released)
}
