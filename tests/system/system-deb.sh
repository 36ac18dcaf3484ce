#!/bin/bash
# Scenario: the .deb under a real systemd system manager. dpkg installs revision 1 into an overlay clone of this
# machine, which then boots in systemd-nspawn. Checked there: the socket listens on /run/cavra/cavra-runtime.sock as
# root:cavra 0660 before any client; the first request starts the daemon as user cavra; a member of group cavra gets
# decisions and a non-member is refused by the file mode; the journal has the decision fields; the evidence log in
# /var/lib/cavra is signed with the key from LoadCredential= and verifies; `systemctl reload` applies a changed
# pack; `systemctl restart` and the upgrade to revision 2 refuse no client; the shipped logrotate configuration
# rotates the evidence log twice under load, every acknowledged decision lands in exactly one file and the set
# verifies as one chain; removal stops everything and keeps
# settings and evidence; purge deletes the settings and keeps the evidence, saying so; with CAVRA_PURGE_EVIDENCE=yes
# it deletes the evidence too, and nothing on a volume mounted below /var/lib/cavra.
#
# usage: timeout 300 unshare -m bash tests/system/system-deb.sh /path/to/cavra-runtime REVISION-1.deb REVISION-2.deb
# (the binary is the test build: it verifies the evidence log from outside the container as well)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/system-manager.sh
. "$SYSTEST_LIB/system-manager.sh"
# shellcheck source=lib/packaged.sh
. "$SYSTEST_LIB/packaged.sh"

systest_begin "system deb" "${1:-}"
FIRST=${2:-}
SECOND=${3:-}
if [ ! -f "$FIRST" ] || [ ! -f "$SECOND" ]; then fail "usage: $0 BINARY REVISION-1.deb REVISION-2.deb"; fi
FIRST_VERSION=$(dpkg-deb --field "$FIRST" Version)
SECOND_VERSION=$(dpkg-deb --field "$SECOND" Version)

PKG_ENV_FILE=/etc/default/cavra-runtime
PKG_KEPT_SETTINGS=$PKG_ENV_FILE
# shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
pkg_version() { in_container dpkg-query --show --showformat='${Version}' cavra-runtime; }
pkg_upgrade() { in_container dpkg --install "$CONTAINER_SHARE/$(basename "$1")"; }
pkg_remove() { in_container dpkg --remove cavra-runtime; }

step "dpkg installs $(basename "$FIRST") into the clone, before it boots"
clone_prepare
# man-db's trigger rebuilds the man page index on every install and removal (seconds each); not what is tested here.
rm -f "$CLONE_ROOT/var/lib/man-db/auto-update"
dpkg --root="$CLONE_ROOT" --install "$FIRST" >"$SYSTEST_WORK/install.log" 2>&1 ||
    fail "dpkg --install failed: $(cat "$SYSTEST_WORK/install.log")"
sed 's/^/   dpkg: /' "$SYSTEST_WORK/install.log"
expect_eq "cavra user (from sysusers.d)" "$(grep '^cavra:' "$CLONE_ROOT/etc/passwd" | cut -d: -f1,6,7)" \
    "cavra:/var/lib/cavra:/usr/sbin/nologin"
[ -L "$CLONE_ROOT/etc/systemd/system/sockets.target.wants/cavra-runtime.socket" ] ||
    fail "installing did not enable cavra-runtime.socket"
pass "cavra-runtime.socket is enabled"
packaged_prepare_clone
clone_share "$SECOND"

container_boot
packaged_check_listening
packaged_check_first_connection
packaged_check_outsider
packaged_check_journal
packaged_check_journal_under_a_flood
packaged_check_evidence
packaged_check_reload
packaged_check_network_dropin
packaged_check_restart_under_load
packaged_check_logrotate_under_load
packaged_check_evidence_readers
packaged_check_upgrade "$SECOND" "$SECOND_VERSION"
[ "$FIRST_VERSION" != "$SECOND_VERSION" ] || fail "both packages have version $FIRST_VERSION"
packaged_check_remove

