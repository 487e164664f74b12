#!/usr/bin/env bash
# SockJS xhr-streaming against WebSocket, in one run: idle memory per
# subscribed device, then fan-out deliveries/s. Each measurement gets a
# fresh release `postmesh up` (embedded engines) on its own port and data
# directory; publishers are WebSocket in both fan-outs, so only the
# subscribers' transport differs. Prints one JSON line per measurement.
#
#   cargo build --release --bin postmesh -p postmesh-bench
#   IDLE=2000 SUBS=500 MSGS=1000 bench/sockjs.sh | tee sockjs.jsonl
#
# A SockJS xhr-streaming session holds one socket on each side, as a
# WebSocket does: IDLE stays well under the per-process file limit
# (machine notes: hard `ulimit -n` 20 000) for the harness and the server.
set -euo pipefail
cd "$(dirname "$0")/.."
POSTMESH=${POSTMESH:-target/release/postmesh}
BENCH=${BENCH:-target/release/postmesh-bench}
IDLE=${IDLE:-2000}
SUBS=${SUBS:-500}
MSGS=${MSGS:-1000}
SIZE=${SIZE:-256}
PORT=${PORT:-7621}

if [ "$IDLE" -gt 19000 ] || [ "$SUBS" -gt 19000 ]; then
    echo "IDLE and SUBS must stay under 19000: one process holds about 19 900 sockets here" >&2
    exit 1
fi

pid=""
data=""
start_server() {
    data=$(mktemp -d -t postmesh-sockjs-bench.XXXXXX)
    "$POSTMESH" up --listen "127.0.0.1:$PORT" --data "$data" >"$data/log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && return 0
        sleep 0.1
    done
    echo "postmesh did not start:" >&2
    cat "$data/log" >&2
    exit 1
}
stop_server() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    [ -n "$data" ] && rm -rf "$data"
    pid=""
    data=""
}
trap stop_server EXIT

url="ws://127.0.0.1:$PORT/ws"
for system in postmesh sockjs; do
    start_server
    "$BENCH" idle --system "$system" --url "$url" --server-pid "$pid" \
        --connections "$IDLE" --settle 3
    stop_server
done
for system in postmesh sockjs; do
    start_server
    "$BENCH" fanout --system "$system" --url "$url" --server-pid "$pid" \
        --subscribers "$SUBS" --messages "$MSGS" --size "$SIZE" --publishers 4
    stop_server
done
