#!/usr/bin/env bash
# Installs what streamgate's build and tests need, once; quick when all is present.
#   scripts/setup.sh rust   - the Wasm target the plugin build uses (enough for `make demo`)
#   scripts/setup.sh all    - that, plus redis-server (apt) and tansu (cargo install, cached)
set -euo pipefail

CACHE="${STREAMGATE_CACHE:-$HOME/.cache/streamgate}"
TANSU_VERSION=0.6.0
TANSU_ROOT="$CACHE/tansu-$TANSU_VERSION"
WASM_TARGET=wasm32-unknown-unknown

need_rust() {
    if ! rustup target list --installed | grep -qx "$WASM_TARGET"; then
        echo "setup: adding Rust target $WASM_TARGET"
        rustup target add "$WASM_TARGET"
    fi
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

need_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "setup: installing redis-server (apt)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
    fi
    # Tests start their own servers; the distribution's service is not needed.
}

need_tansu() {
    if [ ! -x "$TANSU_ROOT/bin/tansu" ]; then
        echo "setup: installing tansu $TANSU_VERSION into $TANSU_ROOT (about 10 minutes, once)"
        mkdir -p "$CACHE"
        CARGO_TARGET_DIR="$CACHE/tansu-build" cargo install tansu --version "$TANSU_VERSION" \
            --features dynostore --locked --root "$TANSU_ROOT"
        rm -rf "$CACHE/tansu-build"
    fi
}

case "${1:-all}" in
    rust) need_rust ;;
    all) need_rust; need_redis; need_tansu ;;
    *) echo "usage: $0 [rust|all]" >&2; exit 2 ;;
esac
