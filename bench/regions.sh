#!/usr/bin/env bash
# Two regions joined through a hub, measured in one run on one machine:
# delivery within a region against delivery across regions through the
# hub (latency at a steady rate, and throughput), the links a star and a
# full mesh need for N regions (checked against `postmesh router plan`),
# and how long after a hub restart the first buffered message arrives.
#
# The mesh is deploy/local-mesh.sh's: three RabbitMQ nodes (hub, east,
# west), the Rabbit Router, and a core and a gateway per region. Devices
# are on east's gateway; publishers on east's (within a region) or west's
# (across: west → hub → east). Prints Markdown; raw JSON lines go to
# bench/results/regions.jsonl.
#
#   bench/regions.sh     # SUBS=10 M=2000 RATE=200 TSUBS=100 TM=5000 RECOVERY=20
# PROFILE=debug runs the debug build (to try the script, not to measure).
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS=${SUBS:-10} M=${M:-2000} RATE=${RATE:-200} SIZE=${SIZE:-256}
TSUBS=${TSUBS:-100} TM=${TM:-5000} RECOVERY=${RECOVERY:-20} PROFILE=${PROFILE:-release}
if [[ $PROFILE == release ]]; then
    cargo build --release -q -p postmesh -p postmesh-bench --bins
else
    cargo build -q -p postmesh -p postmesh-bench --bins
