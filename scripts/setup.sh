#!/usr/bin/env bash
# Installs what streamgate's build and tests need, once; quick when all is present.
#   scripts/setup.sh rust   - the Wasm target the plugin build uses (enough for `make demo`)
#   scripts/setup.sh browser - Debian's chromium (apt) and Playwright for Python, pinned, in a
#                              venv under the cache (the system Chromium; no browser download)
#   scripts/setup.sh tansu  - the test Kafka broker (tansu, patched, built once, cached)
#   scripts/setup.sh balancers - nginx-light and haproxy (apt), the load balancers the fault
#                              suite runs deploy/'s example files with
#   scripts/setup.sh all    - all of the above, plus redis-server (apt)
#   scripts/setup.sh nchan  - nginx-light and libnginx-mod-nchan (apt), for `make bench-fanout`
#   scripts/setup.sh valgrind - valgrind (apt), for `make bench-instructions`
set -euo pipefail

CACHE="${STREAMGATE_CACHE:-$HOME/.cache/streamgate}"
TANSU_VERSION=0.6.0
TANSU_PATCH=p3                      # bump when the patches change: a new cache path
TANSU_ROOT="$CACHE/tansu-$TANSU_VERSION-$TANSU_PATCH"
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

# tansu 0.6.0's fetch (tansu-storage dynostore.rs) loses records two ways: asked for an
# offset inside a record batch it answers with the *next* batch, and since a produce
# raises the high watermark before it writes its batch, a fetch can answer a later
# batch while an earlier one is not written yet. Either way a consumer silently skips
# records. Its fetch service also repeats a batch within one answer when it stopped at
# such a batch (it goes on by adding up record counts), and holds every fetch for its
# whole wait even when it has records. We build it from the crates' sources with three
# small fixes to tansu-storage (scripts/tansu-storage-0.6.0-*.patch: answer from the
# containing batch; stop at a hole; go on from the end of the last batch and answer at
# once when there are records), everything else pinned by tansu's own Cargo.lock.
TANSU_CRATE_SHA256=4fdd85473ec265140488cf8d55e82b844f5c051c8916fabdd4a71156ac053f6d
TANSU_STORAGE_CRATE_SHA256=720d2ed8e6010c70f7f06e5af5a7274ebbf6e42fdcd9e46de542b10dc4d2f35d

fetch_crate() { # NAME SHA256 DIR: download NAME-$TANSU_VERSION.crate, check it, unpack into DIR
    local file="$3/$1-$TANSU_VERSION.crate"
    curl -sSfL -o "$file" "https://static.crates.io/crates/$1/$1-$TANSU_VERSION.crate"
    echo "$2  $file" | sha256sum -c --quiet - || { echo "setup: $1 checksum mismatch" >&2; exit 1; }
    tar xzf "$file" -C "$3"
}

need_tansu() {
    if [ -x "$TANSU_ROOT/bin/tansu" ]; then return; fi
    local here src
    here="$(cd "$(dirname "$0")" && pwd)"
    src="$CACHE/tansu-$TANSU_VERSION-$TANSU_PATCH-src"
    echo "setup: building patched tansu $TANSU_VERSION into $TANSU_ROOT (about 10 minutes, once)"
    rm -rf "$src" && mkdir -p "$src"
    fetch_crate tansu "$TANSU_CRATE_SHA256" "$src"
    fetch_crate tansu-storage "$TANSU_STORAGE_CRATE_SHA256" "$src"
    for fix in containing-batch contiguous-fetch fetch-loop; do
        patch -s -p1 -d "$src/tansu-storage-$TANSU_VERSION" < "$here/tansu-storage-$TANSU_VERSION-$fix.patch"
    done
    # The patched crate is a path dependency now: its lock entry loses the registry
    # source and checksum; every other package stays as tansu's Cargo.lock pins it.
    python3 - "$src/tansu-$TANSU_VERSION/Cargo.lock" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
entry = re.compile(r'(\[\[package\]\]\nname = "tansu-storage"\nversion = "[^"]+"\n)source = "[^"]+"\nchecksum = "[^"]+"\n')
text, n = entry.subn(r'\1', text)
if n != 1:
    sys.exit("setup: tansu-storage not found once in tansu's Cargo.lock")
open(path, "w").write(text)
PY
    CARGO_TARGET_DIR="$CACHE/tansu-build-$TANSU_PATCH" cargo install --locked \
        --path "$src/tansu-$TANSU_VERSION" --features dynostore --root "$TANSU_ROOT" \
        --config "patch.crates-io.tansu-storage.path=\"$src/tansu-storage-$TANSU_VERSION\""
    rm -rf "$CACHE/tansu-build-$TANSU_PATCH" "$src"
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

# Installs Debian packages whose services must not start: the tests and benchmarks run
# their own servers, on their own ports.
apt_install_without_services() {
    as_root apt-get update -qq
    local blocker=/usr/sbin/policy-rc.d placed=""
    if [ ! -e "$blocker" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$blocker" >/dev/null
        as_root chmod +x "$blocker"
        placed=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
    if [ -n "$placed" ]; then as_root rm -f "$blocker"; fi
}

need_nchan() {
    if [ ! -f /usr/share/nginx/modules-available/mod-http-nchan.conf ] && \
       [ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
        echo "setup: installing nginx-light and libnginx-mod-nchan (apt)"
        apt_install_without_services nginx-light libnginx-mod-nchan
    fi
}

need_valgrind() {
    if ! command -v valgrind >/dev/null 2>&1; then
        echo "setup: installing valgrind (apt)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq valgrind >/dev/null
    fi
}

# The load balancers of deploy/, which the fault suite runs in front of three instances.
need_balancers() {
    local missing=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "setup: installing ${missing[*]} (apt)"
        apt_install_without_services "${missing[@]}"
    fi
}

case "${1:-all}" in
    rust) need_rust ;;
    browser) need_browser ;;
    tansu) need_tansu ;;
    nchan) need_nchan ;;
    balancers) need_balancers ;;
    valgrind) need_valgrind ;;
    all) need_rust; need_redis; need_browser; need_tansu; need_balancers ;;
    *) echo "usage: $0 [rust|browser|tansu|nchan|balancers|valgrind|all]" >&2; exit 2 ;;
esac
