//! The access-mode catalog (`blueprints/catalog/access-modes.yaml`): the EuroHPC AI Factories'
//! ways of granting GPU-hours, which bound a Workspace's `spec.allocation`. A Factory that lists
//! its own `spec.accessModes` replaces them for its workspaces.

use std::sync::LazyLock;

use serde::Deserialize;

use crate::v1alpha1::{AccessMode, FactorySpec};

#[derive(Deserialize)]
struct CatalogFile {
    modes: Vec<AccessMode>,
}

static MODES: LazyLock<Vec<AccessMode>> = LazyLock::new(|| {
    let file: CatalogFile =
        serde_saphyr::from_str(include_str!("../../blueprints/catalog/access-modes.yaml"))
            .expect("blueprints/catalog/access-modes.yaml is valid (checked by a unit test)");
    file.modes
});

/// The shipped access modes (EuroHPC's).
pub fn catalog() -> &'static [AccessMode] {
    &MODES
}

/// The access modes that bound the allocations of `factory`'s workspaces: its own
/// `spec.accessModes` when it lists any, else the shipped catalog; the shipped catalog when the
/// Factory is not known.
pub fn modes_of(factory: Option<&FactorySpec>) -> &[AccessMode] {
    match factory {
        Some(f) if !f.access_modes.is_empty() => &f.access_modes,
        _ => catalog(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_ships_the_eurohpc_modes() {
        let ids: Vec<_> = catalog().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["playground", "fast-lane", "large-scale", "science"]);
        let fast = &catalog()[1];
        assert!(fast.gpu_hours.admits(50_000.0) && !fast.gpu_hours.admits(50_001.0));
        let large = &catalog()[2];
        assert!(!large.gpu_hours.admits(50_000.0) && large.gpu_hours.admits(50_001.0));
        assert_eq!(large.months.allowed, [3, 6, 12]);
        assert_eq!(catalog()[3].months.allowed, [6]);
    }
}
