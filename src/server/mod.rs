//! The server: answers requests on an already-bound listener until told to stop.
//!
//! Where the listener comes from (systemd, launchd or a bind) is decided once, in [`listener`]; [`run`] only
//! takes a listener, so tests and every activation path share the same loop. [`run`] accepts and bounds
//! connections (a refused peer, or one past a limit, is answered and closed without taking a slot);
//! `budget` bounds what they hold together; `connection` speaks the protocol modes; `handler` turns a request line
//! into an answer.

mod bounds;
mod budget;
mod connection;
mod decision_log;
mod exposition;
mod framing;
mod handler;
mod headroom;
mod health;
pub mod listener;
pub mod metrics;

pub use exposition::serve as serve_metrics;

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};

use tokio::io::unix::AsyncFd;
use tokio::net::UnixListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::auth::{PackPins, Peer, PeerPolicy, RunnerAuthenticator};
use crate::contract::{Health, ReloadOutcome, now_timestamp, timestamp};
use crate::engine::{Context, PathCase};
use crate::evidence::{EvidenceLog, MinFree};
use crate::policy::PolicySet;
use crate::supervisor::rate_limit::RateLimited;
pub use budget::Rate;
use budget::{Budget, OverRate, UidRates, UidSlot, UidSlots};
use decision_log::DecisionLog;
pub use decision_log::DecisionLogMode;
use headroom::Headroom;
pub use health::{HealthAnswer, Reason, Status};
use metrics::{ConnectionRefused, Metrics};

/// Bounds on what clients can make the server hold or wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_connections: usize,
    /// Connections one peer uid may have open at once.
    pub max_connections_per_uid: usize,
    /// Bytes of requests and answers in transit that all connections together may hold (see `budget`).
    pub max_buffered_bytes: usize,
    /// From a connection's start (or a request's first byte in stream mode) to a complete request.
    pub request_timeout: Duration,
    /// Between requests on a stream-mode connection.
    pub idle_timeout: Duration,
    /// How long requests in flight may take to finish once shutdown begins.
    pub shutdown_grace: Duration,
    /// Decisions one peer uid may ask for (a second, and in a burst); `None`: no limit.
    pub decisions_per_uid: Option<Rate>,
    /// Bytes of evidence one peer uid's decisions may have recorded (a second, and in a burst); `None`: no limit.
    pub evidence_bytes_per_uid: Option<Rate>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 64 * 1024,
            max_connections: 1024,
            max_connections_per_uid: 256,
            max_buffered_bytes: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            decisions_per_uid: Some(Rate {
                per_second: 100,
                burst: 1000,
            }),
            evidence_bytes_per_uid: Some(Rate {
                per_second: 1024 * 1024,
                burst: 8 * 1024 * 1024,
            }),
        }
    }
}

/// How requests are decided besides the packs: the operator's pack pins, workspace root and path case.
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    pub pins: PackPins,
    pub workspace_root: Option<String>,
    pub path_case: PathCase,
}

impl Decisions {
    /// The engine's context for a request from `peer`.
    pub fn context_for(&self, peer: &Peer) -> Context<'_> {
        Context {
            workspace_root: self.workspace_root.as_deref(),
            path_case: self.path_case,
            ..self.pins.context_for(peer)
        }
    }
}

/// How often a warning a flood repeats is logged at most (see [`RateLimited`]).
const WARNING_INTERVAL: Duration = Duration::from_secs(5);

/// The warnings a flood of connections repeats.
struct Warnings {
    credentials: RateLimited,
    refused_peer: RateLimited,
    uid_limit: RateLimited,
    overloaded: RateLimited,
    budget: RateLimited,
    accept: RateLimited,
    invalid: RateLimited,
    field_too_large: RateLimited,
    runner_auth: RateLimited,
    decision_rate: RateLimited,
    evidence_rate: RateLimited,
}

impl Warnings {
    fn new() -> Self {
        let limited = |what| RateLimited::new(what, WARNING_INTERVAL);
        Self {
            credentials: limited("connections whose peer credentials could not be read"),
            refused_peer: limited("refused peers that --allow-uid/--allow-group do not admit"),
            uid_limit: limited("connections refused past --max-connections-per-uid"),
            overloaded: limited("connections refused past --max-connections"),
            budget: limited("requests refused with --max-buffered-bytes in use"),
            accept: limited("failed accepts"),
            invalid: limited("invalid requests"),
            field_too_large: limited("requests refused with a field past its maximum"),
            runner_auth: limited("failed runner authentications"),
            decision_rate: limited("requests refused past a uid's --max-decisions-per-second-per-uid"),
            evidence_rate: limited("requests refused past a uid's --max-evidence-bytes-per-second-per-uid"),
        }
    }

