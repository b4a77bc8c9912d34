//! A management cluster's MultiKueue setup: one queue for a site split into cluster cells (or
//! for several sites). A tenant submits once to its LocalQueue on the manager; the manager's
//! ClusterQueue carries the MultiKueue AdmissionCheck, which copies the workload to every
//! worker cluster (cell) and keeps the one that a worker's own Kueue admits first, under that
//! tenant's grant there. The worker clusters need nothing MultiKueue-specific: their
//! ClusterQueue and LocalQueue are the ones the operator already writes for each Workspace,
//! and MultiKueue finds them by the same namespace and LocalQueue name.
//!
//! Objects are in `kueue.x-k8s.io/v1beta2` as Kueue 0.17 serves it: `MultiKueueCluster`
//! (`spec.clusterSource.kubeConfig`), `MultiKueueConfig` (`spec.clusters`), `AdmissionCheck`
//! (`spec.controllerName`, `spec.parameters`), `ClusterQueue`
//! (`spec.admissionChecksStrategy.admissionChecks`).

use serde_json::{Value, json};

use super::{API_VERSION, GROUP};
use crate::labels;

/// The controller name of MultiKueue's admission check.
pub const CONTROLLER_NAME: &str = "kueue.x-k8s.io/multikueue";
/// The key of a worker's kubeconfig in its Secret, as Kueue reads it.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// The namespace Kueue's manager runs in and reads the kubeconfig Secrets from.
pub const KUEUE_NAMESPACE: &str = "kueue-system";
/// The LocalQueue a tenant submits to, on the manager as on every worker (the operator's name).
pub const LOCAL_QUEUE: &str = "default";
/// CPU and memory the manager's queues cover without limiting: GPUs are the grant.
const UNMETERED_CPU: &str = "1M";
const UNMETERED_MEMORY: &str = "1Pi";

/// The Secret in [`KUEUE_NAMESPACE`] that holds a worker cluster's kubeconfig: `<cluster>-kubeconfig`.
pub fn kubeconfig_secret(cluster: &str) -> String {
    format!("{cluster}-kubeconfig")
}

/// The manager's AdmissionCheck and MultiKueueConfig: `<name>-multikueue`.
pub fn admission_check_name(name: &str) -> String {
    format!("{name}-multikueue")
}

/// The manager's ResourceFlavor: `<name>-gpu`. It selects no Nodes (the manager runs no GPU
/// work); it only counts the grant.
pub fn manager_flavor_name(name: &str) -> String {
    format!("{name}-gpu")
}

/// A worker cluster, reached with the kubeconfig in its Secret.
pub fn build_cluster(cluster: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "MultiKueueCluster",
        "metadata": {"name": cluster},
        "spec": {"clusterSource": {"kubeConfig": {
            "locationType": "Secret",
            "location": kubeconfig_secret(cluster),
        }}},
    })
}

/// The set of worker clusters a workload may run on.
pub fn build_config(name: &str, clusters: &[String]) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "MultiKueueConfig",
        "metadata": {"name": admission_check_name(name)},
        "spec": {"clusters": clusters},
    })
}

/// The admission check that dispatches to the config's clusters.
pub fn build_admission_check(name: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "AdmissionCheck",
        "metadata": {"name": admission_check_name(name)},
        "spec": {
            "controllerName": CONTROLLER_NAME,
            "parameters": {
                "apiGroup": GROUP,
                "kind": "MultiKueueConfig",
                "name": admission_check_name(name),
            },
        },
    })
}

/// The manager's ResourceFlavor, with no node labels.
pub fn build_flavor(name: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": {"name": manager_flavor_name(name)},
        "spec": {},
    })
}

