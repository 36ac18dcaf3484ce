# shellcheck shell=bash
# cavra-runtime installed from its .deb or .rpm into the system-manager container, and the checks both packages must
# pass (source after common.sh and system-manager.sh).
#
# The scenario (tests/system/system-deb.sh, system-rpm.sh) installs the package into the clone before it boots, then
# calls packaged_prepare_clone, container_boot and the packaged_check_* functions in order. It provides:
#   PKG_ENV_FILE       the settings file the package ships (/etc/default/... or /etc/sysconfig/...)
#   pkg_version        prints the installed package's version-release
#   pkg_upgrade FILE   installs FILE (a newer revision, already in $CONTAINER_SHARE) over the installed one
#   pkg_remove         removes the package
#   PKG_KEPT_SETTINGS  where the changed settings file is after removal (dpkg keeps it, rpm saves it as .rpmsave)

CT_SOCKET=/run/cavra/cavra-runtime.sock
CT_SOCKET_UNIT=cavra-runtime.socket
CT_SERVICE=cavra-runtime.service
CT_CLIENT=$CONTAINER_SHARE/client.py
CT_EVIDENCE=/var/lib/cavra/evidence.jsonl
# The evidence signing key, where the unit's LoadCredential= looks for it, and the id the settings file gives it.
CT_KEY=/etc/credstore/evidence-signing-key
CT_KEY_ID=systest-2026-01
CT_WRONG_KEY=/etc/credstore/some-other-key
# A member of group cavra, who may ask, and a user outside it, whom the socket's mode keeps out.
CT_MEMBER=alice
CT_OUTSIDER=mallory
# A log shipper's account: in group cavra-evidence, which may read the evidence files and nothing else.
CT_SHIPPER=shipper
CT_PACKS=/etc/cavra/policies
PKG_ENV_FILE=
PKG_KEPT_SETTINGS=
# Decision ids answered so far: each must be in the evidence log.
CT_DECISIONS=()

# Before boot: the operator's part. Users, the evidence key, its id in the settings file, and a stand-in directory
# service ordered Before=nss-user-lookup.target (as sssd and nslcd are), which would close an ordering cycle with a
# socket unit that kept its default dependencies.
packaged_prepare_clone() {
    [ -n "$PKG_ENV_FILE" ] || fail "the scenario did not set PKG_ENV_FILE"
    grep -q '^cavra:' "$CLONE_ROOT/etc/group" || fail "installing the package created no group cavra"
    useradd --root "$CLONE_ROOT" --no-create-home --user-group --groups cavra "$CT_MEMBER"
    useradd --root "$CLONE_ROOT" --no-create-home --user-group "$CT_OUTSIDER"
    useradd --root "$CLONE_ROOT" --no-create-home --user-group --groups cavra-evidence "$CT_SHIPPER"
    mkdir -p "$CLONE_ROOT/etc/credstore"
    chmod 0700 "$CLONE_ROOT/etc/credstore"
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLONE_ROOT$CT_KEY")
    # Another key, for showing that signatures are checked.
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLONE_ROOT$CT_WRONG_KEY")
    printf '\n# added by the system test\nCAVRA_DAEMON_EVIDENCE_KEY_ID=%s\n' "$CT_KEY_ID" >>"$CLONE_ROOT$PKG_ENV_FILE"
    cat >"$CLONE_ROOT/etc/systemd/system/directory-stand-in.service" <<'UNIT'
[Unit]
Description=stand-in for a directory service that provides nss-user-lookup.target (like sssd)
Before=nss-user-lookup.target
Wants=nss-user-lookup.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
UNIT
    mkdir -p "$CLONE_ROOT/etc/systemd/system/$CONTAINER_TARGET.wants"
    ln -s ../directory-stand-in.service "$CLONE_ROOT/etc/systemd/system/$CONTAINER_TARGET.wants/"
    clone_share "$SYSTEST_LIB/client.py"
    say "users $CT_MEMBER (in group cavra) and $CT_OUTSIDER; evidence key in $CT_KEY; $PKG_ENV_FILE names its id"
}

# ct_client USER ARGS...: client.py in the container, as USER with that user's groups (root: as root).
ct_client() {
    local user=$1
    shift
    if [ "$user" = root ]; then
        in_container /usr/bin/python3 "$CT_CLIENT" "$@"
    else
        in_container setpriv --reuid="$user" --regid="$user" --init-groups /usr/bin/python3 "$CT_CLIENT" "$@"
    fi
}

# ct_ask USER REQUEST FIELDS: the answer's FIELDS (comma-separated), space-separated; fails without an answer.
ct_ask() {
    ct_client "$1" ask "$CT_SOCKET" "$2" --fields "$3" || fail "$1 got no answer on $CT_SOCKET to $2"
}

# ct_read USER PATH: "<decision> <rule_id>" for USER reading PATH; remembers the decision id.
ct_read() {
    local decision rule id
    read -r decision rule id < <(
        ct_ask "$1" "{\"action_type\":\"read_file\",\"target\":\"$2\"}" decision,rule_id,decision_id
    )
    CT_DECISIONS+=("$id")
    echo "$decision $rule"
}

