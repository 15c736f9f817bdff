#!/usr/bin/env bash
# Installs what streamgate's build and tests need, once; quick when all is present.
#   scripts/setup.sh rust   - the Wasm target the plugin build uses (enough for `make demo`)
#   scripts/setup.sh all    - that, plus redis-server (apt) and tansu (cargo install, cached)
#   scripts/setup.sh nchan  - nginx-light and libnginx-mod-nchan (apt), for `make bench-fanout`
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

need_nchan() {
    if [ ! -f /usr/share/nginx/modules-available/mod-http-nchan.conf ] && \
       [ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
        echo "setup: installing nginx-light and libnginx-mod-nchan (apt)"
        as_root apt-get update -qq
        # The benchmark runs its own nginx; keep the package from starting the system one.
        local blocker=/usr/sbin/policy-rc.d placed=""
        if [ ! -e "$blocker" ]; then
            printf '#!/bin/sh\nexit 101\n' | as_root tee "$blocker" >/dev/null
            as_root chmod +x "$blocker"
            placed=1
        fi
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nginx-light libnginx-mod-nchan >/dev/null
        if [ -n "$placed" ]; then as_root rm -f "$blocker"; fi
    fi
}

case "${1:-all}" in
    rust) need_rust ;;
    all) need_rust; need_redis; need_tansu ;;
    nchan) need_nchan ;;
    *) echo "usage: $0 [rust|all|nchan]" >&2; exit 2 ;;
esac
