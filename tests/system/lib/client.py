#!/usr/bin/python3
"""Talks to cavra-runtime's Unix socket for the system tests (standard library only).

  client.py ask SOCKET REQUEST_JSON [--timeout S] [--fields F1,F2]
      One request, one answer: prints the answer line, or the named top-level fields separated by spaces.
      Exits 1 with a message on stderr when the connection or the answer fails.
  client.py loop SOCKET COUNT INTERVAL
      COUNT sequential health requests, each on a new connection, INTERVAL seconds apart. One line per request,
      flushed at once so a test can follow progress: "<n> ok <pid>" or "<n> error <what>"; then
      "summary answered=<a> errors=<e> pids=<pid,pid...>" (pids in order of first appearance). Exits 1 on errors.
  client.py decisions SOCKET COUNT INTERVAL REQUEST_JSON
      COUNT sequential copies of one request, each on a new connection, INTERVAL seconds apart. One line per
      request, flushed at once: "<n> ok <record_id>" (the id of the evidence record the answer names) or
      "<n> error <what>"; then "summary answered=<a> errors=<e>". Exits 1 on errors.
  client.py flood SOCKET SECONDS REQUEST_JSON
      Copies of one request on one stream-mode connection for SECONDS seconds, sent as fast as the daemon answers
      them. Prints "answered=<n> seconds=<s> <rule_id>=<count>..."; exits 1 if the connection closes early.
  client.py fields F1,F2 < json-lines
      For each JSON object on stdin (e.g. `journalctl -o json`), prints the named fields separated by tabs
      ("-" when absent).
"""
import json
import socket
import sys
import time

HEALTH = {"action_type": "cavra.health"}


def exchange(path, request, timeout):
    """Sends one request on a new connection and returns the parsed one-line answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        conn.sendall(request if isinstance(request, bytes) else json.dumps(request).encode())
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise ConnectionError("the connection closed without an answer")
    return json.loads(data)


def render(value):
    if isinstance(value, list):
        # journalctl -o json writes non-UTF-8 field values as byte arrays
        if value and all(isinstance(b, int) for b in value):
            return bytes(value).decode("utf-8", "replace")
        return ",".join(render(v) for v in value)
    if value is None:
        return "-"
    return str(value)


def ask(argv):
    path, request = argv[0], argv[1].encode()
    timeout, fields = 10.0, None
    rest = argv[2:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--timeout":
            timeout = float(value)
        elif flag == "--fields":
            fields = value.split(",")
        else:
            sys.exit("client.py ask: unknown flag %s" % flag)
    try:
        answer = exchange(path, request, timeout)
    except Exception as error:  # noqa: BLE001 - any failure is reported the same way
        print("client.py: no answer from %s: %s: %s" % (path, type(error).__name__, error), file=sys.stderr)
        return 1
    if fields:
        print(" ".join(render(answer.get(f)) for f in fields))
    else:
        print(json.dumps(answer, separators=(",", ":")))
    return 0


def loop(argv):
    path, count, interval = argv[0], int(argv[1]), float(argv[2])
    pids, errors = [], 0
    for n in range(1, count + 1):
        try:
            answer = exchange(path, json.dumps(HEALTH).encode(), 15.0)
            if answer.get("status") != "ok" or not answer.get("pid"):
                raise ValueError("unexpected answer %s" % json.dumps(answer))
            pid = str(answer["pid"])
            if pid not in pids:
                pids.append(pid)
            print("%d ok %s" % (n, pid), flush=True)
        except Exception as error:  # noqa: BLE001
            errors += 1
            print("%d error %s: %s" % (n, type(error).__name__, error), flush=True)
        time.sleep(interval)
    print("summary answered=%d errors=%d pids=%s" % (count - errors, errors, ",".join(pids)), flush=True)
    return 1 if errors else 0


def decisions(argv):
    path, count, interval, request = argv[0], int(argv[1]), float(argv[2]), argv[3].encode()
    errors = 0
    for n in range(1, count + 1):
        try:
            answer = exchange(path, request, 15.0)
            refs = [r for r in answer.get("evidence_refs", []) if r.startswith("go-daemon-evidence://")]
            if len(refs) != 1:
                raise ValueError("no evidence record in %s" % json.dumps(answer))
            print("%d ok %s" % (n, refs[0][len("go-daemon-evidence://"):]), flush=True)
        except Exception as error:  # noqa: BLE001
            errors += 1
            print("%d error %s: %s" % (n, type(error).__name__, error), flush=True)
        time.sleep(interval)
    print("summary answered=%d errors=%d" % (count - errors, errors), flush=True)
    return 1 if errors else 0


def flood(argv):
    path, seconds, request = argv[0], float(argv[1]), argv[2].encode() + b"\n"
    rules = {}
    answered = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60.0)
        conn.connect(path)
        reader = conn.makefile("rb")
        conn.sendall(b'{"protocol":"cavra.ndjson.v1"}\n')
        reader.readline()
        started = time.monotonic()
        # In slices, so neither side's socket buffer fills while the other waits.
        while time.monotonic() - started < seconds:
            conn.sendall(request * 64)
            for _ in range(64):
                line = reader.readline()
                if not line:
                    print("client.py flood: the connection closed after %d answers" % answered, file=sys.stderr)
                    return 1
                rule = json.loads(line).get("rule_id", "-")
                rules[rule] = rules.get(rule, 0) + 1
                answered += 1
        elapsed = time.monotonic() - started
    counts = " ".join("%s=%d" % item for item in sorted(rules.items()))
    print("answered=%d seconds=%.1f %s" % (answered, elapsed, counts))
    return 0


def fields(argv):
    names = argv[0].split(",")
    for line in sys.stdin:
        line = line.strip()
        if line:
            entry = json.loads(line)
            print("\t".join(render(entry.get(name)) for name in names))
    return 0


if __name__ == "__main__":
    commands = {"ask": ask, "loop": loop, "decisions": decisions, "flood": flood, "fields": fields}
    if len(sys.argv) < 3 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
