//! The command line: the flags, and one module per mode. Each mode takes the flag groups it reads, not the whole
//! command line. A flag the mode does not read is an error ([`mode_flags`]).
//!
//! | mode | module |
//! |---|---|
//! | `--serve` | [`serve`] |
//! | `--daemon` (ask a running daemon) | [`ask`] |
//! | `--hook <agent>` (answer an agent's pre-tool hook) | [`hook`] |
//! | none (evaluate one request here) | [`oneshot`] |
//! | `--verify-evidence` | [`verify`] |
//! | `--metrics` | [`metrics`] |
//! | `--check` (the configuration, without serving) | [`check`] |
//! | `--reload` (ask the daemon to reload and wait) | [`reload`] |
//! | `--completions SHELL` | [`completions`] |
//! | `--lifecycle start\|status\|stop` | [`lifecycle`] |
//! | `--json-field NAME` (one field of a JSON object, for scripts) | [`json_field`] |

pub mod ask;
pub mod check;
pub mod completions;
pub mod flags;
pub mod hook;
pub mod io;
pub mod json_field;
pub mod lifecycle;
pub mod metrics;
pub mod mode_flags;
pub mod oneshot;
pub mod reload;
pub mod serve;
pub mod verify;

use std::error::Error;
use std::process::ExitCode;

pub use flags::Cli;

/// Runs the mode the flags select; the exit code is the mode's, an error is printed by `main`.
pub fn run(cli: &Cli) -> Result<ExitCode, Box<dyn Error>> {
    mode_flags::check(cli)?;
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
    } else if let Some(agent) = mode.hook {
        Ok(hook::run(
            agent,
            &cli.hook,
            &cli.client,
            &cli.serve.socket,
            &cli.serve.policy,
        ))
    } else if let Some(name) = &mode.json_field {
        json_field::run(name, &cli.client.input)?;
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(oneshot::run(&cli.serve.policy, &cli.client)?)
    }
}
