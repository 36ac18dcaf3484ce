use std::process::ExitCode;

use cavra_runtime::cmd::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::from_command_line();
    cmd::run(&cli).unwrap_or_else(|error| {
        eprintln!("cavra-runtime: {error}");
        ExitCode::FAILURE
    })
}
