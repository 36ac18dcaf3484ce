#!/bin/sh
# Gate a CI job on cavra-runtime: start a daemon of its own, ask it about one release-governance request as this
# runner, verify the evidence it recorded, and fail the job unless the decision is the expected one.
#
# POSIX sh and the cavra-runtime binary, which also reads every JSON document here (--json-field); curl only to fetch
# an OIDC token from GitHub or Azure Pipelines. Run this script from trusted code (the default branch, a pinned
# copy, the installed package), never from the copy in a pull request's checkout while secrets are in the
# environment: the templates beside it show how.
#
# Inputs (environment):
#   CAVRA_RELEASE_GOVERNANCE_REQUEST    request JSON to evaluate (required); only read, as data
#   CAVRA_RUNTIME_PATH                  the binary (default: cavra-runtime on PATH)
#   CAVRA_EXPECTED_DECISION             allow | require_approval | block (default: allow)
#   CAVRA_EXPECTED_RULE_ID              rule the decision must come from (default: any)
#   CAVRA_ALLOW_BLOCKING_DECISION       true lets an expected block pass (default: false)
#   CAVRA_RELEASE_GOVERNANCE_EVIDENCE_DIR  where the evidence is copied for upload; must not exist yet or be empty
#                                       (default: .cavra/go-daemon)
#   CAVRA_ALLOW_UNAUTHENTICATED_RUNNER  true: without a runner credential, warn and mark the evidence
#                                       unauthenticated instead of failing (default: false)
#   CAVRA_POLICY / CAVRA_POLICY_DIR     read by the daemon itself (default: its built-in packs)
# Runner authentication (the daemon refuses requests that do not prove who sent them once either is configured):
#   CAVRA_RUNNER_AUTH_HMAC_KEY or CAVRA_RUNNER_AUTH_KEY_FILE, CAVRA_RUNNER_AUTH_KEY_ID     HMAC-signed runner claims
#   CAVRA_RUNNER_OIDC_ISSUER, CAVRA_RUNNER_OIDC_AUDIENCE (default: cavra-release-governance),
#   CAVRA_RUNNER_OIDC_JWKS or CAVRA_RUNNER_OIDC_JWKS_URL                                  OIDC verification
#   CAVRA_RUNNER_AUTH_OIDC_TOKEN_FILE, CAVRA_RUNNER_AUTH_OIDC_TOKEN, or the variable named by
#   CAVRA_RUNNER_AUTH_OIDC_TOKEN_ENV    the runner's OIDC token; else, with CAVRA_RUNNER_OIDC_AUTO=true (default) and
#                                       no HMAC key or an explicit issuer/audience, fetched from the CI provider
#   CAVRA_RUNNER_PROVIDER, CAVRA_RUNNER_{REPOSITORY,WORKFLOW,RUN_ID,RUN_ATTEMPT,REF,SHA,ACTOR,JOB,NAME}
#                                       override the runner claims read from the CI provider's variables
# Evidence signing: CAVRA_DAEMON_EVIDENCE_HMAC_KEY or CAVRA_EVIDENCE_SIGNING_KEY_FILE, CAVRA_DAEMON_EVIDENCE_KEY_ID;
#   with a key every record must be signed by it.
#
# The gate records only evidence it wrote: its daemon, socket and evidence log live in a new private directory
# (mode 0700, under $RUNNER_TEMP, $AGENT_TEMPDIRECTORY or $TMPDIR, outside the checkout), so the log holds only the
# decision asked for; it must verify, and the evidence directory it is then copied to must be new or empty, so
# nothing planted in the checkout ships with it. Secrets never reach a command line: the binary reads keys from the
# environment, and a fetched OIDC token goes to a 0600 file in the private directory, which is never copied.

set -eu
umask 077

me=cavra-release-governance
say() { printf '%s: %s\n' "$me" "$*"; }
warn() { printf '%s: %s\n' "$me" "$*" >&2; }
die() {
    warn "$*"
    exit 1
}

