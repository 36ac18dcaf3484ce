//! `--serve`: the daemon's life from start to exit. The policy and the listener are ready before the async
//! runtime starts (so a bad policy or a taken socket fails fast, and activated sockets are taken while the
//! process has one thread); then it serves until SIGTERM or SIGINT, reloading the policy on SIGHUP.

use std::io;
use std::sync::Arc;

use nix::sys::signal;
use tokio::signal::unix::SignalKind;

use super::flags::{AuthArgs, AuthConfigError, DecisionsError, EvidenceArgs, EvidenceKeyError, LimitError, ServeArgs};
use crate::auth::oidc::JwksSource;
use crate::auth::secret::{self, ExposedSecret, PACKAGED_SETTINGS};
use crate::auth::{RunnerAuthenticator, SecretError};
use crate::evidence::{EvidenceError, EvidenceLog};
use crate::policy::{PolicyConfig, PolicyError, PolicySet};
use crate::server::listener::{self, ListenerError, Origin};
use crate::server::{self, Service};
use crate::supervisor::logging::{self, LoggingError};
use crate::supervisor::notify;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Logging(#[from] LoggingError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Listener(#[from] ListenerError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
    #[error("cannot serve on {origin}: {source}")]
    Serve { origin: String, source: io::Error },
    #[error("cannot install the {signal} handler: {source}")]
    Signal { signal: &'static str, source: io::Error },
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    EvidenceKey(#[from] EvidenceKeyError),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error("runner OIDC: {0}")]
    Jwks(String),
    #[error(transparent)]
    Decisions(#[from] DecisionsError),
    #[error(transparent)]
    Limits(#[from] LimitError),
    #[error(transparent)]
    ExposedSecret(#[from] ExposedSecret),
}

/// Everything `--serve` reads from its flags and files before it takes a socket; `--check` stops here.
pub struct Configured {
    pub config: PolicyConfig,
    pub policies: PolicySet,
    pub decisions: server::Decisions,
    pub limits: server::Limits,
    pub peers: crate::auth::PeerPolicy,
    pub runners: Option<RunnerAuthenticator>,
}

/// Reads and checks the configuration: flags, policies and registry, pins, limits, allow-lists, runner
/// authentication (its keys, a JWKS file) and the evidence keys.
pub fn configure(args: &ServeArgs) -> Result<Configured, ServeError> {
    let config = args.policy.config();
    let policies = PolicySet::load(&config)?;
    let decisions = args.policy.decisions(&policies)?;
    let limits = args.limits.limits()?;
    check_keys_from_environment(args)?;
    let peers = args.auth.peer_policy().map_err(AuthConfigError::from)?;
    let runners = runner_auth(&args.auth)?;
    args.evidence.config()?;
    Ok(Configured {
        config,
        policies,
        decisions,
        limits,
        peers,
        runners,
    })
}

pub fn run(args: &ServeArgs) -> Result<(), ServeError> {
    // Held to the end: dropping it writes out the log lines still queued.
    let logs = &args.logging;
    let _log = logging::init(logs.log_target, logs.log_format, logs.log_file.as_deref())?;
    // Everything that can be wrong with the configuration is found before a socket exists.
    let Configured {
        config,
        policies,
        decisions,
        limits,
        peers,
        runners,
    } = configure(args)?;
    raise_open_file_limit(args.limits.max_connections);
    // First, while this is the only thread: taking activated sockets edits the environment. A socket bound here is
    // removed again if anything below fails.
    let acquired = listener::acquire(&args.socket.listen_options())?;
    let evidence = open_evidence(&args.evidence)?;
    let origin = acquired.origin;
    let serve_error = |source| ServeError::Serve {
        origin: origin.to_string(),
        source,
    };
    acquired.listener.set_nonblocking(true).map_err(serve_error)?;
    let metrics_listener = acquired.metrics;
    if let Some(metrics) = &metrics_listener {
        metrics.set_nonblocking(true).map_err(serve_error)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    if !decisions.pins.is_empty() {
        tracing::info!("policy packs pinned: {}", decisions.pins.describe());
    }
    let mut service = Service::new(policies, limits)
        .with_peers(peers)
        .with_decisions(decisions)
        .with_decision_log(args.logging.log_decisions);
    if let Some(evidence) = &evidence {
        service = service
            .with_evidence(evidence.clone())
            .with_evidence_min_free(args.evidence.evidence_min_free);
    }
    if let Some(runners) = runners {
        service = service.with_runner_auth(runners);
    }
    if !service.peers().admits_everyone() {
        tracing::info!("answering only {}", service.peers().describe());
    }
    let service = Arc::new(service);
    let result = runtime.block_on(async {
        let listener = tokio::net::UnixListener::from_std(acquired.listener).map_err(serve_error)?;
        let metrics = metrics_listener
            .map(tokio::net::TcpListener::from_std)
            .transpose()
            .map_err(serve_error)?;
        serve_until_stopped(listener, metrics, &origin, service, config).await
    });
    if let Some(evidence) = evidence {
        evidence.close();
    }
    // `origin` drops here: a socket this process bound is removed, an activated one is left to its manager.
    drop(origin);
    result
}

/// A key taken from the environment is warned about: a service's environment comes from a settings file, which
/// is easily left readable (the reference's variables, kept for its runners). Refused outright when the packaged
/// settings file sets it and users other than root can read that file.
fn check_keys_from_environment(args: &ServeArgs) -> Result<(), ServeError> {
    let settings = PACKAGED_SETTINGS.map(std::path::Path::new);
    for key in args.keys_from_environment() {
        if let Some(exposed) = secret::exposed_in(&settings, key.variable, key.credential) {
            return Err(exposed.into());
        }
        tracing::warn!(
            variable = key.variable,
            "the key in {} comes from the environment; whoever can read the settings file that set it (or the \
             daemon's environment) has it. Put it in /etc/credstore/{} (mode 0600) for the unit's LoadCredential=, \
             or in a file named by {}, and unset the variable",
            key.variable,
            key.credential,
            key.flag
        );
    }
    Ok(())
}

/// The runner authentication the daemon requires, with its OIDC key set loaded (a JWKS file must load; a URL
/// that fails now is retried on later requests).
fn runner_auth(auth: &AuthArgs) -> Result<Option<RunnerAuthenticator>, ServeError> {
    let Some(runners) = auth.authenticator()? else {
        return Ok(None);
    };
    if let Some(verifier) = runners.oidc() {
        match (verifier.load_now(), verifier.source()) {
            (Ok(keys), source) => tracing::info!(?source, keys, "runner OIDC key set loaded"),
            (Err(error), JwksSource::File(_)) => return Err(ServeError::Jwks(error)),
            (Err(error), JwksSource::Url(url)) => {
                tracing::warn!(%url, %error, "cannot fetch the runner OIDC key set yet; requests will retry")
            }
        }
    }
    if runners.accepts_v1() {
        tracing::warn!(
            "--runner-auth-accept-v1: identity-only (v1) runner signatures are accepted; anyone who has seen one \
             can replay it on any request. Migrate runners to v2 and remove the flag"
        );
    }
    tracing::info!("runner authentication required");
    Ok(Some(runners))
}

/// Every connection is a file descriptor; the usual soft limit (1024) is below what --max-connections allows, so
/// raise it towards the hard limit, as servers commonly do. Failing to is not fatal: accept() then backs off.
fn raise_open_file_limit(max_connections: u32) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // Room for the listener, the evidence log, the journal and the like beside the connections.
    let wanted = u64::from(max_connections) + 64;
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < wanted => {
            let raised = wanted.min(hard);
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
                tracing::warn!(%error, soft, "cannot raise the open-file limit");
            } else if raised < wanted {
                tracing::warn!(
                    limit = raised,
                    max_connections,
                    "the open-file limit caps connections below --max-connections"
                );
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read the open-file limit"),
    }
}

/// Opens the evidence log, if one is configured, and says what opening it found.
fn open_evidence(evidence: &EvidenceArgs) -> Result<Option<EvidenceLog>, ServeError> {
    let Some(config) = evidence.config()? else {
        return Ok(None);
    };
    // A file-size limit must fail the write (and so the decision, closed), not kill the daemon.
    // SAFETY: setting a signal to be ignored installs no handler code.
    unsafe { signal::signal(signal::Signal::SIGXFSZ, signal::SigHandler::SigIgn) }.map_err(|errno| {
        ServeError::Signal {
            signal: "SIGXFSZ",
            source: io::Error::from(errno),
        }
    })?;
    let path = config.path.clone();
    // Opening reports a torn tail or a set-aside log itself.
    let signing = config
        .signing
        .as_ref()
        .map(|key| (key.algorithm(), key.key_id().to_owned()));
    let (log, report) = EvidenceLog::open(config)?;
    match signing {
        Some((algorithm, key_id)) => tracing::info!(
            log = %path.display(), records = report.records, algorithm, key_id, "evidence log open, records signed"
        ),
        None => tracing::info!(log = %path.display(), records = report.records, "evidence log open, records unsigned"),
    }
    Ok(Some(log))
}

async fn serve_until_stopped(
    listener: tokio::net::UnixListener,
    metrics: Option<tokio::net::TcpListener>,
    origin: &Origin,
    service: Arc<Service>,
    config: PolicyConfig,
) -> Result<(), ServeError> {
    let install = |kind: SignalKind, name: &'static str| {
        tokio::signal::unix::signal(kind).map_err(|source| ServeError::Signal { signal: name, source })
    };
    let mut terminate = install(SignalKind::terminate(), "SIGTERM")?;
    let mut interrupt = install(SignalKind::interrupt(), "SIGINT")?;
    let hangup = install(SignalKind::hangup(), "SIGHUP")?;

    let serving = serving_status(&service, origin);
    tracing::info!(pid = std::process::id(), "{serving}");
    notify::ready(&service.health().status_line(&serving));
    let health_status = tokio::spawn(report_health(Arc::clone(&service), origin.to_string()));
    let watchdog = notify::watchdog_interval().map(|interval| {
        tokio::spawn(async move {
            loop {
                notify::watchdog();
                tokio::time::sleep(interval).await;
            }
        })
    });
    let scrapes = metrics.map(|metrics| {
        match metrics.local_addr() {
            Ok(address) => tracing::info!(%address, "serving metrics at http://{address}/metrics"),
            Err(error) => tracing::info!(%error, "serving metrics on the passed socket"),
        }
        tokio::spawn(server::serve_metrics(metrics, Arc::clone(&service)))
    });
    let reloads = tokio::spawn(reload_on_hangup(
        hangup,
        Arc::clone(&service),
        config,
        origin.to_string(),
    ));

    let shutdown = async {
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{signal} received; finishing requests in flight");
        notify::stopping();
    };
    let served = server::run(listener, shutdown, service).await;
    reloads.abort();
    health_status.abort();
    if let Some(scrapes) = scrapes {
        scrapes.abort();
    }
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    served.map_err(|source| ServeError::Serve {
        origin: origin.to_string(),
        source,
    })?;
    tracing::info!("stopped");
    Ok(())
}

fn serving_status(service: &Service, origin: &impl std::fmt::Display) -> String {
    let policies = service.policies();
    format!(
        "serving {} ({} packs, default {}, {}) on {origin}",
        policies.source(),
        policies.packs().count(),
        policies.default_pack(),
        policies.digest()
    )
}

/// How often the status line is brought up to date with the health answer.
const HEALTH_STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps the service manager's status line (`STATUS=`, what `systemctl status` shows) telling what the health
/// answer says: a change of status or reasons is sent, and logged, when it happens.
async fn report_health(service: Arc<Service>, origin: String) {
    let mut last = (String::new(), Vec::new());
    let mut ticks = tokio::time::interval(HEALTH_STATUS_INTERVAL);
    loop {
        ticks.tick().await;
        let health = service.health();
        let now = (
            health.health.status.clone(),
            health.reasons.iter().map(|reason| reason.code).collect::<Vec<_>>(),
        );
        if now != last {
            if !last.0.is_empty() {
                match health.reasons.as_slice() {
                    [] => tracing::info!("health: ok"),
                    reasons => {
                        let codes: Vec<&str> = reasons.iter().map(|reason| reason.code).collect();
                        tracing::warn!(status = %health.health.status, reasons = %codes.join(","), "health: {}", health.health.status);
                    }
                }
            }
            notify::status(&health.status_line(&serving_status(&service, &origin)));
            last = now;
        }
    }
}

/// Reloads policy and registry, and reopens the evidence log, on each SIGHUP. A policy that fails to load leaves
/// the running one in force.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    service: Arc<Service>,
    config: PolicyConfig,
    origin: String,
) {
    while hangup.recv().await.is_some() {
        notify::reloading();
        if let Some(evidence) = service.evidence() {
            // logrotate's `create` leaves a new file at the path; an unrotated path is left as it is.
            if let Err(error) = evidence.reopen().await {
                tracing::error!(%error, "cannot reopen the evidence log; decisions fail closed until it can be");
            }
        }
        let attempt = config.clone();
        let loaded = tokio::task::spawn_blocking(move || PolicySet::load(&attempt)).await;
        // A reloaded policy must still have every pinned pack; otherwise the previous one stays in force.
        let loaded = loaded.map(|result| {
            result.map_err(|error| error.to_string()).and_then(|policies| {
                match service.decisions().pins.check(&policies) {
                    Ok(()) => Ok(policies),
                    Err(error) => Err(error.to_string()),
                }
            })
        });
        match loaded {
            Ok(Ok(policies)) => {
                service.replace_policies(policies);
                service.record_reload(Ok(()));
                tracing::info!("policy reloaded; {}", serving_status(&service, &origin));
            }
            Ok(Err(error)) => {
                service.record_reload(Err(error.clone()));
                tracing::error!(%error, "policy reload failed; the previous policy stays in force");
            }
            Err(error) => {
                service.record_reload(Err(format!("the reload task failed: {error}")));
                tracing::error!(%error, "policy reload task failed; the previous policy stays in force");
            }
        }
        // The health answer's status line names a failed reload (reload.failed) until a reload works.
        notify::ready(&service.health().status_line(&serving_status(&service, &origin)));
    }
}
