# shellcheck shell=sh
# The real local stack: moto (DynamoDB), oidc-provider-mock (Google stand-in), SMS sink, Ory
# Kratos, Ory Hydra and, optionally, the functions (cargo lambda watch), the login site and the
# demo client. Source it from the repository (after scripts/lib/install.sh), then:
#
#   . scripts/lib/install.sh && install_all      # or only what you need
#   . scripts/lib/stack.sh
#   stack_install_traps                          # stack_stop on EXIT/INT/TERM
#   stack_start                                  # returns once everything answers
#   . .stack/env                                 # URLs, ports, BRIDGE_* for the functions
#                                                  (stack_start itself leaves the caller's env alone)
#   ...
#   stack_stop                                   # kills every process group it started
#   stack_smoke                                  # (optional) curl checks of the Ory side
#
# Knobs (environment, read by stack_start):
#   STACK_FREE_PORTS=1        pick free ports instead of the defaults of docs/design.md
#   STACK_WITH_APPS=0         do not start functions, login site and demo client
#   STACK_WITH_FUNCTIONS / STACK_WITH_LOGIN_SITE / STACK_WITH_DEMO_CLIENT = 0|1  (default: STACK_WITH_APPS)
#   STACK_FUNCTIONS_RELOAD=0  cargo lambda watch --ignore-changes (tests: edits do not restart functions)
#   STACK_REQUIRE_APPS=1      an app that does not build fails stack_start (default: warn, skip it)
#   STACK_LOGIN_CONSENT_TTL_SECONDS (1800)  Hydra ttl.login_consent_request, also exported as
#                             BRIDGE_HYDRA_LOGIN_CONSENT_TTL_SECONDS
#   STACK_DEVICE_CODE_TTL_SECONDS (900)  Hydra ttl.device_user_code (Hydra v26+)
#   STACK_REPLAY_TABLE (bridge-replay)  DynamoDB table name
#   STACK_POLICY_HOOK (local) local: the bridge asks the reference policy hook (examples/policy-hook)
#                             served by the functions' watcher at $FUNCTIONS_URL/policy-hook;
#                             down: a closed port (127.0.0.1:1), for the fail-closed scenario
#   STACK_HOOK_DENY_EMAIL_DOMAINS (denied.e2e.example.com)  the reference hook denies these domains
#   STACK_START_TIMEOUT (60)  seconds to wait for each part (apps: STACK_APP_TIMEOUT, 600, they compile)
#   KRATOS_PUBLIC_PORT KRATOS_ADMIN_PORT HYDRA_PUBLIC_PORT HYDRA_ADMIN_PORT FUNCTIONS_PORT
#   LOGIN_SITE_PORT DEMO_CLIENT_PORT MOCK_GOOGLE_PORT SMS_SINK_PORT MOTO_PORT
#                             fixed ports (win over STACK_FREE_PORTS)
#   BRIDGE_TOKEN_TTL_SECONDS, BRIDGE_IN_PROGRESS_SECONDS, BRIDGE_REMEMBER, BRIDGE_REMEMBER_FOR_SECONDS,
#   BRIDGE_TRUSTED_CLIENTS, BRIDGE_CLAIM_MAPPING_JSON, BRIDGE_UPSTREAM_TIMEOUT_MS,
#   BRIDGE_KRATOS_SESSION_COOKIE, BRIDGE_DEVICE_MAX_ATTEMPTS, BRIDGE_DEVICE_MAX_ATTEMPTS_PER_ADDRESS,
#   BRIDGE_DEVICE_ATTEMPT_WINDOW_SECONDS, BRIDGE_DEVICE_USER_CODE_CASE, RUST_LOG: copied into
#   .stack/env when set.
#
# Everything lives in <repo>/.stack/ (gitignored; STACK_STATE=<dir> to use another directory): env, rendered kratos.yml / hydra.yml,
# logs/<name>.log, pids/<name> (one process group per part). Config templates: stack/kratos,
# stack/hydra (`${NAME}` placeholders filled by stack_render). POSIX sh plus `local`.

STACK_ROOT=${STACK_ROOT:-$(git rev-parse --show-toplevel 2>/dev/null || pwd)}
STACK_STATE=${STACK_STATE:-$STACK_ROOT/.stack}   # override to run two stacks from one checkout
# Derived from STACK_STATE on every entry point (stack_start/stop/smoke), so that
# `STACK_STATE=dir stack_start` runs a second, independent stack.
_stack_paths() {
    STACK_LOGS="$STACK_STATE/logs"
    STACK_PIDS="$STACK_STATE/pids"
}
_stack_paths
STACK_TARGET_DIR=${CARGO_TARGET_DIR:-$STACK_ROOT/target}

# The Google stand-in's predefined user (type the sub into the mock's authorize form).
STACK_GOOGLE_SUB=${STACK_GOOGLE_SUB:-google-ada}
STACK_GOOGLE_EMAIL=${STACK_GOOGLE_EMAIL:-ada.lovelace@example.com}
STACK_GOOGLE_GIVEN_NAME=${STACK_GOOGLE_GIVEN_NAME:-Ada}
STACK_GOOGLE_FAMILY_NAME=${STACK_GOOGLE_FAMILY_NAME:-Lovelace}

