//! The daemon's metrics: what it decided (by decision, rule and pack), what it refused and why, how long answers
//! took, its connections, its reloads and its evidence log; with the build and the policy in force as info metrics.
//!
//! Requests pay atomic adds only, each thread to its own copy of the counters (see `metrics`): a decision's series is
//! found in a lock-free table (see `metrics::SeriesTable`), refusals and connection outcomes are fixed arrays indexed
//! by kind. Everything is read and encoded at a scrape
//! ([`text`]), in the Prometheus text format, for the metrics listener (`exposition`), the `cavra.metrics` request
//! and `--metrics`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Service;
use crate::contract::{Decision, DecisionResponse};
use crate::metrics::encode::{self, Collector, DescriptorEncoder};
use crate::metrics::{Counter, Histogram, SeriesTable};
use crate::policy::PolicySet;

/// Series of (pack, rule) pairs kept apart; more than this (only with hundreds of packs) are counted as `other`.
const DECISION_SERIES: usize = 4096;

/// From a request's arrival to its answer (its evidence record durable), in nanoseconds: 25 µs to 10 s.
const LATENCY_SECONDS: &[u64] = &[
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// A request the daemon answered with a refusal of its own instead of deciding it, by the refusal's rule id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Invalid,
    TooLarge,
    Timeout,
    PeerUnauthorized,
    Overloaded,
    EvidenceUnavailable,
    RunnerAuth,
    RateLimited,
}

impl Refused {
    const ALL: [Refused; 8] = [
        Refused::Invalid,
        Refused::TooLarge,
        Refused::Timeout,
        Refused::PeerUnauthorized,
        Refused::Overloaded,
        Refused::EvidenceUnavailable,
        Refused::RunnerAuth,
        Refused::RateLimited,
    ];

    pub fn rule_id(self) -> &'static str {
        match self {
            Refused::Invalid => "daemon.request.invalid",
            Refused::TooLarge => "daemon.request.too_large",
            Refused::Timeout => "daemon.request.timeout",
            Refused::PeerUnauthorized => "daemon.peer.unauthorized",
            Refused::Overloaded => "daemon.overloaded",
            Refused::EvidenceUnavailable => "daemon.evidence.unavailable",
            Refused::RunnerAuth => "runner_auth.invalid",
            Refused::RateLimited => "daemon.rate_limited",
        }
    }
}

/// Why a connection was closed before it was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefused {
    /// Its peer credentials could not be read.
    Credentials,
    /// `--allow-uid`/`--allow-group` do not admit its peer.
    Peer,
    /// Its uid had `--max-connections-per-uid` open.
    UidLimit,
    /// `--max-connections` were open.
    ConnectionLimit,
}

impl ConnectionRefused {
    const ALL: [ConnectionRefused; 4] = [
        ConnectionRefused::Credentials,
        ConnectionRefused::Peer,
        ConnectionRefused::UidLimit,
        ConnectionRefused::ConnectionLimit,
    ];

    fn label(self) -> &'static str {
        match self {
            ConnectionRefused::Credentials => "credentials",
            ConnectionRefused::Peer => "peer_not_allowed",
            ConnectionRefused::UidLimit => "uid_limit",
            ConnectionRefused::ConnectionLimit => "connection_limit",
        }
    }
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    Success,
    Failure,
}

pub struct Metrics {
    /// (pack, rule) -> answered decisions, by [`decision_index`].
    decisions: SeriesTable<3>,
    refusals: [AtomicU64; Refused::ALL.len()],
    latency: Histogram,
    /// Connections admitted, and those of them closed since: per request in compatible mode, so sharded too.
    accepted: Counter,
    closed: Counter,
    refused_connections: [AtomicU64; ConnectionRefused::ALL.len()],
    /// Successful and failed reloads, and when the last of each ended (seconds since the epoch; 0: never).
    reloads: [AtomicU64; 2],
    last_reload: [AtomicU64; 2],
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            decisions: SeriesTable::new(DECISION_SERIES),
            refusals: Default::default(),
            latency: Histogram::seconds(LATENCY_SECONDS),
            accepted: Counter::default(),
            closed: Counter::default(),
            refused_connections: Default::default(),
            reloads: Default::default(),
            last_reload: Default::default(),
        }
    }
}

fn decision_index(decision: &Decision) -> usize {
    match decision {
        Decision::Allow => 0,
        Decision::RequireApproval => 2,
        // The engine decides nothing else; anything else is not allowed, so it counts as a block.
        _ => 1,
    }
}

const DECISIONS: [Decision; 3] = [Decision::Allow, Decision::Block, Decision::RequireApproval];

