#!/bin/sh
# Removes the cavra-runtime launch daemon that install.sh installed: stops and unloads the job, and removes its plist,
# the newsyslog entry and the binary. The evidence, the log and the _cavra account stay, unless --purge: then they
# are deleted too (the evidence is gone for good). Run as root; every command is printed (on standard output) before
# it runs.
#
# usage: uninstall.sh [--purge] [--dry-run]
#   --purge    also delete the evidence directory (not what other volumes mounted in it hold), the log and its
#              archives, and the account _cavra
#   --dry-run  print the commands and run nothing; it does not look at the system, so it runs anywhere
set -eu

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=packaging/launchd/layout.sh
. "$here/layout.sh"

purge=no
dry_run=no
while [ $# -gt 0 ]; do
  case $1 in
    --purge) purge=yes; shift ;;
    --dry-run) dry_run=yes; shift ;;
    *) usage ;;
  esac
done

if [ "$dry_run" = yes ]; then
  loaded=yes our_link=yes
else
  [ "$(uname -s)" = Darwin ] || die "this removes a macOS launch daemon; on Linux, remove the deb or rpm package"
  [ "$(id -u)" = 0 ] || die "run it as root: sudo $0"
  loaded=no our_link=no
  launchctl print "system/$LABEL" >/dev/null 2>&1 && loaded=yes
  [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$BINARY" ] && our_link=yes
fi

# bootout stops the daemon (SIGTERM: it finishes the requests in flight) and closes launchd's socket.
[ "$loaded" = no ] || run launchctl bootout "system/$LABEL"
run rm -f "$PLIST" "$NEWSYSLOG" "$NEWSYSLOG_EVIDENCE" "$SOCKET"
[ "$our_link" = no ] || run rm -f "$LINK"
run rm -rf "$PREFIX"

if [ "$purge" = yes ]; then
  # -x: never into a volume mounted below the evidence directory.
  run rm -rfx "$EVIDENCE_DIR"
  # The log and newsyslog's numbered archives of it.
  run find "$(dirname "$LOG")" -maxdepth 1 -name "$(basename "$LOG")*" -delete
  run dscl . -delete "/Users/$ACCOUNT"
  run dscl . -delete "/Groups/$ACCOUNT"
else
  printf '\nKept: the evidence in %s, the log %s and the account %s (--purge deletes them).\n' \
    "$EVIDENCE_DIR" "$LOG" "$ACCOUNT" >&2
fi
