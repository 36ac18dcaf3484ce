#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cavra_runtime_fuzz::decision_invariants(data));
