# shellcheck shell=sh
# Installs what the local stack needs. Source it, then call the functions:
#
#   . scripts/lib/install.sh
#   install_all            # everything below, in order
#   install_debs           # chromium, chromium-driver, zip, build tools (apt-get, root only)
#   install_python_tools   # venv with cargo-lambda, moto[server], oidc-provider-mock (pinned)
#   install_ory            # Kratos and Hydra (STACK_ORY=v26|v1), built from ../shared/ory-src or the
#                          # Go module proxy, cached
#   install_go             # (used by install_ory) a Go >= 1.21, fetched from the module proxy if missing
#   install_rust_targets   # rustup target add aarch64-unknown-linux-gnu
#
# Every function is idempotent and quiet when there is nothing to do. After sourcing, these are set:
#   BRIDGE_CACHE   (default ~/.cache/bridge-stack)  cache root, outside the repo
#   STACK_VENV     $BRIDGE_CACHE/venv-stack         (put $STACK_VENV/bin on PATH, see install_path)
#   KRATOS_BIN     $BRIDGE_CACHE/ory/kratos-<version>/kratos
#   HYDRA_BIN      $BRIDGE_CACHE/ory/hydra-<version>/hydra
# install_path prepends the venv and both Ory directories to PATH.
#
# POSIX sh plus `local` (dash, bash, busybox ash). Build logs go to $BRIDGE_CACHE/logs/.

# ---------------------------------------------------------------------------------------------
# Versions. The single source of truth for what the local stack runs.
#
# STACK_ORY=v26 (default): Kratos v26.2.0 and Hydra v26.2.0, the releases the bridge targets.
#   The Go module proxy here refuses their release commits (403 "This module version is not
#   available"), so when ../shared/ory-src/ (ORY_SRC_DIR) holds their source tarballs, checked
#   against its SHA256SUMS, they are built from there; on the normal internet the same commits
#   come through the module proxy (ory/x and the Hydra client are in-tree replaces, so only the
#   tarball route keeps them; the proxy route re-points ory/x at the identical upstream commit).
# STACK_ORY=v1: the previous line, Kratos v1.3.1 and Hydra v2.3.0, from the module proxy. Kept
#   selectable because deployments still run it. Known limit of Kratos v1.3.1: a NEW identity
#   cannot register by SMS code (500 "Expected sms template but got *email.RegistrationCodeValid",
#   fixed upstream in ory/kratos#4243); the v1 build applies a small local patch for that
#   (KRATOS_SMS_REGISTRATION_PATCH=1, see _patch_kratos_sms_registration). v26 needs no patch.
# Set KRATOS_VERSION/KRATOS_REF etc. in the environment to try other versions.
# ---------------------------------------------------------------------------------------------
: "${STACK_ORY:=v26}"
case "$STACK_ORY" in
    v26)
        : "${KRATOS_VERSION:=v26.2.0}"
        : "${KRATOS_REF:=9d7085948039ffb8960160d4979f71527b5cf4d5}"
        : "${KRATOS_COMMIT:=9d7085948039}"
        : "${HYDRA_VERSION:=v26.2.0}"
        : "${HYDRA_REF:=0b84568fffccf151dc5e6c7955fdfb738555bf4b}"
        : "${HYDRA_COMMIT:=0b84568fffcc}"
        ;;
    v1)
        : "${KRATOS_VERSION:=v1.3.1}"
        : "${KRATOS_REF:=v1.3.1}"
        : "${KRATOS_COMMIT:=36e624c716e4}"
        : "${HYDRA_VERSION:=v2.3.0}"
        : "${HYDRA_REF:=v2.3.0}"
        : "${HYDRA_COMMIT:=ee8c339ddada}"
        ;;
    *)
        printf '[install] ERROR: STACK_ORY must be v26 or v1, not %s\n' "$STACK_ORY" >&2
        return 1 2>/dev/null || exit 1
        ;;
esac
: "${KRATOS_SMS_REGISTRATION_PATCH:=1}"     # only applied to v1.3.1
ORYX_V26_COMMIT=f7c341537bd5
# Offline source trees of the v26.2.0 releases (see ../shared/ory-src/README.md).
: "${ORY_SRC_DIR:=$PWD/../shared/ory-src}"     # callers source this file from the repository root

# Go, only to build Kratos/Hydra. A `go` >= 1.21 on PATH is used as is (it switches toolchains
# itself when a go.mod asks for a newer one). Otherwise this Go distribution is fetched from the
# module proxy (module golang.org/toolchain) into $BRIDGE_CACHE/go/.
: "${GO_FALLBACK_VERSION:=1.24.4}"

# Python tools (versions checked against PyPI with `pip index versions`).
: "${CARGO_LAMBDA_VERSION:=1.9.2}"
: "${MOTO_VERSION:=5.2.5}"
: "${OIDC_PROVIDER_MOCK_VERSION:=0.3.4}"

