#!/usr/bin/python3
"""Structural check of cavra-runtime's launchd job plist, offline (no launchd or plutil here). Standard library only.

  launchd-plist.py FILE
      Prints one line per problem and exits 1 if there are any; prints "ok" and exits 0 otherwise.

What it checks, beyond "plistlib can read it" (so well-formed XML or binary, a <key> before every value):
  * the keys launchd needs and their types: Label (a string, the file's name without .plist), ProgramArguments
    (a non-empty array of strings, an absolute program path), RunAtLoad (boolean), KeepAlive (boolean, or a
    dictionary of booleans), StandardOutPath and StandardErrorPath (absolute paths), EnvironmentVariables (strings),
    the integer keys (Umask, ExitTimeOut, ThrottleInterval), ProcessType (one of launchd's four);
  * a dedicated account: UserName and GroupName set, and not root or wheel;
  * Sockets -> Listeners: SockPathName /var/run/cavra-runtime.sock (directly in /var/run, which macOS empties at
    boot: launchd creates no directory for a socket), SockPathMode the integer 432, the decimal form of octal 0660
    (an octal-looking 660 would be mode 01224), SockPathOwner and SockPathGroup, if given, integers (launchd takes
    no names there), SockType and SockFamily, if given, a Unix stream;
  * the settings agree with launchd: CAVRA_RUNTIME_SOCKET, if set, is SockPathName; CAVRA_LOG_FILE is set and is
    StandardErrorPath (the daemon follows that file across rotation; launchd opens it only once);
  * the daemon is asked to serve in the foreground: --serve, and none of the options that detach or start a second
    process (--lifecycle, --daemon), nor inetdCompatibility (one process per connection, not a listener);
  * no key launchd does not know in the places checked, to catch misspellings.
"""
import os
import plistlib
import sys

SOCKET = "/var/run/cavra-runtime.sock"
MODE = 0o660  # 432
JOB_KEYS = {
    "Label", "ProgramArguments", "Program", "EnvironmentVariables", "Sockets", "RunAtLoad", "KeepAlive",
    "StandardOutPath", "StandardErrorPath", "UserName", "GroupName", "WorkingDirectory", "ThrottleInterval",
    "ExitTimeOut", "ProcessType", "Umask", "SoftResourceLimits", "HardResourceLimits", "Disabled",
}
LISTENER_KEYS = {"SockPathName", "SockPathMode", "SockPathOwner", "SockPathGroup", "SockType", "SockFamily",
                 "SockPassive"}
KEEPALIVE_KEYS = {"SuccessfulExit", "Crashed", "NetworkState", "PathState", "OtherJobEnabled"}
DETACHING = {"--lifecycle", "--daemon"}
INTEGER_KEYS = ("Umask", "ExitTimeOut", "ThrottleInterval")
PROCESS_TYPES = {"Background", "Standard", "Adaptive", "Interactive"}
PRIVILEGED = {"root", "wheel", "0"}


