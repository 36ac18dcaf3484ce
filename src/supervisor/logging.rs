//! Logging: to the journal when systemd connected standard error to it (`JOURNAL_STREAM`) or when asked, else to
//! standard error as text or JSON lines. Journal fields keep their plain names (`DECISION`, `RULE_ID`, ...) so
//! `journalctl -u cavra-runtime DECISION=block` finds every block. Standard error is written in batches by a
//! background thread (see [`super::log_writer`]); [`LogGuard`] writes out what is queued when it drops.

use std::io::IsTerminal as _;

use clap::ValueEnum;

use super::log_writer::{Flusher, batched_stderr};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// The journal when `JOURNAL_STREAM` is set, else standard error.
    Auto,
    Journald,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot log to the journal: {0}")]
pub struct LoggingError(std::io::Error);

/// Keeps the standard-error writer running; dropping it writes out every queued line.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _flusher: Option<Flusher>,
}

/// Installs the global subscriber. `RUST_LOG` overrides the `info` default.
pub fn init(target: LogTarget, format: LogFormat) -> Result<LogGuard, LoggingError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = match target {
        LogTarget::Journald => true,
        LogTarget::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
        LogTarget::Stderr => false,
    };
    let registry = tracing_subscriber::registry().with(filter);
    if journald {
        let layer = tracing_journald::layer()
            .map_err(LoggingError)?
            .with_field_prefix(None)
            .with_syslog_identifier("cavra-runtime".to_owned());
        registry.with(layer).init();
        return Ok(LogGuard { _flusher: None });
    }
    let (writer, flusher) = batched_stderr();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => registry.with(stderr).init(),
        LogFormat::Json => registry.with(stderr.json().flatten_event(true)).init(),
    }
    Ok(LogGuard {
        _flusher: Some(flusher),
    })
}