: "${BRIDGE_CACHE:=$HOME/.cache/bridge-stack}"
STACK_VENV="$BRIDGE_CACHE/venv-stack"
KRATOS_BUILD_ID=$KRATOS_VERSION
if [ "$KRATOS_VERSION" = v1.3.1 ] && [ "$KRATOS_SMS_REGISTRATION_PATCH" = 1 ]; then
    KRATOS_BUILD_ID=$KRATOS_VERSION-smsreg
fi
KRATOS_DIR="$BRIDGE_CACHE/ory/kratos-$KRATOS_BUILD_ID"
HYDRA_DIR="$BRIDGE_CACHE/ory/hydra-$HYDRA_VERSION"
KRATOS_BIN="$KRATOS_DIR/kratos"
HYDRA_BIN="$HYDRA_DIR/hydra"
export BRIDGE_CACHE STACK_VENV KRATOS_BIN HYDRA_BIN KRATOS_VERSION HYDRA_VERSION

_inst_log() { printf '[install] %s\n' "$*" >&2; }
_inst_die() { printf '[install] ERROR: %s\n' "$*" >&2; return 1; }

install_path() {
    case ":$PATH:" in *":$STACK_VENV/bin:"*) ;; *) PATH="$STACK_VENV/bin:$PATH" ;; esac
    case ":$PATH:" in *":$KRATOS_DIR:"*) ;; *) PATH="$KRATOS_DIR:$PATH" ;; esac
    case ":$PATH:" in *":$HYDRA_DIR:"*) ;; *) PATH="$HYDRA_DIR:$PATH" ;; esac
    export PATH
}

# --- Debian packages -------------------------------------------------------------------------
INSTALL_DEBS="chromium chromium-driver zip unzip curl ca-certificates gcc libc6-dev python3-venv python3-pip jq iproute2 procps openssl"

install_debs() {
    local missing p SUDO
    missing=""
    for p in $INSTALL_DEBS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    _inst_log "apt-get install:$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
        _inst_die "apt-get install failed for:$missing"
}

# --- Python tools ----------------------------------------------------------------------------
install_python_tools() {
    local stamp want
    stamp="$STACK_VENV/.bridge-pins"
    want="cargo-lambda==$CARGO_LAMBDA_VERSION moto[server]==$MOTO_VERSION oidc-provider-mock==$OIDC_PROVIDER_MOCK_VERSION"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$STACK_VENV/bin/cargo-lambda" ] &&
        [ -x "$STACK_VENV/bin/moto_server" ] && [ -x "$STACK_VENV/bin/oidc-provider-mock" ]; then
        return 0
    fi
    _inst_log "python venv $STACK_VENV: $want"
    mkdir -p "$BRIDGE_CACHE/logs"
    [ -x "$STACK_VENV/bin/python" ] || python3 -m venv "$STACK_VENV" || _inst_die "python3 -m venv failed" || return 1
    # shellcheck disable=SC2086
    "$STACK_VENV/bin/pip" install -q --disable-pip-version-check $want >"$BRIDGE_CACHE/logs/pip.log" 2>&1 ||
        { tail -n 20 "$BRIDGE_CACHE/logs/pip.log" >&2; _inst_die "pip install failed (log $BRIDGE_CACHE/logs/pip.log)"; return 1; }
    printf '%s' "$want" >"$stamp"
}

# --- Rust targets ----------------------------------------------------------------------------
install_rust_targets() {
    command -v rustup >/dev/null 2>&1 || { _inst_die "rustup not found"; return 1; }
    rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu && return 0
    _inst_log "rustup target add aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || _inst_die "rustup target add failed"
}

