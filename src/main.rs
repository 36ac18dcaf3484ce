use std::process::ExitCode;

use clap::Parser as _;

use cavra_runtime::cli::Cli;
use cavra_runtime::oneshot;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match oneshot::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cavra-runtime: {error}");
            ExitCode::FAILURE
        }
    }
}
