#!/usr/bin/env bash
# `make bench-instructions`: the policy_chain bench's table counted in instructions per
# event instead of nanoseconds. valgrind's callgrind counts every instruction executed
# inside the chain's push (host code and the plugins' compiled Wasm alike), so the figures
# are the same on every run however busy the machine is: the measure to compare two
# builds with on a shared machine. (A `rep movsb` copy counts one instruction per byte,
# so large block copies weigh more here than in time.)
#   CHAIN_INSTRUCTIONS_EVENTS  events per run (default 50000: a minute for batch 1)
#   CHAIN_INSTRUCTIONS_BATCHES batch sizes (default "1 100 1000 10000")
set -euo pipefail

EVENTS="${CHAIN_INSTRUCTIONS_EVENTS:-50000}"
BATCHES="${CHAIN_INSTRUCTIONS_BATCHES:-1 100 1000 10000}"
CARGO="${CARGO:-cargo}"

bench=$("$CARGO" bench -p streamgate-runtime --bench policy_chain --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "policy_chain":
        print(m["executable"])')
[ -x "$bench" ] || { echo "chain_instructions: could not build the policy_chain bench" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Instructions per event of one path (wasm, native, host, pass) at one batch size.
per_event() {
    local path=$1 batch=$2 function='*Chain::push*'
    [ "$path" = native ] && function='*NativeChain::push*'
    (cd host/runtime && POLICY_CHAIN_PROFILE=$path POLICY_CHAIN_BATCH=$batch POLICY_CHAIN_EVENTS=$EVENTS \
        valgrind --tool=callgrind --smc-check=all-non-file --toggle-collect="$function" \
        --callgrind-out-file="$out/$path.$batch" "$bench" >"$out/$path.$batch.log" 2>&1) ||
        { cat "$out/$path.$batch.log" >&2; exit 1; }
    local collected
    collected=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/$path.$batch.log")
    echo $((collected / EVENTS))
}

echo "taxi chain (ordering → staleness → dedupe), $EVENTS events over 200 keys: instructions per event (callgrind)"
echo "| batch | Wasm | native | Wasm vs native | host, no stage | host + pass-through stage |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
for batch in $BATCHES; do
    wasm=$(per_event wasm "$batch")
    native=$(per_event native "$batch")
    host=$(per_event host "$batch")
    pass=$(per_event pass "$batch")
    ratio=$(python3 -c "print(f'{$wasm / $native:.2f}x')")
    echo "| $batch | $wasm | $native | $ratio | $host | $pass |"
done
echo
echo "Counted inside Chain::push (NativeChain::push for the native path), from the first push to the last;"
echo "building the inputs and dropping the released events are outside. Columns as in \`make bench\`'s policy_chain."
