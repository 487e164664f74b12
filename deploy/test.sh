#!/usr/bin/env bash
# Runs every test of the workspace, as CI does. Installs what the tests
# need when it is missing, builds once, then tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required: install Rust from your distribution or rustup" >&2
    exit 1
fi

# The CLI tests run the real binary, so build it first (debug profile, the
# same one the tests use).
cargo build --workspace --bins

# Unit, integration and contract tests; benchmarks run once each with small
# inputs so they cannot rot (their real runs are `cargo bench`).
cargo test --workspace --all-targets --no-fail-fast
