//! `JupyterEnvironment`: a tenant's notebook on the factory's GPUs and storage.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, conditions_schema};
use super::factory::DNS_LABEL;

/// A JupyterEnvironment is a preconfigured notebook server in a workspace's
/// namespace: a catalog image, a resource profile on one GPU pool, a home
/// volume and optional read-only datasets, reachable only inside the workspace.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fabbrica.io",
    version = "v1alpha1",
    kind = "JupyterEnvironment",
    doc = "A JupyterEnvironment is a notebook server in a workspace: catalog image, resource profile, home volume, datasets.",
    namespaced,
    shortname = "jenv",
    category = "fabbrica",
    status = "JupyterEnvironmentStatus",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.profile.pool"),
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".spec.profile.gpus"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct JupyterEnvironmentSpec {
    /// Name of an image in the Factory's notebook catalog (`pytorch`).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub image: String,
    /// Resources of the notebook; must fit within a catalog profile of the same pool and within the workspace's quota.
    pub profile: NotebookResources,
    /// The home volume, mounted at `/home/jovyan`.
    pub home: HomeVolume,
    /// Further tiers to mount, e.g. the datasets tier read-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["tier"]))]
    pub mounts: Vec<StorageMount>,
    /// Idle culling: the notebook server shuts idle kernels and itself down after this long.
    #[serde(default)]
    pub idle_culling: IdleCulling,
}

/// Resources requested by a notebook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotebookResources {
    /// The GPU pool to run on.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub pool: String,
    /// `nvidia.com/gpu` to request (GPUs, or slices on a shared pool); 0 for a CPU-only notebook.
    #[schemars(range(min = 0, max = 16))]
    pub gpus: u32,
    /// CPU to request (`8`).
    pub cpu: Quantity,
    /// Memory to request (`64Gi`).
    pub memory: Quantity,
}

/// The notebook's home volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HomeVolume {
    /// Storage tier of the Factory the volume is provisioned on.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub tier: String,
    /// Size of the volume (`100Gi`).
    pub size: Quantity,
    /// Whether the volume is kept when the JupyterEnvironment is deleted (the default) or deleted with it.
    #[serde(default = "default_true")]
    pub keep_on_delete: bool,
}

fn default_true() -> bool {
    true
}

/// A tier mounted into the notebook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageMount {
    /// Storage tier of the Factory.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub tier: String,
    /// Where to mount it (`/datasets`).
    #[schemars(regex(pattern = r"^/[^\x00]*$"))]
    pub mount_path: String,
    /// Mount read-only; tiers with the `datasets` role are always mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// When an idle notebook is shut down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdleCulling {
    /// Minutes without kernel activity after which the server shuts down; 0 disables culling.
    #[schemars(range(min = 0, max = 10080))]
    pub timeout_minutes: u32,
}

impl Default for IdleCulling {
    fn default() -> Self {
        Self {
            timeout_minutes: 60,
        }
    }
}

/// What the operator observed of a JupyterEnvironment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JupyterEnvironmentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Admitted and Running.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// `Pending`, `Running`, `Refused` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The notebook's address inside the cluster (`http://<name>.<namespace>.svc:8888`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}
