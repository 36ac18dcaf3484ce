//! The command line: the flags, and one module per mode. Each mode takes the flag groups it reads, not the whole
//! command line.
//!
//! | mode | module |
//! |---|---|
//! | `--serve` | [`serve`] |
//! | `--daemon` (ask a running daemon) | [`ask`] |
//! | none (evaluate one request here) | [`oneshot`] |
//! | `--verify-evidence` | [`verify`] |
//! | `--metrics` | [`metrics`] |
//! | `--check` (the configuration, without serving) | [`check`] |
//! | `--reload` (ask the daemon to reload and wait) | [`reload`] |
//! | `--completions SHELL` | [`completions`] |
//! | `--lifecycle start\|status\|stop` | [`lifecycle`] |

pub mod ask;
pub mod check;
pub mod completions;
pub mod flags;
pub mod io;
pub mod lifecycle;
pub mod metrics;
pub mod oneshot;
pub mod reload;
pub mod serve;
pub mod verify;

use std::error::Error;
use std::process::ExitCode;

pub use flags::Cli;

/// Runs the mode the flags select; the exit code is the mode's, an error is printed by `main`.
pub fn run(cli: &Cli) -> Result<ExitCode, Box<dyn Error>> {
    let mode = &cli.mode;
    if let Some(action) = mode.lifecycle {
        Ok(lifecycle::run(action, &cli.lifecycle, &cli.serve)?)
    } else if mode.verify_evidence {
        Ok(verify::run(&cli.serve.evidence)?)
    } else if let Some(shell) = mode.completions {
        completions::run(shell)?;
        Ok(ExitCode::SUCCESS)
    } else if mode.check {
        check::run(&cli.serve)?;
        Ok(ExitCode::SUCCESS)
    } else if mode.reload {
        Ok(reload::run(&cli.client, &cli.serve.socket)?)
    } else if mode.metrics {
        metrics::run(&cli.client, &cli.serve.socket)?;
        Ok(ExitCode::SUCCESS)
    } else if mode.serve {
        serve::run(&cli.serve)?;
        Ok(ExitCode::SUCCESS)
    } else if mode.daemon {
        Ok(ask::run(&cli.client, &cli.serve.socket, &cli.serve.auth)?)
    } else {
        oneshot::run(&cli.serve.policy, &cli.client)?;
        Ok(ExitCode::SUCCESS)
    }
}