step "after removal, Debian-style: the units are masked and dpkg keeps the configuration files"
expect_eq "is-enabled" \
    "$(in_container systemctl is-enabled cavra-runtime.socket cavra-runtime.service 2>&1 | tr '\n' ' ')" "masked masked "
# shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
expect_eq "dpkg status" "$(in_container dpkg-query --show --showformat='${db:Status-Abbrev}' cavra-runtime)" "rc "

step "purge deletes the settings and the masks; it keeps /var/lib/cavra and the volume mounted in it, and says so"
# An evidence volume below /var/lib/cavra, as an operator would mount one for old logs.
CT_VOLUME=/var/lib/cavra/archive
in_container mkdir -p "$CT_VOLUME"
in_container mount -t tmpfs cavra-systest-volume "$CT_VOLUME"
in_container sh -c "echo archived >$CT_VOLUME/evidence.jsonl.archived"
in_container dpkg --purge cavra-runtime >"$SYSTEST_WORK/purge.log" 2>&1 ||
    fail "dpkg --purge failed: $(cat "$SYSTEST_WORK/purge.log")"
sed 's/^/   dpkg: /' "$SYSTEST_WORK/purge.log"
for path in "$PKG_ENV_FILE" /etc/cavra/policies/README /etc/systemd/system/cavra-runtime.socket \
    /etc/systemd/system/sockets.target.wants/cavra-runtime.socket; do
    if ct_exists "$path"; then fail "$path is still there after purge"; fi
done
pass "settings, README, masks and enablement are gone"
expect_contains "what purge said" "$(cat "$SYSTEST_WORK/purge.log")" \
    "cavra-runtime: kept /var/lib/cavra, the evidence log (the record of every decision)."
report=$("$CAVRA_BIN" --verify-evidence --evidence-log "$CLONE_ROOT/var/lib/cavra" \
    --evidence-signing-key-file "$CLONE_ROOT$CT_KEY" --evidence-signing-key-id "$CT_KEY_ID") ||
    fail "the evidence kept by purge does not verify: $report"
expect_eq "the kept evidence set is valid" "$(json_fields valid <<<"$report")" True
expect_eq "the volume's file" "$(in_container cat "$CT_VOLUME/evidence.jsonl.archived")" archived
ct_exists "$CT_PACKS/systest/policy.yaml" || fail "purge deleted the operator's own pack"
pass "the operator's own pack in $CT_PACKS is left alone"
in_container getent passwd cavra >/dev/null || fail "purge deleted the user cavra"
ct_expect_unit cavra-runtime.socket LoadState not-found

step "asked to (CAVRA_PURGE_EVIDENCE=yes), purge deletes the evidence, and nothing on the volume mounted in it"
in_container dpkg --install "$CONTAINER_SHARE/$(basename "$SECOND")" >"$SYSTEST_WORK/reinstall.log" 2>&1 ||
    fail "reinstalling failed: $(cat "$SYSTEST_WORK/reinstall.log")"
in_container env CAVRA_PURGE_EVIDENCE=yes dpkg --purge cavra-runtime >"$SYSTEST_WORK/purge-evidence.log" 2>&1 ||
    fail "dpkg --purge failed: $(cat "$SYSTEST_WORK/purge-evidence.log")"
sed 's/^/   dpkg: /' "$SYSTEST_WORK/purge-evidence.log"
expect_contains "what purge said" "$(cat "$SYSTEST_WORK/purge-evidence.log")" \
    "kept, with everything in them, the file systems mounted at: $CT_VOLUME"
expect_eq "left in /var/lib/cavra" "$(in_container find /var/lib/cavra | sort | tr '\n' ' ')" \
    "/var/lib/cavra $CT_VOLUME $CT_VOLUME/evidence.jsonl.archived "
expect_eq "the volume's file" "$(in_container cat "$CT_VOLUME/evidence.jsonl.archived")" archived
expect_eq "the volume is still mounted" "$(in_container findmnt -n -o SOURCE "$CT_VOLUME")" cavra-systest-volume
in_container umount "$CT_VOLUME"