    fn all(&self) -> [&RateLimited; 11] {
        [
            &self.credentials,
            &self.refused_peer,
            &self.uid_limit,
            &self.overloaded,
            &self.budget,
            &self.accept,
            &self.invalid,
            &self.field_too_large,
            &self.runner_auth,
            &self.decision_rate,
            &self.evidence_rate,
        ]
    }
}

/// What every connection shares.
pub struct Service {
    policies: RwLock<Arc<PolicySet>>,
    limits: Limits,
    evidence: Option<EvidenceLog>,
    peers: PeerPolicy,
    runners: Option<Arc<RunnerAuthenticator>>,
    decisions: Decisions,
    started: Instant,
    budget: Arc<Budget>,
    decision_rates: Option<UidRates>,
    evidence_rates: Option<UidRates>,
    warnings: Warnings,
    metrics: Metrics,
    last_reload: std::sync::Mutex<Option<ReloadOutcome>>,
    decision_log: DecisionLog,
    headroom: Option<Headroom>,
}

/// Connections open, in tenths of `--max-connections`, from which the daemon reports itself degraded.
const NEAR_CONNECTION_LIMIT_TENTHS: usize = 9;

impl Service {
    pub fn new(policies: PolicySet, limits: Limits) -> Self {
        Self {
            policies: RwLock::new(Arc::new(policies)),
            budget: Budget::new(limits.max_buffered_bytes),
            decision_rates: limits.decisions_per_uid.map(UidRates::new),
            evidence_rates: limits.evidence_bytes_per_uid.map(UidRates::new),
            limits,
            evidence: None,
            peers: PeerPolicy::default(),
            runners: None,
            decisions: Decisions::default(),
            started: Instant::now(),
            warnings: Warnings::new(),
            metrics: Metrics::default(),
            last_reload: std::sync::Mutex::new(None),
            decision_log: DecisionLog::new(DecisionLogMode::default(), WARNING_INTERVAL),
            headroom: None,
        }
    }

    /// Reports itself degraded while the evidence log's file system has less than `min` free (only with an
    /// evidence log: call after [`Service::with_evidence`]). A minimum of 0 turns the check off.
    pub fn with_evidence_min_free(mut self, min: MinFree) -> Self {
        self.headroom = match (&self.evidence, min) {
            (_, MinFree::Bytes(0) | MinFree::Percent(0)) | (None, _) => None,
            (Some(evidence), min) => {
                let dir = evidence.path().parent().filter(|dir| !dir.as_os_str().is_empty());
                Some(Headroom::new(dir.unwrap_or(Path::new(".")).to_owned(), min))
            }
        };
        self
    }

    /// Logs decisions as `mode` says (`--log-decisions`).
    pub fn with_decision_log(mut self, mode: DecisionLogMode) -> Self {
        self.decision_log = DecisionLog::new(mode, WARNING_INTERVAL);
        self
    }

    /// Records every decision in `evidence` before answering it.
    pub fn with_evidence(mut self, evidence: EvidenceLog) -> Self {
        self.evidence = Some(evidence);
        self
    }

    /// Answers only peers `peers` admits.
    pub fn with_peers(mut self, peers: PeerPolicy) -> Self {
        self.peers = peers;
        self
    }

    /// Requires every request to carry runner authentication that `runners` accepts.
    pub fn with_runner_auth(mut self, runners: RunnerAuthenticator) -> Self {
        self.runners = Some(Arc::new(runners));
        self
    }

    /// Decides with `decisions` (pins, workspace root, path case) besides the packs.
    pub fn with_decisions(mut self, decisions: Decisions) -> Self {
        self.decisions = decisions;
        self
    }

    pub fn peers(&self) -> &PeerPolicy {
        &self.peers
    }

    pub fn decisions(&self) -> &Decisions {
        &self.decisions
    }

    /// Whether reading a peer needs its supplementary groups (for --allow-group or a group pin).
    pub fn needs_groups(&self) -> bool {
        self.peers.needs_groups() || self.decisions.pins.needs_groups()
    }

    pub fn runner_auth(&self) -> Option<&Arc<RunnerAuthenticator>> {
        self.runners.as_ref()
    }

    /// Where decisions are recorded before they are answered, if anywhere.
    pub fn evidence(&self) -> Option<&EvidenceLog> {
        self.evidence.as_ref()
    }

