//! Command-line flags. Every flag that configures the service can also come from its environment variable, so a
//! service manager's environment file can set it.

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser};

use cavra_runtime_client::ServerCheck;
use clap::ValueEnum;

use crate::auth::oidc::{JwksSource, OidcVerifier};
use crate::auth::pins::{PackPins, PinError};
use crate::auth::secret::Source;
use crate::auth::{HmacRunners, PeerPolicy, PeerPolicyError, RunnerAuthenticator, Secret, SecretError};
use crate::engine::path::workspace_root;
use crate::engine::{OtherPack, PathCase};
use crate::evidence::{EvidenceConfig, KeyError, MinFree, PublicKey, SigningKey, SyncMode, VerifyingKeys};
use crate::policy::{PolicyConfig, PolicySet, PolicySource};
use crate::server::listener::ListenOptions;
use crate::server::{DecisionLogMode, Decisions, Limits, Rate};
use crate::supervisor::logging::{LogFormat, LogTarget};

#[derive(Debug, Parser)]
#[command(
    name = "cavra-runtime",
    version,
    about = "Local policy-enforcement runtime for AI coding agents and CI runners",
    long_about = "Local policy-enforcement runtime for AI coding agents and CI runners.\n\n\
                  With no mode flag it evaluates one request (JSON, from --input) against the policy and prints \
                  the decision as indented JSON. --serve runs the daemon; --daemon asks a running daemon."
)]
pub struct Cli {
    #[command(flatten)]
    pub mode: Mode,

    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(flatten)]
    pub lifecycle: LifecycleArgs,

    #[command(flatten)]
    pub client: ClientArgs,

    #[command(flatten)]
    pub hook: HookArgs,

    #[command(flatten)]
    pub removed: RemovedArgs,

    /// The flags given on the command line (their clap ids), filled by [`Cli::from_command_line`]: a flag the mode
    /// does not read is an error ([`super::mode_flags`]); one set only in the environment is not.
    #[arg(skip)]
    pub given: Vec<String>,
}

impl Cli {
    /// Parses the process's arguments (on an error, clap prints it and exits) and notes which flags were given.
    pub fn from_command_line() -> Self {
        Self::from_matches(&Self::command().get_matches())
    }

    /// As [`Cli::from_command_line`], from `args` (the program name first).
    pub fn try_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Ok(Self::from_matches(&Self::command().try_get_matches_from(args)?))
    }

    fn from_matches(matches: &clap::ArgMatches) -> Self {
        let mut cli = Self::from_arg_matches(matches).unwrap_or_else(|error| error.exit());
        cli.given = Self::command()
            .get_arguments()
            .map(|arg| arg.get_id().as_str())
            .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
            .map(str::to_owned)
            .collect();
        cli
    }
}

/// The reference's flags that carry a secret on the command line, accepted only to be refused with what to use
/// instead (see [`super::mode_flags`]). Without them clap would suggest the "similar" `--evidence-signing-key-id`,
/// which would put the secret into a key id and leave the log unsigned.
#[derive(Debug, Clone, Args)]
pub struct RemovedArgs {
    #[arg(long, hide = true, value_name = "KEY")]
    pub evidence_signing_key: Option<GivenSecret>,

    #[arg(long, hide = true, value_name = "KEY")]
    pub runner_auth_key: Option<GivenSecret>,

    #[arg(long, hide = true, value_name = "TOKEN")]
    pub runner_auth_oidc_token: Option<GivenSecret>,
}

/// A secret given on the command line: its text is dropped at once and never shown.
#[derive(Clone)]
pub struct GivenSecret;

impl std::fmt::Debug for GivenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<not kept>")
    }
}

impl std::str::FromStr for GivenSecret {
    type Err = std::convert::Infallible;

    fn from_str(_: &str) -> Result<Self, Self::Err> {
        Ok(GivenSecret)
    }
}

/// Everything `--serve` reads (and `--lifecycle start` passes on to the daemon it starts); the client modes borrow
/// the groups they share with it (policy, socket, runner key, evidence key).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    pub socket: SocketArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub logging: LogArgs,

    #[command(flatten)]
    pub evidence: EvidenceArgs,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// A key the daemon takes from an environment variable, and the systemd credential it belongs in instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvironmentKey {
    pub variable: &'static str,
    pub credential: &'static str,
    /// The flag that names a key file instead.
    pub flag: &'static str,
}

impl ServeArgs {
    /// The keys the daemon would take from the environment (the reference's variables), because no key file and
    /// no credential gives them.
    pub fn keys_from_environment(&self) -> Vec<EnvironmentKey> {
        let mut keys = vec![(
            self.auth.runner_auth_key_file.as_deref(),
            EnvironmentKey {
                variable: RUNNER_KEY_VARIABLE,
                credential: RUNNER_KEY_CREDENTIAL,
                flag: "--runner-auth-key-file",
            },
        )];
        if !self.evidence.evidence_log.is_empty() {
            keys.push((
                self.evidence.evidence_signing_key_file.as_deref(),
                EnvironmentKey {
                    variable: EVIDENCE_KEY_VARIABLE,
                    credential: EVIDENCE_KEY_CREDENTIAL,
                    flag: "--evidence-signing-key-file",
                },
            ));
        }
        keys.into_iter()
            .filter(|(file, key)| {
                matches!(
                    Secret::source(*file, key.credential, Some(key.variable)),
                    Some(Source::Environment(_))
                )
            })
            .map(|(_, key)| key)
            .collect()
    }
}

