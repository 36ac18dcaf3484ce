//! Evidence log: a tamper-evident, hash-chained JSONL record of every decision the daemon answers.