    /// The policy in force now; a request keeps the one it started with even if a reload happens meanwhile.
    pub fn policies(&self) -> Arc<PolicySet> {
        Arc::clone(&self.policies.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    pub fn replace_policies(&self, policies: PolicySet) {
        *self.policies.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(policies);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    fn decision_log(&self) -> &DecisionLog {
        &self.decision_log
    }

    /// Takes one decision from `uid`'s rate, if it has one left.
    fn spend_decision(&self, uid: u32) -> Result<(), OverRate> {
        match &self.decision_rates {
            Some(rates) => rates.spend(uid, 1, tokio::time::Instant::now()),
            None => Ok(()),
        }
    }

    /// Takes `bytes` of evidence from `uid`'s rate, if it has any left.
    fn spend_evidence(&self, uid: u32, bytes: usize) -> Result<(), OverRate> {
        match &self.evidence_rates {
            Some(rates) => rates.spend(uid, bytes as u64, tokio::time::Instant::now()),
            None => Ok(()),
        }
    }

    /// Notes how a reload ended (`Err` with why it failed), for the health answer and the metrics.
    pub fn record_reload(&self, result: Result<(), String>) {
        self.metrics.reloaded(match result {
            Ok(()) => metrics::ReloadResult::Success,
            Err(_) => metrics::ReloadResult::Failure,
        });
        let mut last = self.last_reload.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = last.as_ref().map_or(0, |outcome| outcome.generation) + 1;
        *last = Some(ReloadOutcome {
            generation,
            result: if result.is_ok() { "success" } else { "failure" }.to_owned(),
            at: now_timestamp(),
            error: result.err(),
        });
    }

    pub fn last_reload(&self) -> Option<ReloadOutcome> {
        self.last_reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The health answer: the policy in force, and whatever keeps the daemon from `ok` (see `health`).
    pub fn health(&self) -> HealthAnswer {
        let mut reasons = Vec::new();
        if let Some(evidence) = &self.evidence
            && let Some((since, error)) = evidence.stats().failing_since()
        {
            reasons.push(Reason {
                code: "evidence.unavailable",
                status: Status::Failing,
                message: format!(
                    "the evidence log {} cannot be written since {}: {error}; every decision fails closed \
                     (daemon.evidence.unavailable)",
                    evidence.path().display(),
                    timestamp(since.into())
                ),
            });
        }
        reasons.extend(self.headroom.iter().filter_map(Headroom::problem));
        let last_reload = self.last_reload();
        if let Some(failed) = last_reload.as_ref().filter(|outcome| outcome.error.is_some()) {
            reasons.push(Reason {
                code: "reload.failed",
                status: Status::Degraded,
                message: format!(
                    "reload failed, previous policy still in force since {}: {}",
                    failed.at,
                    failed.error.as_deref().unwrap_or_default()
                ),
            });
        }
        if let Some(oidc) = self.runners.as_ref().and_then(|runners| runners.oidc())
            && let Some((since, error, have_keys)) = oidc.staleness()
        {
            reasons.push(Reason {
                code: "jwks.stale",
                status: if have_keys { Status::Degraded } else { Status::Failing },
                message: format!(
                    "the runner OIDC key set cannot be loaded since {}: {error}; {}",
                    timestamp(since.into()),
                    if have_keys {
                        "tokens signed with the keys loaded before are still accepted, others are refused"
                    } else {
                        "no key set is loaded, so every runner OIDC token is refused"
                    }
                ),
            });
        }
        let (open, max) = (
            self.metrics.open_connections().max(0) as usize,
            self.limits.max_connections,
        );
        if open * 10 >= max * NEAR_CONNECTION_LIMIT_TENTHS {
            reasons.push(Reason {
                code: "connections.near_limit",
                status: Status::Degraded,
                message: format!(
                    "{open} of the {max} connections --max-connections allows are open; past it clients are \
                     refused (daemon.overloaded)"
                ),
            });
        }
        HealthAnswer::new(self.contract_health(), reasons).with_last_reload(last_reload)
    }

    fn contract_health(&self) -> Health {
        let policies = self.policies();
        Health {
            status: String::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            pid: std::process::id(),
            policy_source: policies.source().to_string(),
            default_pack: policies.default_pack().to_owned(),
            packs: policies.packs().count(),
            policy_digest: policies.digest().to_owned(),
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting and lets requests in flight finish within the grace
/// period.
pub async fn run(listener: UnixListener, shutdown: impl Future<Output = ()>, service: Arc<Service>) -> io::Result<()> {
    // Accepted connections start outside the event loop (see `connection::serve`), so accepting is done here.
    let listener = listener.into_std()?;
    // SAFETY: the listener owns its descriptor and is neither closed nor replaced while registered.
    let listener = unsafe { AsyncFd::register(listener)? };
    let max = service.limits().max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let uids = UidSlots::new(service.limits().max_connections_per_uid);
    let lingering = Arc::new(Semaphore::new(connection::REFUSALS_LINGERING));
    let (stop, stopped) = watch::channel(false);
    let summaries = tokio::spawn(summarize_warnings(Arc::clone(&service)));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(stream) => match admit(&stream, &service, &permits, &uids) {
                Ok((peer, permit, slot)) => {
                    let service = Arc::clone(&service);
                    let stopped = stopped.clone();
                    service.metrics().connection_opened();
                    tokio::spawn(async move {
                        connection::serve(stream, peer, Arc::clone(&service), stopped).await;
                        service.metrics().connection_closed();
                        drop((permit, slot));
                    });
                }
                Err(Some(answer)) => {
                    connection::refuse(stream, &answer, Arc::clone(&lingering).try_acquire_owned().ok());
                }
                Err(None) => {}
            },
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning, then carry on.
                if service.warnings.accept.allow() {
                    tracing::warn!(%error, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    summaries.abort();
    let _ = stop.send(true);
    let in_flight = max - permits.available_permits();
    if in_flight > 0 {
        tracing::info!(connections = in_flight, "waiting for requests in flight");
    }
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(service.limits().shutdown_grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        let left = max - permits.available_permits();
        tracing::warn!(
            connections = left,
            "shutdown grace period over; closing remaining connections"
        );
    }
    for warning in service.warnings.all() {
        warning.summarize();
    }
    service.decision_log().summarize(true);
    Ok(())
}

/// Who the peer is and the slots it is served in; else the answer refusing it, if it gets one. A refused
/// connection never takes a slot, so a flood of them cannot keep anyone else out.
fn admit(
    stream: &StdUnixStream,
    service: &Service,
    permits: &Arc<Semaphore>,
    uids: &Arc<UidSlots>,
) -> Result<(Peer, OwnedSemaphorePermit, UidSlot), Option<Vec<u8>>> {
    let warnings = &service.warnings;
    let peer = match Peer::of(stream, service.needs_groups()) {
        Ok(peer) => peer,
        Err(error) => {
            service.metrics().connection_refused(ConnectionRefused::Credentials);
            if warnings.credentials.allow() {
                tracing::warn!(%error, "cannot read peer credentials; closing the connection");
            }
            return Err(None);
        }
    };
    if !service.peers().admits(&peer) {
        service.metrics().connection_refused(ConnectionRefused::Peer);
        if warnings.refused_peer.allow() {
            tracing::warn!(
                peer_uid = peer.uid,
                peer_gid = peer.gid,
                peer_pid = peer.pid,
                "refused a peer that --allow-uid/--allow-group do not admit"
            );
        }
        return Err(Some(handler::peer_unauthorized(service, &peer)));
    }
    let Some(slot) = uids.take(peer.uid) else {
        service.metrics().connection_refused(ConnectionRefused::UidLimit);
        if warnings.uid_limit.allow() {
            tracing::warn!(
                peer_uid = peer.uid,
                peer_pid = peer.pid,
                limit = uids.max(),
                "refused a connection: its uid has --max-connections-per-uid open"
            );
        }
        return Err(Some(handler::uid_overloaded(service, peer.uid, uids.max())));
    };
    let Ok(permit) = Arc::clone(permits).try_acquire_owned() else {
        service.metrics().connection_refused(ConnectionRefused::ConnectionLimit);
        if warnings.overloaded.allow() {
            tracing::warn!(
                peer_uid = peer.uid,
                limit = service.limits().max_connections,
                "refused a connection: --max-connections are open"
            );
        }
        return Err(Some(handler::overloaded(service)));
    };
    Ok((peer, permit, slot))
}

/// Logs, once an interval, how many of each rate-limited warning were left out, and the allowed decisions not
/// logged one by one.
async fn summarize_warnings(service: Arc<Service>) {
    let mut ticks = tokio::time::interval(WARNING_INTERVAL);
    loop {
        ticks.tick().await;
        for warning in service.warnings.all() {
            warning.summarize();
        }
        service.decision_log().summarize(false);
        // Looks at the free space now and then even when nobody asks for health, so that a change is logged.
        if let Some(headroom) = &service.headroom {
            headroom.problem();
        }
    }
}

/// The next connection, non-blocking and close-on-exec.
async fn accept(listener: &AsyncFd<StdUnixListener>) -> io::Result<StdUnixStream> {
    loop {
        let mut ready = listener.readable().await?;
        if let Ok(accepted) = ready.try_io(|listener| accept_nonblocking(listener.get_ref())) {
            return accepted;
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn accept_nonblocking(listener: &StdUnixListener) -> io::Result<StdUnixStream> {
    use nix::sys::socket::{SockFlag, accept4};
    // One call where std's accept would need a second to set non-blocking mode.
    let fd = accept4(listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC)?;
    Ok(StdUnixStream::from(fd))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn accept_nonblocking(listener: &StdUnixListener) -> io::Result<StdUnixStream> {
    let (stream, _) = listener.accept()?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}
