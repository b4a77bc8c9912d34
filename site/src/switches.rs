//! The switch catalog (`blueprints/catalog/switches.yaml`) the sizing draws from.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// One switch model as the catalog describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchSpec {
    /// Catalog identifier, as used in site specs (`qm9700`).
    pub id: String,
    /// Marketing name (`NVIDIA Quantum-2 QM9700`).
    pub name: String,
    /// Ports (the radix of the switch).
    pub ports: u32,
    /// Gigabits per second of one port.
    pub port_gbps: u32,
    /// Ports served by one transceiver cage (2 for twin-port OSFP).
    pub ports_per_cage: u32,
    /// Rack units.
    pub rack_units: u32,
    /// Maximum power in kW.
    pub power_kw: f64,
}

#[derive(Deserialize)]
struct CatalogFile {
    switches: Vec<SwitchSpec>,
}

static SWITCHES: LazyLock<Vec<SwitchSpec>> = LazyLock::new(|| {
    let file: CatalogFile =
        serde_saphyr::from_str(include_str!("../../blueprints/catalog/switches.yaml"))
            .expect("blueprints/catalog/switches.yaml is valid (checked by a unit test)");
    file.switches
});

/// Every switch of the catalog.
pub fn switches() -> &'static [SwitchSpec] {
    &SWITCHES
}

/// The catalog entry of a switch model, if there is one.
pub fn switch(id: &str) -> Option<&'static SwitchSpec> {
    SWITCHES.iter().find(|s| s.id == id)
}

/// A switch the sizing relies on being in the catalog.
pub(crate) fn known(id: &str) -> &'static SwitchSpec {
    switch(id).unwrap_or_else(|| panic!("switch {id} has a catalog entry (checked by a unit test)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_holds_the_switches_the_sizing_uses() {
        for id in ["qm9700", "q3400", "sn4600c", "sn2201"] {
            let s = known(id);
            assert!(
                s.ports > 0 && s.ports_per_cage > 0 && s.power_kw > 0.0,
                "{s:?}"
            );
        }
        assert_eq!(known("qm9700").ports, 64);
        assert_eq!(known("q3400").ports, 144);
    }
}
