//! The GPU system catalog (`blueprints/catalog/systems.yaml`), shared by the
//! operator's validation and the CLI's sizing.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::v1alpha1::GpuSystem;

/// One GPU system model as the catalog describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemSpec {
    /// Catalog identifier, as used in specs (`dgx-h100`).
    pub id: String,
    /// Marketing name (`NVIDIA DGX H100`).
    pub name: String,
    /// GPU model inside the system.
    pub gpu: String,
    /// Memory per GPU in GB.
    pub gpu_memory_gb: u32,
    /// GPUs per Kubernetes Node (a DGX chassis or an NVL72 compute tray).
    pub gpus_per_node: u32,
    /// Compute-fabric ports per node, one rail each.
    pub compute_rails: u32,
    /// The compute NIC.
    pub compute_nic: String,
    /// Compute ports served by one transceiver cage on the node (2 where a twin-port OSFP
    /// carries two rails, as on the DGX H100 CPU tray).
    #[serde(default = "one")]
    pub compute_ports_per_cage: u32,
    /// Ports per node on the storage and in-band management fabric.
    pub storage_ports: u32,
    /// Maximum power draw per node in kW.
    pub node_power_kw: f64,
    /// Rack units per node.
    pub rack_units: u32,
    /// Nodes per rack in the reference design.
    pub nodes_per_rack: u32,
    /// Nodes whose GPUs share one NVLink domain: 1 where NVLink stays inside the node (DGX),
    /// a rack's trays on multi-node NVLink (GB200 NVL72: 18).
    #[serde(default = "one")]
    pub nvlink_domain_nodes: u32,
    /// MIG profiles the GPU supports.
    pub mig_profiles: Vec<String>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
struct CatalogFile {
    systems: Vec<SystemSpec>,
}

static SYSTEMS: LazyLock<Vec<SystemSpec>> = LazyLock::new(|| {
    let file: CatalogFile =
        serde_saphyr::from_str(include_str!("../../blueprints/catalog/systems.yaml"))
            .expect("blueprints/catalog/systems.yaml is valid (checked by a unit test)");
    file.systems
});

/// Every system of the catalog.
pub fn systems() -> &'static [SystemSpec] {
    &SYSTEMS
}

/// The catalog entry of a system model.
pub fn system(model: GpuSystem) -> &'static SystemSpec {
    let id = model.id();
    SYSTEMS
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("GPU system {id} has a catalog entry (checked by a unit test)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_model_has_a_catalog_entry() {
        for model in GpuSystem::ALL {
            let spec = system(model);
            assert!(spec.gpus_per_node > 0 && spec.compute_rails > 0, "{spec:?}");
            assert!(!spec.mig_profiles.is_empty(), "{spec:?}");
        }
        assert_eq!(systems().len(), GpuSystem::ALL.len());
    }
}
