#!/usr/bin/env python3
"""Markdown tables of one bench/store.sh run.

Arguments: the JSON lines, the Cassandra `du` listing (keyspace table
bytes), the embedded history store's bytes on disk, then the Cassandra
node's CPU seconds and VmHWM (KiB) after start-up, the same at the end,
and its RSS (KiB) at the end. The node's log
($POSTMESH_CASSANDRA_DIR/log/system.log) says what each memtable flush
wrote: its operations (rows written, overwrites included) and the
sstable's data size before compression.
"""
import collections
import json
import os
import re
import sys

lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
du = collections.defaultdict(dict)
for l in open(sys.argv[2]):
    ks, table, size = l.split()
    du[ks][table] = int(size)
emb_history_bytes = int(sys.argv[3])

UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
writing = re.compile(r"\[(\S+)\] .* Writing Memtable-\w+@\d+\(([\d.]+)(B|KiB|MiB|GiB) serialized bytes, (\d+) ops")
completed = re.compile(
    r"\[(\S+)\] .* Completed flushing \S*/data/data/([^/]+)/([^/-]+)-[0-9a-f]+/\S+-Data\.db \(([\d.]+)(B|KiB|MiB|GiB)\)"
)
# (keyspace, table) -> [ops, serialized bytes, sstable data bytes]
flushed = collections.defaultdict(lambda: [0, 0.0, 0.0])
pending = {}
log = os.path.join(os.environ.get("POSTMESH_CASSANDRA_DIR", "."), "log", "system.log")
for l in open(log, errors="replace") if os.path.exists(log) else []:
    m = writing.search(l)
    if m:
        pending[m.group(1)] = (int(m.group(4)), float(m.group(2)) * UNITS[m.group(3)])
        continue
    m = completed.search(l)
    if m and m.group(1) in pending:
        ops, ser = pending.pop(m.group(1))
        f = flushed[(m.group(2), m.group(3))]
        f[0] += ops
        f[1] += ser
        f[2] += float(m.group(4)) * UNITS[m.group(5)]
start_cpu, start_hwm, end_cpu, end_hwm, end_rss = (float(x) for x in sys.argv[4:9])


def get(store, label):
    for r in lines:
        if r["store"] == store and r["label"] == label:
            return r
    return None


def ms(us):
    return f"{us / 1000:.2f} ms" if us < 100_000 else f"{us / 1e6:.2f} s"


def mib(kib):
    return f"{kib / 1024:,.0f} MiB"


def ratio(a, b):
    return f"{a / b:.1f}×" if a and b else "-"


E, C = "embedded", "cassandra"
out = []
row = lambda *c: out.append("| " + " | ".join(str(x) for x in c) + " |")

out.append("| figure | embedded (fjall, in process) | Cassandra (one node, CQL store) | embedded ÷ Cassandra |")
out.append("| --- | --- | --- | --- |")
ei, ci = get(E, "ingest"), get(C, "ingest")
row(
    f"ingest, depth 3, single-message puts, {ei['in_flight']} in flight: messages/s (messages)",
    f"{ei['messages_per_s']:,.0f} ({ei['messages']:,})",
    f"{ci['messages_per_s']:,.0f} ({ci['messages']:,})",
    ratio(ei["messages_per_s"], ci["messages_per_s"]),
)
row(
    "ingest: put latency p50 / p99",
    f"{ms(ei['put_latency']['p50_us'])} / {ms(ei['put_latency']['p99_us'])}",
    f"{ms(ci['put_latency']['p50_us'])} / {ms(ci['put_latency']['p99_us'])}",
    "-",
)
el, cl = get(E, "load"), get(C, "load")
row(
    "load of the history store: messages, batch × in flight, time, messages/s",
    f"{el['messages']:,}, {el['batch']} × {el['in_flight']}, {el['seconds']:.0f} s, {el['messages_per_s']:,.0f}/s",
    f"{cl['messages']:,}, {cl['batch']} × {cl['in_flight']}, {cl['seconds']:.0f} s, {cl['messages_per_s']:,.0f}/s",
    ratio(el["messages_per_s"], cl["messages_per_s"]),
)
for label, n in (("history", 1), ("history4", 4)):
    eh, ch = get(E, label), get(C, label)
    row(
        f"history `{eh['pattern']} limit {eh['limit']}`, {n} in flight, {eh['queries']:,} queries: p50 / p99",
        f"{ms(eh['p50_us'])} / {ms(eh['p99_us'])}",
        f"{ms(ch['p50_us'])} / {ms(ch['p99_us'])}",
        f"{ch['p50_us'] / max(eh['p50_us'], 1):.0f}× faster at p50, {ch['p99_us'] / max(eh['p99_us'], 1):.0f}× at p99",
    )
    row(
        f"history, {n} in flight: queries/s",
        f"{eh['queries_per_s']:,.0f}",
        f"{ch['queries_per_s']:,.0f}",
        ratio(eh["queries_per_s"], ch["queries_per_s"]),
    )
cass_hist = sum(du["bench_history"].values())
paxos = du.get("system", {}).get("paxos", 0)
row(
    "history store on disk after the load, per message (Cassandra: its tables after the stop, LZ4; Paxos state apart)",
    f"{emb_history_bytes / 2**20:,.0f} MiB, {emb_history_bytes / el['messages']:,.0f} B",
    f"{cass_hist / 2**20:,.0f} MiB, {cass_hist / cl['messages']:,.0f} B "
    f"(+ system.paxos, every keyspace: {paxos / 2**20:,.0f} MiB)",
    ratio(emb_history_bytes / el["messages"], cass_hist / cl["messages"]),
)
out.append("")

