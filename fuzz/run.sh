#!/usr/bin/env bash
# Runs every cargo-fuzz target (or the ones named) for SECONDS each, default 60, and fails if any of them finds a
# crash, a hang or a leak. Usage: fuzz/run.sh [SECONDS] [TARGET...]
#
# cargo-fuzz passes nightly-only compiler flags (-Zsanitizer=address, -Cpasses=sancov-module, ...). This project
# builds with the stable toolchain and no nightly can be fetched, so RUSTC_BOOTSTRAP=1 lets the stable compiler
# accept them. Set FUZZ_SANITIZER=none to build without AddressSanitizer (still coverage-guided) where ASan's
# runtime is missing.
#
# Seeds come from fuzz/corpus/<target>/ (kept in git; rebuild them with fuzz/seed-corpus.py). What the fuzzer finds
# goes to fuzz/work/corpus/<target>/ and crash inputs to fuzz/artifacts/<target>/, both ignored by git. A crash input
# belongs, minimised with `cargo fuzz tmin`, in testdata/fuzz-regressions/<target>/, which tests/fuzz_regressions.rs
# replays on every `cargo test`.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS] [TARGET...]" >&2
  exit 2
fi
shift || true

cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${targets[*]} (sanitizer: $sanitizer)"
cargo fuzz build --sanitizer "$sanitizer"

failed=()
for target in "${targets[@]}"; do
  case "$target" in
    policy_yaml | evidence_verify) max_len=16384 ;;
    *) max_len=8192 ;;
  esac
  mkdir -p "fuzz/work/corpus/$target" "fuzz/artifacts/$target"
  # New finds go to the first directory; the seeds, and past crash inputs as extra seeds, are only read.
  corpora=("fuzz/work/corpus/$target" "fuzz/corpus/$target")
  if [[ -d "testdata/fuzz-regressions/$target" ]]; then
    corpora+=("testdata/fuzz-regressions/$target")
  fi
  echo "== $target: ${seconds}s"
  # -timeout: one input taking longer than this is a hang; the harnesses bound their own waits well below it.
  if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -max_len="$max_len" \
    -dict=fuzz/cavra.dict -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "== FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "== all ${#targets[@]} targets ran ${seconds}s each without a crash"
