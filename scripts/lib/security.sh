# shellcheck shell=sh disable=SC3043
# Security checks that ./scripts/test calls. Source from the repository root, then:
#
#   security_fuzz SECONDS_PER_TARGET     cargo-fuzz (libFuzzer, nightly) on every target of fuzz/,
#                                        each bounded; prints executions and crashes per target;
#                                        fails on a crash or a build failure
#   security_supply_chain                cargo deny: licenses, bans, sources must pass; advisories
#                                        are checked when the RustSec database can be had and
#                                        reported loudly as NOT CHECKED when it cannot
#   security_log_audit LOGDIR|FILE...    scans the functions' JSON log lines for secrets (tokens,
#                                        challenges, code_verifier, cookies, SMS codes, key-set
#                                        secrets); prints lines scanned and findings; fails on any
#   security_report FILE                 prints the `attacks:` / `races:` / `faults:` lines the
#                                        Rust tests appended to FILE (BRIDGE_SECURITY_REPORT)
#
# Every function prints one-line results prefixed `fuzz:`, `supply chain:` or `log audit:`, so a
# caller can collect them for its summary. POSIX sh plus `local`.

: "${CARGO_FUZZ_VERSION:=0.13.2}"
: "${CARGO_DENY_VERSION:=0.20.2}"

_sec_root() { git rev-parse --show-toplevel 2>/dev/null || pwd; }
_sec_log() { printf '[security] %s\n' "$*" >&2; }
_sec_count() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }
# _sec_out LINE: a result line, printed and, when BRIDGE_SECURITY_REPORT names a file, appended
# to it (where the Rust tests put their `attacks:`/`races:`/`faults:` lines) for the summary.
_sec_out() {
    printf '%s\n' "$1"
    if [ -n "${BRIDGE_SECURITY_REPORT:-}" ]; then printf '%s\n' "$1" >>"$BRIDGE_SECURITY_REPORT"; fi
}

# --- fuzzing ----------------------------------------------------------------------------------
# security_fuzz SECONDS: builds the fuzz targets with nightly (`cargo +nightly fuzz build`, its own
# target directory fuzz/target) and runs each for SECONDS with a throw-away working corpus seeded
# from fuzz/corpus/<target> (the committed seeds are never modified). Knobs:
#   BRIDGE_FUZZ_SANITIZER (address)   none|address|memory|thread
#   BRIDGE_FUZZ_TARGETS               space-separated subset of targets
#   BRIDGE_FUZZ_TARGET_DIR            build directory, default $BRIDGE_CACHE/fuzz-target
#                                     (~/.cache/bridge-stack/fuzz-target, next to the Ory builds
#                                     of install.sh): outside the checkout so that fresh clones on
#                                     the same machine (CI) reuse the instrumented build of the
#                                     dependencies, which takes 6-15 minutes on 2 cores (aws-lc)
security_fuzz() {
    local secs root sanitizer targets t work log rc execs crashes fails total_execs artifacts flags
    secs=${1:-30}
    root=$(_sec_root)
    sanitizer=${BRIDGE_FUZZ_SANITIZER:-address}
    # The same flags for build and run, so `run` never rebuilds. 16 codegen units build much
    # faster than cargo-fuzz's default of 1 and cost little speed for a 30-second run.
    flags="-a --sanitizer $sanitizer --codegen-units 16 --target-dir ${BRIDGE_FUZZ_TARGET_DIR:-${BRIDGE_CACHE:-$HOME/.cache/bridge-stack}/fuzz-target}"
    if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        _sec_log "ERROR: the nightly toolchain is missing (rustup toolchain install nightly); cargo-fuzz needs it"
        _sec_out "fuzz: NOT RUN (no nightly toolchain)"
        return 1
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        _sec_log "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io (about 3 minutes the first time)"
        cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" || {
            _sec_out "fuzz: NOT RUN (cargo-fuzz did not install)"
            return 1
        }
    fi
    _sec_log "building fuzz targets (nightly, $flags)"
    mkdir -p "$root/fuzz/artifacts"
    # shellcheck disable=SC2086 # $flags is a list of options
    if ! (cd "$root/fuzz" && cargo +nightly fuzz build $flags >"$root/fuzz/artifacts/build.log" 2>&1); then
        tail -n 30 "$root/fuzz/artifacts/build.log" >&2
        _sec_out "fuzz: BUILD FAILED (log fuzz/artifacts/build.log)"
        return 1
    fi
    targets=${BRIDGE_FUZZ_TARGETS:-$(cd "$root/fuzz" && cargo +nightly fuzz list 2>/dev/null)}
    fails=0
    total_execs=0
    for t in $targets; do
        work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$t.XXXXXX")
        mkdir -p "$work/corpus"
        log="$work/libfuzzer.log"
        artifacts="$root/fuzz/artifacts/$t"
        mkdir -p "$artifacts"
        rc=0
        # shellcheck disable=SC2086 # $flags is a list of options
        (cd "$root/fuzz" && cargo +nightly fuzz run $flags "$t" "$work/corpus" "corpus/$t" -- \
            -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$artifacts/" >"$log" 2>&1) || rc=$?
        execs=$(awk '/stat::number_of_executed_units/ { n += $2 } END { print n + 0 }' "$log")
        total_execs=$((total_execs + execs))
        crashes=0
        if [ "$rc" != 0 ] || [ "$execs" = 0 ]; then
            crashes=1
            fails=$((fails + 1))
            _sec_log "fuzz target $t failed (exit $rc); last lines of its log ($log):"
            tail -n 40 "$log" >&2
            _sec_log "reproduce: (cd fuzz && cargo +nightly fuzz run $flags $t artifacts/$t/<crash file>)"
        fi
        _sec_out "$(printf 'fuzz: %-16s %10s execs in %s s, %s crashes (seeds %s, new coverage inputs %s)' \
            "$t" "$execs" "$secs" "$crashes" "$(_sec_count "$root/fuzz/corpus/$t")" "$(_sec_count "$work/corpus")")"
        if [ "$rc" = 0 ]; then rm -rf "$work"; fi
    done
    _sec_out "$(printf 'fuzz: total %s execs, %s crashing targets' "$total_execs" "$fails")"
    [ "$fails" = 0 ]
}

