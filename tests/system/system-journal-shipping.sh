#!/bin/bash
# Scenario: evidence leaves the host through the journal. Three machines boot under systemd-nspawn in this
# scenario's own network namespace (loopback only, shared by the three): two hosts with the .deb installed, each
# with its own machine id and Ed25519 evidence key, CAVRA_LOG_EVIDENCE_RECORDS=true, and systemd-journal-upload
# sending their journals to the third, which runs systemd-journal-remote. After decisions on both hosts:
#   * `journalctl -D <collected journals> DECISION=block` on the collector lists both hosts' blocks;
#   * `--verify-evidence --journal <collected journals>` with only the two public keys rebuilds and verifies both
#     chains, one per machine id, and each matches the host's own evidence log record for record;
#   * in an export of the collected journal with one of host A's records removed, host A's chain is reported with
#     that gap and host B's still verifies.
#
# usage: timeout 300 unshare -m -n bash tests/system/system-journal-shipping.sh /path/to/cavra-runtime PACKAGE.deb
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# The three containers share this scenario's network namespace (unshare -n): no --private-network each.
CONTAINER_NETWORK=
# shellcheck source=lib/system-manager.sh
. "$SYSTEST_LIB/system-manager.sh"
# shellcheck source=lib/packaged.sh
. "$SYSTEST_LIB/packaged.sh"

systest_begin "evidence shipped through the journal and verified centrally" "${1:-}"
DEB=${2:-}
[ -f "$DEB" ] || fail "usage: $0 BINARY PACKAGE.deb"
for program in /lib/systemd/systemd-journal-remote /lib/systemd/systemd-journal-upload; do
    [ -x "$program" ] || fail "$program is missing (apt-get install systemd-journal-remote)"
done
[ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] ||
    fail "not in a network namespace of its own; run me as: unshare -m -n bash $0 ..."
ip link set lo up
PKG_ENV_FILE=/etc/default/cavra-runtime
COLLECTOR_PORT=19532
REMOTE_DIR=/var/log/journal/remote
ED25519_KEY=/etc/credstore/evidence-ed25519-key

