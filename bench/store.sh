#!/usr/bin/env bash
# The embedded store against the CQL store on Cassandra, through the same
# `Store` code (`postmesh-bench store`), in one run on one machine:
#
# - ingest: single-message puts of depth-3 paths, $IN_FLIGHT in flight,
#   into an empty store ($INGEST_EMBEDDED and $INGEST_CQL messages);
# - load: $STORE depth-3 messages (`feeds.cat<0..20>.<0..5000>`;
#   $STORE_CQL into Cassandra) in batches, as fast as each store takes
#   them ($LOAD_CQL_BATCH per put, $LOAD_CQL_IN_FLIGHT puts in flight for
#   Cassandra), then `history feeds.cat7.# limit 50` on it, one query at a
#   time and 4 at a time;
# - write amplification: $AMP messages of each path depth 1..5 into an
#   empty store (a keyspace per depth), rows counted per table; bytes from
#   the embedded store's flushed keyspaces, and for Cassandra the rows and
#   sstable bytes each memtable flush wrote (the node's log) and the
#   tables' directories once the node has stopped (a stop drains: every
#   memtable is flushed);
# - the Cassandra node's CPU seconds and peak RSS per phase and overall.
#
# Embedded first (the Cassandra node idles meanwhile), then Cassandra.
# Starts its own node through deploy/cassandra.sh on $CQL_HOST:$CQL_PORT
# (never the test node's default address), stops it and deletes $WORK at
# the end (KEEP=1 keeps it). Raw JSON lines: bench/results/store.jsonl;
# the Markdown tables: bench/results/store.md (and stdout).
#
#   bench/store.sh   # STORE=1000000 STORE_CQL=$STORE INGEST_EMBEDDED=200000 INGEST_CQL=20000 AMP=10000
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-1000000} STORE_CQL=${STORE_CQL:-${STORE:-1000000}} INGEST_EMBEDDED=${INGEST_EMBEDDED:-200000} INGEST_CQL=${INGEST_CQL:-20000}
AMP=${AMP:-10000} IN_FLIGHT=${IN_FLIGHT:-64}
LOAD_CQL_BATCH=${LOAD_CQL_BATCH:-1} LOAD_CQL_IN_FLIGHT=${LOAD_CQL_IN_FLIGHT:-256}
QUERIES=${QUERIES:-2000}
WORK=${WORK:-/tmp/pm-store-bench}
export POSTMESH_CQL_HOST=${CQL_HOST:-127.0.0.9} POSTMESH_CQL_PORT=${CQL_PORT:-19242}
export POSTMESH_CASSANDRA_STORAGE_PORT=${CQL_STORAGE_PORT:-17200}
export POSTMESH_CASSANDRA_JMX_PORT=${CQL_JMX_PORT:-17399}
export POSTMESH_CASSANDRA_DIR=$WORK/cassandra
cql=cql://$POSTMESH_CQL_HOST:$POSTMESH_CQL_PORT
cargo build --release -p postmesh-bench -q
BENCH=$PWD/target/release/postmesh-bench
cleanup() {
    deploy/cassandra.sh stop >/dev/null 2>&1 || true
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK" bench/results
out=bench/results/store.jsonl
: >"$out"

# utime + stime of a process in seconds, and its VmHWM (peak RSS) in KiB.
cpu_s() { awk '{ split($0, a, ") "); split(a[2], f, " "); printf "%.1f", (f[12] + f[13]) / 100 }' "/proc/$1/stat"; }
hwm_kib() { awk '/VmHWM/ { print $2 }' "/proc/$1/status"; }

started=$(date -u '+%Y-%m-%d %H:%M UTC')
deploy/cassandra.sh start >"$WORK/cassandra.env"
cpid=$(cat "$POSTMESH_CASSANDRA_DIR/cassandra.pid")
start_cpu=$(cpu_s "$cpid") start_hwm=$(hwm_kib "$cpid")
echo "cassandra pid $cpid: ${start_cpu} s of CPU and ${start_hwm} KiB peak RSS to start" >&2

measure() {  # label store args...: one JSON line into $out
    local label=$1 target=$2; shift 2
    echo "  $label $*" >&2
    local pid_flag=()
    [[ $target == cql://* ]] && pid_flag=(--server-pid "$cpid")
    "$BENCH" store --store "$target" "${pid_flag[@]}" "$@" | head -1 |
        python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r["label"]=sys.argv[1]; print(json.dumps(r))' "$label" |
        tee -a "$out" >/dev/null
}

emb=embedded:$WORK/embedded
measure ingest "$emb-ingest" ingest --messages "$INGEST_EMBEDDED" --depth 3 --in-flight "$IN_FLIGHT"
measure load "$emb-history" load --messages "$STORE" --batch 1000 --in-flight 4
measure history "$emb-history" history --queries "$QUERIES" --in-flight 1
measure history4 "$emb-history" history --queries "$QUERIES" --in-flight 4
du -sb "$WORK/embedded-history" | awk '{ print $1 }' >bench/results/store-embedded-history.bytes
rm -rf "$WORK/embedded-history" "$WORK/embedded-ingest"
for d in 1 2 3 4 5; do
    measure "amplification" "$emb-d$d" amplification --depth "$d" --messages "$AMP" --in-flight "$IN_FLIGHT"
    rm -rf "$WORK/embedded-d$d"
done

measure ingest "$cql/bench_ingest" ingest --messages "$INGEST_CQL" --depth 3 --in-flight "$IN_FLIGHT"
measure load "$cql/bench_history" load --messages "$STORE_CQL" --batch "$LOAD_CQL_BATCH" \
    --in-flight "$LOAD_CQL_IN_FLIGHT"
measure history "$cql/bench_history" history --queries "$QUERIES" --in-flight 1
measure history4 "$cql/bench_history" history --queries "$QUERIES" --in-flight 4
for d in 1 2 3 4 5; do
    measure "amplification" "$cql/bench_amp_d$d" amplification --depth "$d" --messages "$AMP" \
        --in-flight "$IN_FLIGHT"
done

end_cpu=$(cpu_s "$cpid") end_hwm=$(hwm_kib "$cpid")
end_rss=$(awk '/VmRSS/ { print $2 }' "/proc/$cpid/status")
deploy/cassandra.sh stop
# Bytes on disk of each table once the node has drained (sstables only:
# the commit log is elsewhere), per keyspace, and of the Paxos state.
data=$POSTMESH_CASSANDRA_DIR/data/data
{
    for ks in "$data"/bench_*; do
        for t in "$ks"/*; do
            echo "$(basename "$ks") $(basename "$t" | sed 's/-[0-9a-f]*$//') $(du -sb "$t" | awk '{ print $1 }')"
        done
    done
    for t in "$data"/system/paxos-*; do
        echo "system paxos $(du -sb "$t" | awk '{ print $1 }')"
    done
    echo "commitlog - $(du -sb "$POSTMESH_CASSANDRA_DIR/data/commitlog" | awk '{ print $1 }')"
} >bench/results/store-cassandra-du.txt
ls "$data"/bench_history/messages_by_folder-*/ >"$WORK/sstables.txt"

python3 bench/store_report.py "$out" bench/results/store-cassandra-du.txt \
    "$(cat bench/results/store-embedded-history.bytes)" "$start_cpu" "$start_hwm" "$end_cpu" "$end_hwm" "$end_rss" \
    | tee bench/results/store.md
{
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr)."
    echo "Started $started; finished $(date -u '+%Y-%m-%d %H:%M UTC'). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Command: \`STORE=$STORE STORE_CQL=$STORE_CQL INGEST_EMBEDDED=$INGEST_EMBEDDED INGEST_CQL=$INGEST_CQL AMP=$AMP IN_FLIGHT=$IN_FLIGHT LOAD_CQL_BATCH=$LOAD_CQL_BATCH LOAD_CQL_IN_FLIGHT=$LOAD_CQL_IN_FLIGHT QUERIES=$QUERIES bench/store.sh\`"
    echo "Cassandra: $(java -version 2>&1 | head -1), sstables of bench_history.messages_by_folder: $(grep -c 'Data.db' "$WORK/sstables.txt") ($(grep -m1 'Data.db' "$WORK/sstables.txt" || true))."
} | tee -a bench/results/store.md