/// A tenant's ClusterQueue on the manager (named like its Workspace): its GPUs over all worker
/// clusters, for its namespace only, every workload through the MultiKueue check. Each worker's
/// own queue holds the tenant to its grant in that cluster.
pub fn build_cluster_queue(name: &str, workspace: &str, gpus: u64) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "ClusterQueue",
        "metadata": {"name": workspace},
        "spec": {
            "namespaceSelector": {"matchLabels": {labels::WORKSPACE: workspace}},
            "resourceGroups": [{
                "coveredResources": [labels::GPU_RESOURCE, "cpu", "memory"],
                "flavors": [{
                    "name": manager_flavor_name(name),
                    "resources": [
                        {"name": labels::GPU_RESOURCE, "nominalQuota": gpus.to_string()},
                        {"name": "cpu", "nominalQuota": UNMETERED_CPU},
                        {"name": "memory", "nominalQuota": UNMETERED_MEMORY},
                    ],
                }],
            }],
            "admissionChecksStrategy": {"admissionChecks": [{"name": admission_check_name(name)}]},
        },
    })
}

/// The tenant's namespace on the manager, labelled so its ClusterQueue admits from it.
pub fn build_namespace(workspace: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {labels::WORKSPACE: workspace}},
    })
}

/// The LocalQueue tenants submit to on the manager, named as on the workers.
pub fn build_local_queue(workspace: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "LocalQueue",
        "metadata": {"name": LOCAL_QUEUE, "namespace": namespace},
        "spec": {"clusterQueue": workspace},
    })
}

/// A tenant as the manager sees it: its Workspace name, namespace and GPUs over every cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedTenant {
    /// The Workspace name (the ClusterQueue's on every cluster).
    pub workspace: String,
    /// Its namespace, the same on every cluster.
    pub namespace: String,
    /// GPUs granted over all worker clusters.
    pub gpus: u64,
}

/// Every object of a manager for `clusters` (worker cluster names, each with a kubeconfig
/// Secret `<cluster>-kubeconfig` in `kueue-system`) and the tenants: the MultiKueueClusters,
/// the MultiKueueConfig, the AdmissionCheck, the flavor, then per tenant its Namespace,
/// ClusterQueue and LocalQueue.
pub fn build_manager(name: &str, clusters: &[String], tenants: &[ManagedTenant]) -> Vec<Value> {
    let mut out: Vec<Value> = clusters.iter().map(|c| build_cluster(c)).collect();
    out.push(build_config(name, clusters));
    out.push(build_admission_check(name));
    out.push(build_flavor(name));
    for t in tenants {
        out.push(build_namespace(&t.workspace, &t.namespace));
        out.push(build_cluster_queue(name, &t.workspace, t.gpus));
        out.push(build_local_queue(&t.workspace, &t.namespace));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manager_dispatches_every_tenant_through_one_multikueue_check() {
        let clusters = vec!["giga-c01".to_owned(), "giga-c02".to_owned()];
        let tenants = [ManagedTenant {
            workspace: "aurora".into(),
            namespace: "aurora".into(),
            gpus: 512,
        }];
        let objects = build_manager("giga", &clusters, &tenants);
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "MultiKueueCluster",
                "MultiKueueCluster",
                "MultiKueueConfig",
                "AdmissionCheck",
                "ResourceFlavor",
                "Namespace",
                "ClusterQueue",
                "LocalQueue"
            ]
        );
        assert_eq!(
            objects[1]["spec"]["clusterSource"]["kubeConfig"]["location"],
            "giga-c02-kubeconfig"
        );
        assert_eq!(objects[2]["spec"]["clusters"], json!(clusters));
        let check = &objects[3];
        assert_eq!(check["spec"]["controllerName"], CONTROLLER_NAME);
        assert_eq!(
            check["spec"]["parameters"]["name"],
            objects[2]["metadata"]["name"]
        );
        let queue = &objects[6];
        assert_eq!(
            queue["spec"]["admissionChecksStrategy"]["admissionChecks"][0]["name"],
            check["metadata"]["name"]
        );
        assert_eq!(
            queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"],
            "512"
        );
        assert_eq!(objects[7]["spec"]["clusterQueue"], "aurora");
        assert_eq!(objects[7]["metadata"]["name"], LOCAL_QUEUE);
    }
}
