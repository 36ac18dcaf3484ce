//! Engine-only benchmark: one decision per action kind for every built-in pack (and, for commands, a compound line
//! and a wrapped one besides the simple command), plus the heap the compiled packs hold. Run with `cargo bench --bench engine`; the figures go in docs/performance.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use cavra_runtime::contract::EvaluateRequest;
use cavra_runtime::engine;
use cavra_runtime::policy::{PolicyConfig, PolicySet};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Counts live heap bytes so the benchmark can report what the loaded packs cost.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn requests(pack: &str) -> Vec<(&'static str, EvaluateRequest)> {
    let request = |json: serde_json::Value| {
        let mut request: EvaluateRequest = serde_json::from_value(json).expect("benchmark request");
        request.policy_pack = pack.to_owned();
        request
    };
    use serde_json::json;
    vec![
        (
            "read_file",
            request(json!({"action_type": "read_file", "target": "src/app/config/settings.yaml"})),
        ),
        (
            "write_file",
            request(json!({"action_type": "write_file", "target": "services/api/iam/roles/admin.tf"})),
        ),
        (
            "execute_command",
            request(json!({"action_type": "execute_command", "target": "terraform plan -out plan.tfplan"})),
        ),
        (
            "execute_command_compound",
            request(json!({"action_type": "execute_command",
                "target": "cd infra && terraform plan -out x | tee plan.log; echo \"done: $(date)\" >> log.txt 2>&1"})),
        ),
        (
            "execute_command_wrapped",
            request(
                json!({"action_type": "execute_command", "target": "nohup timeout 600 bash -c 'terraform fmt && terraform plan'"}),
            ),
        ),
        (
            "git_operation",
            request(json!({"action_type": "git_operation", "target": "origin/main", "operation": "push"})),
        ),
        (
            "mcp_tool_call",
            request(json!({"action_type": "mcp_tool_call", "server": "github", "tool": "create_pull_request"})),
        ),
        (
            "release_governance",
            request(
                json!({"action_type": "release_governance_record", "release_governance": {
            "metadata_kind": "rollout-promotion-execution", "approval_state": "approved", "approval_id": "apr_1"}}),
            ),
        ),
    ]
}

fn decisions(c: &mut Criterion) {
    let before = LIVE.load(Ordering::Relaxed);
    let policies = PolicySet::load(&PolicyConfig::default()).expect("built-in packs load");
    let held = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "memory: all {} built-in packs hold {held} bytes of heap",
        policies.packs().count()
    );

    let context = engine::Context::default();
    let packs: Vec<String> = policies.packs().map(|policy| policy.id.clone()).collect();
    for pack in &packs {
        let mut group = c.benchmark_group(format!("decision/{pack}"));
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_millis(700));
        group.sample_size(20);
        for (kind, request) in requests(pack) {
            group.bench_with_input(BenchmarkId::from_parameter(kind), &request, |b, request| {
                b.iter(|| engine::evaluate(black_box(&policies), black_box(request), black_box(&context)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
