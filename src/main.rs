use std::process::ExitCode;

use clap::Parser as _;

use cavra_runtime::cmd::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::run(&cli).unwrap_or_else(|error| {
        eprintln!("cavra-runtime: {error}");
        ExitCode::FAILURE
    })
}
