//! The command line: the flags, and one module per mode. Each mode takes the flag groups it reads, not the whole
//! command line. A flag the mode does not read is an error ([`mode_flags`]).
//!
//! | mode | module |
//! |---|---|
//! | `--serve` | [`serve`] |
//! | `--daemon` (ask a running daemon) | [`ask`] |
//! | none (evaluate one request here) | [`oneshot`] |
//! | `--verify-evidence` | [`verify`] |
//! | `--lifecycle start\|status\|stop` | [`lifecycle`] |

pub mod ask;
pub mod flags;
pub mod io;
pub mod lifecycle;
pub mod mode_flags;
pub mod oneshot;
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
