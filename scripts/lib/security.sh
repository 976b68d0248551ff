# shellcheck shell=sh disable=SC3043
# Security checks that ./scripts/test calls. Source from the repository root, then:
#
#   security_fuzz SECONDS_PER_TARGET     cargo-fuzz (libFuzzer, nightly) on every target of fuzz/,
#                                        each bounded; prints executions and crashes per target;
#                                        fails on a crash or a build failure
#   security_supply_chain                cargo deny: licenses, bans, sources must pass; advisories
#                                        against the dated RustSec snapshot (../shared/rustsec) or
#                                        another copy of the database, failing on any that reaches
#                                        the functions; reported loudly as NOT CHECKED without one
#   security_log_audit LOGDIR|FILE...    scans the functions' JSON log lines for secrets (tokens,
#                                        challenges, code_verifier, cookies, SMS codes, key-set
#                                        secrets); prints lines scanned and findings; fails on any
#   security_log_request_ids LOGDIR|FILE...
#                                        checks that the functions' JSON event lines carry
#                                        Lambda's requestId (and counts the lines that do, and the
#                                        embedded-metric-format lines); fails on an event line
#                                        without one, or when no line has one
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
# security_supply_chain: cargo deny with deny.toml. Licenses, bans and sources must pass, and the
# functions must be free of aws-lc, the AWS SDK and OpenSSL. Then RustSec advisories, checked
# against the first database to be had (the result line names it, with its date):
#   1. BRIDGE_ADVISORY_DB, when set: a git checkout of rustsec/advisory-db the caller chose
#   2. the dated snapshot in BRIDGE_RUSTSEC_SNAPSHOT (default ../shared/rustsec beside the
#      checkout, the project's read-only reference folder): the tarball must match SHA256SUMS
#      (refused, and the step failed, otherwise) and is unpacked once into
#      $BRIDGE_CACHE/advisory-db/<commit>; used offline, before the network is ever tried
#   3. the live database on GitHub, only when GitHub answers within 5 seconds (CI is offline and
#      time-limited: no waiting on a network that is not there)
#   4. cargo-deny's cache of an earlier online run
# and failing all four the result is printed as NOT CHECKED (a failure with
# BRIDGE_REQUIRE_ADVISORIES=1). An advisory that reaches the functions (SEC_FUNCTION_CRATES, not
# counting their dev-dependencies) fails the step. One that reaches only the rest of the workspace
# (dev tools, examples, end-to-end tests, benches: never deployed) is printed as a warning naming
# the crate and the workspace members that pull it in, and does not fail the step.
SEC_FUNCTION_CRATES="bridge-fn-login bridge-fn-login-return bridge-fn-consent bridge-fn-logout bridge-fn-error bridge-fn-device bridge-shared"
# cargo-deny 0.20 opens the database of a `db-urls` entry at <db-path>/<last URL segment>-<hash>,
# the hash being XxHash64 (seed 0xca80de71) of the lowercased URL: for deny.toml's
# https://github.com/rustsec/advisory-db, this directory. It has no option naming the directory
# itself (and refuses a file:// URL: a database URL needs a domain), so local copies are put, or
# linked, under that name in a db-path of their own (`cargo deny -L debug` shows the path it opens).
_SEC_ADVISORY_DB_DIR=advisory-db-3157b0e258782691

security_supply_chain() {
    local root out rc
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
    # its clients run on the functions' reqwest client. Resolved as the zips are built (all six
    # packages together, `-p`); the built zips are checked for aws-lc and OpenSSL again after
    # `cargo lambda build` in scripts/test.
    if (cd "$root" && cargo tree --locked -e normal --prefix none -p bridge-fn-login \
        -p bridge-fn-login-return -p bridge-fn-consent -p bridge-fn-logout -p bridge-fn-error -p bridge-fn-device) 2>/dev/null |
        grep -E '^(aws-lc-rs|aws-lc-sys|aws-lc-fips-sys|aws-smithy-http-client|openssl|openssl-sys|native-tls|rsa) ' >&2; then
        _sec_out "supply chain: aws-lc / OpenSSL / a second TLS stack in the functions' dependencies FAILED"
        rm -f "$out"
        return 1
    fi
    _sec_out "supply chain: functions free of aws-lc and OpenSSL"

    rm -f "$out"
    _sec_advisories
}

