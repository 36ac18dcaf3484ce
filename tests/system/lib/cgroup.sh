# shellcheck shell=bash
# A cgroup of our own for a manager under test (a `systemd --user`, or systemd-nspawn and its container): each puts
# its own cgroups below the one it starts in, so it must not start in the shell's (the host's /init.scope, say).
# Sourced by user-manager.sh and system-manager.sh.

# hierarchy root -> the cgroup this shell was in before cgroup_enter, to go back there at the end
declare -A CGROUP_HOME=()

# The cgroup hierarchies to take a place in: on a hybrid host the named v1 "systemd" one and the v2 "unified" one,
# on a pure cgroup2 host just /sys/fs/cgroup.
cgroup_hierarchies() {
    local h found=
    for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
        if [ -e "$h/cgroup.procs" ]; then
            echo "$h"
            found=1
        fi
    done
    [ -n "$found" ] || [ ! -e /sys/fs/cgroup/cgroup.controllers ] || echo /sys/fs/cgroup
}

# cgroup_current HIERARCHY: this shell's cgroup path within it (from /proc/self/cgroup).
cgroup_current() {
    case "$1" in
    */systemd) sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup ;;
    *) sed -n 's/^0:://p' /proc/self/cgroup ;;
    esac
}

# cgroup_enter PATH: creates PATH (relative, e.g. top.slice/unit.service) in every hierarchy and moves this shell
# into it, remembering where it was.
cgroup_enter() {
    local h
    for h in $(cgroup_hierarchies); do
        [ -n "${CGROUP_HOME[$h]:-}" ] || CGROUP_HOME[$h]=$(cgroup_current "$h")
        mkdir -p "$h/$1"
        echo $$ >"$h/$1/cgroup.procs"
    done
    [ "${#CGROUP_HOME[@]}" -gt 0 ] || fail "no usable cgroup hierarchy under /sys/fs/cgroup"
}

# cgroup_kill_members TOP: kills the processes directly in TOP (not in the cgroups below it), except this shell.
cgroup_kill_members() {
    local h pid
    for h in "${!CGROUP_HOME[@]}"; do
        [ -f "$h/$1/cgroup.procs" ] || continue
        while read -r pid; do
            [ "$pid" = $$ ] || kill -KILL "$pid" 2>/dev/null
        done <"$h/$1/cgroup.procs"
    done
}

# cgroup_leave TOP: moves this shell back, kills whatever is left anywhere below TOP (only what the scenario started
# can be there) and removes TOP.
cgroup_leave() {
    local h f pid
    for h in "${!CGROUP_HOME[@]}"; do
        [ -d "$h/$1" ] || continue
        echo $$ >"$h${CGROUP_HOME[$h]%/}/cgroup.procs" 2>/dev/null || echo $$ >"$h/cgroup.procs"
        while read -r f; do
            while read -r pid; do
                [ "$pid" = $$ ] && continue
                say "cleanup: killing leftover process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null))"
                kill -KILL "$pid" 2>/dev/null
            done <"$f"
        done < <(find "$h/$1" -name cgroup.procs)
    done
    for h in "${!CGROUP_HOME[@]}"; do
        [ -d "$h/$1" ] || continue
        for _ in $(seq 60); do
            find "$h/$1" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$h/$1" ] || break
            sleep 0.05
        done
        [ ! -d "$h/$1" ] || say "cleanup: could not remove $h/$1"
    done
}