def check(path):
    try:
        with open(path, "rb") as f:
            job = plistlib.load(f)
    except Exception as error:  # noqa: BLE001 - any parse failure is the finding
        return ["not a valid plist: %s: %s" % (type(error).__name__, error)]
    if not isinstance(job, dict):
        return ["the top level must be a dictionary, not %s" % type(job).__name__]
    problems = []

    def typed(container, key, kind, where=""):
        if key not in container:
            problems.append("%s%s is missing" % (where, key))
            return None
        value = container[key]
        # bool is an int in Python; a plist <true/> must not pass for an <integer>, nor the reverse.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append("%s%s must be %s, not %s" % (where, key, kind.__name__, type(value).__name__))
            return None
        return value

    for key in sorted(set(job) - JOB_KEYS):
        problems.append("unknown key %s" % key)
    label = typed(job, "Label", str)
    expected_label = os.path.basename(path).rsplit(".plist", 1)[0]
    if label is not None and label != expected_label:
        problems.append("Label is %r; the file must be named after it (%s.plist)" % (label, label))
    if "Program" in job:
        problems.append("Program is set: the program is ProgramArguments[0]")
    args = typed(job, "ProgramArguments", list)
    if args is not None:
        if not args or not all(isinstance(a, str) for a in args):
            problems.append("ProgramArguments must be a non-empty array of strings")
        else:
            if not args[0].startswith("/"):
                problems.append("ProgramArguments[0] must be an absolute path, not %r" % args[0])
            if os.path.basename(args[0]) != "cavra-runtime":
                problems.append("ProgramArguments[0] must run cavra-runtime, not %r" % args[0])
            if "--serve" not in args[1:]:
                problems.append("ProgramArguments must include --serve")
            for arg in args[1:]:
                if arg.split("=", 1)[0] in DETACHING:
                    problems.append("ProgramArguments must not include %s: under launchd the daemon must not detach"
                                    % arg)
    if "inetdCompatibility" in job:
        problems.append("inetdCompatibility is set: the daemon takes a listening socket, not one connection")
    typed(job, "RunAtLoad", bool)
    keep_alive = job.get("KeepAlive")
    if keep_alive is None:
        problems.append("KeepAlive is missing")
    elif isinstance(keep_alive, dict):
        for key, value in keep_alive.items():
            if key not in KEEPALIVE_KEYS:
                problems.append("unknown key KeepAlive.%s" % key)
            elif key in ("SuccessfulExit", "Crashed", "NetworkState") and not isinstance(value, bool):
                problems.append("KeepAlive.%s must be bool, not %s" % (key, type(value).__name__))
    elif not isinstance(keep_alive, bool):
        problems.append("KeepAlive must be bool or dict, not %s" % type(keep_alive).__name__)
    for key in ("StandardOutPath", "StandardErrorPath"):
        value = typed(job, key, str)
        if value is not None and not value.startswith("/"):
            problems.append("%s must be an absolute path" % key)
    env = job.get("EnvironmentVariables", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        problems.append("EnvironmentVariables must be a dictionary of strings")
        env = {}
    for key in INTEGER_KEYS:
        if key in job:
            typed(job, key, int)
    if "ProcessType" in job and job["ProcessType"] not in PROCESS_TYPES:
        problems.append("ProcessType is %r, not one of %s" % (job["ProcessType"], ", ".join(sorted(PROCESS_TYPES))))
    for key in ("UserName", "GroupName"):
        account = typed(job, key, str)
        if account is not None and account in PRIVILEGED:
            problems.append("%s is %s: the daemon runs as a dedicated account, not root" % (key, account))
    log_file = env.get("CAVRA_LOG_FILE")
    if log_file is None:
        problems.append("EnvironmentVariables.CAVRA_LOG_FILE is missing: without it the daemon never leaves a "
                        "rotated log")
    elif job.get("StandardErrorPath") != log_file:
        problems.append("StandardErrorPath is %r but CAVRA_LOG_FILE is %r: they must be the same file"
                        % (job.get("StandardErrorPath"), log_file))

    sockets = typed(job, "Sockets", dict)
    if sockets is not None:
        if set(sockets) != {"Listeners"}:
            problems.append("Sockets must hold exactly Listeners (the name the daemon asks launchd for), not %s"
                            % sorted(sockets))
        listener = typed(sockets, "Listeners", dict, "Sockets.") if "Listeners" in sockets else None
        if listener is not None:
            where = "Sockets.Listeners."
            for key in sorted(set(listener) - LISTENER_KEYS):
                problems.append("unknown key %s%s" % (where, key))
            name = typed(listener, "SockPathName", str, where)
            if name is not None and name != SOCKET:
                problems.append("%sSockPathName is %r, not %s" % (where, name, SOCKET))
            if name is not None and env.get("CAVRA_RUNTIME_SOCKET", name) != name:
                problems.append("EnvironmentVariables.CAVRA_RUNTIME_SOCKET is %r, not SockPathName %r"
                                % (env["CAVRA_RUNTIME_SOCKET"], name))
            for key in ("SockPathOwner", "SockPathGroup"):
                if key in listener:
                    typed(listener, key, int, where)
            mode = typed(listener, "SockPathMode", int, where)
            if mode is not None and mode != MODE:
                hint = " (octal digits written as a decimal number?)" if mode > 0o777 else ""
                problems.append("%sSockPathMode is %d (octal %04o), not %d (octal 0660)%s"
                                % (where, mode, mode, MODE, hint))
            if listener.get("SockType", "stream") != "stream":
                problems.append("%sSockType must be stream" % where)
            if listener.get("SockFamily", "Unix") != "Unix":
                problems.append("%sSockFamily must be Unix" % where)
    return problems


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    problems = check(sys.argv[1])
    for problem in problems:
        print(problem)
    if not problems:
        print("ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