# Hydra clients registered at start (demo-device, a public device-grant client, on Hydra v26+).
# The demo-aal2, demo-google-only, demo-scoped and demo-hooked clients carry a per-client sign-in
# policy (docs/policy.md), one rule each, for the policy scenarios.
STACK_CLIENTS="demo-first-party demo-second demo-third-party demo-aal2 demo-google-only demo-scoped demo-hooked"

_stack_log() { printf '[stack] %s\n' "$*" >&2; }
_stack_fail() {
    # _stack_fail PART MESSAGE: names the part, shows its log tail.
    printf '[stack] ERROR: %s: %s\n' "$1" "$2" >&2
    if [ -f "$STACK_LOGS/$1.log" ]; then
        printf '[stack] --- last lines of %s ---\n' "$STACK_LOGS/$1.log" >&2
        tail -n 40 "$STACK_LOGS/$1.log" >&2
        printf '[stack] --- end of %s ---\n' "$1" >&2
    fi
    return 1
}

# stack_render SRC DST: copies SRC to DST replacing every ${NAME} (NAME = [A-Z_][A-Z0-9_]*) with
# the value of the environment variable NAME. An unset variable is an error.
stack_render() {
    awk '
        {
            line = $0; out = ""
            while (match(line, /\$\{[A-Z_][A-Z0-9_]*\}/)) {
                name = substr(line, RSTART + 2, RLENGTH - 3)
                if (!(name in ENVIRON)) { printf "stack_render: %s is not set (%s:%d)\n", name, FILENAME, FNR > "/dev/stderr"; bad = 1 }
                out = out substr(line, 1, RSTART - 1) ENVIRON[name]
                line = substr(line, RSTART + RLENGTH)
            }
            print out line
        }
        END { exit bad }
    ' "$1" >"$2"
}

# --- ports -----------------------------------------------------------------------------------
_stack_listening() { ss -Htln 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u; }

# _stack_pick_ports N: N distinct free TCP ports in 20000-59999, one per line.
# Ports come from below the kernel's ephemeral range (ip_local_port_range), so that no outgoing
# connection between the parts (or anything else on the machine) can hold one when a server binds it.
_stack_pick_ports() {
    local low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || low=32768
    case $low in '' | *[!0-9]*) low=32768 ;; esac
    [ "$low" -gt 16000 ] || low=32768
    _stack_listening | awk -v n="$1" -v low="$low" -v seed="$$$(date +%N 2>/dev/null | cut -c1-4)" '
        { busy[$1] = 1 }
        END {
            srand(seed); got = 0
            while (got < n) {
                p = 15000 + int(rand() * (low - 15000))
                if (!(p in busy)) { busy[p] = 1; print p; got++ }
            }
        }'
}

_stack_ports() {
    local names free n cur busy p
    names="KRATOS_PUBLIC_PORT KRATOS_ADMIN_PORT HYDRA_PUBLIC_PORT HYDRA_ADMIN_PORT FUNCTIONS_PORT LOGIN_SITE_PORT DEMO_CLIENT_PORT MOCK_GOOGLE_PORT SMS_SINK_PORT MOTO_PORT"
    if [ "${STACK_FREE_PORTS:-0}" = 1 ]; then
        free=$(_stack_pick_ports 10)
    else
        free="4433 4434 4444 4445 9000 4455 5555 9400 4477 5005"
    fi
    # shellcheck disable=SC2086
    set -- $free
    for n in $names; do
        eval "cur=\${$n:-}"
        [ -n "$cur" ] || eval "$n=$1"
        export "${n?}"
        shift
    done
    KRATOS_PUBLIC_URL="http://127.0.0.1:$KRATOS_PUBLIC_PORT"
    KRATOS_ADMIN_URL="http://127.0.0.1:$KRATOS_ADMIN_PORT"
    HYDRA_PUBLIC_URL="http://127.0.0.1:$HYDRA_PUBLIC_PORT"
    HYDRA_ADMIN_URL="http://127.0.0.1:$HYDRA_ADMIN_PORT"
    FUNCTIONS_URL="http://127.0.0.1:$FUNCTIONS_PORT"
    LOGIN_SITE_URL="http://127.0.0.1:$LOGIN_SITE_PORT"
    DEMO_CLIENT_URL="http://127.0.0.1:$DEMO_CLIENT_PORT"
    MOCK_GOOGLE_URL="http://127.0.0.1:$MOCK_GOOGLE_PORT"
    SMS_SINK_URL="http://127.0.0.1:$SMS_SINK_PORT"
    MOTO_URL="http://127.0.0.1:$MOTO_PORT"
    STACK_DIR="$STACK_ROOT/stack"
    export KRATOS_PUBLIC_URL KRATOS_ADMIN_URL HYDRA_PUBLIC_URL HYDRA_ADMIN_URL FUNCTIONS_URL \
        LOGIN_SITE_URL DEMO_CLIENT_URL MOCK_GOOGLE_URL SMS_SINK_URL MOTO_URL STACK_DIR
    busy=$(_stack_listening)
    for n in $names; do
        eval "p=\$$n"
        if printf '%s\n' "$busy" | grep -qx "$p"; then
            _stack_fail stack "port $p ($n) is already in use; stop what uses it, set $n, or use STACK_FREE_PORTS=1"
            return 1
        fi
    done
}

