//! `fabbrica crds`: the CustomResourceDefinitions, generated from the API types.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fabbrica_crds::crd;

/// Print the CRDs as one YAML stream, ready for `kubectl apply --server-side -f -`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one file per CRD (`<plural>.fabbrica.io.yaml`) into this folder instead of printing.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.write {
        None => print!("{}", crd::all_yaml()),
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in crd::all() {
                let path = dir.join(crd::file_name(&crd));
                std::fs::write(&path, crd::to_yaml(&crd))
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