ct_status() { ct_unit_prop "$CT_SERVICE" StatusText; }

# ct_proc_status PID FIELD: a field of /proc/PID/status in the container, its values separated by single spaces.
ct_proc_status() {
    in_container sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | tr -s '[:space:]' ' ' | sed 's/ $//'
}
ct_uid() { in_container id -u "$1"; }

# ct_exists PATH: PATH exists in the container (a dangling symlink counts). Paths under /run must be looked up
# there: the container has its own /run, and the clone's (the host's) underneath is another directory.
# shellcheck disable=SC2016 # expanded by the inner shell
ct_exists() { in_container sh -c 'test -e "$1" || test -L "$1"' sh "$1"; }
ct_gid() { in_container id -g "$1"; }

packaged_check_listening() {
    step "after boot: the socket listens on $CT_SOCKET as root:cavra 0660; the daemon is not running yet"
    ct_wait_unit "$CT_SOCKET_UNIT" SubState listening 30
    ct_expect_unit "$CT_SOCKET_UNIT" UnitFileState enabled
    expect_eq "socket file (type owner:group mode)" "$(in_container stat -c '%F %U:%G %a' "$CT_SOCKET")" \
        "socket root:cavra 660"
    expect_eq "its directory" "$(in_container stat -c '%F %U:%G %a' /run/cavra)" "directory root:root 755"
    ct_expect_unit "$CT_SERVICE" ActiveState inactive
    expect_eq "failed units" "$(in_container systemctl list-units --failed --plain --no-legend)" ""

    step "the socket is ordered after nss-user-lookup.target, and a directory service causes no ordering cycle"
    expect_contains "$CT_SOCKET_UNIT After" " $(ct_unit_prop "$CT_SOCKET_UNIT" After) " " nss-user-lookup.target "
    ct_expect_unit nss-user-lookup.target ActiveState active
    local cycles
    cycles=$({ cat "$CLONE_DIR/boot.log"; ct_journal -b; } | grep -i 'ordering cycle' || true)
    [ -z "$cycles" ] || fail "systemd found an ordering cycle at boot: $cycles"
    pass "no ordering cycle in the boot log or the journal"
}

packaged_check_first_connection() {
    step "the first request, from $CT_MEMBER (group cavra), starts the daemon as user cavra"
    expect_eq "$CT_MEMBER reads .env" "$(ct_read "$CT_MEMBER" .env)" "block filesystem.read.block"
    # The daemon answers once it has sent READY=1; the manager may take a moment to take note.
    ct_wait_unit "$CT_SERVICE" ActiveState active 30
    local pid uid gid
    pid=$(ct_unit_prop "$CT_SERVICE" MainPID)
    expect_eq "the pid that answers" "$(ct_ask root '{"action_type":"cavra.health"}' pid)" "$pid"
    uid=$(ct_uid cavra)
    gid=$(ct_gid cavra)
    expect_eq "daemon uids (real effective saved fs)" "$(ct_proc_status "$pid" Uid)" "$uid $uid $uid $uid"
    expect_eq "daemon gids (real effective saved fs)" "$(ct_proc_status "$pid" Gid)" "$gid $gid $gid $gid"
    expect_eq "daemon effective capabilities" "$(ct_proc_status "$pid" CapEff)" 0000000000000000
    expect_eq "daemon NoNewPrivs" "$(ct_proc_status "$pid" NoNewPrivs)" 1
    expect_prefix "StatusText" "$(ct_status)" "serving built-in packs (20 packs, default cavra-ai-agent-baseline, "
}

packaged_check_outsider() {
    step "$CT_OUTSIDER (not in group cavra) is refused by the socket's file mode"
    local out
    if out=$(ct_client "$CT_OUTSIDER" ask "$CT_SOCKET" '{"action_type":"read_file","target":"README.md"}' 2>&1); then
        fail "$CT_OUTSIDER got an answer: $out"
    fi
    expect_contains "$CT_OUTSIDER's connect" "$out" "PermissionError"
}

CT_JOURNAL_FIELDS=DECISION,RULE_ID,SEVERITY,POLICY_PACK,ACTION_TYPE,DECISION_ID
CT_JOURNAL_FIELDS+=,PEER_UID,PEER_GID,PEER_PID,_UID,SYSLOG_IDENTIFIER

# ct_journal_entries MATCH...: the daemon's journal entries that match, one line of $CT_JOURNAL_FIELDS each.
ct_journal_entries() {
    ct_journal -u "$CT_SERVICE" -o json "$@" | "$PYTHON" "$SYSTEST_LIB/client.py" fields "$CT_JOURNAL_FIELDS"
}

ct_has_journal_entry() { [ -n "$(ct_journal_entries "$@")" ]; }