# --- processes -------------------------------------------------------------------------------
# _stack_spawn NAME CMD...: runs CMD in its own session/process group, output to logs/NAME.log.
# The group id (= pid of the process) goes to pids/NAME.
_stack_spawn() {
    local name i
    name=$1
    shift
    : >"$STACK_LOGS/$name.log"
    rm -f "$STACK_PIDS/$name"
    setsid sh -c 'echo $$ >"$0"; exec "$@"' "$STACK_PIDS/$name" "$@" \
        </dev/null >>"$STACK_LOGS/$name.log" 2>&1 &
    i=0
    while [ ! -s "$STACK_PIDS/$name" ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -s "$STACK_PIDS/$name" ] || { _stack_fail "$name" "did not start"; return 1; }
    printf '%s\n' "$name" >>"$STACK_STATE/started"
}

_stack_alive() {
    [ -s "$STACK_PIDS/$1" ] || return 1
    kill -0 "-$(cat "$STACK_PIDS/$1")" 2>/dev/null
}

# _stack_wait NAME URL [TIMEOUT] [any]: waits until URL answers 2xx (with `any`: any HTTP status).
_stack_wait() {
    local name url timeout mode t0 code
    name=$1 url=$2 timeout=${3:-${STACK_START_TIMEOUT:-60}} mode=${4:-ok}
    t0=$(date +%s)
    while :; do
        code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" 2>/dev/null) || code=000
        case "$mode:$code" in
            ok:2??) return 0 ;;
            any:000) ;;
            any:*) return 0 ;;
        esac
        if ! _stack_alive "$name"; then
            _stack_fail "$name" "exited before $url answered"
            return 1
        fi
        if [ $(($(date +%s) - t0)) -ge "$timeout" ]; then
            _stack_fail "$name" "$url did not answer ${mode} within ${timeout}s (last HTTP status $code)"
            return 1
        fi
        sleep 0.3
    done
}

# --- env file --------------------------------------------------------------------------------
_stack_q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

_stack_keyset() {
    local k1 k0
    k1=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    k0=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    printf '{"current":"dev2","keys":[{"kid":"dev2","secret":"%s"},{"kid":"dev1","secret":"%s"}]}' "$k1" "$k0"
}

# _stack_hook_keys: the reference hook's HOOK_SIGNING_KEYS for $BRIDGE_KEYSET_JSON, as
# `doctor policy-hook-keys` prints them (docs/policy.md: HKDF-SHA256, no salt, the entry's decoded
# secret, the policy-hook info string; current kid first). Computed here so that starting the
# stack needs no doctor build; the keys never reach the command line.
_stack_hook_keys() {
    python3 -c '
import base64, hashlib, hmac, json, os
keyset = json.loads(os.environ["BRIDGE_KEYSET_JSON"])
info = b"hydra-kratos-bridge/v1/policy-hook/hmac-sha256"
def subkey(secret):
    ikm = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).hexdigest()
keys = sorted(keyset["keys"], key=lambda k: k["kid"] != keyset["current"])
print(",".join(k["kid"] + ":" + subkey(k["secret"]) for k in keys))
'
}

# _stack_policy_hook: the bridge's hook settings and the reference hook's rules (the hook runs
# under the functions' watcher, so it inherits these). Deny: e-mails of
# $STACK_HOOK_DENY_EMAIL_DOMAINS (read from the `email` trait); claims: tenant=acme in the
# bridge's default namespace. A 5 s timeout (the most allowed): the hook shares two loaded cores
# with browsers and builds in CI, and a slow answer fails the sign-in closed.
_stack_policy_hook() {
    case ${STACK_POLICY_HOOK:-local} in
        local) BRIDGE_POLICY_HOOK_URL="$FUNCTIONS_URL/policy-hook" ;;
        # Port 1 is privileged and never served on these machines: a connection is refused at once.
        down) BRIDGE_POLICY_HOOK_URL="http://127.0.0.1:1/policy-hook" ;;
        *)
            _stack_fail stack "STACK_POLICY_HOOK must be local or down, not ${STACK_POLICY_HOOK}"
            return 1
            ;;
    esac
    BRIDGE_POLICY_HOOK_TRAITS=email
    BRIDGE_POLICY_HOOK_TIMEOUT_MS=${BRIDGE_POLICY_HOOK_TIMEOUT_MS:-5000}
    HOOK_SIGNING_KEYS=$(_stack_hook_keys) && [ -n "$HOOK_SIGNING_KEYS" ] ||
        { _stack_fail stack "cannot derive the policy hook's keys from the key set"; return 1; }
    HOOK_DENY_EMAIL_DOMAINS=${STACK_HOOK_DENY_EMAIL_DOMAINS:-denied.e2e.example.com}
    HOOK_DENY_REASON="Accounts of this domain may not sign in to this application."
    HOOK_CLAIMS_NAMESPACE="$FUNCTIONS_URL/claims/"
    HOOK_ADD_CLAIMS_JSON='{"tenant":"acme"}'
    export BRIDGE_POLICY_HOOK_URL BRIDGE_POLICY_HOOK_TRAITS BRIDGE_POLICY_HOOK_TIMEOUT_MS \
        HOOK_SIGNING_KEYS HOOK_DENY_EMAIL_DOMAINS HOOK_DENY_REASON HOOK_CLAIMS_NAMESPACE HOOK_ADD_CLAIMS_JSON
}

