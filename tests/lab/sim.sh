#!/usr/bin/env bash
# `make sim SEED=n [FAMILY=nofault|crash|partition|rejoin]`: replays one simulator seed and prints its
# story, family after family in that fixed order (the test harness alone would run them in parallel and
# interleave them), without the harness's timings: two replays of one seed print the same bytes.
# SIM_BIN=path runs an already built simulation test binary instead of building it with cargo.
set -euo pipefail

seed=${SEED:-}
case $seed in
"" | *[!0-9]*)
    echo "usage: make sim SEED=n [FAMILY=nofault|crash|partition|rejoin]" >&2
    exit 2
    ;;
esac
families=${FAMILY:-nofault crash partition rejoin}
for family in $families; do
    case $family in
    nofault | crash | partition | rejoin) ;;
    *)
        echo "make sim: unknown FAMILY=$family (nofault, crash, partition or rejoin)" >&2
        exit 2
        ;;
    esac
done

sim=${SIM_BIN:-}
if [ -z "$sim" ]; then
    cargo=${CARGO:-cargo}
    sim=$("$cargo" test --quiet --test simulation --no-run --message-format=json-render-diagnostics |
        grep '"kind":\["test"\].*"name":"simulation"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    if [ -z "$sim" ]; then
        echo "make sim: cargo built no simulation test binary" >&2
        exit 1
    fi
fi

for family in $families; do
    case $family in
    nofault) test=sweep_without_faults ;;
    crash) test=sweep_with_crashes ;;
    partition) test=sweep_with_false_suspicions_and_partitions ;;
    rejoin) test=sweep_with_rejoins ;;
    esac
    # One test, one thread; the harness's "finished in 0.01s" is the only part that differs between runs.
    SIM_SEED=$seed SIM_SCENARIO=$family "$sim" --exact "$test" --nocapture --test-threads=1 |
        sed -E 's/; finished in [0-9.]+s$//'
done