packaged_check_journal() {
    step "journalctl -u cavra-runtime shows the decision with its fields, and the client's real uid"
    local lines client_pid answer decision id
    # The answer to a request from a process whose pid we know (in the container's pid namespace).
    lines=$(in_container setpriv --reuid="$CT_MEMBER" --regid="$CT_MEMBER" --init-groups /bin/sh -c \
        'echo "$$"; exec /usr/bin/python3 "$@"' sh "$CT_CLIENT" ask "$CT_SOCKET" \
        '{"action_type":"execute_command","target":"terraform apply -auto-approve"}' --fields decision,decision_id) ||
        fail "no answer to the execute_command request"
    { read -r client_pid && read -r decision id; } <<<"$lines"
    CT_DECISIONS+=("$id")
    expect_eq "terraform apply" "$decision" block
    wait_for "the decision in the journal" 30 ct_has_journal_entry DECISION_ID="$id"
    answer=$(ct_journal_entries DECISION=block ACTION_TYPE=execute_command)
    printf '   %s\n' "$answer"
    expect_eq "entries for DECISION=block ACTION_TYPE=execute_command" "$(grep -c . <<<"$answer")" 1
    local d rule severity pack action did puid pgid ppid logger ident
    IFS=$'\t' read -r d rule severity pack action did puid pgid ppid logger ident <<<"$answer"
    expect_eq DECISION "$d" block
    expect_eq RULE_ID "$rule" commands.block
    expect_eq SEVERITY "$severity" critical
    expect_eq POLICY_PACK "$pack" cavra-ai-agent-baseline
    expect_eq ACTION_TYPE "$action" execute_command
    expect_eq DECISION_ID "$did" "$id"
    expect_eq "PEER_UID (not remapped: no PrivateUsers=)" "$puid" "$(ct_uid "$CT_MEMBER")"
    expect_eq PEER_GID "$pgid" "$(ct_gid "$CT_MEMBER")"
    expect_eq PEER_PID "$ppid" "$client_pid"
    expect_eq "_UID (the daemon's)" "$logger" "$(ct_uid cavra)"
    expect_eq SYSLOG_IDENTIFIER "$ident" cavra-runtime
    expect_eq "entries from $CT_OUTSIDER" "$(ct_journal_entries PEER_UID="$(ct_uid "$CT_OUTSIDER")")" ""
}

# ct_journal_count MATCH...: how many of the daemon's journal entries match.
ct_journal_count() { ct_journal -u "$CT_SERVICE" -o cat "$@" | grep -c . || true; }

# ct_journal_count_is N MATCH...: true once exactly N entries match.
ct_journal_count_is() {
    local want=$1
    shift
    [ "$(ct_journal_count "$@")" = "$want" ]
}

# flood_field NAME: the count NAME=<n> in client.py flood's summary on stdin (0 when absent).
flood_field() { tr ' ' '\n' | sed -n "s/^$1=//p" | grep . || echo 0; }

packaged_check_journal_under_a_flood() {
    # A member floods blocks on one stream connection. The daemon decides them at that uid's rate (100 a second
    # after a first 1,000) and answers the rest daemon.rate_limited, logged once an interval with a count; every
    # block it decided has its journal line, within journald's own per-service limit, which the unit leaves as it is
    # (10,000 lines in 30 s, more with free disk space). Root, another uid, is answered throughout.
    local seconds=10 request summary elapsed blocked limited lines refusals bound root_rule
    request='{"action_type":"git_operation","target":"main","requested_operation":"push"}'
    step "a member floods blocks for $seconds s: held to its decision rate, every decided block in the journal, root answered"
    expect_eq "the unit's journald rate limit (unset: journald's default)" \
        "$(in_container systemctl show "$CT_SERVICE" -p LogRateLimitIntervalUSec -p LogRateLimitBurst | tr '\n' ' ')" \
        "LogRateLimitIntervalUSec=0 LogRateLimitBurst=0 "
    [ "$(ct_journal_count ACTION_TYPE=git_operation)" = 0 ] || fail "git_operation entries before the flood"
    local since
    since=$(in_container date '+%Y-%m-%d %H:%M:%S')
    ct_client "$CT_MEMBER" flood "$CT_SOCKET" "$seconds" "$request" >"$SYSTEST_WORK/flood.out" 2>&1 &
    local flood_pid=$!
    local n
    for n in 1 2 3 4 5; do
        sleep 1
        root_rule=$(ct_ask root '{"action_type":"read_file","target":".env"}' rule_id)
        [ "$root_rule" = filesystem.read.block ] || fail "root's request $n during the flood was answered $root_rule"
    done
    pass "root's 5 requests during the flood were decided (filesystem.read.block)"
    wait "$flood_pid" || fail "the flood failed: $(cat "$SYSTEST_WORK/flood.out")"
    summary=$(cat "$SYSTEST_WORK/flood.out")
    say "flood: $summary"
    elapsed=$(flood_field seconds <<<"$summary")
    blocked=$(flood_field git.protected_branch.block_direct_push <<<"$summary")
    limited=$(flood_field daemon.rate_limited <<<"$summary")
    [ "$limited" -gt 0 ] || fail "no request of the flood was refused daemon.rate_limited: $summary"
    # 1,000 at once, then 100 a second (half as much again for a slow machine's timing).
    bound=$((1000 + 150 * (${elapsed%.*} + 1)))
    [ "$blocked" -le "$bound" ] || fail "$blocked blocks decided in $elapsed s, more than $bound"
    pass "$blocked blocks decided in $elapsed s (at most $bound), $limited refused daemon.rate_limited"
    if ! poll_until 60 ct_journal_count_is "$blocked" ACTION_TYPE=git_operation DECISION=block; then
        fail "the journal kept $(ct_journal_count ACTION_TYPE=git_operation) of the $blocked decided blocks"
    fi
    lines=$(ct_journal_count --since "$since")
    refusals=$(ct_journal -u "$CT_SERVICE" -o cat --since "$since" | grep -c 'max-decisions-per-second-per-uid' || true)
    say "the unit logged $lines journal lines since the flood began, $refusals of them about refusals"
    [ "$refusals" -le $((seconds / 5 + 3)) ] || fail "$refusals lines about $limited refusals"
    pass "every decided block is in the journal; $refusals lines tell of $limited refusals"
}

