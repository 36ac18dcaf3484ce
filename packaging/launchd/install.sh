#!/bin/sh
# Installs cavra-runtime as a macOS launch daemon: the account _cavra, the binary, the evidence directory, the log
# file and its newsyslog entry, and the launchd job, which is loaded at once and at every boot. Run as root, from a
# checkout or an unpacked release. Running it again upgrades: the job is unloaded, the files replaced and the job
# loaded again; the account, the evidence and the log stay. Every command is printed (on standard output) before
# it runs.
#
# usage: install.sh [--binary PATH] [--id N] [--dry-run]
#   --binary PATH  the cavra-runtime to install (default: target/release/cavra-runtime in this checkout)
#   --id N         uid and gid of a new _cavra account (default: the first id from 300 to 399 free as both)
#   --dry-run      print the commands of a first install and run nothing. It does not look at the system, so it
#                  runs anywhere (tests/packaging.rs runs it on Linux); it needs --id.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=packaging/launchd/layout.sh
. "$here/layout.sh"

binary=$here/../../target/release/cavra-runtime
account_id=
dry_run=no
while [ $# -gt 0 ]; do
  case $1 in
    --binary) [ $# -ge 2 ] || usage; binary=$2; shift 2 ;;
    --id) [ $# -ge 2 ] || usage; account_id=$2; shift 2 ;;
    --dry-run) dry_run=yes; shift ;;
    *) usage ;;
  esac
done
case $account_id in
  '') ;;
  *[!0-9]*) die "--id must be a number, not $account_id" ;;
esac

# The first id from 300 to 399 that is neither a uid nor a gid (200-400 is the range of macOS role accounts).
free_id() {
  used=$(dscl . -list /Users UniqueID | awk '{print $2}'; dscl . -list /Groups PrimaryGroupID | awk '{print $2}')
  candidate=300
  while [ "$candidate" -le 399 ]; do
    printf '%s\n' "$used" | grep -qx "$candidate" || { echo "$candidate"; return; }
    candidate=$((candidate + 1))
  done
  die "no id from 300 to 399 is free for $ACCOUNT; pass --id"
}

# launchd runs the file at $BINARY as _cavra: no one but root may be able to replace it or a directory above it.
check_root_only() {
  path=$1
  while :; do
    owner=$(stat -f %u "$path")
    mode=$(stat -f %Lp "$path")
    if [ "$owner" != 0 ] || [ $((0$mode & 022)) -ne 0 ]; then
      die "$path is not root's alone (owner uid $owner, mode $mode): another user could replace the daemon"
    fi
    [ "$path" != / ] || return 0
    path=$(dirname "$path")
  done
}

if [ "$dry_run" = yes ]; then
  [ -n "$account_id" ] || die "--dry-run needs --id: it does not look for a free one"
  group_exists=no user_exists=no loaded=no log_exists=no link_free=yes
else
  [ "$(uname -s)" = Darwin ] || die "this installs a macOS launch daemon; on Linux, install the deb or rpm package"
  [ "$(id -u)" = 0 ] || die "run it as root: sudo $0"
  [ -x "$binary" ] || die "no cavra-runtime at $binary: build it (cargo build --release) or pass --binary"
  "$binary" --version >/dev/null || die "$binary does not run on this Mac"
  group_exists=no user_exists=no loaded=no log_exists=no link_free=no
  dscl . -read "/Groups/$ACCOUNT" >/dev/null 2>&1 && group_exists=yes
  dscl . -read "/Users/$ACCOUNT" >/dev/null 2>&1 && user_exists=yes
  launchctl print "system/$LABEL" >/dev/null 2>&1 && loaded=yes
  [ -e "$LOG" ] && log_exists=yes
  if [ ! -e "$LINK" ] && [ ! -L "$LINK" ]; then
    link_free=yes
  elif [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$BINARY" ]; then
    link_free=yes
  fi
  if [ "$group_exists$user_exists" != yesyes ] && [ -z "$account_id" ]; then
    account_id=$(free_id)
  fi
fi

if [ "$group_exists" = yes ]; then
  gid=$(dscl . -read "/Groups/$ACCOUNT" PrimaryGroupID | awk '{print $2}')
else
  gid=$account_id
  run dscl . -create "/Groups/$ACCOUNT"
  run dscl . -create "/Groups/$ACCOUNT" PrimaryGroupID "$gid"
  run dscl . -create "/Groups/$ACCOUNT" RealName "cavra-runtime"
  run dscl . -create "/Groups/$ACCOUNT" Password '*'
fi
if [ "$user_exists" = no ]; then
  run dscl . -create "/Users/$ACCOUNT"
  run dscl . -create "/Users/$ACCOUNT" UniqueID "$account_id"
  run dscl . -create "/Users/$ACCOUNT" PrimaryGroupID "$gid"
  run dscl . -create "/Users/$ACCOUNT" UserShell /usr/bin/false
  run dscl . -create "/Users/$ACCOUNT" NFSHomeDirectory /var/empty
  run dscl . -create "/Users/$ACCOUNT" RealName "cavra-runtime daemon"
  run dscl . -create "/Users/$ACCOUNT" Password '*'
  run dscl . -create "/Users/$ACCOUNT" IsHidden 1
fi

[ "$loaded" = no ] || run launchctl bootout "system/$LABEL"

run install -d -m 0755 -o root -g wheel "$PREFIX" "$(dirname "$BINARY")"
[ "$dry_run" = yes ] || check_root_only "$(dirname "$BINARY")"
run install -m 0755 -o root -g wheel "$binary" "$BINARY"
if [ "$link_free" = yes ]; then
  run mkdir -p "$(dirname "$LINK")"
  run ln -sfn "$BINARY" "$LINK"
fi

run install -d -m 0700 -o "$ACCOUNT" -g "$ACCOUNT" "$EVIDENCE_DIR"
# _cavra cannot create files in /var/log: the file must exist before launchd opens it, and stay (newsyslog
# replaces it on rotation with this owner and mode).
if [ "$log_exists" = no ]; then
  run install -m 0640 -o "$ACCOUNT" -g "$LOG_GROUP" /dev/null "$LOG"
else
  run chown "$ACCOUNT:$LOG_GROUP" "$LOG"
  run chmod 0640 "$LOG"
fi
run install -m 0644 -o root -g wheel "$here/newsyslog.d/$(basename "$NEWSYSLOG")" "$NEWSYSLOG"
run install -m 0644 -o root -g wheel "$here/newsyslog.d/$(basename "$NEWSYSLOG_EVIDENCE")" "$NEWSYSLOG_EVIDENCE"

run install -m 0644 -o root -g wheel "$here/$LABEL.plist" "$PLIST"
# The socket's group is a number in the plist, known only now.
run plutil -insert Sockets.Listeners.SockPathGroup -integer "$gid" "$PLIST"
run plutil -lint "$PLIST"
# Clears a "disabled" override that `launchctl disable` leaves behind, which would keep the job from loading.
run launchctl enable "system/$LABEL"
run launchctl bootstrap system "$PLIST"

cat >&2 <<EOF

cavra-runtime answers on $SOCKET (root:$ACCOUNT, mode 0660).
Let a user ask it:  sudo dseditgroup -o edit -a USER -t user $ACCOUNT   (then log in again)
Status:             sudo launchctl print system/$LABEL
Log:                $LOG
EOF
