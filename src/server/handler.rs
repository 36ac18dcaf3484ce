//! The request handler: one request line in, one answer line out. It decodes the request, answers health probes,
//! checks runner authentication, asks the engine, has the decision recorded as evidence, and logs it. How the line
//! arrived and how the answer leaves (protocol modes, framing, timeouts) is the connection's business.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Service;
use super::metrics::{self, Refused};
use crate::auth::runner::Check;
use crate::auth::{Peer, RunnerAuthError};
use crate::contract::{DecisionResponse, EvaluateRequest, HEALTH_ACTION, METRICS_ACTION, MetricsAnswer, Severity};
use crate::engine;

/// One answer line: ready now, or waiting (for its evidence record to be durable, or for a key set).
pub(super) enum Reply {
    Ready(Vec<u8>),
    Waiting(Pin<Box<dyn Future<Output = Vec<u8>> + Send>>),
}

impl Reply {
    pub(super) async fn line(self) -> Vec<u8> {
        match self {
            Reply::Ready(line) => line,
            Reply::Waiting(line) => line.await,
        }
    }
}

/// Decodes and answers one request.
pub(super) fn answer(service: &Arc<Service>, peer: &Peer, bytes: &[u8]) -> Reply {
    let started = Instant::now();
    let request: EvaluateRequest = match serde_json::from_slice(bytes) {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(peer_uid = peer.uid, peer_pid = peer.pid, %error, "invalid request");
            let reason = format!("Request is not a valid EvaluateRequest: {error}.");
            return Reply::Ready(refused(service, Refused::Invalid, Severity::High, reason, started));
        }
    };
    if request.action_type == HEALTH_ACTION {
        let mut health = serde_json::to_vec(&service.health()).expect("health serialises");
        health.push(b'\n');
        return Reply::Ready(health);
    }
    if request.action_type == METRICS_ACTION {
        let answer = MetricsAnswer {
            content_type: crate::metrics::encode::CONTENT_TYPE.to_owned(),
            metrics: metrics::text(service),
        };
        let mut line = serde_json::to_vec(&answer).expect("metrics serialise");
        line.push(b'\n');
        return Reply::Ready(line);
    }
    let Some(runners) = service.runner_auth() else {
        return decide(service, peer, request, started);
    };
    match runners.check(&request) {
        Check::Done(Ok(())) => decide(service, peer, request, started),
        Check::Done(Err(error)) => refuse_runner(service, peer, request, &error, started),
        // Rare: the OIDC key set must be fetched first. The record waits for it too, so only this request's place
        // in the evidence order may move.
        Check::NeedsKeys(verifier) => {
            let (service, peer, runners) = (Arc::clone(service), peer.clone(), Arc::clone(runners));
            Reply::Waiting(Box::pin(async move {
                verifier.refresh().await;
                let reply = match runners.check_now(&request) {
                    Ok(()) => decide(&service, &peer, request, started),
                    Err(error) => refuse_runner(&service, &peer, request, &error, started),
                };
                reply.line().await
            }))
        }
    }
}

fn decide(service: &Arc<Service>, peer: &Peer, request: EvaluateRequest, started: Instant) -> Reply {
    let context = service.decisions().context_for(peer);
    let policies = service.policies();
    match engine::evaluate(&policies, &request, &context) {
        Ok(response) => {
            let slot = service.metrics().decision_slot(&policies, &response);
            deliver(service, peer, request, response, Some(slot), started)
        }
        Err(invalid) => {
            tracing::info!(peer_uid = peer.uid, peer_pid = peer.pid, %invalid, "invalid request");
            let reason = format!("Request is not a valid EvaluateRequest: {invalid}.");
            Reply::Ready(refused(service, Refused::Invalid, Severity::High, reason, started))
        }
    }
}

