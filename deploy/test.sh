#!/usr/bin/env bash
# Runs every test of the workspace, as CI does. Checks format and lints,
# installs what the tests need when it is missing, builds once, then tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required: install Rust from your distribution or rustup" >&2
    exit 1
fi

# Format and lints first, so that they fail before anything is
# installed or tested. A warning is an error here.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "rustfmt and clippy are required: rustup component add rustfmt clippy" >&2
    exit 1
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

# The RabbitMQ tests start their own broker nodes from Debian's package
# (never the machine's own broker, if one runs).
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    echo "installing rabbitmq-server (Debian package) for the RabbitMQ tests" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rabbitmq-server >/dev/null
fi

# The CQL store's tests run against one real Cassandra node for the whole
# run (deploy/cassandra.sh: jars from Maven Central, a JDK 17), each test
# binary in a fresh keyspace. A CQL test without POSTMESH_CQL fails; it is
# never skipped.
if ! command -v java >/dev/null 2>&1 || ! java -version 2>&1 | grep -q 'version "\(1[7-9]\|2[0-9]\)'; then
    echo "installing a JDK 17 (Debian package) for the Cassandra node" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
fi
if ! command -v mvn >/dev/null 2>&1; then
    echo "installing maven (Debian package) to resolve Cassandra's jars" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq maven >/dev/null
fi
# A private directory per run; the node is stopped however the run ends.
POSTMESH_CASSANDRA_DIR=$(mktemp -d -t postmesh-cassandra.XXXXXX)
export POSTMESH_CASSANDRA_DIR
stop_cassandra() {
    deploy/cassandra.sh stop || true
    rm -rf "$POSTMESH_CASSANDRA_DIR"
}
trap stop_cassandra EXIT
cql=$(deploy/cassandra.sh start)
export "${cql?}"  # POSTMESH_CQL=host:port

# The CLI tests run the real binary, so build it first (debug profile, the
# same one the tests use).
cargo build --workspace --bins

# Unit, integration and contract tests; benchmarks run once each with small
# inputs so they cannot rot (their real runs are `cargo bench`).
cargo test --workspace --all-targets --no-fail-fast

# The JavaScript client (clients/js): its build (TypeScript, esbuild), its
# tests in Node against a real `postmesh up`, the check that the bundle the
# gateway serves is current, and the live page in Chromium (screenshots in
# clients/js/artifacts/).
if ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs and npm (Debian packages) for the JavaScript client" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
# Its browser test drives Debian's Chromium (never a downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
    echo "installing chromium (Debian package) for the live page's browser test" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
(cd clients/js && npm ci --no-audit --no-fund && npm test)

# Fuzz targets, each for a bounded time (FUZZ_SECONDS, 20 s by default);
# see deploy/fuzz.sh.
deploy/fuzz.sh
