//! Logging: to the journal when systemd connected standard error to it (`JOURNAL_STREAM`) or when asked, else to
//! standard error (or `--log-file`) as text or JSON lines. Journal fields keep their plain names (`DECISION`,
//! `RULE_ID`, ...) so `journalctl -u cavra-runtime DECISION=block` finds every block. Standard error is written in
//! batches by a background thread (see [`super::log_writer`]); [`LogGuard`] writes out what is queued when it drops.
//! The journal exists only on Linux; on macOS the log goes to `--log-file` (the launchd plist sets it) or stderr.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::log_file::LogFile;
use super::log_writer::{Flusher, batched, batched_stderr};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// `--log-file` when given, else the journal when `JOURNAL_STREAM` is set (Linux), else standard error.
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
pub enum LoggingError {
    #[error("cannot log to the journal: {0}")]
    Journal(std::io::Error),
    #[error(
        "--log-target journald: there is no systemd journal on this system; log to stderr (under launchd, the plist's StandardErrorPath) or to --log-file"
    )]
    NoJournal,
    #[error("--log-file {} needs --log-target auto or stderr, not journald", .0.display())]
    FileAndJournal(PathBuf),
    #[error("cannot open the log file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: crate::fsutil::FsError,
    },
}

/// Where the log goes.
#[derive(Debug, PartialEq, Eq)]
enum Sink<'a> {
    Journal,
    Stderr,
    File(&'a Path),
}

/// Decides the sink from the flags, whether systemd connected standard error to the journal, and whether this
/// system has a journal at all.
fn sink(
    target: LogTarget,
    file: Option<&Path>,
    journal_stream: bool,
    journal_exists: bool,
) -> Result<Sink<'_>, LoggingError> {
    match (target, file) {
        (LogTarget::Journald, Some(path)) => Err(LoggingError::FileAndJournal(path.to_owned())),
        (LogTarget::Journald, None) if !journal_exists => Err(LoggingError::NoJournal),
        (LogTarget::Journald, None) => Ok(Sink::Journal),
        (_, Some(path)) => Ok(Sink::File(path)),
        (LogTarget::Auto, None) if journal_stream && journal_exists => Ok(Sink::Journal),
        (LogTarget::Auto | LogTarget::Stderr, None) => Ok(Sink::Stderr),
    }
}

/// Keeps the standard-error writer running; dropping it writes out every queued line.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _flusher: Option<Flusher>,
}

/// Installs the global subscriber. `RUST_LOG` overrides the `info` default.
pub fn init(target: LogTarget, format: LogFormat, file: Option<&Path>) -> Result<LogGuard, LoggingError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal_stream = std::env::var_os("JOURNAL_STREAM").is_some();
    let sink = sink(target, file, journal_stream, cfg!(target_os = "linux"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let (writer, flusher) = match sink {
        Sink::Journal => {
            let layer = tracing_journald::layer()
                .map_err(LoggingError::Journal)?
                .with_field_prefix(None)
                .with_syslog_identifier("cavra-runtime".to_owned());
            registry.with(layer).init();
            return Ok(LogGuard { _flusher: None });
        }
        Sink::Stderr => batched_stderr(),
        Sink::File(path) => {
            let file = LogFile::open(path, true).map_err(|source| LoggingError::File {
                path: path.to_owned(),
                source,
            })?;
            batched(Box::new(file))
        }
    };
    let stderr = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(false);
    match format {
        LogFormat::Text => registry.with(stderr).init(),
        LogFormat::Json => registry.with(stderr.json().flatten_event(true)).init(),
    }
    Ok(LogGuard {
        _flusher: Some(flusher),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_follows_the_flags_and_the_platform() {
        let path = Path::new("/var/log/cavra-runtime.log");
        let file = Some(path);
        let on_linux = |target, file, stream| sink(target, file, stream, true);
        assert_eq!(on_linux(LogTarget::Auto, None, true).unwrap(), Sink::Journal);
        assert_eq!(on_linux(LogTarget::Auto, None, false).unwrap(), Sink::Stderr);
        assert_eq!(on_linux(LogTarget::Auto, file, true).unwrap(), Sink::File(path));
        assert_eq!(on_linux(LogTarget::Stderr, None, true).unwrap(), Sink::Stderr);
        assert_eq!(on_linux(LogTarget::Stderr, file, false).unwrap(), Sink::File(path));
        assert_eq!(on_linux(LogTarget::Journald, None, false).unwrap(), Sink::Journal);
        assert_eq!(
            on_linux(LogTarget::Journald, file, false).unwrap_err().to_string(),
            "--log-file /var/log/cavra-runtime.log needs --log-target auto or stderr, not journald"
        );

        // macOS: no journal. auto is standard error even if something set JOURNAL_STREAM; journald is an error.
        let on_macos = |target, file, stream| sink(target, file, stream, false);
        assert_eq!(on_macos(LogTarget::Auto, None, true).unwrap(), Sink::Stderr);
        assert_eq!(on_macos(LogTarget::Auto, file, false).unwrap(), Sink::File(path));
        let error = on_macos(LogTarget::Journald, None, false).unwrap_err();
        assert!(matches!(error, LoggingError::NoJournal));
        assert!(
            error
                .to_string()
                .starts_with("--log-target journald: there is no systemd journal on this system"),
            "{error}"
        );
    }
}
