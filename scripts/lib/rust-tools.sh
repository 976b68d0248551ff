# shellcheck shell=sh
# Rust tools the test script needs, from crates.io (built once, kept in ~/.cargo/bin).
#   . scripts/lib/rust-tools.sh && install_rust_tools

: "${NEXTEST_VERSION:=0.9.151}"

install_rust_tools() {
    if ! cargo nextest --version >/dev/null 2>&1; then
        printf '[install] cargo-nextest %s (crates.io, a few minutes the first time)\n' "$NEXTEST_VERSION" >&2
        cargo install --quiet --locked cargo-nextest --version "$NEXTEST_VERSION" || return 1
    fi
}