# new_machine NAME: a clone of its own, a machine id of its own, no journal files from this machine's image.
new_machine() {
    CONTAINER_MACHINE=cavra-ship-$1
    clone_prepare "$1"
    rm -rf "$CLONE_ROOT"/var/log/journal/*
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$CLONE_ROOT/etc/machine-id"
    echo >>"$CLONE_ROOT/etc/machine-id"
    mkdir -p "$CLONE_ROOT/etc/systemd/system/$CONTAINER_TARGET.wants"
}

# boot_machine NAME: boots the current clone and keeps its state under NAME; stopped at exit.
boot_machine() {
    container_boot
    host_save "$1"
    on_exit "host_use $1; container_stop"
    say "$1 is machine $(cat "$CLONE_ROOT/etc/machine-id")"
}

step "the collector: systemd-journal-remote on 127.0.0.1:$COLLECTOR_PORT (plain HTTP on loopback)"
new_machine collector
mkdir -p "$CLONE_ROOT/etc/systemd/system/systemd-journal-remote.service.d"
cat >"$CLONE_ROOT/etc/systemd/system/systemd-journal-remote.service.d/http.conf" <<UNIT
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-journal-remote --listen-http=-3 --split-mode=host --output=$REMOTE_DIR/
UNIT
ln -s /lib/systemd/system/systemd-journal-remote.socket "$CLONE_ROOT/etc/systemd/system/$CONTAINER_TARGET.wants/"
COLLECTOR_ROOT=$CLONE_ROOT
boot_machine collector
ct_wait_unit systemd-journal-remote.socket SubState listening 30

for host in a b; do
    step "host $host: the .deb, an Ed25519 evidence key, records in the journal, systemd-journal-upload"
    new_machine "$host"
    rm -f "$CLONE_ROOT/var/lib/man-db/auto-update"
    dpkg --root="$CLONE_ROOT" --install "$DEB" >"$SYSTEST_WORK/install-$host.log" 2>&1 ||
        fail "dpkg --install failed: $(cat "$SYSTEST_WORK/install-$host.log")"
    useradd --root "$CLONE_ROOT" --no-create-home --user-group --groups cavra "$CT_MEMBER"
    clone_share "$SYSTEST_LIB/client.py"
    mkdir -p "$CLONE_ROOT/etc/credstore"
    chmod 0700 "$CLONE_ROOT/etc/credstore"
    (umask 077 && openssl genpkey -algorithm ed25519 -out "$CLONE_ROOT$ED25519_KEY")
    openssl pkey -in "$CLONE_ROOT$ED25519_KEY" -pubout -out "$SYSTEST_WORK/$host.pub.pem"
    printf 'CAVRA_LOG_EVIDENCE_RECORDS=true\n' >>"$CLONE_ROOT$PKG_ENV_FILE"
    mkdir -p "$CLONE_ROOT/etc/systemd/journal-upload.conf.d"
    printf '[Upload]\nURL=http://127.0.0.1:%s\n' "$COLLECTOR_PORT" \
        >"$CLONE_ROOT/etc/systemd/journal-upload.conf.d/systest.conf"
    ln -s /lib/systemd/system/systemd-journal-upload.service \
        "$CLONE_ROOT/etc/systemd/system/$CONTAINER_TARGET.wants/"
    boot_machine "$host"
    ct_wait_unit systemd-journal-upload.service ActiveState active 30
done

step "decisions: two blocks and an allow on host a, three blocks on host b"
host_use a
MACHINE_A=$(cat "$CLONE_ROOT/etc/machine-id")
A_ROOT=$CLONE_ROOT
for target in .env .env notes.txt; do ct_read "$CT_MEMBER" "$target" >/dev/null; done
host_use b
MACHINE_B=$(cat "$CLONE_ROOT/etc/machine-id")
B_ROOT=$CLONE_ROOT
for target in .env .env .env; do ct_read "$CT_MEMBER" "$target" >/dev/null; done

step "the collector's journal answers DECISION=block with both hosts' blocks"
host_use collector
# blocks_by_machine: "<machine id> <count>" per machine, sorted, from the collected journals.
blocks_by_machine() {
    journalctl --directory="$COLLECTOR_ROOT$REMOTE_DIR" --output=json --all --no-pager DECISION=block 2>/dev/null |
        "$PYTHON" -c '
import collections, json, sys
counts = collections.Counter(json.loads(line)["_MACHINE_ID"] for line in sys.stdin if line.strip())
for machine, count in sorted(counts.items()):
    print(machine, count)'
}
expected=$(printf '%s 2\n%s 3\n' "$MACHINE_A" "$MACHINE_B" | sort)
blocks_arrived() { [ "$(blocks_by_machine)" = "$expected" ]; }
wait_for "both hosts' blocks at the collector" 60 blocks_arrived
expect_eq "blocks per machine at the collector" "$(blocks_by_machine)" "$expected"
in_container journalctl --directory="$REMOTE_DIR" --no-pager -o cat DECISION=block >/dev/null ||
    fail "journalctl -D in the collector cannot read what it collected"
pass "journalctl -D $REMOTE_DIR DECISION=block in the collector lists them"

step "--verify-evidence --journal rebuilds both chains from the collected journal, with the public keys only"
summary() {
    "$PYTHON" -c '
import json, sys
report = json.load(sys.stdin)
print(report["valid"])
for m in report["machines"]:
    print(m["machine_id"], m["valid"], m["records"], m["signed_records"], m["missing"], "|".join(m.get("gaps", [])))'
}
verify_collected() {
    "$CAVRA_BIN" --verify-evidence --journal "$COLLECTOR_ROOT$REMOTE_DIR" \
        --evidence-public-key "$SYSTEST_WORK/a.pub.pem" --evidence-public-key "$SYSTEST_WORK/b.pub.pem"
}
records_arrived() {
    local report
    report=$(verify_collected) || return 1
    [ "$(summary <<<"$report" | grep -c ' True 3 3 0 ')" = 2 ]
}
wait_for "the collected records to verify" 60 records_arrived
report=$(verify_collected)
verified=$(summary <<<"$report")
expect_eq "report valid" "$(head -n 1 <<<"$verified")" True
expect_eq "machines in the report" "$(($(wc -l <<<"$verified") - 1))" 2
expect_contains "report (machine valid records signed missing)" "$verified" "$MACHINE_A True 3 3 0 "
expect_contains "report (machine valid records signed missing)" "$verified" "$MACHINE_B True 3 3 0 "
for pair in "a:$A_ROOT" "b:$B_ROOT"; do
    host=${pair%%:*}
    root=${pair#*:}
    machine=$(cat "$root/etc/machine-id")
    shipped=$(journalctl --directory="$COLLECTOR_ROOT$REMOTE_DIR" --output=json --all --no-pager \
        "_MACHINE_ID=$machine" SYSLOG_IDENTIFIER=cavra-runtime |
        "$PYTHON" -c '
import json, sys
records = sorted((int(e["EVIDENCE_SEQUENCE"]), e["EVIDENCE_RECORD"]) for e in map(json.loads, sys.stdin) if "EVIDENCE_RECORD" in e)
print("\n".join(line for _, line in records))')
    expect_eq "host $host: the shipped records are its evidence log, byte for byte" "$shipped" \
        "$(cat "$root/var/lib/cavra/evidence.jsonl")"
done

step "a record removed from host a's entries is reported as a gap on a; b still verifies"
export_file=$SYSTEST_WORK/collected.json
journalctl --directory="$COLLECTOR_ROOT$REMOTE_DIR" --output=json --all --no-pager SYSLOG_IDENTIFIER=cavra-runtime \
    >"$export_file"
"$PYTHON" - "$export_file" "$MACHINE_A" <<'PY'
import json, sys
path, machine = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
kept = [l for l in lines if not (json.loads(l).get("_MACHINE_ID") == machine and json.loads(l).get("EVIDENCE_SEQUENCE") == "2")]
assert len(kept) == len(lines) - 1, "exactly one entry removed"
open(path, "w").write("\n".join(kept) + "\n")
PY
if report=$("$CAVRA_BIN" --verify-evidence --journal "$export_file" \
    --evidence-public-key "$SYSTEST_WORK/a.pub.pem" --evidence-public-key "$SYSTEST_WORK/b.pub.pem"); then
    fail "the chains verified with a record removed: $report"
fi
gaps=$(summary <<<"$report")
expect_contains "report" "$gaps" "$MACHINE_A False 2 2 1 record 2 is not in the journal"
expect_contains "report" "$gaps" "$MACHINE_B True 3 3 0 "
