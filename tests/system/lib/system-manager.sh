# shellcheck shell=bash
# A real systemd *system* manager (PID 1) for one scenario: systemd-nspawn boots an ephemeral overlay clone of this
# machine's root file system (source after common.sh, inside `unshare -m`).
#
# What keeps the host untouched:
#   * The clone is an overlay whose lower layer is the host's root file system (read-only to the overlay) and whose
#     upper layer is a tmpfs in our scratch directory: whatever is installed, created or deleted in the clone (a
#     package, users, /var/lib/...) lands in that tmpfs and vanishes with it. Only the root file system is in the
#     lower layer, not the host's /proc, /dev or /sys mounts; the clone gets empty /run and /tmp of its own.
#   * The mounts live in the scenario's private mount namespace, and so does the tmpfs put on /run/systemd, where
#     nspawn keeps its host-side state.
#   * nspawn runs with --register=no --keep-unit (no machined, no host D-Bus) inside a cgroup of our own: it puts
#     the container's cgroups under its caller's, so without one they would appear under the shell's /init.scope.
#   * --private-network: the container has a loopback interface only.
#
# Sets: CLONE_ROOT (the clone, as seen from here), CONTAINER_PID (nspawn), CONTAINER_LEADER (the container's PID 1
# as seen from here).

CLONE_DIR=
CLONE_ROOT=
CONTAINER_PID=
CONTAINER_LEADER=
CONTAINER_CGROUP_TOP=
# Where files for the container go inside the clone (its /tmp is a fresh tmpfs once it boots).
CONTAINER_SHARE=/var/tmp/cavra-systest
# The container's name (its host name), and its network: --private-network (loopback only) unless the scenario
# shares its own network namespace between containers (CONTAINER_NETWORK=).
CONTAINER_MACHINE=${CONTAINER_MACHINE:-cavra-systest}
CONTAINER_NETWORK=${CONTAINER_NETWORK---private-network}
# The unit the container boots into: basic.target (so sockets.target and every enabled socket) and nothing else of
# the host's enabled services.
CONTAINER_TARGET=cavra-systest.target

# clone_prepare [NAME]: mounts the clone (in $SYSTEST_WORK/NAME, default clone) and makes it a clean machine to
# install into.
# shellcheck disable=SC2120 # NAME is optional
clone_prepare() {
    CLONE_DIR=$SYSTEST_WORK/${1:-clone}
    CLONE_ROOT=$CLONE_DIR/root
    mkdir -p "$CLONE_DIR/layers" "$CLONE_ROOT"
    mountpoint -q /run/systemd || mount -t tmpfs -o mode=0755 tmpfs /run/systemd
    mount -t tmpfs -o mode=0755 tmpfs "$CLONE_DIR/layers"
    on_exit "umount -l '$CLONE_DIR/layers' 2>/dev/null"
    mkdir -p "$CLONE_DIR/layers/upper" "$CLONE_DIR/layers/work"
    mount -t overlay overlay \
        -o "lowerdir=/,upperdir=$CLONE_DIR/layers/upper,workdir=$CLONE_DIR/layers/work" "$CLONE_ROOT"
    on_exit "umount -l '$CLONE_ROOT' 2>/dev/null"
    # /run and /tmp are directories of the host's root file system here, with whatever was left in them; give the
    # clone empty ones (maintainer scripts decide by /run/systemd/system whether a manager runs). Once it boots, the
    # container mounts its own over them.
    mount -t tmpfs -o mode=0755 tmpfs "$CLONE_ROOT/run"
    mount -t tmpfs -o mode=1777 tmpfs "$CLONE_ROOT/tmp"
    on_exit "umount -l '$CLONE_ROOT/run' '$CLONE_ROOT/tmp' 2>/dev/null"
    # The host's enabled services are not part of the machine under test.
    rm -rf "$CLONE_ROOT"/etc/systemd/system/{multi-user,timers,getty}.target.wants
    # The host image ships a policy-rc.d that forbids every service action (a container-build convention); the
    # packages' maintainer scripts must really start, restart and stop units in the clone.
    rm -f "$CLONE_ROOT/usr/sbin/policy-rc.d"
    cat >"$CLONE_ROOT/etc/systemd/system/$CONTAINER_TARGET" <<'UNIT'
[Unit]
Description=cavra system test boot target
Requires=basic.target
After=basic.target
AllowIsolate=yes
UNIT
    mkdir -p "$CLONE_ROOT$CONTAINER_SHARE"
    say "clone of / at $CLONE_ROOT (changes go to a tmpfs)"
}

# clone_share FILE...: copies files into the clone's $CONTAINER_SHARE; prints nothing.
clone_share() { cp "$@" "$CLONE_ROOT$CONTAINER_SHARE/"; }

# shellcheck source=tests/system/lib/cgroup.sh
. "$SYSTEST_LIB/cgroup.sh"

