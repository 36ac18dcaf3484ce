//! The request handler: one request line in, one answer line out. It decodes the request, answers health probes,
//! checks runner authentication, asks the engine, has the decision recorded as evidence, and logs it. How the line
//! arrived and how the answer leaves (protocol modes, framing, timeouts) is the connection's business.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::Service;
use super::bounds::{self, FieldTooLarge};
use super::budget::OverRate;
use crate::auth::runner::Check;
use crate::auth::{Peer, RunnerAuthError};
use crate::contract::{DecisionResponse, EvaluateRequest, HEALTH_ACTION, Refusal as _, Severity};
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
    let request: EvaluateRequest = match serde_json::from_slice(bytes) {
        Ok(request) => request,
        Err(error) => {
            if service.warnings.invalid.allow() {
                tracing::info!(peer_uid = peer.uid, peer_pid = peer.pid, %error, "invalid request");
            }
            let reason = format!("Request is not a valid EvaluateRequest: {error}.");
            return Reply::Ready(refusal("daemon.request.invalid", Severity::High, reason));
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
    // Before anything is checked, decided or recorded for it: a flood costs its sender, not everyone.
    if let Err(over) = service.spend_decision(peer.uid) {
        return Reply::Ready(decision_rate_limited(service, peer, over));
    }
    let Some(runners) = service.runner_auth() else {
        return decide(service, peer, request);
    };
    match runners.check(&request) {
        Check::Done(Ok(())) => decide(service, peer, request),
        Check::Done(Err(error)) => refuse_runner(service, peer, request, &error),
        // Rare: the OIDC key set must be fetched first. The record waits for it too, so only this request's place
        // in the evidence order may move.
        Check::NeedsKeys(verifier) => {
            let (service, peer, runners) = (Arc::clone(service), peer.clone(), Arc::clone(runners));
            Reply::Waiting(Box::pin(async move {
                verifier.refresh().await;
                let reply = match runners.check_now(&request) {
                    Ok(()) => decide(&service, &peer, request),
                    Err(error) => refuse_runner(&service, &peer, request, &error),
                };
                reply.line().await
            }))
        }
    }
}

fn decide(service: &Arc<Service>, peer: &Peer, request: EvaluateRequest) -> Reply {
    let context = service.decisions().context_for(peer);
    match engine::evaluate(&service.policies(), &request, &context) {
        Ok(response) => deliver(service, peer, request, response),
        Err(invalid) => {
            if service.warnings.invalid.allow() {
                tracing::info!(peer_uid = peer.uid, peer_pid = peer.pid, %invalid, "invalid request");
            }
            let reason = format!("Request is not a valid EvaluateRequest: {invalid}.");
            Reply::Ready(refusal("daemon.request.invalid", Severity::High, reason))
        }
    }
}

/// The reference's answer to a runner that did not prove itself: not evaluated, echoing the request as sent, with
/// none of the metadata an evaluated decision carries.
fn refuse_runner(service: &Arc<Service>, peer: &Peer, request: EvaluateRequest, error: &RunnerAuthError) -> Reply {
    if service.warnings.runner_auth.allow() {
        tracing::warn!(peer_uid = peer.uid, peer_pid = peer.pid, %error, "runner authentication failed");
    }
    let refusal = DecisionResponse::refusal(
        "runner_auth.invalid",
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
    deliver(service, peer, request, response)
}

/// Sends `response`, after its evidence record is durable when a log is kept (and the peer's evidence budget has
/// room for it).
fn deliver(service: &Arc<Service>, peer: &Peer, request: EvaluateRequest, response: DecisionResponse) -> Reply {
    let Some(evidence) = service.evidence() else {
        service.decision_log().decided(&response, peer, None);
        return Reply::Ready(line(&response));
    };
    let session_id = response.session_id.clone();
    let draft = evidence.draft(request, response, Some(peer));
    if let Err(over) = service.spend_evidence(peer.uid, draft.bytes()) {
        return Reply::Ready(evidence_rate_limited(service, peer, draft.bytes(), over));
    }
    // The answer waits for its record: no client acts on a decision the log does not hold.
    let recorded = evidence.record_draft(draft);
    let (service, peer) = (Arc::clone(service), peer.clone());
    Reply::Waiting(Box::pin(async move {
        match recorded.await {
            Ok(recorded) => {
                service.decision_log().decided(
                    &recorded.response,
                    &peer,
                    Some((recorded.sequence, &recorded.record_hash)),
                );
                // The answer is the record's response byte for byte (with Go's escaping: the same JSON to any parser).
                let mut line = recorded.encoded;
                line.push(b'\n');
                line
            }
            Err(error) => {
                let reason = format!("Decision withheld: its evidence record could not be written ({error}).");
                let mut refusal = DecisionResponse::refusal("daemon.evidence.unavailable", Severity::Critical, reason);
                refusal.session_id = session_id;
                line(&refusal)
            }
        }
    }))
}

/// The answer to a uid past `--max-decisions-per-second-per-uid`; logged at most once an interval.
fn decision_rate_limited(service: &Service, peer: &Peer, over: OverRate) -> Vec<u8> {
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
pub(super) fn too_large(limit: usize) -> Vec<u8> {
    let reason = format!("Request exceeds the {limit}-byte limit (--max-request-bytes); it was not read.");
    refusal("daemon.request.too_large", Severity::High, reason)
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
pub(super) fn timed_out(limit: Duration) -> Vec<u8> {
    let reason = format!("Request did not complete within {limit:?} (--request-timeout).");
    refusal("daemon.request.timeout", Severity::High, reason)
}

/// The answer to a peer that `--allow-uid`/`--allow-group` do not admit.
pub(super) fn peer_unauthorized(peer: &Peer) -> Vec<u8> {
    let reason = format!(
        "Peer uid {} (gid {}) is not allowed to use this daemon (--allow-uid, --allow-group).",
        peer.uid, peer.gid
    );
    refusal("daemon.peer.unauthorized", Severity::Critical, reason)
}

/// The answer to a client past `--max-connections`.
pub(super) fn overloaded(max_connections: usize) -> Vec<u8> {
    let reason = format!(
        "cavra-runtime is serving its maximum of {max_connections} connections (--max-connections); retry shortly."
    );
    refusal("daemon.overloaded", Severity::High, reason)
}

/// The answer to a client whose uid has `--max-connections-per-uid` open.
pub(super) fn uid_overloaded(uid: u32, max_per_uid: usize) -> Vec<u8> {
    let reason = format!(
        "uid {uid} already has its maximum of {max_per_uid} connections open (--max-connections-per-uid); close one \
         or retry shortly."
    );
    refusal("daemon.overloaded", Severity::High, reason)
}

/// The answer to a request that found no room in `--max-buffered-bytes` before its deadline.
pub(super) fn budget_overloaded(max_buffered_bytes: usize) -> Vec<u8> {
    let reason = format!(
        "cavra-runtime is holding its maximum of {max_buffered_bytes} bytes of requests and answers in transit \
         (--max-buffered-bytes); the request was not read. Retry shortly."
    );
    refusal("daemon.overloaded", Severity::High, reason)
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
