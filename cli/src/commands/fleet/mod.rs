//! `fabbrica fleet`: many sites at once. `plan` rolls a fleet file up by site and country,
//! `render` renders every site into a folder of its own, `status` reads every site's cluster.

use std::process::ExitCode;

mod plan;
mod render;
pub mod status;

/// A fleet of sites: `plan`, `render`, `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The fleet subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// GPUs, nodes, clusters, switches, racks and power by site, by country and in all.
    Plan(plan::Args),
    /// Render every site into a folder of its own (as `blueprint render` renders one).
    Render(render::Args),
    /// Read every site's cluster (its kubeconfig context): GPUs ready of expected, tenants, budgets.
    Status(status::Args),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Plan(args) => plan::run(args),
        Command::Render(args) => render::run(args),
        Command::Status(args) => status::run(args),
    }
}
