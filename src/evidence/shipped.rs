//! Chains rebuilt from collected journals: with `--log-evidence-records` every record travels in its decision's
//! journal entry (and every link record in one of its own), so a central collector (systemd-journal-remote, or any
//! export as `journalctl -o json`) holds each host's chain without holding its files. Records are grouped by the
//! entry's `_MACHINE_ID`, put in sequence order, and verified as one stream per machine, as `--verify-evidence`
//! verifies a file: hashes, chain, and signatures with the keys given (an Ed25519 public key needs no secret).
//! Sequences the journal lacks are reported as gaps: a record removed from the journal, or never shipped.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::VerifyingKeys;
use super::journal::ShippedRecord;
use super::verify::{Signatures, Verifier};

/// At most this many gaps are described per machine; `missing` always counts them all.
const MAX_GAPS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippedReport {
    pub valid: bool,
    pub machines: Vec<MachineReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineReport {
    pub machine_id: String,
    /// The host names its entries carried.
    pub hostnames: Vec<String>,
    pub valid: bool,
    /// Distinct records found.
    pub records: u64,
    pub signed_records: u64,
    pub first_sequence: i64,
    pub last_sequence: i64,
    /// Records between the first and the last that the journal does not hold.
    pub missing: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Verifies each machine's chain in `records`.
pub fn verify_shipped(records: Vec<ShippedRecord>, keys: &VerifyingKeys) -> ShippedReport {
    let mut by_machine: BTreeMap<String, Vec<ShippedRecord>> = BTreeMap::new();
    for record in records {
        by_machine.entry(record.machine_id.clone()).or_default().push(record);
    }
    let machines: Vec<MachineReport> = by_machine
        .into_iter()
        .map(|(machine_id, records)| verify_machine(machine_id, records, keys))
        .collect();
    ShippedReport {
        valid: !machines.is_empty() && machines.iter().all(|machine| machine.valid),
        machines,
    }
}

fn verify_machine(machine_id: String, mut records: Vec<ShippedRecord>, keys: &VerifyingKeys) -> MachineReport {
    let mut hostnames: Vec<String> = records.iter().map(|record| record.hostname.clone()).collect();
    hostnames.sort();
    hostnames.dedup();
    hostnames.retain(|name| !name.is_empty());
    // The same entry may be collected twice (an export and the directory it came from): one copy counts.
    records.sort_by(|a, b| (a.sequence, &a.line).cmp(&(b.sequence, &b.line)));
    records.dedup_by(|a, b| a.sequence == b.sequence && a.line == b.line);
    let mut errors = Vec::new();
    let (mut gaps, mut missing) = (Vec::new(), 0u64);
    let mut verifier = Verifier::new(
        Path::new(&format!("journal of machine {machine_id}")),
        Signatures::Check(keys),
    )
    .spanning_files();
    let mut previous: Option<i64> = None;
    for record in &records {
        if previous == Some(record.sequence) {
            errors.push(format!(
                "two different records with sequence {} (hash {}): the chain forked or was restarted",
                record.sequence, record.record_hash
            ));
            continue;
        }
        if let Some(previous) = previous
            && record.sequence > previous + 1
        {
            let (first, last) = (previous + 1, record.sequence - 1);
            missing += (last - first + 1) as u64;
            if gaps.len() < MAX_GAPS {
                gaps.push(if first == last {
                    format!("record {first} is not in the journal")
                } else {
                    format!(
                        "records {first} to {last} ({}) are not in the journal",
                        last - first + 1
                    )
                });
            }
        }
        previous = Some(record.sequence);
        let mut line = record.line.clone().into_bytes();
        line.push(b'\n');
        verifier.line(&line);
    }
    let report = verifier.finish();
    errors.extend(report.errors);
    MachineReport {
        machine_id,
        hostnames,
        valid: report.valid && errors.is_empty() && missing == 0,
        records: report.records,
        signed_records: report.signed_records,
        first_sequence: records.first().map_or(0, |record| record.sequence),
        last_sequence: records.last().map_or(0, |record| record.sequence),
        missing,
        gaps,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::test_support::{allow, config, key, keys, request};
    use crate::evidence::{EvidenceLog, SyncMode};

    /// A real chain of `n` records, as shipped from `machine`.
    async fn chain(machine: &str, n: usize) -> Vec<ShippedRecord> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let mut config = config(&path, SyncMode::None, Some(key()));
        config.record_lines = true;
        let (log, _) = EvidenceLog::open(config).unwrap();
        let mut shipped = Vec::new();
        for index in 0..n {
            let recorded = log.record(request(&format!("s{index}")), allow()).await.unwrap();
            shipped.push(ShippedRecord {
                machine_id: machine.to_owned(),
                hostname: format!("host-{machine}"),
                sequence: recorded.sequence,
                record_hash: recorded.record_hash,
                line: String::from_utf8(recorded.line.unwrap()).unwrap(),
            });
        }
        log.close();
        // What the log holds is what was shipped, byte for byte.
        let stored: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            stored,
            shipped.iter().map(|record| record.line.clone()).collect::<Vec<_>>()
        );
        shipped
    }

    #[tokio::test]
    async fn each_machine_chain_verifies_in_any_order_and_with_duplicates() {
        let mut records = chain("a", 5).await;
        records.extend(chain("b", 3).await);
        records.reverse();
        records.push(records[0].clone());
        let report = verify_shipped(records, &keys(Some(&key())));
        assert!(report.valid, "{report:#?}");
        assert_eq!(
            report
                .machines
                .iter()
                .map(|m| (m.machine_id.as_str(), m.records, m.signed_records))
                .collect::<Vec<_>>(),
            [("a", 5, 5), ("b", 3, 3)]
        );
        assert_eq!(report.machines[0].hostnames, ["host-a"]);
    }

    #[tokio::test]
    async fn a_record_removed_from_one_machine_is_a_gap_there_only() {
        let mut records = chain("a", 6).await;
        records.remove(3);
        records.extend(chain("b", 2).await);
        let report = verify_shipped(records, &keys(Some(&key())));
        assert!(!report.valid);
        let (a, b) = (&report.machines[0], &report.machines[1]);
        assert!(b.valid, "{b:#?}");
        assert!(!a.valid);
        assert_eq!(
            (a.missing, a.gaps.as_slice()),
            (1, ["record 4 is not in the journal".to_owned()].as_slice())
        );
        assert!(!a.errors.is_empty(), "the chain itself breaks at the gap: {a:#?}");
    }

    #[tokio::test]
    async fn a_forged_record_or_a_wrong_key_does_not_verify() {
        let mut records = chain("a", 3).await;
        records[1].line = records[1]
            .line
            .replace("\"decision\":\"allow\"", "\"decision\":\"block\"");
        assert!(!verify_shipped(records, &keys(Some(&key()))).valid);
        let other = crate::evidence::SigningKey::new(b"another key".to_vec(), String::new());
        assert!(!verify_shipped(chain("a", 2).await, &keys(Some(&other))).valid);
        assert!(
            !verify_shipped(Vec::new(), &keys(None)).valid,
            "nothing shipped verifies nothing"
        );
    }
}
