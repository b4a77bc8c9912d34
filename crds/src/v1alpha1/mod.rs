//! `fabbrica.io/v1alpha1`: Factory, Workspace, JupyterEnvironment and Maintenance.

mod allocation;
mod common;
mod factory;
mod health;
mod jupyter;
mod maintenance;
mod workspace;

pub use allocation::*;
pub use common::*;
pub use factory::*;
pub use health::*;
pub use jupyter::*;
pub use maintenance::*;
pub use workspace::*;
