#!/usr/bin/env bash
# A private RabbitMQ node for development and benchmarks, from Debian's
# rabbitmq-server package, without touching the machine's own broker or
# configuration.
#
#   deploy/rabbitmq-node.sh start DIR   # prints AMQP_URL=... and MGMT_URL=...
#   deploy/rabbitmq-node.sh stop DIR
#
# The node listens on 127.0.0.2 (loopback, clear of outgoing sockets on
# 127.0.0.1) on free ports below 32768 (outside the kernel's range for
# outgoing connections). Everything it writes stays in DIR.
set -euo pipefail
cmd=${1:?usage: $0 start|stop DIR}
dir=$(realpath -m "${2:?usage: $0 start|stop DIR}")
bin=/usr/lib/rabbitmq/bin
ip=127.0.0.2

free_port() {  # a port in 20000-32000 nobody listens on
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        if ! ss -Htan "( sport = :$p )" | grep -q .; then echo "$p"; return; fi
    done
    echo "no free port" >&2; exit 1
}

case $cmd in
start)
    [[ -x $bin/rabbitmq-server ]] || { echo "install rabbitmq-server first (apt-get install -y rabbitmq-server)" >&2; exit 1; }
    mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
    amqp=$(free_port); mgmt=$(free_port); dist=$(free_port); epmd=$(free_port)
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = $ip:$amqp
management.tcp.ip = $ip
management.tcp.port = $mgmt
loopback_users.guest = true
log.console = false
log.file.level = warning
CONF
    echo '[rabbitmq_management,rabbitmq_federation,rabbitmq_federation_management].' >"$dir/enabled_plugins"
    echo '[].' >"$dir/advanced.config"; : >"$dir/rabbitmq-env.conf"
    cat >"$dir/env" <<ENV
export HOME=$dir/home RABBITMQ_NODENAME=pm$$@localhost RABBITMQ_NODE_IP_ADDRESS=$ip
export RABBITMQ_NODE_PORT=$amqp RABBITMQ_DIST_PORT=$dist ERL_EPMD_PORT=$epmd ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log
export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
export RABBITMQ_PID_FILE=$dir/rabbit.pid
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
ENV
    # Not -detached: a failed boot would leave no trace. Its own session, so
    # that stop can kill the whole group.
    ( . "$dir/env"; cd "$dir"; exec setsid "$bin/rabbitmq-server" >"$dir/server.out" 2>&1 </dev/null ) &
    echo $! >"$dir/pgid"
    for _ in $(seq 1 450); do
        if (exec 3<>"/dev/tcp/$ip/$amqp") 2>/dev/null; then
            echo "AMQP_URL=amqp://guest:guest@$ip:$amqp/%2f"
            echo "MGMT_URL=http://$ip:$mgmt"
            exit 0
        fi
        kill -0 "$(cat "$dir/pgid")" 2>/dev/null || { tail -n 20 "$dir/server.out" >&2; exit 1; }
        sleep 0.2
    done
    echo "RabbitMQ did not start in 90 s (see $dir/server.out)" >&2; exit 1
    ;;
stop)
    [[ -f $dir/pgid ]] && kill -9 -"$(cat "$dir/pgid")" 2>/dev/null || true
    if [[ -f $dir/env ]]; then ( . "$dir/env"; sleep 1; epmd -kill >/dev/null 2>&1 || true ); fi
    ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
