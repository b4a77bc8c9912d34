//! One module per subcommand.

pub mod blueprint;
pub mod crds;
pub mod fleet;
pub mod plan;
pub mod status;
pub mod usage;
pub mod validate;