# Azure Pipelines leaves an undefined `$(NAME)` macro as literal text: such a value is no secret at all.
for name in CAVRA_RUNNER_AUTH_HMAC_KEY CAVRA_DAEMON_EVIDENCE_HMAC_KEY CAVRA_RUNNER_AUTH_OIDC_TOKEN; do
    eval "value=\${$name:-}"
    case $value in
    '') unset "$name" ;;
    "\$("*")")
        warn "$name is the unexpanded Azure macro $value; treating it as unset"
        unset "$name"
        ;;
    esac
done

# --- 1. inputs ---------------------------------------------------------------------------------------------------
runtime=${CAVRA_RUNTIME_PATH:-cavra-runtime}
request=${CAVRA_RELEASE_GOVERNANCE_REQUEST:-}
[ -n "$request" ] || die "CAVRA_RELEASE_GOVERNANCE_REQUEST is required"
[ -r "$request" ] || die "cannot read the request $request"
command -v "$runtime" >/dev/null 2>&1 || die "cavra-runtime not found: $runtime (set CAVRA_RUNTIME_PATH)"

# A path handed to the binary or to a tool as an argument: never one that reads as an option (`-x`) or as standard
# input (`-`).
argument() {
    case $1 in
    -*) printf './%s' "$1" ;;
    *) printf '%s' "$1" ;;
    esac
}
request=$(argument "$request")

expected_decision=${CAVRA_EXPECTED_DECISION:-allow}
case $expected_decision in
allow | require_approval | block) ;;
*) die "CAVRA_EXPECTED_DECISION must be allow, require_approval or block, not '$expected_decision'" ;;
esac
expected_rule_id=${CAVRA_EXPECTED_RULE_ID:-}
truthy() {
    case $1 in
    true | TRUE | True | 1 | yes) return 0 ;;
    *) return 1 ;;
    esac
}
allow_blocking=false
if truthy "${CAVRA_ALLOW_BLOCKING_DECISION:-false}"; then allow_blocking=true; fi
allow_unauthenticated=false
if truthy "${CAVRA_ALLOW_UNAUTHENTICATED_RUNNER:-false}"; then allow_unauthenticated=true; fi

# The evidence directory: new, or empty. Whatever is in it afterwards is this run's.
dir=$(argument "${CAVRA_RELEASE_GOVERNANCE_EVIDENCE_DIR:-.cavra/go-daemon}")
[ ! -L "$dir" ] || die "the evidence directory $dir is a symbolic link; the gate writes only a directory of its own"
if [ -e "$dir" ]; then
    [ -d "$dir" ] || die "the evidence directory $dir exists and is not a directory"
    [ -z "$(ls -A -- "$dir")" ] ||
        die "the evidence directory $dir is not empty: the gate ships only evidence it wrote; remove it (a checkout must not bring one) or name a new directory in CAVRA_RELEASE_GOVERNANCE_EVIDENCE_DIR"
fi

runner_key_id=${CAVRA_RUNNER_AUTH_KEY_ID:-}
evidence_key_id=${CAVRA_DAEMON_EVIDENCE_KEY_ID:-}
issuer=${CAVRA_RUNNER_OIDC_ISSUER:-}
audience=${CAVRA_RUNNER_OIDC_AUDIENCE:-}
jwks=${CAVRA_RUNNER_OIDC_JWKS:-}
jwks_url=${CAVRA_RUNNER_OIDC_JWKS_URL:-}
token_file=${CAVRA_RUNNER_AUTH_OIDC_TOKEN_FILE:-}
oidc_auto=${CAVRA_RUNNER_OIDC_AUTO:-true}

# The binary reads these variables too; this script passes what it decided explicitly, so nothing is read twice.
unset CAVRA_RUNTIME_SOCKET CAVRA_EVIDENCE_LOG CAVRA_RUNNER_AUTH_CLAIMS CAVRA_RUNNER_AUTH_OIDC_TOKEN_FILE \
    CAVRA_RUNNER_OIDC_ISSUER CAVRA_RUNNER_OIDC_AUDIENCE CAVRA_RUNNER_OIDC_JWKS CAVRA_RUNNER_OIDC_JWKS_URL \
    CAVRA_LOG_FILE