const RUNNER_KEY_CREDENTIAL: &str = "runner-auth-key";
const RUNNER_KEY_VARIABLE: &str = "CAVRA_RUNNER_AUTH_HMAC_KEY";
const EVIDENCE_KEY_CREDENTIAL: &str = "evidence-signing-key";
const EVIDENCE_KEY_VARIABLE: &str = "CAVRA_DAEMON_EVIDENCE_HMAC_KEY";

#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
#[command(next_help_heading = "Modes (at most one; none evaluates one request here)")]
pub struct Mode {
    /// Run the daemon: answer requests on the socket until SIGTERM or SIGINT; SIGHUP reloads the policy.
    #[arg(long)]
    pub serve: bool,

    /// Send one request (from --input) to a running daemon and print its decision.
    #[arg(long)]
    pub daemon: bool,

    /// Verify the evidence log given by --evidence-log and print a report; exit 1 when it does not verify.
    #[arg(long)]
    pub verify_evidence: bool,

    /// Check the whole --serve configuration (flags, policies, registry, pins, keys, runner authentication) without
    /// serving; print what would be served, or exit 1 with what is wrong.
    #[arg(long)]
    pub check: bool,

    /// Make the running daemon reload its policy (SIGHUP to the process serving --socket) and wait for the outcome:
    /// exit 0 once the new policy is in force, 1 when it did not load (the previous one stays in force). The
    /// packaged units' ExecReload=.
    #[arg(long)]
    pub reload: bool,

    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell), generated from these flags.
    #[arg(long, value_name = "SHELL", value_enum)]
    pub completions: Option<clap_complete::Shell>,

    /// Ask a running daemon for its metrics and print them in the Prometheus text format (or write them to
    /// --output, atomically, for node_exporter's textfile collector).
    #[arg(long)]
    pub metrics: bool,

    /// Manage a daemon by hand: start it in the background (with every --serve option), report its status, or
    /// stop it. For hosts without a service manager.
    #[arg(long, value_name = "ACTION", value_enum)]
    pub lifecycle: Option<LifecycleAction>,

    /// Answer an AI coding agent's pre-tool hook: read the agent's hook input on standard input, ask the daemon
    /// about the tool call, and answer in the agent's protocol; anything that goes wrong is a refusal
    /// (docs/agents.md).
    #[arg(long, value_name = "AGENT", value_enum)]
    pub hook: Option<HookAgent>,

    /// Print field NAME of the JSON object in --input (a string as its plain text, anything else as JSON): for
    /// scripts without a JSON tool. Exit 1 when the input is not a JSON object or has no such field.
    #[arg(long, value_name = "NAME")]
    pub json_field: Option<String>,
}

/// The agents whose hook protocol `--hook` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookAgent {
    /// Claude Code's PreToolUse hook.
    ClaudeCode,
    /// Cursor's beforeShellExecution, beforeMCPExecution, beforeReadFile and preToolUse hooks.
    Cursor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LifecycleAction {
    Start,
    Status,
    Stop,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Policy")]
pub struct PolicyArgs {
    /// Compiled policy JSON, as `cavra policy compile` writes it. Default: the packs built into this binary.
    #[arg(long, value_name = "FILE", env = "CAVRA_POLICY", conflicts_with = "policy_dir")]
    pub policy: Option<PathBuf>,

    /// Directory of `<id>/policy.yaml` packs, compiled at start with their `inherits`. Default: the built-in packs.
    #[arg(long, value_name = "DIR", env = "CAVRA_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,

    /// Pack for requests that name none. Default: cavra-ai-agent-baseline, or the id of the --policy file.
    #[arg(long, value_name = "ID", env = "CAVRA_DEFAULT_PACK")]
    pub default_pack: Option<String>,

    /// MCP trust registry JSON; when given, it decides every mcp_tool_call. Default: none (packs decide).
    #[arg(long, value_name = "FILE", env = "CAVRA_REGISTRY")]
    pub registry: Option<PathBuf>,

    /// Decide every request under this pack, whatever pack it names (see --on-other-pack). Default: the request
    /// chooses among the loaded packs.
    #[arg(long, value_name = "ID", env = "CAVRA_PIN_PACK")]
    pub pin_pack: Option<String>,

    /// Pin a pack for peers of a user or group: user:NAME=ID or group:NAME=ID (names or numeric ids; repeatable or
    /// comma-separated). The first that matches a peer wins, then --pin-pack. The one-shot mode applies them as for
    /// the user running it.
    #[arg(long, value_name = "WHO=ID", env = "CAVRA_PIN_PACK_FOR", value_delimiter = ',')]
    pub pin_pack_for: Vec<String>,

    /// A request naming a pack other than its pinned one: refuse it (policy.pack.not_permitted) or decide it under
    /// the pinned pack.
    #[arg(
        long,
        value_name = "ACTION",
        env = "CAVRA_ON_OTHER_PACK",
        value_enum,
        default_value = "refuse"
    )]
    pub on_other_pack: OtherPack,

    /// Absolute workspace root for file targets of requests that carry no workspace_root (a request's own must lie
    /// inside it). Writes outside it need approval. Default: none.
    #[arg(long, value_name = "DIR", env = "CAVRA_WORKSPACE_ROOT")]
    pub workspace_root: Option<String>,

    /// Whether file targets that differ only in case name the same file. Default: insensitive on macOS, sensitive
    /// elsewhere.
    #[arg(long, value_name = "CASE", env = "CAVRA_PATH_CASE", value_enum, default_value_t = PathCase::default())]
    pub path_case: PathCase,
}

