#!/usr/bin/env bash
# deploy/local-mesh.sh up | down | status | kill <node> | start <node>
#
# A whole global mesh on one machine: three private RabbitMQ nodes (a hub
# and the regions east and west, on 127.0.0.2), the Rabbit Router joining
# them as a federation star (`postmesh router apply`, then `run` to keep
# it so), and one core and one gateway per region. Nothing of the
# machine's own RabbitMQ is read or touched.
#
# `up` prints one line per region, exactly
#     region <name> ws=<ws url> http=<http base url>
# and returns with everything running in the background. `down` stops what
# `up` started (by pid) and removes its directory; `status` says what runs.
# `kill <node>` crashes one RabbitMQ node (hub, east or west) with kill -9,
# and `start <node>` starts it again on its ports and data, returning once
# it accepts AMQP: an outage, by hand or from a benchmark.
#
# Environment:
#   POSTMESH_MESH_DIR  where everything lives (default $TMPDIR/postmesh-local-mesh)
#   POSTMESH_BIN       the postmesh binary (default: built with cargo, release)
# Needs rabbitmq-server (Debian package; deploy/test.sh installs it), curl, ss.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${POSTMESH_MESH_DIR:-${TMPDIR:-/tmp}/postmesh-local-mesh}
IP=127.0.0.2
RMQ=/usr/lib/rabbitmq/bin
NODES=(hub east west)
REGIONS=(east west)
CURL=(curl -sS --max-time 5 -u guest:guest)

