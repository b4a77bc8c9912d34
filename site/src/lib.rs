//! Site blueprints: the few numbers an AI Factory or Gigafactory starts from
//! (`SiteBlueprint`), their validation, the sizing that follows the NVIDIA DGX
//! SuperPOD reference architectures (`plan`), the cabling of the compute fabric
//! and its exports (Slurm `topology.conf`, `topology.json`, `cabling.csv`), and
//! the fabbrica objects the site declares. All pure.
//!
//! The pipeline: [`validate`] a blueprint into a [`ValidBlueprint`], [`plan`] it,
//! then [`build`] its objects and export its fabric from the plan.

mod cabling;
pub mod cells;
pub mod conventions;
mod defaults;
pub mod exports;
mod fat_tree;
pub mod fleet;
mod objects;
mod sizing;
mod spec;
mod switches;
mod unknown;
mod validate;

pub use cabling::{Cable, CableKind, Names, for_each_cable};
pub use cells::{Cell, DEFAULT_MAX_NODES, LimitTooSmall};
pub use defaults::{NewSite, new_site, tebibytes};
pub use fat_tree::{FatTree, TooLarge};
pub use objects::{Refused, SiteObjects, build};
pub use sizing::{
    ComputeFabricPlan, ManagementFabricPlan, OutOfBandPlan, Plan, PowerPlan, RackLayout,
    StoragePlan, StorageTierPlan, TreeFabricPlan, grouped, plan,
};
pub use spec::*;
pub use switches::{SwitchSpec, switch, switches};
pub use unknown::{UnknownField, unknown_fields, unknown_fleet_fields};
pub use validate::{ValidBlueprint, validate};

#[cfg(test)]
mod tests;