#[derive(Debug, thiserror::Error)]
pub enum DecisionsError {
    #[error(transparent)]
    Pins(#[from] PinError),
    #[error("--workspace-root {0}")]
    WorkspaceRoot(String),
}

impl PolicyArgs {
    /// Pins resolved and checked against `policies`, and the workspace root checked.
    pub fn decisions(&self, policies: &PolicySet) -> Result<Decisions, DecisionsError> {
        let pins = PackPins::resolve(self.pin_pack.as_deref(), &self.pin_pack_for, self.on_other_pack)?;
        pins.check(policies)?;
        let workspace_root = self
            .workspace_root
            .as_deref()
            .map(workspace_root)
            .transpose()
            .map_err(|error| DecisionsError::WorkspaceRoot(error.to_string()))?;
        Ok(Decisions {
            pins,
            workspace_root,
            path_case: self.path_case,
        })
    }

    pub fn config(&self) -> PolicyConfig {
        let source = match (&self.policy, &self.policy_dir) {
            (Some(file), _) => PolicySource::CompiledFile(file.clone()),
            (None, Some(dir)) => PolicySource::Directory(dir.clone()),
            (None, None) => PolicySource::BuiltIn,
        };
        PolicyConfig {
            source,
            default_pack: self.default_pack.clone(),
            registry: self.registry.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Socket")]
pub struct SocketArgs {
    /// Unix socket to serve on or connect to. Default for --serve and --lifecycle: /run/cavra/cavra-runtime.sock
    /// for root (/var/run/cavra-runtime.sock on macOS), $XDG_RUNTIME_DIR/cavra/cavra-runtime.sock otherwise
    /// (.cavra/cavra-runtime.sock without it); --daemon asks that socket of yours if a daemon listens there, else
    /// the system socket.
    #[arg(long, value_name = "PATH", env = SOCKET_ENV)]
    pub socket: Option<PathBuf>,

    /// File mode of a socket the daemon binds itself (octal). Activated sockets keep their unit's mode.
    #[arg(long, value_name = "MODE", env = "CAVRA_SOCKET_MODE", default_value = "0660", value_parser = parse_mode)]
    pub socket_mode: u32,

    /// Which socket to use when systemd passes several: the unit's FileDescriptorName=.
    #[arg(
        long,
        value_name = "NAME",
        env = "CAVRA_LISTEN_FD_NAME",
        default_value = "cavra-runtime"
    )]
    pub listen_fd_name: String,

    /// The socket systemd passes for metrics (a TCP socket, its FileDescriptorName=): the daemon answers
    /// `GET /metrics` there in the Prometheus text format. Without it, metrics are available with --metrics.
    #[arg(
        long,
        value_name = "NAME",
        env = "CAVRA_METRICS_LISTEN_FD_NAME",
        default_value = "metrics"
    )]
    pub metrics_listen_fd_name: String,
}

