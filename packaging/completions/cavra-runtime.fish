complete -c cavra-runtime -l completions -d 'Print the completion script for SHELL (bash, zsh, fish, elvish, powershell), generated from these flags' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c cavra-runtime -l lifecycle -d 'Manage a daemon by hand: start it in the background (with every --serve option), report its status, or stop it. For hosts without a service manager' -r -f -a "start\t''
status\t''
stop\t''"
complete -c cavra-runtime -l hook -d 'Answer an AI coding agent\'s pre-tool hook: read the agent\'s hook input on standard input, ask the daemon about the tool call, and answer in the agent\'s protocol; anything that goes wrong is a refusal (docs/agents.md)' -r -f -a "claude-code\t'Claude Code\'s PreToolUse hook'
cursor\t'Cursor\'s beforeShellExecution, beforeMCPExecution, beforeReadFile and preToolUse hooks'"
complete -c cavra-runtime -l json-field -d 'Print field NAME of the JSON object in --input (a string as its plain text, anything else as JSON): for scripts without a JSON tool. Exit 1 when the input is not a JSON object or has no such field' -r
complete -c cavra-runtime -l policy -d 'Compiled policy JSON, as `cavra policy compile` writes it. Default: the packs built into this binary' -r -F
complete -c cavra-runtime -l policy-dir -d 'Directory of `<id>/policy.yaml` packs, compiled at start with their `inherits`. Default: the built-in packs' -r -F
complete -c cavra-runtime -l default-pack -d 'Pack for requests that name none. Default: cavra-ai-agent-baseline, or the id of the --policy file' -r
complete -c cavra-runtime -l registry -d 'MCP trust registry JSON; when given, it decides every mcp_tool_call. Default: none (packs decide)' -r -F
complete -c cavra-runtime -l pin-pack -d 'Decide every request under this pack, whatever pack it names (see --on-other-pack). Default: the request chooses among the loaded packs' -r
complete -c cavra-runtime -l pin-pack-for -d 'Pin a pack for peers of a user or group: user:NAME=ID or group:NAME=ID (names or numeric ids; repeatable or comma-separated). The first that matches a peer wins, then --pin-pack. The one-shot mode applies them as for the user running it' -r
complete -c cavra-runtime -l on-other-pack -d 'A request naming a pack other than its pinned one: refuse it (policy.pack.not_permitted) or decide it under the pinned pack' -r -f -a "refuse\t'Blocked: `policy.pack.not_permitted`'
decide-pinned\t'Decided under the pinned pack; the answer names the pack asked for'"
complete -c cavra-runtime -l workspace-root -d 'Absolute workspace root for file targets of requests that carry no workspace_root (a request\'s own must lie inside it). Writes outside it need approval. Default: none' -r
complete -c cavra-runtime -l path-case -d 'Whether file targets that differ only in case name the same file. Default: insensitive on macOS, sensitive elsewhere' -r -f -a "sensitive\t'Case matters (Linux file systems): the default except on macOS'
insensitive\t'Case does not matter (macOS APFS and HFS+ as usually formatted): the default on macOS'"
complete -c cavra-runtime -l socket -d 'Unix socket to serve on or connect to. Default for --serve and --lifecycle: /run/cavra/cavra-runtime.sock for root (/var/run/cavra-runtime.sock on macOS), $XDG_RUNTIME_DIR/cavra/cavra-runtime.sock otherwise (.cavra/cavra-runtime.sock without it); --daemon asks that socket of yours if a daemon listens there, else the system socket' -r -F
complete -c cavra-runtime -l socket-mode -d 'File mode of a socket the daemon binds itself (octal). Activated sockets keep their unit\'s mode' -r
complete -c cavra-runtime -l listen-fd-name -d 'Which socket to use when systemd passes several: the unit\'s FileDescriptorName=' -r
complete -c cavra-runtime -l metrics-listen-fd-name -d 'The socket systemd passes for metrics (a TCP socket, its FileDescriptorName=): the daemon answers `GET /metrics` there in the Prometheus text format. Without it, metrics are available with --metrics' -r
complete -c cavra-runtime -l max-request-bytes -d 'Largest request accepted, in bytes; a larger one is answered daemon.request.too_large without being read. Each field has its own maximum besides (docs/protocol.md)' -r
complete -c cavra-runtime -l max-connections -d 'Connections served at once; past it a client is answered daemon.overloaded' -r
complete -c cavra-runtime -l max-connections-per-uid -d 'Connections one peer uid may have open at once; past it that uid is answered daemon.overloaded and others are still served' -r
complete -c cavra-runtime -l max-buffered-bytes -d 'Bytes of requests and answers in transit all connections together may hold (each has 8 KiB of each free); past it, requests wait for room or are answered daemon.overloaded. At least --max-request-bytes' -r
complete -c cavra-runtime -l request-timeout -d 'Time from connecting (or from a stream-mode request\'s first byte) to a complete request' -r
complete -c cavra-runtime -l idle-timeout -d 'Time a stream-mode connection may sit idle between requests' -r
complete -c cavra-runtime -l shutdown-grace -d 'Time requests in flight get to finish after SIGTERM' -r
complete -c cavra-runtime -l max-decisions-per-second-per-uid -d 'Decisions a second one peer uid may ask for, sustained; past it (and its burst) that uid is answered daemon.rate_limited and others are still served. 0: no limit' -r
complete -c cavra-runtime -l decision-burst-per-uid -d 'Decisions one peer uid may ask for at once above --max-decisions-per-second-per-uid' -r
complete -c cavra-runtime -l max-evidence-bytes-per-second-per-uid -d 'Bytes of evidence a second one peer uid\'s decisions may have recorded, sustained; past it (and its burst) that uid is answered daemon.rate_limited and nothing is recorded. 0: no limit' -r
complete -c cavra-runtime -l evidence-burst-bytes-per-uid -d 'Bytes of evidence one peer uid\'s decisions may have recorded at once above --max-evidence-bytes-per-second-per-uid' -r
complete -c cavra-runtime -l log-target -d 'Where logs go: auto is --log-file when given, else the journal when systemd connected stderr to it (JOURNAL_STREAM; Linux only), else stderr' -r -f -a "auto\t'`--log-file` when given, else the journal when `JOURNAL_STREAM` is set (Linux), else standard error'
journald\t''
stderr\t''"
complete -c cavra-runtime -l log-format -d 'Format of logs on stderr. RUST_LOG sets the level (default info)' -r -f -a "text\t''
json\t''"
complete -c cavra-runtime -l log-decisions -d 'Which decisions get a log line (a journal entry) of their own: all; non-allow (blocks and approvals, with the allowed ones counted in one summary line per interval); none. The evidence log keeps every decision anyway' -r -f -a "all\t'Every decision'
non-allow\t'Blocks and approvals; allowed decisions in one summary line per interval'
none\t'None: the evidence log is the record of decisions'"
complete -c cavra-runtime -l log-file -d 'Append the log (and everything else on stderr) to this file. When log rotation renames or removes it, the daemon opens a new one at the path before its next line, so newsyslog or logrotate need not signal it. With --lifecycle start: where the started daemon\'s output goes (default: the socket path with a .log extension, unless the journal is available)' -r -F
complete -c cavra-runtime -l evidence-log -d 'Hash-chained JSONL record of every decision; each is on disk before its answer is sent. Default: none. With --verify-evidence: repeat it for a log and its rotated files, or name a directory that holds them' -r -F
complete -c cavra-runtime -l evidence-sync -d 'batch: records that arrive together share one fdatasync before any is answered; always: one per record; none: no sync (tests only)' -r -f -a "always\t'One fdatasync per record'
batch\t'Group commit: one fdatasync for everything queued when the writer wakes'
none\t'Never sync; the OS flushes when it likes. For tests and throwaway logs'"
complete -c cavra-runtime -l evidence-signing-key-file -d 'File holding the HMAC-SHA256 key that signs (and verifies) evidence records. Default: $CREDENTIALS_DIRECTORY/evidence-signing-key when systemd passes it, else the key in $CAVRA_DAEMON_EVIDENCE_HMAC_KEY, else records are unsigned' -r -F
complete -c cavra-runtime -l evidence-ed25519-key-file -d 'File holding an Ed25519 private key (PKCS#8 PEM or DER, mode 0600: `openssl genpkey -algorithm ed25519`) that signs records instead of HMAC; verifiers then need only its public key. Default: $CREDENTIALS_DIRECTORY/evidence-ed25519-key when systemd passes it' -r -F
complete -c cavra-runtime -l evidence-signing-key-id -d 'Key id written into (and expected in) signatures. Default for an Ed25519 key: ed25519- and 16 hex digits of its public key\'s SHA-256' -r
complete -c cavra-runtime -l evidence-public-key -d 'An Ed25519 public key (SubjectPublicKeyInfo PEM or DER: `openssl pkey -pubout`) that verifies records signed with key id ID (default: the key\'s ed25519-... id); repeatable. --verify-evidence needs no secret with these; the daemon accepts a log tail signed by them (after a key change)' -r
complete -c cavra-runtime -l evidence-min-free -d 'Free space the evidence log\'s file system should keep: a percentage of its size (5%) or bytes (2G, 512M); below it the health answer says degraded, with the reason, and a warning is logged. 0 turns it off' -r
complete -c cavra-runtime -l journal -d 'With --verify-evidence: journal entries to cross-check the log against, as `journalctl -o json` writes them (a file), or a journal directory (read with `journalctl -D`); repeatable. Records the journal saw that the log lacks are reported' -r -F
complete -c cavra-runtime -l allow-uid -d 'Answer only these peer users (names or uids; repeatable or comma-separated). With no --allow-uid and no --allow-group, the socket\'s file mode and group decide who may connect' -r
complete -c cavra-runtime -l allow-group -d 'Answer peers in these groups (primary or supplementary; names or gids; repeatable or comma-separated)' -r
complete -c cavra-runtime -l runner-auth-key-file -d 'File holding the HMAC-SHA256 key for runner authentication (mode 0600 or stricter). Default: $CREDENTIALS_DIRECTORY/runner-auth-key, else the key in $CAVRA_RUNNER_AUTH_HMAC_KEY, else none' -r -F
complete -c cavra-runtime -l runner-auth-key-id -d 'Key id runners must present with HMAC signatures (and that --daemon presents). Default: any' -r
complete -c cavra-runtime -l runner-auth-window -d 'How far an HMAC credential\'s issue time may be from the daemon\'s clock; within it each credential is accepted once' -r
complete -c cavra-runtime -l runner-oidc-issuer -d 'OIDC issuer runner tokens must come from (with --runner-oidc-audience and a JWKS)' -r
complete -c cavra-runtime -l runner-oidc-audience -d 'Audience runner tokens must name' -r
complete -c cavra-runtime -l runner-oidc-jwks -d 'JWKS file with the issuer\'s signing keys (wins over --runner-oidc-jwks-url)' -r -F
complete -c cavra-runtime -l runner-oidc-jwks-url -d 'JWKS URL with the issuer\'s signing keys; a failed fetch is retried with back-off on later requests' -r
complete -c cavra-runtime -l runner-oidc-leeway -d 'Clock difference allowed with the OIDC issuer when checking a token\'s exp, nbf and iat' -r
complete -c cavra-runtime -l runner-auth-claims -d 'With --daemon: the runner identity (JSON) to authenticate as; signed with the runner key, or sent with the OIDC token when one is given' -r -F
complete -c cavra-runtime -l runner-auth-oidc-token-file -d 'With --daemon and --runner-auth-claims: file holding the runner\'s OIDC token (mode 0600 or stricter). Default: the token in $CAVRA_RUNNER_AUTH_OIDC_TOKEN, if set' -r -F
complete -c cavra-runtime -l pid -d 'PID file the daemon holds locked while it runs. Default: <socket>.pid' -r -F
complete -c cavra-runtime -l lifecycle-timeout -d 'How long start waits for the daemon to answer, status for its answer, and stop for it to exit before SIGKILL' -r
complete -c cavra-runtime -l user -d 'Run the started daemon as this user (root only); root\'s supplementary groups are dropped' -r
complete -c cavra-runtime -l group -d 'With --user: run as this group instead of the user\'s own' -r
complete -c cavra-runtime -l input -d 'Request to evaluate: a JSON file, or `-` for standard input' -r -F
complete -c cavra-runtime -l output -d 'With --metrics: write the metrics to this file instead of standard output, atomically (a temporary file in the same directory, renamed over it), readable by all: e.g. /var/lib/prometheus/node-exporter/cavra-runtime.prom' -r -F
complete -c cavra-runtime -l reload-timeout -d 'With --reload: how long to wait for the reload\'s outcome' -r
complete -c cavra-runtime -l client-timeout -d 'With --daemon and --hook: how long the whole exchange may take: connecting, sending and the answer. For --hook, everything from reading the agent\'s input to answering it; keep it below the agent\'s hook timeout' -r
complete -c cavra-runtime -l expect-server-uid -d 'With --daemon: the user (name or uid) the daemon must run as; anyone else answering on the socket is an error. Root is always accepted. Default: the service user `cavra` on /run/cavra/cavra-runtime.sock, else the owner of the socket\'s directory' -r
complete -c cavra-runtime -l hook-allow-tool -d 'Tools that go ahead without asking the daemon (and so without an evidence record): tools that neither read, write, run nor reach out. Every tool that is neither listed here nor mapped to a file, command or MCP request (WebFetch, WebSearch, tools the hook does not know) is asked about as itself, which the pack\'s default decides: approval. Repeatable or comma-separated; replaces the default list; an empty value lists none' -r
complete -c cavra-runtime -l hook-pack -d 'The policy pack every request names. Default: none, so the daemon\'s pins or default pack decide' -r
complete -c cavra-runtime -l evidence-signing-key -r
complete -c cavra-runtime -l runner-auth-key -r
complete -c cavra-runtime -l runner-auth-oidc-token -r
complete -c cavra-runtime -l serve -d 'Run the daemon: answer requests on the socket until SIGTERM or SIGINT; SIGHUP reloads the policy'
complete -c cavra-runtime -l daemon -d 'Send one request (from --input) to a running daemon and print its decision'
complete -c cavra-runtime -l verify-evidence -d 'Verify the evidence log given by --evidence-log and print a report; exit 1 when it does not verify'
complete -c cavra-runtime -l check -d 'Check the whole --serve configuration (flags, policies, registry, pins, keys, runner authentication) without serving; print what would be served, or exit 1 with what is wrong'
complete -c cavra-runtime -l reload -d 'Make the running daemon reload its policy (SIGHUP to the process serving --socket) and wait for the outcome: exit 0 once the new policy is in force, 1 when it did not load (the previous one stays in force). The packaged units\' ExecReload='
complete -c cavra-runtime -l metrics -d 'Ask a running daemon for its metrics and print them in the Prometheus text format (or write them to --output, atomically, for node_exporter\'s textfile collector)'
complete -c cavra-runtime -l evidence-recover -d 'Start even if the existing log does not verify: it is renamed to <log>.unverified-<time>, and a new file starts with a link to its last record'
complete -c cavra-runtime -l log-evidence-records -d 'Put each evidence record, byte for byte, in its decision\'s log event (journal field EVIDENCE_RECORD, beside EVIDENCE_SEQUENCE and EVIDENCE_RECORD_HASH), and log each link record the same way: the journal and its shippers (systemd-journal-upload) then carry the chain off the host, where --verify-evidence --journal rebuilds and verifies it per machine'
complete -c cavra-runtime -l runner-auth-accept-v1 -d 'Also accept the reference\'s identity-only (v1) HMAC signatures, which can be replayed: only while runners migrate to v2. Logged as a warning at start'
complete -c cavra-runtime -l exit-code -d 'With --daemon or one-shot: exit 0 for allow, 3 for block (and a refusal, or a decision this version does not know), 4 for require_approval. Errors exit 1 and usage errors 2, so neither reads as a decision'
complete -c cavra-runtime -l hook-no-ask -d 'Never answer "ask": require_approval is refused with its reason, as in the permission modes where the agent does not enforce an ask (auto, dontAsk, bypassPermissions). For sessions nobody answers (`claude -p`, CI)'
complete -c cavra-runtime -l hook-in-process -d 'Decide in this process with the policy flags (--policy, --policy-dir, --pin-pack, ...) instead of asking the daemon. Nothing is recorded as evidence'
complete -c cavra-runtime -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cavra-runtime -s V -l version -d 'Print version'
