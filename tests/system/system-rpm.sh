#!/bin/bash
# Scenario: the .rpm under a real systemd system manager. `rpm --root` installs revision 1 into an overlay clone of
# this machine (its scriptlets run there, chrooted), which then boots in systemd-nspawn. The checks are the deb's
# (tests/system/lib/packaged.sh): socket, first connection, group access, journal, evidence, reload, restart,
# logrotate and upgrade under load, removal. rpm has no purge: `rpm -e` keeps the evidence log, and a changed settings file is
# kept as .rpmsave.
#
# usage: timeout 300 unshare -m bash tests/system/system-rpm.sh /path/to/cavra-runtime REVISION-1.rpm REVISION-2.rpm
# (the binary is the test build: it verifies the evidence log from outside the container as well)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/system-manager.sh
. "$SYSTEST_LIB/system-manager.sh"
# shellcheck source=lib/packaged.sh
. "$SYSTEST_LIB/packaged.sh"

systest_begin "system rpm" "${1:-}"
FIRST=${2:-}
SECOND=${3:-}
if [ ! -f "$FIRST" ] || [ ! -f "$SECOND" ]; then fail "usage: $0 BINARY REVISION-1.rpm REVISION-2.rpm"; fi
FIRST_VERSION=$(rpm -qp --queryformat '%{VERSION}-%{RELEASE}' "$FIRST" 2>/dev/null)
SECOND_VERSION=$(rpm -qp --queryformat '%{VERSION}-%{RELEASE}' "$SECOND" 2>/dev/null)

PKG_ENV_FILE=/etc/sysconfig/cavra-runtime
PKG_KEPT_SETTINGS=$PKG_ENV_FILE.rpmsave
pkg_version() {
    in_container rpm --dbpath /var/lib/rpm -q --queryformat '%{VERSION}-%{RELEASE}' cavra-runtime 2>/dev/null
}
# --nodeps: the clone is Debian, whose rpm database knows nothing of libc or systemd.
pkg_upgrade() { in_container rpm --dbpath /var/lib/rpm --upgrade --nodeps "$CONTAINER_SHARE/$(basename "$1")"; }
pkg_remove() { in_container rpm --dbpath /var/lib/rpm --erase --nodeps cavra-runtime; }

step "rpm --root installs $(basename "$FIRST") into the clone, before it boots"
clone_prepare
rpm --root "$CLONE_ROOT" --dbpath /var/lib/rpm --install --nodeps "$FIRST" >"$SYSTEST_WORK/install.log" 2>&1 ||
    fail "rpm --install failed: $(cat "$SYSTEST_WORK/install.log")"
# (minus the advice to use alien that Debian's rpm prints)
grep -v -e 'should not be used directly' -e 'what you are doing' "$SYSTEST_WORK/install.log" |
    sed 's/^/   rpm: /' || true
expect_eq "installed (rpm -q)" "$(rpm --root "$CLONE_ROOT" --dbpath /var/lib/rpm -q cavra-runtime 2>/dev/null)" \
    "cavra-runtime-$FIRST_VERSION.$(uname -m)"
verify=$(rpm --root "$CLONE_ROOT" --dbpath /var/lib/rpm -V --nodeps cavra-runtime 2>/dev/null) ||
    fail "rpm -V reports changes right after installing: $verify"
pass "rpm -V is clean"
expect_eq "cavra user (from %pre, sysusers.d)" "$(grep '^cavra:' "$CLONE_ROOT/etc/passwd" | cut -d: -f1,6,7)" \
    "cavra:/var/lib/cavra:/usr/sbin/nologin"
[ -L "$CLONE_ROOT/etc/systemd/system/sockets.target.wants/cavra-runtime.socket" ] ||
    fail "installing did not enable cavra-runtime.socket (preset)"
pass "cavra-runtime.socket is enabled (by its preset)"
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

step "after rpm -e: disabled, the changed settings file kept as .rpmsave, no package left"
expect_contains "what rpm -e said" "$(cat "$SYSTEST_WORK/remove.log")" \
    "cavra-runtime: kept /var/lib/cavra, the evidence log (the record of every decision)."
if ct_exists /etc/systemd/system/sockets.target.wants/cavra-runtime.socket; then
    fail "cavra-runtime.socket is still enabled after rpm -e"
fi
pass "the socket's enablement is gone"
if ct_exists "$PKG_ENV_FILE" || ! ct_exists "$PKG_ENV_FILE.rpmsave"; then
    fail "expected $PKG_ENV_FILE moved to $PKG_ENV_FILE.rpmsave"
fi
if in_container rpm --dbpath /var/lib/rpm -q cavra-runtime >/dev/null 2>&1; then
    fail "rpm -q still finds cavra-runtime"
fi
pass "rpm -q no longer finds cavra-runtime"
