//! Which flags each mode reads. A flag given on the command line that the mode does not read is an error naming the
//! flag and the mode, never silently ignored (values from the environment are not checked: a service's environment
//! file configures the daemon, not every command run beside it). The reference's flags that carried a secret are
//! refused in every mode, saying what to use instead.

use std::collections::BTreeSet;

use clap::{Args, Command};

use super::flags::{
    AuthArgs, Cli, EvidenceArgs, HookArgs, LifecycleAction, LifecycleArgs, LimitArgs, LogArgs, PolicyArgs, SocketArgs,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error(
        "{flag} is not accepted: a secret on the command line is visible to every local user (ps, \
         /proc/PID/cmdline) and stays in shell history. Give it in a file only you can read (mode 0600) with \
         {file_flag} FILE, or as the systemd credential {credential} (LoadCredential=), or in the environment \
         variable {env}{id_note}"
    )]
    SecretOnCommandLine {
        flag: &'static str,
        file_flag: &'static str,
        credential: &'static str,
        env: &'static str,
        id_note: &'static str,
    },
    #[error("{flag} is not used by {mode}: {why}")]
    NotRead { flag: String, mode: String, why: String },
}

/// The mode a command line selects, for the flags it reads and for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    Daemon,
    Hook,
    JsonField,
    Metrics,
    Check,
    Reload,
    Completions,
    VerifyEvidence,
    Lifecycle(LifecycleAction),
    OneShot,
}

impl Mode {
    pub fn of(cli: &Cli) -> Mode {
        let mode = &cli.mode;
        match mode.lifecycle {
            Some(action) => Mode::Lifecycle(action),
            None if mode.verify_evidence => Mode::VerifyEvidence,
            None if mode.completions.is_some() => Mode::Completions,
            None if mode.check => Mode::Check,
            None if mode.reload => Mode::Reload,
            None if mode.metrics => Mode::Metrics,
            None if mode.serve => Mode::Serve,
            None if mode.daemon => Mode::Daemon,
            None if mode.hook.is_some() => Mode::Hook,
            None if mode.json_field.is_some() => Mode::JsonField,
            None => Mode::OneShot,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Serve => "--serve",
            Mode::Daemon => "--daemon",
            Mode::Hook => "--hook",
            Mode::JsonField => "--json-field",
            Mode::Metrics => "--metrics",
            Mode::Check => "--check",
            Mode::Reload => "--reload",
            Mode::Completions => "--completions",
            Mode::VerifyEvidence => "--verify-evidence",
            Mode::Lifecycle(LifecycleAction::Start) => "--lifecycle start",
            Mode::Lifecycle(LifecycleAction::Status) => "--lifecycle status",
            Mode::Lifecycle(LifecycleAction::Stop) => "--lifecycle stop",
            Mode::OneShot => "the one-shot mode (no mode flag)",
        }
    }

    const ALL: [Mode; 13] = [
        Mode::Serve,
        Mode::Daemon,
        Mode::Hook,
        Mode::JsonField,
        Mode::Metrics,
        Mode::Check,
        Mode::Reload,
        Mode::Completions,
        Mode::VerifyEvidence,
        Mode::Lifecycle(LifecycleAction::Start),
        Mode::Lifecycle(LifecycleAction::Status),
        Mode::Lifecycle(LifecycleAction::Stop),
        Mode::OneShot,
    ];

    /// The flags (clap ids) this mode reads, besides the mode flags.
    fn reads(self) -> BTreeSet<String> {
        let listed = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect::<BTreeSet<_>>();
        match self {
            Mode::Serve => serve_flags(),
            Mode::Lifecycle(LifecycleAction::Start) => {
                let mut ids = serve_flags();
                ids.extend(group::<LifecycleArgs>());
                ids
            }
            Mode::Lifecycle(LifecycleAction::Status | LifecycleAction::Stop) => {
                listed(&["socket", "pid", "lifecycle_timeout"])
            }
            Mode::Daemon => listed(&[
                "socket",
                "input",
                "exit_code",
                "client_timeout",
                "expect_server_uid",
                "runner_auth_claims",
                "runner_auth_oidc_token_file",
                "runner_auth_key_file",
                "runner_auth_key_id",
            ]),
            // The hook asks the daemon as --daemon does, or decides itself with the policy flags.
            Mode::Hook => {
                let mut ids = group::<HookArgs>();
                ids.extend(group::<PolicyArgs>());
                ids.extend(listed(&["socket", "client_timeout", "expect_server_uid"]));
                ids
            }
            Mode::JsonField => listed(&["input"]),
            Mode::Metrics => listed(&["socket", "client_timeout", "expect_server_uid", "output"]),
            // Everything the daemon would read, checked without serving.
            Mode::Check => serve_flags(),
            Mode::Reload => listed(&["socket", "client_timeout", "expect_server_uid", "reload_timeout"]),
            Mode::Completions => listed(&[]),
            Mode::VerifyEvidence => listed(&[
                "evidence_log",
                "evidence_signing_key_file",
                "evidence_ed25519_key_file",
                "evidence_signing_key_id",
                "evidence_public_key",
                "journal",
            ]),
            // Whether --exit-code changes anything here is the one-shot mode's own business.
            Mode::OneShot => {
                let mut ids = group::<PolicyArgs>();
                ids.extend(listed(&["input", "exit_code"]));
                ids
            }
        }
    }
}