# ct_verify_evidence: the packaged binary's verification report of the evidence log, with the evidence key.
ct_verify_evidence() {
    in_container cavra-runtime --verify-evidence --evidence-log "$CT_EVIDENCE" \
        --evidence-signing-key-file "$CT_KEY" --evidence-signing-key-id "$CT_KEY_ID"
}

# json_fields FIELDS: the named fields of the JSON object on stdin, space-separated.
json_fields() {
    "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join(str(d.get(f)) for f in sys.argv[1].split(",")))' "$1"
}

packaged_check_evidence() {
    step "the evidence log is in /var/lib/cavra, signed with the key from LoadCredential=, and verifies"
    expect_eq "/var/lib/cavra" "$(in_container stat -c '%F %U:%G %a' /var/lib/cavra)" "directory cavra:cavra 750"
    # 640: the group bits are the ACL's mask; group cavra itself may read nothing (packaged_check_evidence_readers).
    expect_eq "$CT_EVIDENCE" "$(in_container stat -c '%F %U:%G %a' "$CT_EVIDENCE")" "regular file cavra:cavra 640"
    local report records
    report=$(ct_verify_evidence) || fail "the evidence log does not verify: $report"
    records=$(wc -l <"$CLONE_ROOT$CT_EVIDENCE")
    expect_eq "report (valid records signed_records)" "$(json_fields valid,records,signed_records <<<"$report")" \
        "True $records $records"
    local id
    for id in "${CT_DECISIONS[@]}"; do
        grep -q "\"$id\"" "$CLONE_ROOT$CT_EVIDENCE" || fail "decision $id is not in the evidence log"
    done
    pass "all ${#CT_DECISIONS[@]} decisions answered so far are in the log"
    # The signatures are really checked: with another key, the same log does not verify.
    local rc=0
    report=$(in_container cavra-runtime --verify-evidence --evidence-log "$CT_EVIDENCE" \
        --evidence-signing-key-file "$CT_WRONG_KEY" --evidence-signing-key-id "$CT_KEY_ID") || rc=$?
    expect_eq "verification with another key (exit status, valid)" "$rc $(json_fields valid <<<"$report")" "1 False"
    # The freshly built verifier, from outside the container, agrees.
    report=$("$CAVRA_BIN" --verify-evidence --evidence-log "$CLONE_ROOT$CT_EVIDENCE" \
        --evidence-signing-key-file "$CLONE_ROOT$CT_KEY" --evidence-signing-key-id "$CT_KEY_ID") ||
        fail "the test build does not verify the log: $report"
    pass "the test build's verifier agrees"
}

# ct_write_pack BLOCKED_FILE...: the pack "systest" in /etc/cavra/policies blocks reading these files.
ct_write_pack() {
    mkdir -p "$CLONE_ROOT$CT_PACKS/systest"
    {
        printf 'metadata:\n  id: systest\nfilesystem:\n  block_read:\n'
        printf '    - "%s"\n' "$@"
    } >"$CLONE_ROOT$CT_PACKS/systest/policy.yaml.new"
    chmod 0644 "$CLONE_ROOT$CT_PACKS/systest/policy.yaml.new"
    mv "$CLONE_ROOT$CT_PACKS/systest/policy.yaml.new" "$CLONE_ROOT$CT_PACKS/systest/policy.yaml"
}

# ct_status_changed_from STATUS: the daemon serves with another status text than STATUS (fails on a failed reload).
ct_status_changed_from() {
    local status
    status=$(ct_status)
    case "$status" in
    *"reload.failed"*) fail "the reload failed: $status" ;;
    serving*) [ "$status" != "$1" ] ;;
    *) return 1 ;;
    esac
}

