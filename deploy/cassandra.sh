#!/usr/bin/env bash
# One real Apache Cassandra node for development and tests, run straight
# from the cassandra-all jars on Maven Central (the same code a tarball's
# bin/cassandra runs: org.apache.cassandra.service.CassandraDaemon over
# lib/*.jar), on a loopback address, with everything it writes in one
# directory.
#
#   deploy/cassandra.sh start    # resolves the jars once, starts, waits for CQL
#   deploy/cassandra.sh stop     # stops the node this script started (its pid)
#   deploy/cassandra.sh status   # says whether it runs; exit 0 when it does
#
# `start` prints POSTMESH_CQL=host:port once the CQL port answers.
#
# Settings (environment):
#   POSTMESH_CQL_HOST           loopback address to listen on (127.0.0.3: clear
#                               of RabbitMQ test nodes on 127.0.0.2 and of
#                               outgoing sockets on 127.0.0.1)
#   POSTMESH_CQL_PORT           CQL port (19042)
#   POSTMESH_CASSANDRA_STORAGE_PORT  inter-node port (17000)
#   POSTMESH_CASSANDRA_JMX_PORT local JMX port (17199)
#   POSTMESH_CASSANDRA_DIR      config, data, log and pid file
#                               (/tmp/postmesh-cassandra-<CQL port>)
#   POSTMESH_CASSANDRA_VERSION  cassandra-all version (5.0.8)
#   POSTMESH_CASSANDRA_CACHE    jar cache (~/.cache/postmesh/cassandra)
#   POSTMESH_CASSANDRA_HEAP     JVM heap (768M)
#   POSTMESH_CASSANDRA_WAIT     seconds to wait for CQL (180)
#   POSTMESH_CASSANDRA_COMMITLOG_SYNC  periodic (default: the commit log is
#                               synced every 10 s, so a kill -9 of the node
#                               loses writes it acknowledged since the last
#                               sync) or batch (synced before each write is
#                               acknowledged: what a test that kills the
#                               node and counts acknowledged messages needs)
#
# Ports are below 32768, outside the kernel's range for outgoing
# connections, so no client socket can take them between runs.
#
# Measured on a 2-core machine (OpenJDK 17, Cassandra 5.0.8): resolving
# the jars the first time (100 jars, 83 MB into ~/.m2, then copied into the
# cache) takes about 8 s; a start on a fresh data directory, from launch to
# the CQL port answering, about 12 s; a restart on existing data about
# 11 s; a stop about 6 s (up to 24 s for a start while builds share the
# two cores). The running node holds about 1.2 GB of resident memory with
# the default heap. In deploy/test.sh that is about half a minute of the
# run: start, stop, and the CQL contract tests (about 17 s).
set -euo pipefail
cmd=${1:?usage: $0 start|stop|status}
here=$(cd "$(dirname "$0")" && pwd)

version=${POSTMESH_CASSANDRA_VERSION:-5.0.8}
host=${POSTMESH_CQL_HOST:-127.0.0.3}
port=${POSTMESH_CQL_PORT:-19042}
storage_port=${POSTMESH_CASSANDRA_STORAGE_PORT:-17000}
jmx_port=${POSTMESH_CASSANDRA_JMX_PORT:-17199}
dir=$(realpath -m "${POSTMESH_CASSANDRA_DIR:-/tmp/postmesh-cassandra-$port}")
cache=${POSTMESH_CASSANDRA_CACHE:-$HOME/.cache/postmesh/cassandra}
lib=$cache/$version/lib
heap=${POSTMESH_CASSANDRA_HEAP:-768M}
wait_secs=${POSTMESH_CASSANDRA_WAIT:-180}
commitlog_sync=${POSTMESH_CASSANDRA_COMMITLOG_SYNC:-periodic}
case $commitlog_sync in
periodic) commitlog_sync_lines=$'commitlog_sync: periodic\ncommitlog_sync_period: 10000ms' ;;
# Cassandra refuses a sync period with batch.
batch) commitlog_sync_lines='commitlog_sync: batch' ;;
*) echo "POSTMESH_CASSANDRA_COMMITLOG_SYNC: expected periodic or batch, not $commitlog_sync" >&2; exit 2 ;;
esac
pidfile=$dir/cassandra.pid

# Whether the pid in the pid file is alive and is our daemon (not a
# recycled pid of another program).
running() {
    [[ -f $pidfile ]] || return 1
    local pid
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "CassandraDaemon" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-Dcassandra.storagedir=$dir/data"
}

