#!/usr/bin/env bash
# Installs what streamgate's build and tests need, once; quick when all is present.
#   scripts/setup.sh rust   - the Wasm target the plugin build uses (enough for `make demo`)
#   scripts/setup.sh browser - Debian's chromium (apt) and Playwright for Python, pinned, in a
#                              venv under the cache (the system Chromium; no browser download)
#   scripts/setup.sh all    - all of the above, plus redis-server (apt) and tansu (cargo install, cached)
set -euo pipefail

CACHE="${STREAMGATE_CACHE:-$HOME/.cache/streamgate}"
TANSU_VERSION=0.6.0
TANSU_ROOT="$CACHE/tansu-$TANSU_VERSION"
PLAYWRIGHT_VERSION=1.65.2
BROWSER_VENV="$CACHE/browser-venv"
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

need_browser() {
    if ! command -v chromium >/dev/null 2>&1; then
        echo "setup: installing chromium (apt)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium fonts-liberation >/dev/null
    fi
    # Playwright drives the system Chromium (executable_path); its own browsers are never
    # downloaded, so `playwright install` is not run.
    if ! "$BROWSER_VENV/bin/python" -c "import playwright, sys; \
            sys.exit(0 if __import__('importlib.metadata').metadata.version('playwright') == '$PLAYWRIGHT_VERSION' else 1)" \
            >/dev/null 2>&1; then
        echo "setup: installing playwright $PLAYWRIGHT_VERSION (pip) into $BROWSER_VENV"
        mkdir -p "$CACHE"
        if ! python3 -m venv "$BROWSER_VENV"; then
            echo "setup: python3 cannot make a venv; installing python3-venv (apt)"
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$BROWSER_VENV"
        fi
        "$BROWSER_VENV/bin/pip" install --quiet --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION"
    fi
}

case "${1:-all}" in
    rust) need_rust ;;
    browser) need_browser ;;
    all) need_rust; need_redis; need_browser; need_tansu ;;
    *) echo "usage: $0 [rust|browser|all]" >&2; exit 2 ;;
esac