packaged_check_reload() {
    step "a policy directory from the settings file, then systemctl reload with a changed pack"
    ct_write_pack secret.txt
    printf 'CAVRA_POLICY_DIR=%s\nCAVRA_DEFAULT_PACK=systest\n' "$CT_PACKS" >>"$CLONE_ROOT$PKG_ENV_FILE"
    in_container systemctl restart "$CT_SERVICE"
    local pid status1 status2
    pid=$(ct_unit_prop "$CT_SERVICE" MainPID)
    status1=$(ct_status)
    expect_prefix "StatusText" "$status1" "serving policy directory $CT_PACKS (1 packs, default systest, sha256:"
    expect_eq "read secret.txt" "$(ct_read "$CT_MEMBER" secret.txt)" "block filesystem.read.block"
    expect_eq "read notes.txt" "$(ct_read "$CT_MEMBER" notes.txt)" "allow filesystem.read.allow"
    ct_write_pack notes.txt
    # ExecReload= (cavra-runtime --reload, as user cavra in the unit's sandbox) returns once the new policy is in force.
    in_container systemctl reload "$CT_SERVICE" || fail "systemctl reload failed on a good pack"
    status2=$(ct_status)
    say "StatusText: $status2"
    ct_status_changed_from "$status1" || fail "the status text still shows the old policy: $status2"
    expect_eq "read notes.txt" "$(ct_read "$CT_MEMBER" notes.txt)" "block filesystem.read.block"
    expect_eq "read secret.txt" "$(ct_read "$CT_MEMBER" secret.txt)" "allow filesystem.read.allow"
    ct_expect_unit "$CT_SERVICE" MainPID "$pid"

    step "systemctl reload with a broken pack exits non-zero; decisions keep the previous policy"
    local good out
    good=$(cat "$CLONE_ROOT$CT_PACKS/systest/policy.yaml")
    printf 'metadata:\n  id: systest\nfilesystem:\n  block_read: [unterminated\n' >"$CLONE_ROOT$CT_PACKS/systest/policy.yaml"
    if out=$(in_container systemctl reload "$CT_SERVICE" 2>&1); then
        fail "systemctl reload exited 0 on a broken pack: $out"
    fi
    pass "systemctl reload failed: $out"
    expect_prefix "StatusText" "$(ct_status)" "degraded: reload.failed: reload failed, previous policy still in force since "
    expect_eq "read notes.txt (the previous policy)" "$(ct_read "$CT_MEMBER" notes.txt)" "block filesystem.read.block"
    ct_expect_unit "$CT_SERVICE" MainPID "$pid"
    printf '%s\n' "$good" >"$CLONE_ROOT$CT_PACKS/systest/policy.yaml"
    in_container systemctl reload "$CT_SERVICE" || fail "systemctl reload failed after the pack was fixed"
    pass "the fixed pack reloads"
}

# The drop-in docs/operating.md gives for opening the network: the commented lines after `sudo systemctl edit ...`.
readme_network_dropin() {
    sed -n '/^sudo systemctl edit cavra-runtime.service/,/^```/p' "$SYSTEST_REPO/docs/operating.md" | sed -n 's/^# //p'
}

# ct_oidc_fetch_log PID: what daemon PID logged about fetching the runner OIDC key set.
ct_oidc_fetch_log() {
    ct_journal -u "$CT_SERVICE" _PID="$1" -o cat | grep -e 'runner OIDC key set' -e 'OIDC key set yet' || true
}

ct_oidc_fetch_logged() { [ -n "$(ct_oidc_fetch_log "$1")" ]; }

ct_jwks_served() {
    in_container /usr/bin/python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8765), 1)' 2>/dev/null
}