/// What `--serve` reads: every group of the daemon's, without the client-only and verify-only flags.
fn serve_flags() -> BTreeSet<String> {
    let not_served = ["journal", "runner_auth_claims", "runner_auth_oidc_token_file"];
    let mut ids = group::<PolicyArgs>();
    ids.extend(group::<SocketArgs>());
    ids.extend(group::<LimitArgs>());
    ids.extend(group::<LogArgs>());
    ids.extend(group::<EvidenceArgs>());
    ids.extend(group::<AuthArgs>());
    ids.retain(|id| !not_served.contains(&id.as_str()));
    ids
}

/// The clap ids of a flag group's flags.
fn group<T: Args>() -> BTreeSet<String> {
    T::augment_args(Command::new("group"))
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect()
}

/// Refuses the reference's secret-bearing flags, then any flag given on the command line that the mode does not
/// read.
pub fn check(cli: &Cli) -> Result<(), FlagError> {
    let removed = &cli.removed;
    if removed.evidence_signing_key.is_some() {
        return Err(FlagError::SecretOnCommandLine {
            flag: "--evidence-signing-key",
            file_flag: "--evidence-signing-key-file",
            credential: "evidence-signing-key",
            env: "CAVRA_DAEMON_EVIDENCE_HMAC_KEY",
            id_note: " (--evidence-signing-key-id only names the key; it is not the key)",
        });
    }
    if removed.runner_auth_key.is_some() {
        return Err(FlagError::SecretOnCommandLine {
            flag: "--runner-auth-key",
            file_flag: "--runner-auth-key-file",
            credential: "runner-auth-key",
            env: "CAVRA_RUNNER_AUTH_HMAC_KEY",
            id_note: " (--runner-auth-key-id only names the key; it is not the key)",
        });
    }
    if removed.runner_auth_oidc_token.is_some() {
        return Err(FlagError::SecretOnCommandLine {
            flag: "--runner-auth-oidc-token",
            file_flag: "--runner-auth-oidc-token-file",
            credential: "runner-oidc-token",
            env: "CAVRA_RUNNER_AUTH_OIDC_TOKEN",
            id_note: "",
        });
    }
    let mode = Mode::of(cli);
    let reads = mode.reads();
    let modes = group::<super::flags::Mode>();
    match cli.given.iter().find(|id| !modes.contains(*id) && !reads.contains(*id)) {
        None => Ok(()),
        Some(id) => Err(FlagError::NotRead {
            flag: flag_name(id),
            mode: mode.name().to_owned(),
            why: why_not(mode, id),
        }),
    }
}

/// Why `mode` does not read the flag `id`, and what to do.
fn why_not(mode: Mode, id: &str) -> String {
    match (mode, id) {
        (Mode::Serve, "user" | "group") => "--serve never changes its user or group. Start it as the user it \
                                            should run as (systemd User=, launchd UserName, `runuser -u USER --`), \
                                            or use --lifecycle start --user USER, which gives up root for good"
            .to_owned(),
        (Mode::Daemon, "evidence_log") => "the daemon records every decision in its own evidence log (start it \
                                           with --evidence-log) and the answer's evidence_refs name that record; a \
                                           second record written by the client, as the Go daemon's client wrote, \
                                           would fork the log's hash chain. Keep the printed answer instead"
            .to_owned(),
        _ => {
            let readers: Vec<&str> = Mode::ALL
                .iter()
                .filter(|other| other.reads().contains(id))
                .map(|other| other.name())
                .collect();
            match readers.split_last() {
                None => "no mode reads it".to_owned(),
                Some((last, [])) => format!("only {last} reads it; leave it out here"),
                Some((last, others)) => format!("only {} and {last} read it; leave it out here", others.join(", ")),
            }
        }
    }
}

/// The `--long` name of the flag with clap id `id`.
fn flag_name(id: &str) -> String {
    <Cli as clap::CommandFactory>::command()
        .get_arguments()
        .find(|arg| arg.get_id().as_str() == id)
        .and_then(|arg| arg.get_long())
        .map_or_else(|| id.to_owned(), |long| format!("--{long}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn every_flag_is_read_by_some_mode() {
        let modes = group::<super::super::flags::Mode>();
        let removed = group::<super::super::flags::RemovedArgs>();
        let unread: Vec<String> = Cli::command()
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .filter(|id| !modes.contains(id) && !removed.contains(id))
            .filter(|id| !Mode::ALL.iter().any(|mode| mode.reads().contains(id)))
            .collect();
        assert_eq!(
            unread,
            Vec::<String>::new(),
            "flags no mode reads: add them to Mode::reads"
        );
    }

    #[test]
    fn only_flags_given_on_the_command_line_count() {
        let cli = Cli::try_from_args(["cavra-runtime", "--daemon", "--socket", "s", "--client-timeout", "1s"]).unwrap();
        assert_eq!(cli.given, ["daemon", "socket", "client_timeout"]);
        assert_eq!(check(&cli), Ok(()));
        let cli = Cli::try_from_args(["cavra-runtime", "--daemon", "--registry", "r.json"]).unwrap();
        assert_eq!(
            check(&cli).unwrap_err().to_string(),
            "--registry is not used by --daemon: only --serve, --hook, --check, --lifecycle start and the one-shot mode (no mode flag) \
             read it; leave it out here"
        );
    }
}
