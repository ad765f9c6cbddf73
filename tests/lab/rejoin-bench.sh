#!/usr/bin/env bash
# Rejoin benchmark (issue 7), not a test: how long a restarted member takes from its start to its JOINED
# line. A group of MEMBERS (default 4) on 127.0.0.1, idle; REPS times (default 5): kill -9 the newest life
# of rank VICTIM (default the highest), wait until every survivor printed the view without it (so the
# measure is the rejoin itself, not the failure detection), start `tom-member --rejoin VICTIM` through the
# helper and time it until it prints JOINED; then wait until everyone printed the full view again.
# Prints every run, then median/min/max in ms, with the date, nproc and the command.
#
#   tests/lab/rejoin-bench.sh            # builds the release binaries first
#   BIN=target/debug REPS=9 tests/lab/rejoin-bench.sh
#
# Everything it starts is killed on exit, also on failure or Ctrl-C; logs are kept only with KEEP=1.
set -euo pipefail

members=${MEMBERS:-4}
reps=${REPS:-5}
victim=${VICTIM:-$members}
bin=${BIN:-target/release}
if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin tom-helper --bin tom-member; fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/rejoin-bench.XXXXXX")
pids=()
cleanup() {
    # Each pid is waited for by name with stderr off: otherwise bash reports every killed job ("Killed").
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-}" = 1 ]; then echo "logs kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
# A signal ends the script (through the EXIT trap) instead of resuming it after the cleanup.
trap 'exit 130' INT TERM

# Ports that are free right now (the helper refuses a taken one; members probe upward from theirs).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
helper_port=$(free_port)
first_port=$(free_port)
helper="127.0.0.1:$helper_port"

count() { grep -c -E -- "$2" "$1" 2>/dev/null || true; }
wait_count() { # wait_count FILE REGEX COUNT: until COUNT lines of FILE match REGEX (60 s bound)
    local deadline=$((SECONDS + 60))
    while [ "$(count "$1" "$2")" -lt "$3" ]; do
        if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for $3 x '$2' in $1" >&2; exit 1; fi
        sleep 0.005
    done
}

"$bin/tom-helper" --size "$members" --port "$helper_port" --bind 127.0.0.1 2>"$dir/helper.log" &
pids+=($!)
declare -A pid_of out_of
declare -a spawned_pid
for i in $(seq 1 "$members"); do
    # stdin at EOF: a member keeps running after it (no --exit-on-eof); this group multicasts nothing.
    "$bin/tom-member" --helper "$helper" --host 127.0.0.1 --port "$first_port" \
        </dev/null >"$dir/member$i.out" 2>"$dir/member$i.log" &
    pids+=($!)
    spawned_pid[$i]=$!
done
for i in $(seq 1 "$members"); do
    wait_count "$dir/member$i.out" '^JOINED ' 1
    rank=$(awk '/^JOINED/ { print $2; exit }' "$dir/member$i.out")
    pid_of[$rank]=${spawned_pid[$i]}
    out_of[$rank]="$dir/member$i.out"
done
# Whole lines, as regular expressions (a VIEW line holds only digits and commas).
full_view="^VIEW $(seq -s, 1 "$members")\$"
without_victim="^VIEW $(seq 1 "$members" | grep -v -x "$victim" | paste -sd,)\$"
for rank in $(seq 1 "$members"); do wait_count "${out_of[$rank]}" "$full_view" 1; done

rejoin_args=(--helper "$helper" --host 127.0.0.1 --port "$first_port" --rejoin "$victim")
echo "date: $(date -Is)   nproc: $(nproc)   load: $(cut -d" " -f1-3 /proc/loadavg)   binaries: $bin"
echo "group of $members on 127.0.0.1, idle; rank $victim killed with -9, then restarted:"
echo "  $bin/tom-member ${rejoin_args[*]}"

times=()
for run in $(seq 1 "$reps"); do
    declare -A views_without=() views_full=()
    for rank in $(seq 1 "$members"); do
        [ "$rank" = "$victim" ] && continue
        views_without[$rank]=$(count "${out_of[$rank]}" "$without_victim")
        views_full[$rank]=$(count "${out_of[$rank]}" "$full_view")
    done
    kill -9 "${pid_of[$victim]}"
    wait "${pid_of[$victim]}" 2>/dev/null || true
    for rank in "${!views_without[@]}"; do wait_count "${out_of[$rank]}" "$without_victim" $((views_without[$rank] + 1)); done

    out="$dir/rejoin$run.out"
    : >"$out"
    # Each stdout line is stamped as it arrives ($EPOCHREALTIME: no process started per line).
    started=$EPOCHREALTIME
    "$bin/tom-member" "${rejoin_args[@]}" </dev/null \
        > >(while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done >"$out") 2>"$dir/rejoin$run.log" &
    pids+=($!)
    pid_of[$victim]=$!
    wait_count "$out" '^[0-9.]+ JOINED ' 1
    joined=$(awk '$2 == "JOINED" { print $1; exit }' "$out")
    ms=$(awk -v a="$started" -v b="$joined" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
    times+=("$ms")
    echo "run $run: JOINED after $ms ms ($(awk '$2 == "STATE" { print $2, $3; exit }' "$out"))"

    # The next run starts from a steady group: everyone has installed the view with the new life.
    for rank in "${!views_full[@]}"; do wait_count "${out_of[$rank]}" "$full_view" $((views_full[$rank] + 1)); done
    wait_count "$out" "^[0-9.]+ ${full_view#^}" 1
done

printf '%s\n' "${times[@]}" | sort -g | awk '
    { v[NR] = $1 }
    END {
        median = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "restart to JOINED over %d runs: median %.1f ms, min %.1f ms, max %.1f ms\n", NR, median, v[1], v[NR]
    }'
