#!/usr/bin/env bash
# The conformance kit and the policy runtime build without Kafka, Redis or an HTTP
# server: a plugin author's `cargo test` with the kit compiles neither librdkafka nor
# the gateway. Fails naming any such crate in their dependency trees (dev-deps included).
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(rdkafka|rdkafka-sys|redis|axum|hyper|tokio|reqwest|streamgate)$'
status=0
for crate in streamgate-conformance streamgate-runtime; do
    found=$(cargo tree -p "$crate" -e normal,build,dev --prefix none --format '{p}' \
        | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
    if [ -n "$found" ]; then
        echo "check_kit_deps: $crate must not depend on: $(echo "$found" | tr '\n' ' ')" >&2
        status=1
    fi
done
[ "$status" = 0 ] && echo "check_kit_deps: the kit and the runtime depend on no Kafka, Redis or HTTP crate"
exit "$status"
