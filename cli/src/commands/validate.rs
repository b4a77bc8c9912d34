//! `fabbrica validate`: every problem of every document, with file, index and field path.

use std::path::PathBuf;
use std::process::ExitCode;

/// Check specs and list every problem.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML (multi-document) or JSON files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