# container_boot: boots the clone and waits until its manager is up (running, or degraded: some unit failed, which
# the scenario checks itself).
container_boot() {
    [ -n "$CLONE_ROOT" ] || fail "container_boot before clone_prepare"
    CONTAINER_CGROUP_TOP=cavra-systest-nspawn-$$-${CONTAINER_MACHINE//[^a-z0-9]/}.slice
    cgroup_enter "$CONTAINER_CGROUP_TOP"
    on_exit "cgroup_leave '$CONTAINER_CGROUP_TOP'"
    # shellcheck disable=SC2086 # CONTAINER_NETWORK is one option or none
    systemd-nspawn --quiet --directory="$CLONE_ROOT" --register=no --keep-unit $CONTAINER_NETWORK \
        --machine="$CONTAINER_MACHINE" --console=read-only --boot -- "systemd.unit=$CONTAINER_TARGET" \
        >"$CLONE_DIR/boot.log" 2>&1 &
    CONTAINER_PID=$!
    on_exit container_stop
    on_failure container_show_state
    wait_for "the container's system manager to be up" 60 container_is_up
    say "container booted: nspawn pid $CONTAINER_PID, its PID 1 is $CONTAINER_LEADER here," \
        "state $(in_container systemctl is-system-running 2>&1)"
}

container_is_up() {
    kill -0 "$CONTAINER_PID" 2>/dev/null || fail "systemd-nspawn exited: $(tail -n 30 "$CLONE_DIR/boot.log")"
    # The container's PID 1 is nspawn's child running systemd; while the container is set up, nspawn has another,
    # short-lived child first, so look again each time until the manager answers.
    CONTAINER_LEADER=$(pgrep --parent "$CONTAINER_PID" --exact systemd | head -n 1)
    [ -n "$CONTAINER_LEADER" ] || return 1
    case "$(in_container systemctl is-system-running 2>/dev/null)" in
    running | degraded) return 0 ;;
    *) return 1 ;;
    esac
}

# Several containers in one scenario: host_save NAME keeps the current container's variables under NAME, and
# host_use NAME makes NAME's the current ones again (in_container, ct_* and container_stop then act on it).
declare -A HOSTS_STATE=()
HOST_VARIABLES=(CLONE_DIR CLONE_ROOT CONTAINER_PID CONTAINER_LEADER CONTAINER_CGROUP_TOP CONTAINER_MACHINE)
host_save() {
    local variable
    for variable in "${HOST_VARIABLES[@]}"; do HOSTS_STATE[$1.$variable]=${!variable}; done
}
host_use() {
    local variable
    for variable in "${HOST_VARIABLES[@]}"; do printf -v "$variable" '%s' "${HOSTS_STATE[$1.$variable]}"; done
}

# in_container COMMAND...: runs COMMAND in the container's namespaces (as root there), with a plain PATH.
in_container() {
    nsenter --target="$CONTAINER_LEADER" --mount --pid --uts --ipc --net -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}

# Kills what in_container started and left running (a client of a failed check, say). They sit in our cgroup
# itself, not in nspawn's payload/ and supervisor/ below it; the container's manager does not wait them out at
# shutdown (it only logs "Waiting for process").
container_kill_helpers() { cgroup_kill_members "$CONTAINER_CGROUP_TOP"; }

# Asks the container's manager to power off; kills the container when it does not within 30 s.
container_stop() {
    [ -n "$CONTAINER_PID" ] || return 0
    container_kill_helpers
    if [ -n "$CONTAINER_LEADER" ]; then
        in_container systemctl poweroff --no-block >/dev/null 2>&1
    fi
    for _ in $(seq 300); do
        kill -0 "$CONTAINER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$CONTAINER_PID" 2>/dev/null; then
        say "cleanup: the container did not power off within 30 s; killing it"
        kill -KILL "$CONTAINER_PID"
    fi
    wait "$CONTAINER_PID" 2>/dev/null
    CONTAINER_PID=
    CONTAINER_LEADER=
}

container_show_state() {
    if [ -z "$CONTAINER_PID" ] || [ -z "$CONTAINER_LEADER" ]; then
        echo "---- nspawn boot log ----"
        tail -n 40 "$CLONE_DIR/boot.log" 2>/dev/null
        return 0
    fi
    echo "---- container: failed units ----"
    in_container systemctl --no-pager --failed 2>&1
    echo "---- container: cavra units ----"
    in_container systemctl --no-pager status --lines=0 cavra-runtime.socket cavra-runtime.service 2>&1
    echo "---- container: last journal entries ----"
    in_container journalctl --no-pager --quiet -o short-monotonic -n 60 2>&1
    echo "---- end of container journal ----"
}

# ct_unit_prop UNIT PROPERTY: one property's value, as the container's `systemctl show` reports it.
ct_unit_prop() { in_container systemctl show -p "$2" --value "$1"; }

# ct_unit_prop_is UNIT PROPERTY VALUE (a condition for wait_for)
ct_unit_prop_is() { [ "$(ct_unit_prop "$1" "$2")" = "$3" ]; }

# ct_wait_unit UNIT PROPERTY VALUE TIMEOUT_SECONDS
ct_wait_unit() {
    poll_until "$4" ct_unit_prop_is "$1" "$2" "$3" ||
        fail "timed out after ${4}s waiting for $1 $2=$3; it is '$(ct_unit_prop "$1" "$2")'"
    pass "$1 $2 = $3"
}

# ct_expect_unit UNIT PROPERTY VALUE: the property has that value now.
ct_expect_unit() { expect_eq "$1 $2" "$(ct_unit_prop "$1" "$2")" "$3"; }

# ct_journal ARGS...: journalctl in the container, flushed first.
ct_journal() {
    in_container journalctl --sync 2>/dev/null || true
    in_container journalctl --no-pager --quiet "$@"
}
