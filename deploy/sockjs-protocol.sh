#!/usr/bin/env bash
# Runs SockJS's public protocol suite (0.3.3) against a `postmesh up` with
# the suite's test services mounted, and fails if any test fails or errs.
# The suite is not shipped with postmesh (its repository carries no
# licence): SOCKJS_PROTOCOL_DIR names a local Python 3 port of
# sockjs-protocol-0.3.3.py and utils_03.py; deploy/sockjs-protocol/run.py
# loads it and skips only what PROTOCOL.md says is left out. Python 3 with venv is required; the
# suite's one dependency, websocket-client, goes into a venv of its own
# (POSTMESH_SOCKJS_VENV, by default target/sockjs-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${POSTMESH_BIN:-${CARGO_TARGET_DIR:-target}/debug/postmesh}
if [ ! -x "$bin" ]; then
    echo "no postmesh binary at $bin: cargo build --bin postmesh first" >&2
    exit 1
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "installing python3-venv (Debian package) for the SockJS protocol suite" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
venv=${POSTMESH_SOCKJS_VENV:-${CARGO_TARGET_DIR:-target}/sockjs-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import websocket' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'websocket-client>=1.6,<2'
fi

work=$(mktemp -d -t postmesh-sockjs.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/postmesh.toml" <<TOML
data = "$work/data"
[gateway]
listen = "127.0.0.1:$port"
origins = ["*"]
[gateway.sockjs]
test_services = true
# The suite checks that a streaming response ends after 4 KiB.
response_limit = 4096
TOML
"$bin" up --config "$work/postmesh.toml" >"$work/postmesh.log" 2>&1 &
pid=$!
stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT
for _ in $(seq 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/postmesh.log" >&2; exit 1; fi
    sleep 0.1
done

# unittest prints "Ran N tests" and "OK" or "FAILED (...)"; its exit code
# is non-zero on any failure or error.
SOCKJS_URL="http://127.0.0.1:$port/sockjs-test" \
    "$venv/bin/python" deploy/sockjs-protocol/run.py "$@"