say() { printf 'local-mesh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# A port below 32768 (outside the kernel's range for outgoing connections,
# so no outgoing socket takes it between the check and the bind) that
# nothing listens on and that this run has not handed out yet.
TAKEN=" "
pick() {
    local -n out=$1
    local p
    for p in $(shuf -i 20000-32000 -n 400); do
        [[ $TAKEN == *" $p "* ]] && continue
        if [[ -z $(ss -Htanl "( sport = :$p )") ]]; then
            TAKEN+="$p "
            out=$p
            return
        fi
    done
    die "no free port in 20000-32000"
}

# Runs postmesh without this script's own POSTMESH_* settings, which are
# not configuration keys (postmesh refuses unknown ones).
pm() { env -u POSTMESH_BIN -u POSTMESH_MESH_DIR "$BIN" "$@"; }

# Whether the process in pid file $1 runs.
alive() { [[ -s $1 ]] && kill -0 "$(<"$1")" 2>/dev/null; }

node_env() {
    local n=$1 d=$BASE/rabbit/$1
    export HOME=$BASE/rabbit/home ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$EPMD_PORT
    export RABBITMQ_NODENAME=pm-$n@localhost RABBITMQ_NODE_IP_ADDRESS=$IP
    export RABBITMQ_NODE_PORT=${AMQP[$n]} RABBITMQ_DIST_PORT=${DIST[$n]}
    export RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log
    export RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config
    export RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf
    export RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins RABBITMQ_PID_FILE=$d/rabbit.pid
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

start_node() {
    local n=$1 d=$BASE/rabbit/$1
    mkdir -p "$d/mnesia" "$d/log"
    # A cluster name per node: federation's loop detection keys on it.
    cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.default = $IP:${AMQP[$n]}
management.tcp.ip = $IP
management.tcp.port = ${MGMT[$n]}
cluster_name = $n
log.console = false
EOF
    echo '[rabbitmq_management,rabbitmq_federation,rabbitmq_federation_management].' >"$d/enabled_plugins"
    touch "$d/rabbitmq-env.conf"
    # Its own process group (setsid), so `down` stops the node and its
    # Erlang children together.
    (node_env "$n"; cd "$d"; exec setsid "$RMQ/rabbitmq-server" >"$d/server.out" 2>&1 </dev/null) &
    echo $! >"$BASE/pids/rabbit-$n"
}

wait_node() {
    local n=$1 i
    for ((i = 0; i < 600; i++)); do
        if "${CURL[@]}" -fo /dev/null \
            "http://$IP:${MGMT[$n]}/api/health/checks/port-listener/${AMQP[$n]}" 2>/dev/null; then
            return 0
        fi
        alive "$BASE/pids/rabbit-$n" || {
            tail -n 20 "$BASE/rabbit/$n/server.out" >&2 || true
            die "RabbitMQ node $n died while booting (see $BASE/rabbit/$n)"
        }
        sleep 0.2
    done
    die "RabbitMQ node $n did not boot in 120 s (see $BASE/rabbit/$n)"
}

# Starts `postmesh <args>` in the background as $name, with its output in
# a log; waits until it says it is up.
start_postmesh() {
    local name=$1 region=$2
    shift 2
    local log=$BASE/logs/$name.log
    POSTMESH_NODE__REGION=$region POSTMESH_NODE__PRODUCT=postmesh POSTMESH_NODE__INSTANCE=$name \
        POSTMESH_LOG=${POSTMESH_LOG:-info} setsid env -u POSTMESH_BIN -u POSTMESH_MESH_DIR \
        "$BIN" "$@" >"$log" 2>&1 </dev/null &
    echo $! >"$BASE/pids/$name"
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q "is up" "$log" 2>/dev/null && return 0
        alive "$BASE/pids/$name" || { tail -n 20 "$log" >&2; die "$name stopped while starting"; }
        sleep 0.1
    done
    die "$name did not come up in 30 s (see $log)"
}

up() {
    [[ -x $RMQ/rabbitmq-server ]] ||
        die "$RMQ/rabbitmq-server is missing: apt-get install -y rabbitmq-server"
    if [[ -d $BASE/pids ]] && compgen -G "$BASE/pids/*" >/dev/null; then
        die "a local mesh already runs in $BASE: run '$0 down' first"
    fi
    if [[ -z ${POSTMESH_BIN:-} ]]; then
        say "building postmesh (release)"
        cargo build --release -q -p postmesh --bin postmesh
        BIN=$PWD/target/release/postmesh
    else
        BIN=$POSTMESH_BIN
    fi
    mkdir -p "$BASE/pids" "$BASE/logs" "$BASE/rabbit/home"
    echo "local-mesh-$$-$RANDOM" >"$BASE/rabbit/home/.erlang.cookie"
    chmod 400 "$BASE/rabbit/home/.erlang.cookie"

    declare -gA AMQP MGMT DIST
    pick EPMD_PORT
    local n
    for n in "${NODES[@]}"; do
        pick "AMQP[$n]"
        pick "MGMT[$n]"
        pick "DIST[$n]"
    done
    # Kept for `kill` and `start`, which bring one node back on its ports.
    {
        for n in "${NODES[@]}"; do
            echo "AMQP[$n]=${AMQP[$n]} MGMT[$n]=${MGMT[$n]} DIST[$n]=${DIST[$n]}"
        done
        echo "EPMD_PORT=$EPMD_PORT"
    } >"$BASE/ports"
    # A private epmd, never the machine's on 4369.
    ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$EPMD_PORT epmd -daemon
    echo "$EPMD_PORT" >"$BASE/epmd.port"
    say "starting RabbitMQ: ${NODES[*]}"
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do wait_node "$n"; done

    local config=$BASE/router.toml metrics
    pick metrics
    {
        echo "[router]"
        echo "check_interval_secs = 2"
        echo "metrics_listen = \"127.0.0.1:$metrics\""
        for n in "${NODES[@]}"; do
            if [[ $n == hub ]]; then echo "[router.hub]"; else echo "[[router.regions]]"; fi
            echo "name = \"$n\""
            echo "amqp = \"amqp://guest:guest@$IP:${AMQP[$n]}/%2f\""
            echo "management = \"http://$IP:${MGMT[$n]}\""
            echo "user = \"guest\""
            echo "password = \"guest\""
        done
    } >"$config"
    POSTMESH_LOG=warn pm router apply --config "$config" >"$BASE/logs/router-apply.log" 2>&1 ||
        { cat "$BASE/logs/router-apply.log" >&2; die "router apply failed"; }
    setsid env -u POSTMESH_BIN -u POSTMESH_MESH_DIR "$BIN" router run --config "$config" >"$BASE/logs/router.log" 2>&1 </dev/null &
    echo $! >"$BASE/pids/router"

    local region port
    for region in "${REGIONS[@]}"; do
        local amqp="amqp://guest:guest@$IP:${AMQP[$region]}/%2f"
        start_postmesh "core-$region" "$region" core --amqp "$amqp" --data "$BASE/data/$region"
        pick port
        start_postmesh "gateway-$region" "$region" gateway --amqp "$amqp" --listen "127.0.0.1:$port"
        echo "region $region ws=ws://127.0.0.1:$port/ws http=http://127.0.0.1:$port" >>"$BASE/regions"
    done
    cat "$BASE/regions"
}

# Stops the process in pid file $1 (its whole process group) with TERM,
# then KILL after $2 seconds.
stop() {
    local f=$1 wait=$2 pid i
    [[ -s $f ]] || return 0
    pid=$(<"$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < wait * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

down() {
    [[ -d $BASE ]] || { say "nothing runs in $BASE"; return 0; }
    local r n
    # Gateways first (devices are told to go elsewhere), then cores, the
    # router and the brokers; each group in parallel.
    for r in "${REGIONS[@]}"; do stop "$BASE/pids/gateway-$r" 10 & done
    wait
    for r in "${REGIONS[@]}"; do stop "$BASE/pids/core-$r" 10 & done
    stop "$BASE/pids/router" 5 &
    wait
    for n in "${NODES[@]}"; do stop "$BASE/pids/rabbit-$n" 15 & done
    wait
    if [[ -s $BASE/epmd.port ]]; then
        ERL_EPMD_PORT=$(<"$BASE/epmd.port") epmd -kill >/dev/null 2>&1 || true
    fi
    rm -rf "$BASE"
    say "stopped"
}

# Checks that $1 names a node of a running mesh and loads its ports.
mesh_node() {
    [[ " ${NODES[*]} " == *" ${1:-} "* ]] || die "no node '${1:-}': one of ${NODES[*]}"
    [[ -s $BASE/ports ]] || die "no local mesh runs in $BASE"
    declare -gA AMQP MGMT DIST
    # shellcheck disable=SC1091
    . "$BASE/ports"
}

# A crash: the node's whole process group gets kill -9 at once.
kill_node() {
    mesh_node "$1"
    local f=$BASE/pids/rabbit-$1 i
    [[ -s $f ]] || die "node $1 does not run"
    kill -KILL -- "-$(<"$f")" 2>/dev/null || true
    rm -f "$f"
    for ((i = 0; i < 100; i++)); do
        [[ -z $(ss -Htanl "( sport = :${AMQP[$1]} )") ]] && return 0
        sleep 0.1
    done
    die "node $1 still listens on ${AMQP[$1]}"
}

restart_node() {
    mesh_node "$1"
    alive "$BASE/pids/rabbit-$1" && die "node $1 already runs"
    start_node "$1"
    wait_node "$1"
}

status() {
    [[ -d $BASE/pids ]] || { say "nothing runs in $BASE"; return 1; }
    local f rc=0
    for f in "$BASE"/pids/*; do
        if alive "$f"; then echo "$(basename "$f") running (pid $(<"$f"))"; else
            echo "$(basename "$f") stopped"
            rc=1
        fi
    done
    [[ -s $BASE/regions ]] && cat "$BASE/regions"
    return $rc
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
kill) kill_node "${2:-}" ;;
start) restart_node "${2:-}" ;;
*)
    echo "usage: $0 up | down | status | kill <node> | start <node>" >&2
    exit 2
    ;;
esac