cql_answers() {
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# The jars, resolved once per version through deploy/cassandra/pom.xml.
resolve() {
    if [[ -f $lib/cassandra-all-$version.jar ]]; then return; fi
    command -v mvn >/dev/null || { echo "maven is required (apt-get install -y maven)" >&2; exit 1; }
    command -v java >/dev/null || { echo "a JDK 17 is required (apt-get install -y openjdk-17-jdk-headless)" >&2; exit 1; }
    echo "resolving cassandra-all $version into $lib" >&2
    local tmp=$lib.partial
    rm -rf "$tmp"
    mvn -q -B -f "$here/cassandra/pom.xml" dependency:copy-dependencies \
        -Dcassandra.version="$version" -DincludeScope=runtime -DoutputDirectory="$tmp" >&2
    mv "$tmp" "$lib"
}

write_config() {
    mkdir -p "$dir/conf" "$dir/data" "$dir/log"
    # Only what differs from Cassandra's built-in defaults, or must be said.
    cat >"$dir/conf/cassandra.yaml" <<YAML
cluster_name: postmesh-dev
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$host:$storage_port"
listen_address: $host
rpc_address: $host
storage_port: $storage_port
native_transport_port: $port
start_native_transport: true
data_file_directories: [$dir/data/data]
commitlog_directory: $dir/data/commitlog
saved_caches_directory: $dir/data/saved_caches
hints_directory: $dir/data/hints
cdc_raw_directory: $dir/data/cdc_raw
# A fresh node with no 4.x sstables to read.
storage_compatibility_mode: NONE
$commitlog_sync_lines
# Messages are at most 1 MiB; a mutation may be half a segment.
commitlog_segment_size: 16MiB
commitlog_total_space: 256MiB
# A single node for two cores: little concurrency, nothing it does not need.
concurrent_reads: 4
concurrent_writes: 4
concurrent_counter_writes: 2
concurrent_materialized_view_writes: 2
concurrent_compactors: 1
native_transport_max_threads: 32
file_cache_size: 64MiB
key_cache_size: 16MiB
auto_snapshot: false
snapshot_before_compaction: false
hinted_handoff_enabled: false
dynamic_snitch: false
auto_bootstrap: false
YAML
    cat >"$dir/conf/logback.xml" <<'XML'
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
  <logger name="org.apache.cassandra" level="INFO"/>
</configuration>
XML
}

start() {
    if running; then
        echo "already running (pid $(cat "$pidfile"))" >&2
        echo "POSTMESH_CQL=$host:$port"
        return
    fi
    if cql_answers; then
        echo "something else already listens on $host:$port" >&2
        exit 1
    fi
    resolve
    write_config
    local jamm
    jamm=$(ls "$lib"/jamm-*.jar | head -n 1)

    # The JPMS flags and system properties below are those of Cassandra's
    # conf/jvm17-server.options (in the apache/cassandra repository),
    # which bin/cassandra passes on JDK 17; the jamm agent (which sizes
    # objects for memtable accounting) is what conf/cassandra-env.sh adds
    # as -javaagent. Without them the daemon dies during start-up.
    local jvm17=(
        -Djdk.attach.allowAttachSelf=true
        --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
        --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
        --add-exports java.sql/java.sql=ALL-UNNAMED
        --add-exports java.base/java.lang.ref=ALL-UNNAMED
        --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
        --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
        --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
        --add-opens java.base/java.lang.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
        --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
        --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
        --add-opens java.base/jdk.internal.math=ALL-UNNAMED
        --add-opens java.base/jdk.internal.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
        --add-opens java.base/sun.nio.ch=ALL-UNNAMED
        --add-opens java.base/java.io=ALL-UNNAMED
        --add-opens java.base/java.lang.reflect=ALL-UNNAMED
        --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        -Dio.netty.tryReflectionSetAccessible=true
        -Dio.netty.allocator.useCacheForAllThreads=true
        -Dio.netty.allocator.maxOrder=11
        "-javaagent:$jamm"
    )
    # G1 as in jvm17-server.options, on a small fixed heap.
    local memory=(
        "-Xms$heap" "-Xmx$heap" -Xss256k
        -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
        -XX:G1HeapRegionSize=4m -XX:MaxGCPauseMillis=300
        -XX:+PerfDisableSharedMem -XX:+ExitOnOutOfMemoryError -XX:+HeapDumpOnOutOfMemoryError
        "-XX:HeapDumpPath=$dir/log"
    )
    local props=(
        "-Dcassandra.config=file://$dir/conf/cassandra.yaml"
        "-Dcassandra.storagedir=$dir/data"
        "-Dcassandra.logdir=$dir/log"
        "-Dlogback.configurationFile=$dir/conf/logback.xml"
        "-Dcassandra.jmx.local.port=$jmx_port"
        -Dcassandra-foreground=yes
        -Djava.net.preferIPv4Stack=true
        # One node: no peers to wait for.
        -Dcassandra.skip_wait_for_gossip_to_settle=0
    )
    local t0=$SECONDS
    # Its own session, so that it outlives the shell that started it and
    # gets no terminal signals.
    setsid java "${jvm17[@]}" "${memory[@]}" "${props[@]}" \
        -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon \
        >"$dir/log/stdout.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    local deadline=$((SECONDS + wait_secs))
    while ((SECONDS < deadline)); do
        if cql_answers; then
            echo "cassandra $version up on $host:$port in $((SECONDS - t0)) s (pid $(cat "$pidfile"), $dir)" >&2
            echo "POSTMESH_CQL=$host:$port"
            return
        fi
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "cassandra exited during start-up; last lines of its logs:" >&2
            tail -n 30 "$dir/log/stdout.log" >&2 || true
            tail -n 30 "$dir/log/system.log" >&2 2>/dev/null || true
            rm -f "$pidfile"
            exit 1
        fi
        sleep 0.5
    done
    echo "cassandra did not answer on $host:$port within $wait_secs s; last lines of its log:" >&2
    tail -n 30 "$dir/log/system.log" >&2 2>/dev/null || tail -n 30 "$dir/log/stdout.log" >&2
    stop
    exit 1
}

stop() {
    if ! running; then
        rm -f "$pidfile"
        echo "not running" >&2
        return
    fi
    local pid
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "cassandra (pid $pid) did not stop in 30 s; killing it" >&2
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

case $cmd in
start) start ;;
stop) stop ;;
status)
    if running; then
        echo "running (pid $(cat "$pidfile")) on $host:$port, $dir"
    else
        echo "not running ($dir)"
        exit 1
    fi
    ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
