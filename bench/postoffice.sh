#!/usr/bin/env bash
# Publish → device latency and throughput through RabbitMQ against the
# embedded postoffice, and the cost of gold over silver, in one run on one
# machine. Prints a Markdown table of medians; raw JSON lines go to
# bench/results/postoffice.jsonl.
#
#   bench/postoffice.sh            # RUNS=3 N=1000 M=2000 RATE=200 by default
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3} N=${N:-1000} M=${M:-2000} SIZE=${SIZE:-256} RATE=${RATE:-200}
cargo build --release --workspace --bins -q
BIN=$PWD/target/release/postmesh BENCH=$PWD/target/release/postmesh-bench
work=$(mktemp -d) pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    deploy/rabbitmq-node.sh stop "$work/rabbit" || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p bench/results
out=bench/results/postoffice.jsonl
: >"$out"

deploy/rabbitmq-node.sh start "$work/rabbit" >"$work/rabbit.env"
# shellcheck disable=SC1091
. "$work/rabbit.env"

port=7600
serve() {  # name args... : starts postmesh, waits for its gateway, sets $url $pid
    local name=$1; shift
    port=$((port + 1))
    POSTMESH_NODE__INSTANCE=$name POSTMESH_NODE__REGION=bench$$ \
        "$BIN" "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pid=$!; pids+=("$pid")
    url=""
    for _ in $(seq 1 150); do
        url=$(grep -o 'ws://[^ ]*' "$work/$name.out" 2>/dev/null | head -1 || true)
        [[ -n $url ]] && return 0
        grep -q "is up" "$work/$name.out" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "$name did not start" >&2; cat "$work/$name.err" >&2; exit 1
}
fanout() {  # label pid url class [extra args]
    local label=$1 spid=$2 u=$3 class=$4; shift 4
    "$BENCH" fanout --url "$u" --server-pid "$spid" --label "$label" --class "$class" \
        --subscribers "$N" --messages "$M" --size "$SIZE" "$@" | head -1 | tee -a "$out"
}

for run in $(seq 1 "$RUNS"); do
    echo "run $run of $RUNS" >&2
    serve "embedded$run" up --listen 127.0.0.1:$((port + 1)) --data "$work/embedded$run"
    fanout "up, embedded postoffice" "$pid" "$url" silver
    fanout "up, embedded postoffice" "$pid" "$url" silver --rate "$RATE" --publishers 1
    kill "$pid"; wait "$pid" 2>/dev/null || true

    serve "amqp$run" up --listen 127.0.0.1:$((port + 1)) --data "$work/amqp$run" --amqp "$AMQP_URL"
    fanout "up, RabbitMQ postoffice" "$pid" "$url" silver
    fanout "up, RabbitMQ postoffice" "$pid" "$url" silver --rate "$RATE" --publishers 1
    kill "$pid"; wait "$pid" 2>/dev/null || true

    serve "core1-$run" core --amqp "$AMQP_URL" --data "$work/c1-$run"; c1=$pid
    serve "core2-$run" core --amqp "$AMQP_URL" --data "$work/c2-$run"; c2=$pid
    serve "gw-$run" gateway --amqp "$AMQP_URL" --listen 127.0.0.1:$((port + 1)); gw=$pid; gwurl=$url
    for class in silver gold; do
        fanout "gateway + 2 cores, $class" "$gw" "$gwurl" "$class"
        fanout "gateway + 2 cores, $class" "$gw" "$gwurl" "$class" --rate "$RATE" --publishers 1
    done
    kill "$gw" "$c1" "$c2"; wait "$gw" "$c1" "$c2" 2>/dev/null || true
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r["system"], r["rate"])
    rows.setdefault(key, []).append(r)
print("| setup | rate | runs | deliveries/s | p50 µs | p99 µs | max µs | delivered | server CPU s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for (system, rate), rs in rows.items():
    med = lambda k: statistics.median(r[k] for r in rs)
    cpu = [r["server_cpu_s"] for r in rs if r["server_cpu_s"] is not None]
    print(f"| {system} | {'max' if rate is None else f'{rate:.0f}/s'} | {len(rs)} | {med('deliveries_per_s'):,.0f} | "
          f"{med('p50_us'):,.0f} | {med('p99_us'):,.0f} | {med('max_us'):,.0f} | "
          f"{min(r['deliveries'] for r in rs)}/{rs[0]['expected']} | "
          f"{statistics.median(cpu) if cpu else float('nan'):.1f} |")
PY
