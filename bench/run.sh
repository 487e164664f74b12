#!/usr/bin/env bash
# The whole benchmark matrix, postmesh against NATS, Mosquitto and
# Socket.IO, in one run on one machine: idle memory, fan-out flat out (two
# sizes), fan-out paced at half of postmesh's own maximum, churn, and
# publish ingest; then postmesh's HTTP batch ingest into a store of
# $STORE messages and history queries on it. Every setting runs $RUNS times
# with fresh servers; the medians, the machine and the commands go into
# bench/RESULTS.md (between the run.sh markers) and bench/fanout.svg.
# Raw JSON lines: bench/results/run.jsonl.
#
#   bench/run.sh    # RUNS=3 CONNS=19000 STORE=1000000 N1=1000 M1=2000 N2=10000 M2=200
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3} CONNS=${CONNS:-19000} STORE=${STORE:-1000000} SOURCES=${SOURCES:-8}
PORT=${PORT:-7402}
# The fan-out settings: N subscribers, M messages each.
N1=${N1:-1000} M1=${M1:-2000} N2=${N2:-10000} M2=${M2:-200}
cargo build --release --workspace --bins -q
BIN=$PWD/target/release/postmesh BENCH=$PWD/target/release/postmesh-bench
work=$(mktemp -d) pm_pid=""
cleanup() {
    [[ -n $pm_pid ]] && kill "$pm_pid" 2>/dev/null || true
    bench/peers.sh stop "$work/peers" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p bench/results
out=bench/results/run.jsonl
: >"$out"
ulimit -n "$(ulimit -Hn)"

start_postmesh() {  # a fresh `postmesh up` on embedded engines
    "$BIN" up --listen "127.0.0.1:$PORT" --data "$work/pm$1" >"$work/pm.out" 2>"$work/pm.err" &
    pm_pid=$!
    for _ in $(seq 1 100); do
        grep -q "is up" "$work/pm.out" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "postmesh did not start" >&2; cat "$work/pm.err" >&2; exit 1
}
stop_postmesh() {
    kill "$pm_pid"; wait "$pm_pid" 2>/dev/null || true; pm_pid=""
}
target() {  # system → the harness's flags for it
    case $1 in
        postmesh) echo "--system postmesh --url ws://127.0.0.1:$PORT/ws --server-pid $pm_pid" ;;
        nats) echo "--system nats --url $nats_url --server-pid $nats_pid" ;;
        mqtt) echo "--system mqtt --url $mosquitto_url --server-pid $mosquitto_pid" ;;
        socketio) echo "--system socketio --url $socketio_url --server-pid $socketio_pid" ;;
    esac
}
measure() {  # scenario system [flags]: one JSON line into $out
    local scenario=$1 system=$2; shift 2
    echo "  $scenario $system $*" >&2
    # shellcheck disable=SC2046
    "$BENCH" "$scenario" $(target "$system") "$@" | head -1 | tee -a "$out" >/dev/null
}
SYSTEMS="postmesh nats mqtt socketio"

for run in $(seq 1 "$RUNS"); do
    echo "run $run of $RUNS" >&2
    bench/peers.sh start "$work/peers" >"$work/peers.env"
    # shellcheck disable=SC1091
    . "$work/peers.env"
    start_postmesh "$run"
    # Idle first, on fresh servers: nothing freed earlier is reused.
    for s in $SYSTEMS; do measure idle "$s" --connections "$CONNS" --sources "$SOURCES"; done
    for s in $SYSTEMS; do measure fanout "$s" --subscribers "$N1" --messages "$M1" --size 256; done
    for s in $SYSTEMS; do measure fanout "$s" --subscribers "$N2" --messages "$M2" --size 256; done
    # Half of postmesh's own maximum message rate in this run.
    rate=$(grep '"system":"postmesh"' "$out" | grep "\"subscribers\":$N1," | grep '"rate":null' |
        tail -1 | sed 's/.*"deliveries_per_s":\([0-9.]*\).*/\1/' | awk -v n="$N1" '{printf "%.0f", $1 / n / 2}')
    for s in $SYSTEMS; do
        measure fanout "$s" --subscribers "$N1" --messages "$M1" --size 256 --rate "$rate" --publishers 1
    done
    for s in $SYSTEMS; do measure churn "$s" --workers 32 --seconds 10 --sources "$SOURCES"; done
    for s in $SYSTEMS; do measure ingest "$s" --messages 200000 --size 256 --publishers 4; done
    # postmesh only: HTTP batch ingest into the store, then history on it.
    measure ingest postmesh --http "http://127.0.0.1:$PORT" --messages "$STORE" --size 200 \
        --publishers 4 --batch 1000
    measure history postmesh --pattern 'feeds.cat7.#' --limit 50 --connections 4 --seconds 10
    stop_postmesh
    bench/peers.sh stop "$work/peers" >/dev/null
done

{
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))," \
        "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr); open files per process: $(ulimit -Hn)."
    echo "Versions: $("$BIN" --version), $(nats-server --version), mosquitto" \
        "$(mosquitto -h 2>/dev/null | awk 'NR==1 {print $3}'), Socket.IO" \
        "$(node -p 'require("./bench/socketio/node_modules/socket.io/package.json").version') on Node $(node --version)."
    echo
    echo "Command: \`RUNS=$RUNS CONNS=$CONNS STORE=$STORE N1=$N1 M1=$M1 N2=$N2 M2=$M2 bench/run.sh\` ($(date -u +%Y-%m-%d)); medians of $RUNS runs;" \
        "raw lines in \`bench/results/run.jsonl\`."
} >"$work/preamble.md"
"$BENCH" report --input "$out" --plot bench/fanout.svg --preamble "$work/preamble.md" \
    --results bench/RESULTS.md
echo "wrote bench/RESULTS.md and bench/fanout.svg" >&2
