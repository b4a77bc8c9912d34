use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fabbrica::Cli::parse();
    match fabbrica::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