# --- supply chain -----------------------------------------------------------------------------
# security_supply_chain: cargo deny with deny.toml. Licenses, bans and sources must pass.
# Advisories need the RustSec database (a git repository on GitHub): fetched when reachable;
# otherwise a local copy is used when one exists (BRIDGE_ADVISORY_DB: a clone of
# rustsec/advisory-db, or cargo-deny's own cache from an earlier online run), and failing both the
# result is printed as NOT CHECKED. BRIDGE_REQUIRE_ADVISORIES=1 turns NOT CHECKED into a failure.
security_supply_chain() {
    local root out rc cfg db cache age
    root=$(_sec_root)
    if ! cargo deny --version >/dev/null 2>&1; then
        _sec_log "installing cargo-deny $CARGO_DENY_VERSION from crates.io (several minutes the first time)"
        cargo install --quiet --locked cargo-deny --version "$CARGO_DENY_VERSION" || {
            _sec_out "supply chain: NOT RUN (cargo-deny did not install)"
            return 1
        }
    fi
    out=$(mktemp "${TMPDIR:-/tmp}/deny.XXXXXX")
    rc=0
    (cd "$root" && cargo deny --locked check --hide-inclusion-graph licenses bans sources) >"$out" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        grep -E '^(error|warning)|^\s+[│├└=]|ok$|FAILED' "$out" >&2
        _sec_out "supply chain: licenses/bans/sources FAILED"
        rm -f "$out"
        return 1
    fi
    _sec_out "$(printf 'supply chain: licenses ok, bans ok, sources ok (%s duplicate-version warnings)' \
        "$(grep -c '^warning\[duplicate\]' "$out")")"

    # The deployed functions use rustls on ring (docs/performance.md): aws-lc, OpenSSL, the SDK's
    # own HTTPS client (a second TLS stack) and jsonwebtoken's RSA provider may serve the dev tools
    # and tests, but must not reach a function binary unnoticed. The AWS SDK itself is allowed:
    # its clients run on the functions' reqwest client. Resolved as the zips are built (all five
    # packages together, `-p`); the built zips are checked for aws-lc and OpenSSL again after
    # `cargo lambda build` in scripts/test.
    if (cd "$root" && cargo tree --locked -e normal --prefix none -p bridge-fn-login \
        -p bridge-fn-login-return -p bridge-fn-consent -p bridge-fn-logout -p bridge-fn-error) 2>/dev/null |
        grep -E '^(aws-lc-rs|aws-lc-sys|aws-lc-fips-sys|aws-smithy-http-client|openssl|openssl-sys|native-tls|rsa) ' >&2; then
        _sec_out "supply chain: aws-lc / OpenSSL / a second TLS stack in the functions' dependencies FAILED"
        rm -f "$out"
        return 1
    fi
    _sec_out "supply chain: functions free of aws-lc and OpenSSL"

    rc=0
    (cd "$root" && cargo deny --locked check --hide-inclusion-graph advisories) >"$out" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
        _sec_out "supply chain: advisories ok (RustSec database fetched now)"
        rm -f "$out"
        return 0
    fi
    if ! grep -q 'failed to fetch advisory database' "$out"; then
        grep -E '^(error|warning)|ID|Title|Solution' "$out" >&2
        _sec_out "supply chain: advisories FAILED"
        rm -f "$out"
        return 1
    fi
    _sec_log "the RustSec advisory database cannot be fetched:"
    grep -E 'failed to fetch|fatal:' "$out" | sed 's/^/[security]   /' >&2
    # A local copy: BRIDGE_ADVISORY_DB, or the cache of an earlier online run.
    db=${BRIDGE_ADVISORY_DB:-}
    cache=$(find "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs" -maxdepth 1 -name 'advisory-db-*' 2>/dev/null | head -n 1)
    if [ -z "$db" ] && [ -n "$cache" ] && [ -d "$cache/crates" ]; then
        db=$cache
    fi
    if [ -n "$db" ] && [ -d "$db/crates" ]; then
        cfg=$(mktemp -d "${TMPDIR:-/tmp}/deny-offline.XXXXXX")
        mkdir -p "$cfg/db"
        # cargo-deny looks for <db-path>/<name>-<hash of the URL>; the name/hash of the default URL:
        ln -s "$db" "$cfg/db/$(basename "${cache:-advisory-db-3157b0e258782691}")"
        sed "s|^\[advisories\]|[advisories]\ndb-path = \"$cfg/db\"|" "$root/deny.toml" >"$cfg/deny.toml"
        age=$(git -C "$db" log -1 --format=%cs 2>/dev/null || echo "unknown date")
        rc=0
        (cd "$root" && cargo deny --offline --config "$cfg/deny.toml" check --hide-inclusion-graph advisories) >"$out" 2>&1 || rc=$?
        rm -rf "$cfg"
        if [ "$rc" = 0 ]; then
            _sec_out "supply chain: advisories ok against a LOCAL COPY of the RustSec database from $age ($db), not today's"
            rm -f "$out"
            return 0
        fi
        grep -E '^(error|warning)|ID|Title|Solution' "$out" >&2
        _sec_out "$(printf 'supply chain: advisories FAILED (local copy from %s)' "$age")"
        rm -f "$out"
        return 1
    fi
    rm -f "$out"
    _sec_out "supply chain: ADVISORIES NOT CHECKED: the RustSec database (github.com/rustsec/advisory-db) is unreachable offline and no local copy exists (set BRIDGE_ADVISORY_DB)"
    if [ "${BRIDGE_REQUIRE_ADVISORIES:-0}" = 1 ]; then
        return 1
    fi
    return 0
}