# _sec_advisories: the advisories part of security_supply_chain (the order is described there).
_sec_advisories() {
    local root snap repo rc
    root=$(_sec_root)
    if [ -n "${BRIDGE_ADVISORY_DB:-}" ]; then
        _sec_local_db "$BRIDGE_ADVISORY_DB" || return 1
        rc=0
        _sec_advisories_check \
            "the RustSec database $(_sec_db_label "$BRIDGE_ADVISORY_DB") in BRIDGE_ADVISORY_DB=$BRIDGE_ADVISORY_DB" \
            "$BRIDGE_ADVISORY_DB" "$_sec_db_path" "$(git -C "$BRIDGE_ADVISORY_DB" log -1 --format=%cs)" || rc=$?
        rm -rf "$_sec_db_tmp"
        return "$rc"
    fi
    snap=${BRIDGE_RUSTSEC_SNAPSHOT:-$root/../shared/rustsec}
    if [ -d "$snap" ]; then
        if ! _sec_snapshot "$snap"; then
            _sec_out "supply chain: advisories FAILED: the RustSec snapshot in $snap does not verify (see above)"
            return 1
        fi
        _sec_log "advisories: RustSec snapshot $_sec_db_commit of $_sec_db_date ($snap), offline"
        _sec_advisories_check \
            "RustSec snapshot $(printf %.7s "$_sec_db_commit") ($_sec_db_date)" \
            "$_sec_db_path/$_SEC_ADVISORY_DB_DIR" "$_sec_db_path" "$_sec_db_date"
        return
    fi
    _sec_log "no RustSec snapshot in $snap"
    # `git ls-remote` fails at once without DNS and is cut off after 5 s when packets vanish.
    if timeout 5 git ls-remote --heads https://github.com/rustsec/advisory-db main >/dev/null 2>&1; then
        # db-path empty: cargo-deny fetches into its own cache, ~/.cargo/advisory-dbs.
        repo=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/$_SEC_ADVISORY_DB_DIR
        if _sec_advisories_check "the live RustSec database" "$repo" ""; then
            return 0
        fi
        [ "$_sec_db_unusable" = 1 ] || return 1
        _sec_log "the live RustSec database could not be used; trying a local copy"
    else
        _sec_log "github.com does not answer: the live RustSec database cannot be fetched"
    fi
    repo=$(find "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs" -maxdepth 1 -name 'advisory-db-*' 2>/dev/null | head -n 1)
    if [ -n "$repo" ] && [ -d "$repo/crates" ] && _sec_local_db "$repo"; then
        rc=0
        _sec_advisories_check "the RustSec database $(_sec_db_label "$repo") in cargo-deny's cache" \
            "$repo" "$_sec_db_path" "$(git -C "$repo" log -1 --format=%cs)" || rc=$?
        rm -rf "$_sec_db_tmp"
        return "$rc"
    fi
    _sec_out "supply chain: ADVISORIES NOT CHECKED: no RustSec snapshot ($snap), github.com unreachable, no local copy (set BRIDGE_RUSTSEC_SNAPSHOT or BRIDGE_ADVISORY_DB)"
    [ "${BRIDGE_REQUIRE_ADVISORIES:-0}" != 1 ]
}

# _sec_db_label REPO: "<short commit> (<commit date>)" of a git checkout of the database.
_sec_db_label() {
    git -C "$1" log -1 --format='%h (%cs)' 2>/dev/null || echo '(date unknown)'
}

# _sec_local_db REPO: a db-path in which cargo-deny finds the git checkout REPO: a temporary
# directory (_sec_db_tmp, for the caller to remove) with a link of the expected name.
_sec_local_db() {
    if [ ! -d "$1/crates" ] || ! git -C "$1" rev-parse HEAD >/dev/null 2>&1; then
        _sec_log "ERROR: $1 is not a git checkout of rustsec/advisory-db (crates/ and a commit)"
        _sec_out "supply chain: advisories FAILED: $1 is not a RustSec database"
        return 1
    fi
    _sec_db_tmp=$(mktemp -d "${TMPDIR:-/tmp}/deny-db.XXXXXX") || return 1
    ln -s "$(cd "$1" && pwd)" "$_sec_db_tmp/$_SEC_ADVISORY_DB_DIR"
    _sec_db_path=$_sec_db_tmp
}