packaged_check_network_dropin() {
    step "a JWKS URL: unreachable from the sandbox as shipped; fetched with the network drop-in of docs/operating.md"
    local dropin key_dir jwks_dir settings_backup pid log
    dropin=$(readme_network_dropin)
    expect_prefix "the drop-in of docs/operating.md" "$dropin" "[Service]"
    # A real RSA key set, served on the container's loopback.
    key_dir=$SYSTEST_WORK/oidc
    jwks_dir=$CLONE_ROOT$CONTAINER_SHARE/jwks
    mkdir -p "$key_dir" "$jwks_dir"
    openssl genrsa -out "$key_dir/key.pem" 2048 2>/dev/null
    openssl rsa -noout -modulus -in "$key_dir/key.pem" | sed 's/^Modulus=//' | "$PYTHON" -c '
import base64, json, sys
n = bytes.fromhex(sys.stdin.read().strip())
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "RSA", "kid": "systest", "alg": "RS256", "use": "sig", "n": b64(n), "e": "AQAB"}]}))
' >"$jwks_dir/jwks.json"
    in_container /usr/bin/python3 -m http.server --bind 127.0.0.1 --directory "$CONTAINER_SHARE/jwks" 8765 \
        >"$SYSTEST_WORK/http.log" 2>&1 &
    wait_for "the JWKS server on the container's loopback" 30 ct_jwks_served
    settings_backup=$SYSTEST_WORK/settings.before-oidc
    cp "$CLONE_ROOT$PKG_ENV_FILE" "$settings_backup"
    printf '%s\n' "CAVRA_RUNNER_OIDC_ISSUER=https://token.actions.githubusercontent.com" \
        "CAVRA_RUNNER_OIDC_AUDIENCE=cavra" "CAVRA_RUNNER_OIDC_JWKS_URL=http://127.0.0.1:8765/jwks.json" \
        >>"$CLONE_ROOT$PKG_ENV_FILE"

    in_container systemctl restart "$CT_SERVICE"
    pid=$(ct_unit_prop "$CT_SERVICE" MainPID)
    wait_for "the daemon's word on the key set" 30 ct_oidc_fetch_logged "$pid"
    log=$(ct_oidc_fetch_log "$pid")
    expect_contains "as shipped (PrivateNetwork=yes)" "$log" "cannot fetch the runner OIDC key set yet"

    mkdir -p "$CLONE_ROOT/etc/systemd/system/$CT_SERVICE.d"
    printf '%s\n' "$dropin" >"$CLONE_ROOT/etc/systemd/system/$CT_SERVICE.d/network.conf"
    in_container systemctl daemon-reload
    in_container systemctl restart "$CT_SERVICE"
    pid=$(ct_unit_prop "$CT_SERVICE" MainPID)
    wait_for "the daemon's word on the key set" 30 ct_oidc_fetch_logged "$pid"
    log=$(ct_oidc_fetch_log "$pid")
    expect_eq "with the drop-in" "$log" "runner OIDC key set loaded"
    ct_expect_unit "$CT_SERVICE" PrivateNetwork no

    # Back to the shipped unit and settings for the checks that follow.
    rm -r "$CLONE_ROOT/etc/systemd/system/$CT_SERVICE.d"
    cp "$settings_backup" "$CLONE_ROOT$PKG_ENV_FILE"
    in_container pkill -f "http.server --bind 127.0.0.1" || true
    in_container systemctl daemon-reload
    in_container systemctl restart "$CT_SERVICE"
    ct_expect_unit "$CT_SERVICE" PrivateNetwork yes
}

# ct_load_start COUNT INTERVAL: COUNT health requests from the member in the background, each on a new connection.
ct_load_start() {
    CT_LOAD_LOG=$SYSTEST_WORK/load-$1.log
    ct_client "$CT_MEMBER" loop "$CT_SOCKET" "$1" "$2" >"$CT_LOAD_LOG" 2>&1 &
    CT_LOAD_PID=$!
    on_failure "echo '---- client log (last 20 lines) ----'; tail -n 20 '$CT_LOAD_LOG'"
}

ct_load_answers() { grep -c ' ok ' "$CT_LOAD_LOG" || true; }

ct_load_running() { kill -0 "$CT_LOAD_PID" 2>/dev/null; }

# ct_load_answered N: the running client has had N answers (fails when it has finished already).
ct_load_answered() {
    ct_load_running || fail "the client finished early: $(tail -n 3 "$CT_LOAD_LOG")"
    [ "$(ct_load_answers)" -ge "$1" ]
}

# ct_load_stop: ends the client early (it runs in the container) and checks its log: no errors. Sets CT_LOAD_PIDS to
# the daemon pids that answered, in order of first appearance, comma-separated.
ct_load_stop() {
    in_container pkill -TERM -f "$CT_CLIENT loop" || true
    wait "$CT_LOAD_PID" 2>/dev/null || true
    CT_LOAD_PID=
    ! grep -q ' error ' "$CT_LOAD_LOG" || fail "the client saw errors: $(grep ' error ' "$CT_LOAD_LOG" | head -n 5)"
    CT_LOAD_PIDS=$(awk '$2 == "ok" && !seen[$3]++ { printf "%s%s", sep, $3; sep = "," }' "$CT_LOAD_LOG")
}

# ct_load_answered_by PID N: the running client has had N answers from daemon PID.
ct_load_answered_by() {
    ct_load_running || fail "the client finished early: $(tail -n 3 "$CT_LOAD_LOG")"
    [ "$(grep -c " ok $1\$" "$CT_LOAD_LOG")" -ge "$2" ]
}

packaged_check_restart_under_load() {
    step "systemctl restart while a client keeps connecting: every request is answered"
    local old new
    old=$(ct_unit_prop "$CT_SERVICE" MainPID)
    # At most 30 s of requests, 10 ms apart; stopped once the new daemon has answered some.
    ct_load_start 3000 0.01
    wait_for "40 answers" 30 ct_load_answered 40
    in_container systemctl restart "$CT_SERVICE"
    new=$(ct_unit_prop "$CT_SERVICE" MainPID)
    [ "$new" != "$old" ] || fail "MainPID is still $old after the restart"
    wait_for "20 answers from the new daemon" 30 ct_load_answered_by "$new" 20
    ct_load_stop
    expect_eq "daemons that answered, in order (none of $(ct_load_answers) requests failed)" "$CT_LOAD_PIDS" "$old,$new"
}

# ct_decisions_start COUNT INTERVAL: COUNT decisions from the member in the background, each on a new connection.
ct_decisions_start() {
    CT_DECISIONS_LOG=$SYSTEST_WORK/decisions.log
    ct_client "$CT_MEMBER" decisions "$CT_SOCKET" "$1" "$2" \
        '{"action_type":"read_file","target":"notes.txt","session_id":"rotation"}' >"$CT_DECISIONS_LOG" 2>&1 &
    CT_DECISIONS_PID=$!
    on_failure "echo '---- decisions log (last 20 lines) ----'; tail -n 20 '$CT_DECISIONS_LOG'"
}