# --- log audit --------------------------------------------------------------------------------
# security_log_audit LOGDIR|FILE...: scans the functions' logs for what must never be logged.
# A directory means a stack's logs/ (functions.log is scanned; hydra.log and kratos.log, when
# present, only supply the challenge values seen in the run, which must then not appear in the
# functions' log; ../env supplies the key-set secrets). Only JSON lines (the functions' own
# tracing output, what CloudWatch would keep) are audited; other lines (cargo lambda watch) are
# counted and skipped. Findings print file:line and the rule, never the secret itself.
security_log_audit() {
    local files dir f env known lines json findings rule tmp secret
    [ $# -gt 0 ] || { _sec_log "usage: security_log_audit LOGDIR|FILE..."; return 2; }
    files=""
    known=$(mktemp "${TMPDIR:-/tmp}/audit-known.XXXXXX")
    tmp=$(mktemp "${TMPDIR:-/tmp}/audit-hits.XXXXXX")
    for dir in "$@"; do
        if [ -d "$dir" ]; then
            [ -f "$dir/functions.log" ] && files="$files $dir/functions.log"
            # Challenge values handed out in this run: Hydra logs its request URLs, and so does
            # cargo lambda watch in the non-JSON lines of functions.log at debug level.
            for f in "$dir/hydra.log" "$dir/kratos.log" "$dir/functions.log"; do
                [ -f "$f" ] || continue
                grep -v '^{' "$f" | grep -oE '(login|consent|logout)_challenge=[A-Za-z0-9_~.+/=%-]{16,}' |
                    sed 's/^[a-z]*_challenge=//; s/%3D/=/g; s/%2B/+/g; s/%2F/\//g' >>"$known"
            done
            env="$dir/../env"
            if [ -f "$env" ]; then
                # Key-set secrets of this stack.
                grep -oE '"secret":"[A-Za-z0-9_=-]{20,}"' "$env" | sed 's/"secret":"//; s/"$//' |
                    sed 's/^/SECRET /' >>"$known"
            fi
        elif [ -f "$dir" ]; then
            files="$files $dir"
        else
            _sec_log "log audit: $dir does not exist"
            rm -f "$known" "$tmp"
            _sec_out "$(printf 'log audit: NOT RUN (%s missing)' "$dir")"
            return 1
        fi
    done
    if [ -z "$files" ]; then
        rm -f "$known" "$tmp"
        _sec_out "$(printf 'log audit: NOT RUN (no functions.log in %s)' "$*")"
        return 1
    fi
    lines=0
    json=0
    findings=0
    for f in $files; do
        lines=$((lines + $(wc -l <"$f")))
        json=$((json + $(grep -c '^{' "$f")))
        # rule name <TAB> extended regex
        while IFS='	' read -r rule pattern; do
            [ -n "$rule" ] || continue
            grep -nE "$pattern" "$f" | grep -E '^[0-9]+:\{' | cut -d: -f1 |
                sed "s|^|$f:|; s|\$| $rule|" >>"$tmp"
        done <<'EOF'
jwt-token	eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
token-parameter	[?&]t=[A-Za-z0-9_.%-]{16,}
challenge-parameter	(login|consent|logout)_challenge(=|"\s*:\s*")[A-Za-z0-9_~.+/%-]{8,}
verifier-parameter	(login|consent|logout)_verifier=[A-Za-z0-9_~.+/%-]{8,}
code-verifier	code_verifier
authorization-code	[?&]code=[A-Za-z0-9_.-]{16,}
kratos-session-cookie	ory_kratos_session=[^;" ]{4,}
kratos-session-token	ory_st_[A-Za-z0-9]{8,}
binding-cookie	bridge_binding=[^;" ]{4,}
csrf-cookie	bridge_csrf=[^;" ]{4,}
csrf-token	csrf_token=[^&" ]{4,}
sms-code-after-phone	\+[1-9][0-9]{7,14}[^0-9]{1,60}[^0-9+][0-9]{6}([^0-9]|$)
sms-code-before-phone	(^|[^0-9])[0-9]{6}[^0-9]{1,60}\+[1-9][0-9]{7,14}
keyset-json	"keys"\s*:\s*\[\s*\{\s*"kid"
aws-secret	AWS_SECRET_ACCESS_KEY|aws_secret_access_key
EOF
        # Exact values from this run: challenges Hydra issued, key-set secrets.
        while read -r secret; do
            case $secret in
                SECRET\ *) rule=keyset-secret; secret=${secret#SECRET } ;;
                *) rule=challenge-value ;;
            esac
            [ ${#secret} -ge 16 ] || continue
            # A 32-character prefix is as unique as the whole value and also catches a cut one.
            secret=$(printf %s "$secret" | cut -c1-32)
            grep -nF -- "$secret" "$f" | grep -E '^[0-9]+:\{' | cut -d: -f1 |
                sed "s|^|$f:|; s|\$| $rule|" >>"$tmp"
        done <"$known"
    done
    findings=$(sort -u "$tmp" | wc -l)
    if [ "$findings" != 0 ]; then
        _sec_log "log audit findings (file:line rule):"
        sort -u "$tmp" | head -n 50 | sed 's/^/[security]   /' >&2
    fi
    _sec_out "$(printf 'log audit: %s lines scanned (%s JSON lines from the functions audited, %s other lines skipped), %s known challenge/secret values checked, %s findings' \
        "$lines" "$json" "$((lines - json))" "$(sort -u "$known" | wc -l)" "$findings")"
    rm -f "$known" "$tmp"
    [ "$findings" = 0 ]
}

# --- summary ----------------------------------------------------------------------------------
# security_report FILE: the lines the Rust security tests appended to FILE, with totals.
security_report() {
    local f
    f=${1:?usage: security_report FILE}
    if [ ! -s "$f" ]; then
        printf 'security: no results in %s (were the tests run with BRIDGE_SECURITY_REPORT set?)\n' "$f"
        return 1
    fi
    sort "$f"
    awk '/^attacks: .* tried, / {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) == "tried,") tried += $i
                if ($(i + 1) == "refused,") refused += $i
                if ($(i + 1) == "accepted") accepted += $i
            }
        }
        END { printf "attacks: total %d tried, %d refused, %d accepted\n", tried, refused, accepted }' "$f"
}