impl SocketArgs {
    /// The socket a daemon binds and `--lifecycle` manages: --socket, else [`default_socket_path`]. Client modes
    /// find theirs with [`cavra_runtime_client::find_socket`] instead.
    pub fn path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(default_socket_path)
    }

    pub fn listen_options(&self) -> ListenOptions {
        ListenOptions {
            socket: self.path(),
            mode: self.socket_mode,
            fd_name: self.listen_fd_name.clone(),
            metrics_fd_name: self.metrics_listen_fd_name.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits (daemon)")]
pub struct LimitArgs {
    /// Largest request accepted, in bytes; a larger one is answered daemon.request.too_large without being read.
    /// Each field has its own maximum besides (docs/protocol.md).
    #[arg(long, value_name = "BYTES", env = "CAVRA_MAX_REQUEST_BYTES", default_value = "65536")]
    pub max_request_bytes: usize,

    /// Connections served at once; past it a client is answered daemon.overloaded.
    #[arg(long, value_name = "N", env = "CAVRA_MAX_CONNECTIONS", default_value = "1024",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Connections one peer uid may have open at once; past it that uid is answered daemon.overloaded and others
    /// are still served.
    #[arg(long, value_name = "N", env = "CAVRA_MAX_CONNECTIONS_PER_UID", default_value = "256",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_uid: u32,

    /// Bytes of requests and answers in transit all connections together may hold (each has 8 KiB of each free);
    /// past it, requests wait for room or are answered daemon.overloaded. At least --max-request-bytes.
    #[arg(
        long,
        value_name = "BYTES",
        env = "CAVRA_MAX_BUFFERED_BYTES",
        default_value = "8388608"
    )]
    pub max_buffered_bytes: usize,

    /// Time from connecting (or from a stream-mode request's first byte) to a complete request.
    #[arg(long, value_name = "DURATION", env = "CAVRA_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Time a stream-mode connection may sit idle between requests.
    #[arg(long, value_name = "DURATION", env = "CAVRA_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Time requests in flight get to finish after SIGTERM.
    #[arg(long, value_name = "DURATION", env = "CAVRA_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Decisions a second one peer uid may ask for, sustained; past it (and its burst) that uid is answered
    /// daemon.rate_limited and others are still served. 0: no limit.
    #[arg(
        long,
        value_name = "N",
        env = "CAVRA_MAX_DECISIONS_PER_SECOND_PER_UID",
        default_value = "100"
    )]
    pub max_decisions_per_second_per_uid: u64,

    /// Decisions one peer uid may ask for at once above --max-decisions-per-second-per-uid.
    #[arg(long, value_name = "N", env = "CAVRA_DECISION_BURST_PER_UID", default_value = "1000",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub decision_burst_per_uid: u64,

    /// Bytes of evidence a second one peer uid's decisions may have recorded, sustained; past it (and its burst)
    /// that uid is answered daemon.rate_limited and nothing is recorded. 0: no limit.
    #[arg(
        long,
        value_name = "BYTES",
        env = "CAVRA_MAX_EVIDENCE_BYTES_PER_SECOND_PER_UID",
        default_value = "1048576"
    )]
    pub max_evidence_bytes_per_second_per_uid: u64,

    /// Bytes of evidence one peer uid's decisions may have recorded at once above
    /// --max-evidence-bytes-per-second-per-uid.
    #[arg(long, value_name = "BYTES", env = "CAVRA_EVIDENCE_BURST_BYTES_PER_UID", default_value = "8388608",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub evidence_burst_bytes_per_uid: u64,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "--max-buffered-bytes {buffered} is less than --max-request-bytes {request}: a request that large could never be read"
)]
pub struct LimitError {
    buffered: usize,
    request: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> Result<Limits, LimitError> {
        if self.max_buffered_bytes < self.max_request_bytes {
            return Err(LimitError {
                buffered: self.max_buffered_bytes,
                request: self.max_request_bytes,
            });
        }
        Ok(Limits {
            max_request_bytes: self.max_request_bytes,
            max_connections: self.max_connections as usize,
            max_connections_per_uid: self.max_connections_per_uid as usize,
            max_buffered_bytes: self.max_buffered_bytes,
            request_timeout: self.request_timeout,
            idle_timeout: self.idle_timeout,
            shutdown_grace: self.shutdown_grace,
            decisions_per_uid: rate(self.max_decisions_per_second_per_uid, self.decision_burst_per_uid),
            evidence_bytes_per_uid: rate(
                self.max_evidence_bytes_per_second_per_uid,
                self.evidence_burst_bytes_per_uid,
            ),
        })
    }
}

/// A per-uid rate; none when `per_second` is 0.
fn rate(per_second: u64, burst: u64) -> Option<Rate> {
    (per_second > 0).then_some(Rate { per_second, burst })
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging (daemon)")]
pub struct LogArgs {
    /// Where logs go: auto is --log-file when given, else the journal when systemd connected stderr to it
    /// (JOURNAL_STREAM; Linux only), else stderr.
    #[arg(
        long,
        value_name = "TARGET",
        env = "CAVRA_LOG_TARGET",
        value_enum,
        default_value = "auto"
    )]
    pub log_target: LogTarget,

    /// Format of logs on stderr. RUST_LOG sets the level (default info).
    #[arg(
        long,
        value_name = "FORMAT",
        env = "CAVRA_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Which decisions get a log line (a journal entry) of their own: all; non-allow (blocks and approvals, with the
    /// allowed ones counted in one summary line per interval); none. The evidence log keeps every decision anyway.
    #[arg(
        long,
        value_name = "MODE",
        env = "CAVRA_LOG_DECISIONS",
        value_enum,
        default_value = "non-allow"
    )]
    pub log_decisions: DecisionLogMode,

    /// Append the log (and everything else on stderr) to this file. When log rotation renames or removes it, the
    /// daemon opens a new one at the path before its next line, so newsyslog or logrotate need not signal it.
    /// With --lifecycle start: where the started daemon's output goes (default: the socket path with a .log
    /// extension, unless the journal is available).
    #[arg(long, value_name = "PATH", env = "CAVRA_LOG_FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Lifecycle (--lifecycle)")]
pub struct LifecycleArgs {
    /// PID file the daemon holds locked while it runs. Default: <socket>.pid.
    #[arg(long, value_name = "PATH", env = "CAVRA_PID_FILE")]
    pub pid: Option<PathBuf>,

    /// How long start waits for the daemon to answer, status for its answer, and stop for it to exit before
    /// SIGKILL.
    #[arg(long, value_name = "DURATION", env = "CAVRA_LIFECYCLE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub lifecycle_timeout: Duration,

    /// Run the started daemon as this user (root only); root's supplementary groups are dropped.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// With --user: run as this group instead of the user's own.
    #[arg(long, value_name = "GROUP", requires = "user")]
    pub group: Option<String>,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Who may ask (the runner key and claims also sign --daemon requests)")]
pub struct AuthArgs {
    /// Answer only these peer users (names or uids; repeatable or comma-separated). With no --allow-uid and no
    /// --allow-group, the socket's file mode and group decide who may connect.
    #[arg(long, value_name = "USER", env = "CAVRA_ALLOW_UID", value_delimiter = ',')]
    pub allow_uid: Vec<String>,