_stack_write_env() {
    local f n set v
    f="$STACK_STATE/env"
    {
        echo "# Written by scripts/lib/stack.sh stack_start; source it: . .stack/env"
        for n in STACK_ROOT STACK_DIR STACK_ORY KRATOS_VERSION HYDRA_VERSION \
            KRATOS_PUBLIC_PORT KRATOS_ADMIN_PORT KRATOS_PUBLIC_URL KRATOS_ADMIN_URL \
            HYDRA_PUBLIC_PORT HYDRA_ADMIN_PORT HYDRA_PUBLIC_URL HYDRA_ADMIN_URL \
            FUNCTIONS_PORT FUNCTIONS_URL LOGIN_SITE_PORT LOGIN_SITE_URL LOGIN_SITE_ADDR \
            DEMO_CLIENT_PORT DEMO_CLIENT_URL DEMO_CLIENT_ADDR DEMO_CLIENT_BASE_URL \
            MOCK_GOOGLE_PORT MOCK_GOOGLE_URL SMS_SINK_PORT SMS_SINK_URL MOTO_PORT MOTO_URL \
            STACK_GOOGLE_SUB STACK_GOOGLE_EMAIL STACK_CLIENTS STACK_APPS_STARTED STACK_DEVICE_CODE_TTL_SECONDS \
            AWS_REGION AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
            BRIDGE_PUBLIC_BASE_URL BRIDGE_HYDRA_ADMIN_URL BRIDGE_HYDRA_PUBLIC_URL \
            BRIDGE_KRATOS_PUBLIC_URL BRIDGE_KRATOS_ADMIN_URL BRIDGE_KRATOS_BROWSER_URL \
            BRIDGE_REPLAY_TABLE BRIDGE_DYNAMODB_ENDPOINT BRIDGE_KEYSET_JSON \
            BRIDGE_HYDRA_LOGIN_CONSENT_TTL_SECONDS BRIDGE_DEV_INSECURE_COOKIES \
            BRIDGE_TOKEN_TTL_SECONDS BRIDGE_IN_PROGRESS_SECONDS BRIDGE_REMEMBER \
            BRIDGE_REMEMBER_FOR_SECONDS BRIDGE_TRUSTED_CLIENTS BRIDGE_CLAIM_MAPPING_JSON \
            BRIDGE_UPSTREAM_TIMEOUT_MS BRIDGE_KRATOS_SESSION_COOKIE BRIDGE_DEVICE_MAX_ATTEMPTS \
            BRIDGE_DEVICE_MAX_ATTEMPTS_PER_ADDRESS BRIDGE_DEVICE_ATTEMPT_WINDOW_SECONDS \
            BRIDGE_DEVICE_USER_CODE_CASE BRIDGE_POLICY_HOOK_URL BRIDGE_POLICY_HOOK_TRAITS \
            BRIDGE_POLICY_HOOK_TIMEOUT_MS HOOK_SIGNING_KEYS HOOK_DENY_EMAIL_DOMAINS HOOK_DENY_REASON \
            HOOK_CLAIMS_NAMESPACE HOOK_ADD_CLAIMS_JSON RUST_LOG; do
            eval "set=\${$n+x} v=\${$n:-}"
            # shellcheck disable=SC2154
            if [ "$set" = x ]; then echo "export $n=$(_stack_q "$v")"; fi
        done
    } >"$f.tmp" || return 1
    mv "$f.tmp" "$f"
}

# --- parts -----------------------------------------------------------------------------------
_stack_versions() {
    _stack_log "Ory versions:"
    "$KRATOS_BIN" version 2>&1 | sed 's/^/[stack]   kratos: /' >&2
    "$HYDRA_BIN" version 2>&1 | sed 's/^/[stack]   hydra:  /' >&2
}

_stack_register_clients() {
    local scopes id extra body code
    scopes="openid offline_access email phone profile"
    for id in $STACK_CLIENTS; do
        case $id in
            demo-device)
                # A TV/CLI-style public client: device grant only, consent asked (third party).
                body=$(printf '{"client_id":"demo-device","client_name":"Demo TV","grant_types":["urn:ietf:params:oauth:grant-type:device_code","refresh_token"],"response_types":["code"],"scope":"%s","token_endpoint_auth_method":"none","skip_consent":false}' "$scopes")
                ;;
            demo-first-party) extra='"client_name":"Demo (first party)","skip_consent":true' ;;
            demo-second) extra='"client_name":"Demo (second first-party app)","skip_consent":true' ;;
            demo-third-party)
                extra="\"client_name\":\"Third-Party Demo App\",\"skip_consent\":false,\"logo_uri\":\"$DEMO_CLIENT_URL/logo.svg\",\"policy_uri\":\"$DEMO_CLIENT_URL/policy\",\"tos_uri\":\"$DEMO_CLIENT_URL/tos\""
                ;;
            # First-party clients with a policy: the policy is checked whatever consent skips.
            demo-aal2) extra='"client_name":"Demo (second factor)","skip_consent":true,"metadata":{"bridge":{"version":1,"required_aal":"aal2"}}' ;;
            demo-google-only) extra='"client_name":"Demo (Google only)","skip_consent":true,"metadata":{"bridge":{"version":1,"allowed_methods":["oidc"]}}' ;;
            demo-scoped) extra='"client_name":"Demo (openid and email only)","skip_consent":true,"metadata":{"bridge":{"version":1,"allowed_scopes":["openid","email"]}}' ;;
            demo-hooked) extra='"client_name":"Demo (policy hook)","skip_consent":true,"metadata":{"bridge":{"version":1,"hook":true}}' ;;
        esac
        [ "$id" = demo-device ] ||
            body=$(printf '{"client_id":"%s",%s,"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"scope":"%s","redirect_uris":["%s/callback"],"post_logout_redirect_uris":["%s/logged-out"],"token_endpoint_auth_method":"none"}' \
                "$id" "$extra" "$scopes" "$DEMO_CLIENT_URL" "$DEMO_CLIENT_URL")
        code=$(curl -s -o "$STACK_LOGS/client-$id.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
            --data "$body" "$HYDRA_ADMIN_URL/admin/clients") || code=000
        if [ "$code" = 409 ]; then
            code=$(curl -s -o "$STACK_LOGS/client-$id.json" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
                --data "$body" "$HYDRA_ADMIN_URL/admin/clients/$id") || code=000
        fi
        case $code in
            2??) ;;
            *)
                cat "$STACK_LOGS/client-$id.json" >&2 2>/dev/null
                _stack_fail hydra "registering OAuth2 client $id failed (HTTP $code)"
                return 1
                ;;
        esac
    done
}

