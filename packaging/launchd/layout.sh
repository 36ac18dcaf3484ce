# shellcheck shell=sh
# Where the macOS launch daemon's pieces go; sourced by install.sh and uninstall.sh, which use these names.
# tests/packaging.rs checks them against com.cavra.runtime.plist and newsyslog.d/.
# shellcheck disable=SC2034
LABEL=com.cavra.runtime
# The account the daemon runs as (UserName and GroupName in the plist); clients join its group.
ACCOUNT=_cavra
# Not /usr/local/bin, which Homebrew on Intel Macs hands to a user: launchd runs whatever is at this path.
PREFIX=/usr/local/cavra-runtime
BINARY=$PREFIX/bin/cavra-runtime
# A convenience link for clients' PATH, made only where nothing else has the name.
LINK=/usr/local/bin/cavra-runtime
PLIST=/Library/LaunchDaemons/$LABEL.plist
NEWSYSLOG=/etc/newsyslog.d/cavra-runtime-log.conf
# The evidence log's rotation: one chain across the archives (link records).
NEWSYSLOG_EVIDENCE=/etc/newsyslog.d/cavra-runtime-evidence.conf
SOCKET=/var/run/cavra-runtime.sock
EVIDENCE_DIR=/var/db/cavra-runtime
LOG=/var/log/cavra-runtime.log
# Members of admin read the log without sudo, as with macOS's own logs.
LOG_GROUP="admin"

# Prints a command, quoted so that it can be pasted, then runs it unless this is a dry run.
run() {
  line=
  for word in "$@"; do
    case $word in
      '' | *[!A-Za-z0-9_./:=@%+,-]*) line="$line '$word'" ;;
      *) line="$line $word" ;;
    esac
  done
  printf '%s\n' "${line# }"
  [ "${dry_run:-no}" = yes ] || "$@"
}

# Prints the usage block of the calling script's header comment, and exits 2.
usage() {
  sed -n '/^# usage:/,/^[^#]/s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

die() {
  printf '%s: %s\n' "$(basename "$0")" "$*" >&2
  exit 1
}
