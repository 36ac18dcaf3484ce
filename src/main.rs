use std::error::Error;
use std::process::ExitCode;

use clap::Parser as _;

use cavra_runtime::cli::Cli;
use cavra_runtime::{daemon, daemon_client, lifecycle, oneshot, verify_evidence};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cavra-runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, Box<dyn Error>> {
    if let Some(action) = cli.mode.lifecycle {
        Ok(lifecycle::run(cli, action)?)
    } else if cli.mode.verify_evidence {
        Ok(verify_evidence::run(cli)?)
    } else if cli.mode.serve {
        daemon::serve(cli)?;
        Ok(ExitCode::SUCCESS)
    } else if cli.mode.daemon {
        Ok(daemon_client::run(cli)?)
    } else {
        oneshot::run(cli)?;
        Ok(ExitCode::SUCCESS)
    }
}
