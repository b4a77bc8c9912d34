//! `fabbrica.io/v1alpha1`: Factory, Workspace, JupyterEnvironment and Maintenance.

mod allocation;
mod common;
mod factory;
mod jupyter;
mod maintenance;
mod workspace;

pub use allocation::*;
pub use common::*;
pub use factory::*;
pub use jupyter::*;
pub use maintenance::*;
pub use workspace::*;