has_hmac=false
if [ -n "${CAVRA_RUNNER_AUTH_HMAC_KEY:-}" ] || [ -n "${CAVRA_RUNNER_AUTH_KEY_FILE:-}" ]; then
    has_hmac=true
fi
has_evidence_key=false
if [ -n "${CAVRA_DAEMON_EVIDENCE_HMAC_KEY:-}" ] || [ -n "${CAVRA_EVIDENCE_SIGNING_KEY_FILE:-}" ]; then
    has_evidence_key=true
fi

# Everything the daemon writes lives here until it is copied out.
private=$(mktemp -d "${RUNNER_TEMP:-${AGENT_TEMPDIRECTORY:-${TMPDIR:-/tmp}}}/cavra-gate.XXXXXX")
socket=$private/cavra-runtime.sock
evidence_log=$private/release-governance-evidence.jsonl
response=$private/release-governance-response.json
claims=$private/runner-auth-claims.json
daemon_log=$private/cavra-runtime.log
verification=$private/release-governance-evidence-verification.json
authentication=$private/runner-authentication.json
daemon_started=false

# Where a file of the private directory is kept.
kept() {
    printf '%s/%s' "$dir" "$(basename "$1")"
}

# Copies what this run wrote (never the token file) to the evidence directory.
keep_evidence() {
    mkdir -p -- "$dir" || return 0
    for file in "$evidence_log" "$response" "$claims" "$daemon_log" "$verification" "$authentication"; do
        [ ! -f "$file" ] || cp -- "$file" "$dir/"
    done
}

cleanup() {
    status=$?
    trap - EXIT
    if [ "$daemon_started" = true ]; then
        "$runtime" --lifecycle stop --socket "$socket" >/dev/null || warn "could not stop the daemon on $socket"
    fi
    keep_evidence || warn "could not copy the evidence to $dir"
    rm -rf -- "$private"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 2. runner claims --------------------------------------------------------------------------------------------
# The first non-empty variable of those named.
first() {
    for name in "$@"; do
        eval "value=\${$name:-}"
        if [ -n "$value" ]; then
            printf '%s' "$value"
            return
        fi
    done
}

# A JSON string literal: backslash, quote, tab and newline escaped; other control characters dropped.
tab=$(printf '\t')
json_string() {
    printf '"'
    printf '%s' "$1" | tr -d '\001-\010\013-\037' |
        sed -e ':a' -e '$!N' -e '$!ba' -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e "s/$tab/\\\\t/g" -e 's/\n/\\n/g'
    printf '"'
}

if [ -n "${CAVRA_RUNNER_PROVIDER:-}" ]; then
    provider=$CAVRA_RUNNER_PROVIDER
elif [ -n "${GITHUB_ACTIONS:-}" ]; then
    provider=github-actions
elif [ -n "${GITLAB_CI:-}" ]; then
    provider=gitlab-ci
elif [ -n "${TF_BUILD:-}" ]; then
    provider=azure-pipelines
else
    provider=local
fi
repository=$(first CAVRA_RUNNER_REPOSITORY GITHUB_REPOSITORY CI_PROJECT_PATH BUILD_REPOSITORY_NAME)
workflow=$(first CAVRA_RUNNER_WORKFLOW GITHUB_WORKFLOW CI_PIPELINE_SOURCE BUILD_DEFINITIONNAME)

# --- 3. the runner's OIDC token ----------------------------------------------------------------------------------
# Field "$1" of the JSON object on standard input, read by the binary's JSON parser.
json_value() {
    "$runtime" --json-field "$1" --input -
}

# Writes the token read on stdin to the private token file (it may run in a pipeline's subshell, so the caller sets
# token_file); fails when the token is empty.
oidc_file=$private/runner-oidc.jwt
save_token() {
    tr -d ' \r\n' >"$oidc_file"
    [ -s "$oidc_file" ]
}

# Requests URL $1 with the bearer token $2 and any further curl options, keeping the token off curl's command line.
fetch() {
    command -v curl >/dev/null 2>&1 || {
        warn "curl is needed to fetch an OIDC token from $provider"
        return 1
    }
    url=$1 bearer=$2
    shift 2
    printf 'header = "Authorization: Bearer %s"\n' "$bearer" |
        curl --silent --show-error --fail --max-time 30 --config - "$@" "$url"
}

explicit_oidc=false
if [ -n "$issuer" ] || [ -n "$audience" ]; then
    explicit_oidc=true
fi
audience=${audience:-cavra-release-governance}
has_token=false
if [ -n "$token_file" ] || [ -n "${CAVRA_RUNNER_AUTH_OIDC_TOKEN:-}" ]; then
    has_token=true
elif [ -n "${CAVRA_RUNNER_AUTH_OIDC_TOKEN_ENV:-}" ]; then
    case $CAVRA_RUNNER_AUTH_OIDC_TOKEN_ENV in
    [0-9]* | *[!A-Za-z0-9_]*) die "CAVRA_RUNNER_AUTH_OIDC_TOKEN_ENV must name a variable" ;;
    esac
    value=$(first "$CAVRA_RUNNER_AUTH_OIDC_TOKEN_ENV")
    if [ -n "$value" ] && printf '%s' "$value" | save_token; then
        token_file=$oidc_file has_token=true
    fi