/// A refusal of the daemon's own, counted, as an answer line.
fn refused(service: &Service, kind: Refused, severity: Severity, reason: String, started: Instant) -> Vec<u8> {
    let metrics = service.metrics();
    metrics.refused(kind);
    metrics.answered(started.elapsed());
    refusal(kind.rule_id(), severity, reason)
}

/// The reference's answer to a runner that did not prove itself: not evaluated, echoing the request as sent, with
/// none of the metadata an evaluated decision carries.
fn refuse_runner(
    service: &Arc<Service>,
    peer: &Peer,
    request: EvaluateRequest,
    error: &RunnerAuthError,
    started: Instant,
) -> Reply {
    service.metrics().refused(Refused::RunnerAuth);
    tracing::warn!(peer_uid = peer.uid, peer_pid = peer.pid, %error, "runner authentication failed");
    let refusal = DecisionResponse::refusal(
        Refused::RunnerAuth.rule_id(),
        Severity::Critical,
        format!("runner authentication failed: {error}"),
    );
    let response = DecisionResponse {
        decision_id: String::new(),
        session_id: request.session_id.clone(),
        agent_id: request.agent_id.clone(),
        actor: request.actor.clone(),
        action_type: request.action_type.clone(),
        target: request.target.clone(),
        requested_operation: request.requested_operation.clone(),
        policy_pack: request.policy_pack.clone(),
        timestamp: String::new(),
        correlation_id: String::new(),
        ..refusal
    };
    deliver(service, peer, request, response, None, started)
}

/// Sends `response`, after its evidence record is durable when a log is kept. A decision of the engine is counted
/// in its `slot` (see [`metrics::Metrics::decision_slot`]) once it is answered.
fn deliver(
    service: &Arc<Service>,
    peer: &Peer,
    request: EvaluateRequest,
    response: DecisionResponse,
    slot: Option<usize>,
    started: Instant,
) -> Reply {
    let Some(evidence) = service.evidence() else {
        log_decision(&response, peer, None);
        let metrics = service.metrics();
        if let Some(slot) = slot {
            metrics.decided(slot, response.decision);
        }
        let line = line(&response);
        metrics.answered(started.elapsed());
        return Reply::Ready(line);
    };
    // The answer waits for its record: no client acts on a decision the log does not hold.
    let (service, peer) = (Arc::clone(service), peer.clone());
    let session_id = response.session_id.clone();
    let recorded = evidence.record(request, response);
    Reply::Waiting(Box::pin(async move {
        match recorded.await {
            Ok(recorded) => {
                let line = recorded.line.as_deref().map(String::from_utf8_lossy);
                log_decision(
                    &recorded.response,
                    &peer,
                    Some((recorded.sequence, &recorded.record_hash, line.as_deref())),
                );
                let metrics = service.metrics();
                if let Some(slot) = slot {
                    metrics.decided(slot, recorded.response.decision);
                }
                metrics.answered(started.elapsed());
                // The answer is the record's response byte for byte (with Go's escaping: the same JSON to any parser).
                let mut line = recorded.encoded;
                line.push(b'\n');
                line
            }
            Err(error) => {
                let reason = format!("Decision withheld: its evidence record could not be written ({error}).");
                let metrics = service.metrics();
                metrics.refused(Refused::EvidenceUnavailable);
                metrics.answered(started.elapsed());
                let mut refusal =
                    DecisionResponse::refusal(Refused::EvidenceUnavailable.rule_id(), Severity::Critical, reason);
                refusal.session_id = session_id;
                line(&refusal)
            }
        }
    }))
}