    /// Answer peers in these groups (primary or supplementary; names or gids; repeatable or comma-separated).
    #[arg(long, value_name = "GROUP", env = "CAVRA_ALLOW_GROUP", value_delimiter = ',')]
    pub allow_group: Vec<String>,

    /// File holding the HMAC-SHA256 key for runner authentication (mode 0600 or stricter). Default:
    /// $CREDENTIALS_DIRECTORY/runner-auth-key, else the key in $CAVRA_RUNNER_AUTH_HMAC_KEY, else none.
    #[arg(long, value_name = "FILE", env = "CAVRA_RUNNER_AUTH_KEY_FILE")]
    pub runner_auth_key_file: Option<PathBuf>,

    /// Key id runners must present with HMAC signatures (and that --daemon presents). Default: any.
    #[arg(long, value_name = "ID", env = "CAVRA_RUNNER_AUTH_KEY_ID", default_value = "")]
    pub runner_auth_key_id: String,

    /// How far an HMAC credential's issue time may be from the daemon's clock; within it each credential is
    /// accepted once.
    #[arg(long, value_name = "DURATION", env = "CAVRA_RUNNER_AUTH_WINDOW", default_value = "60s",
          value_parser = parse_window)]
    pub runner_auth_window: Duration,

    /// Also accept the reference's identity-only (v1) HMAC signatures, which can be replayed: only while runners
    /// migrate to v2. Logged as a warning at start.
    #[arg(long, env = "CAVRA_RUNNER_AUTH_ACCEPT_V1")]
    pub runner_auth_accept_v1: bool,

    /// OIDC issuer runner tokens must come from (with --runner-oidc-audience and a JWKS).
    #[arg(long, value_name = "URL", env = "CAVRA_RUNNER_OIDC_ISSUER")]
    pub runner_oidc_issuer: Option<String>,

    /// Audience runner tokens must name.
    #[arg(long, value_name = "AUDIENCE", env = "CAVRA_RUNNER_OIDC_AUDIENCE")]
    pub runner_oidc_audience: Option<String>,

    /// JWKS file with the issuer's signing keys (wins over --runner-oidc-jwks-url).
    #[arg(long, value_name = "FILE", env = "CAVRA_RUNNER_OIDC_JWKS")]
    pub runner_oidc_jwks: Option<PathBuf>,

    /// JWKS URL with the issuer's signing keys; a failed fetch is retried with back-off on later requests.
    #[arg(long, value_name = "URL", env = "CAVRA_RUNNER_OIDC_JWKS_URL")]
    pub runner_oidc_jwks_url: Option<String>,

    /// Clock difference allowed with the OIDC issuer when checking a token's exp, nbf and iat.
    #[arg(long, value_name = "DURATION", env = "CAVRA_RUNNER_OIDC_LEEWAY", default_value = "60s",
          value_parser = parse_duration)]
    pub runner_oidc_leeway: Duration,

    /// With --daemon: the runner identity (JSON) to authenticate as; signed with the runner key, or sent with the
    /// OIDC token when one is given.
    #[arg(long, value_name = "FILE", env = "CAVRA_RUNNER_AUTH_CLAIMS")]
    pub runner_auth_claims: Option<PathBuf>,

    /// With --daemon and --runner-auth-claims: file holding the runner's OIDC token (mode 0600 or stricter).
    /// Default: the token in $CAVRA_RUNNER_AUTH_OIDC_TOKEN, if set.
    #[arg(long, value_name = "FILE", env = "CAVRA_RUNNER_AUTH_OIDC_TOKEN_FILE")]
    pub runner_auth_oidc_token_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(transparent)]
    Peers(#[from] PeerPolicyError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(
        "runner OIDC needs --runner-oidc-issuer, --runner-oidc-audience and --runner-oidc-jwks or --runner-oidc-jwks-url; missing {0}"
    )]
    IncompleteOidc(&'static str),
}

impl AuthArgs {
    pub fn peer_policy(&self) -> Result<PeerPolicy, PeerPolicyError> {
        PeerPolicy::resolve(&self.allow_uid, &self.allow_group)
    }

    /// The runner HMAC key: --runner-auth-key-file, the credential `runner-auth-key`, or the reference variable.
    pub fn runner_key(&self) -> Result<Option<Secret>, SecretError> {
        Secret::locate(
            self.runner_auth_key_file.as_deref(),
            RUNNER_KEY_CREDENTIAL,
            Some(RUNNER_KEY_VARIABLE),
        )
    }

    /// The runner OIDC token for --daemon, if one is given.
    pub fn oidc_token(&self) -> Result<Option<Secret>, SecretError> {
        Secret::locate(
            self.runner_auth_oidc_token_file.as_deref(),
            "runner-oidc-token",
            Some("CAVRA_RUNNER_AUTH_OIDC_TOKEN"),
        )
    }