/// The label a pack is counted under: its id when it is one of the loaded packs, else `unknown` (a request may
/// name any pack; its name must not become a series).
pub const UNKNOWN_PACK: &str = "unknown";

impl Metrics {
    /// Where `response`'s decision is counted (see [`Metrics::decided`]).
    pub fn decision_slot(&self, policies: &PolicySet, response: &DecisionResponse) -> usize {
        let pack = match policies.pack(&response.policy_pack) {
            Some(_) => response.policy_pack.as_str(),
            None => UNKNOWN_PACK,
        };
        self.decisions.slot(pack, &response.rule_id)
    }

    /// Counts an answered decision.
    pub fn decided(&self, slot: usize, decision: &Decision) {
        self.decisions.add(slot, decision_index(decision));
    }

    pub fn refused(&self, refused: Refused) {
        self.refusals[refused as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The time from a request's arrival to its answer.
    pub fn answered(&self, took: Duration) {
        self.latency.observe_duration(took);
    }

    pub fn connection_opened(&self) {
        self.accepted.add(1);
    }

    pub fn connection_closed(&self) {
        self.closed.add(1);
    }

    pub fn connection_refused(&self, why: ConnectionRefused) {
        self.refused_connections[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloaded(&self, result: ReloadResult) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.reloads[result as usize].fetch_add(1, Ordering::Relaxed);
        self.last_reload[result as usize].store(now, Ordering::Relaxed);
    }

    /// Connections being served now.
    pub fn open_connections(&self) -> i64 {
        // Closed first: a connection closing meanwhile is then in neither figure, or only in `accepted`.
        let closed = self.closed.get();
        self.accepted.get() as i64 - closed as i64
    }
}

/// Everything the service reports, in the Prometheus text format.
pub fn text(service: &Arc<Service>) -> String {
    encode::text(vec![Box::new(Scrape(Arc::clone(service)))])
}

/// The service, read at a scrape.
struct Scrape(Arc<Service>);

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> encode::Result {
        let service = &self.0;
        let metrics = service.metrics();
        let e = &mut encoder;

        encode::info(
            e,
            "cavra_build",
            "The running cavra-runtime's version.",
            &[("version", env!("CARGO_PKG_VERSION"))],
        )?;
        let policies = service.policies();
        let source = policies.source().to_string();
        encode::info(
            e,
            "cavra_policy",
            "The policy in force: its digest, where it was loaded from and its default pack.",
            &[
                ("digest", policies.digest()),
                ("source", &source),
                ("default_pack", policies.default_pack()),
            ],
        )?;
        let health = service.health();
        encode::gauges(
            e,
            "cavra_health_status",
            "1 for the health answer's status now (ok, degraded, failing), 0 for the others.",
            ["ok", "degraded", "failing"].map(|status| {
                (
                    [("status", status)],
                    f64::from(u8::from(health.health.status == status)),
                )
            }),
        )?;
        encode::gauges(
            e,
            "cavra_health_reason",
            "1 for each reason the health answer gives now, by its code and the status it calls for.",
            health
                .reasons
                .iter()
                .map(|reason| ([("code", reason.code), ("status", reason.status.as_str())], 1.0)),
        )?;
        encode::gauge(
            e,
            "cavra_policy_packs",
            "Policy packs loaded.",
            policies.packs().count() as f64,
        )?;

        let snapshot = metrics.decisions.snapshot();
        let decisions: Vec<([(&str, &str); 3], u64)> = snapshot
            .iter()
            .flat_map(|([pack, rule], counts)| {
                DECISIONS
                    .iter()
                    .zip(counts)
                    .filter(|(_, count)| **count > 0)
                    .map(move |(decision, count)| {
                        (
                            [("decision", decision.as_str()), ("rule", *rule), ("pack", *pack)],
                            *count,
                        )
                    })
            })
            .collect();
        encode::counters(
            e,
            "cavra_decisions",
            "Decisions answered, by decision, rule and pack (pack `unknown`: a pack the request named that is not \
             loaded).",
            decisions,
        )?;
        encode::counters(
            e,
            "cavra_refusals",
            "Requests the daemon refused itself instead of deciding, by the refusal's rule id.",
            Refused::ALL.iter().map(|refused| {
                (
                    [("kind", refused.rule_id())],
                    metrics.refusals[*refused as usize].load(Ordering::Relaxed),
                )
            }),
        )?;
        encode::histogram(
            e,
            "cavra_request_duration_seconds",
            "From a request's arrival to its answer, its evidence record durable.",
            &metrics.latency.snapshot(),
        )?;

        encode::counter(
            e,
            "cavra_connections_accepted",
            "Connections admitted and served.",
            metrics.accepted.get(),
        )?;
        encode::gauge(
            e,
            "cavra_connections_open",
            "Connections being served now.",
            metrics.open_connections() as f64,
        )?;
        encode::gauge(
            e,
            "cavra_connections_max",
            "The most connections served at once (--max-connections).",
            service.limits().max_connections as f64,
        )?;
        encode::counters(
            e,
            "cavra_connections_refused",
            "Connections closed before they were served, by reason.",
            ConnectionRefused::ALL.iter().map(|why| {
                (
                    [("reason", why.label())],
                    metrics.refused_connections[*why as usize].load(Ordering::Relaxed),
                )
            }),
        )?;

        let results = [("success", ReloadResult::Success), ("failure", ReloadResult::Failure)];
        encode::counters(
            e,
            "cavra_reloads",
            "Policy reloads (SIGHUP), by result.",
            results.iter().map(|(label, result)| {
                (
                    [("result", *label)],
                    metrics.reloads[*result as usize].load(Ordering::Relaxed),
                )
            }),
        )?;
        encode::gauges(
            e,
            "cavra_last_reload_timestamp_seconds",
            "When the last reload with each result ended (seconds since the epoch; 0: none yet).",
            results.iter().map(|(label, result)| {
                (
                    [("result", *label)],
                    metrics.last_reload[*result as usize].load(Ordering::Relaxed) as f64,
                )
            }),
        )?;

        if let Some(evidence) = service.evidence() {
            let stats = evidence.stats().snapshot();
            encode::counter(
                e,
                "cavra_evidence_records",
                "Evidence records made durable.",
                stats.records,
            )?;
            encode::counter(
                e,
                "cavra_evidence_failed_groups",
                "Groups of evidence records whose write or sync failed (their decisions failed closed).",
                stats.failed_groups,
            )?;
            encode::counter(
                e,
                "cavra_evidence_failed_records",
                "Evidence records that could not be written (each a decision that failed closed).",
                stats.failed_records,
            )?;
            encode::counter(
                e,
                "cavra_evidence_file_switches",
                "Moves to a new evidence file (rotation, a deleted or changed log).",
                stats.switches,
            )?;
            encode::histogram(
                e,
                "cavra_evidence_group_size",
                "Evidence records written and synced together.",
                &stats.group_size,
            )?;
            encode::histogram(
                e,
                "cavra_evidence_sync_duration_seconds",
                "Writing and syncing one group of evidence records.",
                &stats.sync_seconds,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicyConfig, PolicySource};
    use crate::server::Limits;

    fn service() -> Arc<Service> {
        let policies = PolicySet::load(&PolicyConfig {
            source: PolicySource::BuiltIn,
            default_pack: None,
            registry: None,
        })
        .unwrap();
        Arc::new(Service::new(policies, Limits::default()))
    }

    fn response(pack: &str, rule: &str) -> DecisionResponse {
        let mut response = <DecisionResponse as crate::contract::Refusal>::refusal(
            rule,
            crate::contract::Severity::High,
            String::new(),
        );
        response.policy_pack = pack.to_owned();
        response
    }

    #[test]
    fn decisions_are_counted_by_decision_rule_and_a_loaded_pack() {
        let service = service();
        let metrics = service.metrics();
        let policies = service.policies();
        let pack = policies.default_pack().to_owned();
        let blocked = metrics.decision_slot(&policies, &response(&pack, "filesystem.read.block"));
        metrics.decided(blocked, &Decision::Block);
        metrics.decided(blocked, &Decision::Block);
        let unknown = metrics.decision_slot(&policies, &response("made-up-pack", "filesystem.read.block"));
        metrics.decided(unknown, &Decision::Block);
        metrics.refused(Refused::TooLarge);
        metrics.answered(Duration::from_micros(30));
        let text = text(&service);
        for expected in [
            format!("cavra_decisions_total{{decision=\"block\",rule=\"filesystem.read.block\",pack=\"{pack}\"}} 2\n"),
            "cavra_decisions_total{decision=\"block\",rule=\"filesystem.read.block\",pack=\"unknown\"} 1\n".into(),
            "cavra_refusals_total{kind=\"daemon.request.too_large\"} 1\n".into(),
            "cavra_refusals_total{kind=\"runner_auth.invalid\"} 0\n".into(),
            "cavra_request_duration_seconds_bucket{le=\"5e-05\"} 1\n".into(),
            "cavra_request_duration_seconds_count 1\n".into(),
            format!("cavra_policy_info{{digest=\"{}\",", policies.digest()),
            format!("cavra_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
        }
        assert!(!text.contains("made-up-pack"), "{text}");
        assert!(
            !text.contains("decision=\"allow\""),
            "series never counted are not written:\n{text}"
        );
    }
}