/// One event per decision. With an evidence log, the event names the decision's record (its sequence and hash):
/// the journal, which leaves the host, then anchors the chain, and shows records later removed from the log. With
/// `--log-evidence-records` it carries the record itself too, byte for byte, so the chain can be rebuilt and
/// verified from collected journals.
fn log_decision(response: &DecisionResponse, peer: &Peer, record: Option<(i64, &str, Option<&str>)>) {
    tracing::info!(
        target: "cavra::decision",
        decision = response.decision.as_str(),
        rule_id = %response.rule_id,
        severity = response.severity.as_str(),
        policy_pack = %response.policy_pack,
        requested_policy_pack = %response.requested_policy_pack,
        action_type = %response.action_type,
        decision_id = %response.decision_id,
        peer_uid = peer.uid,
        peer_gid = peer.gid,
        peer_pid = peer.pid,
        evidence_sequence = record.map(|(sequence, _, _)| sequence),
        evidence_record_hash = record.map(|(_, hash, _)| hash),
        evidence_record = record.and_then(|(_, _, line)| line),
        "decision",
    );
}

/// The answer to a request over `--max-request-bytes`.
pub(super) fn too_large(service: &Service) -> Vec<u8> {
    let limit = service.limits().max_request_bytes;
    let reason = format!("Request exceeds the {limit}-byte limit (--max-request-bytes); it was not read.");
    counted(service, Refused::TooLarge, Severity::High, reason)
}

/// The answer to a request that did not complete within `--request-timeout`.
pub(super) fn timed_out(service: &Service) -> Vec<u8> {
    let limit: Duration = service.limits().request_timeout;
    let reason = format!("Request did not complete within {limit:?} (--request-timeout).");
    counted(service, Refused::Timeout, Severity::High, reason)
}

/// The answer to a peer that `--allow-uid`/`--allow-group` do not admit.
pub(super) fn peer_unauthorized(service: &Service, peer: &Peer) -> Vec<u8> {
    let reason = format!(
        "Peer uid {} (gid {}) is not allowed to use this daemon (--allow-uid, --allow-group).",
        peer.uid, peer.gid
    );
    counted(service, Refused::PeerUnauthorized, Severity::Critical, reason)
}

/// The answer to a client past `--max-connections`.
pub(super) fn overloaded(service: &Service) -> Vec<u8> {
    let max_connections = service.limits().max_connections;
    let reason = format!(
        "cavra-runtime is serving its maximum of {max_connections} connections (--max-connections); retry shortly."
    );
    counted(service, Refused::Overloaded, Severity::High, reason)
}

/// The answer to a client whose uid has `--max-connections-per-uid` open.
pub(super) fn uid_overloaded(service: &Service, uid: u32, max_per_uid: usize) -> Vec<u8> {
    let reason = format!(
        "uid {uid} already has its maximum of {max_per_uid} connections open (--max-connections-per-uid); close one \
         or retry shortly."
    );
    counted(service, Refused::Overloaded, Severity::High, reason)
}

/// The answer to a request that found no room in `--max-buffered-bytes` before its deadline.
pub(super) fn budget_overloaded(service: &Service) -> Vec<u8> {
    let max_buffered_bytes = service.limits().max_buffered_bytes;
    let reason = format!(
        "cavra-runtime is holding its maximum of {max_buffered_bytes} bytes of requests and answers in transit \
         (--max-buffered-bytes); the request was not read. Retry shortly."
    );
    counted(service, Refused::Overloaded, Severity::High, reason)
}

/// A refusal about the connection rather than a request, counted, as an answer line.
fn counted(service: &Service, kind: Refused, severity: Severity, reason: String) -> Vec<u8> {
    service.metrics().refused(kind);
    refusal(kind.rule_id(), severity, reason)
}

/// A refusal about the connection rather than an action, as an answer line.
fn refusal(rule_id: &str, severity: Severity, reason: String) -> Vec<u8> {
    line(&DecisionResponse::refusal(rule_id, severity, reason))
}

fn line(response: &DecisionResponse) -> Vec<u8> {
    // A decision line is a few hundred bytes; one allocation of this size holds it.
    let mut bytes = Vec::with_capacity(1024);
    serde_json::to_writer(&mut bytes, response).expect("a decision serialises");
    bytes.push(b'\n');
    bytes
}