fi
if [ "$has_token" = false ] && [ "$oidc_auto" = true ] && { [ "$has_hmac" = false ] || [ "$explicit_oidc" = true ]; }; then
    case $provider in
    github-actions)
        if [ -n "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ] && [ -n "${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-}" ]; then
            case $ACTIONS_ID_TOKEN_REQUEST_URL in *\?*) separator='&' ;; *) separator='?' ;; esac
            if fetch "$ACTIONS_ID_TOKEN_REQUEST_URL${separator}audience=$audience" "$ACTIONS_ID_TOKEN_REQUEST_TOKEN" |
                json_value value | save_token; then
                token_file=$oidc_file has_token=true
            else
                warn "could not fetch a GitHub Actions OIDC token"
            fi
        fi
        ;;
    gitlab-ci)
        value=$(first CAVRA_GITLAB_OIDC_TOKEN GITLAB_OIDC_TOKEN CI_JOB_JWT_V2)
        if [ -n "$value" ] && printf '%s' "$value" | save_token; then
            token_file=$oidc_file has_token=true
        fi
        ;;
    azure-pipelines)
        if [ -n "${CAVRA_AZURE_OIDC_TOKEN:-}" ]; then
            if printf '%s' "$CAVRA_AZURE_OIDC_TOKEN" | save_token; then token_file=$oidc_file has_token=true; fi
        elif [ -n "${SYSTEM_OIDCREQUESTURI:-}" ]; then
            bearer=$(first CAVRA_AZURE_OIDC_REQUEST_TOKEN SYSTEM_ACCESSTOKEN)
            url="$SYSTEM_OIDCREQUESTURI?api-version=7.1${CAVRA_AZURE_SERVICE_CONNECTION_ID:+&serviceConnectionId=$CAVRA_AZURE_SERVICE_CONNECTION_ID}"
            if [ -n "$bearer" ] && answer=$(fetch "$url" "$bearer" --header 'Content-Type: application/json' --data ''); then
                for field in oidcToken idToken value; do
                    if printf '%s\n' "$answer" | json_value "$field" | save_token; then
                        token_file=$oidc_file has_token=true
                        break
                    fi
                done
            fi
            [ "$has_token" = true ] || warn "could not fetch an Azure Pipelines OIDC token"
        fi
        ;;
    esac
fi

# --- 4. what the daemon verifies ---------------------------------------------------------------------------------
if [ "$has_token" = true ] && [ -z "$issuer" ]; then
    case $provider in
    github-actions) issuer=https://token.actions.githubusercontent.com ;;
    gitlab-ci) issuer=${CI_SERVER_URL:-https://gitlab.com} ;;
    *) die "an OIDC token is set for provider $provider: set CAVRA_RUNNER_OIDC_ISSUER and a JWKS to verify it" ;;
    esac