_stack_build_devstack() {
    cargo build -q -p devstack --bins >"$STACK_LOGS/build-devstack.log" 2>&1 ||
        { _stack_fail build-devstack "cargo build -p devstack failed"; return 1; }
}

# _stack_app_builds NAME CARGO_ARGS...: builds an app; on failure warns and returns 1.
_stack_app_builds() {
    local name
    name=$1
    shift
    _stack_log "building $name"
    if cargo build -q "$@" >"$STACK_LOGS/build-$name.log" 2>&1; then
        return 0
    fi
    tail -n 15 "$STACK_LOGS/build-$name.log" >&2
    if [ "${STACK_REQUIRE_APPS:-0}" = 1 ]; then
        _stack_fail "build-$name" "$name does not build (STACK_REQUIRE_APPS=1)"
        return 2
    fi
    _stack_log "WARNING: $name does not build (log $STACK_LOGS/build-$name.log); not starting it"
    return 1
}

_stack_start_apps() {
    local all app_timeout a rc
    STACK_APPS_STARTED=""
    all=${STACK_WITH_APPS:-1}
    # _stack_app_builds: 0 builds, 1 does not build (skip), 2 does not build and STACK_REQUIRE_APPS=1.
    if [ "${STACK_WITH_FUNCTIONS:-$all}" = 1 ]; then
        rc=0
        # One binary at a time, as `cargo lambda watch` builds them (`cargo run --bin NAME`), so the
        # watcher finds every artifact fresh on the first call and builds nothing then.
        for a in login login-return consent logout error device policy-hook; do
            [ $rc = 0 ] || break
            _stack_app_builds "function-$a" --bin "$a" || rc=$?
        done
        [ $rc = 2 ] && return 1
        if [ $rc = 0 ]; then
            # Run from the repo root (the router is in the root Cargo.toml); the functions get the
            # BRIDGE_* variables (exported above, same as .stack/env) from the inherited environment.
            # STACK_FUNCTIONS_RELOAD=0 (tests): no rebuild/restart when files in the checkout change.
            (cd "$STACK_ROOT" && _stack_spawn functions cargo lambda watch -A 127.0.0.1 -P "$FUNCTIONS_PORT" \
                $([ "${STACK_FUNCTIONS_RELOAD:-1}" = 0 ] && echo --ignore-changes)) || return 1
            STACK_APPS_STARTED="$STACK_APPS_STARTED functions"
        fi
    fi
    if [ "${STACK_WITH_LOGIN_SITE:-$all}" = 1 ]; then
        rc=0
        _stack_app_builds login-site -p login-site || rc=$?
        [ $rc = 2 ] && return 1
        if [ $rc = 0 ]; then
            (cd "$STACK_ROOT" && _stack_spawn login-site env LOGIN_SITE_ADDR="127.0.0.1:$LOGIN_SITE_PORT" \
                KRATOS_PUBLIC_URL="$KRATOS_PUBLIC_URL" cargo run -q -p login-site) || return 1
            STACK_APPS_STARTED="$STACK_APPS_STARTED login-site"
        fi
    fi
    if [ "${STACK_WITH_DEMO_CLIENT:-$all}" = 1 ]; then
        rc=0
        _stack_app_builds demo-client -p demo-client || rc=$?
        [ $rc = 2 ] && return 1
        if [ $rc = 0 ]; then
            (cd "$STACK_ROOT" && _stack_spawn demo-client env DEMO_CLIENT_ADDR="127.0.0.1:$DEMO_CLIENT_PORT" \
                HYDRA_PUBLIC_URL="$HYDRA_PUBLIC_URL" DEMO_CLIENT_BASE_URL="$DEMO_CLIENT_URL" \
                cargo run -q -p demo-client) || return 1
            STACK_APPS_STARTED="$STACK_APPS_STARTED demo-client"
        fi
    fi
    STACK_APPS_STARTED=${STACK_APPS_STARTED# }
    export STACK_APPS_STARTED
    app_timeout=${STACK_APP_TIMEOUT:-600}
    for a in $STACK_APPS_STARTED; do
        case $a in
            # cargo lambda watch answers as soon as it listens; functions compile on first call.
            functions) _stack_wait functions "$FUNCTIONS_URL/" "$app_timeout" any || return 1 ;;
            login-site) _stack_wait login-site "$LOGIN_SITE_URL/" "$app_timeout" any || return 1 ;;
            demo-client) _stack_wait demo-client "$DEMO_CLIENT_URL/" "$app_timeout" any || return 1 ;;
        esac
    done
}

