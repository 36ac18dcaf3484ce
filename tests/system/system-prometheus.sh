#!/bin/bash
# Scenario: a real Prometheus (Debian's prometheus package) scrapes the packaged service. The .deb is installed into
# an overlay clone of this machine with cavra-runtime-metrics.socket enabled, the clone boots under systemd-nspawn,
# a member of group cavra asks for decisions, and Prometheus, started in the container with a one-second scrape
# interval against 127.0.0.1:9479, answers queries on its HTTP API with the daemon's decision counters and its
# latency histogram. The daemon's sandbox is the shipped one: no Internet sockets of its own, no network namespace
# but its private one; the metrics socket is systemd's.
#
# usage: timeout 300 unshare -m bash tests/system/system-prometheus.sh /path/to/cavra-runtime REVISION-1.deb
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
CONTAINER_MACHINE=cavra-systest-prometheus
# shellcheck source=lib/system-manager.sh
. "$SYSTEST_LIB/system-manager.sh"
# shellcheck source=lib/packaged.sh
. "$SYSTEST_LIB/packaged.sh"

systest_begin "prometheus scrapes the packaged service" "${1:-}"
DEB=${2:-}
[ -f "$DEB" ] || fail "usage: $0 BINARY PACKAGE.deb"
PROMETHEUS=/usr/bin/prometheus
[ -x "$PROMETHEUS" ] || fail "$PROMETHEUS is missing (apt-get install prometheus)"
PKG_ENV_FILE=/etc/default/cavra-runtime
PKG_KEPT_SETTINGS=$PKG_ENV_FILE
METRICS_SOCKET_UNIT=cavra-runtime-metrics.socket
PROMETHEUS_DIR=/etc/cavra-systest-prometheus

step "dpkg installs $(basename "$DEB"); cavra-runtime-metrics.socket is enabled; a Prometheus unit scrapes it"
clone_prepare
rm -f "$CLONE_ROOT/var/lib/man-db/auto-update"
dpkg --root="$CLONE_ROOT" --install "$DEB" >"$SYSTEST_WORK/install.log" 2>&1 ||
    fail "dpkg --install failed: $(cat "$SYSTEST_WORK/install.log")"
[ ! -L "$CLONE_ROOT/etc/systemd/system/sockets.target.wants/$METRICS_SOCKET_UNIT" ] ||
    fail "installing enabled $METRICS_SOCKET_UNIT; it is opt-in"
packaged_prepare_clone
ln -s "/usr/lib/systemd/system/$METRICS_SOCKET_UNIT" "$CLONE_ROOT/etc/systemd/system/sockets.target.wants/"
mkdir -p "$CLONE_ROOT$PROMETHEUS_DIR"
cat >"$CLONE_ROOT$PROMETHEUS_DIR/prometheus.yml" <<'YAML'
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: cavra-runtime
    static_configs:
      - targets: ['127.0.0.1:9479']
YAML
cat >"$CLONE_ROOT/etc/systemd/system/systest-prometheus.service" <<UNIT
[Unit]
Description=Prometheus for the cavra system test
[Service]
ExecStart=$PROMETHEUS --config.file=$PROMETHEUS_DIR/prometheus.yml --storage.tsdb.path=/var/tmp/systest-prometheus --web.listen-address=127.0.0.1:9090
UNIT

container_boot
packaged_check_listening
ct_wait_unit "$METRICS_SOCKET_UNIT" SubState listening 30
expect_eq "$METRICS_SOCKET_UNIT listens on" "$(ct_unit_prop "$METRICS_SOCKET_UNIT" Listen)" "127.0.0.1:9479 (Stream)"

step "decisions from $CT_MEMBER: three blocks and two allows"
for _ in 1 2 3; do
    expect_eq "read .env" "$(ct_read "$CT_MEMBER" .env)" "block filesystem.read.block"
done
for _ in 1 2; do
    expect_eq "read notes.txt" "$(ct_read "$CT_MEMBER" notes.txt)" "allow filesystem.read.allow"
done
ct_wait_unit "$CT_SERVICE" ActiveState active 30
expect_eq "the daemon's address families (as shipped)" "$(ct_unit_prop "$CT_SERVICE" RestrictAddressFamilies)" "AF_UNIX"
ct_expect_unit "$CT_SERVICE" PrivateNetwork yes
pid=$(ct_unit_prop "$CT_SERVICE" MainPID)
daemon_log() { ct_journal -u "$CT_SERVICE" _PID="$pid" -o cat; }
serves_metrics() { daemon_log | grep -q 'serving metrics at http://127.0.0.1:9479/metrics'; }
wait_for "the daemon to log where it serves metrics" 30 serves_metrics
pass "the daemon serves metrics on the socket systemd passed it"

step "Prometheus scrapes the service every second; its HTTP API answers with the daemon's numbers"
in_container systemctl start systest-prometheus.service
# prom_query QUERY: the value of the query's single result, or nothing yet.
prom_query() {
    in_container /usr/bin/python3 -c '
import json, sys, urllib.parse, urllib.request
url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[1]})
try:
    answer = json.load(urllib.request.urlopen(url, timeout=5))
except Exception:
    sys.exit(0)
results = answer.get("data", {}).get("result", [])
if len(results) == 1:
    print(results[0]["value"][1])
' "$1"
}
prom_equals() { [ "$(prom_query "$1")" = "$2" ]; }
wait_for "Prometheus to scrape the target (up == 1)" 90 prom_equals 'up{job="cavra-runtime"}' 1
blocks='cavra_decisions_total{decision="block",rule="filesystem.read.block",pack="cavra-ai-agent-baseline"}'
wait_for "the block counter" 30 prom_equals "$blocks" 3
expect_eq "blocks, via Prometheus" "$(prom_query "$blocks")" 3
expect_eq "allows, via Prometheus" \
    "$(prom_query 'cavra_decisions_total{decision="allow",rule="filesystem.read.allow"}')" 2
expect_eq "answers timed (the latency histogram's count)" \
    "$(prom_query 'cavra_request_duration_seconds_count{job="cavra-runtime"}')" 5
expect_eq "its +Inf bucket" \
    "$(prom_query 'cavra_request_duration_seconds_bucket{job="cavra-runtime",le="+Inf"}')" 5
quantile=$(prom_query 'histogram_quantile(0.5, cavra_request_duration_seconds_bucket{job="cavra-runtime"})')
case "$quantile" in "" | NaN) fail "no median latency from the histogram: '$quantile'" ;; esac
pass "median answer time from the histogram: ${quantile}s"
expect_eq "evidence records, via Prometheus" "$(prom_query 'cavra_evidence_records_total')" 5
digest=$(ct_ask root '{"action_type":"cavra.health"}' policy_digest)
expect_eq "policy info, via Prometheus" "$(prom_query "cavra_policy_info{digest=\"$digest\"}")" 1
ct_expect_unit "$CT_SERVICE" MainPID "$pid"
in_container systemctl stop systest-prometheus.service