fi
if [ -n "$issuer" ] && [ -z "$jwks" ] && [ -z "$jwks_url" ]; then
    case $issuer in
    https://token.actions.githubusercontent.com) jwks_url=$issuer/.well-known/jwks ;;
    "${CI_SERVER_URL:-https://gitlab.com}") jwks_url=$issuer/oauth/discovery/keys ;;
    *) die "CAVRA_RUNNER_OIDC_JWKS or CAVRA_RUNNER_OIDC_JWKS_URL is required with issuer $issuer" ;;
    esac
fi
if [ -z "$issuer" ] && [ "$explicit_oidc" = true ]; then
    warn "no OIDC issuer and no OIDC token: runner OIDC is not configured"
fi

# Without a credential the daemon cannot tell this runner from anyone: fail, unless told to go on unauthenticated.
if [ "$has_hmac" = true ] || [ "$has_token" = true ]; then
    if [ "$has_token" = true ]; then method=oidc; else method=hmac; fi
    printf '{"authenticated": true, "method": "%s", "provider": %s}\n' "$method" "$(json_string "$provider")" \
        >"$authentication"
else
    why="no runner credential: neither CAVRA_RUNNER_AUTH_HMAC_KEY (or _KEY_FILE) nor an OIDC token from $provider (a pull request from a fork gets neither)"
    [ "$allow_unauthenticated" = true ] ||
        die "$why; set CAVRA_ALLOW_UNAUTHENTICATED_RUNNER=true to run unauthenticated and have the evidence say so"
    printf '{"authenticated": false, "method": "none", "provider": %s, "reason": %s}\n' \
        "$(json_string "$provider")" "$(json_string "$why")" >"$authentication"
    message="UNAUTHENTICATED RUNNER: $why. The decision and its evidence do not prove which runner asked (runner-authentication.json in the evidence says so)."
    warn "WARNING: $message"
    case $provider in
    github-actions) printf '::warning title=cavra-runtime::%s\n' "$message" ;;
    azure-pipelines) printf '##vso[task.logissue type=warning]%s\n' "$message" ;;
    esac
fi

# The claims file: what the request says about this runner. An OIDC token must confirm every field it states, and
# GitHub's and GitLab's tokens name neither the job nor the runner, so those two are left out then; HMAC-signed
# claims carry them all.
{
    printf '{\n'
    printf '  "actor": %s,\n' "$(json_string "$(first CAVRA_RUNNER_ACTOR GITHUB_ACTOR GITLAB_USER_LOGIN BUILD_REQUESTEDFOR)")"
    if [ "$has_token" = false ]; then
        printf '  "job": %s,\n' "$(json_string "$(first CAVRA_RUNNER_JOB GITHUB_JOB CI_JOB_NAME SYSTEM_JOBDISPLAYNAME)")"
    fi
    printf '  "provider": %s,\n' "$(json_string "$provider")"
    printf '  "ref": %s,\n' "$(json_string "$(first CAVRA_RUNNER_REF GITHUB_REF CI_COMMIT_REF_NAME BUILD_SOURCEBRANCH)")"
    printf '  "repository": %s,\n' "$(json_string "${repository:-local}")"
    printf '  "run_attempt": %s,\n' "$(json_string "$(first CAVRA_RUNNER_RUN_ATTEMPT GITHUB_RUN_ATTEMPT CI_JOB_ID SYSTEM_JOBATTEMPT)")"
    printf '  "run_id": %s,\n' "$(json_string "$(first CAVRA_RUNNER_RUN_ID GITHUB_RUN_ID CI_PIPELINE_ID BUILD_BUILDID)")"
    if [ "$has_token" = false ]; then
        printf '  "runner_name": %s,\n' "$(json_string "$(first CAVRA_RUNNER_NAME RUNNER_NAME CI_RUNNER_DESCRIPTION AGENT_NAME)")"
    fi
    printf '  "sha": %s,\n' "$(json_string "$(first CAVRA_RUNNER_SHA GITHUB_SHA CI_COMMIT_SHA BUILD_SOURCEVERSION)")"
    printf '  "workflow": %s\n' "$(json_string "${workflow:-local}")"
    printf '}\n'
} >"$claims"

