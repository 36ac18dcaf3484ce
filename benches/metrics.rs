//! What metrics add to a decision on the hot path: finding the decision's (pack, rule) series, counting it, and
//! timing the answer (two clock reads and a histogram observation); alone, and with every thread of the machine
//! counting into the same series at once. Times are CPU time of the process (getrusage), not wall time, so that
//! other work on a shared machine does not inflate them. Run with `cargo bench --bench metrics`; the figures go in
//! docs/performance.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

use cavra_runtime::contract::{Decision, DecisionResponse, Severity};
use cavra_runtime::policy::{PolicyConfig, PolicySet, PolicySource};
use cavra_runtime::server::metrics::Metrics;
use criterion::{Criterion, criterion_group, criterion_main};

fn decision(policies: &PolicySet) -> DecisionResponse {
    let mut response = <DecisionResponse as cavra_runtime::contract::Refusal>::refusal(
        "filesystem.read.block",
        Severity::High,
        String::new(),
    );
    response.policy_pack = policies.default_pack().to_owned();
    response
}

fn per_decision(metrics: &Metrics, policies: &PolicySet, response: &DecisionResponse) {
    let started = Instant::now();
    let slot = metrics.decision_slot(policies, black_box(response));
    metrics.decided(slot, &Decision::Block);
    metrics.answered(started.elapsed());
}

/// CPU time the process has used so far, user and system.
fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let time =
        |t: nix::sys::time::TimeVal| Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64);
    time(usage.user_time()) + time(usage.system_time())
}

fn bench(c: &mut Criterion) {
    let policies = Arc::new(
        PolicySet::load(&PolicyConfig {
            source: PolicySource::BuiltIn,
            default_pack: None,
            registry: None,
        })
        .expect("built-in packs"),
    );
    let response = decision(&policies);
    let metrics = Arc::new(Metrics::default());
    c.bench_function("metrics per decision, one thread", |b| {
        b.iter_custom(|iterations| {
            let started = cpu_time();
            for _ in 0..iterations {
                per_decision(&metrics, &policies, &response);
            }
            cpu_time() - started
        })
    });
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    c.bench_function(&format!("metrics per decision, {threads} threads on one series"), |b| {
        b.iter_custom(|iterations| {
            let started = cpu_time();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for _ in 0..iterations {
                            per_decision(&metrics, &policies, &response);
                        }
                    });
                }
            });
            // CPU time of all threads, per decision of one thread: what contention on the shared counters costs
            // shows as the difference to `threads` times the one-thread figure.
            (cpu_time() - started) / threads as u32
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