ct_decisions_answered() {
    kill -0 "$CT_DECISIONS_PID" 2>/dev/null || fail "the client finished early: $(tail -n 3 "$CT_DECISIONS_LOG")"
    [ "$(grep -c ' ok ' "$CT_DECISIONS_LOG" || true)" -ge "$1" ]
}

# ct_rotate: logrotate with the packaged configuration, forced, as root in the container.
ct_rotate() {
    in_container logrotate --force --verbose /etc/logrotate.d/cavra-runtime >>"$SYSTEST_WORK/logrotate.log" 2>&1 ||
        fail "logrotate failed: $(tail -n 20 "$SYSTEST_WORK/logrotate.log")"
}

packaged_check_logrotate_under_load() {
    step "logrotate rotates the evidence log twice while a client keeps asking: no decision lost, one chain"
    local files before after pid
    pid=$(ct_unit_prop "$CT_SERVICE" MainPID)
    before=$(find "$CLONE_ROOT/var/lib/cavra" -name 'evidence.jsonl*' | wc -l)
    # At most 60 s of decisions, 20 ms apart; stopped once both rotations are done and more answers came.
    ct_decisions_start 3000 0.02
    wait_for "30 decisions" 30 ct_decisions_answered 30
    ct_rotate
    wait_for "60 decisions" 30 ct_decisions_answered 60
    # dateext names carry the second: the next rotation must not fall within the same one.
    sleep 1.1
    ct_rotate
    wait_for "90 decisions" 30 ct_decisions_answered 90
    in_container pkill -TERM -f "$CT_CLIENT decisions" || true
    wait "$CT_DECISIONS_PID" 2>/dev/null || true
    ! grep -q ' error ' "$CT_DECISIONS_LOG" ||
        fail "decisions failed: $(grep ' error ' "$CT_DECISIONS_LOG" | head -n 5)"
    ct_expect_unit "$CT_SERVICE" MainPID "$pid"
    after=$(find "$CLONE_ROOT/var/lib/cavra" -name 'evidence.jsonl*' | wc -l)
    expect_eq "evidence files (before, after two rotations)" "$before $after" "1 3"
    expect_eq "the new log (type owner:group mode, as the daemon made it)" \
        "$(in_container stat -c '%F %U:%G %a' "$CT_EVIDENCE")" "regular file cavra:cavra 640"
    expect_eq "its first record" "$("$PYTHON" -c '
import json, sys
print(json.loads(open(sys.argv[1]).readline())["link"]["reason"])' "$CLONE_ROOT$CT_EVIDENCE")" rotation

    # Every acknowledged decision is in exactly one file.
    local acknowledged missing
    acknowledged=$(awk '$2 == "ok" { print $3 }' "$CT_DECISIONS_LOG")
    files=("$CLONE_ROOT"/var/lib/cavra/evidence.jsonl*)
    missing=$(
        for id in $acknowledged; do
            count=$(cat "${files[@]}" | grep -c "\"record_id\":\"$id\"" || true)
            [ "$count" = 1 ] || echo "$id:$count"
        done
    )
    [ -z "$missing" ] || fail "acknowledged decisions not in exactly one file (id:count): $(head -n 5 <<<"$missing")"
    pass "all $(wc -w <<<"$acknowledged") acknowledged decisions are each in exactly one file"

    # The set verifies as one chain, in the container and with the test build.
    local report
    report=$(in_container cavra-runtime --verify-evidence --evidence-log /var/lib/cavra \
        --evidence-signing-key-file "$CT_KEY" --evidence-signing-key-id "$CT_KEY_ID") ||
        fail "the rotated set does not verify: $report"
    expect_eq "set report (valid segments files)" "$("$PYTHON" -c '
import json, sys
r = json.load(sys.stdin)
print(r["valid"], r["segments"], len(r["files"]))' <<<"$report")" "True 1 3"
    "$CAVRA_BIN" --verify-evidence --evidence-log "$CLONE_ROOT/var/lib/cavra" \
        --evidence-signing-key-file "$CLONE_ROOT$CT_KEY" --evidence-signing-key-id "$CT_KEY_ID" >/dev/null ||
        fail "the test build does not verify the rotated set"
    pass "the rotated set verifies as one chain"
}

# ct_can_read USER PATH: USER (with its groups) can read PATH in the container.
# shellcheck disable=SC2016 # expanded by the inner shell
ct_can_read() {
    in_container setpriv --reuid="$1" --regid="$1" --init-groups sh -c 'head -c 1 "$1" >/dev/null 2>&1' sh "$2"
}