# --- 5. the daemon -----------------------------------------------------------------------------------------------
set -- --lifecycle start --socket "$socket" --evidence-log "$evidence_log" --log-file "$daemon_log"
[ -z "$evidence_key_id" ] || set -- "$@" --evidence-signing-key-id "$evidence_key_id"
[ -z "$runner_key_id" ] || set -- "$@" --runner-auth-key-id "$runner_key_id"
if [ -n "$issuer" ]; then
    set -- "$@" --runner-oidc-issuer "$issuer" --runner-oidc-audience "$audience"
    if [ -n "$jwks" ]; then set -- "$@" --runner-oidc-jwks "$jwks"; else set -- "$@" --runner-oidc-jwks-url "$jwks_url"; fi
fi
daemon_started=true
status_json=$("$runtime" "$@") || die "cavra-runtime did not start; its log is $(kept "$daemon_log")"
pid=$(printf '%s\n' "$status_json" | json_value pid) || pid=unknown
say "cavra-runtime daemon started on $socket (pid ${pid:-unknown})"

# --- 6. the request ----------------------------------------------------------------------------------------------
set -- --daemon --exit-code --socket "$socket" --input "$request"
if [ "$has_hmac" = true ] || [ "$has_token" = true ]; then
    set -- "$@" --runner-auth-claims "$claims"
    [ -z "$token_file" ] || set -- "$@" --runner-auth-oidc-token-file "$token_file"
    [ -z "$runner_key_id" ] || set -- "$@" --runner-auth-key-id "$runner_key_id"
    if [ "$has_token" = true ]; then auth="OIDC token from $provider"; else auth="HMAC-signed claims"; fi
    say "authenticating as $provider runner of ${repository:-local} with $auth"
fi
code=0
"$runtime" "$@" >"$response" || code=$?
# --exit-code's statuses; any other (1 an error, 2 a usage error) is no decision.
case $code in
0) decision=allow ;;
3) decision=block ;;
4) decision=require_approval ;;
*) die "cavra-runtime --daemon failed (exit $code); the daemon's log is $(kept "$daemon_log")" ;;
esac
rule_id=$(json_value rule_id <"$response") || die "the answer in $(kept "$response") has no rule_id"
reason=$(json_value reason <"$response") || reason=

# --- 7. the evidence ---------------------------------------------------------------------------------------------
"$runtime" --lifecycle stop --socket "$socket" >/dev/null || warn "could not stop the daemon on $socket"
daemon_started=false
set -- --verify-evidence --evidence-log "$evidence_log"
[ -z "$evidence_key_id" ] || set -- "$@" --evidence-signing-key-id "$evidence_key_id"
if ! "$runtime" "$@" >"$verification"; then
    cat "$verification" >&2
    die "the evidence log does not verify (report: $(kept "$verification"))"
fi
if [ "$has_evidence_key" = true ]; then
    say "evidence log verified, every record signed: $(kept "$verification")"
else
    say "evidence log verified (unsigned: no evidence key): $(kept "$verification")"
fi

# --- 8. the gate -------------------------------------------------------------------------------------------------
say "decision $decision ($rule_id): $reason"
[ "$decision" = "$expected_decision" ] ||
    die "unexpected CAVRA decision: $decision != $expected_decision ($rule_id: $reason)"
[ -z "$expected_rule_id" ] || [ "$rule_id" = "$expected_rule_id" ] ||
    die "unexpected CAVRA rule_id: $rule_id != $expected_rule_id ($reason)"
if [ "$decision" = block ]; then
    [ "$allow_blocking" = true ] || die "CAVRA blocked the release governance request ($rule_id): ${reason:-no reason given}"
    say "block allowed by CAVRA_ALLOW_BLOCKING_DECISION"
fi
