//! `--completions SHELL`: the shell completion script for every flag, generated from the flag definitions
//! (clap_complete), so it never falls behind them. The packages install the bash, zsh and fish scripts, generated
//! with this mode into packaging/completions/ (a test keeps them current).

use std::io::{self, Write as _};

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

pub fn run(shell: Shell) -> io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cavra-runtime", &mut script);
    io::stdout().lock().write_all(&script)
}
