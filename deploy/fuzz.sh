#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz with libFuzzer) for a bounded
# time, starting from the seed corpora committed in fuzz/corpus/<target>.
# Installs what it needs when missing: the nightly toolchain (rustup) and
# cargo-fuzz. Fails on the first target that finds a crash; libFuzzer saves
# the input in fuzz/artifacts/<target>/ (reproduce it with
# `cargo +nightly fuzz run <target> <file>`).
#
#   FUZZ_SECONDS   time per target (default 20)
#   FUZZ_TARGETS   targets to run (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
targets="${FUZZ_TARGETS:-client_frame path_pattern jwt matcher}"

if ! command -v rustup >/dev/null 2>&1; then
    echo "fuzz: rustup is required (cargo-fuzz needs a nightly toolchain)" >&2
    exit 1
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# Builds all targets once (the fuzz crate has its own workspace, lock file
# and target directory, fuzz/target). Without AddressSanitizer: the
# project's code forbids `unsafe`, so what the targets look for are panics,
# hangs and wrong answers, and an uninstrumented build takes CI minutes
# less.
cargo +nightly fuzz build -s none

for target in $targets; do
    # What libFuzzer finds goes to a scratch corpus under fuzz/target, kept
    # between runs; the committed seeds are only read.
    scratch="fuzz/target/corpus/$target"
    mkdir -p "$scratch"
    echo "fuzz: $target for ${seconds}s" >&2
    if ! cargo +nightly fuzz run -s none "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"fuzz/target/$target.log" 2>&1; then
        tail -n 60 "fuzz/target/$target.log" >&2
        echo "fuzz: $target FAILED; the crashing input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^stat::number_of_executed_units|Done [0-9]+ runs' "fuzz/target/$target.log" | tail -n 1 >&2 || true
done
echo "fuzz: all targets passed (${seconds}s each)" >&2
