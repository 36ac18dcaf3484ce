# shellcheck shell=bash
# A throwaway `systemd --user` manager for one scenario (source after common.sh and journal.sh, inside
# `unshare -m`; start journald first so the manager logs there).
#
# What makes it work on a machine whose PID 1 is not systemd:
#   * Its own cgroup. systemd --user takes the cgroup it starts in as its root (dropping a trailing /init.scope);
#     left in the shell's cgroup it would create app.slice/... under the host's. The cgroup is named like logind's
#     layout, <slice>/user@<uid>.service, because journald derives _SYSTEMD_USER_UNIT only from that shape.
#   * A private /run/systemd (tmpfs; journal_start may have mounted it already) and private XDG directories, so
#     $XDG_RUNTIME_DIR/systemd/private, the notify socket and %t all live in our scratch directory.
#   * A hermetic unit path: only the stock targets and slices, systemd-exit.service (without exit.target the
#     manager ignores SIGTERM) and our own unit directory. No host-installed user units start.
#
# Sets: MANAGER_PID, UNIT_DIR, XDG_RUNTIME_DIR (and the other XDG variables and HOME, exported for systemctl).

MANAGER_PID=
MANAGER_DIR=
UNIT_DIR=
MANAGER_CGROUP=
MANAGER_CGROUP_TOP=
# shellcheck source=tests/system/lib/cgroup.sh
. "$SYSTEST_LIB/cgroup.sh"

manager_start() {
    MANAGER_DIR=$SYSTEST_WORK/manager
    mkdir -p "$MANAGER_DIR"
    MANAGER_CGROUP_TOP=cavra-systest-$$.slice
    MANAGER_CGROUP=$MANAGER_CGROUP_TOP/user@$(id -u).service
    cgroup_enter "$MANAGER_CGROUP"
    on_exit "cgroup_leave '$MANAGER_CGROUP_TOP'"
    mountpoint -q /run/systemd || mount -t tmpfs -o mode=0755 tmpfs /run/systemd
    # The "booted with systemd" marker that systemctl and sd_booted() look for.
    mkdir -p /run/systemd/system

    export HOME=$MANAGER_DIR/home
    export XDG_RUNTIME_DIR=$MANAGER_DIR/xdg-runtime
    export XDG_CONFIG_HOME=$MANAGER_DIR/config XDG_DATA_HOME=$MANAGER_DIR/data
    export XDG_STATE_HOME=$MANAGER_DIR/state XDG_CACHE_HOME=$MANAGER_DIR/cache
    mkdir -p "$MANAGER_DIR"
    mkdir -m 0700 "$XDG_RUNTIME_DIR"
    mkdir -p "$HOME" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_STATE_HOME" "$XDG_CACHE_HOME"

    UNIT_DIR=$MANAGER_DIR/units
    mkdir -p "$UNIT_DIR"
    local unit
    for unit in /usr/lib/systemd/user/*.target /usr/lib/systemd/user/*.slice /usr/lib/systemd/user/systemd-exit.service; do
        [ -e "$unit" ] && ln -s "$unit" "$UNIT_DIR/"
    done
    export SYSTEMD_UNIT_PATH=$UNIT_DIR

    # Log to the private journal when it runs; never to /dev/kmsg (a user manager's fallback) on the host.
    local target=console
    [ -S /run/systemd/journal/socket ] && target=journal
    /lib/systemd/systemd --user --log-target="$target" >"$MANAGER_DIR/manager.log" 2>&1 &
    MANAGER_PID=$!
    on_exit manager_stop
    on_failure manager_show_state
    wait_for "the user manager to be up" 20 manager_is_up
    say "user manager pid $MANAGER_PID, cgroup $MANAGER_CGROUP, state $(systemctl --user is-system-running 2>&1)"
}

manager_is_up() {
    kill -0 "$MANAGER_PID" 2>/dev/null || fail "the user manager exited: $(cat "$MANAGER_DIR/manager.log")"
    case "$(systemctl --user is-system-running 2>/dev/null)" in
    running | degraded) return 0 ;;
    *) return 1 ;;
    esac
}

# SIGTERM makes the manager start exit.target: every unit is stopped in order, then it exits.
manager_stop() {
    [ -n "$MANAGER_PID" ] || return 0
    kill -TERM "$MANAGER_PID" 2>/dev/null
    for _ in $(seq 200); do
        kill -0 "$MANAGER_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$MANAGER_PID" 2>/dev/null; then
        say "cleanup: the user manager ignored SIGTERM for 10 s; killing it"
        kill -KILL "$MANAGER_PID"
    fi
    wait "$MANAGER_PID" 2>/dev/null
    MANAGER_PID=
}

manager_show_state() {
    [ -n "$MANAGER_PID" ] || return 0
    echo "---- user manager: units ----"
    systemctl --user status --no-pager --lines=0 cavra-runtime.socket cavra-runtime.service 2>&1
    if [ -S /run/systemd/journal/socket ]; then
        journal_show_tail 80
    else
        echo "---- user manager log ----"
        tail -n 80 "$MANAGER_DIR/manager.log"
    fi
}

# unit_prop UNIT PROPERTY: one property's value, as `systemctl show` reports it.
unit_prop() { systemctl --user show -p "$2" --value "$1"; }

# unit_prop_is UNIT PROPERTY VALUE (a condition for wait_for)
unit_prop_is() { [ "$(unit_prop "$1" "$2")" = "$3" ]; }

# wait_unit UNIT PROPERTY VALUE TIMEOUT_SECONDS
wait_unit() {
    poll_until "$4" unit_prop_is "$1" "$2" "$3" ||
        fail "timed out after ${4}s waiting for $1 $2=$3; it is '$(unit_prop "$1" "$2")'"
    pass "$1 $2 = $3"
}

# expect_unit UNIT PROPERTY VALUE: the property has that value now.
expect_unit() { expect_eq "$1 $2" "$(unit_prop "$1" "$2")" "$3"; }

# unit_dropin UNIT NAME: writes stdin to $UNIT_DIR/UNIT.d/NAME.conf (call daemon-reload afterwards).
unit_dropin() {
    mkdir -p "$UNIT_DIR/$1.d"
    cat >"$UNIT_DIR/$1.d/$2.conf"
}

manager_reload() { systemctl --user daemon-reload; }