    /// What the daemon requires of runners; `None` when nothing is configured. A partial OIDC setup is an error,
    /// not a silently disabled check.
    pub fn authenticator(&self) -> Result<Option<RunnerAuthenticator>, AuthConfigError> {
        let hmac = self.runner_key()?.map(|key| HmacRunners {
            key,
            key_id: self.runner_auth_key_id.clone(),
            accept_v1: self.runner_auth_accept_v1,
            window: self.runner_auth_window,
        });
        let jwks = match (&self.runner_oidc_jwks, &self.runner_oidc_jwks_url) {
            (Some(path), _) => Some(JwksSource::File(path.clone())),
            (None, Some(url)) => Some(JwksSource::Url(url.clone())),
            (None, None) => None,
        };
        let oidc = match (&self.runner_oidc_issuer, &self.runner_oidc_audience, jwks) {
            (None, None, None) => None,
            (Some(issuer), Some(audience), Some(jwks)) => {
                Some(OidcVerifier::new(issuer.clone(), audience.clone(), jwks).with_leeway(self.runner_oidc_leeway))
            }
            (None, _, _) => return Err(AuthConfigError::IncompleteOidc("--runner-oidc-issuer")),
            (_, None, _) => return Err(AuthConfigError::IncompleteOidc("--runner-oidc-audience")),
            (_, _, None) => return Err(AuthConfigError::IncompleteOidc("a JWKS")),
        };
        Ok(RunnerAuthenticator::new(hmac, oidc))
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Evidence (daemon and --verify-evidence)")]
pub struct EvidenceArgs {
    /// Hash-chained JSONL record of every decision; each is on disk before its answer is sent. Default: none. With
    /// --verify-evidence: repeat it for a log and its rotated files, or name a directory that holds them.
    #[arg(long, value_name = "FILE", env = "CAVRA_EVIDENCE_LOG")]
    pub evidence_log: Vec<PathBuf>,

    /// batch: records that arrive together share one fdatasync before any is answered; always: one per record;
    /// none: no sync (tests only).
    #[arg(
        long,
        value_name = "MODE",
        env = "CAVRA_EVIDENCE_SYNC",
        value_enum,
        default_value = "batch"
    )]
    pub evidence_sync: SyncMode,

    /// File holding the HMAC-SHA256 key that signs (and verifies) evidence records. Default:
    /// $CREDENTIALS_DIRECTORY/evidence-signing-key when systemd passes it, else the key in
    /// $CAVRA_DAEMON_EVIDENCE_HMAC_KEY, else records are unsigned.
    #[arg(long, value_name = "FILE", env = "CAVRA_EVIDENCE_SIGNING_KEY_FILE")]
    pub evidence_signing_key_file: Option<PathBuf>,

    /// File holding an Ed25519 private key (PKCS#8 PEM or DER, mode 0600: `openssl genpkey -algorithm ed25519`)
    /// that signs records instead of HMAC; verifiers then need only its public key. Default:
    /// $CREDENTIALS_DIRECTORY/evidence-ed25519-key when systemd passes it.
    #[arg(long, value_name = "FILE", env = "CAVRA_EVIDENCE_ED25519_KEY_FILE")]
    pub evidence_ed25519_key_file: Option<PathBuf>,

    /// Key id written into (and expected in) signatures. Default for an Ed25519 key: ed25519- and 16 hex digits of
    /// its public key's SHA-256.
    #[arg(long, value_name = "ID", env = "CAVRA_DAEMON_EVIDENCE_KEY_ID", default_value = "")]
    pub evidence_signing_key_id: String,

    /// An Ed25519 public key (SubjectPublicKeyInfo PEM or DER: `openssl pkey -pubout`) that verifies records signed
    /// with key id ID (default: the key's ed25519-... id); repeatable. --verify-evidence needs no secret with these;
    /// the daemon accepts a log tail signed by them (after a key change).
    #[arg(
        long,
        value_name = "[ID=]FILE",
        env = "CAVRA_EVIDENCE_PUBLIC_KEYS",
        value_delimiter = ','
    )]
    pub evidence_public_key: Vec<String>,

    /// Start even if the existing log does not verify: it is renamed to <log>.unverified-<time>, and a new file
    /// starts with a link to its last record.
    #[arg(long)]
    pub evidence_recover: bool,

    /// Free space the evidence log's file system should keep: a percentage of its size (5%) or bytes (2G, 512M);
    /// below it the health answer says degraded, with the reason, and a warning is logged. 0 turns it off.
    #[arg(long, value_name = "SIZE|N%", env = "CAVRA_EVIDENCE_MIN_FREE", default_value = "5%",
          value_parser = parse_min_free)]
    pub evidence_min_free: MinFree,

    /// Put each evidence record, byte for byte, in its decision's log event (journal field EVIDENCE_RECORD, beside
    /// EVIDENCE_SEQUENCE and EVIDENCE_RECORD_HASH), and log each link record the same way: the journal and its
    /// shippers (systemd-journal-upload) then carry the chain off the host, where --verify-evidence --journal
    /// rebuilds and verifies it per machine.
    #[arg(long, env = "CAVRA_LOG_EVIDENCE_RECORDS")]
    pub log_evidence_records: bool,

    /// With --verify-evidence: journal entries to cross-check the log against, as `journalctl -o json` writes them
    /// (a file), or a journal directory (read with `journalctl -D`); repeatable. Records the journal saw that the
    /// log lacks are reported.
    #[arg(long, value_name = "FILE|DIR")]
    pub journal: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceKeyError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("evidence Ed25519 key {path} {source}")]
    Private { path: String, source: KeyError },
    #[error("cannot read evidence public key {}: {source}", path.display())]
    ReadPublic { path: PathBuf, source: std::io::Error },
    #[error("evidence public key {} {source}", path.display())]
    Public { path: PathBuf, source: KeyError },
    #[error(
        "both an HMAC and an Ed25519 evidence signing key are configured ({0}); records carry one signature: \
         configure one"
    )]
    Both(String),
    #[error("--serve writes one evidence log; --evidence-log is given {0} times")]
    ManyLogs(usize),
}

