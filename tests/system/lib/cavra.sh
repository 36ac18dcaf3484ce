# shellcheck shell=bash
# cavra-runtime under the scenario's user manager: installs the shipped user units, writes the per-user environment
# file, and asks the daemon through its socket (source after common.sh, journal.sh and user-manager.sh).

CAVRA_UNITS_SRC=$SYSTEST_REPO/packaging/systemd/user
CAVRA_SOCKET_UNIT=cavra-runtime.socket
CAVRA_SERVICE=cavra-runtime.service
CAVRA_CLIENT=$SYSTEST_LIB/client.py
CAVRA_SOCKET=
CAVRA_ENV_FILE=

# Copies packaging/systemd/user/cavra-runtime.{socket,service} into the manager's unit directory, unchanged except
# for the binary: the shipped ExecStart= and ExecReload= name /usr/bin/cavra-runtime, the test runs the freshly
# built one.
cavra_install_units() {
    local unit
    for unit in "$CAVRA_SOCKET_UNIT" "$CAVRA_SERVICE"; do
        [ -f "$CAVRA_UNITS_SRC/$unit" ] || fail "missing $CAVRA_UNITS_SRC/$unit"
    done
    case "$CAVRA_BIN" in
    *[[:space:]%\\\"\$]*) fail "the binary path '$CAVRA_BIN' needs quoting in ExecStart=; use a plainer path" ;;
    esac
    cp "$CAVRA_UNITS_SRC/$CAVRA_SOCKET_UNIT" "$UNIT_DIR/"
    local line shipped="ExecStart=/usr/bin/cavra-runtime " reload="ExecReload=/usr/bin/cavra-runtime "
    while IFS= read -r line; do
        case "$line" in
        "$shipped"*) line="ExecStart=$CAVRA_BIN ${line#"$shipped"}" ;;
        "$reload"*) line="ExecReload=$CAVRA_BIN ${line#"$reload"}" ;;
        esac
        printf '%s\n' "$line"
    done <"$CAVRA_UNITS_SRC/$CAVRA_SERVICE" >"$UNIT_DIR/$CAVRA_SERVICE"
    grep -q "^ExecStart=$CAVRA_BIN --serve\( \|\$\)" "$UNIT_DIR/$CAVRA_SERVICE" ||
        fail "could not point ExecStart= of $CAVRA_SERVICE at $CAVRA_BIN (expected 'ExecStart=/usr/bin/cavra-runtime --serve')"
    CAVRA_SOCKET=$XDG_RUNTIME_DIR/cavra/cavra-runtime.sock
    CAVRA_ENV_FILE=$HOME/.config/cavra/cavra-runtime.env
    manager_reload
    for unit in "$CAVRA_SOCKET_UNIT" "$CAVRA_SERVICE"; do
        [ "$(unit_prop "$unit" LoadState)" = loaded ] ||
            fail "$unit did not load: $(unit_prop "$unit" LoadError)"
    done
    # The manager logs "<file>:<line>: ..." for every directive it ignores (unknown, or unsupported in a user
    # manager); the shipped units must not have any.
    local complaints
    complaints=$(journal_query -o cat _PID="$MANAGER_PID" | grep -F "$UNIT_DIR/cavra-runtime." || true)
    [ -z "$complaints" ] || fail "the user manager complained about our unit files:
$complaints"
    say "installed $CAVRA_SOCKET_UNIT and $CAVRA_SERVICE (ExecStart=$CAVRA_BIN --serve)"
}

# cavra_env_file LINE...: writes the per-user environment file the service reads (EnvironmentFile=).
cavra_env_file() {
    mkdir -p "$(dirname "$CAVRA_ENV_FILE")"
    printf '%s\n' "$@" >"$CAVRA_ENV_FILE"
}

# Starts the socket unit and waits until it listens.
cavra_listen() {
    systemctl --user start "$CAVRA_SOCKET_UNIT"
    wait_unit "$CAVRA_SOCKET_UNIT" SubState listening 10
    [ -S "$CAVRA_SOCKET" ] || fail "$CAVRA_SOCKET_UNIT is listening but $CAVRA_SOCKET is not a socket"
}

# cavra_ask REQUEST_JSON [client.py ask flags...]: prints the answer (or the --fields asked for); fails the scenario
# when there is no answer.
cavra_ask() {
    "$PYTHON" "$CAVRA_CLIENT" ask "$CAVRA_SOCKET" "$@" || fail "no answer on $CAVRA_SOCKET to $1"
}

# cavra_health FIELDS: fields of the health answer, e.g. `cavra_health pid,policy_digest`.
cavra_health() { cavra_ask '{"action_type":"cavra.health"}' --fields "$1"; }

# cavra_read_decision PATH: "<decision> <rule_id>" for reading PATH.
cavra_read_decision() {
    cavra_ask "{\"action_type\":\"read_file\",\"target\":\"$1\"}" --fields decision,rule_id
}

# The daemon's current status text as the manager has it (sd_notify STATUS=).
cavra_status() { unit_prop "$CAVRA_SERVICE" StatusText; }

# The setting every scenario starts from: a private journald, a user manager beside it, and our units installed.
cavra_user_session() {
    journal_start
    manager_start
    cavra_install_units
}
