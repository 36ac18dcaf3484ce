//! The request handler: one request line in, one answer line out. It decodes the request, answers health probes,
//! checks runner authentication, asks the engine, has the decision recorded as evidence, and logs it. How the line
//! arrived and how the answer leaves (protocol modes, framing, timeouts) is the connection's business.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Service;
use super::bounds::{self, FieldTooLarge};
use super::budget::OverRate;
use super::metrics::{self, Refused};
use crate::auth::runner::Check;
use crate::auth::{Peer, RunnerAuthError};
use crate::contract::{
    DecisionResponse, EvaluateRequest, HEALTH_ACTION, METRICS_ACTION, MetricsAnswer, Refusal as _, Severity,
};
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
            if service.warnings.invalid.allow() {
                tracing::info!(peer_uid = peer.uid, peer_pid = peer.pid, %error, "invalid request");
            }
            let reason = format!("Request is not a valid EvaluateRequest: {error}.");
            return Reply::Ready(refused(service, Refused::Invalid, Severity::High, reason, started));
        }
    };
    if let Err(error) = bounds::check(&request) {
        if service.warnings.field_too_large.allow() {
            tracing::warn!(
                peer_uid = peer.uid,
                peer_pid = peer.pid,
                field = %error.field,
                %error,
                "refused a request with a field past its maximum"
            );
        }
        return Reply::Ready(field_too_large(&error));
    }
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
    // Before anything is checked, decided or recorded for it: a flood costs its sender, not everyone.
    if let Err(over) = service.spend_decision(peer.uid) {
        return Reply::Ready(decision_rate_limited(service, peer, over, started));
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
            if service.warnings.invalid.allow() {
                tracing::info!(peer_uid = peer.uid, peer_pid = peer.pid, %invalid, "invalid request");
            }
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
    if service.warnings.runner_auth.allow() {
        tracing::warn!(peer_uid = peer.uid, peer_pid = peer.pid, %error, "runner authentication failed");
    }
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

/// Sends `response`, after its evidence record is durable when a log is kept (and the peer's evidence budget has
/// room for it). A decision of the engine is counted
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
        service.decision_log().decided(&response, peer, None, None);
        let metrics = service.metrics();
        if let Some(slot) = slot {
            metrics.decided(slot, &response.decision);
        }
        let line = line(&response);
        metrics.answered(started.elapsed());
        return Reply::Ready(line);
    };
    let session_id = response.session_id.clone();
    let draft = evidence.draft(request, response, Some(peer));
    if let Err(over) = service.spend_evidence(peer.uid, draft.bytes()) {
        let metrics = service.metrics();
        metrics.refused(Refused::RateLimited);
        metrics.answered(started.elapsed());
        return Reply::Ready(evidence_rate_limited(service, peer, draft.bytes(), over));
    }
    // The answer waits for its record: no client acts on a decision the log does not hold.
    let recorded = evidence.record_draft(draft);
    let (service, peer) = (Arc::clone(service), peer.clone());
    Reply::Waiting(Box::pin(async move {
        match recorded.await {
            Ok(recorded) => {
                let line = recorded.line.as_deref().map(String::from_utf8_lossy);
                service.decision_log().decided(
                    &recorded.response,
                    &peer,
                    Some((recorded.sequence, &recorded.record_hash)),
                    line.as_deref(),
                );
                let metrics = service.metrics();
                if let Some(slot) = slot {
                    metrics.decided(slot, &recorded.response.decision);
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

/// The answer to a uid past `--max-decisions-per-second-per-uid`; logged at most once an interval.
fn decision_rate_limited(service: &Service, peer: &Peer, over: OverRate, started: Instant) -> Vec<u8> {
    let metrics = service.metrics();
    metrics.refused(Refused::RateLimited);
    metrics.answered(started.elapsed());
    let rate = service.limits().decisions_per_uid.expect("a rate refused the request");
    if service.warnings.decision_rate.allow() {
        tracing::warn!(
            peer_uid = peer.uid,
            peer_pid = peer.pid,
            per_second = rate.per_second,
            burst = rate.burst,
            "refused a request: its uid is past --max-decisions-per-second-per-uid"
        );
    }
    let reason = format!(
        "uid {} is past its rate of {} decisions a second (burst {}; --max-decisions-per-second-per-uid); the request \
         was not decided. Retry in {:.2} s.",
        peer.uid,
        rate.per_second,
        rate.burst,
        over.retry_after.as_secs_f64()
    );
    refusal("daemon.rate_limited", Severity::High, reason)
}

/// The answer to a uid past `--max-evidence-bytes-per-second-per-uid`; logged at most once an interval.
fn evidence_rate_limited(service: &Service, peer: &Peer, bytes: usize, over: OverRate) -> Vec<u8> {
    let rate = service
        .limits()
        .evidence_bytes_per_uid
        .expect("a rate refused the request");
    if service.warnings.evidence_rate.allow() {
        tracing::warn!(
            peer_uid = peer.uid,
            peer_pid = peer.pid,
            per_second = rate.per_second,
            burst = rate.burst,
            record_bytes = bytes,
            "refused a request: its uid is past --max-evidence-bytes-per-second-per-uid"
        );
    }
    let reason = format!(
        "uid {} is past its rate of {} bytes of evidence a second (burst {}; --max-evidence-bytes-per-second-per-uid); \
         the decision, about {bytes} bytes of evidence, was neither recorded nor answered. Retry in {:.2} s.",
        peer.uid,
        rate.per_second,
        rate.burst,
        over.retry_after.as_secs_f64()
    );
    refusal("daemon.rate_limited", Severity::High, reason)
}

/// The answer to a request over `--max-request-bytes`.
pub(super) fn too_large(service: &Service) -> Vec<u8> {
    let limit = service.limits().max_request_bytes;
    let reason = format!("Request exceeds the {limit}-byte limit (--max-request-bytes); it was not read.");
    counted(service, Refused::TooLarge, Severity::High, reason)
}

/// The answer to a request with a field past its maximum (see `bounds`).
fn field_too_large(error: &FieldTooLarge) -> Vec<u8> {
    let reason = format!(
        "Request not decided: field `{}` is {} {}; at most {} are accepted (field limits: docs/protocol.md).",
        error.field, error.size, error.unit, error.limit
    );
    refusal("daemon.request.too_large", Severity::High, reason)
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
