//! `SiteBlueprint`: the few numbers a site starts from. Not a custom resource:
//! the CLI reads it from a file and renders a whole site from it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use fabbrica_crds::v1alpha1::{
    GpuSystem, Member, NotebookCatalog, Site, StorageQuota, StorageTier, TenantKind,
};

/// The `apiVersion` of a site blueprint file.
pub const API_VERSION: &str = "fabbrica.io/v1alpha1";
/// The `kind` of a site blueprint file.
pub const KIND: &str = "SiteBlueprint";

/// A site blueprint: what an AI Factory or Gigafactory is built from (GPUs,
/// system, fabric, storage tiers, tenants, facility). `fabbrica plan` sizes it,
/// `fabbrica blueprint render` turns it into a GitOps repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteBlueprint {
    /// `fabbrica.io/v1alpha1`.
    pub api_version: String,
    /// `SiteBlueprint`.
    pub kind: String,
    /// The site's inputs.
    pub spec: SiteBlueprintSpec,
}

/// The inputs of a site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteBlueprintSpec {
    /// Site name (a DNS label), country and tier (`aiFactory` or `gigafactory`).
    pub site: Site,
    /// The GPU systems and how many GPUs the site targets.
    pub compute: Compute,
    /// The compute fabric (east-west GPU traffic): a rail-optimized fat tree.
    #[serde(default)]
    pub compute_fabric: ComputeFabric,
    /// Storage tiers and their usable capacities.
    pub storage: Storage,
    /// Tenants onboarded on day one, each becoming a Workspace with quotas.
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
    /// Notebook images and profiles tenants pick from.
    #[serde(default)]
    pub notebooks: NotebookCatalog,
    /// The data centre: power usage effectiveness.
    #[serde(default)]
    pub facility: Facility,
    /// How a site too large for one Kubernetes cluster is split into cluster cells; the
    /// default limit (5,000 Nodes, what one cluster is tested to upstream) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cells: Option<Cells>,
}

/// Cluster cells: a site of more GPU Nodes than one cluster holds is rendered as several
/// clusters, split along its fabric (whole spine groups, so whole scalable units, leaf groups
/// and NVLink domains).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cells {
    /// The most GPU Nodes one cluster (cell) holds; 5,000 by default.
    #[schemars(range(min = 1))]
    pub max_nodes: u32,
}

/// The GPU systems of the site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Compute {
    /// GPU system model from the catalog: `dgx-h100`, `dgx-h200`, `dgx-b200` or `gb200-nvl72`.
    pub system: GpuSystem,
    /// GPUs the site targets; rounded up to whole nodes, and the fabric to whole scalable units.
    #[schemars(range(min = 1))]
    pub gpus: u32,
    /// Nodes per scalable unit (one leaf switch per rail per unit); defaults to half the
    /// leaf switch's ports (32 on a 64-port NDR switch, 72 on a 144-port XDR switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub nodes_per_scalable_unit: Option<u32>,
}

/// The compute fabric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComputeFabric {
    /// InfiniBand generation: `ndr` (400 Gb/s, Quantum-2) or `xdr` (800 Gb/s, Quantum-X800).
    #[serde(default)]
    pub generation: FabricGeneration,
    /// Switch model from `blueprints/catalog/switches.yaml`; defaults to the generation's
    /// (`qm9700` for NDR, `q3400` for XDR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<String>,
    /// Leaf downlinks per uplink: 1 is a non-blocking fat tree (the reference architectures'),
    /// 2 halves the uplinks of every leaf.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 4))]
    pub blocking_factor: u32,
}

impl Default for ComputeFabric {
    fn default() -> Self {
        Self {
            generation: FabricGeneration::default(),
            switch: None,
            blocking_factor: 1,
        }
    }
}

fn one() -> u32 {
    1
}

/// InfiniBand generation of the compute fabric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "camelCase")]
pub enum FabricGeneration {
    /// NDR, 400 Gb/s per port (NVIDIA Quantum-2).
    #[default]
    Ndr,
    /// XDR, 800 Gb/s per port (NVIDIA Quantum-X800).
    Xdr,
}

impl FabricGeneration {
    /// The spelling in specs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ndr => "ndr",
            Self::Xdr => "xdr",
        }
    }

    /// The catalog switch this generation uses unless told otherwise.
    pub fn default_switch(self) -> &'static str {
        match self {
            Self::Ndr => "qm9700",
            Self::Xdr => "q3400",
        }
    }

    /// Gigabits per second of one port.
    pub fn gbps(self) -> u32 {
        match self {
            Self::Ndr => 400,
            Self::Xdr => 800,
        }
    }
}

/// The site's storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Storage {
    /// Storage tiers; each becomes a StorageClass, and tenants get quotas on them.
    pub tiers: Vec<StorageTier>,
}

/// A tenant onboarded with the site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSpec {
    /// Workspace name and namespace, a DNS label (`aurora`).
    pub name: String,
    /// The tenant's name as people write it (`Aurora Robotics S.r.l.`).
    pub display_name: String,
    /// `startup`, `sme`, `research` or `publicBody`.
    pub kind: TenantKind,
    /// GPUs the tenant may use at once.
    pub gpus: u32,
    /// Storage the tenant may claim, per tier.
    #[serde(default)]
    pub storage: Vec<StorageQuota>,
    /// People and groups given access to the workspace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
    /// A notebook created for the tenant on day one; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notebook: Option<StarterNotebook>,
    /// GPU-hours granted for a period under one of the site's access modes (the Workspace's
    /// `spec.allocation`); none: metered, not limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<fabbrica_crds::v1alpha1::Allocation>,
}

/// A tenant's first JupyterEnvironment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StarterNotebook {
    /// Image name from `spec.notebooks.images`.
    pub image: String,
    /// GPUs the notebook requests; within a notebook profile and the tenant's quota.
    pub gpus: u32,
    /// CPU the notebook requests (`8`).
    pub cpu: Quantity,
    /// Memory the notebook requests (`64Gi`).
    pub memory: Quantity,
    /// Storage tier of the home volume; the tenant needs a quota on it.
    pub home_tier: String,
    /// Size of the home volume (`100Gi`).
    pub home_size: Quantity,
    /// Further tiers mounted into the notebook, by tier name and mount path (`datasets: /datasets`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mounts: BTreeMap<String, String>,
}

/// The data centre around the machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Facility {
    /// Power usage effectiveness: facility power over IT power (1.0 to 3.0; about 1.1 to 1.3
    /// for a modern liquid-cooled hall).
    #[serde(default = "default_pue")]
    pub pue: f64,
}

impl Default for Facility {
    fn default() -> Self {
        Self { pue: default_pue() }
    }
}

fn default_pue() -> f64 {
    1.25
}

impl SiteBlueprint {
    /// Wraps a spec with this file format's `apiVersion` and `kind`.
    pub fn new(spec: SiteBlueprintSpec) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            spec,
        }
    }
}