fi
BIN=$PWD/target/$PROFILE/postmesh BENCH=$PWD/target/$PROFILE/postmesh-bench
# postmesh without this script's settings for local-mesh.sh, which are not
# configuration keys (postmesh refuses unknown POSTMESH_* ones).
pm() { env -u POSTMESH_BIN -u POSTMESH_MESH_DIR POSTMESH_LOG=warn "$BIN" "$@"; }
work=$(mktemp -d) pids=()
export POSTMESH_BIN=$BIN POSTMESH_MESH_DIR=$work/mesh
cleanup() {
    # Each a process group of its own (setsid): the group goes.
    for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
    deploy/local-mesh.sh down >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p bench/results
out=bench/results/regions.jsonl
: >"$out"

deploy/local-mesh.sh up >"$work/regions"
url() { sed -n "s/^region $1 .*$2=\([^ ]*\).*/\1/p" "$work/regions"; }
east_ws=$(url east ws) west_ws=$(url west ws) west_http=$(url west http)
east_gw=$(<"$POSTMESH_MESH_DIR/pids/gateway-east")

fanout() {  # label publish-url [extra args]
    local label=$1 pub=$2; shift 2
    "$BENCH" fanout --url "$east_ws" --publish-url "$pub" --server-pid "$east_gw" \
        --label "$label" --size "$SIZE" --settle-ms 2000 "$@" | head -1 | tee -a "$out"
}
# Latency at a steady rate, then throughput, each within and across.
fanout "within east" "$east_ws" --subscribers "$SUBS" --messages "$M" --rate "$RATE" --publishers 1
fanout "west → hub → east" "$west_ws" --subscribers "$SUBS" --messages "$M" --rate "$RATE" --publishers 1
fanout "within east" "$east_ws" --subscribers "$TSUBS" --messages "$TM" --publishers 4
fanout "west → hub → east" "$west_ws" --subscribers "$TSUBS" --messages "$TM" --publishers 4

# Links: the router's own plan for N regions (no broker is contacted).
links=$work/links.txt
: >"$links"
for n in 3 10 50; do
    cfg=$work/plan-$n.toml
    {
        echo "[router]"
        echo "[router.hub]"
        echo 'name = "hub"'
        echo 'amqp = "amqp://fed:secret@hub.example:5672/%2f"'
        echo 'management = "http://hub.example:15672"'
        for ((i = 0; i < n; i++)); do
            echo "[[router.regions]]"
            echo "name = \"r$i\""
            echo "amqp = \"amqp://fed:secret@r$i.example:5672/%2f\""
            echo "management = \"http://r$i.example:15672\""
        done
    } >"$cfg"
    plan=$(pm router plan --config "$cfg")
    upstreams=$(grep -c '^  upstream ' <<<"$plan")
    summary=$(tail -n 1 <<<"$plan")
    echo "$n|$upstreams|$summary" >>"$links"
done

# Recovery: a device on east follows rec.#; the hub is killed (kill -9),
# west publishes RECOVERY messages meanwhile (they wait in west's link
# queue), then the hub is started again. Timestamps in seconds.
tail_log=$work/tail.log
export BIN
setsid bash -c 'env -u POSTMESH_BIN -u POSTMESH_MESH_DIR POSTMESH_LOG=warn "$BIN" tail "rec.#" --url "$0" |
    while IFS= read -r line; do echo "$(date +%s.%N) $line"; done' "${east_ws%/ws}" >"$tail_log" 2>&1 &
pids+=($!)
sleep 3
pm publish rec.probe '"probe"' --url "$west_http" >/dev/null
for _ in $(seq 1 100); do grep -q rec.probe "$tail_log" && break; sleep 0.1; done
grep -q rec.probe "$tail_log" || { echo "the probe did not cross" >&2; exit 1; }
deploy/local-mesh.sh kill hub
for i in $(seq 1 "$RECOVERY"); do
    pm publish "rec.$i" "$i" --url "$west_http" >/dev/null
done
restart=$(date +%s.%N)
deploy/local-mesh.sh start hub
accepting=$(date +%s.%N)
for _ in $(seq 1 600); do
    [[ $(grep -c '"rec\.[0-9]' "$tail_log") -ge $RECOVERY ]] && break
    sleep 0.1
done
first=$(grep -m1 '"rec\.[0-9]' "$tail_log" | cut -d' ' -f1 || true)
last=$(grep '"rec\.[0-9]' "$tail_log" | tail -n 1 | cut -d' ' -f1 || true)
arrived=$(grep -c '"rec\.[0-9]' "$tail_log" || true)
echo "{\"scenario\":\"recovery\",\"buffered\":$RECOVERY,\"arrived\":$arrived,\"restart\":$restart,\"accepting\":$accepting,\"first\":${first:-null},\"last\":${last:-null}}" | tee -a "$out"

python3 - "$out" "$links" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
fan = [r for r in rows if r["scenario"] == "fanout"]
def us(v):
    return f"{v / 1000:.1f} ms" if v >= 1000 else f"{v} µs"
print("| delivery | subscribers | messages | rate | deliveries/s | p50 | p99 | max | delivered | east gateway CPU s | harness CPU s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in fan:
    rate = f"{r['rate']:.0f}/s" if r["rate"] else "max"
    print(f"| {r['system']} | {r['subscribers']} | {r['messages']} | {rate} | {r['deliveries_per_s']:,.0f} | "
          f"{us(r['p50_us'])} | {us(r['p99_us'])} | {us(r['max_us'])} | {100 * r['deliveries'] / r['expected']:.1f}% | "
          f"{r.get('server_cpu_s', 0):.1f} | {r.get('harness_cpu_s', 0):.1f} |")
paced = [r for r in fan if r["rate"]]
fast = [r for r in fan if not r["rate"]]
if len(paced) == 2 and len(fast) == 2:
    w, a = paced
    print()
    print(f"Across ÷ within: p50 {a['p50_us'] / max(w['p50_us'], 1):.2f}×, p99 {a['p99_us'] / max(w['p99_us'], 1):.2f}×, "
          f"throughput {fast[1]['deliveries_per_s'] / max(fast[0]['deliveries_per_s'], 1):.2f}×.")
print()
print("| regions N | star upstreams (2N) | full mesh upstreams (N(N-1)) | `router plan`: upstream lines | `router plan` says |")
print("| --- | --- | --- | --- | --- |")
for line in open(sys.argv[2]):
    n, ups, summary = line.rstrip("\n").split("|", 2)
    n = int(n)
    ok = int(ups) == 2 * n
    print(f"| {n} | {2 * n} | {n * (n - 1)} | {ups}{'' if ok else ' (differs!)'} | {summary} |")
print()
rec = [r for r in rows if r["scenario"] == "recovery"][0]
if rec["first"] is None:
    print(f"Recovery: none of {rec['buffered']} buffered messages arrived.")
else:
    print(f"Recovery: {rec['arrived']} of {rec['buffered']} buffered messages arrived; the first "
          f"{rec['first'] - rec['restart']:.2f} s after the hub was started again "
          f"({rec['first'] - rec['accepting']:.2f} s after it accepted AMQP; its boot took "
          f"{rec['accepting'] - rec['restart']:.2f} s), the last {rec['last'] - rec['restart']:.2f} s after.")
PY