impl EvidenceArgs {
    /// The signing key: HMAC from --evidence-signing-key-file, the systemd credential `evidence-signing-key`, or
    /// the reference's `CAVRA_DAEMON_EVIDENCE_HMAC_KEY`; or Ed25519 from --evidence-ed25519-key-file or the
    /// credential `evidence-ed25519-key`. Never from the command line; never both.
    pub fn signing_key(&self) -> Result<Option<SigningKey>, EvidenceKeyError> {
        let hmac = Secret::locate(
            self.evidence_signing_key_file.as_deref(),
            EVIDENCE_KEY_CREDENTIAL,
            Some(EVIDENCE_KEY_VARIABLE),
        )?;
        let ed25519 = Secret::locate(self.evidence_ed25519_key_file.as_deref(), ED25519_CREDENTIAL, None)?;
        let key_id = Some(self.evidence_signing_key_id.as_str()).filter(|id| !id.is_empty());
        match (hmac, ed25519) {
            (Some(_), Some(_)) => Err(EvidenceKeyError::Both(format!(
                "{} and {}",
                self.evidence_signing_key_file.as_ref().map_or_else(
                    || "evidence-signing-key or CAVRA_DAEMON_EVIDENCE_HMAC_KEY".to_owned(),
                    |path| path.display().to_string()
                ),
                self.ed25519_key_source()
            ))),
            (Some(hmac), None) => Ok(Some(SigningKey::new(
                hmac.expose().to_vec(),
                self.evidence_signing_key_id.clone(),
            ))),
            (None, Some(ed25519)) => SigningKey::ed25519(ed25519.expose(), key_id)
                .map(Some)
                .map_err(|source| EvidenceKeyError::Private {
                    path: self.ed25519_key_source(),
                    source,
                }),
            (None, None) => Ok(None),
        }
    }

    /// Where the Ed25519 key was read from, for messages.
    fn ed25519_key_source(&self) -> String {
        match &self.evidence_ed25519_key_file {
            Some(path) => path.display().to_string(),
            None => format!("$CREDENTIALS_DIRECTORY/{ED25519_CREDENTIAL}"),
        }
    }

    /// The public keys of --evidence-public-key.
    pub fn public_keys(&self) -> Result<VerifyingKeys, EvidenceKeyError> {
        let mut keys = VerifyingKeys::default();
        for given in &self.evidence_public_key {
            // `ID=FILE`, or a plain file (a path holding `=` must then be given with its id).
            let (key_id, path) = match given.split_once('=') {
                Some((key_id, path)) => (Some(key_id), PathBuf::from(path)),
                None => (None, PathBuf::from(given)),
            };
            let text = std::fs::read(&path).map_err(|source| EvidenceKeyError::ReadPublic {
                path: path.clone(),
                source,
            })?;
            let key =
                PublicKey::from_spki(&text, key_id).map_err(|source| EvidenceKeyError::Public { path, source })?;
            keys = keys.with_public(key);
        }
        Ok(keys)
    }

    /// Every key a verifier checks signatures with: the signing key's, and the public keys.
    pub fn verifying_keys(&self) -> Result<VerifyingKeys, EvidenceKeyError> {
        let keys = self.public_keys()?;
        Ok(match self.signing_key()? {
            Some(key) => keys.with(&key),
            None => keys,
        })
    }

    /// The log the daemon keeps, if one was asked for.
    pub fn config(&self) -> Result<Option<EvidenceConfig>, EvidenceKeyError> {
        let path = match self.evidence_log.as_slice() {
            [] => return Ok(None),
            [path] => path,
            many => return Err(EvidenceKeyError::ManyLogs(many.len())),
        };
        Ok(Some(EvidenceConfig {
            path: path.clone(),
            sync: self.evidence_sync,
            signing: self.signing_key()?,
            verifying: self.public_keys()?,
            recover: self.evidence_recover,
            record_lines: self.log_evidence_records,
        }))
    }
}

/// The systemd credential holding the Ed25519 evidence key.
const ED25519_CREDENTIAL: &str = "evidence-ed25519-key";

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Requests (one-shot and --daemon)")]
pub struct ClientArgs {
    /// Request to evaluate: a JSON file, or `-` for standard input.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub input: PathBuf,

    /// With --daemon or one-shot: exit 0 for allow, 3 for block (and a refusal, or a decision this version does
    /// not know), 4 for require_approval. Errors exit 1 and usage errors 2, so neither reads as a decision.
    #[arg(long)]
    pub exit_code: bool,

    /// With --metrics: write the metrics to this file instead of standard output, atomically (a temporary file in
    /// the same directory, renamed over it), readable by all: e.g.
    /// /var/lib/prometheus/node-exporter/cavra-runtime.prom.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// With --reload: how long to wait for the reload's outcome.
    #[arg(long, value_name = "DURATION", env = "CAVRA_RELOAD_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub reload_timeout: Duration,

