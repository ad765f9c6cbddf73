#!/usr/bin/env bash
# Failover benchmark (issue 6), not a test: how long a group of tom-member processes on 127.0.0.1 takes
# to install a view without a member that
#   - crashed (kill -9: its connections close at once), or
#   - froze (kill -STOP: its connections stay open and go silent; only the failure timeout notices),
# measured from the signal to the moment the last survivor printed the new VIEW line. Each stdout line
# is time-stamped by the shell as it arrives ($EPOCHREALTIME), so the figure includes printing.
#
# Usage: tests/lab/failover.sh            (RUNS=5 MEMBERS=3 TIMEOUTS="default 500" VICTIM=highest)
#   RUNS      runs per (signal, timeout) pair
#   MEMBERS   group size
#   TIMEOUTS  failure timeouts to try, in ms; "default" runs without --failure-timeout-ms (1500 ms)
#   VICTIM    "highest" (rank MEMBERS) or "lowest" (rank 1, the coordinator)
#   BIN       where the binaries are (default target/release, built first)
# The group is idle: this measures detection and the view change, not a backlog. Everything started is
# killed on exit, also on failure or Ctrl-C. Per-run files are in target/failover/.
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=${RUNS:-5}
members=${MEMBERS:-3}
timeouts=${TIMEOUTS:-default 500}
victim_choice=${VICTIM:-highest}
bin=${BIN:-target/release}
out=target/failover
if [ "$bin" = target/release ]; then cargo build --release --quiet; fi
mkdir -p "$out"
exec 3>&2

pids=()
cleanup() {
    # SIGKILL: a SIGSTOPped member would not act on SIGTERM until continued.
    # Braces around both: bash reports a SIGKILLed job on stderr, which is noise here.
    {
        for pid in "${pids[@]}"; do kill -9 "$pid" || true; done
        wait || true
    } 2>/dev/null
    pids=()
}
trap cleanup EXIT INT TERM

# Prefixes every line read with the moment it arrived (seconds since the epoch, microseconds).
stamp() {
    local line
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for FILE PATTERN SECONDS: until a line of FILE matches PATTERN (a grep regex).
wait_for() {
    local deadline=$((SECONDS + $3))
    until grep -q -- "$2" "$1" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for '$2' in $1" >&3; return 1; fi
        sleep 0.02
    done
}

ranks_upto() { seq -s, 1 "$1"; }

# one_run SIGNAL TIMEOUT RUN: sets `figure` to the milliseconds from the signal to the last survivor's VIEW
# line. Not run in a subshell, so that `pids` and the EXIT trap see every process it starts.
one_run() {
    local signal=$1 timeout=$2 run=$3 dir="$out/$1-$2-$3"
    rm -rf "$dir" && mkdir -p "$dir"
    local helper_port first_port
    helper_port=$(free_port)
    first_port=$(free_port)
    local timeout_args=()
    if [ "$timeout" != default ]; then timeout_args=(--failure-timeout-ms "$timeout"); fi
    "$bin/tom-helper" --size "$members" --port "$helper_port" --bind 127.0.0.1 2>"$dir/helper.log" &
    pids+=($!)
    local member_pids=()
    for i in $(seq 1 "$members"); do
        "$bin/tom-member" --helper "127.0.0.1:$helper_port" --host 127.0.0.1 --port "$first_port" \
            "${timeout_args[@]}" </dev/null > >(stamp >"$dir/member$i.out") 2>"$dir/member$i.log" &
        pids+=($!)
        member_pids+=($!)
    done
    local first_view="VIEW $(ranks_upto "$members")$"
    for i in $(seq 1 "$members"); do wait_for "$dir/member$i.out" " $first_view" 30; done

    # Which process has which rank (ranks go by arrival at the helper).
    local victim_rank=$members
    [ "$victim_choice" = lowest ] && victim_rank=1
    local victim_pid="" survivors=() rank
    for i in $(seq 1 "$members"); do
        rank=$(awk '$2 == "JOINED" { print $3; exit }' "$dir/member$i.out")
        if [ "$rank" = "$victim_rank" ]; then victim_pid=${member_pids[$((i - 1))]}; else survivors+=("$i"); fi
    done
    local new_view
    new_view="VIEW $(seq 1 "$members" | grep -vx "$victim_rank" | paste -sd,)$"

    sleep 1 # let heartbeats settle, so that the timeout runs from a steady state
    local signalled_at=$EPOCHREALTIME
    kill "-$signal" "$victim_pid"
    local last=0 at
    for i in "${survivors[@]}"; do
        wait_for "$dir/member$i.out" " $new_view" 60
        at=$(awk -v view="$new_view" '$0 ~ " " view { print $1; exit }' "$dir/member$i.out")
        last=$(awk -v a="$last" -v b="$at" 'BEGIN { print (b > a ? b : a) }')
    done
    figure=$(awk -v from="$signalled_at" -v to="$last" 'BEGIN { printf "%.0f", (to - from) * 1000 }')
    cleanup
}

summary() { # median min max of the numbers on stdin
    sort -n | awk '{ v[NR] = $1 } END {
        median = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "median %6.0f ms   min %6.0f ms   max %6.0f ms   (%d runs)\n", median, v[1], v[NR], NR }'
}

echo "failover: $members members on 127.0.0.1, victim rank $([ "$victim_choice" = lowest ] && echo 1 || echo "$members"), $runs runs each; $(nproc) cores, $(uname -sr)"
for timeout in $timeouts; do
    for signal in KILL STOP; do
        figures=()
        for run in $(seq 1 "$runs"); do
            # stderr to /dev/null: bash reports every SIGKILLed job there; real errors go to fd 3.
            one_run "$signal" "$timeout" "$run" 2>/dev/null
            figures+=("$figure")
        done
        label="kill -$signal, --failure-timeout-ms $([ "$timeout" = default ] && echo "default (1500)" || echo "$timeout")"
        printf '%-50s %s   runs: %s\n' "$label" "$(printf '%s\n' "${figures[@]}" | summary)" "${figures[*]}"
    done
done
