#!/usr/bin/env bash
# Peer servers for comparison benchmarks, on loopback: NATS and Mosquitto
# (Debian's packages) and a Socket.IO room broadcast server (bench/socketio),
# each over WebSocket. Logs, configs and pid files stay in DIR.
#
#   bench/peers.sh start DIR   # prints shell-sourceable nats_pid=... nats_url=... lines
#   bench/peers.sh stop DIR
#
# Ports: NATS 7410 (client) and 7411 (ws), Mosquitto 7412 (ws),
# Socket.IO 7413.
set -euo pipefail
usage="usage: $0 start|stop DIR"
cmd=${1:?$usage}
dir=$(realpath -m "${2:?$usage}")
sio=$(cd "$(dirname "$0")" && pwd)/socketio
names=(nats mosquitto socketio)

bin() {  # name: path of a server binary, also outside PATH
    command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}

install_missing() {
    local pkgs=()
    [[ -n $(bin nats-server) ]] || pkgs+=(nats-server)
    [[ -n $(bin mosquitto) ]] || pkgs+=(mosquitto)
    if ((${#pkgs[@]})); then
        echo "installing ${pkgs[*]} (Debian packages)" >&2
        local sudo=""
        if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "node and npm are required for the Socket.IO server: install Node.js (e.g. apt-get install nodejs npm)" >&2
        exit 1
    fi
    if [[ ! -d $sio/node_modules ]]; then
        echo "installing the Socket.IO server's packages (npm ci)" >&2
        (cd "$sio" && npm ci --no-audit --no-fund >&2)
    fi
}

port_free() {  # port: fails with a message if anything listens on it
    if ss -Htln "( sport = :$1 )" | grep -q .; then
        echo "port $1 is already in use:" >&2
        ss -Htlnp "( sport = :$1 )" >&2 || true
        return 1
    fi
}

alive() {  # pid: running, not a zombie (our servers' reaper may be slow)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

launch() {  # name command...: runs it in the background, in its own session
    local name=$1; shift
    ( cd "$dir"; exec setsid "$@" >"$dir/$name.log" 2>&1 </dev/null ) &
    echo $! >"$dir/$name.pid"
}

wait_port() {  # name port
    local name=$1 port=$2 pid
    pid=$(cat "$dir/$name.pid")
    for _ in $(seq 1 75); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if ! alive "$pid"; then
            echo "$name exited before listening on $port; $dir/$name.log ends with:" >&2
            tail -n 20 "$dir/$name.log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "$name did not listen on $port within 15 s; $dir/$name.log ends with:" >&2
    tail -n 20 "$dir/$name.log" >&2
    return 1
}

stop() {
    local name pid comm
    for name in "${names[@]}"; do
        [[ -f $dir/$name.pid ]] || continue
        pid=$(cat "$dir/$name.pid")
        comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
        # Only our server, not whatever reused the pid.
        if [[ -n $comm ]] && [[ $comm == nats-server || $comm == mosquitto || $comm == node ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 25); do
                alive "$pid" || break
                sleep 0.2
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/$name.pid"
    done
}

case $cmd in
start)
    install_missing
    for port in 7410 7411 7412 7413; do port_free "$port"; done
    sock=$dir/mosquitto.sock
    if ((${#sock} > 100)); then
        echo "DIR is too long for a unix socket path ($sock): use a shorter one" >&2
        exit 1
    fi
    mkdir -p "$dir"
    trap 'stop' ERR

    cat >"$dir/nats.conf" <<CONF
listen: "127.0.0.1:7410"
max_connections: 100000
websocket {
  listen: "127.0.0.1:7411"
  no_tls: true
}
CONF

    # Mosquitto 2.0 starts only with a plain listener besides the websockets
    # one, so it gets a unix socket. For a websockets listener the address is
    # a libwebsockets interface: "lo" binds loopback, "127.0.0.1" would bind
    # every interface.
    cat >"$dir/mosquitto.conf" <<CONF
user root
per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
connection_messages false

listener 0 $sock
max_connections -1

listener 7412 lo
socket_domain ipv4
protocol websockets
max_connections -1
CONF

    # Each test opens ~19 000 connections to each server.
    ulimit -n "$(ulimit -Hn)"
    launch nats "$(bin nats-server)" -c "$dir/nats.conf"
    launch mosquitto "$(bin mosquitto)" -c "$dir/mosquitto.conf"
    launch socketio node "$sio/server.js" 7413
    wait_port nats 7411
    wait_port nats 7410
    wait_port mosquitto 7412
    wait_port socketio 7413
    trap - ERR

    echo "nats_pid=$(cat "$dir/nats.pid")"
    echo "nats_url=ws://127.0.0.1:7411"
    echo "mosquitto_pid=$(cat "$dir/mosquitto.pid")"
    echo "mosquitto_url=ws://127.0.0.1:7412"
    echo "socketio_pid=$(cat "$dir/socketio.pid")"
    echo "socketio_url='ws://127.0.0.1:7413/socket.io/?EIO=4&transport=websocket'"
    ;;
stop)
    stop
    ;;
*) echo "$usage" >&2; exit 2 ;;
esac