# --- Go ----------------------------------------------------------------------------------------
# install_go: makes sure `go` >= 1.21 is on PATH (see GO_FALLBACK_VERSION above).
install_go() {
    local v dir arch proxy zip tmp
    if command -v go >/dev/null 2>&1; then
        v=$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
        [ -n "$v" ] && [ "$v" -ge 21 ] && return 0
    fi
    dir="$BRIDGE_CACHE/go/go$GO_FALLBACK_VERSION"
    if [ ! -x "$dir/bin/go" ]; then
        case $(uname -m) in
            x86_64 | amd64) arch=amd64 ;;
            aarch64 | arm64) arch=arm64 ;;
            *) _inst_die "no Go fallback for $(uname -m)"; return 1 ;;
        esac
        proxy=${GOPROXY:-https://proxy.golang.org}
        proxy=${proxy%%,*}
        case $proxy in direct | off | "") proxy=https://proxy.golang.org ;; esac
        zip="v0.0.1-go$GO_FALLBACK_VERSION.linux-$arch"
        _inst_log "fetching Go $GO_FALLBACK_VERSION from $proxy (golang.org/toolchain@$zip)"
        tmp="$BRIDGE_CACHE/go/tmp.$$"
        rm -rf "$tmp" && mkdir -p "$tmp" || return 1
        curl -fsSL -o "$tmp/go.zip" "$proxy/golang.org/toolchain/@v/$zip.zip" ||
            { rm -rf "$tmp"; _inst_die "download of golang.org/toolchain@$zip failed"; return 1; }
        (cd "$tmp" && unzip -q go.zip) || { rm -rf "$tmp"; _inst_die "unzip of the Go toolchain failed"; return 1; }
        # Module zips drop file modes: restore the executables.
        chmod -R u+w "$tmp" && chmod +x "$tmp/golang.org/toolchain@$zip/bin/"* "$tmp/golang.org/toolchain@$zip/pkg/tool/"*/*
        rm -rf "$dir" && mv "$tmp/golang.org/toolchain@$zip" "$dir" && rm -rf "$tmp" || return 1
    fi
    PATH="$dir/bin:$PATH"
    export PATH
    "$dir/bin/go" version >/dev/null || _inst_die "Go $GO_FALLBACK_VERSION does not run"
}

# --- Ory Kratos and Hydra from the Go module proxy -------------------------------------------
# _ory_fetch MODULE REF DEST: downloads MODULE@REF through the module proxy and copies the source
# to DEST (writable). Prints nothing on success.
_ory_fetch() {
    local json dir
    json=$(go mod download -json "$1@$2" 2>&1)
    dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then
        printf '%s\n' "$json" >&2
        _inst_die "go mod download $1@$2 failed"
        return 1
    fi
    rm -rf "$3" && mkdir -p "$3" && cp -R "$dir/." "$3/" && chmod -R u+w "$3"
}

# Local patch for Kratos v1.3.1 (our own change, see the version notes at the top): registration
# codes for SMS addresses are sent with the SMS login-code template instead of the email template
# that the SMS channel refuses.
_patch_kratos_sms_registration() {
    local f old
    f=selfservice/strategy/code/code_sender.go
    old='			if err := s.send(ctx, string(address.Via), email.NewRegistrationCodeValid(s.deps, &emailModel)); err != nil {'
    [ "$(grep -cxF "$old" "$f")" = 1 ] || { echo "SMS registration patch: anchor line not found in $f" >&2; return 1; }
    awk -v old="$old" '
        $0 == old {
            print "\t\t\tvar regTemplate courier.Template = email.NewRegistrationCodeValid(s.deps, &emailModel)"
            print "\t\t\tif address.Via == identity.CodeChannelSMS { // bridge local-stack patch"
            print "\t\t\t\tregTemplate = sms.NewLoginCodeValid(s.deps, &sms.LoginCodeValidModel{"
            print "\t\t\t\t\tTo: address.To, LoginCode: rawCode, Identity: map[string]interface{}{\"traits\": model},"
            print "\t\t\t\t\tRequestURL: f.GetRequestURL(), TransientPayload: transientPayload,"
            print "\t\t\t\t})"
            print "\t\t\t}"
            print "\t\t\tif err := s.send(ctx, string(address.Via), regTemplate); err != nil {"
            next
        }
        { print }
    ' "$f" >"$f.new" && mv "$f.new" "$f"
}

# _ory_src_tarball NAME VERSION: prints the path of NAME's offline source tarball for VERSION when
# ORY_SRC_DIR has it and its checksum matches SHA256SUMS; prints nothing when there is none; fails
# on a checksum mismatch (a damaged or altered tree is never built).
_ory_src_tarball() {
    local tgz sums
    tgz="$ORY_SRC_DIR/$1-$2-src.tar.gz"
    sums="$ORY_SRC_DIR/SHA256SUMS"
    [ -f "$tgz" ] && [ -f "$sums" ] || return 0
    (cd "$ORY_SRC_DIR" && grep " $1-$2-src.tar.gz\$" SHA256SUMS | sha256sum -c --quiet -) >&2 ||
        { _inst_die "$tgz does not match $sums"; return 1; }
    printf '%s\n' "$tgz"
}

# _ory_source NAME MODULE REF DEST: the release source of NAME into DEST, from the offline tarball
# when there is one, else from the module proxy. Prints "tarball" or "proxy".
_ory_source() {
    local tgz ver
    case "$1" in kratos) ver=$KRATOS_VERSION ;; *) ver=$HYDRA_VERSION ;; esac
    tgz=$(_ory_src_tarball "$1" "$ver") || return 1
    if [ -n "$tgz" ]; then
        echo "source: $tgz" >&2
        rm -rf "$4" && mkdir -p "$4" && tar xzf "$tgz" -C "$4" --strip-components=1 && chmod -R u+w "$4" || return 1
        echo tarball
    else
        echo "source: $2@$3 from the module proxy" >&2
        _ory_fetch "$2" "$3" "$4" || return 1
        echo proxy
    fi
}

_build_kratos() {
    local src commit origin
    src="$KRATOS_DIR/src"
    origin=$(_ory_source kratos github.com/ory/kratos "$KRATOS_REF" "$src") || return 1
    commit=$KRATOS_COMMIT
    (
        cd "$src" || exit 1
        if [ "$KRATOS_BUILD_ID" != "$KRATOS_VERSION" ]; then
            _patch_kratos_sms_registration || exit 1
            commit="$KRATOS_COMMIT+smsreg"
        fi
        # The binary does not import client-go (only examples/ do); the replace points into a
        # directory that module zips leave out.
        [ "$origin" = tarball ] || go mod edit -dropreplace=github.com/ory/client-go
        if [ "$origin" = proxy ] && grep -q '=> ./oryx' go.mod; then
            # v26 line: ory/x lives in ./oryx, which the zip leaves out.
            go mod edit -dropreplace=github.com/ory/x
            go get "github.com/ory/x@$ORYX_V26_COMMIT"
        fi
        rm -rf examples
        CGO_ENABLED=1 go build -mod=mod -tags sqlite -trimpath \
            -ldflags "-X github.com/ory/kratos/driver/config.Version=$KRATOS_VERSION -X github.com/ory/kratos/driver/config.Commit=$commit" \
            -o "$KRATOS_DIR/kratos.tmp" .
    ) || return 1
    mv "$KRATOS_DIR/kratos.tmp" "$KRATOS_BIN"
}

_build_hydra() {
    local src origin
    src="$HYDRA_DIR/src"
    origin=$(_ory_source hydra github.com/ory/hydra/v2 "$HYDRA_REF" "$src") || return 1
    (
        cd "$src" || exit 1
        # The tarball keeps the in-tree client and ory/x; a module zip leaves both out, and Go then
        # uses the published github.com/ory/hydra-client-go/v2 named in require.
        [ "$origin" = tarball ] || go mod edit -dropreplace=github.com/ory/hydra-client-go/v2
        if [ "$origin" = proxy ] && grep -q '=> ./oryx' go.mod; then
            go mod edit -dropreplace=github.com/ory/x
            go get "github.com/ory/x@$ORYX_V26_COMMIT"
        fi
        CGO_ENABLED=1 go build -mod=mod -tags sqlite,sqlite_omit_load_extension -trimpath \
            -ldflags "-X github.com/ory/hydra/v2/driver/config.Version=$HYDRA_VERSION -X github.com/ory/hydra/v2/driver/config.Commit=$HYDRA_COMMIT" \
            -o "$HYDRA_DIR/hydra.tmp" .
    ) || return 1
    mv "$HYDRA_DIR/hydra.tmp" "$HYDRA_BIN"
}

# install_ory_one NAME: builds kratos or hydra unless the cached binary exists.
install_ory_one() {
    local bin dir ver log t0
    case "$1" in
        kratos) bin=$KRATOS_BIN dir=$KRATOS_DIR ver=$KRATOS_BUILD_ID ;;
        hydra) bin=$HYDRA_BIN dir=$HYDRA_DIR ver=$HYDRA_VERSION ;;
        *) _inst_die "unknown Ory part $1"; return 1 ;;
    esac
    [ -x "$bin" ] && return 0
    install_go || return 1
    command -v gcc >/dev/null 2>&1 || { _inst_die "gcc not found (cgo is needed for SQLite)"; return 1; }
    mkdir -p "$dir" "$BRIDGE_CACHE/logs"
    log="$BRIDGE_CACHE/logs/build-$1-$ver.log"
    _inst_log "building $1 $ver (several minutes; log $log)"
    t0=$(date +%s)
    if "_build_$1" >"$log" 2>&1; then
        _inst_log "built $1 $ver in $(($(date +%s) - t0)) s"
        rm -rf "$dir/src"
    else
        tail -n 30 "$log" >&2
        _inst_die "building $1 $ver failed (log $log)"
        return 1
    fi
}

# install_ory: both, in parallel (each is CPU bound, but downloads overlap).
install_ory() {
    local kp hp rc
    [ -x "$KRATOS_BIN" ] && [ -x "$HYDRA_BIN" ] && return 0
    install_go || return 1
    install_ory_one kratos &
    kp=$!
    install_ory_one hydra &
    hp=$!
    rc=0
    wait "$kp" || rc=1
    wait "$hp" || rc=1
    return $rc
}

install_all() {
    install_debs || return 1
    install_python_tools || return 1
    install_rust_targets || return 1
    install_ory || return 1
    install_path
}
