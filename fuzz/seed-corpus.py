#!/usr/bin/env python3
"""Rebuilds the seed corpora in fuzz/corpus/<target>/ from the project's own fixtures.

Standard library only (Python 3.11+ for tomllib). Run from anywhere: `python3 fuzz/seed-corpus.py`. Each corpus
directory is emptied first, so the output depends on the fixtures alone; the fuzzer's own finds go to fuzz/work/
(ignored by git), never here.

Sources: testdata/conformance/*.toml (requests), examples/typed-release-governance/*.json, testdata/evidence/*.jsonl
(their request objects and the streams themselves), testdata/policies/*.json, src/policy/packs/*.toml (as compiled
JSON and as YAML packs).
"""

import hashlib
import json
import pathlib
import shutil
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
HANDSHAKE = b'{"protocol":"cavra.ndjson.v1"}\n'
HEALTH = {"action_type": "cavra.health"}
# Must match PACK_HEADER in fuzz/src/lib.rs: a line starting with it opens the next pack of a policy_yaml input.
PACK_HEADER = "#> "


def compact(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def pretty(value) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode()


def conformance_requests():
    """Every request of the conformance suites, grouped by suite."""
    suites = {}
    for path in sorted((ROOT / "testdata" / "conformance").glob("*.toml")):
        cases = tomllib.loads(path.read_text())["case"]
        suites[path.stem] = [case["request"] for case in cases if "request" in case]
    return suites


def example_requests():
    return [json.loads(p.read_text()) for p in sorted((ROOT / "examples" / "typed-release-governance").glob("*.json"))]


def evidence_streams():
    return {p.name: p.read_bytes() for p in sorted((ROOT / "testdata" / "evidence").glob("*.jsonl"))}


def evidence_requests():
    """The request objects stored in the signed fixture stream (with runner_auth, typed release governance, ...)."""
    stream = (ROOT / "testdata" / "evidence" / "signed-chain.jsonl").read_text()
    return [json.loads(line)["request"] for line in stream.splitlines() if line.strip()]


def packs():
    return {p.stem: tomllib.loads(p.read_text()) for p in sorted((ROOT / "src" / "policy" / "packs").glob("*.toml"))}


def yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(str(value), ensure_ascii=False)


def to_yaml(value, indent=0) -> str:
    """Block-style YAML for the dicts, lists and scalars a TOML pack holds."""
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict) and item:
                out.append(f"{pad}{key}:\n{to_yaml(item, indent + 2)}")
            elif isinstance(item, list) and item:
                out.append(f"{pad}{key}:\n{to_yaml(item, indent + 2)}")
            elif isinstance(item, (dict, list)):
                out.append(f"{pad}{key}: {'{}' if isinstance(item, dict) else '[]'}\n")
            else:
                out.append(f"{pad}{key}: {yaml_scalar(item)}\n")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = to_yaml(item, indent + 2)
                out.append(f"{pad}- {nested.lstrip()}")
            else:
                out.append(f"{pad}- {yaml_scalar(item)}\n")
    return "".join(out)


def ancestors(all_packs, pack_id, seen=None):
    """pack_id and every pack it inherits from, parents first."""
    seen = [] if seen is None else seen
    inherits = all_packs[pack_id].get("metadata", {}).get("inherits", [])
    for parent in [inherits] if isinstance(inherits, str) else inherits:
        if parent in all_packs and parent not in seen:
            ancestors(all_packs, parent, seen)
    if pack_id not in seen:
        seen.append(pack_id)
    return seen


class Corpus:
    def __init__(self, target):
        self.dir = CORPUS / target
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.count = 0

    def add(self, name, data: bytes):
        # Content-addressed suffix: identical seeds from two fixtures collapse into one file.
        digest = hashlib.sha1(data).hexdigest()[:10]
        path = self.dir / f"{name}-{digest}"
        if not path.exists() and not any(self.dir.glob(f"*-{digest}")):
            path.write_bytes(data)
            self.count += 1


def main():
    suites = conformance_requests()
    examples = example_requests()
    stored = evidence_requests()
    all_requests = [r for suite in suites.values() for r in suite] + examples + stored

    decode = Corpus("request_decode")
    for i, request in enumerate(all_requests):
        decode.add(f"request-{i:03}", compact(request))
    decode.add("health", compact(HEALTH))
    decode.add("handshake", HANDSHAKE.rstrip())
    decode.add("array-form", b"[]")

    compat = Corpus("server_compat")
    for i, request in enumerate(all_requests):
        # Pretty-printed as the example files are: the first value spans lines, so the bracket scanner must find it.
        compat.add(f"request-{i:03}", pretty(request) if i % 2 else compact(request))
    for name, suite in suites.items():
        compat.add(f"handshake-{name}", HANDSHAKE + b"".join(compact(r) + b"\n" for r in suite))
    compat.add("health", compact(HEALTH) + b"\n")
    compat.add("not-a-container", b"release please\n")
    compat.add("unterminated", b'{"action_type":"read_file","target":"a}')
    compat.add("two-values", compact(HEALTH) + compact(examples[0]))
    # Over the harness's 2 KiB request cap (MAX_REQUEST_BYTES in fuzz/src/lib.rs): answered as too large.
    compat.add("too-large", compact({"action_type": "read_file", "target": "x" * 2100}))

    stream = Corpus("server_stream")
    for name, suite in suites.items():
        stream.add(f"suite-{name}", b"".join(compact(r) + b"\n" for r in suite))
    stream.add("examples", b"".join(compact(r) + b"\n" for r in examples))
    stream.add("stored", b"".join(compact(r) + b"\r\n" for r in stored))
    stream.add("mixed", compact(HEALTH) + b"\n\n  \nnot json\n" + HANDSHAKE + compact(all_requests[0]))
    stream.add("pretty-is-many-lines", pretty(examples[0]))
    long_line = compact({"action_type": "read_file", "target": "x" * 2100})
    stream.add("too-large-then-more", long_line + b"\n" + compact(all_requests[1]) + b"\n" + long_line)

    all_packs = packs()
    compiled = Corpus("policy_compiled")
    compiled.add("compiled-fixture", (ROOT / "testdata" / "policies" / "compiled-fixture.json").read_bytes())
    for pack_id, pack in all_packs.items():
        compiled.add(pack_id, pretty(pack))

    yaml = Corpus("policy_yaml")
    for pack_id in all_packs:
        sections = [f"{PACK_HEADER}{pid}\n{to_yaml(all_packs[pid])}" for pid in reversed(ancestors(all_packs, pack_id))]
        # The first section is the default pack: the pack itself, then its ancestors.
        yaml.add(pack_id, "".join(sections).encode())

    evidence = Corpus("evidence_verify")
    for name, data in evidence_streams().items():
        evidence.add(name, data)
    signed = evidence_streams()["signed-chain.jsonl"]
    lines = signed.splitlines(keepends=True)
    evidence.add("first-record", lines[0])
    evidence.add("first-two-records", b"".join(lines[:2]))
    evidence.add("torn-tail", signed[:-40])
    evidence.add("blank-lines", b"\n  \r\n" + lines[0] + b"\n")

    for corpus in (decode, compat, stream, compiled, yaml, evidence):
        print(f"{corpus.dir.relative_to(ROOT)}: {corpus.count} seeds")


if __name__ == "__main__":
    main()