    /// With --daemon and --hook: how long the whole exchange may take: connecting, sending and the answer. For
    /// --hook, everything from reading the agent's input to answering it; keep it below the agent's hook timeout.
    #[arg(long, value_name = "DURATION", env = "CAVRA_CLIENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub client_timeout: Duration,

    /// With --daemon: the user (name or uid) the daemon must run as; anyone else answering on the socket is an
    /// error. Root is always accepted. Default: the service user `cavra` on /run/cavra/cavra-runtime.sock, else the
    /// owner of the socket's directory.
    #[arg(long, value_name = "USER", env = "CAVRA_EXPECT_SERVER_UID")]
    pub expect_server_uid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("--expect-server-uid {0:?}: no such user")]
pub struct UnknownServerUser(String);

impl ClientArgs {
    /// Whom `--daemon` accepts as the server.
    pub fn server_check(&self) -> Result<ServerCheck, UnknownServerUser> {
        let Some(user) = &self.expect_server_uid else {
            return Ok(ServerCheck::Location);
        };
        match user.parse::<u32>() {
            Ok(uid) => Ok(ServerCheck::Uid(uid)),
            Err(_) => nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .map(|found| ServerCheck::Uid(found.uid.as_raw()))
                .ok_or_else(|| UnknownServerUser(user.clone())),
        }
    }
}

/// Claude Code's and Cursor's tools that neither read, write, run nor reach out (docs/agents.md): a hook lets them
/// go ahead without asking the daemon.
pub const HARMLESS_TOOLS: &[&str] = &[
    "Agent",
    "AskUserQuestion",
    "EnterPlanMode",
    "ExitPlanMode",
    "Task",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "TodoWrite",
    "ToolSearch",
];

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Agent hooks (--hook)")]
pub struct HookArgs {
    /// Tools that go ahead without asking the daemon (and so without an evidence record): tools that neither read,
    /// write, run nor reach out. Every tool that is neither listed here nor mapped to a file, command or MCP request
    /// (WebFetch, WebSearch, tools the hook does not know) is asked about as itself, which the pack's default
    /// decides: approval. Repeatable or comma-separated; replaces the default list; an empty value lists none.
    #[arg(
        long,
        value_name = "TOOL",
        env = "CAVRA_HOOK_ALLOW_TOOLS",
        value_delimiter = ',',
        default_values = HARMLESS_TOOLS
    )]
    pub hook_allow_tool: Vec<String>,

    /// Never answer "ask": require_approval is refused with its reason, as in the permission modes where the agent
    /// does not enforce an ask (auto, dontAsk, bypassPermissions). For sessions nobody answers (`claude -p`, CI).
    #[arg(long, env = "CAVRA_HOOK_NO_ASK")]
    pub hook_no_ask: bool,

    /// Decide in this process with the policy flags (--policy, --policy-dir, --pin-pack, ...) instead of asking the
    /// daemon. Nothing is recorded as evidence.
    #[arg(long)]
    pub hook_in_process: bool,

    /// The policy pack every request names. Default: none, so the daemon's pins or default pack decide.
    #[arg(long, value_name = "ID", env = "CAVRA_POLICY_PACK")]
    pub hook_pack: Option<String>,
}

impl HookArgs {
    /// Whether `tool` goes ahead without asking.
    pub fn is_harmless(&self, tool: &str) -> bool {
        self.hook_allow_tool.iter().any(|listed| listed == tool)
    }
}

/// The environment variable that names the socket for every mode.
pub use cavra_runtime_client::SOCKET_ENV;

/// Where the daemon's socket lives when --socket does not say, for the daemon and the lifecycle commands:
/// `$CAVRA_RUNTIME_SOCKET`, else the system socket for root (`/run/cavra/cavra-runtime.sock`; on macOS
/// `/var/run/cavra-runtime.sock`), else `$XDG_RUNTIME_DIR/cavra/cavra-runtime.sock`, else
/// `.cavra/cavra-runtime.sock` ([`cavra_runtime_client::own_socket`]).
pub fn default_socket_path() -> PathBuf {
    cavra_runtime_client::discovery::socket_from_env().unwrap_or_else(cavra_runtime_client::own_socket)
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal file mode such as 0660"))
}

fn parse_min_free(text: &str) -> Result<MinFree, String> {
    text.parse()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{text:?} is not a duration such as 5s or 500ms: {error}"))
}

/// A freshness window: whole seconds, at least one (credentials carry their issue time in seconds).
fn parse_window(text: &str) -> Result<Duration, String> {
    let window = parse_duration(text)?;
    if window.as_secs() == 0 || window.subsec_nanos() != 0 {
        return Err(format!("{text:?} is not a whole number of seconds, at least 1s"));
    }
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn policy_and_policy_dir_conflict() {
        let error = Cli::try_parse_from(["cavra-runtime", "--policy", "a.json", "--policy-dir", "d"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn modes_are_exclusive() {
        let error = Cli::try_parse_from(["cavra-runtime", "--serve", "--daemon"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn modes_and_durations_parse() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("01777").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("\"soon\" is not a duration")
        );
    }
}
