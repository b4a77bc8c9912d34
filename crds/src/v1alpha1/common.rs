//! Types shared by the three kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every fabbrica kind.
pub const GROUP: &str = "fabbrica.io";
/// The API version this module defines.
pub const VERSION: &str = "v1alpha1";

/// Conditions as a list-map keyed by `type`, so server-side apply merges them per type.
pub type Conditions = Vec<Condition>;

/// Adds the list-map markers to a `conditions` field's schema.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema.insert(
        "description".into(),
        "Ready plus one condition per concern, keyed by type.".into(),
    );
    schema
}

/// The condition of the given type, if present.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A pool's GPU system model, one entry of the catalog in `blueprints/catalog/systems.yaml`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum GpuSystem {
    /// NVIDIA DGX H100: 8 H100 SXM5 80GB, 8 compute rails.
    #[serde(rename = "dgx-h100")]
    DgxH100,
    /// NVIDIA DGX H200: 8 H200 SXM5 141GB, 8 compute rails.
    #[serde(rename = "dgx-h200")]
    DgxH200,
    /// NVIDIA DGX B200: 8 B200 180GB, 8 compute rails.
    #[serde(rename = "dgx-b200")]
    DgxB200,
    /// NVIDIA GB200 NVL72 compute tray: 4 GPUs, 4 compute rails, 18 trays per rack.
    #[serde(rename = "gb200-nvl72")]
    Gb200Nvl72,
}

impl GpuSystem {
    /// Every model, in catalog order.
    pub const ALL: [GpuSystem; 4] = [
        Self::DgxH100,
        Self::DgxH200,
        Self::DgxB200,
        Self::Gb200Nvl72,
    ];

    /// The catalog identifier (`dgx-h100`).
    pub fn id(self) -> &'static str {
        match self {
            Self::DgxH100 => "dgx-h100",
            Self::DgxH200 => "dgx-h200",
            Self::DgxB200 => "dgx-b200",
            Self::Gb200Nvl72 => "gb200-nvl72",
        }
    }

    /// Parses a catalog identifier.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }
}

impl std::fmt::Display for GpuSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}
