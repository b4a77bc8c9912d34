//! The `fabbrica` command line: render site blueprints, size fabrics, print and
//! validate the API. Also usable as a kubectl plugin (`kubectl fabbrica`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod blueprint_file;
pub mod commands;
pub mod documents;
pub mod fleet_file;
pub mod output;
pub mod schema;
pub mod site_args;
pub mod site_render;
pub mod yaml;

/// Infrastructure-as-code for AI Factories and Gigafactories.
#[derive(Debug, Parser)]
#[command(name = "fabbrica", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (or write them to a folder).
    Crds(commands::crds::Args),
    /// Check Factory, Workspace and JupyterEnvironment specs and list every problem.
    Validate(commands::validate::Args),
    /// Size a site: nodes, scalable units, racks, fabrics, storage and power.
    Plan(commands::plan::Args),
    /// Write a new site blueprint, or render one into a GitOps repository.
    Blueprint(commands::blueprint::Args),
    /// Show a factory at a glance: pools, tiers, workspaces and their notebooks.
    Status(commands::status::Args),
    /// GPU-hours used per workspace and month, from a live cluster (text, csv or json).
    Usage(commands::usage::Args),
    /// Many sites at once: plan a fleet, render every site, read every site's cluster.
    Fleet(commands::fleet::Args),
}

/// Runs a parsed command line; the exit code says whether the input was valid.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crds(args) => commands::crds::run(args),
        Command::Validate(args) => commands::validate::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Blueprint(args) => commands::blueprint::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Usage(args) => commands::usage::run(args),
        Command::Fleet(args) => commands::fleet::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