# _sec_deny_rows FILE: the diagnostics of a `cargo deny --format json` run, one a line, tab-separated:
# severity, code (vulnerability, unmaintained, unsound, notice, yanked, ...), advisory id (or -),
# "crate version", the workspace members that pull the crate in (comma-separated), message.
_sec_deny_rows() {
    jq -rR 'fromjson? | select(.type == "diagnostic") | .fields |
        [.severity, .code, (.advisory.id // "-"),
         ((.labels[0].span // "-") | split(" ") | .[0:2] | join(" ")),
         ([.graphs[]? | .. | objects | select(has("Krate") and (has("parents") | not) and (.repeat != true))
           | .Krate.name] | unique | join(",")),
         .message] | @tsv' "$1"
}

# _sec_advisories_check LABEL REPO DB_PATH [DATE]: cargo deny's advisories check, twice: on the
# functions alone (the other workspace members excluded, dev-dependencies too; cargo-deny then
# resolves exactly the crates `cargo tree -e normal,build --target all -p <functions>` lists),
# where any error fails, and on the whole workspace as deny.toml has it, whose other findings are
# printed as warnings. REPO is the database's git checkout (for the count); DB_PATH empty means
# online (cargo-deny fetches), otherwise offline against DB_PATH/$_SEC_ADVISORY_DB_DIR. DATE, for
# a copy, is said in the result: newer advisories are not covered. Sets _sec_db_unusable=1
# when cargo deny could not check at all (as opposed to finding something).
_sec_advisories_check() {
    local label repo dbpath date root work cfg members p excl count rc_fn rc_all hits rest warned
    local fn_offline
    cfg=""
    label=$1
    repo=$2
    dbpath=$3
    date=${4:-}
    root=$(_sec_root)
    _sec_db_unusable=0
    work=$(mktemp -d "${TMPDIR:-/tmp}/deny-adv.XXXXXX") || return 1
    set --
    if [ -n "$dbpath" ]; then
        # deny.toml with the database's place. cargo-deny also refuses a database whose last fetch
        # (.git/HEAD's time here) is over 90 days old; for a dated snapshot that measures when it
        # was unpacked, not its age, so the limit is lifted and the date printed instead.
        cfg=$work/deny.toml
        sed "s|^\[advisories\]\$|[advisories]\ndb-path = \"$dbpath\"\nmaximum-db-staleness = \"P36500D\"|" \
            "$root/deny.toml" >"$cfg"
        if ! grep -q '^db-path = ' "$cfg"; then
            _sec_log "ERROR: deny.toml has no [advisories] table to point at $dbpath"
            _sec_out "supply chain: advisories FAILED (deny.toml has no [advisories] table)"
            rm -rf "$work"
            return 1
        fi
        set -- --offline --config "$cfg"
    fi
    # The functions: every workspace member outside SEC_FUNCTION_CRATES is excluded (by name:
    # none of them shares a name with a registry crate), so a new tool counts as "the rest".
    members=$(cd "$root" && cargo metadata --locked --offline --no-deps --format-version 1 |
        jq -r '.packages[].name')
    for p in $SEC_FUNCTION_CRATES; do
        if ! printf '%s\n' "$members" | grep -qx "$p"; then
            _sec_log "ERROR: $p (SEC_FUNCTION_CRATES) is not a workspace member"
            _sec_out "supply chain: advisories FAILED (function crate $p not in the workspace)"
            rm -rf "$work"
            return 1
        fi
    done
    excl=""
    for p in $members; do
        case " $SEC_FUNCTION_CRATES " in
            *" $p "*) ;;
            *) excl="$excl --exclude $p" ;;
        esac
    done
    # The functions' features as they are built (deny.toml's `all-features = true` is for the
    # workspace run: it would switch on the test kit's `testkit` feature, whose RustCrypto RSA
    # code no function links).
    sed 's/^all-features = true$/all-features = false/' "${cfg:-$root/deny.toml}" >"$work/deny-functions.toml"
    fn_offline=""
    [ -n "$dbpath" ] && fn_offline=--offline
    rc_fn=0
    # shellcheck disable=SC2086 # $excl is a list of options, $fn_offline empty or one option
    (cd "$root" && cargo deny --locked --format json $fn_offline --config "$work/deny-functions.toml" \
        --exclude-dev $excl check advisories) \
        2>"$work/functions.json" >&2 || rc_fn=$?
    rc_all=0
    (cd "$root" && cargo deny --locked --format json "$@" check advisories) \
        2>"$work/workspace.json" >&2 || rc_all=$?
    _sec_deny_rows "$work/functions.json" >"$work/functions.tsv"
    _sec_deny_rows "$work/workspace.json" >"$work/workspace.tsv"
    # What the database holds: cargo-deny reads every crates/**/*.md but the placeholder id.
    count=$(find "$repo/crates" -name '*.md' ! -name 'RUSTSEC-0000-0000.md' 2>/dev/null | wc -l)
    if [ -z "$dbpath" ]; then
        label="$label $(git -C "$repo" log -1 --format='%h (%cs)' 2>/dev/null) fetched now"
    fi

    # A failed run without a finding (no database, a stale or unreadable one, no Cargo.lock match)
    # is no result at all: say so with cargo deny's own words.
    hits=$(awk -F '\t' '$1 == "error"' "$work/functions.tsv" | wc -l)
    if { [ "$rc_fn" != 0 ] && [ "$hits" = 0 ]; } ||
        { [ "$rc_all" != 0 ] && [ "$(awk -F '\t' '$1 == "error"' "$work/workspace.tsv" | wc -l)" = 0 ]; }; then
        _sec_log "cargo deny could not check advisories against $label:"
        cat "$work/functions.json" "$work/workspace.json" |
            jq -rR '. as $line | (fromjson? // null) as $j
                | if $j == null then $line
                  elif $j.type == "log" and $j.fields.level == "ERROR" then $j.fields.message
                  else empty end' | sort -u | sed 's/^/[security]   /' >&2
        _sec_out "supply chain: advisories NOT CHECKED: cargo deny could not use $label (see above)"
        _sec_db_unusable=1
        rm -rf "$work"
        return 1
    fi

    # Findings on the functions' crates; the workspace run's other findings are the rest's.
    # (FILENAME, not NR == FNR: the first file is empty when the functions are clean.)
    awk -F '\t' 'FILENAME == ARGV[1] { seen[$2 FS $3 FS $4]; next } !(($2 FS $3 FS $4) in seen)' \
        "$work/functions.tsv" "$work/workspace.tsv" >"$work/rest.tsv"
    rest=$(wc -l <"$work/rest.tsv")
    warned=$(awk -F '\t' '$1 != "error"' "$work/functions.tsv" | wc -l)
    # One line each, crate and the members that pull it in named.
    awk -F '\t' '$1 == "error" { printf "supply chain: ADVISORY %s (%s) in %s, which the functions use (via %s): %s\n", $3, $2, $4, $5, $6 }' \
        "$work/functions.tsv" >"$work/lines"
    awk -F '\t' '$1 != "error" { printf "supply chain: advisory warning %s (%s) in %s, in the functions (via %s): %s\n", $3, $2, $4, $5, $6 }' \
        "$work/functions.tsv" >>"$work/lines"
    awk -F '\t' '{ printf "supply chain: advisory warning %s (%s) in %s, only in dev tools/tests/examples (via %s), not deployed: %s\n", $3, $2, $4, $5, $6 }' \
        "$work/rest.tsv" >>"$work/lines"
    while IFS= read -r p; do _sec_out "$p"; done <"$work/lines"
    if [ "$hits" != 0 ]; then
        # cargo deny's full account (advisory text, solution) for whoever fixes it.
        # shellcheck disable=SC2086 # $excl is a list of options
        (cd "$root" && cargo deny --locked "$@" --exclude-dev $excl check --hide-inclusion-graph advisories) >&2 || true
        _sec_out "$(printf 'supply chain: advisories FAILED against %s: %s advisories in the database, %s the functions%s' \
            "$label" "$count" "$([ "$hits" = 1 ] && echo '1 affects' || echo "$hits affect")" \
            "${date:+; advisories after $date are not covered}")"
        rm -rf "$work"
        return 1
    fi
    if [ "$warned" != 0 ]; then rest="$rest only the dev tools/tests/examples, $warned warnings on the functions"; else rest="$rest only the dev tools/tests/examples"; fi
    _sec_out "$(printf 'supply chain: advisories ok against %s: %s advisories in the database, 0 affect the functions, %s%s' \
        "$label" "$count" "$rest" "${date:+; advisories after $date are not covered}")"
    rm -rf "$work"
}

# _sec_snapshot DIR: the dated RustSec snapshot in DIR (advisory-db-<commit>.tar.gz, its
# SHA256SUMS, and a README.md naming the full commit and its date as "commit <40 hex>
# (YYYY-MM-DD)"), verified and unpacked once into $BRIDGE_CACHE/advisory-db/<commit>/ (outside the
# checkout: every worktree and fresh clone on the machine shares it) as a git repository, which is
# what cargo-deny opens. The repository has one commit whose author, dates and message derive from
# the snapshot alone, so the same tarball gives the same commit on every machine. Sets
# _sec_db_path (the db-path for cargo-deny), _sec_db_commit and _sec_db_date; returns 1, after
# saying why, when the snapshot does not verify or does not unpack.
_sec_snapshot() {
    local snap tarball sum short commit date base dir repo tmp src stamp
    snap=$1
    tarball=$(sed -n 's/^[0-9a-f]\{64\} [ *]\(advisory-db-[0-9a-f]\{7,40\}\.tar\.gz\)$/\1/p' "$snap/SHA256SUMS" 2>/dev/null | head -n 1)
    if [ -z "$tarball" ] || [ ! -f "$snap/$tarball" ]; then
        _sec_log "ERROR: $snap/SHA256SUMS lists no advisory-db-<commit>.tar.gz that exists there"
        return 1
    fi
    sum=$(sed -n "s/^\([0-9a-f]\{64\}\) [ *]$tarball\$/\1/p" "$snap/SHA256SUMS" | head -n 1)
    if [ "$(sha256sum "$snap/$tarball" | cut -d ' ' -f 1)" != "$sum" ]; then
        _sec_log "ERROR: $snap/$tarball does not match its SHA256SUMS entry: refused"
        return 1
    fi
    # The date is what every result rests on; it and the full commit come from the README, and
    # must agree with the commit in the tarball's name.
    short=${tarball#advisory-db-}
    short=${short%.tar.gz}
    commit=$(sed -n 's/.*commit \([0-9a-f]\{40\}\) ([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}).*/\1/p' "$snap/README.md" 2>/dev/null | head -n 1)
    date=$(sed -n 's/.*commit [0-9a-f]\{40\} (\([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}\)).*/\1/p' "$snap/README.md" 2>/dev/null | head -n 1)
    case $commit in
        "$short"*) ;;
        *)
            _sec_log "ERROR: $snap/README.md names no commit ${short}... with its date (\"commit <40 hex> (YYYY-MM-DD)\")"
            return 1
            ;;
    esac
    base=${BRIDGE_CACHE:-$HOME/.cache/bridge-stack}/advisory-db
    dir=$base/$commit
    repo=$dir/$_SEC_ADVISORY_DB_DIR
    stamp="from $tarball, sha256 $sum"
    # Reused when it holds the commit made from this very tarball and nothing was changed since.
    if [ "$(git -C "$repo" log -1 --format=%b 2>/dev/null)" != "$stamp" ] ||
        [ -n "$(git -C "$repo" status --porcelain 2>&1)" ]; then
        _sec_log "unpacking the RustSec snapshot $tarball into $repo"
        mkdir -p "$base" || return 1
        tmp=$(mktemp -d "$base/.unpack.XXXXXX") || return 1
        tar -xzf "$snap/$tarball" -C "$tmp" || { rm -rf "$tmp"; return 1; }
        # One top directory with crates/ (the advisories cargo-deny reads) in it.
        src=$(find "$tmp" -mindepth 2 -maxdepth 2 -type d -name crates | head -n 1)
        src=${src%/crates}
        if [ -z "$src" ]; then
            _sec_log "ERROR: $tarball has no <top>/crates directory"
            rm -rf "$tmp"
            return 1
        fi
        # -f: a global excludes file must not leave advisories out.
        if ! git -c init.defaultBranch=main init -q "$src" || ! git -C "$src" add -A -f . ||
            ! GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
                git -C "$src" -c user.name="bridge scripts" -c user.email="bridge-scripts@localhost" \
                -c commit.gpgsign=false commit -q --no-verify \
                -m "RustSec advisory-db $commit ($date)" -m "$stamp"; then
            rm -rf "$tmp"
            return 1
        fi
        rm -rf "$repo"
        mkdir -p "$dir" && mv "$src" "$repo"
        # A concurrent run (another worktree) may have put its copy there first; ours then
        # landed inside it.
        rm -rf "$tmp" "${repo:?}/${src##*/}"
        if [ "$(git -C "$repo" log -1 --format=%b 2>/dev/null)" != "$stamp" ]; then
            _sec_log "ERROR: could not set up $repo"
            return 1
        fi
        _sec_log "snapshot repository ready, commit $(git -C "$repo" rev-parse HEAD) (the same on every machine)"
    fi
    _sec_db_path=$dir
    _sec_db_commit=$commit
    _sec_db_date=$date
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

# --- request ids --------------------------------------------------------------------------------
# security_log_request_ids LOGDIR|FILE...: every JSON line a function writes for an event of an
# invocation (`"event":"…"`) must carry Lambda's `"requestId":"…"` (shared/src/logging.rs copies it
# from lambda_runtime's invocation span; cargo lambda watch hands every invocation a request id,
# as Lambda does). Lines written outside an invocation are exempt: `startup_failed` (the cold
# start before the first request) and lines without an `event` (the runtime's and libraries' own
# debug lines while polling for the next invocation). Prints the counts, including the
# embedded-metric-format lines (`"_aws":`), which carry the request id too.
security_log_request_ids() {
    local files dir f json with events missing emf emf_with tmp
    [ $# -gt 0 ] || { _sec_log "usage: security_log_request_ids LOGDIR|FILE..."; return 2; }
    files=""
    for dir in "$@"; do
        if [ -d "$dir" ] && [ -f "$dir/functions.log" ]; then
            files="$files $dir/functions.log"
        elif [ -f "$dir" ]; then
            files="$files $dir"
        else
            _sec_out "$(printf 'request ids: NOT RUN (no functions.log in %s)' "$dir")"
            return 1
        fi
    done
    tmp=$(mktemp "${TMPDIR:-/tmp}/request-ids.XXXXXX")
    json=0 with=0 events=0 missing=0 emf=0 emf_with=0
    for f in $files; do
        json=$((json + $(grep -c '^{' "$f")))
        with=$((with + $(grep '^{' "$f" | grep -c '"requestId":"[^"]')))
        emf=$((emf + $(grep '^{"_aws":' "$f" | grep -c '"CloudWatchMetrics":')))
        emf_with=$((emf_with + $(grep '^{"_aws":' "$f" | grep -c '"requestId":"[^"]')))
        events=$((events + $(grep '^{' "$f" | grep -v '^{"_aws":' | grep -c '"event":"')))
        grep -n '^{' "$f" | grep '"event":"' | grep -v '"event":"startup_failed"' |
            grep -v '"requestId":"[^"]' | cut -d: -f1 | sed "s|^|$f:|" >>"$tmp"
    done
    missing=$(wc -l <"$tmp")
    if [ "$missing" != 0 ]; then
        _sec_log "event lines without requestId (file:line):"
        head -n 20 "$tmp" | sed 's/^/[security]   /' >&2
    fi
    rm -f "$tmp"
    _sec_out "$(printf 'request ids: %s of %s JSON lines carry requestId; %s event lines, %s without; %s metric (EMF) lines, %s with requestId' \
        "$with" "$json" "$events" "$missing" "$emf" "$emf_with")"
    [ "$missing" = 0 ] && [ "$with" -gt 0 ]
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