out.append("**Write amplification per path depth** (" + f"{next(r for r in lines if r['phase'] == 'amplification')['messages']:,}" +
           " messages of each depth into an empty store, single-message puts; rows counted in each table; bytes per message)")
out.append("")
out.append("| depth | path | message JSON | embedded rows | embedded bytes (keys + values) | embedded on disk (flushed) | Cassandra rows held | Cassandra rows written | Cassandra flushed (sstable data, before compression) | Cassandra on disk (sstables, LZ4) | Cassandra ÷ embedded, flushed |")
out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
lwts = sum(r["messages"] for r in lines if r["store"] == C and r["phase"] in ("ingest", "load", "amplification"))
detail = []
for d in range(1, 6):
    e = next(r for r in lines if r["store"] == E and r["phase"] == "amplification" and r["depth"] == d)
    c = next(r for r in lines if r["store"] == C and r["phase"] == "amplification" and r["depth"] == d)
    n = e["messages"]
    e_logical = sum(t["logical_bytes"] for t in e["tables"]) / n
    e_disk = sum(t["disk_bytes"] for t in e["tables"]) / n
    ks = du.get(f"bench_amp_d{d}", {})
    c_disk = sum(ks.get(t["table"], 0) for t in c["tables"]) / c["messages"]
    fl = [flushed.get((f"bench_amp_d{d}", t["table"]), [0, 0, 0]) for t in c["tables"]]
    c_ops = sum(f[0] for f in fl) / c["messages"]
    c_flushed = sum(f[2] for f in fl) / c["messages"]
    path = ["feeds", "cat7", "35", "x3", "y1"][:d]
    row(
        d,
        "`" + ".".join(path) + "`",
        f"{e['message_bytes']} B",
        f"{e['rows_per_message']:.2f}",
        f"{e_logical:,.0f} B",
        f"{e_disk:,.0f} B",
        f"{c['rows_per_message']:.2f}",
        f"{c_ops:.2f}",
        f"{c_flushed:,.0f} B",
        f"{c_disk:,.0f} B",
        f"{c_flushed / e_disk:.1f}×" if e_disk else "-",
    )
    detail.append(
        f"| {d} | "
        + ", ".join(f"{t['table']} {t['rows'] / n:.2f}" for t in e["tables"])
        + " | "
        + ", ".join(
            f"{t['table']} {t['rows'] / c['messages']:.2f} held, "
            f"{flushed.get((f'bench_amp_d{d}', t['table']), [0])[0] / c['messages']:.2f} written "
            f"({flushed.get((f'bench_amp_d{d}', t['table']), [0, 0, 0])[2] / c['messages']:,.0f} B)"
            for t in c["tables"]
        )
        + " |"
    )
out.append("")
px = flushed.get(("system", "paxos"), [0, 0, 0])
out.append(f"Besides, every Cassandra put is a lightweight transaction whose Paxos state lands in `system.paxos`: "
           f"{lwts:,} claims in this run; its flushes wrote {px[0]:,} rows ({px[0] / max(lwts, 1):.2f} per claim) and "
           f"{px[2] / 2**20:,.1f} MiB of sstable data ({px[2] / max(lwts, 1):,.0f} B per claim); "
           f"{paxos / 2**20:,.1f} MiB on disk at the end ({paxos / max(lwts, 1):,.0f} B per claim).")
out.append("")
out.append("Rows per message, per table (Cassandra: rows held, rows written, and sstable data flushed per message):")
out.append("")
out.append("| depth | embedded | Cassandra |")
out.append("| --- | --- | --- |")
out.extend(detail)
out.append("")

out.append("**CPU and memory per phase** (Cassandra: its JVM, from `/proc/<pid>/stat` and sampled `VmRSS`; "
           "the harness is the store itself for the embedded runs)")
out.append("")
out.append("| store | phase | seconds | Cassandra CPU s | Cassandra peak RSS | harness CPU s | harness peak RSS |")
out.append("| --- | --- | --- | --- | --- | --- | --- |")
for r in lines:
    secs = r.get("seconds", r.get("write", {}).get("seconds", 0))
    src = r if "harness_cpu_s" in r else r["write"]
    what = {
        "history": "history, 1 in flight",
        "history4": "history, 4 in flight",
        "amplification": f"amplification, depth {r.get('depth')}",
    }.get(r["label"], r["label"])
    row(
        r["store"],
        what,
        f"{secs:.1f}",
        "-" if src.get("server_cpu_s") is None else f"{src['server_cpu_s']:.1f}",
        "-" if src.get("server_rss_peak_kib") is None else mib(src["server_rss_peak_kib"]),
        f"{src['harness_cpu_s']:.1f}",
        mib(src["harness_rss_peak_kib"]),
    )
out.append("")
out.append(
    f"Cassandra over the whole run: {start_cpu:.0f} CPU s to start, {end_cpu:.0f} CPU s at the end "
    f"({end_cpu - start_cpu:,.0f} s for the run); peak RSS (VmHWM) {mib(end_hwm)} "
    f"({mib(start_hwm)} once started), {mib(end_rss)} resident at the end."
)
print("\n".join(out))
