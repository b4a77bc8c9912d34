//! `fabbrica blueprint`: write a new site blueprint, or render one into a
//! GitOps repository with the sizing report, diagrams, BOM and cabling.

use std::process::ExitCode;

mod new;
pub mod render;

/// Site blueprints: `new` writes one, `render` turns one into a repository.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The blueprint subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a complete, commented site blueprint with sound defaults for a tier.
    New(new::Args),
    /// Render a site into a GitOps repository: report, diagrams, BOM, cabling, manifests.
    Render(render::Args),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::New(args) => new::run(args),
        Command::Render(args) => render::run(args),
    }
}