# stack_start: starts everything; returns non-zero (after stopping what it started) on failure.
stack_start() {
    local n
    _stack_paths
    mkdir -p "$STACK_LOGS" "$STACK_PIDS"
    if [ -s "$STACK_STATE/started" ]; then
        for n in $(cat "$STACK_STATE/started"); do
            if _stack_alive "$n"; then
                _stack_fail stack "part $n of an earlier stack is still running; run stack_stop first"
                return 1
            fi
        done
    fi
    rm -f "$STACK_PIDS"/* "$STACK_STATE/started" "$STACK_STATE/env"
    : >"$STACK_STATE/started"
    # In a subshell: the ports, URLs and BRIDGE_* it computes stay out of the caller's
    # environment (a second stack_start must not inherit the first one's ports). Callers read
    # them from $STACK_STATE/env.
    if ! (_stack_start_inner); then
        stack_stop
        return 1
    fi
}

_stack_start_inner() {
    local ttl claims
    [ -x "${KRATOS_BIN:-}" ] && [ -x "${HYDRA_BIN:-}" ] ||
        { _stack_fail stack "Kratos/Hydra binaries missing: source scripts/lib/install.sh and run install_ory"; return 1; }
    [ -x "${STACK_VENV:-}/bin/moto_server" ] ||
        { _stack_fail stack "Python tools missing: source scripts/lib/install.sh and run install_python_tools"; return 1; }
    PATH="$STACK_VENV/bin:$PATH"
    export PATH
    _stack_ports || return 1
    _stack_versions

    ttl=${STACK_LOGIN_CONSENT_TTL_SECONDS:-1800}
    HYDRA_LOGIN_CONSENT_TTL="${ttl}s"
    HYDRA_DEVICE_CODE_TTL="${STACK_DEVICE_CODE_TTL_SECONDS:-900}s"
    export HYDRA_LOGIN_CONSENT_TTL HYDRA_DEVICE_CODE_TTL
    stack_render "$STACK_ROOT/stack/kratos/kratos.yml" "$STACK_STATE/kratos.yml" || return 1
    stack_render "$STACK_ROOT/stack/hydra/hydra.yml" "$STACK_STATE/hydra.yml" || return 1
    case $HYDRA_VERSION in
        v2.*) sed -i '/# v26+$/d' "$STACK_STATE/hydra.yml" ;; # no device grant before v26
        *) STACK_CLIENTS="$STACK_CLIENTS demo-device" ;;
    esac

    AWS_REGION=${AWS_REGION:-us-east-1}
    AWS_DEFAULT_REGION=$AWS_REGION
    AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}
    AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
    BRIDGE_PUBLIC_BASE_URL=$FUNCTIONS_URL
    BRIDGE_HYDRA_ADMIN_URL=$HYDRA_ADMIN_URL
    BRIDGE_HYDRA_PUBLIC_URL=$HYDRA_PUBLIC_URL
    BRIDGE_KRATOS_PUBLIC_URL=$KRATOS_PUBLIC_URL
    BRIDGE_KRATOS_ADMIN_URL=$KRATOS_ADMIN_URL
    BRIDGE_KRATOS_BROWSER_URL=$KRATOS_PUBLIC_URL
    BRIDGE_REPLAY_TABLE=${STACK_REPLAY_TABLE:-bridge-replay}
    BRIDGE_DYNAMODB_ENDPOINT=$MOTO_URL
    BRIDGE_KEYSET_JSON=${STACK_KEYSET_JSON:-$(_stack_keyset)}
    BRIDGE_HYDRA_LOGIN_CONSENT_TTL_SECONDS=$ttl
    BRIDGE_DEV_INSECURE_COOKIES=true
    LOGIN_SITE_ADDR="127.0.0.1:$LOGIN_SITE_PORT"
    DEMO_CLIENT_ADDR="127.0.0.1:$DEMO_CLIENT_PORT"
    DEMO_CLIENT_BASE_URL=$DEMO_CLIENT_URL
    STACK_APPS_STARTED=""
    export AWS_REGION AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
        BRIDGE_PUBLIC_BASE_URL BRIDGE_HYDRA_ADMIN_URL BRIDGE_HYDRA_PUBLIC_URL BRIDGE_KRATOS_PUBLIC_URL \
        BRIDGE_KRATOS_ADMIN_URL BRIDGE_KRATOS_BROWSER_URL BRIDGE_REPLAY_TABLE BRIDGE_DYNAMODB_ENDPOINT \
        BRIDGE_KEYSET_JSON BRIDGE_HYDRA_LOGIN_CONSENT_TTL_SECONDS BRIDGE_DEV_INSECURE_COOKIES \
        LOGIN_SITE_ADDR DEMO_CLIENT_ADDR DEMO_CLIENT_BASE_URL STACK_GOOGLE_SUB STACK_GOOGLE_EMAIL STACK_CLIENTS STACK_ORY
    _stack_policy_hook || return 1
    _stack_write_env

    _stack_log "building devstack (sms-sink, create-replay-table)"
    _stack_build_devstack || return 1

    # moto + the replay table
    _stack_spawn moto moto_server -H 127.0.0.1 -p "$MOTO_PORT" || return 1
    _stack_wait moto "$MOTO_URL/moto-api/" || return 1
    "$STACK_TARGET_DIR/debug/create-replay-table" >>"$STACK_LOGS/moto.log" 2>&1 ||
        { _stack_fail moto "create-replay-table failed"; return 1; }

    # Google stand-in with one predefined user
    claims=$(printf '{"sub":"%s","email":"%s","email_verified":true,"given_name":"%s","family_name":"%s","name":"%s %s"}' \
        "$STACK_GOOGLE_SUB" "$STACK_GOOGLE_EMAIL" "$STACK_GOOGLE_GIVEN_NAME" "$STACK_GOOGLE_FAMILY_NAME" \
        "$STACK_GOOGLE_GIVEN_NAME" "$STACK_GOOGLE_FAMILY_NAME")
    _stack_spawn mock-google oidc-provider-mock -H 127.0.0.1 -p "$MOCK_GOOGLE_PORT" --user-claims "$claims" || return 1
    _stack_wait mock-google "$MOCK_GOOGLE_URL/.well-known/openid-configuration" || return 1

    _stack_spawn sms-sink "$STACK_TARGET_DIR/debug/sms-sink" "127.0.0.1:$SMS_SINK_PORT" || return 1
    _stack_wait sms-sink "$SMS_SINK_URL/health" || return 1

    # Kratos and Hydra (one process each: in-memory databases are per process)
    _stack_spawn kratos "$KRATOS_BIN" serve --dev --watch-courier --sqa-opt-out -c "$STACK_STATE/kratos.yml" || return 1
    _stack_spawn hydra "$HYDRA_BIN" serve all --dev --sqa-opt-out -c "$STACK_STATE/hydra.yml" || return 1
    _stack_wait kratos "$KRATOS_PUBLIC_URL/health/ready" || return 1
    _stack_wait kratos "$KRATOS_ADMIN_URL/admin/health/ready" || return 1
    _stack_wait hydra "$HYDRA_PUBLIC_URL/health/ready" || return 1
    _stack_wait hydra "$HYDRA_ADMIN_URL/health/ready" || return 1
    _stack_register_clients || return 1

    _stack_start_apps || return 1
    _stack_write_env
    _stack_log "up: kratos $KRATOS_PUBLIC_URL (admin $KRATOS_ADMIN_URL), hydra $HYDRA_PUBLIC_URL (admin $HYDRA_ADMIN_URL)"
    _stack_log "    functions $FUNCTIONS_URL, login site $LOGIN_SITE_URL, demo client $DEMO_CLIENT_URL (started:${STACK_APPS_STARTED:+ }${STACK_APPS_STARTED:-none of the apps})"
    _stack_log "    mock google $MOCK_GOOGLE_URL, sms sink $SMS_SINK_URL, moto $MOTO_URL; env in $STACK_STATE/env, logs in $STACK_LOGS"
}

# _stack_descendants PGID...: pids of every process in those groups and all their descendants
# (cargo lambda watch starts the functions in sessions of their own).
_stack_descendants() {
    ps -eo pid=,ppid=,pgid= | awk -v groups=" $* " '
        { pid[NR] = $1; ppid[NR] = $2; if (index(groups, " " $3 " ")) take[$1] = 1 }
        END {
            do {
                more = 0
                for (i = 1; i <= NR; i++)
                    if (!(pid[i] in take) && (ppid[i] in take)) { take[pid[i]] = 1; more = 1 }
            } while (more)
            for (p in take) print p
        }'
}

# stack_stop: TERM to every process group started (and to their descendants in other groups),
# KILL after 10 s; quiet when nothing runs.
stack_stop() {
    local pgids f pg i left pids p
    _stack_paths
    [ -d "$STACK_PIDS" ] || return 0
    pgids=""
    for f in "$STACK_PIDS"/*; do
        [ -s "$f" ] || continue
        pg=$(cat "$f")
        kill -0 "-$pg" 2>/dev/null && pgids="$pgids $pg"
    done
    [ -n "$pgids" ] || { rm -f "$STACK_PIDS"/* "$STACK_STATE/started"; return 0; }
    # shellcheck disable=SC2086
    pids=$(_stack_descendants $pgids)
    for pg in $pgids; do
        kill -TERM "-$pg" 2>/dev/null
    done
    for p in $pids; do
        kill -TERM "$p" 2>/dev/null
    done
    i=0
    while [ $i -lt 100 ]; do
        left=""
        for p in $pids; do
            kill -0 "$p" 2>/dev/null && left="$left $p"
        done
        pids=$left
        [ -n "$pids" ] || break
        sleep 0.1
        i=$((i + 1))
    done
    if [ -n "$pids" ]; then
        _stack_log "processes$pids ignored TERM; killing"
        for p in $pids; do
            kill -KILL "$p" 2>/dev/null
        done
    fi
    rm -f "$STACK_PIDS"/* "$STACK_STATE/started"
}

# stack_smoke: checks a running stack's Ory side with curl (needs no app): health, return_to
# allow/deny, clients, Hydra -> functions /login redirect, SMS code for a new phone number, replay
# table with TTL. Prints one line per check; returns non-zero if any failed.
stack_smoke() {
    local fails out rt loc lc flow phone code ver ch
    fails=0
    _stack_paths
    # shellcheck disable=SC1091
    . "$STACK_STATE/env" || return 1
    _smoke() { if [ "$1" = 0 ]; then printf '[smoke] ok    %s\n' "$2"; else printf '[smoke] FAIL  %s\n' "$2"; fails=$((fails + 1)); fi; }
    _enc() { printf '%s' "$1" | jq -sRr @uri; }

    out=$(curl -s "$KRATOS_PUBLIC_URL/health/ready")
    [ "$out" = '{"status":"ok"}' ]; _smoke $? "kratos /health/ready: $out"
    out=$(curl -s "$HYDRA_PUBLIC_URL/health/ready")
    [ "$out" = '{"status":"ok"}' ]; _smoke $? "hydra /health/ready: $out"

    rt=$(_enc "$FUNCTIONS_URL/login/return?t=x")
    loc=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$KRATOS_PUBLIC_URL/self-service/login/browser?return_to=$rt")
    case $loc in "303 $LOGIN_SITE_URL/login?flow="*) true ;; *) false ;; esac
    _smoke $? "login/browser with return_to=<functions>/login/return -> $loc"
    out=$(curl -s -H 'Accept: application/json' "$KRATOS_PUBLIC_URL/self-service/login/browser?return_to=$(_enc https://evil.example/login/return)" | jq -r .error.id)
    [ "$out" = self_service_flow_return_to_forbidden ]; _smoke $? "foreign return_to refused: $out"

    out=$(curl -s "$HYDRA_ADMIN_URL/admin/clients" | jq -r '[.[].client_id] | sort | join(" ")')
    # shellcheck disable=SC2086 # one client id per word
    [ "$out" = "$(printf '%s\n' $STACK_CLIENTS | sort | paste -sd' ')" ]; _smoke $? "hydra clients: $out"

    ver=smoke-verifier-0123456789-abcdefghijklmnopqrstuvwxyz
    ch=$(printf %s "$ver" | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '=')
    loc=$(curl -s -o /dev/null -w '%{redirect_url}' "$HYDRA_PUBLIC_URL/oauth2/auth?client_id=demo-third-party&response_type=code&scope=openid+offline_access+email+phone+profile&redirect_uri=$(_enc "$DEMO_CLIENT_URL/callback")&state=smokestate123&nonce=smokenonce123&code_challenge=$ch&code_challenge_method=S256")
    lc=$(printf %s "$loc" | sed -n 's/.*login_challenge=\([^&]*\).*/\1/p')
    case $loc in "$FUNCTIONS_URL/login?login_challenge="*) true ;; *) false ;; esac
    _smoke $? "hydra /oauth2/auth -> <functions>/login?login_challenge=... (challenge length ${#lc})"

    phone="+1415555$(date +%s | tail -c 5)"
    flow=$(curl -s "$KRATOS_PUBLIC_URL/self-service/registration/api" | jq -r .id)
    curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
        -d "{\"method\":\"code\",\"traits\":{\"phone\":\"$phone\"}}" "$KRATOS_PUBLIC_URL/self-service/registration?flow=$flow"
    code=""
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        code=$(curl -s "$SMS_SINK_URL/messages?to=$(_enc "$phone")" | jq -r '.[-1].code // empty')
        [ -n "$code" ] && break
        sleep 0.5
    done
    [ -n "$code" ]; _smoke $? "SMS code for new phone $phone reached the sink (${#code} digits)"
    out=$(curl -s -X POST -H 'Content-Type: application/json' \
        -d "{\"method\":\"code\",\"code\":\"$code\",\"traits\":{\"phone\":\"$phone\"}}" \
        "$KRATOS_PUBLIC_URL/self-service/registration?flow=$flow" | jq -r '.identity.traits.phone // .ui.messages[0].text // .error.reason')
    [ "$out" = "$phone" ]; _smoke $? "registration by SMS code: $out"

    out=$(curl -s -X POST -H 'Content-Type: application/x-amz-json-1.0' -H 'X-Amz-Target: DynamoDB_20120810.DescribeTimeToLive' \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/$AWS_REGION/dynamodb/aws4_request, SignedHeaders=host, Signature=0" \
        -d "{\"TableName\":\"$BRIDGE_REPLAY_TABLE\"}" "$MOTO_URL/" | jq -r '.TimeToLiveDescription | "\(.TimeToLiveStatus) \(.AttributeName)"')
    [ "$out" = "ENABLED expires_at" ]; _smoke $? "replay table $BRIDGE_REPLAY_TABLE TTL: $out"

    [ "$fails" = 0 ]
}

# stack_install_traps: stack_stop on EXIT, INT and TERM (INT/TERM also exit with 130/143).
stack_install_traps() {
    trap 'stack_stop' EXIT
    trap 'stack_stop; trap - EXIT; exit 130' INT
    trap 'stack_stop; trap - EXIT; exit 143' TERM
}
