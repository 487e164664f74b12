#!/usr/bin/env bash
# Server memory around a fan-out burst: a fresh release `postmesh up` per
# run, N subscribers on `bench.#`, M messages of 256 B from 4 publishers,
# with and without `?batch=true`. Prints one JSON line per run (the
# `server_rss_*` fields: KiB before, connected, peak, 1 s after the burst,
# 1 s and 5 s after every subscriber left).
#
#   POSTMESH=target/release/postmesh BENCH=target/release/postmesh-bench \
#   N=10000 M=200 RUNS=1 bench/burst-memory.sh
#
# Extra environment for the server (an allocator's settings, for example)
# passes through as SERVER_ENV="NAME=value ...".
set -euo pipefail
cd "$(dirname "$0")/.."
POSTMESH=${POSTMESH:-target/release/postmesh}
BENCH=${BENCH:-target/release/postmesh-bench}
N=${N:-10000}
M=${M:-200}
RUNS=${RUNS:-1}
PORT=${PORT:-7611}
LABEL=${LABEL:-postmesh}
SERVER_ENV=${SERVER_ENV:-}

for run in $(seq "$RUNS"); do
    for mode in batch unbatched; do
        data=$(mktemp -d)
        # shellcheck disable=SC2086
        env $SERVER_ENV "$POSTMESH" up --listen "127.0.0.1:$PORT" --data "$data" \
            >"$data/log" 2>&1 &
        pid=$!
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
            sleep 0.1
        done
        flag=""
        if [ "$mode" = unbatched ]; then flag="--unbatched"; fi
        # shellcheck disable=SC2086
        "$BENCH" fanout --url "ws://127.0.0.1:$PORT/ws" --server-pid "$pid" \
            --subscribers "$N" --messages "$M" --size 256 --memory \
            --label "$LABEL $mode" $flag
        kill "$pid"
        wait "$pid" || true
        rm -rf "$data"
    done
done