packaged_check_evidence_readers() {
    step "group cavra-evidence reads every evidence file, without root; group cavra and others read none"
    local file count=0
    for file in "$CLONE_ROOT"/var/lib/cavra/evidence.jsonl*; do
        file=${file#"$CLONE_ROOT"}
        ct_can_read "$CT_SHIPPER" "$file" || fail "$CT_SHIPPER (group cavra-evidence) cannot read $file"
        if ct_can_read "$CT_MEMBER" "$file"; then fail "$CT_MEMBER (group cavra) can read $file"; fi
        if ct_can_read "$CT_OUTSIDER" "$file"; then fail "$CT_OUTSIDER can read $file"; fi
        count=$((count + 1))
    done
    [ "$count" -ge 2 ] || fail "expected the log and rotated files, found $count"
    pass "$count files: readable by $CT_SHIPPER only (besides cavra and root)"
    expect_contains "the directory's ACL" "$(in_container getfacl -p /var/lib/cavra 2>/dev/null)" \
        "default:group:cavra-evidence:r--"
}

packaged_check_upgrade() {
    local file=$1 expected_version=$2
    step "upgrade to $expected_version while a client keeps connecting"
    local old_pid socket_invocation records_before
    old_pid=$(ct_unit_prop "$CT_SERVICE" MainPID)
    socket_invocation=$(ct_unit_prop "$CT_SOCKET_UNIT" InvocationID)
    records_before=$(wc -l <"$CLONE_ROOT$CT_EVIDENCE")
    # At most 60 s of requests; stopped once the new daemon has answered some.
    ct_load_start 3000 0.02
    wait_for "20 answers" 30 ct_load_answered 20
    pkg_upgrade "$file" >"$SYSTEST_WORK/upgrade.log" 2>&1 ||
        fail "the upgrade failed: $(cat "$SYSTEST_WORK/upgrade.log")"
    say "upgraded after $(ct_load_answers) answers"
    expect_eq "installed version" "$(pkg_version)" "$expected_version"
    ct_wait_unit "$CT_SERVICE" ActiveState active 30
    local new_pid
    new_pid=$(ct_unit_prop "$CT_SERVICE" MainPID)
    [ "$new_pid" != "$old_pid" ] || fail "the daemon was not restarted on upgrade (MainPID still $old_pid)"
    pass "the daemon was restarted (MainPID $old_pid -> $new_pid)"
    ct_expect_unit "$CT_SOCKET_UNIT" InvocationID "$socket_invocation"
    wait_for "20 answers from the new daemon" 30 ct_load_answered_by "$new_pid" 20
    ct_load_stop
    expect_eq "daemons that answered, in order (none of $(ct_load_answers) requests failed)" "$CT_LOAD_PIDS" \
        "$old_pid,$new_pid"
    expect_contains "$PKG_ENV_FILE (the operator's edits)" "$(cat "$CLONE_ROOT$PKG_ENV_FILE")" \
        "CAVRA_DEFAULT_PACK=systest"
    expect_eq "read notes.txt (the policy directory is still in force)" "$(ct_read "$CT_MEMBER" notes.txt)" \
        "block filesystem.read.block"
    local report records
    report=$(ct_verify_evidence) || fail "the evidence log does not verify after the upgrade: $report"
    records=$(wc -l <"$CLONE_ROOT$CT_EVIDENCE")
    [ "$records" -gt "$records_before" ] || fail "no new evidence records after the upgrade"
    expect_eq "report (valid records signed_records)" "$(json_fields valid,records,signed_records <<<"$report")" \
        "True $records $records"
}

packaged_check_remove() {
    step "removal stops the socket and the daemon, and keeps the settings, the evidence and the user"
    pkg_remove >"$SYSTEST_WORK/remove.log" 2>&1 || fail "removal failed: $(cat "$SYSTEST_WORK/remove.log")"
    ct_expect_unit "$CT_SOCKET_UNIT" ActiveState inactive
    ct_expect_unit "$CT_SERVICE" ActiveState inactive
    local path
    for path in "$CT_SOCKET" /run/cavra /usr/bin/cavra-runtime /usr/lib/systemd/system/cavra-runtime.service \
        /usr/lib/systemd/system/cavra-runtime.socket; do
        if ct_exists "$path"; then fail "$path is still there after removal"; fi
    done
    pass "the socket file, its directory, the binary and the units are gone"
    for path in "$PKG_KEPT_SETTINGS" "$CT_EVIDENCE" "$CT_PACKS/systest/policy.yaml"; do
        ct_exists "$path" || fail "$path was deleted by removal"
    done
    expect_contains "$PKG_KEPT_SETTINGS (the operator's edits)" "$(in_container cat "$PKG_KEPT_SETTINGS")" \
        "CAVRA_DAEMON_EVIDENCE_KEY_ID=$CT_KEY_ID"
    pass "the settings, the evidence log and the operator's pack are kept"
    in_container getent passwd cavra >/dev/null || fail "removal deleted the user cavra"
    local out
    if out=$(ct_client "$CT_MEMBER" ask "$CT_SOCKET" '{"action_type":"cavra.health"}' 2>&1); then
        fail "something still answers on $CT_SOCKET: $out"
    fi
    expect_contains "connecting after removal" "$out" "FileNotFoundError"
}
