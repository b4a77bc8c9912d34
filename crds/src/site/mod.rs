//! Site blueprints: the few numbers an AI Factory or Gigafactory starts from
//! (`SiteBlueprint`), their validation, the sizing that follows the NVIDIA DGX
//! SuperPOD reference architectures (`plan`), the cabling and Slurm topology of
//! the compute fabric, and the fabbrica objects the site declares. All pure.

mod cabling;
mod defaults;
mod fat_tree;
mod objects;
mod plan;
mod slurm;
mod spec;
mod switches;
mod unknown;
mod validate;

pub use cabling::{Cable, CableKind, Names, for_each_cable};
pub use defaults::{NewSite, new_site, tebibytes};
pub use fat_tree::{FatTree, TooLarge};
pub use objects::{POOL, SiteObjects, build};
pub use plan::{
    ComputeFabricPlan, ManagementFabricPlan, OutOfBandPlan, Plan, PowerPlan, RackLayout,
    StoragePlan, StorageTierPlan, TreeFabricPlan, grouped, plan,
};
pub use slurm::topology_conf;
pub use spec::*;
pub use switches::{SwitchSpec, switch, switches};
pub use unknown::{UnknownField, unknown_fields};
pub use validate::validate;

#[cfg(test)]
mod tests;
