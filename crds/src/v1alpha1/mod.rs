//! `fabbrica.io/v1alpha1`: Factory, Workspace and JupyterEnvironment.

mod allocation;
mod common;
mod factory;
mod jupyter;
mod workspace;

pub use allocation::*;
pub use common::*;
pub use factory::*;
pub use jupyter::*;
pub use workspace::*;
